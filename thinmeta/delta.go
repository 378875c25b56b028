package thinmeta

import (
	"fmt"
	"sort"

	"github.com/thinlayer/thinlayer/devmapper"
)

// Delta compares two thin devices block by block, as thin_delta --snap1
// left --snap2 right does: a virtual block mapped by both to the same data
// block is the same, to different data blocks different.
type Delta struct {
	Same      uint64 // mapped by both, to the same data block
	Different uint64 // mapped by both, to different data blocks
	LeftOnly  uint64 // mapped by left only
	RightOnly uint64 // mapped by right only
}

// Added is what right holds that left does not hold at the same place:
// the blocks right changed or added. For a snapshot and its origin, that
// is the space the snapshot uses on its own over its origin.
func (d Delta) Added() uint64 { return satAdd(d.Different, d.RightOnly) }

// Delta compares thin device right with thin device left. A snapshot
// shares its origin's mapping subtrees until either writes, and a node
// is the same block in both trees: such a subtree counts as same without
// reading it again, so the cost is left's tree plus the nodes right has
// of its own. Each node is checked as Devices and Mappings check them.
func (m *Metadata) Delta(left, right devmapper.ThinID) (Delta, error) {
	lroot, err := m.deviceRoot(left)
	if err != nil {
		return Delta{}, err
	}
	rroot, err := m.deviceRoot(right)
	if err != nil {
		return Delta{}, err
	}
	c := &deltaCounter{m: m, w: newDAGWalker(m)}
	c.w.leaf = c.keepLeftLeaf
	if err := c.w.walk(lroot, mappingValueSize); err != nil {
		return Delta{}, fmt.Errorf("thinmeta: mappings of thin device %d: %w", left, err)
	}
	c.countLeft()
	leftMapped := c.mapped[lroot]
	c.w.leaf, c.w.ref = c.compareRightLeaf, c.sharedRef
	if err := c.w.walk(rroot, mappingValueSize); err != nil {
		return Delta{}, fmt.Errorf("thinmeta: mappings of thin device %d: %w", right, err)
	}
	d := c.d
	both := satAdd(d.Same, d.Different)
	if both > leftMapped {
		return Delta{}, fmt.Errorf("thinmeta: thin devices %d and %d: %d blocks in common, but %d holds %d: %w",
			left, right, both, left, leftMapped, ErrCorrupt)
	}
	d.LeftOnly = leftMapped - both
	return d, nil
}

type deltaCounter struct {
	m *Metadata
	w *dagWalker
	// mapped counts the mappings under each node of left's tree.
	mapped map[uint64]uint64
	// leftLeaves are left's leaves in key order, by first key.
	leftFirst, leftLoc []uint64
	// cur is the left leaf compareRightLeaf last parsed.
	cur    node
	curLoc uint64
	hasCur bool
	d      Delta
}

// keepLeftLeaf notes where each of left's leaves starts; the walk meets
// them in key order.
func (c *deltaCounter) keepLeftLeaf(n *node) error {
	if n.len() > 0 {
		c.leftFirst = append(c.leftFirst, n.key(0))
		c.leftLoc = append(c.leftLoc, n.loc)
	}
	return nil
}

// countLeft sums the mappings under every node of left's tree; children
// come before their parents in the walk's order.
func (c *deltaCounter) countLeft() {
	c.mapped = make(map[uint64]uint64, len(c.w.order))
	for _, loc := range c.w.order {
		dn := c.w.nodes[loc]
		if dn.leaf {
			c.mapped[loc] = uint64(dn.nrEntries)
			continue
		}
		var n uint64
		for _, ch := range dn.children {
			n = satAdd(n, c.mapped[ch])
		}
		c.mapped[loc] = n
	}
}

// sharedRef counts a node of left's tree that right's tree points to: the
// same block holds the same keys and values, so all its mappings are the
// same in both (the walker does not go into it again).
func (c *deltaCounter) sharedRef(loc uint64) {
	if n, ok := c.mapped[loc]; ok {
		c.d.Same = satAdd(c.d.Same, n)
	}
}

// compareRightLeaf compares each mapping of a leaf of right's own with
// left's mapping of the same virtual block.
func (c *deltaCounter) compareRightLeaf(n *node) error {
	for i := 0; i < n.len(); i++ {
		v := n.key(i)
		data, _ := unpackMapping(le64(n.value(i)))
		if data >= c.m.sb.NrDataBlocks {
			return atBlock(n.loc, corruptf("mapping of block %d to data block %d, beyond the %d data blocks", v, data, c.m.sb.NrDataBlocks))
		}
		ldata, ok, err := c.leftData(v)
		switch {
		case err != nil:
			return err
		case !ok:
			c.d.RightOnly++
		case ldata == data:
			c.d.Same++
		default:
			c.d.Different++
		}
	}
	return nil
}

// leftData is left's data block for virtual block v, if it maps it.
func (c *deltaCounter) leftData(v uint64) (uint64, bool, error) {
	j := sort.Search(len(c.leftFirst), func(j int) bool { return c.leftFirst[j] > v }) - 1
	if j < 0 {
		return 0, false, nil
	}
	if !c.hasCur || c.curLoc != c.leftLoc[j] {
		n, err := c.m.readNode(c.leftLoc[j], mappingValueSize)
		if err != nil {
			return 0, false, err
		}
		c.cur, c.curLoc, c.hasCur = n, c.leftLoc[j], true
	}
	n := &c.cur
	i := sort.Search(n.len(), func(i int) bool { return n.key(i) >= v })
	if i == n.len() || n.key(i) != v {
		return 0, false, nil
	}
	data, _ := unpackMapping(le64(n.value(i)))
	return data, true, nil
}
