package benchtable

import (
	"strings"
	"testing"
)

const manySample = `BenchmarkNoUdev/Concurrent1/driver=thinlayer-2 2 40000000 ns/op 25 ops/s
BenchmarkNoUdev/Concurrent1/driver=moby-2 2 100000000 ns/op 10 ops/s
BenchmarkNoUdev/Concurrent8/driver=thinlayer-2 2 10000000 ns/op 100 ops/s
BenchmarkNoUdev/Concurrent8/driver=moby-2 2 50000000 ns/op 20 ops/s
BenchmarkNoUdev/Pull8/driver=thinlayer-2 2 80000000 ns/op 12.5 ops/s
BenchmarkNoUdev/Pull8/driver=moby-2 2 200000000 ns/op 5 ops/s
BenchmarkUdev/Concurrent8/driver=thinlayer-2 1 20000000 ns/op 50 ops/s
BenchmarkUdev/Concurrent8/driver=moby-2 1 800000000 ns/op 1.25 ops/s
BenchmarkNoUdev/DiffBase/driver=thinlayer-2 1 60000000 ns/op
BenchmarkNoUdev/DiffBase/driver=moby-2 1 180000000 ns/op
BenchmarkNoUdev/DiffBase/driver=floor-2 1 40000000 ns/op
BenchmarkNoUdev/DiffBase/driver=tar-2 1 400000000 ns/op
`

func manyRows(t *testing.T) ([]Result, map[string]Row) {
	t.Helper()
	rs, err := Parse(strings.NewReader(manySample))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]Row{}
	for _, r := range Rows(rs) {
		rows[r.Condition+"/"+r.Scenario] = r
	}
	return rs, rows
}

// TestSpeedupTarget: throughput targets are judged on peer time over
// thinlayer's: 5× meets 3× without udev, 2.5× does not; 40× meets 10×.
func TestSpeedupTarget(t *testing.T) {
	_, rows := manyRows(t)
	for key, want := range map[string]bool{"NoUdev/Concurrent8": true, "NoUdev/Pull8": false, "Udev/Concurrent8": true} {
		if r := rows[key]; r.Met != want || r.Target.Speedup == 0 {
			t.Errorf("%s: met %v (%s), want %v; target %+v", key, r.Met, r.Verdict, want, r.Target)
		}
	}
	// 1.5 × floor misses DiffBase's ≤ 1.3 × floor though its ratio (0.33) meets ≤ 0.5.
	if r := rows["NoUdev/DiffBase"]; r.Met || r.FloorRatio != 1.5 {
		t.Errorf("DiffBase row %+v, want missed at 1.5 × floor", r)
	}
}

func TestWriteConcurrency(t *testing.T) {
	rs, _ := manyRows(t)
	var b strings.Builder
	if err := WriteConcurrency(&b, rs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| off | Concurrent8 | 100 | 20 | 5.00× | throughput ≥ 3 × peer | yes | 4.00× | 2.00× |",
		"| off | Pull8 | 12.5 | 5 | 2.50× | throughput ≥ 3 × peer | no | – | – |",
		"| on | Concurrent8 | 50 | 1.25 | 40.00× | throughput ≥ 10 × peer | yes | – | – |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table:\n%s\nwant a line %q", b.String(), want)
		}
	}
	b.Reset()
	if err := WriteConcurrency(&b, rs[8:]); err != nil || b.Len() != 0 {
		t.Errorf("without concurrency results: %q, %v; want nothing", b.String(), err)
	}
}

func TestWriteFileFloors(t *testing.T) {
	rs, _ := manyRows(t)
	var b strings.Builder
	if err := WriteFileFloors(&b, rs); err != nil {
		t.Fatal(err)
	}
	want := "| off | DiffBase | 60ms | 180ms | 40ms | 400ms | 1.50 | 0.15 | 4.50 |"
	if !strings.Contains(b.String(), want) || strings.Count(b.String(), "\n") != 4 {
		t.Errorf("table:\n%s\nwant header and one line %q", b.String(), want)
	}
}
