package dockerplugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/thinlayer/thinlayer/graphdriver"
)

// fakeDriver records what the handler passed it.
type fakeDriver struct {
	graphdriver.Driver // unimplemented methods panic
	mu                 sync.Mutex
	calls              []string
	applied            string
	cleaned            int
}

func (f *fakeDriver) rec(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeDriver) Create(id, parent string, o *graphdriver.CreateOpts) error {
	f.rec("Create " + id + " " + parent + " " + o.MountLabel + " size=" + o.StorageOpt["size"])
	return nil
}
func (f *fakeDriver) Get(id, label string) (string, error) {
	if id == "missing" {
		return "", errors.New("layer missing: not found")
	}
	return "/mnt/" + id + "/rootfs", nil
}
func (f *fakeDriver) Exists(id string) bool { return id == "there" }
func (f *fakeDriver) Status() [][2]string   { return [][2]string{{"Pool Name", "p"}} }
func (f *fakeDriver) Changes(id, parent string) ([]graphdriver.Change, error) {
	return []graphdriver.Change{{Path: "/a", Kind: graphdriver.ChangeAdd}, {Path: "/b", Kind: graphdriver.ChangeDelete}}, nil
}
func (f *fakeDriver) Diff(id, parent string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("tar of " + id + " on " + parent)), nil
}
func (f *fakeDriver) ApplyDiff(id, parent string, r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	f.applied = id + "|" + parent + "|" + string(b)
	return int64(len(b)), err
}
func (f *fakeDriver) Cleanup() error { f.cleaned++; return nil }

type initCall struct {
	home  string
	opts  []string
	idMap graphdriver.IdentityMapping
}

func newTestServer(t *testing.T, cfg Config) (*httptest.Server, *[]initCall, *[]*fakeDriver) {
	t.Helper()
	var inits []initCall
	var drivers []*fakeDriver
	cfg.Init = func(home string, opts []string, m graphdriver.IdentityMapping) (graphdriver.Driver, error) {
		inits = append(inits, initCall{home, opts, m})
		d := &fakeDriver{}
		drivers = append(drivers, d)
		return d, nil
	}
	srv := httptest.NewServer(NewHandler(cfg))
	t.Cleanup(srv.Close)
	return srv, &inits, &drivers
}

// post sends body as Docker's client does and decodes the JSON reply.
func post(t *testing.T, srv *httptest.Server, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, MimeType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("%s: reply not JSON: %v", path, err)
	}
	return resp.StatusCode, m
}

func TestActivate(t *testing.T) {
	srv, _, _ := newTestServer(t, Config{})
	code, m := post(t, srv, "/Plugin.Activate", "")
	if code != 200 || !reflect.DeepEqual(m["Implements"], []any{"GraphDriver"}) {
		t.Fatalf("Activate: %d %v", code, m)
	}
}

// TestCallBeforeInit: a plugin restarted under a running dockerd gets
// calls and no Init (Docker calls it once per daemon start); the error
// Docker shows its user says what to do.
func TestCallBeforeInit(t *testing.T) {
	srv, _, _ := newTestServer(t, Config{})
	code, m := post(t, srv, "/GraphDriver.Get", `{"ID":"x"}`)
	if msg, _ := m["Err"].(string); code != 500 || !strings.Contains(msg, "Init has not been called") || !strings.Contains(msg, "restart dockerd") {
		t.Fatalf("Get before Init: %d %v", code, m)
	}
}

func TestInitHomeOptionsAndIDMaps(t *testing.T) {
	srv, inits, drivers := newTestServer(t, Config{Home: "/var/lib/docker/devicemapper", Options: []string{"dm.basesize=20G", "dm.fs=xfs"}})
	body := `{"Home":"/var/lib/docker/thinlayer","Opts":["dm.fs=ext4"],"UIDMaps":[{"container_id":0,"host_id":100000,"size":65536}],"GIDMaps":[{"container_id":0,"host_id":200000,"size":10}]}`
	if code, m := post(t, srv, "/GraphDriver.Init", body); code != 200 {
		t.Fatalf("Init: %d %v", code, m)
	}
	want := initCall{
		home: "/var/lib/docker/devicemapper",
		opts: []string{"dm.basesize=20G", "dm.fs=xfs", "dm.fs=ext4"},
		idMap: graphdriver.IdentityMapping{
			UIDMaps: []graphdriver.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMaps: []graphdriver.IDMap{{ContainerID: 0, HostID: 200000, Size: 10}},
		},
	}
	if !reflect.DeepEqual((*inits)[0], want) {
		t.Fatalf("Init got %+v, want %+v", (*inits)[0], want)
	}
	// A second Init (dockerd restarted without Cleanup) cleans the first up.
	if code, _ := post(t, srv, "/GraphDriver.Init", `{"Home":"/h"}`); code != 200 {
		t.Fatal("second Init failed")
	}
	if (*drivers)[0].cleaned != 1 || len(*drivers) != 2 {
		t.Fatalf("second Init: first driver cleaned %d times, %d drivers", (*drivers)[0].cleaned, len(*drivers))
	}
}

