//go:build linux

// Package mobyhome drives Moby's own devicemapper graphdriver (Moby v24.0.9,
// the cgo one over libdevmapper) from tests: it opens a driver home with
// small, test-friendly defaults, fills it with layers, reads layers back and
// describes what Moby left on disk. It is the "Moby" side of thinlayer's
// compatibility tests.
//
// Open needs cgo (Moby's driver is built over libdevmapper); the rest works
// on any graphdriver.Driver.
package mobyhome

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/docker/docker/daemon/graphdriver"
	"golang.org/x/sys/unix"
)

// Layer is one layer to write: an image layer (Create) or, with ReadWrite, a
// container's read-write layer (CreateReadWrite), on top of Parent ("" for a
// layer on the base device).
type Layer struct {
	ID, Parent string
	ReadWrite  bool
	// Files are written after Deletes: path (relative to the layer's root,
	// slash-separated, leading "/" optional) -> content. Parent directories
	// are made as needed.
	Files map[string]string
	// Deletes are removed (recursively) from what the parent left.
	Deletes []string
}

// WriteLayers creates each layer of spec in order, mounts it with Get,
// applies its deletes and files, syncs and Puts it.
func WriteLayers(d graphdriver.Driver, spec []Layer) error {
	for _, l := range spec {
		if err := writeLayer(d, l); err != nil {
			return fmt.Errorf("layer %s: %w", l.ID, err)
		}
	}
	return nil
}

func writeLayer(d graphdriver.Driver, l Layer) (err error) {
	create := d.Create
	if l.ReadWrite {
		create = d.CreateReadWrite
	}
	if err := create(l.ID, l.Parent, nil); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	root, err := d.Get(l.ID, "")
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer func() {
		if perr := d.Put(l.ID); perr != nil && err == nil {
			err = fmt.Errorf("put: %w", perr)
		}
	}()
	for _, p := range l.Deletes {
		full, err := inRoot(root, p)
		if err != nil {
			return err
		}
		if _, err := os.Lstat(full); err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
		if err := os.RemoveAll(full); err != nil {
			return err
		}
	}
	for _, p := range sortedKeys(l.Files) {
		full, err := inRoot(root, p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(l.Files[p]), 0o644); err != nil {
			return err
		}
	}
	return syncfs(root)
}

// ReadFiles mounts layer id and returns every regular file in its tree:
// slash-separated path relative to the layer's root (no leading "/") ->
// content. Directories, symlinks and other kinds are left out, and so is
// ext4's empty lost+found.
func ReadFiles(d graphdriver.Driver, id string) (files map[string]string, err error) {
	root, err := d.Get(id, "")
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	defer func() {
		if perr := d.Put(id); perr != nil && err == nil {
			err = fmt.Errorf("put %s: %w", id, perr)
		}
	}()
	files = map[string]string{}
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	return files, err
}

// CleanPath is the form ReadFiles gives paths in: slash-separated, relative,
// cleaned, and never outside the root ("../x" is "x"). The root itself is an
// error.
func CleanPath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" {
		return "", fmt.Errorf("path %q names the root", p)
	}
	return strings.TrimPrefix(c, "/"), nil
}

func inRoot(root, p string) (string, error) {
	c, err := CleanPath(p)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(c)), nil
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
