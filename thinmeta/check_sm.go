package thinmeta

// Space maps: per block a reference count, 2 bits in a bitmap block with 3
// meaning "look in the ref count btree". The data space map indexes its
// bitmaps with a btree (bitmap number → index entry); the metadata space
// map with one index block of up to 255 entries. Both keep their bitmaps,
// index and ref count tree in metadata blocks, which count too.

// spaceMap is what Check learned of one space map's structure.
type spaceMap struct {
	name     string
	data     bool
	root     smRoot
	index    []*indexEntry     // nil where an entry is missing
	overflow map[uint64]uint32 // counts above 2, from the ref count tree
}

func (c *checker) checkSpaceMaps() {
	sb := c.m.root
	data := &spaceMap{name: "data", data: true, root: sb.dataSM}
	data.index = c.dataIndex(sb.dataSM)
	data.overflow = c.refCountTree(data)
	meta := &spaceMap{name: "metadata", root: sb.metaSM}
	meta.index = c.metadataIndex(sb.metaSM)
	meta.overflow = c.refCountTree(meta)
	// Every reference has been counted by now, the space maps' own blocks
	// included.
	c.compareCounts(data, c.data)
	c.compareCounts(meta, c.meta)
}

func bitmapsFor(nrBlocks uint64) uint64 { return (nrBlocks + entriesPerBitmap - 1) / entriesPerBitmap }

// dataIndex walks the data space map's index btree.
func (c *checker) dataIndex(r smRoot) []*indexEntry {
	index := make([]*indexEntry, bitmapsFor(r.NrBlocks)) // bounded by checkSize
	c.w.leaf = func(n *node) error {
		for i := 0; i < n.len(); i++ {
			k := n.key(i)
			if k >= uint64(len(index)) {
				c.problem(n.loc, false, "data space map index: entry for bitmap %d, but %d data blocks need %d", k, r.NrBlocks, len(index))
				continue
			}
			e := parseIndexEntry(n.value(i))
			index[k] = &e
		}
		return nil
	}
	c.w.walk(r.BitmapRoot, indexValueSize) //nolint:errcheck // fail records, never stops
	c.w.leaf = c.mappingLeaf
	c.refBitmaps("data", r.BitmapRoot, index)
	return index
}

// metadataIndex reads the metadata space map's index block.
func (c *checker) metadataIndex(r smRoot) []*indexEntry {
	index := make([]*indexEntry, bitmapsFor(r.NrBlocks)) // <= 255 by checkSize
	c.refMeta(r.BitmapRoot)
	b, err := c.m.r.read(r.BitmapRoot)
	if err == nil {
		err = checkBlock(b, r.BitmapRoot, indexCsumXor, "metadata space map index")
	}
	if err != nil {
		c.problem(r.BitmapRoot, false, "%v", err)
		return index
	}
	for i := range index {
		e := parseIndexEntry(b[16+i*indexEntrySize:])
		index[i] = &e
	}
	c.refBitmaps("metadata", r.BitmapRoot, index)
	return index
}

// refBitmaps counts the index's references to its bitmap blocks.
func (c *checker) refBitmaps(name string, at uint64, index []*indexEntry) {
	for i, e := range index {
		if e == nil {
			c.problem(at, false, "%s space map index: no entry for bitmap %d", name, i)
			continue
		}
		c.refMeta(e.Block)
	}
}

// refCountTree walks a space map's btree of counts above 2.
func (c *checker) refCountTree(sm *spaceMap) map[uint64]uint32 {
	counts := map[uint64]uint32{}
	c.w.leaf = func(n *node) error {
		for i := 0; i < n.len(); i++ {
			if k := n.key(i); k < sm.root.NrBlocks {
				counts[k] = le32(n.value(i))
			} else {
				c.problem(n.loc, false, "%s ref count tree: count for block %d, beyond the %d blocks", sm.name, k, sm.root.NrBlocks)
			}
		}
		return nil
	}
	c.w.walk(sm.root.RefCountRoot, refCountSize) //nolint:errcheck // fail records, never stops
	c.w.leaf = c.mappingLeaf
	return counts
}

// compareCounts reads each bitmap and compares every block's stored count
// with the references counted in want.
func (c *checker) compareCounts(sm *spaceMap, want *satCounts) {
	var allocated uint64
	for i, e := range sm.index {
		if e == nil {
			continue
		}
		b, err := c.m.r.read(e.Block)
		if err == nil {
			err = checkBlock(b, e.Block, bitmapCsumXor, sm.name+" space map bitmap")
		}
		if err != nil {
			c.problem(e.Block, false, "%v", err)
			continue
		}
		used, free := c.compareBitmap(sm, uint64(i), b, want)
		allocated += used
		if free != uint64(e.NrFree) {
			c.problem(e.Block, false, "%s space map bitmap %d: index says %d free, bitmap has %d", sm.name, i, e.NrFree, free)
		}
	}
	if allocated != sm.root.NrAllocated {
		c.problem(superblockLocation, false, "%s space map: superblock says %d blocks allocated, bitmaps count %d",
			sm.name, sm.root.NrAllocated, allocated)
	}
}

// compareBitmap checks bitmap i and returns its used and free entry counts.
func (c *checker) compareBitmap(sm *spaceMap, i uint64, b []byte, want *satCounts) (used, free uint64) {
	base := i * entriesPerBitmap
	for j := 0; j < entriesPerBitmap; j++ {
		stored := bitmapCount(b, j)
		blk := base + uint64(j)
		if blk >= sm.root.NrBlocks {
			if stored == 0 {
				free++
			}
			continue
		}
		if stored == 3 {
			v, ok := sm.overflow[blk]
			if !ok || v < 3 {
				c.problem(blk, sm.data, "%s space map: bitmap says 3 or more references, ref count tree has %d", sm.name, v)
			}
			stored = v
		}
		if stored == 0 {
			free++
		} else {
			used++
		}
		if w := want.get(blk); w != stored {
			c.problem(blk, sm.data, "%s space map counts %d references, the trees make %d%s", sm.name, stored, w, leakNote(stored, w))
		}
	}
	return used, free
}

func leakNote(stored, want uint32) string {
	if want == 0 {
		return " (leaked)"
	}
	return ""
}
