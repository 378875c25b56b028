package powercut

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	gd "github.com/thinlayer/thinlayer/graphdriver"
	"github.com/thinlayer/thinlayer/internal/faults"
	pc "github.com/thinlayer/thinlayer/testutil/powercut"
)

// A Create killed at a step leaves its pool transaction open: a child
// process (this binary, run again) opens the home and is SIGKILLed there.

const (
	envChildHome = "THINLAYER_POWERCUT_HOME"
	envChildOpts = "THINLAYER_POWERCUT_OPTS"
	envChildStep = "THINLAYER_POWERCUT_STEP"
	envChildID   = "THINLAYER_POWERCUT_ID"
)

// childCreate is the child's side, run from TestMain: it never returns.
func childCreate(home string) {
	id, parent, _ := strings.Cut(os.Getenv(envChildID), ":")
	d, err := gd.Init(home, strings.Split(os.Getenv(envChildOpts), " "), gd.IdentityMapping{})
	if err == nil {
		faults.Arm(os.Getenv(envChildStep), 1, true)
		err = d.Create(id, parent, nil)
	}
	fmt.Fprintf(os.Stderr, "powercut child: Create %s never reached %s (err: %v)\n", id, os.Getenv(envChildStep), err)
	os.Exit(3)
}

// killedCreate runs Create(id, parent) in a child killed at step; the
// live driver is shut down first, and stays down.
func killedCreate(id, parent, step string) func(*testing.T, *pc.Live) {
	return func(t *testing.T, l *pc.Live) {
		if l.D != nil {
			if err := l.D.Cleanup(); err != nil {
				t.Fatal(err)
			}
			l.D = nil
		}
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), envChildHome+"="+l.Home, envChildOpts+"="+strings.Join(l.Opts, " "),
			envChildStep+"="+step, envChildID+"="+id+":"+parent)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child was not killed at %s (%v):\n%s", step, err, out)
		}
	}
}
