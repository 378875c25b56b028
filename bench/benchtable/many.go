package benchtable

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Tar is the second reference of file work: GNU tar between the same
// mounts the floor uses.
const Tar = "tar"

// concurrencyScenarios are the many-at-once scenarios; lifecycle ones are
// compared with Concurrent1, the same code one at a time.
var concurrencyScenarios = []struct {
	name      string
	lifecycle bool
}{{"Concurrent1", true}, {"Concurrent8", true}, {"Concurrent32", true}, {"Pull8", false}}

// WriteConcurrency writes, per condition, the throughput of the
// many-at-once scenarios (operations a second, from the median ns/op),
// thinlayer's over the peer's with the target, and for lifecycles each
// driver's throughput over its own one at a time (Concurrent1). Nothing is
// written when no such scenario ran.
func WriteConcurrency(w io.Writer, rs []Result) error {
	ns := Summarize(rs, "ns/op")
	var b strings.Builder
	for _, cond := range []string{"NoUdev", "Udev"} {
		for _, sc := range concurrencyScenarios {
			thin, okT := ns[Key{cond, sc.name, Thinlayer}]
			if !okT {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("| udev | scenario | thinlayer ops/s | peer (Moby) ops/s | throughput thinlayer/peer | target | met | thinlayer × one at a time | Moby × one at a time |\n")
				b.WriteString("|---|---|---:|---:|---:|---|---|---:|---:|\n")
			}
			r := row(ns, initStats{}, cond, sc.name)
			speedup := math.NaN()
			if r.HasPeer {
				speedup = r.Peer.Median / thin.Median
			}
			serialT, serialP := math.NaN(), math.NaN()
			if sc.lifecycle {
				serialT = overSerial(ns, Key{cond, "Concurrent1", Thinlayer}, thin)
				serialP = overSerial(ns, Key{cond, "Concurrent1", Peer}, r.Peer)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", condLabel(cond), sc.name,
				opsLabel(thin, true), opsLabel(r.Peer, r.HasPeer), times(speedup), targetLabel(r.Target), r.Verdict,
				times(serialT), times(serialP))
		}
	}
	if b.Len() == 0 {
		return nil
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// overSerial is the throughput of many over that of one at a time (the
// series at k), NaN if either is missing.
func overSerial(ns map[Key]Stat, k Key, many Stat) float64 {
	one, ok := ns[k]
	if !ok || many.N == 0 || many.Median == 0 {
		return math.NaN()
	}
	return one.Median / many.Median
}

func opsLabel(s Stat, ok bool) string {
	if !ok || s.N == 0 || s.Median == 0 {
		return "–"
	}
	out := fmt.Sprintf("%.3g", 1e9/s.Median)
	if s.N > 1 {
		out += fmt.Sprintf(" ±%.0f%%", 100*s.Spread())
	}
	return out
}

func times(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// WriteFileFloors writes, for every scenario measured with GNU tar as a
// reference, the drivers next to the floor and tar, and their ratios to
// them. Nothing is written when no such scenario ran.
func WriteFileFloors(w io.Writer, rs []Result) error {
	ns := Summarize(rs, "ns/op")
	var b strings.Builder
	seen := map[Key]bool{}
	for _, cond := range []string{"NoUdev", "Udev"} {
		for _, r := range rs {
			k := Key{cond, r.Scenario, Tar}
			if r.Condition != cond || r.Driver != Tar || seen[k] {
				continue
			}
			seen[k] = true
			if b.Len() == 0 {
				b.WriteString("| udev | scenario | thinlayer | peer (Moby) | floor | GNU tar | thinlayer/floor | thinlayer/tar | Moby/floor |\n")
				b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
			}
			get := func(drv string) (Stat, bool) { s, ok := ns[Key{cond, r.Scenario, drv}]; return s, ok }
			thin, okT := get(Thinlayer)
			moby, okP := get(Peer)
			fl, okF := get(Floor)
			tr, _ := get(Tar)
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", condLabel(cond), r.Scenario,
				stat(thin, okT), stat(moby, okP), stat(fl, okF), stat(tr, true),
				ratio(div(thin, okT, fl, okF)), ratio(div(thin, okT, tr, true)), ratio(div(moby, okP, fl, okF)))
		}
	}
	if b.Len() == 0 {
		return nil
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func div(a Stat, okA bool, c Stat, okC bool) float64 {
	if !okA || !okC || c.Median == 0 {
		return math.NaN()
	}
	return a.Median / c.Median
}
