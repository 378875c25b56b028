//go:build linux && cgo

package bench_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/sirupsen/logrus"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
	"golang.org/x/sys/unix"
)

// rounds repeats every scenario, the drivers taking turns within each
// scenario (in alternating order), so that a slow spell of a busy host
// falls on both.
var rounds = flag.Int("rounds", 1, "rounds of each scenario; drivers alternate within a scenario")

// only runs one driver (with BENCH_STRACE, a profile of that driver alone).
var only = flag.String("driver", "", "run only this driver (thinlayer or moby); default both")

// TestMain boots the harness's kernel (User-Mode Linux where the host has
// no dm-thin) and runs the benchmarks inside it.
func TestMain(m *testing.M) {
	// Both drivers log through logrus; Moby's warnings about loopback
	// pools and missing udev sync are expected and only slow the run.
	logrus.SetLevel(logrus.ErrorLevel)
	if out := os.Getenv(envStrace); out != "" && testutil.InUML() && os.Getenv(envStraced) == "" {
		os.Exit(underStrace(out))
	}
	testutil.Main(m)
}

// With BENCH_STRACE=<file>, the benchmarks run under strace -c -f inside
// the guest, and <file> gets the syscall counts and times of the whole
// process (a profile of where a syscall-bound run spends its time: compare
// a run of 1 iteration with one of many to get per-operation counts).
const (
	envStrace  = "BENCH_STRACE"
	envStraced = "BENCH_STRACED"
)

func underStrace(out string) int {
	args := append([]string{"-f", "-c", "-o", out, os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("strace", args...)
	cmd.Env = append(os.Environ(), envStraced+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench: strace:", err)
		return 1
	}
	return 0
}

// BenchmarkNoUdev runs every scenario on a host without udev: device nodes
// are the drivers' own business.
func BenchmarkNoUdev(b *testing.B) {
	testutil.RequireKernel(b)
	if dm.UdevRunning() {
		b.Skip("udevd runs here: the no-udev condition is measured in the UML harness")
	}
	runScenarios(b, false)
}

// BenchmarkUdev runs every scenario with systemd-udevd running, as on a
// real host: libdevmapper and thinlayer synchronise with udev through
// cookies. Run it in a process of its own (see openPeer).
func BenchmarkUdev(b *testing.B) {
	testutil.RequireKernel(b)
	testutil.StartUdevd(b)
	runScenarios(b, true)
}

// runScenarios runs each scenario on each driver (and the floor, where
// there is one) as BenchmarkX/<scenario>/driver=<name>; later rounds are
// named driver=<name>#01, #02, ...
func runScenarios(b *testing.B, udev bool) {
	logMachine(b)
	e := newEnv(b, udev)
	defer e.close(b)
	for _, s := range scenarios {
		b.Run(s.name, func(b *testing.B) {
			for round := range *rounds {
				// Odd rounds run the peer first: what one driver leaves
				// behind (freed memory, a warm cache) must not always
				// favour the same one.
				order := []string{thinlayer, peer}
				if round%2 == 1 {
					order = []string{peer, thinlayer}
				}
				if s.only != "" {
					order = []string{s.only}
				} else if *only != "" {
					order = []string{*only}
				}
				for _, name := range order {
					b.Run("driver="+name, func(b *testing.B) { s.run(b, e, name) })
				}
				if s.floor != nil {
					b.Run("driver="+floorName, func(b *testing.B) { s.floor(b, e) })
				}
				if s.tar != nil {
					b.Run("driver="+tarName, func(b *testing.B) { s.tar(b, e) })
				}
			}
		})
	}
}

// logMachine records the kernel the numbers come from.
func logMachine(b *testing.B) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	where := "host kernel"
	if testutil.InUML() {
		where = "User-Mode Linux guest"
	}
	b.Logf("%s %s, %d CPU(s) seen by Go, udevd running: %v", where, unix.ByteSliceToString(u.Release[:]), runtime.NumCPU(), dm.UdevRunning())
}
