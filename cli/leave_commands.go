package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/thinlayer/thinlayer/dockerstore"
)

const ociHelp = "\n--oci writes an OCI image layout (oci-layout, index.json, blobs/sha256/…) with a\nmanifest.json into its blobs, as Docker 25's docker save does: the same layer bytes and\nids, loaded by ctr images import, docker load (any version) and OCI tools."

const dataRootHelp = "\n--data-root is Docker's data root, by default the directory holding --home. Refuses\nwhile dockerd runs. Read-only."

const (
	imagesHelp     = "Lists the images in Docker's image store beside the home (<data-root>/image/devicemapper),\nas `docker images` did: repository, tag, image id, created, layers, size; -a also lists\nthe untagged images others were committed on. Needs no running Docker." + dataRootHelp
	containersHelp = "Lists Docker's containers (<data-root>/containers) as `docker ps -a` did, with each\none's read-write layer and the space the pool mapped for what it wrote." + dataRootHelp
	commitHelp     = "Writes what `docker commit` and `docker save` would have made of a stopped container\n(a name, an id or a prefix of one): its image's layers byte for byte, its changes over\nits image (Docker's whiteout format) as a new top layer, and its image config with the\ncontainer's run config and a history step; tagged --tag NAME:TAG. To -o FILE, or stdout\nwhen it is not a terminal." + ociHelp + dataRootHelp
	saveHelp       = "Writes the images (repo:tag, repo, an id or a prefix of one; --all: every image) as one\n`docker save` archive that `docker load` and `ctr images import` take: manifest.json,\nrepositories, each config and each layer's tar once. A layer's tar is reassembled byte\nfor byte from its device's files and its tar-split record, so diff ids and image ids are\nthe originals; each file's crc64 and each layer's sha256 are checked while writing, and\na mismatch stops with an error naming the layer and file (the archive is removed). A\nlayer without a record is saved as a plain tar of its changes, with a note and its new\ndigest. To -o FILE, or stdout when it is not a terminal." + ociHelp + dataRootHelp
)

func leaveFlags(fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	fs.StringVar(&f.dataRoot, "data-root", "", "")
	fs.BoolVar(&f.all, "all", false, "")
	fs.BoolVar(&f.all, "a", false, "")
	fs.StringVar(&f.output, "o", "", "")
	fs.StringVar(&f.output, "output", "", "")
	fs.StringVar(&f.tag, "tag", "", "")
	fs.BoolVar(&f.oci, "oci", false, "")
	return f
}

func runImages(c *call) error {
	l, err := c.home.Images(c.flags.dataRoot, c.flags.all)
	if err != nil {
		return err
	}
	return c.output(l)
}

func runContainers(c *call) error {
	l, err := c.home.Containers(c.flags.dataRoot)
	if err != nil {
		return err
	}
	return c.output(l)
}

func runSave(c *call) error {
	return writeArchive(c, func(w io.Writer) (*dockerstore.SaveReport, error) {
		return c.home.SaveImages(c.flags.dataRoot, c.args, c.flags.all, c.flags.format(), w, c.env.Stderr)
	})
}

func runCommit(c *call) error {
	return writeArchive(c, func(w io.Writer) (*dockerstore.SaveReport, error) {
		return c.home.CommitContainer(c.flags.dataRoot, c.args[0], c.flags.tag, c.flags.format(), w, c.env.Stderr)
	})
}

func (f *cmdFlags) format() dockerstore.Format {
	if f.oci {
		return dockerstore.OCIArchive
	}
	return dockerstore.DockerArchive
}

// writeArchive runs write on -o FILE (removed again when write fails) or
// stdout, and reports what the archive holds.
func writeArchive(c *call, write func(w io.Writer) (*dockerstore.SaveReport, error)) (err error) {
	w, toFile := c.env.Stdout, c.flags.output != "" && c.flags.output != "-"
	if !toFile && c.env.StdoutTerminal {
		return fmt.Errorf("%w: refusing to write an archive to a terminal: use -o FILE or a pipe", ErrUsage)
	}
	if toFile {
		// oerr, not err: the deferred removal must see the result err.
		f, oerr := os.OpenFile(c.flags.output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if oerr != nil {
			return oerr
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(c.flags.output) // never half an archive
			}
		}()
		w = f
	}
	rep, err := write(w)
	if err != nil {
		return err
	}
	if c.json && toFile {
		return writeJSON(c.env.Stdout, rep)
	}
	printSaved(c, rep)
	return nil
}

func printSaved(c *call, rep *dockerstore.SaveReport) {
	where := "stdout"
	if c.flags.output != "" && c.flags.output != "-" {
		where = c.flags.output
	}
	fmt.Fprintf(c.env.Stderr, "saved %s, %s (%s of layer tars) to %s\n", plural(len(rep.Images), "image"),
		plural(rep.Layers, "layer"), human(uint64(rep.Bytes)), where)
	for _, r := range rep.Rebuilt {
		fmt.Fprintf(c.env.Stderr, "layer %s had no tar-split record: saved as a plain tar, diff id %s (was %s)\n", r.ChainID.Short(), r.NewDiffID, r.DiffID)
	}
	for _, img := range rep.Images {
		if img.OriginalID == "" && len(rep.Images) == 1 {
			fmt.Fprintf(c.env.Stderr, "image %s %s\n", img.ID, strings.Join(img.Tags, " "))
		}
		if img.OriginalID != "" {
			fmt.Fprintf(c.env.Stderr, "image %s is now %s\n", img.OriginalID.Short(), img.ID.Short())
		}
	}
}
