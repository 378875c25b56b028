package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/thinlayer/thinlayer/deviceset"
	dm "github.com/thinlayer/thinlayer/devmapper"
)

// Layer is one layer of a home, as ls lists it.
type Layer struct {
	ID       string    `json:"id"` // "base" for the base device
	Base     bool      `json:"base"`
	DeviceID dm.ThinID `json:"device_id"`
	Size     uint64    `json:"size"` // the thin device's virtual size
	// Mapped is the space the pool has given the device; Exclusive is
	// what only it uses (what removing it frees), Shared what it shares
	// with its relatives. Nil when the pool's metadata could not be read.
	Mapped    *uint64  `json:"mapped,omitempty"`
	Exclusive *uint64  `json:"exclusive,omitempty"`
	Shared    *uint64  `json:"shared,omitempty"`
	Active    bool     `json:"active"`
	Mounts    []string `json:"mounts,omitempty"`
	// Deleted: deferred deletion is pending. Pending: an interrupted
	// transaction names the layer.
	Deleted bool   `json:"deleted"`
	Pending bool   `json:"pending"`
	Missing bool   `json:"missing"`         // its thin device is not in the pool
	Error   string `json:"error,omitempty"` // its DevInfo cannot be read
}

// Listing is ls's result: the layers, and why usage is unknown if it is.
type Listing struct {
	Layers  []Layer `json:"layers"`
	Warning string  `json:"warning,omitempty"`
}

// LsSortKeys are the columns ls sorts by.
var LsSortKeys = []string{"id", "device", "size", "mapped", "exclusive"}

// List lists every layer of the home.
func (h Home) List() (*Listing, error) {
	ds, err := h.openReadOnly()
	if err != nil {
		return nil, err
	}
	defer ds.Leave()
	ctl, err := dm.Open()
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	hashes, err := ds.List()
	if err != nil {
		return nil, fmt.Errorf("list layers of %s: %w", h.dir(), err)
	}
	l := &Listing{}
	pool, perr := readPool(ds, true, false)
	if perr != nil {
		l.Warning = "space per layer unknown: " + perr.Error()
	}
	for _, hash := range hashes {
		l.Layers = append(l.Layers, describeLayer(ds, ctl, pool, hash))
	}
	return l, nil
}

func describeLayer(ds *deviceset.DeviceSet, ctl *dm.Control, pool *poolView, hash string) Layer {
	l := Layer{ID: hash, Base: hash == ""}
	if l.Base {
		l.ID = "base"
	}
	info, err := ds.Info(hash)
	if err != nil {
		l.Error = err.Error()
		return l
	}
	l.DeviceID, l.Size, l.Deleted = info.DeviceID, info.Size, info.Deleted
	if tx := ds.OpenTransaction(); tx != nil && tx.Hash == hash {
		l.Pending = true
	}
	if pool != nil {
		d, ok := pool.devices[info.DeviceID]
		l.Missing = !ok
		if ok {
			l.Mapped, l.Exclusive, l.Shared = pool.bytes(d.MappedBlocks), pool.bytes(d.ExclusiveBlocks), pool.bytes(d.SharedBlocks)
		}
	}
	if md, err := ds.Metadata(hash); err == nil {
		if di, err := ctl.Info(md.DeviceName); err == nil {
			l.Active = true
			l.Mounts = mountPointsOf(di.Major, di.Minor)
		}
	}
	return l
}

// SortLayers orders layers by key (one of LsSortKeys), the base first on
// ties; sizes sort largest first.
func SortLayers(layers []Layer, key string, reverse bool) error {
	less, ok := layerOrders[key]
	if !ok {
		return fmt.Errorf("%w: unknown sort key %q (one of %s)", ErrUsage, key, strings.Join(LsSortKeys, ", "))
	}
	sort.SliceStable(layers, func(i, j int) bool {
		if reverse {
			return less(layers[j], layers[i])
		}
		return less(layers[i], layers[j])
	})
	return nil
}

var layerOrders = map[string]func(a, b Layer) bool{
	"id":        func(a, b Layer) bool { return a.Base && !b.Base || a.Base == b.Base && a.ID < b.ID },
	"device":    func(a, b Layer) bool { return a.DeviceID < b.DeviceID },
	"size":      func(a, b Layer) bool { return a.Size > b.Size },
	"mapped":    func(a, b Layer) bool { return deref(a.Mapped) > deref(b.Mapped) },
	"exclusive": func(a, b Layer) bool { return deref(a.Exclusive) > deref(b.Exclusive) },
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// Print writes the listing as a table; warnings go to warn.
func (l *Listing) Print(w, warn io.Writer) error {
	rows := [][]string{{"ID", "THIN-ID", "SIZE", "MAPPED", "EXCLUSIVE", "SHARED", "MOUNTED", "STATE"}}
	for _, x := range l.Layers {
		mounted := "-"
		if len(x.Mounts) > 0 {
			mounted = strings.Join(x.Mounts, ",")
		} else if x.Active {
			mounted = "(active)"
		}
		rows = append(rows, []string{x.ID, x.DeviceID.String(), human(x.Size),
			humanOpt(x.Mapped), humanOpt(x.Exclusive), humanOpt(x.Shared), mounted, x.state()})
	}
	if l.Warning != "" {
		fmt.Fprintln(warn, "thinlayer: warning:", l.Warning)
	}
	return table(w, rows)
}

func (x Layer) state() string {
	var s []string
	for _, f := range []struct {
		on   bool
		what string
	}{{x.Error != "", "unreadable: " + x.Error}, {x.Missing, "missing-from-pool"},
		{x.Deleted, "deleted(pending)"}, {x.Pending, "interrupted-transaction"}} {
		if f.on {
			s = append(s, f.what)
		}
	}
	if len(s) == 0 {
		return "ok"
	}
	return strings.Join(s, ",")
}

// ErrUsage: the command line is wrong (exit status 2).
var ErrUsage = errors.New("usage")
