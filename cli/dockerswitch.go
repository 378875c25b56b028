package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/internal/recordfile"
)

// Docker's names for the two ways to run a devicemapper home.
const (
	DockerBuiltinDriver = "devicemapper"    // Docker ≤ 24's own driver
	DefaultPluginName   = "thinlayer"       // thinlayer-docker-plugin's default --name
	DefaultDataRoot     = "/var/lib/docker" // dockerd's default --data-root
)

// ErrDockerRunning: a dockerd process runs; Docker's files must not change
// under it.
var ErrDockerRunning = errors.New("dockerd is running")

// SwitchReport says what DockerSwitch did (or, dry, would do).
type SwitchReport struct {
	DataRoot   string   `json:"data_root"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	DryRun     bool     `json:"dry_run"`
	Rewritten  []string `json:"rewritten_containers"`
	Done       []string `json:"already_switched_containers,omitempty"`
	Skipped    []string `json:"skipped_containers,omitempty"` // made under another driver
	ImageStore string   `json:"image_store"`                  // its path after the switch
	Next       string   `json:"next"`
}

// DockerSwitch moves a stopped Docker's images and containers from driver
// from to driver to: Docker keys its image store by driver name
// (<data-root>/image/<driver>/) and refuses a container whose
// config.v2.json names another driver. The home itself stays where it is
// (<data-root>/devicemapper); the plugin is told to serve it. Containers'
// configs are rewritten first and the image store renamed last, so a run
// cut short is finished by running it again; switching back undoes it.
func DockerSwitch(dataRoot, from, to string, dryRun bool) (*SwitchReport, error) {
	for _, n := range []string{from, to} {
		if !validDriverName(n) {
			return nil, fmt.Errorf("%w: %q cannot name a Docker storage driver", ErrUsage, n)
		}
	}
	if pid := runningDockerd(); pid != 0 {
		return nil, fmt.Errorf("%w (pid %d): stop it first (systemctl stop docker docker.socket)", ErrDockerRunning, pid)
	}
	r := &SwitchReport{DataRoot: dataRoot, From: from, To: to, DryRun: dryRun,
		ImageStore: filepath.Join(dataRoot, "image", to)}
	src, dst := filepath.Join(dataRoot, "image", from), r.ImageStore
	srcOK, dstOK := isDir(src), isDir(dst)
	switch {
	case srcOK && dstOK:
		return nil, fmt.Errorf("%w: both %s and %s exist (dockerd ran on %s before?): move %s away if it holds nothing you need", ErrUsage, src, dst, to, dst)
	case !srcOK && !dstOK:
		return nil, fmt.Errorf("%w: no image store %s: is %s Docker's data root, on driver %s?", ErrUsage, src, dataRoot, from)
	}
	if err := r.rewriteContainers(from, to); err != nil {
		return r, err
	}
	if srcOK && !dryRun {
		if err := os.Rename(src, dst); err != nil {
			return r, fmt.Errorf("move the image store: %w", err)
		}
		if err := recordfile.SyncDir(filepath.Dir(dst)); err != nil {
			return r, err
		}
	}
	r.Next = nextSteps(dataRoot, to)
	return r, nil
}

func (r *SwitchReport) rewriteContainers(from, to string) error {
	dirs, err := os.ReadDir(filepath.Join(r.DataRoot, "containers"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range dirs {
		cfg := filepath.Join(r.DataRoot, "containers", d.Name(), "config.v2.json")
		driver, err := rewriteDriver(cfg, from, to, r.DryRun)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // not a container (Docker leaves nothing else here)
		case err != nil:
			return fmt.Errorf("container %s: %w", d.Name(), err)
		case driver == from:
			r.Rewritten = append(r.Rewritten, d.Name())
		case driver == to:
			r.Done = append(r.Done, d.Name())
		default:
			r.Skipped = append(r.Skipped, d.Name()+" ("+driver+")")
		}
	}
	return nil
}

// rewriteDriver sets the config's "Driver" to to when it is from, keeping
// every other field as it is, by a synced write and a rename. It returns
// the driver the config named.
func rewriteDriver(path, from, to string, dryRun bool) (string, error) {
	b, err := readRegular(path)
	if err != nil {
		return "", err
	}
	var cfg map[string]json.RawMessage
	var driver string
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(cfg["Driver"], &driver); err != nil {
		return "", fmt.Errorf("%s: no Driver: %w", path, err)
	}
	if driver != from || dryRun {
		return driver, nil
	}
	cfg["Driver"], _ = json.Marshal(to)
	out, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return driver, replaceFile(path, out)
}

// readRegular reads a file Docker wrote, refusing a symlink or a non-file.
func readRegular(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

func replaceFile(path string, b []byte) error {
	tmp := path + ".thinlayer-switch"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return recordfile.SyncDir(filepath.Dir(path))
}

// validDriverName: what Docker accepts as a plugin name, and nothing that
// could leave <data-root>/image as a path.
func validDriverName(n string) bool {
	if n == "" || n[0] == '.' || n[0] == '-' {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

func nextSteps(dataRoot, to string) string {
	home := filepath.Join(dataRoot, DockerBuiltinDriver)
	if to == DockerBuiltinDriver {
		return "stop thinlayer-docker-plugin, then start dockerd (Docker ≤ 24) with --storage-driver devicemapper and its dm.* options"
	}
	return fmt.Sprintf("start `thinlayer-docker-plugin --name %s --home %s` (with the dm.* options dockerd had), then dockerd --experimental --storage-driver %s", to, home, to)
}

// Print writes the report for people.
func (r *SwitchReport) Print(w io.Writer) error {
	verb := "moved"
	if r.DryRun {
		verb = "would move"
	}
	fmt.Fprintf(w, "%s Docker in %s from %s to %s: image store %s, %d container(s) rewritten", verb, r.DataRoot, r.From, r.To, r.ImageStore, len(r.Rewritten))
	if len(r.Done) > 0 {
		fmt.Fprintf(w, ", %d already on %s", len(r.Done), r.To)
	}
	fmt.Fprintln(w)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  left alone, made under another driver: %s\n", s)
	}
	_, err := fmt.Fprintf(w, "next: %s\n", r.Next)
	return err
}
