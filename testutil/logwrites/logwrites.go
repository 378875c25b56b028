// Package logwrites reads the log a device-mapper log-writes target keeps
// (the kernel's Documentation/admin-guide/device-mapper/log-writes.rst)
// and replays it onto a fresh device, up to any entry: the device as it
// stood on stable storage at that point. Tests use it to cut the power at
// every flush of an operation.
//
// The log device starts with a super block; entries follow from its
// second sector on, each a header sector (with a mark's name inline) and,
// unless it is a discard, the data written, nr_sectors sectors. Only
// writes that a flush has covered (or FUA writes) reach the log, in the
// order they became stable. Everything is little-endian.
package logwrites

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// Entry flags.
const (
	FlagFlush    = 1 << 0 // a cache flush: what precedes it is stable
	FlagFUA      = 1 << 1 // a write that bypassed the cache
	FlagDiscard  = 1 << 2 // sectors discarded, no data logged
	FlagMark     = 1 << 3 // a mark set by a "mark <name>" message
	FlagMetadata = 1 << 4 // the write was tagged as filesystem metadata
)

const (
	// Magic is the super block's magic number.
	Magic = 0x6a736677736872
	// Version is the log format version this package reads.
	Version   = 1
	superLen  = 28
	headerLen = 32
	// maxSectorSize bounds the logical block size a log may declare.
	maxSectorSize = 64 << 10
)

// ErrFormat is wrapped by every error about a malformed log.
var ErrFormat = errors.New("logwrites: malformed log")

// Entry is one logged I/O.
type Entry struct {
	Sector     uint64 // first sector written, in the log's sector size
	NrSectors  uint64
	Flags      uint64
	Mark       string // for FlagMark
	DataOffset int64  // where the data is in the log, in bytes
}

// Log is a parsed log: its sector size and entries, in order.
type Log struct {
	r          io.ReaderAt
	SectorSize uint32
	Entries    []Entry
}

// Is reports whether e has every flag in f.
func (e Entry) Is(f uint64) bool { return e.Flags&f == f }

// Parse reads the super block and the nr_entries entries it counts from
// r, a log device size bytes long. The entries' data stays in r.
func Parse(r io.ReaderAt, size int64) (*Log, error) {
	var sb [superLen]byte
	if _, err := r.ReadAt(sb[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read super block: %v", ErrFormat, err)
	}
	le := binary.LittleEndian
	if m := le.Uint64(sb[0:]); m != Magic {
		return nil, fmt.Errorf("%w: magic %#x, want %#x", ErrFormat, m, Magic)
	}
	if v := le.Uint64(sb[8:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrFormat, v, Version)
	}
	n := le.Uint64(sb[16:])
	ss := le.Uint32(sb[24:])
	if ss < 512 || ss > maxSectorSize || bits.OnesCount32(ss) != 1 {
		return nil, fmt.Errorf("%w: sector size %d", ErrFormat, ss)
	}
	// Each entry takes at least a sector: a count beyond that is a lie,
	// and must not size an allocation.
	if n > uint64(size)/uint64(ss) {
		return nil, fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrFormat, n, size)
	}
	l := &Log{r: r, SectorSize: ss, Entries: make([]Entry, 0, n)}
	pos := int64(ss)
	for i := uint64(0); i < n; i++ {
		e, next, err := l.readEntry(pos, size)
		if err != nil {
			return nil, fmt.Errorf("entry %d at byte %d: %w", i, pos, err)
		}
		l.Entries = append(l.Entries, e)
		pos = next
	}
	return l, nil
}

