package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	units "github.com/docker/go-units"
)

// Output for people is aligned tables; for scripts, JSON (--json).

// table writes rows as aligned columns, the first row as the header.
func table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if _, err := fmt.Fprintln(tw, strings.Join(r, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// keyValues writes "key:  value" lines with the values aligned.
func keyValues(w io.Writer, rows [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if _, err := fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1]); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// human is a byte count as Moby prints sizes ("1.5GB").
func human(n uint64) string { return units.HumanSize(float64(n)) }

// humanOpt is human for a count that may be unknown.
func humanOpt(n *uint64) string {
	if n == nil {
		return "-"
	}
	return human(*n)
}

func percent(used, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(used) * 100 / float64(total)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
