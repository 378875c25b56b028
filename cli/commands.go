package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/thinlayer/thinlayer/internal/buildinfo"
)

// commandOrder is how help lists the commands.
var commandOrder = []string{"status", "ls", "mount", "umount", "export", "import", "check", "gc", "docker-switch", "docker-orphans", "images", "containers", "save", "commit", "demo", "version"}

func (c command) order() int {
	for i, n := range commandOrder {
		if n == c.name {
			return i
		}
	}
	return len(commandOrder)
}

func noFlags(*flag.FlagSet) *cmdFlags { return &cmdFlags{} }

func commands() map[string]command {
	list := []command{
		{name: "status", summary: "the driver's status and the pool's usage", flags: noFlags, run: runStatus,
			help: "Shows what `docker info` showed for the devicemapper driver, and the pool's data and\nmetadata use. Read-only."},
		{name: "ls", args: "[--sort KEY] [-r]", summary: "every layer: thin id, size, space used, mounted, state", flags: lsFlags, run: runLs,
			help: "Lists every layer: thin device id, virtual size, the space the pool has mapped for it\n(EXCLUSIVE: only it uses, what removing it frees; SHARED: shared with its relatives),\nwhere it is mounted, and its state. --sort id|device|size|mapped|exclusive, -r reverses.\nRead-only."},
		{name: "mount", args: "ID DIR [--rw]", nargs: 2, summary: "mount a layer's files on DIR (read-only unless --rw)", flags: mountFlags, run: runMount,
			help: "Mounts the files of layer ID (its rootfs/; a containerd snapshot's whole filesystem)\non the existing directory DIR and leaves them mounted: the safe way into a stopped\ncontainer's or an image's files. Read-only unless --rw, which opens the home for\nwriting. Undo with `thinlayer umount DIR`."},
		{name: "umount", args: "DIR", nargs: 1, summary: "undo a thinlayer mount", flags: noFlags, run: runUmount,
			help: "Unmounts DIR, deactivates the layer's device if nothing else has it mounted, and takes\ndown the pool if a read-only command brought it up and nothing else uses it."},
		{name: "export", args: "ID [--parent P] [-o FILE]", nargs: 1, summary: "write a layer (or its diff over P) as a tar", flags: exportFlags, run: runExport,
			help: "Writes layer ID's whole tree as a tar, or with --parent P only what it changes over P\n(whiteouts for deletions, as `docker save` layers have). To stdout (not a terminal) or\n-o FILE. Read-only."},
		{name: "import", args: "ID [--parent P] [-i FILE]", nargs: 1, summary: "create layer ID from a tar (plain, gzip or zstd)", flags: importFlags, run: runImport,
			help: "Creates layer ID as a snapshot of P (of the base device without --parent) and applies\nthe tar read from -i FILE or stdin: plain, gzip or zstd. A failed import removes the\nlayer again. Needs the home to itself."},
		{name: "check", summary: "is the home consistent? (exit 1 if not)", flags: noFlags, run: runCheck,
			help: "Checks the pool's state (needs_check, read-only, out of space), an interrupted\ntransaction, the base device's UUID, every DevInfo file, and the thin devices the pool\nholds against those the DevInfo files name. Each problem says what to do. Read-only."},
		{name: "gc", args: "[--dry-run]", summary: "delete thin devices no layer names; finish deferred deletions", flags: gcFlags, run: runGC,
			help: "Settles an interrupted transaction, finishes pending deferred deletions and deletes the\npool's thin devices that no layer names (what a crash can leave). --dry-run only says\nwhat it would do. Needs the home to itself."},
		{name: "docker-switch", args: "--to plugin|builtin [--data-root DIR] [--name NAME] [--dry-run]", summary: "move a stopped Docker between its devicemapper driver and the thinlayer plugin", flags: switchFlags, run: runDockerSwitch,
			help: "Moves a stopped Docker's images and containers from its built-in devicemapper driver\n(Docker ≤ 24) to the thinlayer-docker-plugin (--to plugin), or back (--to builtin):\nrenames <data-root>/image/devicemapper to image/NAME and rewrites each container's\nconfig.v2.json Driver, or the reverse. The layers stay in <data-root>/devicemapper, which\nthe plugin serves. Refuses while dockerd runs. Safe to run again after an interruption.\n--data-root defaults to /var/lib/docker, --name (the plugin's) to thinlayer; --home is\nnot used."},
		{name: "docker-orphans", args: "[--data-root DIR] [--name DRIVER] [--remove]", summary: "layers of the home a stopped Docker's image store does not name", flags: orphansFlags, run: runDockerOrphans,
			help: "Lists the layers of the home that Docker's layer store (<data-root>/image/DRIVER/layerdb:\nevery image layer's cache-id, every container's mount-id and init-id) does not name:\nwhat a docker load interrupted between the driver's create and Docker's record leaves,\nwhich Docker itself never removes. --remove removes them. Refuses while dockerd runs;\nleaves a containerd snapshotter's layers and layers marked deleted alone. --data-root\ndefaults to the directory holding --home; DRIVER to devicemapper or thinlayer, whichever\nimage store exists."},
		{name: "images", args: "[-a] [--data-root DIR]", summary: "the images of the Docker whose home this is, as docker images listed them", flags: leaveFlags, run: runImages, help: imagesHelp},
		{name: "containers", args: "[--data-root DIR]", summary: "its containers, as docker ps -a listed them, with their read-write layers", flags: leaveFlags, run: runContainers, help: containersHelp},
		{name: "save", args: "IMAGE... | --all [--oci] [-o FILE] [--data-root DIR]", nargs: -1, summary: "write images as a docker save archive, layers byte for byte", flags: leaveFlags, run: runSave, help: saveHelp},
		{name: "commit", args: "CONTAINER [--tag NAME:TAG] [--oci] [-o FILE] [--data-root DIR]", nargs: 1, summary: "write a container's changes on its image as a docker save archive", flags: leaveFlags, run: runCommit, help: commitHelp},
		{name: "demo", summary: "a tour in a throwaway home (boots User-Mode Linux if needed)", flags: noFlags, run: runDemo, nargs: 0,
			help: "Makes a small loop-backed home in a temporary directory and walks through the commands:\nimport a generated root filesystem, snapshot it, mount and change it, ls, status, the\nchanges and diff size, export the diff, remove everything, check. --home is ignored."},
		{name: "version", summary: "thinlayer's version and commit", flags: noFlags, run: runVersion, nargs: 0,
			help: "Prints the module version and the commit this thinlayer was built from (--json: as an object)."},
	}
	m := make(map[string]command, len(list))
	for _, c := range list {
		m[c.name] = c
	}
	return m
}

func lsFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.StringVar(&f.sortKey, "sort", "id", "")
	fs.BoolVar(&f.reverse, "r", false, "")
	return f
}

func mountFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.BoolVar(&f.rw, "rw", false, "")
	return f
}

func exportFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.StringVar(&f.parent, "parent", "", "")
	fs.StringVar(&f.output, "o", "", "")
	fs.StringVar(&f.output, "output", "", "")
	return f
}

func switchFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.StringVar(&f.to, "to", "", "")
	fs.StringVar(&f.dataRoot, "data-root", DefaultDataRoot, "")
	fs.StringVar(&f.name, "name", DefaultPluginName, "")
	fs.BoolVar(&f.dryRun, "dry-run", false, "")
	return f
}

func runDockerSwitch(c *call) error {
	from, to := DockerBuiltinDriver, c.flags.name
	switch c.flags.to {
	case "plugin":
	case "builtin":
		from, to = to, from
	default:
		return fmt.Errorf("%w: --to plugin or --to builtin", ErrUsage)
	}
	r, err := DockerSwitch(c.flags.dataRoot, from, to, c.flags.dryRun)
	if err != nil {
		return err
	}
	return c.output(r)
}

func importFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.StringVar(&f.parent, "parent", "", "")
	fs.StringVar(&f.input, "i", "", "")
	fs.StringVar(&f.input, "input", "", "")
	return f
}

func gcFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.BoolVar(&f.dryRun, "dry-run", false, "")
	return f
}

// printer is a report that prints itself for people.
type printer interface{ Print(w io.Writer) error }

func (c *call) output(r printer) error {
	if c.json {
		return writeJSON(c.env.Stdout, r)
	}
	return r.Print(c.env.Stdout)
}

