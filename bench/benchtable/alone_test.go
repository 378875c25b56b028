package benchtable

import (
	"strings"
	"testing"
)

// TestAloneRow: a snapshotter scenario (thinlayer only) gets a row with no
// peer, no ratio and no verdict, in the order the scenarios ran.
func TestAloneRow(t *testing.T) {
	in := `BenchmarkNoUdev/CreateRemove/driver=thinlayer-2 8 10000000 ns/op
BenchmarkNoUdev/CreateRemove/driver=moby-2 8 80000000 ns/op
BenchmarkNoUdev/SnapPrepareCommit/driver=thinlayer-2 8 12000000 ns/op
BenchmarkNoUdev/SnapPrepareCommit/driver=thinlayer#01-2 8 14000000 ns/op
`
	rs, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	rows := Rows(rs)
	if len(rows) != 2 || rows[1].Scenario != "SnapPrepareCommit" {
		t.Fatalf("rows %+v, want CreateRemove then SnapPrepareCommit", rows)
	}
	snap := rows[1]
	if snap.HasPeer || snap.Met || snap.Verdict != "not judged" || snap.Thin.Median != 13e6 {
		t.Errorf("snapshotter row %+v", snap)
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, rows); err != nil {
		t.Fatal(err)
	}
	want := "| off | SnapPrepareCommit | 13ms ±8% | – | – | – | – | snapshotter, no peer: read with CreateRemove | not judged |"
	if !strings.Contains(b.String(), want) {
		t.Errorf("markdown:\n%s\nwant a line %q", b.String(), want)
	}
}
