package cli

import (
	"fmt"
	"io"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// GCReport is what gc did, or with DryRun would do.
type GCReport struct {
	DryRun bool `json:"dry_run"`
	// Transaction is the interrupted transaction the read-write open
	// finished or undid.
	Transaction *deviceset.Transaction `json:"transaction,omitempty"`
	Deleted     []string               `json:"deleted_layers"`       // deferred deletions finished
	Orphans     []Orphan               `json:"removed_thin_devices"` // thin devices no layer named
	Failed      []Problem              `json:"failed"`
}

// Orphan is a thin device of the pool that no DevInfo names.
type Orphan struct {
	ID     dm.ThinID `json:"id"`
	Mapped uint64    `json:"mapped"` // bytes the pool had given it
}

// GC settles an interrupted transaction, finishes pending deferred
// deletions and deletes the pool's thin devices no layer names. With
// dryRun it only reports what it would do, from a read-only look.
func (h Home) GC(dryRun bool) (*GCReport, error) {
	r := &GCReport{DryRun: dryRun, Deleted: []string{}, Orphans: []Orphan{}, Failed: []Problem{}}
	err := h.look(func(ds *deviceset.DeviceSet) error {
		r.Transaction = ds.OpenTransaction()
		if dryRun {
			return planGC(r, ds)
		}
		return nil
	})
	if err != nil || dryRun {
		return r, err
	}
	// Deferred deletion off: the deletions run here, not in a worker.
	ds, err := h.openWritable(needIdle, func(c *deviceset.Config) { c.DeferredDelete = false })
	if err != nil {
		return r, err
	}
	collect(r, ds)
	if err := ds.Shutdown(); err != nil {
		return r, fmt.Errorf("close home %s: %w", h.dir(), err)
	}
	return r, nil
}

// planGC fills r with what gc would do, from a read-only open.
func planGC(r *GCReport, ds *deviceset.DeviceSet) error {
	deleted, named, err := layerIDs(ds)
	if err != nil {
		return err
	}
	r.Deleted = deleted
	pool, err := readPool(ds, false, false)
	if err != nil {
		return err
	}
	skip := noThinID
	if r.Transaction != nil {
		skip = r.Transaction.DeviceID // settling takes care of it
	}
	for _, id := range orphanIDs(pool, named, skip) {
		r.Orphans = append(r.Orphans, Orphan{ID: id, Mapped: *pool.bytes(pool.devices[id].MappedBlocks)})
	}
	return nil
}

// collect does the work on a read-write open, which has already settled an
// interrupted transaction.
func collect(r *GCReport, ds *deviceset.DeviceSet) {
	deleted, _, err := layerIDs(ds)
	if err != nil {
		r.fail("fix the DevInfo files `thinlayer check` names, then run gc again", "%v", err)
		return
	}
	for _, hash := range deleted {
		if err := ds.DeleteDevice(hashOf(hash), true); err != nil {
			r.fail("find what still holds it open (a leaked mount: grep the device in /proc/*/mountinfo) and run gc again",
				"layer %q: %v", hash, err)
			continue
		}
		r.Deleted = append(r.Deleted, hash)
	}
	// Read the pool after the deletions: what they freed is no orphan.
	_, named, err := layerIDs(ds)
	if err != nil {
		r.fail("fix the DevInfo files `thinlayer check` names, then run gc again", "%v", err)
		return
	}
	pool, err := readPool(ds, false, false)
	if err != nil {
		r.fail("take the pool down and run thin_check on its metadata device", "read the pool's thin devices: %v", err)
		return
	}
	for _, id := range orphanIDs(pool, named, noThinID) {
		mapped := *pool.bytes(pool.devices[id].MappedBlocks)
		if err := ds.DeleteOrphanThin(id); err != nil {
			r.fail("if it is active, find and remove its device-mapper device first; then run gc again", "thin device %d: %v", id, err)
			continue
		}
		r.Orphans = append(r.Orphans, Orphan{ID: id, Mapped: mapped})
	}
}

// layerIDs reads every DevInfo: the layers marked deleted, and the thin
// ids named. A DevInfo that cannot be read is an error: the id it holds
// is unknown, so no thin device can be called an orphan.
func layerIDs(ds *deviceset.DeviceSet) (deleted []string, named map[dm.ThinID][]string, err error) {
	hashes, err := ds.List()
	if err != nil {
		return nil, nil, err
	}
	named = map[dm.ThinID][]string{}
	for _, hash := range hashes {
		info, err := ds.Info(hash)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %q: %w", layerName(hash), err)
		}
		named[info.DeviceID] = append(named[info.DeviceID], layerName(hash))
		if info.Deleted {
			deleted = append(deleted, layerName(hash))
		}
	}
	return deleted, named, nil
}

func (r *GCReport) fail(fix, format string, args ...any) {
	r.Failed = append(r.Failed, Problem{What: fmt.Sprintf(format, args...), Fix: fix})
}

// Err is ErrProblems when something could not be collected.
func (r *GCReport) Err() error {
	if len(r.Failed) > 0 {
		return fmt.Errorf("%w: gc left %s", ErrProblems, plural(len(r.Failed), "thing"))
	}
	return nil
}

// Print writes the report for people.
func (r *GCReport) Print(w io.Writer) error {
	verb := ""
	if r.DryRun {
		verb = "would "
	}
	if t := r.Transaction; t != nil {
		fmt.Fprintf(w, "%ssettle interrupted transaction %d (layer %q, thin id %d)\n", verb, t.ID, layerName(t.Hash), t.DeviceID)
	}
	for _, l := range r.Deleted {
		fmt.Fprintf(w, "%sfinish deferred deletion of layer %q\n", verb, l)
	}
	for _, o := range r.Orphans {
		fmt.Fprintf(w, "%sdelete thin device %d (no layer names it; %s mapped)\n", verb, o.ID, human(o.Mapped))
	}
	for _, f := range r.Failed {
		fmt.Fprintf(w, "failed: %s\n  fix: %s\n", f.What, f.Fix)
	}
	if r.Transaction == nil && len(r.Deleted)+len(r.Orphans)+len(r.Failed) == 0 {
		fmt.Fprintln(w, "nothing to collect")
	}
	return nil
}
