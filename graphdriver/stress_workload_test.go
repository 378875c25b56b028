package graphdriver

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The stress workload, shared by the kernel test (stress_test.go, in User-
// Mode Linux, where the race detector cannot run) and the race-detector
// test of the driver's own locking and counting on a fake DeviceSet
// (race_test.go, on the host). Workers run mixed operations on four shared
// parents and on layers of their own; at the end no worker may be stuck,
// and every surviving layer must hold what was last written to it.

// StressConfig sizes a run.
type StressConfig struct {
	Workers, Ops int
	Timeout      time.Duration // a run not done by then is a deadlock
}

// StressReport is what a run did and found.
type StressReport struct {
	Ops       map[string]int // per kind
	Layers    []string       // surviving layers, shared parents included
	Corrupted []string       // layers whose content is not what was written
}

func (r StressReport) String() string {
	kinds := make([]string, 0, len(r.Ops))
	total := 0
	for k, n := range r.Ops {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d ops (%s), %d layers survive, %d corrupted", total, strings.Join(kinds, ", "), len(r.Layers), len(r.Corrupted))
}

var stressParents = []string{"p0", "p1", "p2", "p3"}

// stressLayer is a layer a worker owns: only it writes or removes it.
type stressLayer struct{ id, content string }

type stressWorker struct {
	t       testing.TB
	d       Driver
	n       int
	rng     *rand.Rand
	own     []stressLayer
	ops     map[string]int
	serial  int
	failure error
}

// RunStress sets up the shared parents and runs the workers.
func RunStress(t testing.TB, d Driver, cfg StressConfig) StressReport {
	t.Helper()
	for _, p := range stressParents {
		if err := d.Create(p, "", nil); err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		if _, err := d.ApplyDiff(p, "", bytes.NewReader(contentTar(t, p))); err != nil {
			t.Fatalf("fill %s: %v", p, err)
		}
	}
	workers := make([]*stressWorker, cfg.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = &stressWorker{t: t, d: d, n: i, rng: rand.New(rand.NewSource(int64(i) + 1)), ops: map[string]int{}}
		wg.Add(1)
		go func(w *stressWorker) { defer wg.Done(); w.run(cfg.Ops) }(workers[i])
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Timeout):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		t.Fatalf("stress: workers still running after %v: deadlock", cfg.Timeout)
	}
	return collect(t, d, workers)
}

func collect(t testing.TB, d Driver, workers []*stressWorker) StressReport {
	r := StressReport{Ops: map[string]int{}}
	want := map[string]string{}
	for _, p := range stressParents {
		want[p] = p
	}
	for _, w := range workers {
		if w.failure != nil {
			t.Errorf("worker %d: %v", w.n, w.failure)
		}
		for k, n := range w.ops {
			r.Ops[k] += n
		}
		for _, l := range w.own {
			want[l.id] = l.content
		}
	}
	for id, content := range want {
		r.Layers = append(r.Layers, id)
		if got, err := readContent(d, id); err != nil || got != content {
			r.Corrupted = append(r.Corrupted, fmt.Sprintf("%s: %q %v, want %q", id, got, err, content))
		}
	}
	sort.Strings(r.Layers)
	return r
}

func readContent(d Driver, id string) (string, error) {
	root, err := d.Get(id, "")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(root + "/content")
	return string(b), errors.Join(err, d.Put(id))
}

func contentTar(t testing.TB, content string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "content", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(content))
	_ = tw.Close()
	return buf.Bytes()
}

func (w *stressWorker) run(ops int) {
	kinds := []struct {
		name string
		f    func() error
	}{
		{"create", w.create}, {"createrw-on-mounted", w.createOnMounted}, {"get-put", w.getPut},
		{"nested-get-put", w.nestedGetPut}, {"applydiff", w.applyDiff}, {"remove", w.remove},
		{"exists", w.exists}, {"status", w.status},
	}
	for i := 0; i < ops && w.failure == nil; i++ {
		k := kinds[w.rng.Intn(len(kinds))]
		w.ops[k.name]++
		if err := k.f(); err != nil {
			w.failure = fmt.Errorf("op %d (%s): %w", i, k.name, err)
		}
	}
}

// pick returns a shared parent or, as often, one of the worker's layers.
func (w *stressWorker) pick() (id, content string, own int) {
	if len(w.own) == 0 || w.rng.Intn(2) == 0 {
		p := stressParents[w.rng.Intn(len(stressParents))]
		return p, p, -1
	}
	i := w.rng.Intn(len(w.own))
	return w.own[i].id, w.own[i].content, i
}

func (w *stressWorker) newID() string {
	w.serial++
	return fmt.Sprintf("w%d-%d", w.n, w.serial)
}

func (w *stressWorker) create() error {
	parent, content, _ := w.pick()
	id := w.newID()
	create := w.d.Create
	if w.rng.Intn(2) == 0 {
		create = w.d.CreateReadWrite
	}
	if err := create(id, parent, nil); err != nil {
		return err
	}
	w.own = append(w.own, stressLayer{id, content})
	return nil
}

// createOnMounted snapshots a parent while this worker has it mounted
// (others may too): the origin is suspended around the snapshot.
func (w *stressWorker) createOnMounted() error {
	parent, content, _ := w.pick()
	if _, err := w.d.Get(parent, ""); err != nil {
		return err
	}
	id := w.newID()
	err := w.d.CreateReadWrite(id, parent, nil)
	if err == nil {
		w.own = append(w.own, stressLayer{id, content})
	}
	return errors.Join(err, w.d.Put(parent))
}

func (w *stressWorker) getPut() error {
	id, content, _ := w.pick()
	got, err := readContent(w.d, id)
	if err == nil && got != content {
		err = fmt.Errorf("%s reads %q, want %q", id, got, content)
	}
	return err
}

func (w *stressWorker) nestedGetPut() error {
	id, _, _ := w.pick()
	if _, err := w.d.Get(id, ""); err != nil {
		return err
	}
	_, err := w.d.Get(id, "")
	if err == nil {
		err = w.d.Put(id)
	}
	return errors.Join(err, w.d.Put(id))
}

func (w *stressWorker) applyDiff() error {
	if len(w.own) == 0 {
		return w.create()
	}
	i := w.rng.Intn(len(w.own))
	content := fmt.Sprintf("%s v%d", w.own[i].id, w.serial)
	w.serial++
	if _, err := w.d.ApplyDiff(w.own[i].id, "", bytes.NewReader(contentTar(w.t, content))); err != nil {
		return err
	}
	w.own[i].content = content
	return nil
}

func (w *stressWorker) remove() error {
	if len(w.own) == 0 {
		return nil
	}
	i := w.rng.Intn(len(w.own))
	if err := w.d.Remove(w.own[i].id); err != nil {
		return err
	}
	if w.d.Exists(w.own[i].id) {
		// Marked for deferred deletion (a snapshot of it was being taken
		// elsewhere, say): it is on its way out all the same.
		w.ops["remove-deferred"]++
	}
	w.own = append(w.own[:i], w.own[i+1:]...)
	return nil
}

func (w *stressWorker) exists() error {
	id, _, _ := w.pick()
	if !w.d.Exists(id) {
		return fmt.Errorf("%s does not exist", id)
	}
	return nil
}

func (w *stressWorker) status() error {
	if len(w.d.Status()) == 0 {
		return errors.New("empty status")
	}
	return nil
}
