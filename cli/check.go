package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// Problem is one thing check found wrong, and what to do about it.
type Problem struct {
	What string `json:"what"`
	Fix  string `json:"fix"`
}

// CheckReport is check's result. Notes are worth knowing but not wrong.
type CheckReport struct {
	Home     string    `json:"home"`
	Layers   int       `json:"layers"`
	Problems []Problem `json:"problems"`
	Notes    []string  `json:"notes,omitempty"`
}

// OK reports whether no problem was found.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

func (r *CheckReport) problem(fix, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{What: fmt.Sprintf(format, args...), Fix: fix})
}

// maxMetadataProblems caps how many of the pool metadata's own problems
// are listed one by one.
const maxMetadataProblems = 20

// Check looks at the home read-only: the pool's state, an interrupted
// transaction, the base device, every DevInfo file, and the thin devices
// the pool holds against those the DevInfo files name.
func (h Home) Check() (*CheckReport, error) {
	r := &CheckReport{Home: h.dir(), Problems: []Problem{}}
	err := h.look(func(ds *deviceset.DeviceSet) error {
		if err := checkPoolState(r, ds); err != nil {
			return err
		}
		checkTransaction(r, ds)
		checkBase(r, ds)
		named, err := checkDevInfos(r, ds)
		if err != nil {
			return err
		}
		checkPoolDevices(r, ds, named)
		return nil
	})
	return r, err
}

func checkPoolState(r *CheckReport, ds *deviceset.DeviceSet) error {
	s, err := ds.Status()
	if err != nil {
		r.problem("check `dmesg`; deactivate the pool and run thin_check on its metadata device", "pool %s: %v", ds.PoolName(), err)
		return nil
	}
	ro, err := poolTableReadOnly(ds)
	if err != nil {
		return err
	}
	metaDev := s.MetadataFile
	st := s.Pool
	if st.NeedsCheck {
		r.problem(fmt.Sprintf("stop everything using the pool, take it down, and run thin_check (thin_repair if that fails) on %s", metaDev),
			"pool %s is flagged needs_check: the kernel found its metadata damaged", s.PoolName)
	}
	switch {
	case st.Mode == dm.PoolModeOutOfDataSpace:
		r.problem("grow the pool's data device, or remove layers (`thinlayer gc` frees what orphans hold)",
			"pool %s is out of data space: writes to layers stall or fail", s.PoolName)
	case st.Mode == dm.PoolModeReadOnly && !ro:
		r.problem(fmt.Sprintf("see `dmesg`; grow the metadata device if it is full, else run thin_check on %s with the pool down", metaDev),
			"the kernel switched pool %s to read-only (a metadata error, or out of metadata space)", s.PoolName)
	}
	return nil
}

func checkTransaction(r *CheckReport, ds *deviceset.DeviceSet) {
	if tx := ds.OpenTransaction(); tx != nil {
		r.problem("run `thinlayer gc` (or start the engine): opening the home read-write finishes or undoes it",
			"transaction %d on layer %q (thin id %d) was interrupted", tx.ID, layerName(tx.Hash), tx.DeviceID)
	}
}

func checkBase(r *CheckReport, ds *deviceset.DeviceSet) {
	if !ds.HasDevice("") {
		r.problem("this home is damaged or not a devicemapper home: point --home at the right directory",
			"no base device record (%s)", filepath.Join(ds.Home(), "metadata", "base"))
		return
	}
	rec := ds.HomeRecord()
	probe, err := ds.ProbeBase()
	switch {
	case err != nil:
		r.problem("the base device cannot be read: run thin_check on the pool's metadata", "base device: %v", err)
	case rec.BaseDeviceUUID == "":
		r.Notes = append(r.Notes, fmt.Sprintf("no base device UUID recorded (a home from before UUIDs were kept); the base has %s", probe.UUID))
	case rec.BaseDeviceUUID != probe.UUID:
		r.problem("the home is on a different pool than the one it was made on: point dm.thinpooldev / dm.datadev / dm.metadatadev at the right devices",
			"base device UUID %s does not match the recorded %s", probe.UUID, rec.BaseDeviceUUID)
	}
}

