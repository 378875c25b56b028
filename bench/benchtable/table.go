package benchtable

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Driver names in the results.
const (
	Thinlayer = "thinlayer"
	Peer      = "moby"
	Floor     = "floor"
	// PeerSnapshotter is containerd's devmapper snapshotter, the peer of
	// the engine table's containerd row (read in the peer column).
	PeerSnapshotter = "devmapper"
)

// Key names one series: a scenario on a driver under a udev condition.
type Key struct{ Condition, Scenario, Driver string }

// Stat sums up a series' values of one unit.
type Stat struct {
	Median, Min, Max float64
	N                int
}

// Spread is half the range as a fraction of the median (benchstat's ±).
func (s Stat) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / 2 / s.Median
}

// Summarize groups results by key and sums up unit in each group.
func Summarize(rs []Result, unit string) map[Key]Stat {
	vals := map[Key][]float64{}
	for _, r := range rs {
		if v, ok := r.Metrics[unit]; ok {
			k := Key{r.Condition, r.Scenario, r.Driver}
			vals[k] = append(vals[k], v)
		}
	}
	out := make(map[Key]Stat, len(vals))
	for k, v := range vals {
		slices.Sort(v)
		med := v[len(v)/2]
		if len(v)%2 == 0 {
			med = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		out[k] = Stat{Median: med, Min: v[0], Max: v[len(v)-1], N: len(v)}
	}
	return out
}

// Target is what the issue asks of a scenario: thinlayer/peer at most
// Ratio, thinlayer/floor at most FloorRatio, thinlayer's throughput at
// least Speedup × the peer's (0: no such target); Flat:
// thinlayer's Init time and heap must not grow with the home's size (see
// WriteScaling), judged against the smallest home; Alone: thinlayer only
// (its containerd snapshotter), no peer and nothing to judge — the row is
// read next to the graph driver's CreateRemove; Reported: measured
// against the peer and shown, not judged (docker run, which runc's and
// the shim's execs dominate in the test kernel).
type Target struct {
	Ratio, FloorRatio, Speedup float64
	Flat, Alone, Reported      bool
}

// TargetFor is the target for scenario under condition.
func TargetFor(condition, scenario string) Target {
	udev := condition == "Udev"
	pick := func(noUdev, withUdev float64) float64 {
		if udev {
			return withUdev
		}
		return noUdev
	}
	switch scenario {
	case "GetPutWarm":
		return Target{Ratio: pick(0.6, 0.3)}
	case "GetPutCold":
		return Target{Ratio: pick(1.0, 0.3), FloorRatio: 1.05}
	case "CreateRemove":
		return Target{Ratio: 0.25}
	case "Lifecycle", "Concurrent1":
		return Target{Ratio: pick(0.5, 0.3)}
	case "ApplyDiff100":
		return Target{Ratio: 0.2, FloorRatio: 1.3}
	case "DiffBase":
		return Target{Ratio: 0.5, FloorRatio: 1.3}
	case "Concurrent8", "Concurrent32", "Pull8":
		return Target{Speedup: pick(3, 10)}
	case "Init500":
		return Target{Ratio: 0.1}
	case "Init10000":
		return Target{Flat: true}
	case "SnapPrepareCommit", "SnapRemove":
		return Target{Alone: true}
	case "DockerLoad10", "DockerLoad50", "DockerCreateRm", "DockerCommit", "DockerRmi50":
		return Target{Ratio: pick(0.7, 0.3)}
	case "DockerdStart500":
		return Target{Ratio: 0.2}
	case "DockerRunRm":
		return Target{Reported: true}
	case "CtrImportRun":
		return Target{Ratio: 0.3}
	}
	return Target{Ratio: 1.0}
}

// Row is one line of the table.
type Row struct {
	Condition, Scenario   string
	Thin, Peer, FloorStat Stat
	HasPeer, HasFloor     bool
	Ratio, FloorRatio     float64 // NaN where not measured
	Target                Target
	Met                   bool
	Verdict               string // "yes", "no", or why not judged
}

// Rows builds the table from results, in the order scenarios first appear.
func Rows(rs []Result) []Row {
	ns, flat := Summarize(rs, "ns/op"), newInitStats(rs)
	var rows []Row
	seen := map[[2]string]bool{}
	for _, r := range rs {
		id := [2]string{r.Condition, r.Scenario}
		if seen[id] {
			continue
		}
		seen[id] = true
		rows = append(rows, row(ns, flat, r.Condition, r.Scenario))
	}
	sort.SliceStable(rows, func(i, j int) bool { return conditionOrder(rows[i].Condition) < conditionOrder(rows[j].Condition) })
	return rows
}

func conditionOrder(c string) int {
	if c == "NoUdev" {
		return 0
	}
	return 1
}

func row(ns map[Key]Stat, flat initStats, cond, scen string) Row {
	r := Row{Condition: cond, Scenario: scen, Ratio: math.NaN(), FloorRatio: math.NaN(), Target: TargetFor(cond, scen)}
	var hasThin bool
	r.Thin, hasThin = ns[Key{cond, scen, Thinlayer}]
	r.Peer, r.HasPeer = ns[Key{cond, scen, Peer}]
	if !r.HasPeer {
		r.Peer, r.HasPeer = ns[Key{cond, scen, PeerSnapshotter}]
	}
	r.FloorStat, r.HasFloor = ns[Key{cond, scen, Floor}]
	if hasThin && r.HasPeer {
		r.Ratio = r.Thin.Median / r.Peer.Median
	}
	if hasThin && r.HasFloor {
		r.FloorRatio = r.Thin.Median / r.FloorStat.Median
	}
	r.Met, r.Verdict = judge(r, hasThin)
	if r.Target.Flat && hasThin {
		var measured bool
		if r.Met, r.Verdict, measured = flat.flat(cond); !measured {
			r.Met, r.Verdict = false, "no smaller home to compare with"
		}
	}
	return r
}

func judge(r Row, hasThin bool) (bool, string) {
	if !hasThin {
		return false, "thinlayer not measured"
	}
	if r.Target.Alone || r.Target.Reported {
		return false, "not judged"
	}
	met := true
	if r.Target.Ratio > 0 {
		if math.IsNaN(r.Ratio) {
			return false, "no peer result"
		}
		met = met && r.Ratio <= r.Target.Ratio
	}
	if r.Target.Speedup > 0 {
		if math.IsNaN(r.Ratio) {
			return false, "no peer result"
		}
		met = met && 1/r.Ratio >= r.Target.Speedup
	}
	if r.Target.FloorRatio > 0 {
		if math.IsNaN(r.FloorRatio) {
			return false, "no floor result"
		}
		met = met && r.FloorRatio <= r.Target.FloorRatio
	}
	if met {
		return true, "yes"
	}
	return false, "no"
}

// WriteMarkdown writes rows as a Markdown table.
func WriteMarkdown(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| udev | scenario | thinlayer | peer (Moby) | ratio | floor | thinlayer/floor | target | met |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			condLabel(r.Condition), r.Scenario, stat(r.Thin, true), stat(r.Peer, r.HasPeer), ratio(r.Ratio),
			stat(r.FloorStat, r.HasFloor), ratio(r.FloorRatio), targetLabel(r.Target), r.Verdict)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func condLabel(c string) string {
	switch c {
	case "NoUdev":
		return "off"
	case "Udev":
		return "on"
	}
	return c
}

func targetLabel(t Target) string {
	if t.Alone {
		return "snapshotter, no peer: read with CreateRemove"
	}
	if t.Reported {
		return "reported (runc dominates)"
	}
	var parts []string
	if t.Flat {
		parts = append(parts, "works; Init time and heap flat")
	}
	if t.Ratio > 0 {
		parts = append(parts, fmt.Sprintf("ratio ≤ %g", t.Ratio))
	}
	if t.Speedup > 0 {
		parts = append(parts, fmt.Sprintf("throughput ≥ %g × peer", t.Speedup))
	}
	if t.FloorRatio > 0 {
		parts = append(parts, fmt.Sprintf("≤ %g × floor", t.FloorRatio))
	}
	return strings.Join(parts, ", ")
}

func ratio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func stat(s Stat, ok bool) string {
	if !ok || s.N == 0 {
		return "–"
	}
	out := Duration(s.Median)
	if s.N > 1 {
		out += fmt.Sprintf(" ±%.0f%%", 100*s.Spread())
	}
	return out
}

// Duration formats nanoseconds with 3 significant digits.
func Duration(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%.0fns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", ns/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", ns/1e6)
	}
	return fmt.Sprintf("%.3gs", ns/1e9)
}
