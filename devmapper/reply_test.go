package devmapper

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// nameRecord builds one dm_name_list record as the kernel lays it out.
func nameRecord(dev uint64, name, uuid string, last bool) []byte {
	b := make([]byte, 12, 64)
	binary.NativeEndian.PutUint64(b, dev)
	b = append(b, name...)
	b = append(b, 0)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	flags := uint32(0)
	if uuid != "" {
		flags = 1 // DM_NAME_LIST_FLAG_HAS_UUID
	}
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, flags)
	b = append(b, uuid...)
	b = append(b, 0)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	if !last {
		binary.NativeEndian.PutUint32(b[8:], uint32(len(b)))
	}
	return b
}

func TestParseNameList(t *testing.T) {
	reply := append(nameRecord(0xfd00, "pool", "UUID-1", false), nameRecord(0xfd01, "thin", "", true)...)
	devs, err := parseNameList(reply)
	if err != nil || len(devs) != 2 {
		t.Fatalf("%v %v", devs, err)
	}
	if devs[0].Name != "pool" || devs[0].UUID != "UUID-1" || devs[0].Major != 253 || devs[0].Minor != 0 {
		t.Fatalf("first: %+v", devs[0])
	}
	if devs[1].Name != "thin" || devs[1].UUID != "" || devs[1].Minor != 1 {
		t.Fatalf("second: %+v", devs[1])
	}
	if devs, err := parseNameList(make([]byte, 16)); devs != nil || err != nil {
		t.Fatalf("empty list: %v %v", devs, err)
	}
	bad := nameRecord(1, "x", "", false)
	binary.NativeEndian.PutUint32(bad[8:], 4096)
	if _, err := parseNameList(bad); err == nil {
		t.Fatal("next pointing past the reply was accepted")
	}
}

func TestParseTargetVersions(t *testing.T) {
	rec := func(name string, v [3]uint32, last bool) []byte {
		b := make([]byte, 16)
		for i, x := range v {
			binary.NativeEndian.PutUint32(b[4+4*i:], x)
		}
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		if !last {
			binary.NativeEndian.PutUint32(b, uint32(len(b)))
		}
		return b
	}
	reply := append(rec("thin-pool", [3]uint32{1, 22, 0}, false), rec("linear", [3]uint32{1, 4, 0}, true)...)
	got, err := parseTargetVersions(reply)
	if err != nil || len(got) != 2 || got[0].Name != "thin-pool" || got[0].Version != (Version{1, 22, 0}) || got[1].Name != "linear" {
		t.Fatalf("%+v %v", got, err)
	}
	if !got[0].Version.AtLeast(Version{1, 9, 0}) || got[1].Version.AtLeast(Version{1, 5, 0}) {
		t.Fatal("AtLeast")
	}
}

// The reply parsers walk offsets the kernel wrote; whatever the bytes, they
// must end (no loops) and never read out of bounds.
func FuzzParseReplies(f *testing.F) {
	f.Add(append(nameRecord(0xfd00, "pool", "U", false), nameRecord(0xfd01, "t", "", true)...))
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		_, _ = parseNameList(b)
		_, _ = parseTargetVersions(b)
	})
}

// Ops whose reply carries no data get a buffer of their input only; the
// others start at 16 KiB and may grow.
func TestRequestSizes(t *testing.T) {
	for _, tc := range []struct {
		cmd   uintptr
		size  int
		retry bool
	}{
		{unix.DM_DEV_CREATE, headerSize, false},
		{unix.DM_DEV_SUSPEND, headerSize, false},
		{unix.DM_DEV_STATUS, headerSize, false},
		{unix.DM_TARGET_MSG, headerSize, false},
		{unix.DM_TABLE_STATUS, initialBufferSize, true},
		{unix.DM_LIST_DEVICES, initialBufferSize, true},
	} {
		room, retry := replyRoom(tc.cmd)
		r, err := newRequest("dev", room)
		if err != nil || len(r.buf) != tc.size || retry != tc.retry || int(r.header().Data_size) != tc.size {
			t.Errorf("cmd %#x: %d bytes (data_size %d) retry=%v err=%v, want %d retry=%v",
				tc.cmd, len(r.buf), r.header().Data_size, retry, err, tc.size, tc.retry)
		}
	}
	r, _ := newRequest("dev", 0)
	r.putString("new-name")
	if len(r.buf) != align8(headerSize+9) || cString(r.payload()) != "new-name" {
		t.Fatalf("rename buffer %d bytes, payload %q", len(r.buf), cString(r.payload()))
	}
	if err := r.putTargets([]TableLine{Line(0, 8, ErrorTarget{})}); err != nil || int(r.header().Data_size) > len(r.buf) {
		t.Fatalf("table buffer: data_size %d of %d, err %v", r.header().Data_size, len(r.buf), err)
	}
}
