package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// logBuilder writes a log as the kernel lays it out, for the tests.
type logBuilder struct {
	ss  int
	buf []byte
	n   uint64
}

func newLog(ss int) *logBuilder { return &logBuilder{ss: ss, buf: make([]byte, ss)} }

func (b *logBuilder) entry(sector, nr, flags uint64, mark string, data []byte) *logBuilder {
	hdr := make([]byte, b.ss)
	le := binary.LittleEndian
	le.PutUint64(hdr[0:], sector)
	le.PutUint64(hdr[8:], nr)
	le.PutUint64(hdr[16:], flags)
	le.PutUint64(hdr[24:], uint64(len(mark)))
	copy(hdr[32:], mark)
	b.buf = append(b.buf, hdr...)
	b.buf = append(b.buf, data...)
	b.n++
	return b
}

func (b *logBuilder) write(sector uint64, flags uint64, data []byte) *logBuilder {
	return b.entry(sector, uint64(len(data)/b.ss), flags, "", data)
}

func (b *logBuilder) bytes() []byte {
	le := binary.LittleEndian
	le.PutUint64(b.buf[0:], Magic)
	le.PutUint64(b.buf[8:], Version)
	le.PutUint64(b.buf[16:], b.n)
	le.PutUint32(b.buf[24:], uint32(b.ss))
	return b.buf
}

func fill(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// memDev is a device in memory.
type memDev []byte

func (m memDev) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

func sample() []byte {
	return newLog(512).
		entry(0, 0, FlagMark, "start", nil).
		write(2, 0, fill('a', 1024)).
		entry(0, 0, FlagFlush, "", nil).
		write(4, FlagFUA, fill('b', 512)).
		entry(2, 1, FlagDiscard, "", nil).
		entry(0, 0, FlagMark, "end", nil).
		bytes()
}

func TestParseSample(t *testing.T) {
	b := sample()
	l, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if l.SectorSize != 512 || len(l.Entries) != 6 {
		t.Fatalf("sector size %d, %d entries", l.SectorSize, len(l.Entries))
	}
	if s, _ := l.Mark("start"); s != 0 {
		t.Errorf("mark start at %d", s)
	}
	if e, _ := l.Mark("end"); e != 5 {
		t.Errorf("mark end at %d", e)
	}
	if _, err := l.Mark("none"); err == nil {
		t.Error("found a mark that is not there")
	}
	if got := l.Flushes(0, 6); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("flush points %v, want [2 3]", got)
	}
	if e := l.Entries[1]; e.Sector != 2 || e.NrSectors != 2 || e.DataOffset != 3*512 {
		t.Errorf("write entry %+v", e)
	}
}

func TestReplay(t *testing.T) {
	b := sample()
	l, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		to   int
		want []byte // sectors 0..5, one letter each (0 for zeros)
	}{
		{1, []byte{0, 0, 0, 0, 0, 0}},
		{3, []byte{0, 0, 'a', 'a', 0, 0}},
		{4, []byte{0, 0, 'a', 'a', 'b', 0}},
		{5, []byte{0, 0, 0, 'a', 'b', 0}},
	} {
		dev := make(memDev, 6*512)
		if err := l.Replay(dev, 0, tc.to); err != nil {
			t.Fatal(err)
		}
		for s, c := range tc.want {
			if !bytes.Equal(dev[s*512:(s+1)*512], fill(c, 512)) {
				t.Errorf("replay to %d: sector %d is not %q", tc.to, s, c)
			}
		}
	}
	if err := l.Replay(make(memDev, 6*512), 3, 2); err == nil {
		t.Error("replay of a reversed range accepted")
	}
}

func TestReplayFilePunchesHoles(t *testing.T) {
	b := newLog(4096).write(1, 0, fill('x', 8192)).entry(1, 1, FlagDiscard, "", nil).bytes()
	l, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := l.Replay(File{f}, 0, 2); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3*4096)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := append(append(fill(0, 4096), fill(0, 4096)...), fill('x', 4096)...)
	if !bytes.Equal(got, want) {
		t.Error("replayed file is not zeros, hole, x")
	}
}

func TestParseRejects(t *testing.T) {
	le := binary.LittleEndian
	edit := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	good := newLog(512).write(0, 0, fill('a', 512)).bytes()
	for name, b := range map[string][]byte{
		"short":          good[:20],
		"magic":          edit(good, func(b []byte) { b[0]++ }),
		"version":        edit(good, func(b []byte) { le.PutUint64(b[8:], 2) }),
		"sector size":    edit(good, func(b []byte) { le.PutUint32(b[24:], 1000) }),
		"tiny sector":    edit(good, func(b []byte) { le.PutUint32(b[24:], 256) }),
		"count":          edit(good, func(b []byte) { le.PutUint64(b[16:], 1<<60) }),
		"missing entry":  edit(good, func(b []byte) { le.PutUint64(b[16:], 2) }),
		"data past end":  edit(good, func(b []byte) { le.PutUint64(b[512+8:], 2) }),
		"huge sector":    edit(good, func(b []byte) { le.PutUint64(b[512:], 1<<62) }),
		"inline data":    edit(good, func(b []byte) { le.PutUint64(b[512+24:], 8) }),
		"long mark":      newLog(512).entry(0, 0, FlagMark, string(fill('m', 481)), nil).bytes(),
		"header cut off": good[:700],
	} {
		if _, err := Parse(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
	if _, err := Parse(bytes.NewReader(good), int64(len(good))); err != nil {
		t.Errorf("the unedited log: %v", err)
	}
}

// boundedDev accepts writes anywhere, keeping nothing: replay of a fuzzed
// log must not panic, whatever the offsets.
type boundedDev struct{ n int64 }

func (d *boundedDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	d.n += int64(len(p))
	return len(p), nil
}

func FuzzParse(f *testing.F) {
	f.Add(sample())
	f.Add(newLog(4096).write(3, FlagFUA, fill('z', 4096)).bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error without ErrFormat: %v", err)
			}
			return
		}
		var dev boundedDev
		if err := l.Replay(&dev, 0, len(l.Entries)); err != nil {
			t.Fatalf("replay of a parsed log: %v", err)
		}
		if dev.n > int64(len(b)) {
			t.Fatalf("replayed %d bytes from a %d-byte log", dev.n, len(b))
		}
	})
}
