package benchtable

import (
	"fmt"
	"io"
	"strings"
)

// initScenarios are the Init scenarios, by home size.
var initScenarios = []struct {
	name   string
	layers int
}{{"Init500", 500}, {"Init5000", 5000}, {"Init10000", 10000}}

// Growth limits for thinlayer between the smallest and the largest home:
// neither Init nor the first Get+Put after it should read per-layer state,
// so their times stay within noise and the heap grows by less than a
// directory listing would take.
const (
	maxInitTimeGrowth = 2.0     // × the smallest home's time
	maxInitHeapGrowth = 1 << 20 // bytes
)

// initStats are the Init series of one driver under one condition.
type initStats struct {
	ns, heap, rss, getPut, heapGet map[Key]Stat
	create, remove, floorGetPut    map[Key]Stat // first after Init; the floor's first Get+Put
}

func newInitStats(rs []Result) initStats {
	return initStats{Summarize(rs, "ns/op"), Summarize(rs, "heap-B"), Summarize(rs, "rss-B"),
		Summarize(rs, "getput1-ns"), Summarize(rs, "heap-get-B"),
		Summarize(rs, "create1-ns"), Summarize(rs, "remove1-ns"), Summarize(rs, "floor-getput1-ns")}
}

// growth is "; NAME ×R" for a metric measured at both sizes.
func growth(m map[Key]Stat, small, big Key, name string) string {
	s0, ok0 := m[small]
	s1, ok1 := m[big]
	if !ok0 || !ok1 || s0.Median <= 0 {
		return ""
	}
	return fmt.Sprintf("; %s ×%.2f", name, s1.Median/s0.Median)
}

// flat compares thinlayer's largest home measured with its smallest.
func (s initStats) flat(cond string) (ok bool, verdict string, measured bool) {
	var small, big Key
	for _, sc := range initScenarios {
		k := Key{cond, sc.name, Thinlayer}
		if _, has := s.ns[k]; !has {
			continue
		}
		if small.Scenario == "" {
			small = k
		}
		big = k
	}
	if small == big {
		return false, "", false
	}
	tInit := s.ns[big].Median / s.ns[small].Median
	ok = tInit <= maxInitTimeGrowth && s.heap[big].Median-s.heap[small].Median <= maxInitHeapGrowth
	verdict = fmt.Sprintf("Init ×%.2f, heap %s", tInit, signedBytes(s.heap[big].Median-s.heap[small].Median))
	if g0, has := s.getPut[small]; has && g0.Median > 0 {
		tGet := s.getPut[big].Median / g0.Median
		growth := s.heapGet[big].Median - s.heapGet[small].Median
		ok = ok && tGet <= maxInitTimeGrowth && growth <= maxInitHeapGrowth
		verdict += fmt.Sprintf("; first Get+Put ×%.2f, heap after it %s", tGet, signedBytes(growth))
	}
	// Reported, not judged: the first Create and Remove after Init, and the
	// floor's first Get+Put (the kernel's share of the first Get+Put's growth).
	verdict += growth(s.create, small, big, "first Create") + growth(s.remove, small, big, "first Remove") +
		growth(s.floorGetPut, small, big, "the floor's first Get+Put")
	return ok, fmt.Sprintf("%s: %s (%s vs %s)", yesNo(ok), verdict, big.Scenario, small.Scenario), true
}

// WriteScaling writes, per condition, driver and home size: Init time,
// the heap and RSS Init added, the first Get+Put after Init and the heap
// after it; and whether thinlayer's stay flat as the home grows.
func WriteScaling(w io.Writer, rs []Result) error {
	s := newInitStats(rs)
	var b strings.Builder
	b.WriteString("| udev | driver | layers | Init | heap after Init | RSS after Init | first Get+Put | heap after it | first Create | first Remove | floor's first Get+Put |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var verdicts []string
	rows := 0
	for _, cond := range []string{"NoUdev", "Udev"} {
		for _, drv := range []string{Thinlayer, Peer} {
			for _, sc := range initScenarios {
				k := Key{cond, sc.name, drv}
				t, ok := s.ns[k]
				if !ok {
					continue
				}
				rows++
				fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", condLabel(cond), drv, sc.layers,
					Duration(t.Median), bytesLabel(s.heap[k].Median), bytesLabel(s.rss[k].Median),
					optDuration(s.getPut, k), optBytes(s.heapGet, k),
					optDuration(s.create, k), optDuration(s.remove, k), optDuration(s.floorGetPut, k))
			}
		}
		if _, v, ok := s.flat(cond); ok {
			verdicts = append(verdicts, fmt.Sprintf("- udev %s, thinlayer flat? %s", condLabel(cond), v))
		}
	}
	if rows == 0 { // no Init scenario in this run (BENCH_GROUPS without init)
		return nil
	}
	if len(verdicts) > 0 {
		b.WriteString("\n" + strings.Join(verdicts, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func optDuration(m map[Key]Stat, k Key) string {
	if s, ok := m[k]; ok {
		return Duration(s.Median)
	}
	return "–"
}

func optBytes(m map[Key]Stat, k Key) string {
	if s, ok := m[k]; ok {
		return bytesLabel(s.Median)
	}
	return "–"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func signedBytes(v float64) string {
	if v >= 0 {
		return "+" + bytesLabel(v)
	}
	return bytesLabel(v)
}

func bytesLabel(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%s%.1f MiB", sign, v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%s%.1f KiB", sign, v/(1<<10))
	}
	return fmt.Sprintf("%s%.0f B", sign, v)
}
