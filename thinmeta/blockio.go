package thinmeta

import (
	"errors"
	"fmt"
	"io"
	"os"
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

// read returns block loc in a fresh buffer.
func (r *blockReader) read(loc uint64) ([]byte, error) {
	if loc >= r.nr {
		return nil, atBlock(loc, corruptf("block beyond the end of the metadata (%d blocks)", r.nr))
	}
	b := r.buffer()
	n, err := r.f.ReadAt(b, int64(loc)*BlockSize)
	if n == BlockSize {
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, atBlock(loc, fmt.Errorf("read %s: %w", r.path, err))
}

// buffer is a block-sized buffer, aligned for O_DIRECT when needed.
func (r *blockReader) buffer() []byte {
	if !r.direct {
		return make([]byte, BlockSize)
	}
	b := make([]byte, 2*BlockSize)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (BlockSize - 1))
	if off != 0 {
		off = BlockSize - off
	}
	return b[off : off+BlockSize : off+BlockSize]
}