func TestDockerHomeWhenNoOverride(t *testing.T) {
	srv, inits, _ := newTestServer(t, Config{})
	post(t, srv, "/GraphDriver.Init", `{"Home":"/var/lib/docker/thinlayer","Opts":null}`)
	if got := (*inits)[0]; got.home != "/var/lib/docker/thinlayer" || len(got.opts) != 0 {
		t.Fatalf("Init got %+v", got)
	}
}

func TestCalls(t *testing.T) {
	srv, _, drivers := newTestServer(t, Config{})
	post(t, srv, "/GraphDriver.Init", `{"Home":"/h"}`)
	d := (*drivers)[0]

	if code, m := post(t, srv, "/GraphDriver.Create", `{"ID":"l2","Parent":"l1","MountLabel":"lbl","StorageOpt":{"size":"20G"}}`); code != 200 || m["Err"] != nil {
		t.Fatalf("Create: %d %v", code, m)
	}
	if d.calls[0] != "Create l2 l1 lbl size=20G" {
		t.Fatalf("Create passed %q", d.calls[0])
	}
	if _, m := post(t, srv, "/GraphDriver.Get", `{"ID":"l2"}`); m["Dir"] != "/mnt/l2/rootfs" {
		t.Fatalf("Get: %v", m)
	}
	if code, m := post(t, srv, "/GraphDriver.Get", `{"ID":"missing"}`); code != 500 || m["Err"] != "layer missing: not found" {
		t.Fatalf("Get of a missing layer: %d %v", code, m)
	}
	if _, m := post(t, srv, "/GraphDriver.Exists", `{"ID":"there"}`); m["Exists"] != true {
		t.Fatalf("Exists: %v", m)
	}
	if _, m := post(t, srv, "/GraphDriver.Exists", `{"ID":"gone"}`); m["Exists"] != nil {
		t.Fatalf("Exists of a missing layer: %v", m)
	}
	if _, m := post(t, srv, "/GraphDriver.Status", `{}`); !reflect.DeepEqual(m["Status"], []any{[]any{"Pool Name", "p"}}) {
		t.Fatalf("Status: %v", m)
	}
	want := []any{map[string]any{"Path": "/a", "Kind": 1.0}, map[string]any{"Path": "/b", "Kind": 2.0}}
	if _, m := post(t, srv, "/GraphDriver.Changes", `{"ID":"l2","Parent":"l1"}`); !reflect.DeepEqual(m["Changes"], want) {
		t.Fatalf("Changes: %v", m["Changes"])
	}
	if _, m := post(t, srv, "/GraphDriver.Capabilities", `{}`); !reflect.DeepEqual(m["Capabilities"], map[string]any{"ReproducesExactDiffs": false}) {
		t.Fatalf("Capabilities: %v", m)
	}
}

func TestDiffAndApplyDiffStreams(t *testing.T) {
	srv, _, drivers := newTestServer(t, Config{})
	post(t, srv, "/GraphDriver.Init", `{"Home":"/h"}`)
	resp, err := http.Post(srv.URL+"/GraphDriver.Diff", MimeType, strings.NewReader(`{"ID":"l2","Parent":"l1"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "tar of l2 on l1" {
		t.Fatalf("Diff body %q", b)
	}
	payload := bytes.Repeat([]byte("x"), 1<<20)
	resp, err = http.Post(srv.URL+"/GraphDriver.ApplyDiff?id=l3&parent=l2", "application/x-tar", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if m["Size"] != float64(len(payload)) || (*drivers)[0].applied != "l3|l2|"+string(payload) {
		t.Fatalf("ApplyDiff: reply %v, applied %.20q", m, (*drivers)[0].applied)
	}
}

func TestCleanupThenCallsFail(t *testing.T) {
	srv, _, drivers := newTestServer(t, Config{})
	post(t, srv, "/GraphDriver.Init", `{"Home":"/h"}`)
	if code, _ := post(t, srv, "/GraphDriver.Cleanup", `{}`); code != 200 || (*drivers)[0].cleaned != 1 {
		t.Fatal("Cleanup did not clean the driver")
	}
	if code, _ := post(t, srv, "/GraphDriver.Exists", `{"ID":"there"}`); code != 500 {
		t.Fatal("a call after Cleanup reached a cleaned-up driver")
	}
}
