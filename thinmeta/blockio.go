package thinmeta

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockReader reads 4 KiB metadata blocks from a file or block device.
//
// Block devices are read with O_DIRECT: a live pool writes its metadata
// with bios that bypass the device's page cache, so buffered reads could
// return what an earlier reader cached rather than what is on disk. Files
// (an inactive pool's metadata file) are read through the page cache, which
// the loop driver also writes through.
type blockReader struct {
	f      io.ReaderAt
	closer io.Closer // nil for a caller's ReaderAt
	path   string
	nr     uint64 // blocks that may be read: the device's, then the superblock's limit
	direct bool
	cache  blockCache
}

// blockCache keeps recently read blocks: snapshots share most of their
// mapping trees, so walking device after device reads the same nodes
// again. What is read never changes under us — an inactive device, or a
// metadata snapshot the kernel keeps fixed — so nothing is invalidated.
// Two generations approximate LRU: a hit in the old one is promoted, and
// when the new one fills, the old one is dropped.
type blockCache struct {
	mu       sync.Mutex
	cur, old map[uint64][]byte
}

// cacheGeneration is half the cache: 1024 blocks, 4 MiB.
const cacheGeneration = 1024

func (c *blockCache) get(loc uint64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.cur[loc]; ok {
		return b
	}
	b, ok := c.old[loc]
	if ok {
		c.putLocked(loc, b)
	}
	return b
}

func (c *blockCache) put(loc uint64, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(loc, b)
}

func (c *blockCache) putLocked(loc uint64, b []byte) {
	if c.cur == nil || len(c.cur) >= cacheGeneration {
		c.old, c.cur = c.cur, make(map[uint64][]byte, cacheGeneration)
	}
	c.cur[loc] = b
}

// openBlocks opens path read-only. exclusive asks the kernel for exclusive
// use of a block device, which fails with EBUSY while a pool holds it.
func openBlocks(path string, exclusive bool) (*blockReader, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	flags := os.O_RDONLY | unix.O_CLOEXEC
	isDev := st.Mode()&os.ModeDevice != 0
	if isDev {
		flags |= unix.O_DIRECT
		if exclusive {
			flags |= unix.O_EXCL
		}
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	return &blockReader{f: f, closer: f, path: path, nr: uint64(size) / BlockSize, direct: isDev}, nil
}

func (r *blockReader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// limit lowers the readable range to n blocks (the superblock's count).
func (r *blockReader) limit(n uint64) {
	if n < r.nr {
		r.nr = n
	}
}

// read returns block loc. The buffer may be shared: callers must not
// change it.
func (r *blockReader) read(loc uint64) ([]byte, error) {
	if loc >= r.nr {
		return nil, atBlock(loc, corruptf("block beyond the end of the metadata (%d blocks)", r.nr))
	}
	if b := r.cache.get(loc); b != nil {
		return b, nil
	}
	b := r.buffer(BlockSize)
	n, err := r.f.ReadAt(b, int64(loc)*BlockSize)
	if n == BlockSize {
		r.cache.put(loc, b)
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, atBlock(loc, fmt.Errorf("read %s: %w", r.path, err))
}

// buffer is a read buffer of n bytes, aligned for O_DIRECT when needed.
func (r *blockReader) buffer(n int) []byte {
	if !r.direct {
		return make([]byte, n)
	}
	b := make([]byte, n+BlockSize)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (BlockSize - 1))
	if off != 0 {
		off = BlockSize - off
	}
	return b[off : off+n : off+n]
}