// readEntry reads the entry whose header is at pos, and returns it and
// where the next one starts.
func (l *Log) readEntry(pos, size int64) (Entry, int64, error) {
	ss := int64(l.SectorSize)
	if pos > size-ss {
		return Entry{}, 0, fmt.Errorf("%w: header past the end of the log", ErrFormat)
	}
	hdr := make([]byte, ss)
	if _, err := l.r.ReadAt(hdr, pos); err != nil {
		return Entry{}, 0, fmt.Errorf("%w: read header: %v", ErrFormat, err)
	}
	le := binary.LittleEndian
	e := Entry{Sector: le.Uint64(hdr[0:]), NrSectors: le.Uint64(hdr[8:]), Flags: le.Uint64(hdr[16:])}
	dataLen := le.Uint64(hdr[24:])
	next := pos + ss
	switch {
	case e.Is(FlagMark):
		if dataLen > uint64(ss-headerLen) {
			return Entry{}, 0, fmt.Errorf("%w: mark of %d bytes", ErrFormat, dataLen)
		}
		e.Mark = string(hdr[headerLen : headerLen+dataLen])
		e.NrSectors = 0
		return e, next, nil
	case dataLen != 0:
		return Entry{}, 0, fmt.Errorf("%w: inline data (%d bytes) outside a mark", ErrFormat, dataLen)
	case e.Is(FlagDiscard):
		return e, next, nil
	}
	if e.NrSectors > uint64(size-next)/uint64(ss) {
		return Entry{}, 0, fmt.Errorf("%w: %d sectors of data past the end of the log", ErrFormat, e.NrSectors)
	}
	if e.Sector > (1<<63-1)/uint64(ss)-e.NrSectors {
		return Entry{}, 0, fmt.Errorf("%w: sector %d out of range", ErrFormat, e.Sector)
	}
	e.DataOffset = next
	return e, next + int64(e.NrSectors)*ss, nil
}

// Mark returns the index of the entry that is mark name.
func (l *Log) Mark(name string) (int, error) {
	for i, e := range l.Entries {
		if e.Is(FlagMark) && e.Mark == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("logwrites: no mark %q in the log", name)
}

// Flushes returns the indexes in [from, to) of the entries after which
// the device may be found as it stood: flushes and FUA writes.
func (l *Log) Flushes(from, to int) []int {
	var out []int
	for i := from; i < to && i < len(l.Entries); i++ {
		if l.Entries[i].Flags&(FlagFlush|FlagFUA) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// Discarder is a replay target that can discard a byte range (a file
// punches a hole). Targets without it get zeros written.
type Discarder interface {
	Discard(off, n int64) error
}

// Replay writes entries [from, to) onto dst, in order: dst becomes the
// device as it stood after entry to-1, given it stood as after from-1.
func (l *Log) Replay(dst io.WriterAt, from, to int) error {
	if from < 0 || to > len(l.Entries) || from > to {
		return fmt.Errorf("logwrites: replay [%d, %d) of %d entries", from, to, len(l.Entries))
	}
	ss := int64(l.SectorSize)
	buf := make([]byte, 1<<20)
	for i := from; i < to; i++ {
		e := l.Entries[i]
		if e.Is(FlagMark) || e.NrSectors == 0 {
			continue
		}
		off, n := int64(e.Sector)*ss, int64(e.NrSectors)*ss
		var err error
		if e.Is(FlagDiscard) {
			err = discard(dst, off, n, buf)
		} else {
			err = l.copyData(dst, e, off, n, buf)
		}
		if err != nil {
			return fmt.Errorf("logwrites: replay entry %d (sector %d, %d sectors): %w", i, e.Sector, e.NrSectors, err)
		}
	}
	return nil
}

func (l *Log) copyData(dst io.WriterAt, e Entry, off, n int64, buf []byte) error {
	for done := int64(0); done < n; {
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := l.r.ReadAt(chunk, e.DataOffset+done); err != nil {
			return fmt.Errorf("read data: %w", err)
		}
		if _, err := dst.WriteAt(chunk, off+done); err != nil {
			return err
		}
		done += int64(len(chunk))
	}
	return nil
}

func discard(dst io.WriterAt, off, n int64, buf []byte) error {
	if d, ok := dst.(Discarder); ok {
		return d.Discard(off, n)
	}
	clear(buf)
	for done := int64(0); done < n; {
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := dst.WriteAt(chunk, off+done); err != nil {
			return err
		}
		done += int64(len(chunk))
	}
	return nil
}
