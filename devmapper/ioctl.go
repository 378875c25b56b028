package devmapper

import (
	"bytes"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctl interface version we speak. The kernel accepts any request whose
// major matches and whose minor is not newer than its own.
var ioctlVersion = [3]uint32{4, 0, 0}

const (
	headerSize = unix.SizeofDmIoctl
	// Replies with data (status, table, list, deps, versions) mostly fit;
	// DM_BUFFER_FULL_FLAG makes us grow and retry those.
	initialBufferSize = 16 << 10
	maxBufferSize     = 64 << 20
)

// request is one ioctl buffer: a dm_ioctl header followed by a payload.
type request struct {
	buf   []byte
	retry bool // on DM_BUFFER_FULL_FLAG grow and run again (read-only ops)
}

// newRequest makes a buffer of the header and room bytes: the kernel copies
// the whole buffer in and out, so ops whose reply has no data get just what
// their input needs (payload writers reserve it).
func newRequest(name string, room int) (*request, error) {
	if len(name) >= unix.DM_NAME_LEN {
		return nil, fmt.Errorf("name %q longer than %d bytes", name, unix.DM_NAME_LEN-1)
	}
	size := align8(headerSize + room)
	r := &request{buf: make([]byte, size)}
	h := r.header()
	h.Version = ioctlVersion
	h.Data_size = uint32(size)
	h.Data_start = headerSize
	copy(h.Name[:], name)
	return r, nil
}

// replyRoom is the initial data room for cmd's reply, and whether a reply
// too large for it may be asked for again: only for ops that change
// nothing. A message's reply room is the caller's (see Control.message).
func replyRoom(cmd uintptr) (room int, retry bool) {
	switch cmd {
	case unix.DM_TABLE_STATUS, unix.DM_LIST_DEVICES, unix.DM_TABLE_DEPS, unix.DM_LIST_VERSIONS:
		return initialBufferSize - headerSize, true
	}
	return 0, false
}

func (r *request) header() *unix.DmIoctl {
	return (*unix.DmIoctl)(unsafe.Pointer(&r.buf[0]))
}

func (r *request) setUUID(uuid string) error {
	if len(uuid) >= unix.DM_UUID_LEN {
		return fmt.Errorf("uuid %q longer than %d bytes", uuid, unix.DM_UUID_LEN-1)
	}
	copy(r.header().Uuid[:], uuid)
	return nil
}

// payload is the writable area after the header.
func (r *request) payload() []byte { return r.buf[headerSize:] }

// output is the kernel's reply data: from data_start up to data_size.
func (r *request) output() []byte {
	h := r.header()
	end := min(int(h.Data_size), len(r.buf))
	start := int(h.Data_start)
	if start > end {
		return nil
	}
	return r.buf[start:end]
}

// grow doubles the buffer, keeping the header and input payload.
func (r *request) grow() bool {
	if len(r.buf) >= maxBufferSize {
		return false
	}
	nb := make([]byte, len(r.buf)*2)
	copy(nb, r.buf)
	r.buf = nb
	r.header().Data_size = uint32(len(nb))
	return true
}

// reserve makes the payload at least n bytes, keeping what is written.
func (r *request) reserve(n int) {
	if len(r.payload()) >= n {
		return
	}
	nb := make([]byte, align8(headerSize+n))
	copy(nb, r.buf)
	r.buf = nb
	r.header().Data_size = uint32(len(nb))
}

// do runs cmd on the control fd, growing the buffer while the kernel says it
// was too small, for ops that may be retried. The request header (flags,
// name) is restored between tries.
func (r *request) do(fd int, cmd uintptr) error {
	for {
		saved := *r.header()
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), cmd, uintptr(unsafe.Pointer(&r.buf[0])))
		if errno != 0 {
			return errno
		}
		if r.header().Flags&unix.DM_BUFFER_FULL_FLAG == 0 {
			return nil
		}
		if !r.retry {
			// Done once (a message may not be idempotent): don't resend.
			return fmt.Errorf("reply larger than the %d-byte buffer (op done, not retried): %w", len(r.buf), unix.ENOBUFS)
		}
		*r.header() = saved
		if !r.grow() {
			return fmt.Errorf("reply larger than %d bytes: %w", maxBufferSize, unix.ENOMEM)
		}
	}
}

func align8(n int) int { return (n + 7) &^ 7 }

// cString returns the NUL-terminated string at the start of b.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// putTargets writes dm_target_spec records for a table load. Each record's
// next is relative to the record itself (the kernel's input convention).
func (r *request) putTargets(lines []TableLine) error {
	need := 0
	for _, l := range lines {
		need += align8(unix.SizeofDmTargetSpec + len(l.Params) + 1)
	}
	if need > maxBufferSize {
		return fmt.Errorf("table of %d bytes too large", need)
	}
	r.reserve(need)
	p := r.payload()
	off := 0
	for _, l := range lines {
		if len(l.Type) >= unix.DM_MAX_TYPE_NAME {
			return fmt.Errorf("target type %q too long", l.Type)
		}
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&p[off]))
		spec.Sector_start = uint64(l.Start)
		spec.Length = uint64(l.Length)
		copy(spec.Target_type[:], l.Type)
		n := copy(p[off+unix.SizeofDmTargetSpec:], l.Params)
		p[off+unix.SizeofDmTargetSpec+n] = 0
		size := align8(unix.SizeofDmTargetSpec + len(l.Params) + 1)
		spec.Next = uint32(size)
		off += size
	}
	h := r.header()
	h.Target_count = uint32(len(lines))
	h.Data_size = uint32(headerSize + off)
	return nil
}

// targets reads dm_target_spec records from a status/table reply. On output
// each record's next is relative to the start of the data area.
func (r *request) targets() ([]TableLine, error) {
	out := r.output()
	count := int(r.header().Target_count)
	lines := make([]TableLine, 0, count)
	off := 0
	for i := 0; i < count; i++ {
		if off+unix.SizeofDmTargetSpec > len(out) {
			return nil, fmt.Errorf("target %d beyond reply (%d bytes)", i, len(out))
		}
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&out[off]))
		lines = append(lines, TableLine{
			Start:  Sectors(spec.Sector_start),
			Length: Sectors(spec.Length),
			Type:   cString(spec.Target_type[:]),
			Params: cString(out[off+unix.SizeofDmTargetSpec:]),
		})
		off = int(spec.Next)
	}
	return lines, nil
}

// putString writes a NUL-terminated string as the payload.
func (r *request) putString(s string) {
	r.reserve(len(s) + 1)
	p := r.payload()
	n := copy(p, s)
	p[n] = 0
}
