package thinmeta

import "math"

// satCounts counts references to blocks 0..n-1: one byte per block, in
// pages allocated on first use (a pool's mappings are often clustered),
// with counts from 255 up kept exactly in an overflow map.
type satCounts struct {
	pages    []*[countPage]uint8
	overflow map[uint64]uint32
}

const (
	countPage     = 1 << 15
	countOverflow = math.MaxUint8
)

func newSatCounts(n uint64) *satCounts {
	return &satCounts{pages: make([]*[countPage]uint8, (n+countPage-1)/countPage), overflow: map[uint64]uint32{}}
}

// add adds k to block b's count; b must be below n.
func (c *satCounts) add(b uint64, k uint32) {
	if k == 0 {
		return
	}
	p := c.pages[b/countPage]
	if p == nil {
		p = new([countPage]uint8)
		c.pages[b/countPage] = p
	}
	v := &p[b%countPage]
	if *v == countOverflow {
		c.overflow[b] = satAdd32(c.overflow[b], k)
		return
	}
	sum := uint32(*v) + k
	if sum >= countOverflow {
		*v = countOverflow
		c.overflow[b] = sum
		return
	}
	*v = uint8(sum)
}

func (c *satCounts) get(b uint64) uint32 {
	p := c.pages[b/countPage]
	if p == nil {
		return 0
	}
	if v := p[b%countPage]; v != countOverflow {
		return uint32(v)
	}
	return c.overflow[b]
}

func satAdd32(a, b uint32) uint32 {
	if a > math.MaxUint32-b {
		return math.MaxUint32
	}
	return a + b
}
