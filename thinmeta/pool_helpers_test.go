package thinmeta_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/testutil"
)

// testPool builds thin devices in a loop-backed pool the kernel runs.
type testPool struct {
	*testutil.LoopPool
	t          testing.TB
	blockBytes int64
}

const thinSize = devmapper.Sectors(4 << 21) // 4 GiB of virtual space per device

func newPool(t testing.TB, opts testutil.PoolOptions) *testPool {
	t.Helper()
	if opts.MetadataSize == 0 {
		opts.MetadataSize = 2 << 20 // small enough to keep as a fixture
	}
	opts.Features.SkipBlockZeroing = true
	p := testutil.NewLoopPool(t, opts)
	bs := opts.BlockSize
	if bs == 0 {
		bs = 128
	}
	return &testPool{LoopPool: p, t: t, blockBytes: int64(bs.Bytes())}
}

func (p *testPool) create(id devmapper.ThinID) {
	p.t.Helper()
	if err := p.Control.CreateThin(p.Name, id); err != nil {
		p.t.Fatalf("create_thin %d: %v", id, err)
	}
}

func (p *testPool) snap(id, origin devmapper.ThinID) {
	p.t.Helper()
	if err := p.Control.CreateSnap(p.Name, id, origin); err != nil {
		p.t.Fatalf("create_snap %d of %d: %v", id, origin, err)
	}
}

func (p *testPool) del(id devmapper.ThinID) {
	p.t.Helper()
	if err := p.Control.DeleteThin(p.Name, id); err != nil {
		p.t.Fatalf("delete %d: %v", id, err)
	}
}

// write writes 4 KiB at the start of each of the given virtual blocks of
// thin device id, which maps (or breaks sharing of) each block.
func (p *testPool) write(id devmapper.ThinID, blocks ...uint64) {
	p.t.Helper()
	name := fmt.Sprintf("%s-thin%d", p.Name, id)
	p.Activate(p.t, name, id, thinSize)
	defer func() {
		if err := p.Control.Remove(name, 0); err != nil {
			p.t.Errorf("remove %s: %v", name, err)
		}
	}()
	f, err := os.OpenFile(devmapper.DevicePath(name), os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for _, b := range blocks {
		copy(buf, fmt.Sprintf("thin %d block %d", id, b))
		if _, err := f.WriteAt(buf, int64(b)*p.blockBytes); err != nil {
			p.t.Fatalf("write thin %d block %d: %v", id, b, err)
		}
	}
	if err := f.Sync(); err != nil {
		p.t.Fatalf("sync thin %d: %v", id, err)
	}
}

func blockRange(from, to uint64) []uint64 {
	var bs []uint64
	for b := from; b < to; b++ {
		bs = append(bs, b)
	}
	return bs
}

// stop removes the pool device, leaving its metadata inactive on the loop
// device and file.
func (p *testPool) stop() {
	p.t.Helper()
	if err := p.Control.Remove(p.Name, 0); err != nil {
		p.t.Fatalf("remove pool: %v", err)
	}
}

// buildMixed makes a pool with plain devices, snapshots of snapshots,
// CoW-broken blocks, trees of more than one leaf and deleted devices.
func buildMixed(p *testPool) {
	p.create(1)
	p.write(1, blockRange(0, 100)...)
	p.snap(2, 1)
	p.write(2, append(blockRange(50, 60), blockRange(200, 210)...)...)
	p.snap(3, 2)
	p.write(3, blockRange(0, 5)...)
	p.create(4)
	p.write(4, blockRange(0, 600)...) // more leaves than one
	p.snap(5, 4)
	p.snap(6, 5)
	p.write(6, blockRange(590, 610)...)
	p.del(5)
	p.create(7) // empty
	p.snap(8, 3)
	p.del(1) // an origin with live snapshots
	if err := p.Control.SetTransactionID(p.Name, 0, 42); err != nil {
		p.t.Fatal(err)
	}
}

// buildRefcounts makes reference counts above 2, which live in the space
// maps' ref count trees: one mapping root shared by four devices, and data
// blocks referenced from four distinct leaves.
func buildRefcounts(p *testPool) {
	p.create(1)
	p.write(1, blockRange(0, 10)...)
	for id := devmapper.ThinID(2); id <= 7; id++ {
		p.snap(id, 1)
	}
	for id := devmapper.ThinID(2); id <= 4; id++ {
		p.write(id, 100) // a copy of the leaf: its data blocks gain a reference
	}
}

// buildHeld leaves a metadata snapshot held while the pool moves on, and
// stops the pool with it still held: the inactive metadata then has a held
// root whose trees share nodes with the current ones.
func buildHeld(p *testPool) {
	buildMixed(p)
	if err := p.Control.ReserveMetadataSnap(p.Name); err != nil {
		p.t.Fatal(err)
	}
	p.write(2, blockRange(300, 320)...)
	p.create(9)
	p.write(9, 0, 1, 2)
	p.del(3)
}

// buildMany makes n thin devices shaped like container image layers: a
// base device, then snapshots of random earlier devices (snapshots of
// snapshots, many levels deep), every 16th written to (breaking sharing
// of a few blocks), every 97th deleting a random earlier one. It returns
// the ids alive at the end.
func buildMany(p *testPool, n int) []devmapper.ThinID {
	rng := rand.New(rand.NewPCG(8, uint64(n)))
	p.create(1)
	p.write(1, blockRange(0, 300)...)
	live := []devmapper.ThinID{1}
	for id := devmapper.ThinID(2); id <= devmapper.ThinID(n); id++ {
		p.snap(id, live[rng.IntN(len(live))])
		live = append(live, id)
		if id%16 == 0 {
			blocks := make([]uint64, 1+rng.IntN(3))
			for i := range blocks {
				blocks[i] = uint64(rng.IntN(400))
			}
			p.write(id, blocks...)
		}
		if id%97 == 0 {
			i := 1 + rng.IntN(len(live)-1)
			p.del(live[i])
			live = append(live[:i], live[i+1:]...)
		}
	}
	return live
}
