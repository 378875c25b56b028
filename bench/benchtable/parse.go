// Package benchtable reads the output of the bench module's benchmarks
// (Go's benchmark format) and lays it out as the side-by-side table of
// docs/benchmarks.md: per udev condition and scenario, thinlayer, the peer
// (Moby's driver), their ratio, the floor, and the target.
package benchtable

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is one benchmark line: BenchmarkNoUdev/GetPutWarm/driver=moby#01-2.
type Result struct {
	Condition string             // "NoUdev" or "Udev"
	Scenario  string             // "GetPutWarm"
	Driver    string             // "thinlayer", "moby" or "floor"
	Iters     int                // iterations
	Metrics   map[string]float64 // unit -> value: "ns/op", "heap-B", ...
}

// Parse reads every benchmark result line of r; other lines (logs, PASS,
// goos:) are skipped. Lines that look like results of this module's
// benchmarks but are malformed are errors.
func Parse(r io.Reader) ([]Result, error) {
	var out []Result
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; s.Scan(); n++ {
		res, ok, err := ParseLine(s.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if ok {
			out = append(out, res)
		}
	}
	return out, s.Err()
}

// ParseLine parses one line; ok is false for lines that are not results.
func ParseLine(line string) (res Result, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return Result{}, false, nil
	}
	name := strings.Split(strings.TrimPrefix(f[0], "Benchmark"), "/")
	if len(name) != 3 || !strings.HasPrefix(name[2], "driver=") {
		return Result{}, false, nil
	}
	res = Result{Condition: name[0], Scenario: name[1], Driver: trimSuffixes(strings.TrimPrefix(name[2], "driver="))}
	if res.Condition == "" || res.Scenario == "" || res.Driver == "" {
		return Result{}, false, fmt.Errorf("benchmark name %q: empty part", f[0])
	}
	if res.Iters, err = strconv.Atoi(f[1]); err != nil || res.Iters <= 0 {
		return Result{}, false, fmt.Errorf("benchmark %s: iterations %q", f[0], f[1])
	}
	res.Metrics = map[string]float64{}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false, fmt.Errorf("benchmark %s: value %q of %s: %w", f[0], f[i], f[i+1], err)
		}
		res.Metrics[f[i+1]] = v
	}
	if _, ok := res.Metrics["ns/op"]; !ok {
		return Result{}, false, fmt.Errorf("benchmark %s: no ns/op", f[0])
	}
	return res, true, nil
}

// trimSuffixes drops the "-<GOMAXPROCS>" and "#<n>" (repeated name) that
// go test appends to a sub-benchmark's last element.
func trimSuffixes(s string) string {
	if i := strings.LastIndexByte(s, '-'); i > 0 && isDigits(s[i+1:]) {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '#'); i > 0 && isDigits(s[i+1:]) {
		s = s[:i]
	}
	return s
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
