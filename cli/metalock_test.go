package cli_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/thinlayer/thinlayer/cli"
	"github.com/thinlayer/thinlayer/deviceset"
)

// envChild makes the test binary a child process of a test: "main" runs
// the thinlayer command line, "mapped-bytes" reads a layer's mapped bytes
// through the library on a read-only open (a metadata snapshot when the
// layer is not active); each envRepeat times, exiting with the worst
// status.
const (
	envChild  = "THINLAYER_CLI_TEST_CHILD"
	envRepeat = "THINLAYER_CLI_TEST_REPEAT"
)

func childMain(op string, args []string) int {
	reps, _ := strconv.Atoi(os.Getenv(envRepeat))
	worst := 0
	for i := 0; i < max(reps, 1); i++ {
		var rc int
		switch op {
		case "main":
			rc = cli.Main(args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
		case "mapped-bytes":
			rc = childMappedBytes(args[0], args[1], args[2:])
		default:
			fmt.Fprintf(os.Stderr, "unknown child op %q\n", op)
			return 3
		}
		worst = max(worst, rc)
	}
	return worst
}

func childMappedBytes(home, hash string, opts []string) int {
	cfg, err := deviceset.ParseOptions(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	ds, err := deviceset.Open(home, cfg, deviceset.OpenOptions{ReadOnly: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer ds.Leave()
	if _, err := ds.MappedBytes(hash); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// reader is a process that reads the pool's metadata several times.
type reader struct {
	name string
	cmd  *exec.Cmd
	out  strings.Builder
	errb strings.Builder
}

func startReader(t *testing.T, h cli.Home, kind string, reps int) *reader {
	t.Helper()
	var args []string
	op := "main"
	switch kind {
	case "ls":
		args = []string{"ls", "--sort", "exclusive", "--json", "--home", h.Dir}
	case "check":
		args = []string{"check", "--json", "--home", h.Dir}
	case "lib":
		op, args = "mapped-bytes", append([]string{h.Dir, "img"}, h.StorageOpts...)
	}
	r := &reader{name: kind, cmd: exec.Command(childBinary(t), args...)}
	r.cmd.Env = append(os.Environ(), envChild+"="+op, envRepeat+"="+strconv.Itoa(reps))
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.errb
	must(t, r.cmd.Start())
	return r
}

// wait reports what went wrong with the reader's reads, "" if nothing.
func (r *reader) wait() string {
	if err := r.cmd.Wait(); err != nil {
		what := r.errb.String()
		for _, l := range strings.Split(r.out.String(), "\n") {
			if strings.Contains(l, `"what"`) {
				what += l
			}
		}
		return fmt.Sprintf("%s: %v: %s", r.name, err, what)
	}
	if r.name != "ls" {
		return ""
	}
	dec := json.NewDecoder(strings.NewReader(r.out.String()))
	for {
		var l cli.Listing
		err := dec.Decode(&l)
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			return fmt.Sprintf("ls: output: %v", err)
		}
		if l.Warning != "" {
			return "ls: " + l.Warning
		}
	}
}

// Readers of a live pool's metadata, in processes of their own, two at a
// time many times over: the pool holds one metadata snapshot, and every
// reader — the command's ls and check, the library's MappedBytes — gets
// it in turn: none meets EBUSY or loses its snapshot to another's release.
func TestConcurrentMetadataReaders(t *testing.T) {
	h := newHome(t)
	dir := mountDir(t)
	// mount --rw leaves the pool up read-write and the home unlocked:
	// readers read it through a metadata snapshot.
	if rc, _, errOut := run(t, nil, "mount", "ctr", dir, "--rw", "--home", h.Dir); rc != 0 {
		t.Fatalf("mount --rw: rc %d: %s", rc, errOut)
	}
	defer func() {
		if rc, _, errOut := run(t, nil, "umount", dir, "--home", h.Dir); rc != 0 {
			t.Errorf("umount: rc %d: %s", rc, errOut)
		}
	}()
	pairs := [][2]string{{"ls", "ls"}, {"check", "ls"}, {"lib", "check"}, {"check", "check"}, {"lib", "ls"}, {"lib", "lib"}}
	const reps = 5
	var failed []string
	for i, p := range pairs {
		a, b := startReader(t, h, p[0], reps), startReader(t, h, p[1], reps)
		for _, r := range []*reader{a, b} {
			if what := r.wait(); what != "" {
				failed = append(failed, fmt.Sprintf("pair %d: %s", i, what))
			}
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d reader processes (%d reads each) failed:\n%s", len(failed), 2*len(pairs), reps, strings.Join(failed, "\n"))
	}
}

// childBinary is a copy of the test binary on the guest's tmpfs, for the
// children to exec.
func childBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		b, err := os.ReadFile(os.Args[0])
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(os.TempDir(), "cli-test-child")
		binErr = os.WriteFile(binPath, b, 0o700)
	})
	must(t, binErr)
	return binPath
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)
