package devmapper

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Device is one entry of the kernel's device list.
type Device struct {
	Name  string
	UUID  string // empty when the kernel doesn't report it (before ioctl 4.46)
	Major uint32
	Minor uint32
}

// List returns every device-mapper device. Large lists grow the reply buffer.
func (c *Control) List() ([]Device, error) {
	r, err := c.call("list", "", unix.DM_LIST_DEVICES, func(r *request) error {
		r.header().Flags |= unix.DM_UUID_FLAG // ask for UUIDs where supported
		return nil
	})
	if err != nil {
		return nil, err
	}
	devs, err := parseNameList(r.output())
	return devs, wrap("list", "", err)
}

// parseNameList walks dm_name_list records: dev u64, next u32, name, then
// (8-aligned after the name) event_nr u32, flags u32 and the uuid when
// flags has DM_NAME_LIST_FLAG_HAS_UUID. next is relative to each record.
func parseNameList(out []byte) ([]Device, error) {
	const recHeader = 12
	if len(out) < recHeader || le64(out) == 0 {
		return nil, nil // dev 0 in the first record: no devices
	}
	var devs []Device
	for off := 0; ; {
		if off+recHeader > len(out) {
			return nil, fmt.Errorf("truncated device list at %d", off)
		}
		dev := le64(out[off:])
		next := int(le32(out[off+8:]))
		name := cString(out[off+recHeader:])
		d := Device{Name: name, Major: unix.Major(dev), Minor: unix.Minor(dev)}
		d.UUID = nameListUUID(out, off+recHeader+len(name)+1, off+next, next == 0)
		devs = append(devs, d)
		if next == 0 {
			return devs, nil
		}
		off += next
	}
}

// nameListUUID reads the optional uuid after a record's name; end bounds the
// record (unknown for the last one).
func nameListUUID(out []byte, afterName, end int, last bool) string {
	p := align8(afterName)
	if last {
		end = len(out)
	}
	if p+8 > end || p+8 > len(out) {
		return ""
	}
	if le32(out[p+4:])&unix.DM_NAME_LIST_FLAG_HAS_UUID == 0 {
		return ""
	}
	return cString(out[p+8 : end])
}
