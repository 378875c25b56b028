// Command benchtable reads the bench module's benchmark output (files, or
// standard input) and prints the Markdown tables of docs/benchmarks.md:
// thinlayer against the peer and the floor per scenario and udev
// condition, with the targets, and Init by home size.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/thinlayer/thinlayer/bench/benchtable"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(files []string, out io.Writer) error {
	var rs []benchtable.Result
	if len(files) == 0 {
		var err error
		if rs, err = benchtable.Parse(os.Stdin); err != nil {
			return err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		r, err := benchtable.Parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rs = append(rs, r...)
	}
	if len(rs) == 0 {
		return fmt.Errorf("no benchmark results")
	}
	if err := benchtable.WriteMarkdown(out, benchtable.Rows(rs)); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := benchtable.WriteConcurrency(out, rs); err != nil {
		return err
	}
	if err := benchtable.WriteFileFloors(out, rs); err != nil {
		return err
	}
	return benchtable.WriteScaling(out, rs)
}
