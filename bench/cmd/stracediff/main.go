// Command stracediff prints syscalls per operation from two `strace -c`
// summaries of the same benchmark run with 1 and with 1+n iterations:
//
//	stracediff -n 20 short.txt long.txt
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/thinlayer/thinlayer/bench/stracecount"
)

func main() {
	n := flag.Int("n", 1, "iterations the long run has more than the short one")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: stracediff -n N short.txt long.txt")
		os.Exit(2)
	}
	var runs [2]stracecount.Counts
	for i, name := range flag.Args() {
		f, err := os.Open(name)
		if err == nil {
			runs[i], err = stracecount.Parse(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "stracediff:", err)
			os.Exit(1)
		}
	}
	ops := stracecount.Diff(runs[0], runs[1], *n)
	fmt.Printf("%-20s %10s\n", "syscall", "calls/op")
	for _, o := range ops {
		fmt.Printf("%-20s %10.1f\n", o.Name, o.Calls)
	}
	fmt.Printf("%-20s %10.1f\n", "total", stracecount.Total(ops))
}
