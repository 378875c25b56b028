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

// Growth limits for thinlayer's Init between the smallest and the largest
// home: it should not read per-layer state, so time stays within noise
// and the heap it keeps grows by less than a directory listing would take.
const (
	maxInitTimeGrowth = 2.0     // × the smallest home's Init time
	maxInitHeapGrowth = 1 << 20 // bytes
)

// WriteScaling writes Init time, heap and RSS growth by home size, per
// condition and driver, and whether thinlayer's Init stays flat.
func WriteScaling(w io.Writer, rs []Result) error {
	ns, heap, rss := Summarize(rs, "ns/op"), Summarize(rs, "heap-B"), Summarize(rs, "rss-B")
	var b strings.Builder
	b.WriteString("| udev | driver |")
	for _, s := range initScenarios {
		fmt.Fprintf(&b, " %d layers: Init / heap / RSS |", s.layers)
	}
	b.WriteString(" flat? |\n|---|---|" + strings.Repeat("---:|", len(initScenarios)) + "---|\n")
	for _, cond := range []string{"NoUdev", "Udev"} {
		for _, drv := range []string{Thinlayer, Peer} {
			line, any := scalingLine(ns, heap, rss, cond, drv)
			if any {
				b.WriteString(line)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func scalingLine(ns, heap, rss map[Key]Stat, cond, drv string) (string, bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s | %s |", condLabel(cond), drv)
	any := false
	var first, last *[2]float64
	for _, s := range initScenarios {
		k := Key{cond, s.name, drv}
		t, ok := ns[k]
		if !ok {
			b.WriteString(" – |")
			continue
		}
		any = true
		fmt.Fprintf(&b, " %s / %s / %s |", Duration(t.Median), bytesLabel(heap[k].Median), bytesLabel(rss[k].Median))
		v := [2]float64{t.Median, heap[k].Median}
		if first == nil {
			first = &v
		}
		last = &v
	}
	verdict := "–"
	if drv == Thinlayer && first != nil && last != first {
		verdict = fmt.Sprintf("%s (time ×%.2f, heap %s)", yesNo(last[0] <= maxInitTimeGrowth*first[0] && last[1]-first[1] <= maxInitHeapGrowth),
			last[0]/first[0], signedBytes(last[1]-first[1]))
	}
	fmt.Fprintf(&b, " %s |\n", verdict)
	return b.String(), any
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