func runStatus(c *call) error {
	r, err := c.home.Status()
	if err != nil {
		return err
	}
	return c.output(r)
}

func runLs(c *call) error {
	if err := SortLayers(nil, c.flags.sortKey, false); err != nil {
		return err
	}
	l, err := c.home.List()
	if err != nil {
		return err
	}
	_ = SortLayers(l.Layers, c.flags.sortKey, c.flags.reverse)
	if c.json {
		return writeJSON(c.env.Stdout, l)
	}
	return l.Print(c.env.Stdout, c.env.Stderr)
}

func runMount(c *call) error {
	r, err := c.home.Mount(c.args[0], c.args[1], c.flags.rw)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.env.Stdout, r)
	}
	mode := "read-only"
	if !r.ReadOnly {
		mode = "read-write"
	}
	what := "its files (rootfs/)"
	switch {
	case r.Snapshot:
		what = "its files (a containerd snapshot: its whole filesystem)"
	case r.Subdir == "":
		what = "its whole filesystem (it has no rootfs/: no driver ever mounted it)"
	}
	_, err = fmt.Fprintf(c.env.Stdout, "layer %s (%s) mounted %s on %s: %s\nundo with: thinlayer umount %s\n",
		r.ID, r.Device, mode, r.Dir, what, r.Dir)
	return err
}

func runUmount(c *call) error {
	r, err := c.home.Unmount(c.args[0])
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.env.Stdout, r)
	}
	fmt.Fprintf(c.env.Stdout, "unmounted %s (%s)\n", r.Dir, r.Device)
	if r.Deactivated {
		fmt.Fprintf(c.env.Stdout, "deactivated %s\n", r.Device)
	}
	if r.PoolRemoved != "" {
		fmt.Fprintf(c.env.Stdout, "took down read-only pool %s\n", r.PoolRemoved)
	}
	if r.Note != "" {
		fmt.Fprintf(c.env.Stdout, "note: %s\n", r.Note)
	}
	return nil
}

func runExport(c *call) (err error) {
	w := c.env.Stdout
	if c.flags.output == "" && c.env.StdoutTerminal {
		return fmt.Errorf("%w: refusing to write a tar to a terminal: use -o FILE or a pipe", ErrUsage)
	}
	if c.flags.output != "" && c.flags.output != "-" {
		f, oerr := os.OpenFile(c.flags.output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if oerr != nil {
			return oerr
		}
		defer func() { // err is the named result: the export's outcome
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(c.flags.output) // no half a tar
			}
		}()
		w = f
	}
	n, err := c.home.Export(c.args[0], c.flags.parent, w)
	if err == nil && c.flags.output != "" && c.flags.output != "-" {
		fmt.Fprintf(c.env.Stderr, "wrote %s (%s)\n", c.flags.output, human(uint64(n)))
	}
	return err
}

func runImport(c *call) error {
	r, size := c.env.Stdin, int64(-1)
	if c.flags.input != "" && c.flags.input != "-" {
		f, err := os.Open(c.flags.input)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		r = f
	}
	n, err := c.home.Import(c.args[0], c.flags.parent, r, size)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.env.Stdout, map[string]any{"id": c.args[0], "parent": c.flags.parent, "size": n})
	}
	_, err = fmt.Fprintf(c.env.Stdout, "imported layer %s (%s of file content)\n", c.args[0], human(uint64(n)))
	return err
}

func runCheck(c *call) error {
	r, err := c.home.Check()
	if err != nil {
		return err
	}
	if err := c.output(r); err != nil {
		return err
	}
	if !r.OK() {
		return fmt.Errorf("%w: %s", ErrProblems, plural(len(r.Problems), "problem"))
	}
	return nil
}

func runGC(c *call) error {
	r, err := c.home.GC(c.flags.dryRun)
	if r != nil && (err == nil || r.DryRun) {
		if perr := c.output(r); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	return r.Err()
}

// hint says what to do about an error, when something can be said.
func hint(err error) string {
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return h.what
		}
	}
	return ""
}

func runVersion(c *call) error {
	in := buildinfo.Read()
	if c.json {
		return writeJSON(c.env.Stdout, in)
	}
	_, err := fmt.Fprintln(c.env.Stdout, in)
	return err
}
