package powercut

import "testing"

// The walk's verdicts, on made-up layers: a check that cannot fail
// proves nothing.
func TestJudge(t *testing.T) {
	a := Layer{Present: true, Tree: map[string]string{"f": "1"}}
	b := Layer{Present: true, Tree: map[string]string{"f": "2"}}
	broken := Layer{Present: true, Err: "mount: EIO"}
	none := Layer{}
	for _, tc := range []struct {
		name               string
		got, before, after Layer
		returned           bool
		wantLost, wantBad  bool
	}{
		{"untouched, intact", a, a, a, false, false, false},
		{"untouched, changed", b, a, a, false, true, false},
		{"untouched, gone", none, a, a, false, true, false},
		{"created, not yet", none, none, a, false, false, false},
		{"created, there", a, none, a, false, false, false},
		{"created, half", broken, none, a, false, false, true},
		{"created and returned, missing", none, none, a, true, true, false},
		{"changing, old", a, a, b, false, false, false},
		{"changing, new", b, a, b, false, false, false},
		{"changed and returned, old", a, a, b, true, true, false},
		{"removed, still there", a, a, none, false, false, false},
		{"removed, gone", none, a, none, false, false, false},
		{"removed and returned, back", a, a, none, true, false, true},
		{"removed, broken", broken, a, none, false, false, true},
	} {
		var v Verdict
		v.Judge("x", tc.got, Record{Before: State{"x": tc.before}, After: State{"x": tc.after}}, tc.returned)
		if (len(v.Lost) > 0) != tc.wantLost || (len(v.Bad) > 0) != tc.wantBad {
			t.Errorf("%s: lost %v, inconsistent %v", tc.name, v.Lost, v.Bad)
		}
	}
}

func TestSample(t *testing.T) {
	got := Sample([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 4)
	if len(got) != 4 || got[0] != 1 || got[3] != 10 {
		t.Errorf("Sample: %v", got)
	}
	if got := Sample([]int{5, 6}, 4); len(got) != 2 {
		t.Errorf("Sample of fewer: %v", got)
	}
}
