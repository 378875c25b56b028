package graphdriver_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/thinlayer/thinlayer/graphdriver"
)

// exampleOptions keep an example's home small: 1 GiB and 16 MiB sparse
// loop files, a 256 MiB base device with ext4. Moby's defaults (100 GiB,
// 2 GiB, 10 GiB) apply to what is not given.
var exampleOptions = []string{"dm.loopdatasize=1GB", "dm.loopmetadatasize=16MB", "dm.basesize=256MB", "dm.fs=ext4"}

// Open a home — here a new one in a temporary directory — and close it.
// Init makes the pool (over loop devices on sparse files, unless told to
// use block devices or an existing pool) and the base device the first
// time; later it finds them again, and finishes or undoes whatever a crash
// interrupted. Cleanup unmounts everything and takes the pool down; the
// home stays for the next Init.
func ExampleInit() {
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	home := filepath.Join(dir, "devicemapper")

	d, err := graphdriver.Init(home, exampleOptions, graphdriver.IdentityMapping{})
	if errors.Is(err, graphdriver.ErrNotSupported) {
		fmt.Println("no dm-thin here, or not root:", err)
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, row := range d.Status() {
		if row[0] == "Base Device Size" || row[0] == "Backing Filesystem" {
			fmt.Printf("%s: %s\n", row[0], row[1])
		}
	}
	if err := d.Cleanup(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// Base Device Size: 268.4MB
	// Backing Filesystem: ext4
}

// An image layer from a tar, as an engine unpacks a pulled layer: Create
// makes it (a snapshot of the base device), ApplyDiff writes the tar into
// it — plain, gzip or zstd.
func ExampleDriver_ApplyDiff() {
	d, done := exampleDriver()
	defer done()

	if err := d.Create("image", "", nil); err != nil {
		fmt.Println(err)
		return
	}
	n, err := d.ApplyDiff("image", "", exampleTar(map[string]string{"etc/hostname": "image\n"}))
	fmt.Println("bytes written:", n, err)
	// Output:
	// bytes written: 6 <nil>
}

// A container's layer is a thin snapshot of its image: Get mounts it and
// returns the directory of its files, Put unmounts it after the last Get.
// What the container writes stays in its layer; the image is unchanged.
func ExampleDriver_Get() {
	d, done := exampleDriver()
	defer done()
	_ = d.Create("image", "", nil)
	_, _ = d.ApplyDiff("image", "", exampleTar(map[string]string{"etc/hostname": "image\n"}))

	if err := d.CreateReadWrite("container", "image", nil); err != nil {
		fmt.Println(err)
		return
	}
	root, err := d.Get("container", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(root, "etc/hostname"))
	fmt.Printf("the container sees %q\n", b)
	_ = os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("container\n"), 0o644)
	if err := d.Put("container"); err != nil {
		fmt.Println(err)
		return
	}
	changes, _ := d.Changes("container", "image")
	fmt.Println("changes:", changes)
	// Output:
	// the container sees "image\n"
	// changes: [C /etc C /etc/hostname]
}

// Remove deletes a layer and its thin device; the pool gets the blocks
// only it used back. A layer still mounted is not removed (an error
// matching unix.EBUSY).
func ExampleDriver_Remove() {
	d, done := exampleDriver()
	defer done()
	_ = d.Create("image", "", nil)

	fmt.Println("exists:", d.Exists("image"))
	if err := d.Remove("image"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("exists after Remove:", d.Exists("image"))
	// Output:
	// exists: true
	// exists after Remove: false
}

// exampleDriver opens a driver on a new home; done closes and removes it.
func exampleDriver() (graphdriver.Driver, func()) {
	dir, _ := os.MkdirTemp("", "example-")
	d, err := graphdriver.Init(filepath.Join(dir, "devicemapper"), exampleOptions, graphdriver.IdentityMapping{})
	if err != nil {
		panic(err)
	}
	return d, func() {
		if err := d.Cleanup(); err != nil {
			fmt.Println(err)
		}
		os.RemoveAll(dir)
	}
}

// exampleTar is a layer tar holding files (path -> content).
func exampleTar(files map[string]string) *bytes.Reader {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	return bytes.NewReader(buf.Bytes())
}
