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
	if len(out) < recHeader || ne64(out) == 0 {
		return nil, nil // dev 0 in the first record: no devices
	}
	var devs []Device
	for off := 0; ; {
		if off+recHeader > len(out) {
			return nil, fmt.Errorf("truncated device list at %d", off)
		}
		dev := ne64(out[off:])
		next := int(ne32(out[off+8:]))
		end := len(out)
		if next != 0 {
			if next < recHeader || off+next > len(out) {
				return nil, fmt.Errorf("device list record at %d points to %d, outside the reply", off, off+next)
			}
			end = off + next
		}
		name := cString(out[off+recHeader : end])
		d := Device{Name: name, Major: unix.Major(dev), Minor: unix.Minor(dev)}
		d.UUID = nameListUUID(out[:end], off+recHeader+len(name)+1)
		devs = append(devs, d)
		if next == 0 {
			return devs, nil
		}
		off += next
	}
}

// nameListUUID reads the optional uuid after a record's name; rec ends
// where the record does.
func nameListUUID(rec []byte, afterName int) string {
	p := align8(afterName)
	if p+8 > len(rec) || ne32(rec[p+4:])&unix.DM_NAME_LIST_FLAG_HAS_UUID == 0 {
		return ""
	}
	return cString(rec[p+8:])
}
