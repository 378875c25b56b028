// Package cli is the thinlayer command: it opens a devicemapper home — one
// thinlayer or Docker ≤ 24 made — to show its state (status, ls, check),
// get at a layer's files (mount, umount, export), add a layer (import), and
// clean up what a crash left (gc). Each command is a method of Home that
// returns a report, so programs and tests use them without the command
// line; Main is the command line over them.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
)

// Exit statuses.
const (
	ExitOK       = 0 // done; check found nothing wrong
	ExitProblems = 1 // check or gc found problems, or the command failed
	ExitUsage    = 2 // the command line is wrong
)

// Env is what a command runs with: its input, outputs and whether stderr
// is a terminal (progress bars go there only then).
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	StdoutTerminal bool
	StderrTerminal bool
}

// command is one subcommand.
type command struct {
	name, args, summary, help string
	nargs                     int // positional arguments wanted
	flags                     func(fs *flag.FlagSet) *cmdFlags
	run                       func(c *call) error
}

// cmdFlags holds every flag a command may define; each uses its own.
type cmdFlags struct {
	rw, dryRun, reverse bool
	parent, output      string
	input, sortKey      string
	to, dataRoot, name  string // docker-switch
	all                 bool   // images, save
	tag                 string // commit
	oci                 bool   // save, commit
	remove              bool   // docker-orphans
}

// call is one run of a command: common flags, its flags, its arguments.
type call struct {
	home  Home
	json  bool
	flags *cmdFlags
	args  []string
	env   Env
}

// Main runs the command line args (without the program name) and returns
// the exit status.
func Main(args []string, env Env) int {
	name, rest := splitCommand(args)
	if name == "" || name == "help" || name == "-h" || name == "--help" || name == "-help" {
		return help(rest, env)
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(env.Stderr, "thinlayer: unknown command %q\n\n", name)
		usage(env.Stderr)
		return ExitUsage
	}
	c, err := parse(cmd, rest, env)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "thinlayer %s: %v\nusage: %s (thinlayer help %s)\n", name, err, cmd.synopsis(), name)
		return ExitUsage
	}
	return report(name, cmd.run(c), env)
}

// splitCommand finds the command word: the first argument that is neither
// a common flag nor a common flag's value.
func splitCommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return a, append(append([]string(nil), args[:i]...), args[i+1:]...)
		}
		if n := strings.TrimLeft(a, "-"); (n == "home" || n == "storage-opt") && i+1 < len(args) {
			i++ // the flag's value
		}
		if a == "-h" || a == "--help" || a == "-help" {
			return "help", args[i+1:]
		}
	}
	return "", nil
}

// parse reads common and command flags, which may come anywhere among the
// positional arguments.
func parse(cmd command, args []string, env Env) (*call, error) {
	fs := flag.NewFlagSet("thinlayer "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &call{env: env, flags: cmd.flags(fs)}
	var opts stringList
	var debug bool
	fs.StringVar(&c.home.Dir, "home", DefaultHome, "")
	fs.Var(&opts, "storage-opt", "")
	fs.BoolVar(&c.json, "json", false, "")
	fs.BoolVar(&debug, "debug", false, "")
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(env.Stdout, commandHelp(cmd))
	}
	if err != nil {
		return nil, err
	}
	if cmd.nargs >= 0 && len(pos) != cmd.nargs {
		return nil, fmt.Errorf("want %d argument(s), got %d", cmd.nargs, len(pos))
	}
	c.args, c.home.StorageOpts = pos, opts
	if env.StderrTerminal && !c.json {
		c.home.Progress = env.Stderr
	}
	logrus.SetOutput(env.Stderr)
	logrus.SetLevel(logrus.WarnLevel)
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	return c, nil
}

func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// report turns a command's error into output and an exit status.
func report(name string, err error, env Env) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(env.Stderr, "thinlayer %s: %v\n", name, err)
		return ExitUsage
	case errors.Is(err, ErrProblems):
		fmt.Fprintf(env.Stderr, "thinlayer %s: %v\n", name, err)
		return ExitProblems
	}
	fmt.Fprintf(env.Stderr, "thinlayer %s: %v\n", name, err)
	if h := hint(err); h != "" {
		fmt.Fprintf(env.Stderr, "  what to do: %s\n", h)
	}
	return ExitProblems
}

func help(args []string, env Env) int {
	if len(args) == 0 {
		usage(env.Stdout)
		return ExitOK
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "thinlayer help: unknown command %q\n", args[0])
		return ExitUsage
	}
	fmt.Fprint(env.Stdout, commandHelp(cmd))
	return ExitOK
}

func usage(w io.Writer) {
	fmt.Fprint(w, "thinlayer: look after a devicemapper home (Docker ≤ 24's /var/lib/docker/devicemapper, or thinlayer's)\n\n")
	fmt.Fprint(w, "usage: thinlayer COMMAND [flags] [arguments]\n\ncommands:\n")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return cmds[names[i]].order() < cmds[names[j]].order() })
	rows := [][]string{}
	for _, n := range names {
		c := cmds[n]
		rows = append(rows, []string{"  " + n + " " + c.args, c.summary})
	}
	_ = table(w, rows)
	fmt.Fprint(w, commonHelp, exitHelp, "\n`thinlayer help COMMAND` (or COMMAND --help) tells more.\n")
}

func commandHelp(c command) string {
	return fmt.Sprintf("usage: %s\n\n%s\n%s%s", c.synopsis(), c.help, commonHelp, exitHelp)
}

func (c command) synopsis() string {
	return strings.TrimSpace("thinlayer " + c.name + " " + c.args)
}

const commonHelp = `
common flags (anywhere on the line):
  --home DIR              the devicemapper home (default ` + DefaultHome + `)
  --storage-opt dm.K=V    a dm.* option as the library and dockerd take it; repeatable
  --json                  machine-readable output on stdout
  --debug                 log what is done, on stderr
`

const exitHelp = `
exit status: 0 done (check: consistent); 1 problems found (check, gc) or the
command failed; 2 usage error. Errors go to stderr with what to do.
`

// CommandName is the command word of a command line ("" if none).
func CommandName(args []string) string {
	name, _ := splitCommand(args)
	return name
}
