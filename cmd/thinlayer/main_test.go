package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/testutil"
)

// envRunMain makes the test binary be the thinlayer command: the tests
// exec it as a user would exec the built binary.
const envRunMain = "THINLAYER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	testutil.Main(m)
}

// thinlayer runs the command in a process of its own and returns its exit
// status, stdout and stderr.
func thinlayer(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("exec %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// Usage errors exit 2 and say how it is used; help exits 0.
func TestUsageExitStatus(t *testing.T) {
	for _, c := range []struct {
		args []string
		rc   int
		out  string // in stdout or stderr
	}{
		{nil, cli.ExitOK, "commands:"},
		{[]string{"help", "mount"}, cli.ExitOK, "usage: thinlayer mount ID DIR"},
		{[]string{"export", "--help"}, cli.ExitOK, "usage: thinlayer export"},
		{[]string{"frobnicate"}, cli.ExitUsage, `unknown command "frobnicate"`},
		{[]string{"mount", "only-one"}, cli.ExitUsage, "want 2 argument(s), got 1"},
		{[]string{"ls", "--no-such-flag"}, cli.ExitUsage, "flag provided but not defined"},
		{[]string{"ls", "--sort", "colour", "--home", "/nonexistent"}, cli.ExitUsage, `unknown sort key "colour"`},
	} {
		rc, out, errOut := thinlayer(t, c.args...)
		if rc != c.rc || !strings.Contains(out+errOut, c.out) {
			t.Errorf("thinlayer %q: exit %d, want %d with %q in\n%s%s", c.args, rc, c.rc, c.out, out, errOut)
		}
	}
}

// check exits 0 on a clean home and 1 once a thin device no layer names is
// in its pool; gc exits 0 having removed it; errors say what to do.
func TestCheckExitStatus(t *testing.T) {
	testutil.RequireKernel(t)
	home := filepath.Join(t.TempDir(), "home")
	opts := []string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=64MB", "dm.basesize=256MB", "dm.fs=ext4"}
	d, err := gd.Init(home, opts, gd.IdentityMapping{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create("layer", "", nil); err != nil {
		t.Fatal(err)
	}
	addOrphan(t, home, 99)
	if err := d.Cleanup(); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--home", home}
	for _, o := range opts {
		flags = append(flags, "--storage-opt", o)
	}
	rc, out, _ := thinlayer(t, append([]string{"check", "--json"}, flags...)...)
	var r cli.CheckReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || rc != cli.ExitProblems || len(r.Problems) != 1 {
		t.Fatalf("check with an orphan: exit %d, %v, %s", rc, err, out)
	}
	if rc, out, errOut := thinlayer(t, append([]string{"gc"}, flags...)...); rc != cli.ExitOK {
		t.Fatalf("gc: exit %d: %s %s", rc, out, errOut)
	}
	if rc, out, _ := thinlayer(t, append([]string{"check"}, flags...)...); rc != cli.ExitOK || !strings.Contains(out, "consistent") {
		t.Fatalf("check after gc: exit %d: %s", rc, out)
	}
	rc, _, errOut := thinlayer(t, "ls", "--home", t.TempDir())
	if rc != cli.ExitProblems || !strings.Contains(errOut, "not a devicemapper home") || !strings.Contains(errOut, "what to do:") {
		t.Fatalf("ls of a directory that is no home: exit %d: %s", rc, errOut)
	}
}

func addOrphan(t *testing.T, home string, id dm.ThinID) {
	t.Helper()
	prefix, err := deviceset.DevicePrefix(home)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if err := ctl.CreateThin(prefix+"-pool", id); err != nil {
		t.Fatal(err)
	}
}
