package thinmeta

import (
	"fmt"
	"sort"

	"github.com/thinlayer/thinlayer/devmapper"
)

// Problem is one thing Check found wrong.
type Problem struct {
	Block uint64 // the block it concerns
	Data  bool   // Block is a data block; otherwise a metadata block
	What  string
}

func (p Problem) Error() string {
	space := "metadata"
	if p.Data {
		space = "data"
	}
	return fmt.Sprintf("%s block %d: %s", space, p.Block, p.What)
}

// maxProblems bounds Check's report; what is past it is counted only.
const maxProblems = 1000

// Check verifies the metadata's structure, as thin_check's core checks do:
// the checksum and header of every block it walks; btree invariants (keys
// ascending and within the range the parent gives, no empty non-root
// nodes, no node under a third full, equal leaf depth, no cycles, shared
// nodes valid in every tree that shares them); that the device-details and
// mapping trees name the same devices and each device's mapped block count
// matches its tree; that mappings stay within the data device; and that
// every reference count in the data and metadata space maps equals the
// number of references the trees make. An empty result means no problems.
//
// Through a metadata snapshot (OpenLive) the space maps are the live
// pool's, not the snapshot's: they are not compared, the trees are.
func (m *Metadata) Check() []Problem {
	c := newChecker(m)
	c.meta.add(superblockLocation, 1)
	c.checkTrees(m.sb)
	if !m.sb.Snapshot {
		if held := m.root.HeldRoot; held != 0 {
			c.checkHeldRoot(held)
		}
		c.checkSpaceMaps()
	}
	return c.result()
}

// checker accumulates what Check finds.
type checker struct {
	m        *Metadata
	w        *dagWalker
	meta     *satCounts // references to each metadata block
	data     *satCounts // references to each data block from distinct leaves
	problems []Problem
	dropped  int
}

func newChecker(m *Metadata) *checker {
	c := &checker{m: m, w: newDAGWalker(m), meta: newSatCounts(m.sb.MetadataBlocks),
		data: newSatCounts(m.sb.NrDataBlocks)}
	c.w.fail = func(loc uint64, err error) error { c.problem(loc, false, "%v", err); return nil }
	c.w.ref = c.refMeta
	c.w.min3rd = true
	return c
}

func (c *checker) problem(b uint64, data bool, format string, args ...any) {
	if len(c.problems) >= maxProblems {
		c.dropped++
		return
	}
	c.problems = append(c.problems, Problem{Block: b, Data: data, What: fmt.Sprintf(format, args...)})
}

// refMeta counts a reference to a metadata block, which must exist.
func (c *checker) refMeta(b uint64) {
	if b >= c.m.sb.MetadataBlocks {
		c.problem(b, false, "referenced, but beyond the %d metadata blocks", c.m.sb.MetadataBlocks)
		return
	}
	c.meta.add(b, 1)
}

func (c *checker) result() []Problem {
	sort.SliceStable(c.problems, func(i, j int) bool {
		a, b := c.problems[i], c.problems[j]
		if a.Data != b.Data {
			return !a.Data
		}
		return a.Block < b.Block
	})
	if c.dropped > 0 {
		c.problems = append(c.problems, Problem{What: fmt.Sprintf("and %d more problems not listed", c.dropped)})
	}
	return c.problems
}

// checkTrees checks the device-details and mapping trees of sb.
func (c *checker) checkTrees(sb rawSuperblock) {
	details := c.walkDetails(sb.detailsRoot)
	roots := c.walkTopLevel(sb.mappingRoot)
	ids := make([]devmapper.ThinID, 0, len(details))
	for id := range details {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if _, ok := roots[id]; !ok {
			c.problem(sb.mappingRoot, false, "thin device %d has details but no mapping tree", id)
		}
	}
	for id := range roots {
		if _, ok := details[id]; !ok {
			c.problem(sb.detailsRoot, false, "thin device %d has a mapping tree but no details", id)
		}
	}
	for _, id := range ids {
		if root, ok := roots[id]; ok {
			c.w.walk(root, mappingValueSize) //nolint:errcheck // fail records, never stops
		}
	}
	mapped := c.mappedCounts()
	for _, id := range ids {
		root, ok := roots[id]
		if n, counted := mapped[root]; ok && counted && n != details[id].MappedBlocks {
			c.problem(root, false, "thin device %d: details say %d mapped blocks, its mapping tree holds %d",
				id, details[id].MappedBlocks, n)
		}
	}
}

func (c *checker) walkDetails(root uint64) map[devmapper.ThinID]deviceDetails {
	details := map[devmapper.ThinID]deviceDetails{}
	c.w.leaf = func(n *node) error {
		for i := 0; i < n.len(); i++ {
			id, err := thinID(n.key(i))
			if err != nil {
				c.problem(n.loc, false, "%v", err)
				continue
			}
			details[id] = parseDetails(n.value(i))
		}
		return nil
	}
	c.w.walk(root, detailsValueSize) //nolint:errcheck // fail records, never stops
	c.w.leaf = c.mappingLeaf
	return details
}

// walkTopLevel walks the mapping tree's top level: thin id → subtree root.
func (c *checker) walkTopLevel(root uint64) map[devmapper.ThinID]uint64 {
	roots := map[devmapper.ThinID]uint64{}
	c.w.leaf = func(n *node) error {
		for i := 0; i < n.len(); i++ {
			id, err := thinID(n.key(i))
			if err != nil {
				c.problem(n.loc, false, "%v", err)
				continue
			}
			roots[id] = n.child(i)
		}
		return nil
	}
	c.w.walk(root, mappingValueSize) //nolint:errcheck // fail records, never stops
	c.w.leaf = c.mappingLeaf
	return roots
}

// mappingLeaf counts a distinct mapping leaf's references to data blocks.
func (c *checker) mappingLeaf(n *node) error {
	for i := 0; i < n.len(); i++ {
		d, _ := unpackMapping(le64(n.value(i)))
		if d >= c.m.sb.NrDataBlocks {
			c.problem(n.loc, false, "virtual block %d maps to data block %d, beyond the %d data blocks",
				n.key(i), d, c.m.sb.NrDataBlocks)
			continue
		}
		c.data.add(d, 1)
	}
	return nil
}

// mappedCounts sums the entries under every mapping node walked, children
// first; nodes under a bad node are left out (counted false).
func (c *checker) mappedCounts() map[uint64]uint64 {
	n := map[uint64]uint64{}
	for _, loc := range c.w.order {
		dn := c.w.nodes[loc]
		if dn.valueSize != mappingValueSize {
			continue
		}
		if dn.leaf {
			n[loc] = uint64(dn.nrEntries)
			continue
		}
		var sum uint64
		complete := true
		for _, ch := range dn.children {
			v, ok := n[ch]
			complete = complete && ok
			sum = satAdd(sum, v)
		}
		if complete {
			n[loc] = sum
		}
	}
	return n
}

// checkHeldRoot checks a metadata snapshot's superblock copy and trees; its
// references count like any others.
func (c *checker) checkHeldRoot(held uint64) {
	c.refMeta(held)
	sb, err := readSuperblock(c.m.r, held)
	if err != nil {
		c.problem(held, false, "metadata snapshot: %v", err)
		return
	}
	c.checkTrees(sb)
}
