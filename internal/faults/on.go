//go:build thinlayer_faults

package faults

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether the points are compiled in.
const Enabled = true

var (
	mu     sync.Mutex
	hook   func(point string) error
	points []string
)

func init() {
	if spec := os.Getenv(Env); spec != "" {
		point, action, _ := strings.Cut(spec, "=")
		point, nth, _ := strings.Cut(point, "#")
		n, err := strconv.Atoi(nth)
		if err != nil {
			n = 1
		}
		Arm(point, n, action == "kill")
	}
}

// Register records a package's points, in the order an operation meets
// them. Called from init.
func Register(names ...string) {
	mu.Lock()
	points = append(points, names...)
	mu.Unlock()
}

// Points lists every registered point.
func Points() []string {
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(points)
}

// SetHook installs f to be called at every point (nil removes it).
func SetHook(f func(point string) error) {
	mu.Lock()
	hook = f
	mu.Unlock()
}

// Arm makes the nth hit (from 1) of point fail with ErrInjected, or SIGKILL
// the process when kill is set. Other points and hits pass; SetHook(nil)
// disarms.
func Arm(point string, nth int, kill bool) {
	var hits atomic.Int64
	SetHook(func(p string) error {
		if p != point || hits.Add(1) != int64(nth) {
			return nil
		}
		if kill {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL is not delivered synchronously
		}
		return fmt.Errorf("%w at %s#%d", ErrInjected, p, nth)
	})
}

// Point runs the hook, if any, for the step name.
func Point(name string) error {
	mu.Lock()
	f := hook
	mu.Unlock()
	if f == nil {
		return nil
	}
	return f(name)
}
