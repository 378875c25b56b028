package thinmeta

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/thinlayer/thinlayer/devmapper"
)

// OpenLive reads the metadata of a live pool through a metadata snapshot:
// it sends reserve_metadata_snap, asks for the pool's status with a flush
// (which commits, so the snapshot and the superblock naming it are on
// disk), and reads the trees from the held root the status reports. The
// snapshot stays fixed while the pool goes on working; release sends
// release_metadata_snap and must be called when done, before or after
// Close. metadataDev is the pool's metadata device; "" finds it from the
// pool's table.
//
// A pool holds one snapshot at a time: if another reader holds one, the
// reserve fails with EBUSY (errors.Is(err, devmapper.ErrBusy)).
func OpenLive(ctl *devmapper.Control, pool string, metadataDev string) (m *Metadata, release func() error, err error) {
	if metadataDev == "" {
		if metadataDev, err = poolMetadataDev(ctl, pool); err != nil {
			return nil, nil, fmt.Errorf("thinmeta: open live pool %s: %w", pool, err)
		}
	}
	if err := ctl.ReserveMetadataSnap(pool); err != nil {
		return nil, nil, fmt.Errorf("thinmeta: open live pool %s: %w", pool, err)
	}
	release = func() error { return ctl.ReleaseMetadataSnap(pool) }
	m, err = openSnapshot(ctl, pool, metadataDev)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("thinmeta: open live pool %s: %w", pool, err), release())
	}
	return m, release, nil
}

func openSnapshot(ctl *devmapper.Control, pool, metadataDev string) (*Metadata, error) {
	st, err := ctl.PoolStatus(pool, false)
	if err != nil {
		return nil, err
	}
	if !st.HasHeldMetadataRoot {
		return nil, fmt.Errorf("%w: pool status shows no held root after reserve_metadata_snap", ErrNoSnapshot)
	}
	r, err := openBlocks(metadataDev, false)
	if err != nil {
		return nil, err
	}
	m, err := newMetadata(r, st.HeldMetadataRoot)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", metadataDev, err)
	}
	return m, nil
}

// poolMetadataDev finds the metadata device's node from the pool's table,
// which the kernel prints as major:minor.
func poolMetadataDev(ctl *devmapper.Control, pool string) (string, error) {
	lines, err := ctl.Table(pool)
	if err != nil {
		return "", err
	}
	if len(lines) != 1 {
		return "", fmt.Errorf("table has %d targets, want one thin-pool", len(lines))
	}
	t, err := devmapper.ParseTarget(lines[0])
	if err != nil {
		return "", err
	}
	tp, ok := t.(devmapper.ThinPool)
	if !ok {
		return "", fmt.Errorf("not a thin-pool: %s", lines[0].Type)
	}
	return devNode(tp.MetadataDev)
}

// devNode turns "major:minor" into /dev/<name> using sysfs; paths pass.
func devNode(dev string) (string, error) {
	if strings.HasPrefix(dev, "/") {
		return dev, nil
	}
	f, err := os.Open("/sys/dev/block/" + dev + "/uevent")
	if err != nil {
		return "", fmt.Errorf("metadata device %s: %w", dev, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, ok := strings.CutPrefix(s.Text(), "DEVNAME="); ok {
			return "/dev/" + name, nil
		}
	}
	return "", fmt.Errorf("metadata device %s: no DEVNAME in sysfs", dev)
}
