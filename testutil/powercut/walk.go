package powercut

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/thinlayer/thinlayer/testutil"
)

// EnvFull=full walks every point; otherwise each operation is cut at a
// bounded sample of its points (make test).
const EnvFull = "THINLAYER_POWERCUT"

// sampled bounds the points per operation outside a full walk.
const sampled = 3

// everyEntry: a full walk cuts an operation of at most this many log
// entries at each of them, not only at its flushes.
const everyEntry = 64

// Layer is a layer (or snapshot) as a home shows it: absent, unopenable,
// or its tree (Tree).
type Layer struct {
	Present bool
	Tree    map[string]string
	Err     string
}

// State is every layer of a walk by id.
type State map[string]Layer

// Same reports whether a and b are the same layer state.
func (a Layer) Same(b Layer) bool {
	return a.Present == b.Present && a.Err == b.Err && reflect.DeepEqual(a.Tree, b.Tree)
}

func (a Layer) String() string {
	switch {
	case !a.Present:
		return "absent"
	case a.Err != "":
		return "unopenable: " + a.Err
	}
	return fmt.Sprintf("%d entries", len(a.Tree))
}

// Record is one recorded operation: the layers before and after it, and
// how a replayed point of it is judged.
type Record struct {
	Name          string
	Before, After State
	// Check opens the home on the replayed filesystem mounted at mnt
	// and returns what was lost and what is inconsistent; returned says
	// the operation had returned at this point.
	Check func(t *testing.T, mnt string, rec Record, returned bool) (lost, bad []string)
}

// Verdict sorts what a point shows against rec (see Judge) into what was
// lost and what is inconsistent.
type Verdict struct{ Lost, Bad []string }

// Judge adds to v what layer id shows: a layer the operation does not
// touch is as before; the one it changes is as before or as after, and
// as after once the operation returned. A layer an earlier operation
// left, or this one's after it returned, that is not so is lost.
func (v *Verdict) Judge(id string, got Layer, rec Record, returned bool) {
	before, after := rec.Before[id], rec.After[id]
	switch {
	case got.Same(after) && (returned || !before.Same(after) || got.Same(before)):
		return
	case !returned && got.Same(before):
		return
	}
	msg := fmt.Sprintf("%s is %v (before %v, after %v)", id, got, before, after)
	if got.Present && after.Present && got.Err == "" {
		msg += fmt.Sprintf(": %v", testutil.DiffTrees(after.Tree, got.Tree))
	}
	if (before.Present && before.Same(after)) || (returned && after.Present) {
		v.Lost = append(v.Lost, msg)
	} else {
		v.Bad = append(v.Bad, msg)
	}
}

// Summary tallies a walk.
type Summary struct {
	Operations, Points, Flushes int
	Lost, Inconsistent          int
}

func (s Summary) String() string {
	return fmt.Sprintf("power-cut walk: %d operations, %d replay points: %d lost, %d inconsistent "+
		"(%d flush/FUA points inside the operations)", s.Operations, s.Points, s.Lost, s.Inconsistent, s.Flushes)
}

// Replay stops the rig and cuts each recorded operation at its flush and
// FUA entries, and at its end mark (the moment it returned), judging each
// point with the record's Check; a point that shows something lost or
// inconsistent fails. It prints and returns the summary.
func Replay(t *testing.T, r *Rig, recs []Record) Summary {
	return replay(t, r, recs, (*testing.T).Errorf)
}

// ReplayPeer is Replay for a peer's driver: what a point shows is logged
// and counted, not failed — the walk measures the peer.
func ReplayPeer(t *testing.T, r *Rig, recs []Record) Summary {
	return replay(t, r, recs, (*testing.T).Logf)
}

func replay(t *testing.T, r *Rig, recs []Record, report func(*testing.T, string, ...any)) Summary {
	r.Stop(t)
	l := r.Parse(t)
	p := NewReplayer(t, l)
	s := Summary{Operations: len(recs)}
	for _, rec := range recs {
		start, err := l.Mark(rec.Name + "-start")
		must(t, err)
		end, err := l.Mark(rec.Name + "-end")
		must(t, err)
		points := append(l.Flushes(start, end), end)
		s.Flushes += len(points) - 1
		switch {
		case os.Getenv(EnvFull) != "full":
			points = Sample(points, sampled)
		case end-start <= everyEntry:
			// A short operation is cut at every entry: between two
			// flushes, any prefix of the writes the second covers
			// (in the order they completed) may be what survived.
			points = points[:0]
			for i := start + 1; i <= end; i++ {
				points = append(points, i)
			}
		}
		for _, i := range points {
			t.Run(fmt.Sprintf("%s/entry%d", rec.Name, i), func(t *testing.T) {
				s.Points++
				lost, bad := rec.Check(t, Mounted(t, p.At(t, i)), rec, i == end)
				if len(lost) > 0 {
					s.Lost++
					report(t, "lost: %s", strings.Join(lost, "; "))
				}
				if len(bad) > 0 {
					s.Inconsistent++
					report(t, "inconsistent: %s", strings.Join(bad, "; "))
				}
			})
		}
	}
	t.Logf("log: %d entries", len(l.Entries))
	fmt.Println(s)
	t.Log(s)
	return s
}

// Sample keeps at most n of points, spread out, the last always.
func Sample(points []int, n int) []int {
	if len(points) <= n {
		return points
	}
	out := make([]int, 0, n)
	for k := 0; k < n; k++ {
		out = append(out, points[k*(len(points)-1)/(n-1)])
	}
	return out
}
