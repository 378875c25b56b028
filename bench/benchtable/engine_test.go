package benchtable

import (
	"strings"
	"testing"
)

// TestEngineRows: the engine table's rows get the targets (0.7
// without udev, 0.3 with, 0.2 for daemon start), the containerd row reads
// its peer from the devmapper snapshotter, and docker run is shown with
// its ratio but not judged. Extra metrics (the plugin's) do not disturb.
func TestEngineRows(t *testing.T) {
	in := `BenchmarkNoUdev/DockerLoad10/driver=thinlayer-2 1 6000000000 ns/op 100 hop-ms/op 30 plugin-calls/op 900 plugin-ms/op
BenchmarkNoUdev/DockerLoad10/driver=moby-2 1 10000000000 ns/op
BenchmarkUdev/DockerLoad10/driver=thinlayer-2 1 6000000000 ns/op
BenchmarkUdev/DockerLoad10/driver=moby-2 1 10000000000 ns/op
BenchmarkNoUdev/DockerdStart500/driver=thinlayer-2 1 3000000000 ns/op
BenchmarkNoUdev/DockerdStart500/driver=moby-2 1 2000000000 ns/op
BenchmarkNoUdev/DockerRunRm/driver=thinlayer-2 1 9000000000 ns/op
BenchmarkNoUdev/DockerRunRm/driver=moby-2 1 10000000000 ns/op
BenchmarkNoUdev/CtrImportRun/driver=thinlayer-2 1 1000000000 ns/op
BenchmarkNoUdev/CtrImportRun/driver=devmapper-2 1 4000000000 ns/op
`
	rs, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]string]Row{}
	for _, r := range Rows(rs) {
		got[[2]string{r.Condition, r.Scenario}] = r
	}
	for _, c := range []struct {
		cond, scen string
		ratio      float64
		verdict    string
	}{
		{"NoUdev", "DockerLoad10", 0.6, "yes"},
		{"Udev", "DockerLoad10", 0.6, "no"},
		{"NoUdev", "DockerdStart500", 1.5, "no"},
		{"NoUdev", "DockerRunRm", 0.9, "not judged"},
		{"NoUdev", "CtrImportRun", 0.25, "yes"},
	} {
		r, ok := got[[2]string{c.cond, c.scen}]
		if !ok || !r.HasPeer || r.Ratio != c.ratio || r.Verdict != c.verdict {
			t.Errorf("%s %s: row %+v, want ratio %g, verdict %q", c.cond, c.scen, r, c.ratio, c.verdict)
		}
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, Rows(rs)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| off | DockerRunRm | 9s | 10s | 0.90 | – | – | reported (runc dominates) | not judged |",
		"| on | DockerLoad10 | 6s | 10s | 0.60 | – | – | ratio ≤ 0.3 | no |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown:\n%s\nwant a line %q", b.String(), want)
		}
	}
}

// TestScalingWithoutInit: a run without the Init scenarios (BENCH_GROUPS=
// engine) prints no empty scaling table.
func TestScalingWithoutInit(t *testing.T) {
	rs, err := Parse(strings.NewReader("BenchmarkNoUdev/DockerLoad10/driver=thinlayer-2 1 6000000000 ns/op\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteScaling(&b, rs); err != nil || b.Len() != 0 {
		t.Errorf("WriteScaling wrote %q (%v), want nothing", b.String(), err)
	}
}
