package enginetest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinlayer/thinlayer/cli"
)

// Issue 14's benchmark: thinlayer save of a big image straight from a
// stopped Docker's devicemapper home vs `docker save` by Docker 20.10 on
// that home, same kernel, same run. scripts/bench.sh's group "leave" runs
// it; make test does not (-run never names a benchmark).
var (
	leaveMiB    = flag.Int("leave-mib", 1024, "BenchmarkSaveLeave: image size in MiB")
	leaveLayers = flag.Int("leave-layers", 20, "BenchmarkSaveLeave: layers of the image")
	leaveRounds = flag.Int("leave-rounds", 3, "BenchmarkSaveLeave: rounds, thinlayer and docker in turn")
)

// leaveBenchOpts: a pool and a base device big enough for the image.
var leaveBenchOpts = []string{"dm.override_udev_sync_check=true", "dm.loopdatasize=8G", "dm.loopmetadatasize=256M", "dm.basesize=4G", "dm.fs=ext4"}

const leaveBenchImage = "leave/big:1"

// BenchmarkSaveLeave: each round saves the image once with thinlayer
// (dockerd stopped, as it must be) and once with docker save (dockerd
// started untimed); both write into a counting sink. The log ends with
// the medians and their ratio.
func BenchmarkSaveLeave(b *testing.B) {
	docker, _ := requireEngine(b)
	e := newBareEngine(b, docker)
	e.home = filepath.Join(e.dir, "data", "devicemapper")
	start := time.Now()
	e.startDockerdOn(b, "devicemapper", leaveBenchOpts...)
	loadBigImage(b, e, *leaveMiB<<20, *leaveLayers)
	e.dockerd.stop(b)
	b.Logf("loaded %d MiB in %d layers on Docker's devicemapper: %v", *leaveMiB, *leaveLayers, time.Since(start))

	times := map[string][]time.Duration{}
	sizes := map[string]int64{}
	for r := 1; r <= *leaveRounds; r++ {
		for _, who := range []string{"thinlayer", "docker"} {
			b.Run(fmt.Sprintf("round%d/%s", r, who), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					d, n := e.saveOnce(b, who)
					times[who], sizes[who] = append(times[who], d), n
					b.SetBytes(n)
				}
			})
		}
	}
	if sizes["thinlayer"] < int64(*leaveMiB)<<20 || sizes["docker"] < int64(*leaveMiB)<<20 {
		b.Fatalf("archives of %v bytes for a %d MiB image", sizes, *leaveMiB)
	}
	tl, dk := median(times["thinlayer"]), median(times["docker"])
	b.Logf("SaveLeave %d MiB %d layers: thinlayer %v (%v), docker save %v (%v), ratio %.2f; archives %d and %d bytes",
		*leaveMiB, *leaveLayers, tl, times["thinlayer"], dk, times["docker"], float64(tl)/float64(dk), sizes["thinlayer"], sizes["docker"])
}

// saveOnce times one save of the image by who into a counting sink;
// dockerd runs for docker's, is stopped for thinlayer's, untimed.
func (e *engine) saveOnce(b *testing.B, who string) (time.Duration, int64) {
	b.StopTimer()
	var sink countingSink
	if who == "thinlayer" {
		b.StartTimer()
		start := time.Now()
		var errb bytes.Buffer
		args := []string{"save", leaveBenchImage, "--home", e.home}
		for _, o := range leaveBenchOpts {
			args = append(args, "--storage-opt", o)
		}
		if code := cli.Main(args, cli.Env{Stdout: &sink, Stderr: &errb}); code != 0 {
			b.Fatalf("thinlayer save: exit %d\n%s", code, errb.String())
		}
		return time.Since(start), sink.n
	}
	e.startDockerdOn(b, "devicemapper", leaveBenchOpts...)
	defer e.dockerd.stop(b)
	cmd := exec.Command(e.docker, "save", leaveBenchImage)
	cmd.Env = append(os.Environ(), e.env...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &sink, &errb
	b.StartTimer()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("docker save: %v\n%s", err, errb.String())
	}
	d := time.Since(start)
	b.StopTimer()
	return d, sink.n
}

type countingSink struct{ n int64 }

func (c *countingSink) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// loadBigImage streams a `docker load` archive of one image of size
// bytes in layers layers into dockerd: each layer 256 small files (4 KiB)
// and four big ones of random bytes, so neither side can compress or
// skip; the layers come first, then their config and manifest.json.
func loadBigImage(b *testing.B, e *engine, size, layers int) {
	pr, pw := io.Pipe()
	cmd := exec.Command(e.docker, "load")
	cmd.Env = append(os.Environ(), e.env...)
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		err := writeBigImage(pw, size, layers)
		pw.CloseWithError(err)
		werr <- err
	}()
	err := cmd.Wait()
	pr.Close()
	if werr := <-werr; werr != nil && err == nil {
		err = werr
	}
	if err != nil || !strings.Contains(out.String(), "Loaded image: "+leaveBenchImage) {
		b.Fatalf("docker load of the %d MiB image: %v\n%s\n%s", size>>20, err, out.String(), e.dockerd.tail())
	}
}

func writeBigImage(w io.Writer, size, layers int) error {
	tw := tar.NewWriter(w)
	rng := rand.New(rand.NewChaCha8([32]byte{'l', 'e', 'a', 'v', 'e'}))
	var diffIDs, paths []string
	for i := 0; i < layers; i++ {
		l, err := bigLayer(rng, i, size/layers)
		if err != nil {
			return err
		}
		d := digest(l)
		diffIDs, paths = append(diffIDs, d), append(paths, d[7:]+"/layer.tar")
		if err := writeMember(tw, paths[i], l); err != nil {
			return err
		}
	}
	config, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "created": epoch.Format(time.RFC3339),
		"config": map[string]any{"Cmd": []string{"/bin/sh"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	name := digest(config)[7:] + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": name, "RepoTags": []string{leaveBenchImage}, "Layers": paths}})
	if err := writeMember(tw, name, config); err != nil {
		return err
	}
	if err := writeMember(tw, "manifest.json", manifest); err != nil {
		return err
	}
	return tw.Close()
}

// bigLayer is layer i's tar: about size bytes of file content.
func bigLayer(rng *rand.Rand, i, size int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(size + 1<<20)
	tw := tar.NewWriter(&buf)
	dir := fmt.Sprintf("layer%02d/", i)
	if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
		return nil, err
	}
	const small, smallSize, big = 256, 4 << 10, 4
	bigSize := max(0, (size-small*smallSize)/big)
	for f := 0; f < small+big; f++ {
		n, name := smallSize, fmt.Sprintf("%ssmall%03d", dir, f)
		if f >= small {
			n, name = bigSize, fmt.Sprintf("%sbig%d", dir, f-small)
		}
		body := make([]byte, n)
		for j := 0; j+8 <= n; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				body[j+k] = byte(v >> (8 * k))
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

func writeMember(tw *tar.Writer, name string, body []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}
