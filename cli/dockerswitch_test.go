package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// dockerRoot lays out the part of a Docker data root the switch touches.
func dockerRoot(t *testing.T, driver string, containers map[string]string) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "image", driver, "layerdb"), 0o700)
	os.WriteFile(filepath.Join(root, "image", driver, "repositories.json"), []byte(`{"Repositories":{}}`), 0o600)
	for id, drv := range containers {
		dir := filepath.Join(root, "containers", id)
		os.MkdirAll(dir, 0o700)
		cfg := `{"ID":"` + id + `","Driver":"` + drv + `","Config":{"Cmd":["sh"]},"State":{"Running":false,"ExitCode":3}}`
		os.WriteFile(filepath.Join(dir, "config.v2.json"), []byte(cfg), 0o600)
	}
	return root
}

func containerConfig(t *testing.T, root, id string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "containers", id, "config.v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDockerSwitchThereAndBack(t *testing.T) {
	if runningDockerd() != 0 {
		t.Fatal("a dockerd runs on this machine: the switch would refuse")
	}
	root := dockerRoot(t, "devicemapper", map[string]string{"a": "devicemapper", "b": "overlay2"})
	before := containerConfig(t, root, "a")

	dry, err := DockerSwitch(root, "devicemapper", "thinlayer", true)
	if err != nil || !reflect.DeepEqual(dry.Rewritten, []string{"a"}) || !isDir(filepath.Join(root, "image", "devicemapper")) ||
		containerConfig(t, root, "a")["Driver"] != "devicemapper" {
		t.Fatalf("dry run changed something or misreported: %+v %v", dry, err)
	}

	r, err := DockerSwitch(root, "devicemapper", "thinlayer", false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Rewritten, []string{"a"}) || !reflect.DeepEqual(r.Skipped, []string{"b (overlay2)"}) {
		t.Fatalf("report %+v", r)
	}
	if isDir(filepath.Join(root, "image", "devicemapper")) || !isDir(filepath.Join(root, "image", "thinlayer", "layerdb")) {
		t.Fatal("image store not moved to image/thinlayer")
	}
	after := containerConfig(t, root, "a")
	if after["Driver"] != "thinlayer" {
		t.Fatalf("Driver %v", after["Driver"])
	}
	after["Driver"] = before["Driver"]
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("other fields changed:\n%v\n%v", after, before)
	}
	if containerConfig(t, root, "b")["Driver"] != "overlay2" {
		t.Fatal("a container of another driver was rewritten")
	}

	// Again: nothing left to do, and it says so.
	if r, err := DockerSwitch(root, "devicemapper", "thinlayer", false); err != nil || len(r.Rewritten) != 0 || !reflect.DeepEqual(r.Done, []string{"a"}) {
		t.Fatalf("second run: %+v %v", r, err)
	}
	// And back.
	if _, err := DockerSwitch(root, "thinlayer", "devicemapper", false); err != nil {
		t.Fatal(err)
	}
	if !isDir(filepath.Join(root, "image", "devicemapper", "layerdb")) || !reflect.DeepEqual(containerConfig(t, root, "a"), before) {
		t.Fatal("switching back did not restore the data root")
	}
}

// A run cut short after the configs were rewritten is finished by the next.
func TestDockerSwitchFinishesInterruptedRun(t *testing.T) {
	root := dockerRoot(t, "devicemapper", map[string]string{"a": "devicemapper", "c": "devicemapper"})
	if _, err := rewriteDriver(filepath.Join(root, "containers", "a", "config.v2.json"), "devicemapper", "thinlayer", false); err != nil {
		t.Fatal(err)
	}
	r, err := DockerSwitch(root, "devicemapper", "thinlayer", false)
	if err != nil || !reflect.DeepEqual(r.Rewritten, []string{"c"}) || !reflect.DeepEqual(r.Done, []string{"a"}) ||
		!isDir(filepath.Join(root, "image", "thinlayer")) {
		t.Fatalf("finishing run: %+v %v", r, err)
	}
}

func TestDockerSwitchRefuses(t *testing.T) {
	root := dockerRoot(t, "devicemapper", nil)
	os.MkdirAll(filepath.Join(root, "image", "thinlayer"), 0o700) // dockerd ran on the plugin already
	if _, err := DockerSwitch(root, "devicemapper", "thinlayer", false); !errors.Is(err, ErrUsage) {
		t.Fatalf("both image stores: %v", err)
	}
	if _, err := DockerSwitch(t.TempDir(), "devicemapper", "thinlayer", false); !errors.Is(err, ErrUsage) {
		t.Fatalf("not a data root: %v", err)
	}
	for _, bad := range []string{"../x", "a/b", ".", "..", "", "-x", "UPPER"} {
		if _, err := DockerSwitch(root, "devicemapper", bad, false); !errors.Is(err, ErrUsage) {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	// A symlinked config is not followed.
	root2 := dockerRoot(t, "devicemapper", nil)
	os.MkdirAll(filepath.Join(root2, "containers", "x"), 0o700)
	target := filepath.Join(t.TempDir(), "elsewhere.json")
	os.WriteFile(target, []byte(`{"Driver":"devicemapper"}`), 0o600)
	os.Symlink(target, filepath.Join(root2, "containers", "x", "config.v2.json"))
	if _, err := DockerSwitch(root2, "devicemapper", "thinlayer", false); err == nil {
		t.Fatal("a symlinked config.v2.json was followed")
	}
	if b, _ := os.ReadFile(target); string(b) != `{"Driver":"devicemapper"}` {
		t.Fatalf("the symlink's target was rewritten: %s", b)
	}
}
