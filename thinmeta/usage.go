package thinmeta

import (
	"fmt"

	"github.com/thinlayer/thinlayer/devmapper"
)

// DevicesWithUsage is Devices with ExclusiveBlocks and SharedBlocks filled
// in, as thin_ls counts them: a mapping is exclusive when no other mapping
// in the pool — of any device, this one included — points to the same data
// block, and SharedBlocks is MappedBlocks minus the exclusive ones. It
// walks every mapping tree.
//
// Snapshots share whole subtrees, and walking each device's tree in turn
// (as thin_ls does) costs the sum of all the trees. This reads each
// distinct node once instead: it counts the paths from device roots to
// every node (saturating at 2, all "shared" needs), then the references to
// each data block from the leaves times their path counts, then sums the
// exclusive mappings bottom-up, once per node.
func (m *Metadata) DevicesWithUsage() ([]Device, error) {
	devs, err := m.Devices()
	if err != nil {
		return nil, err
	}
	roots, err := m.deviceRoots()
	if err != nil {
		return nil, err
	}
	u := newUsage(m)
	for i := range devs {
		root, ok := roots[devs[i].ID]
		if !ok {
			return nil, fmt.Errorf("thinmeta: thin device %d has details but no mapping tree: %w", devs[i].ID, ErrCorrupt)
		}
		if err := u.addRoot(root); err != nil {
			return nil, fmt.Errorf("thinmeta: mappings of thin device %d: %w", devs[i].ID, err)
		}
	}
	if err := u.count(); err != nil {
		return nil, fmt.Errorf("thinmeta: mapping trees: %w", err)
	}
	for i := range devs {
		d := &devs[i]
		if n := u.mapped[roots[d.ID]]; n != d.MappedBlocks {
			return nil, fmt.Errorf("thinmeta: thin device %d: details say %d mapped blocks, its mapping tree holds %d: %w",
				d.ID, d.MappedBlocks, n, atBlock(roots[d.ID], ErrCorrupt))
		}
		d.ExclusiveBlocks = u.exclusive[roots[d.ID]]
		if d.ExclusiveBlocks <= d.MappedBlocks {
			d.SharedBlocks = d.MappedBlocks - d.ExclusiveBlocks
		}
	}
	return devs, nil
}

// deviceRoots reads the top level of the mapping tree: thin id → the root
// of that device's mapping subtree.
func (m *Metadata) deviceRoots() (map[devmapper.ThinID]uint64, error) {
	roots := map[devmapper.ThinID]uint64{}
	err := m.walkTree(m.sb.mappingRoot, mappingValueSize, func(n *node) error {
		for i := 0; i < n.len(); i++ {
			id, err := thinID(n.key(i))
			if err != nil {
				return atBlock(n.loc, err)
			}
			roots[id] = n.child(i)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("thinmeta: mapping tree top level: %w", err)
	}
	return roots, nil
}

// leafCacheBudget bounds the data block numbers kept from the first read
// of each leaf; leaves past it are read again.
const leafCacheBudget = 64 << 20

type usage struct {
	m      *Metadata
	w      *dagWalker
	paths  map[uint64]uint8 // paths from device roots to a node, saturated at 2
	leaves map[uint64][]uint64
	cached int
	refs   *satCounts // references to each data block, saturated at 3
	// exclusive and mapped count the exclusive and all mappings under
	// each node.
	exclusive, mapped map[uint64]uint64
}

func newUsage(m *Metadata) *usage {
	u := &usage{m: m, w: newDAGWalker(m), paths: map[uint64]uint8{}, leaves: map[uint64][]uint64{},
		refs: newSatCounts(m.sb.NrDataBlocks), exclusive: map[uint64]uint64{}, mapped: map[uint64]uint64{}}
	u.w.leaf = u.keepLeaf
	return u
}

func (u *usage) addRoot(root uint64) error {
	u.paths[root] = sat2(u.paths[root], 1)
	return u.w.walk(root, mappingValueSize)
}

func (u *usage) keepLeaf(n *node) error {
	if u.cached+8*n.len() > leafCacheBudget {
		return nil
	}
	data := make([]uint64, n.len())
	for i := range data {
		data[i], _ = unpackMapping(le64(n.value(i)))
	}
	u.leaves[n.loc] = data
	u.cached += 8 * len(data)
	return nil
}

// leafData returns a leaf's data blocks, from the cache or read again.
func (u *usage) leafData(loc uint64) ([]uint64, error) {
	if data, ok := u.leaves[loc]; ok {
		return data, nil
	}
	n, err := u.m.readNode(loc, mappingValueSize)
	if err != nil {
		return nil, err
	}
	data := make([]uint64, n.len())
	for i := range data {
		data[i], _ = unpackMapping(le64(n.value(i)))
	}
	return data, nil
}

// count runs the three passes over the nodes the walks found.
func (u *usage) count() error {
	order := u.w.order
	// Parents come after their children in order: go backwards to push
	// path counts down.
	for i := len(order) - 1; i >= 0; i-- {
		loc := order[i]
		for _, c := range u.w.nodes[loc].children {
			u.paths[c] = sat2(u.paths[c], u.paths[loc])
		}
	}
	for _, loc := range order {
		if err := u.addLeafRefs(loc); err != nil {
			return err
		}
	}
	for _, loc := range order {
		if err := u.sumExclusive(loc); err != nil {
			return err
		}
	}
	return nil
}

func (u *usage) addLeafRefs(loc uint64) error {
	if !u.w.nodes[loc].leaf {
		return nil
	}
	data, err := u.leafData(loc)
	if err != nil {
		return err
	}
	for _, d := range data {
		if d >= u.m.sb.NrDataBlocks {
			return atBlock(loc, corruptf("mapping to data block %d, beyond the %d data blocks", d, u.m.sb.NrDataBlocks))
		}
		u.refs.add(d, uint32(u.paths[loc]))
	}
	return nil
}

func (u *usage) sumExclusive(loc uint64) error {
	dn := u.w.nodes[loc]
	var n, all uint64
	if !dn.leaf {
		for _, c := range dn.children {
			n = satAdd(n, u.exclusive[c])
			all = satAdd(all, u.mapped[c])
		}
		u.exclusive[loc], u.mapped[loc] = n, all
		return nil
	}
	data, err := u.leafData(loc)
	if err != nil {
		return err
	}
	for _, d := range data {
		if u.refs.get(d) == 1 {
			n++
		}
	}
	u.exclusive[loc], u.mapped[loc] = n, uint64(len(data))
	return nil
}

func sat2(a, b uint8) uint8 {
	if a+b > 2 {
		return 2
	}
	return a + b
}
