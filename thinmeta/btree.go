package thinmeta

import (
	"sort"
	"strconv"
)

// maxHeight bounds how deep a btree may be. Non-root internal nodes hold at
// least 84 children, so real trees stay under 8 levels; hostile ones are
// cut off here instead of recursing without end.
const maxHeight = 32

// keyRange is the half-open key interval a node's keys must lie in, given
// by its parent's keys: [lo, hi), or [lo, ∞) when !bounded.
type keyRange struct {
	lo, hi  uint64
	bounded bool
}

var allKeys = keyRange{}

func (kr keyRange) contains(k uint64) bool { return k >= kr.lo && (!kr.bounded || k < kr.hi) }

// checkKeys checks that n's keys ascend strictly and lie within kr.
func (n *node) checkKeys(kr keyRange) error {
	for i := 0; i < n.len(); i++ {
		k := n.key(i)
		if !kr.contains(k) {
			return corruptf("btree node: key %d outside the range its parent gives [%d, %s)", k, kr.lo, kr.hiString())
		}
		if i > 0 && k <= n.key(i-1) {
			return corruptf("btree node: keys out of order (%d after %d)", k, n.key(i-1))
		}
	}
	return nil
}

func (kr keyRange) hiString() string {
	if !kr.bounded {
		return "∞"
	}
	return strconv.FormatUint(kr.hi, 10)
}

// checkChildren checks that an internal node's children lie within the
// metadata's nr blocks, so a bad pointer is blamed on the node holding it.
func (n *node) checkChildren(nr uint64) error {
	if n.leaf() {
		return nil
	}
	for i := 0; i < n.len(); i++ {
		if c := n.child(i); c >= nr {
			return corruptf("btree node: child %d is block %d, beyond the %d metadata blocks", i, c, nr)
		}
	}
	return nil
}

// childRange is the range child i of internal node n may hold.
func (n *node) childRange(i int, kr keyRange) keyRange {
	c := keyRange{lo: n.key(i), hi: kr.hi, bounded: kr.bounded}
	if i+1 < n.len() {
		c.hi, c.bounded = n.key(i+1), true
	}
	return c
}

// readNode reads and validates one btree node.
func (m *Metadata) readNode(loc uint64, valueSize int) (node, error) {
	b, err := m.r.read(loc)
	if err != nil {
		return node{}, err
	}
	n, err := parseNode(b, loc, valueSize)
	return n, atBlock(loc, err)
}

// walkTree calls leaf for every leaf of the btree at root, in key order,
// checking checksums, headers, key order and that all leaves are equally
// deep. It stops at the first error. Because every key of a node must lie
// in the range its parent gives it, a valid tree cannot reach one node by
// two paths: the walk reads each node at most once.
func (m *Metadata) walkTree(root uint64, valueSize int, leaf func(n *node) error) error {
	_, err := m.walkNode(root, valueSize, allKeys, 0, leaf)
	return err
}

// walkNode walks the subtree at loc and returns its height (leaves are 0).
func (m *Metadata) walkNode(loc uint64, valueSize int, kr keyRange, depth int, leaf func(n *node) error) (int, error) {
	if depth > maxHeight {
		return 0, atBlock(loc, corruptf("btree deeper than %d levels", maxHeight))
	}
	n, err := m.readNode(loc, valueSize)
	if err != nil {
		return 0, err
	}
	if depth > 0 && n.len() == 0 {
		return 0, atBlock(loc, corruptf("btree node: empty, but not a root"))
	}
	if err := n.checkKeys(kr); err != nil {
		return 0, atBlock(loc, err)
	}
	if err := n.checkChildren(m.r.nr); err != nil {
		return 0, atBlock(loc, err)
	}
	if n.leaf() {
		return 0, leaf(&n)
	}
	if n.len() == 0 {
		return 0, atBlock(loc, corruptf("btree node: empty internal node"))
	}
	height := -1
	for i := 0; i < n.len(); i++ {
		h, err := m.walkNode(n.child(i), valueSize, n.childRange(i, kr), depth+1, leaf)
		if err != nil {
			return 0, err
		}
		if height >= 0 && h != height {
			return 0, atBlock(loc, corruptf("btree node: children of unequal height (%d and %d)", height, h))
		}
		height = h
	}
	return height + 1, nil
}

// lookup finds key in the btree at root and returns its value.
func (m *Metadata) lookup(root uint64, valueSize int, key uint64) ([]byte, bool, error) {
	loc, kr := root, allKeys
	for depth := 0; depth <= maxHeight; depth++ {
		n, err := m.readNode(loc, valueSize)
		if err != nil {
			return nil, false, err
		}
		if err := n.checkKeys(kr); err != nil {
			return nil, false, atBlock(loc, err)
		}
		// i: the last entry whose key is <= key.
		i := sort.Search(n.len(), func(j int) bool { return n.key(j) > key }) - 1
		if n.leaf() {
			if i < 0 || n.key(i) != key {
				return nil, false, nil
			}
			return n.value(i), true, nil
		}
		if i < 0 {
			return nil, false, nil
		}
		loc, kr = n.child(i), n.childRange(i, kr)
	}
	return nil, false, atBlock(loc, corruptf("btree deeper than %d levels", maxHeight))
}
