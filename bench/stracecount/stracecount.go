// Package stracecount reads the summary `strace -c` prints (one row per
// syscall: % time, seconds, usecs/call, calls, errors, name) and works out
// syscalls per operation from two runs that differ only in iterations.
package stracecount

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Counts maps a syscall's name to its calls.
type Counts map[string]int

// Parse reads strace -c's table; the header, rulers and "total" row are
// skipped. A row with a malformed calls column is an error.
func Parse(r io.Reader) (Counts, error) {
	c := Counts{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 5 || f[0] == "%" || strings.HasPrefix(f[0], "---") {
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			continue
		}
		calls, err := strconv.Atoi(f[3])
		if err != nil || calls < 0 {
			return nil, fmt.Errorf("strace -c row %q: calls %q", s.Text(), f[3])
		}
		c[name] += calls
	}
	return c, s.Err()
}

// PerOp is one syscall's calls per operation.
type PerOp struct {
	Name  string
	Calls float64
}

// Diff is (long - short) / n per syscall, most frequent first; syscalls
// that did not get more frequent are left out.
func Diff(short, long Counts, n int) []PerOp {
	var out []PerOp
	for name, c := range long {
		if d := c - short[name]; d > 0 && n > 0 {
			out = append(out, PerOp{name, float64(d) / float64(n)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Calls != out[j].Calls {
			return out[i].Calls > out[j].Calls
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Total sums calls per operation.
func Total(ops []PerOp) float64 {
	t := 0.0
	for _, o := range ops {
		t += o.Calls
	}
	return t
}
