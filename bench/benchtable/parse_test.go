package benchtable

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		line    string
		want    Result
		ok, bad bool
	}{
		{line: "BenchmarkNoUdev/GetPutWarm/driver=thinlayer-2   \t      30\t  38239249 ns/op", ok: true,
			want: Result{"NoUdev", "GetPutWarm", "thinlayer", 30, map[string]float64{"ns/op": 38239249}}},
		{line: "BenchmarkUdev/Init500/driver=moby#01-2 1 3064735232 ns/op 2172464 heap-B 921600 rss-B", ok: true,
			want: Result{"Udev", "Init500", "moby", 1, map[string]float64{"ns/op": 3064735232, "heap-B": 2172464, "rss-B": 921600}}},
		{line: "BenchmarkNoUdev/Exists/driver=floor#12 3 72.62 ns/op 352.46 MB/s", ok: true,
			want: Result{"NoUdev", "Exists", "floor", 3, map[string]float64{"ns/op": 72.62, "MB/s": 352.46}}},
		{line: "BenchmarkNoUdev/Exists/driver=thinlayer", ok: false},             // -v's header line
		{line: "--- BENCH: BenchmarkNoUdev/Init500/driver=thinlayer", ok: false}, // log header
		{line: "BenchmarkOther 10 5 ns/op", ok: false},                           // not ours
		{line: "PASS", ok: false},
		{line: "goos: linux", ok: false},
		{line: "BenchmarkNoUdev/Exists/driver=moby x 5 ns/op", bad: true},
		{line: "BenchmarkNoUdev/Exists/driver=moby 0 5 ns/op", bad: true},
		{line: "BenchmarkNoUdev/Exists/driver=moby 3 five ns/op", bad: true},
		{line: "BenchmarkNoUdev/Exists/driver=moby 3 5 heap-B", bad: true},
		{line: "BenchmarkNoUdev//driver=moby 3 5 ns/op", bad: true},
	} {
		got, ok, err := ParseLine(c.line)
		if (err != nil) != c.bad {
			t.Errorf("ParseLine(%q) error %v, want error %v", c.line, err, c.bad)
			continue
		}
		if ok != c.ok {
			t.Errorf("ParseLine(%q) ok = %v, want %v", c.line, ok, c.ok)
		}
		if c.ok && !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseLine(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
}

func TestTrimSuffixes(t *testing.T) {
	for in, want := range map[string]string{
		"moby": "moby", "moby-2": "moby", "moby#01": "moby", "moby#01-16": "moby",
		"thin-layer": "thin-layer", "x#": "x#", "-2": "-2", "#3": "#3",
	} {
		if got := trimSuffixes(in); got != want {
			t.Errorf("trimSuffixes(%q) = %q, want %q", in, got, want)
		}
	}
}

const sample = `goos: linux
BenchmarkNoUdev/GetPutCold/driver=thinlayer-2 8 10000000 ns/op
BenchmarkNoUdev/GetPutCold/driver=moby-2 8 40000000 ns/op
BenchmarkNoUdev/GetPutCold/driver=floor-2 8 9000000 ns/op
BenchmarkNoUdev/GetPutCold/driver=thinlayer#01-2 8 30000000 ns/op
BenchmarkNoUdev/GetPutCold/driver=moby#01-2 8 20000000 ns/op
BenchmarkNoUdev/GetPutCold/driver=floor#01-2 8 11000000 ns/op
BenchmarkNoUdev/GetPutCold/driver=thinlayer#02-2 8 11000000 ns/op
BenchmarkUdev/Lifecycle/driver=thinlayer-2 8 20000000 ns/op
BenchmarkUdev/Lifecycle/driver=moby-2 8 100000000 ns/op
BenchmarkUdev/Init500/driver=thinlayer-2 1 100000000 ns/op 2000 heap-B 0 rss-B 10000000 getput1-ns 3000 heap-get-B 20000000 create1-ns 10000000 remove1-ns 8000000 floor-getput1-ns
BenchmarkUdev/Init10000/driver=thinlayer-2 1 120000000 ns/op 2400 heap-B 4096 rss-B 50000000 getput1-ns 2000000 heap-get-B 60000000 create1-ns 15000000 remove1-ns 32000000 floor-getput1-ns
PASS
`

func TestRows(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	rows := Rows(rs)
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4: %+v", len(rows), rows)
	}
	cold := rows[0]
	// thinlayer 10, 11, 30 ms: median 11; moby 20, 40: median 30; floor 9, 11: 10.
	if cold.Scenario != "GetPutCold" || cold.Thin.Median != 11e6 || cold.Peer.Median != 30e6 || cold.FloorStat.Median != 10e6 {
		t.Fatalf("cold row %+v", cold)
	}
	if math.Abs(cold.Ratio-11.0/30) > 1e-9 || math.Abs(cold.FloorRatio-1.1) > 1e-9 {
		t.Errorf("cold ratios %v %v", cold.Ratio, cold.FloorRatio)
	}
	if cold.Met || cold.Verdict != "no" { // 1.1 × floor > 1.05
		t.Errorf("cold judged %v %q, want not met", cold.Met, cold.Verdict)
	}
	life := rows[1]
	if !life.Met || math.Abs(life.Ratio-0.2) > 1e-9 { // 0.2 ≤ 0.3 under udev
		t.Errorf("lifecycle row %+v", life)
	}
	if rows[2].Verdict != "no peer result" {
		t.Errorf("Init500 without peer judged %q", rows[2].Verdict)
	}
	if flat := rows[3]; flat.Scenario != "Init10000" || flat.Met ||
		flat.Verdict != "no: Init ×1.20, heap +400 B; first Get+Put ×5.00, heap after it +1.9 MiB; first Create ×3.00; first Remove ×1.50; the floor's first Get+Put ×4.00 (Init10000 vs Init500)" {
		t.Errorf("Init10000 row %+v", flat)
	}
	var md, sc bytes.Buffer
	if err := WriteMarkdown(&md, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| off | GetPutCold | 11ms ±91% | 30ms ±33% | 0.37 | 10ms ±10% | 1.10 | ratio ≤ 1, ≤ 1.05 × floor | no |",
		"| on | Lifecycle | 20ms | 100ms | 0.20 | – | – | ratio ≤ 0.3 | yes |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, md.String())
		}
	}
	if err := WriteScaling(&sc, rs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| on | thinlayer | 500 | 100ms | 2.0 KiB | 0 B | 10ms | 2.9 KiB | 20ms | 10ms | 8ms |",
		"| on | thinlayer | 10000 | 120ms | 2.3 KiB | 4.0 KiB | 50ms | 1.9 MiB | 60ms | 15ms | 32ms |",
		"- udev on, thinlayer flat? no: Init ×1.20",
	} {
		if !strings.Contains(sc.String(), want) {
			t.Errorf("scaling table lacks %q:\n%s", want, sc.String())
		}
	}
}

