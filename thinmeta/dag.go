package thinmeta

// dagWalker walks btrees whose nodes may be shared, as mapping subtrees are
// between a device and its snapshots: every distinct node is read and
// checked once, however many parents point to it. Later references to a
// node are checked against what the first visit recorded (its key span
// and height), so sharing is only accepted where it keeps every tree
// valid. A reference back to a node still being walked is a cycle.
type dagWalker struct {
	m     *Metadata
	nodes map[uint64]*dagNode
	// order lists nodes as they finish: children before their parents.
	order []uint64
	// leaf is called once per distinct leaf node.
	leaf func(n *node) error
	// fail decides what a problem at a block does: a non-nil return stops
	// the walk with that error; nil skips the bad subtree and goes on.
	fail func(loc uint64, err error) error
	// ref, when set, is called for every reference to a node, the first
	// included: Check counts references with it.
	ref func(loc uint64)
	// min3rd also rejects non-root nodes under a third full, which the
	// kernel's rebalancing never leaves (thin_check checks it too).
	min3rd bool
}

type dagState uint8

const (
	walking dagState = iota + 1
	done
	bad // unreadable or invalid: references to it are not checked again
)

type dagNode struct {
	state       dagState
	leaf        bool
	valueSize   uint16
	height      int8
	nrEntries   uint32
	first, last uint64
	children    []uint64 // of internal nodes
}

func newDAGWalker(m *Metadata) *dagWalker {
	return &dagWalker{m: m, nodes: map[uint64]*dagNode{},
		fail: func(_ uint64, err error) error { return err }}
}

// walk visits the tree rooted at root. height < 0 means any height.
func (w *dagWalker) walk(root uint64, valueSize int) error {
	_, err := w.visit(root, valueSize, allKeys, 0, -1)
	return err
}

// visit walks the subtree at loc, which its parent expects to have the
// given height (-1: unknown) and keys in kr; it returns the height.
func (w *dagWalker) visit(loc uint64, valueSize int, kr keyRange, depth, height int) (int, error) {
	if w.ref != nil {
		w.ref(loc)
	}
	if dn, ok := w.nodes[loc]; ok {
		return w.revisit(loc, dn, valueSize, kr, depth, height)
	}
	if depth > maxHeight {
		return -1, w.fail(loc, corruptf("btree deeper than %d levels", maxHeight))
	}
	n, err := w.m.readNode(loc, valueSize)
	if err == nil {
		err = checkShape(&n, kr, depth, w.min3rd)
	}
	if err == nil {
		err = n.checkChildren(w.m.r.nr)
	}
	if err != nil {
		w.nodes[loc] = &dagNode{state: bad}
		return -1, w.fail(loc, err)
	}
	dn := &dagNode{state: walking, leaf: n.leaf(), valueSize: uint16(valueSize), nrEntries: n.nrEntries}
	if n.len() > 0 {
		dn.first, dn.last = n.key(0), n.key(n.len()-1)
	}
	w.nodes[loc] = dn
	h, err := w.visitChildren(&n, dn, valueSize, kr, depth, height)
	dn.state, dn.height = done, int8(h)
	w.order = append(w.order, loc)
	return h, err
}

// checkShape checks what a node must satisfy wherever it sits in a tree.
func checkShape(n *node, kr keyRange, depth int, min3rd bool) error {
	if depth > 0 && n.len() == 0 {
		return corruptf("btree node: empty, but not a root")
	}
	if min3rd && depth > 0 && n.nrEntries < n.maxEntries/3 {
		return corruptf("btree node: %d entries, under a third of the %d it holds", n.nrEntries, n.maxEntries)
	}
	if !n.leaf() && n.len() == 0 {
		return corruptf("btree node: empty internal node")
	}
	return n.checkKeys(kr)
}

func (w *dagWalker) visitChildren(n *node, dn *dagNode, valueSize int, kr keyRange, depth, height int) (int, error) {
	if n.leaf() {
		if height > 0 {
			return 0, w.fail(n.loc, corruptf("btree leaf where its parent expects a subtree of height %d", height))
		}
		if w.leaf != nil {
			if err := w.leaf(n); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	if height == 0 {
		return -1, w.fail(n.loc, corruptf("btree internal node where its parent expects a leaf"))
	}
	dn.children = make([]uint64, n.len())
	childHeight := -1
	if height > 0 {
		childHeight = height - 1
	}
	for i := range dn.children {
		c := n.child(i)
		dn.children[i] = c
		h, err := w.visit(c, valueSize, n.childRange(i, kr), depth+1, childHeight)
		if err != nil {
			return -1, err
		}
		if childHeight < 0 && h >= 0 {
			childHeight = h
		}
	}
	if childHeight < 0 {
		return -1, nil
	}
	return childHeight + 1, nil
}

// revisit checks another reference to an already visited node.
func (w *dagWalker) revisit(loc uint64, dn *dagNode, valueSize int, kr keyRange, depth, height int) (int, error) {
	switch {
	case dn.state == bad:
		return -1, nil
	case dn.state == walking:
		return -1, w.fail(loc, corruptf("btree cycle: node is its own descendant"))
	case int(dn.valueSize) != valueSize:
		return -1, w.fail(loc, corruptf("btree node shared by trees of different value sizes (%d and %d)", dn.valueSize, valueSize))
	case depth > 0 && dn.nrEntries == 0:
		return -1, w.fail(loc, corruptf("btree node: empty, but not a root"))
	case dn.nrEntries > 0 && (!kr.contains(dn.first) || !kr.contains(dn.last)):
		return -1, w.fail(loc, corruptf("shared btree node: keys %d..%d outside the range a parent gives [%d, %s)",
			dn.first, dn.last, kr.lo, kr.hiString()))
	case height >= 0 && int(dn.height) >= 0 && int(dn.height) != height:
		return -1, w.fail(loc, corruptf("shared btree node of height %d where a parent expects height %d", dn.height, height))
	}
	return int(dn.height), nil
}
