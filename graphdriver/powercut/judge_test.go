package powercut

import "testing"

// The walk's verdicts, on made-up layers: a check that cannot fail
// proves nothing.
func TestJudgeLayer(t *testing.T) {
	a := layer{present: true, tree: map[string]string{"f": "1"}}
	b := layer{present: true, tree: map[string]string{"f": "2"}}
	broken := layer{present: true, err: "mount: EIO"}
	none := layer{}
	for _, tc := range []struct {
		name               string
		got, before, after layer
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
		rec := record{before: layers{"x": tc.before}, after: layers{"x": tc.after}}
		lost, bad := judgeLayer("x", tc.got, rec, tc.returned, nil, nil)
		if (len(lost) > 0) != tc.wantLost || (len(bad) > 0) != tc.wantBad {
			t.Errorf("%s: lost %v, inconsistent %v", tc.name, lost, bad)
		}
	}
}

func TestSample(t *testing.T) {
	got := sample([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 4)
	if len(got) != 4 || got[0] != 1 || got[3] != 10 {
		t.Errorf("sample: %v", got)
	}
	if got := sample([]int{5, 6}, 4); len(got) != 2 {
		t.Errorf("sample of fewer: %v", got)
	}
}
