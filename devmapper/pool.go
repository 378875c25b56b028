package devmapper

import (
	"fmt"
	"strconv"
	"strings"
)

// Thin-pool messages. Each goes to the pool device at sector 0. The kernel's
// errnos come through: EEXIST for a thin id in use, ENODATA for a missing one.
// None replies with data (dm-thin's pool_message), so their buffers have no
// room for a reply.

// CreateThin creates a new, empty thin device with the given id.
func (c *Control) CreateThin(pool string, id ThinID) error {
	return c.poolMessage(pool, "create_thin", id)
}

// CreateSnap creates thin device id as a snapshot of origin. When origin is
// active, suspend it first so its in-flight writes land in the snapshot.
func (c *Control) CreateSnap(pool string, id, origin ThinID) error {
	return c.poolMessage(pool, "create_snap", id, origin)
}

// DeleteThin deletes a thin device; it must not be active.
func (c *Control) DeleteThin(pool string, id ThinID) error {
	return c.poolMessage(pool, "delete", id)
}

// SetTransactionID moves the pool's transaction id from old to new; the
// kernel refuses (EINVAL) if old is not the current one.
func (c *Control) SetTransactionID(pool string, old, new uint64) error {
	_, err := c.message(pool, 0, fmt.Sprintf("set_transaction_id %d %d", old, new), 0)
	return err
}

// ReserveMetadataSnap takes a metadata snapshot so userspace can read the
// pool's metadata while it is live; the root appears in the pool status.
func (c *Control) ReserveMetadataSnap(pool string) error {
	_, err := c.message(pool, 0, "reserve_metadata_snap", 0)
	return err
}

// ReleaseMetadataSnap drops the metadata snapshot.
func (c *Control) ReleaseMetadataSnap(pool string) error {
	_, err := c.message(pool, 0, "release_metadata_snap", 0)
	return err
}

func (c *Control) poolMessage(pool, verb string, ids ...ThinID) error {
	parts := []string{verb}
	for _, id := range ids {
		if err := id.Check(); err != nil {
			return wrap("message "+verb, pool, err)
		}
		parts = append(parts, strconv.FormatUint(uint64(id), 10))
	}
	_, err := c.message(pool, 0, strings.Join(parts, " "), 0)
	return err
}

// PoolStatus returns the parsed status of a thin-pool device.
func (c *Control) PoolStatus(pool string, noFlush bool) (ThinPoolStatus, error) {
	lines, err := c.Status(pool, noFlush)
	if err != nil {
		return ThinPoolStatus{}, err
	}
	if len(lines) != 1 || lines[0].Type != "thin-pool" {
		return ThinPoolStatus{}, wrap("pool status", pool, fmt.Errorf("not a thin-pool device (%d targets)", len(lines)))
	}
	st, err := ParseThinPoolStatus(lines[0].Params)
	return st, wrap("pool status", pool, err)
}

// ThinDeviceStatus returns the parsed status of a thin device.
func (c *Control) ThinDeviceStatus(name string) (ThinStatus, error) {
	lines, err := c.Status(name, true)
	if err != nil {
		return ThinStatus{}, err
	}
	if len(lines) != 1 || lines[0].Type != "thin" {
		return ThinStatus{}, wrap("thin status", name, fmt.Errorf("not a thin device (%d targets)", len(lines)))
	}
	st, err := ParseThinStatus(lines[0].Params)
	return st, wrap("thin status", name, err)
}