func TestTargetFor(t *testing.T) {
	for _, c := range []struct {
		cond, scen string
		want       Target
	}{
		{"NoUdev", "GetPutWarm", Target{Ratio: 0.6}},
		{"Udev", "GetPutWarm", Target{Ratio: 0.3}},
		{"Udev", "GetPutCold", Target{Ratio: 0.3, FloorRatio: 1.05}},
		{"Udev", "CreateRemove", Target{Ratio: 0.25}},
		{"NoUdev", "Lifecycle", Target{Ratio: 0.5}},
		{"NoUdev", "ApplyDiff100", Target{Ratio: 0.2, FloorRatio: 1.3}},
		{"Udev", "DiffBase", Target{Ratio: 0.5, FloorRatio: 1.3}},
		{"NoUdev", "Concurrent32", Target{Speedup: 3}},
		{"Udev", "Pull8", Target{Speedup: 10}},
		{"Udev", "Concurrent1", Target{Ratio: 0.3}},
		{"Udev", "Init500", Target{Ratio: 0.1}},
		{"Udev", "Changes", Target{Ratio: 1}},
		{"NoUdev", "Init10000", Target{Flat: true}},
		{"NoUdev", "SnapPrepareCommit", Target{Alone: true}},
		{"Udev", "SnapRemove", Target{Alone: true}},
	} {
		if got := TargetFor(c.cond, c.scen); got != c.want {
			t.Errorf("TargetFor(%s, %s) = %+v, want %+v", c.cond, c.scen, got, c.want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range strings.Split(sample, "\n") {
		f.Add(l)
	}
	f.Add("BenchmarkA/B/driver=c#-1 1 1 ns/op")
	f.Fuzz(func(t *testing.T, line string) {
		r, ok, err := ParseLine(line)
		if err != nil && ok {
			t.Fatalf("ok with error %v", err)
		}
		if ok && (r.Condition == "" || r.Scenario == "" || r.Driver == "" || r.Iters <= 0) {
			t.Fatalf("result with empty field: %+v", r)
		}
		if ok {
			if _, has := r.Metrics["ns/op"]; !has {
				t.Fatalf("result without ns/op: %+v", r)
			}
		}
	})
}
