package cli_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

func checkReport(t *testing.T, h cli.Home) (int, cli.CheckReport) {
	t.Helper()
	rc, out, errOut := run(t, nil, "check", "--json", "--home", h.Dir)
	var r cli.CheckReport
	decode(t, out, &r)
	if (rc == 0) != r.OK() {
		t.Fatalf("check: rc %d with %d problems: %s", rc, len(r.Problems), errOut)
	}
	return rc, r
}

func hasProblem(r cli.CheckReport, what string) bool {
	for _, p := range r.Problems {
		if strings.Contains(p.What, what) && p.Fix != "" {
			return true
		}
	}
	return false
}

// thinIDFree reports whether the pool lets a thin device with id be
// created, i.e. holds none: what the kernel, not our reading, says.
func thinIDFree(t *testing.T, h cli.Home, id dm.ThinID) bool {
	t.Helper()
	d := openDriver(t, h)
	defer closeDriver(t, d)
	prefix, err := deviceset.DevicePrefix(h.Dir)
	must(t, err)
	ctl, err := dm.Open()
	must(t, err)
	defer ctl.Close()
	err = ctl.CreateThin(prefix+"-pool", id)
	if errors.Is(err, dm.ErrExists) {
		return false
	}
	must(t, err)
	must(t, ctl.DeleteThin(prefix+"-pool", id))
	return true
}

// A thin device no layer names: check fails saying what to do, gc
// --dry-run only reports it, gc deletes it, check is clean again.
func TestOrphanCheckedAndCollected(t *testing.T) {
	h := newHome(t)
	if rc, r := checkReport(t, h); rc != cli.ExitOK {
		t.Fatalf("fresh home: %+v", r)
	}
	injectOrphan(t, h, 4242)
	rc, r := checkReport(t, h)
	if rc != cli.ExitProblems || !hasProblem(r, "thin device 4242 is in the pool") || !strings.Contains(r.Problems[0].Fix, "thinlayer gc") {
		t.Fatalf("check with an orphan: rc %d %+v", rc, r)
	}
	dry, err := h.GC(true)
	must(t, err)
	if len(dry.Orphans) != 1 || dry.Orphans[0].ID != 4242 || dry.Orphans[0].Mapped < 512<<10 {
		t.Fatalf("gc --dry-run: %+v", dry)
	}
	if rc, _ := checkReport(t, h); rc != cli.ExitProblems {
		t.Fatal("gc --dry-run changed the home")
	}
	rc2, out, errOut := run(t, nil, "gc", "--home", h.Dir)
	if rc2 != 0 || !strings.Contains(out, "delete thin device 4242") {
		t.Fatalf("gc: rc %d: %s %s", rc2, out, errOut)
	}
	if rc, r := checkReport(t, h); rc != cli.ExitOK {
		t.Fatalf("check after gc: %+v", r)
	}
	if !thinIDFree(t, h, 4242) {
		t.Fatal("the pool still holds thin device 4242 after gc")
	}
	if got := layerFiles(t, h, "ctr"); len(got) != len(wantMod())+1 {
		t.Fatalf("gc harmed layer ctr: %v", got)
	}
}

// An interrupted create (intent written, thin device made, no DevInfo):
// check names the transaction, not an orphan; gc settles it.
func TestInterruptedTransactionSettledByGC(t *testing.T) {
	h := newHome(t)
	st, err := h.Status()
	must(t, err)
	injectOrphan(t, h, 777)
	tx := fmt.Sprintf(`{"open_transaction_id":%d,"device_hash":"ghost","device_id":777}`, st.Pool.TransactionID+1)
	must(t, os.WriteFile(filepath.Join(h.Dir, "metadata", "transaction-metadata"), []byte(tx), 0o600))

	rc, r := checkReport(t, h)
	if rc != cli.ExitProblems || len(r.Problems) != 1 || !hasProblem(r, `layer "ghost" (thin id 777) was interrupted`) {
		t.Fatalf("check: %+v", r)
	}
	g, err := h.GC(false)
	must(t, err)
	if g.Transaction == nil || g.Transaction.DeviceID != 777 || len(g.Orphans) != 0 || g.Err() != nil {
		t.Fatalf("gc: %+v", g)
	}
	if rc, r := checkReport(t, h); rc != cli.ExitOK {
		t.Fatalf("check after gc: %+v", r)
	}
	if !thinIDFree(t, h, 777) {
		t.Fatal("settling left thin device 777")
	}
}

// A layer marked for deferred deletion is a note for check, and gc
// finishes its deletion.
func TestDeferredDeletionFinishedByGC(t *testing.T) {
	h := newHome(t)
	l, err := h.List()
	must(t, err)
	var ctrID dm.ThinID
	for _, x := range l.Layers {
		if x.ID == "ctr" {
			ctrID = x.DeviceID
		}
	}
	editDevInfo(t, h, "ctr", func(m map[string]any) { m["deleted"] = true })
	rc, r := checkReport(t, h)
	if rc != cli.ExitOK || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], `"ctr" awaits deferred deletion`) {
		t.Fatalf("check: rc %d %+v", rc, r)
	}
	g, err := h.GC(false)
	must(t, err)
	if len(g.Deleted) != 1 || g.Deleted[0] != "ctr" || g.Err() != nil {
		t.Fatalf("gc: %+v", g)
	}
	if _, err := os.Stat(filepath.Join(h.Dir, "metadata", "ctr")); !os.IsNotExist(err) {
		t.Fatalf("ctr's DevInfo after gc: %v", err)
	}
	if !thinIDFree(t, h, ctrID) {
		t.Fatalf("thin device %d of the deleted layer is still in the pool", ctrID)
	}
	if rc, r := checkReport(t, h); rc != cli.ExitOK || len(r.Notes) != 0 {
		t.Fatalf("check after gc: %+v", r)
	}
}

// A DevInfo naming a thin device the pool does not hold, and one that
// cannot be read: both problems; gc refuses to guess at orphans then.
func TestMissingAndCorruptDevInfo(t *testing.T) {
	h := newHome(t)
	ghost := `{"device_id":999,"size":268435456,"transaction_id":1,"initialized":false,"deleted":false}`
	must(t, os.WriteFile(filepath.Join(h.Dir, "metadata", "ghost"), []byte(ghost), 0o600))
	rc, r := checkReport(t, h)
	if rc != cli.ExitProblems || !hasProblem(r, "names thin device 999, which the pool does not hold") {
		t.Fatalf("check: %+v", r)
	}
	l, err := h.List()
	must(t, err)
	for _, x := range l.Layers {
		if x.ID == "ghost" && !x.Missing {
			t.Fatalf("ls: %+v", x)
		}
	}
	must(t, os.WriteFile(filepath.Join(h.Dir, "metadata", "broken"), []byte("{not json"), 0o600))
	if _, r := checkReport(t, h); !hasProblem(r, `layer "broken"`) {
		t.Fatalf("check with a corrupt DevInfo: %+v", r)
	}
	g, err := h.GC(false)
	if err != nil || g.Err() == nil || len(g.Orphans) != 0 {
		t.Fatalf("gc with a corrupt DevInfo: %+v, %v", g, err)
	}
}

func editDevInfo(t *testing.T, h cli.Home, id string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(h.Dir, "metadata", id)
	b, err := os.ReadFile(p)
	must(t, err)
	m := map[string]any{}
	must(t, json.Unmarshal(b, &m))
	edit(m)
	b, err = json.Marshal(m)
	must(t, err)
	must(t, os.WriteFile(p, b, 0o600))
}