// checkDevInfos reads every DevInfo and returns the thin ids they name.
func checkDevInfos(r *CheckReport, ds *deviceset.DeviceSet) (map[dm.ThinID][]string, error) {
	hashes, err := ds.List()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	r.Layers = len(hashes)
	named := map[dm.ThinID][]string{}
	for _, hash := range hashes {
		info, err := ds.Info(hash)
		if err != nil {
			r.problem("repair or remove that file: the layer it describes cannot be used", "layer %q: %v", layerName(hash), err)
			continue
		}
		named[info.DeviceID] = append(named[info.DeviceID], layerName(hash))
		if info.Deleted {
			r.Notes = append(r.Notes, fmt.Sprintf("layer %q awaits deferred deletion (`thinlayer gc` finishes it)", layerName(hash)))
		}
	}
	for id, layers := range named {
		if len(layers) > 1 {
			r.problem("at most one of them has the right data: remove the others through the engine",
				"thin id %d is claimed by %d layers: %v", id, len(layers), layers)
		}
	}
	return named, nil
}

// checkPoolDevices compares the pool's thin devices with the ids the
// DevInfo files name. An interrupted transaction's id is its own problem.
func checkPoolDevices(r *CheckReport, ds *deviceset.DeviceSet, named map[dm.ThinID][]string) {
	pool, err := readPool(ds, false, true)
	if errors.Is(err, errMetadataUnreadable) {
		r.Notes = append(r.Notes, fmt.Sprintf("thin devices not compared with the layers: %v (run check while the engine has the pool up)", err))
		return
	}
	if err != nil {
		r.problem("take the pool down and run thin_check on its metadata device", "cannot read the pool's metadata: %v", err)
		return
	}
	skip := noThinID
	if tx := ds.OpenTransaction(); tx != nil {
		skip = tx.DeviceID
	}
	for _, id := range orphanIDs(pool, named, skip) {
		r.problem("run `thinlayer gc`: it deletes thin devices no layer names",
			"thin device %d is in the pool (%s mapped) but no layer names it", id, human(*pool.bytes(pool.devices[id].MappedBlocks)))
	}
	for _, id := range sortedIDs(named) {
		if _, ok := pool.devices[id]; !ok && id != skip {
			r.problem("its data is gone: remove the layer through the engine (docker rmi / docker rm), or delete its DevInfo file if nothing uses it",
				"layer %v names thin device %d, which the pool does not hold", named[id], id)
		}
	}
	for i, p := range pool.problems {
		if i == maxMetadataProblems {
			r.problem("see above", "... and %d more problems in the pool's metadata", len(pool.problems)-i)
			break
		}
		r.problem("take the pool down and run thin_check (thin_repair if it fails) on its metadata device", "pool metadata: %v", p)
	}
}

// noThinID is over the thin ids' range: a skip that skips nothing.
const noThinID dm.ThinID = dm.MaxThinID + 1

// orphanIDs are the pool's thin ids no DevInfo names, sorted.
func orphanIDs(pool *poolView, named map[dm.ThinID][]string, skip dm.ThinID) []dm.ThinID {
	var ids []dm.ThinID
	for id := range pool.devices {
		if _, ok := named[id]; !ok && id != skip {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func sortedIDs(m map[dm.ThinID][]string) []dm.ThinID {
	ids := slices.Collect(maps.Keys(m))
	slices.Sort(ids)
	return ids
}

func layerName(hash string) string {
	if hash == "" {
		return "base"
	}
	return hash
}

// Print writes the report for people.
func (r *CheckReport) Print(w io.Writer) error {
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.OK() {
		_, err := fmt.Fprintf(w, "%s: consistent (%s checked)\n", r.Home, plural(r.Layers, "layer"))
		return err
	}
	fmt.Fprintf(w, "%s: %s found\n", r.Home, plural(len(r.Problems), "problem"))
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n    fix: %s\n", p.What, p.Fix)
	}
	return nil
}
