package devmapper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Info is what the kernel reports about one device (DM_DEV_STATUS).
type Info struct {
	Name, UUID     string
	Major, Minor   uint32
	OpenCount      int32
	TargetCount    uint32
	EventNr        uint32
	Suspended      bool
	ReadOnly       bool
	LiveTable      bool // a table is active
	InactiveTable  bool // a loaded table waits for resume
	DeferredRemove bool // removal is scheduled for the last close
}

// Dev returns the device number in the form mknod and stat use.
func (i Info) Dev() uint64 { return unix.Mkdev(i.Major, i.Minor) }

// Path is the device's node under /dev/mapper.
func (i Info) Path() string { return DevicePath(i.Name) }

// KernelPath is the node devtmpfs makes for the device, /dev/dm-<minor>. It
// exists as soon as the first table is loaded, without udev: the path to
// use after a NoUdevWait op.
func (i Info) KernelPath() string { return "/dev/dm-" + strconv.FormatUint(uint64(i.Minor), 10) }

// DevicePath returns /dev/mapper/<name>.
func DevicePath(name string) string { return MapperDir + "/" + name }

func infoFrom(h *unix.DmIoctl) Info {
	return Info{
		Name:           cString(h.Name[:]),
		UUID:           cString(h.Uuid[:]),
		Major:          unix.Major(h.Dev),
		Minor:          unix.Minor(h.Dev),
		OpenCount:      h.Open_count,
		TargetCount:    h.Target_count,
		EventNr:        h.Event_nr,
		Suspended:      h.Flags&unix.DM_SUSPEND_FLAG != 0,
		ReadOnly:       h.Flags&unix.DM_READONLY_FLAG != 0,
		LiveTable:      h.Flags&unix.DM_ACTIVE_PRESENT_FLAG != 0,
		InactiveTable:  h.Flags&unix.DM_INACTIVE_PRESENT_FLAG != 0,
		DeferredRemove: h.Flags&unix.DM_DEFERRED_REMOVE != 0,
	}
}

// Create makes a device with no table. Without udev it also makes the
// /dev/mapper node, since the device number is known from here on.
func (c *Control) Create(name, uuid string) (Info, error) {
	r, err := c.call("create", name, unix.DM_DEV_CREATE, func(r *request) error {
		return r.setUUID(uuid)
	})
	if err != nil {
		return Info{}, err
	}
	info := infoFrom(r.header())
	if c.udev == UdevOff {
		if err := c.makeNode(name, info.Dev()); err != nil {
			_, _ = c.call("remove", name, unix.DM_DEV_REMOVE, nil)
			return Info{}, wrap("create", name, err)
		}
	}
	return info, nil
}

// CreateAndLoad creates a device, loads its table and resumes it, removing
// the device again if any step fails. The Info is the resume's reply. Without
// udev the /dev/mapper node exists when it returns (no EnsureNode needed);
// with udev it does too, unless the Control is from NoUdevWait.
func (c *Control) CreateAndLoad(name, uuid string, table []TableLine, flags uint16) (Info, error) {
	return c.createAndLoad(name, uuid, table, false, flags)
}

// CreateAndLoadReadOnly is CreateAndLoad with a read-only table: the device
// refuses writes, and so does whatever is mounted from it.
func (c *Control) CreateAndLoadReadOnly(name, uuid string, table []TableLine, flags uint16) (Info, error) {
	return c.createAndLoad(name, uuid, table, true, flags)
}

func (c *Control) createAndLoad(name, uuid string, table []TableLine, readOnly bool, flags uint16) (Info, error) {
	if _, err := c.Create(name, uuid); err != nil {
		return Info{}, err
	}
	err := c.Load(name, table, readOnly)
	var info Info
	if err == nil {
		info, err = c.resume(name, flags)
	}
	if err != nil {
		_ = c.Remove(name, flags)
		return Info{}, err
	}
	if info.UUID == "" {
		info.UUID = uuid
	}
	return info, nil
}

// Info reports on a device; a missing one gives an error matching ErrNotFound.
func (c *Control) Info(name string) (Info, error) {
	r, err := c.call("info", name, unix.DM_DEV_STATUS, nil)
	if err != nil {
		return Info{}, err
	}
	return infoFrom(r.header()), nil
}

// Exists reports whether the device exists.
func (c *Control) Exists(name string) (bool, error) {
	_, err := c.Info(name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// Load loads a table into the device's inactive slot; Resume makes it live.
func (c *Control) Load(name string, table []TableLine, readOnly bool) error {
	_, err := c.call("load", name, unix.DM_TABLE_LOAD, func(r *request) error {
		if readOnly {
			r.header().Flags |= unix.DM_READONLY_FLAG
		}
		return r.putTargets(table)
	})
	return err
}

// ClearTable drops the inactive table.
func (c *Control) ClearTable(name string) error {
	_, err := c.call("clear", name, unix.DM_TABLE_CLEAR, nil)
	return err
}

// SuspendFlags modify Suspend.
type SuspendFlags uint32

const (
	SuspendNoFlush    SuspendFlags = unix.DM_NOFLUSH_FLAG
	SuspendSkipLockfs SuspendFlags = unix.DM_SKIP_LOCKFS_FLAG
)

// Suspend stops I/O to the device (flushing it unless told not to).
func (c *Control) Suspend(name string, flags SuspendFlags) error {
	_, err := c.call("suspend", name, unix.DM_DEV_SUSPEND, func(r *request) error {
		r.header().Flags |= unix.DM_SUSPEND_FLAG | uint32(flags)
		return nil
	})
	return err
}

// Resume makes a loaded table live and restarts I/O. udevFlags go to udev's
// rules with the change event (see Udev*Flag).
func (c *Control) Resume(name string, udevFlags uint16) error {
	_, err := c.resume(name, udevFlags)
	return err
}

// resume is Resume returning the device's state from the reply.
func (c *Control) resume(name string, udevFlags uint16) (Info, error) {
	r, err := c.withCookie("resume", name, unix.DM_DEV_SUSPEND, udevFlags, nil)
	if errors.Is(err, errUdevTimeout) {
		// udev missed the event: do what its rules would have done.
		var info Info
		if info, err = c.Info(name); err == nil {
			err = c.EnsureNode(info)
		}
		return info, err
	}
	if err != nil {
		return Info{}, err
	}
	info := infoFrom(r.header())
	info.Name = name
	return info, nil
}

// Remove removes a device (and its node). A device still open gives an error
// matching ErrBusy and unix.EBUSY.
func (c *Control) Remove(name string, udevFlags uint16) error {
	_, err := c.withCookie("remove", name, unix.DM_DEV_REMOVE, udevFlags, nil)
	if err != nil && !errors.Is(err, errUdevTimeout) {
		return err
	}
	if c.udev == UdevOff || err != nil {
		return wrap("remove", name, removeNode(name))
	}
	return nil
}

// RemoveDeferred removes the device now if nothing has it open, or else
// schedules its removal for the last close. It reports whether removal was
// deferred.
func (c *Control) RemoveDeferred(name string, udevFlags uint16) (deferred bool, err error) {
	_, err = c.withCookie("deferred remove", name, unix.DM_DEV_REMOVE, udevFlags, func(r *request) error {
		r.header().Flags |= unix.DM_DEFERRED_REMOVE
		return nil
	})
	timedOut := errors.Is(err, errUdevTimeout)
	if err != nil && !timedOut {
		return false, err
	}
	exists, err := c.Exists(name)
	if err != nil || exists {
		return exists, err
	}
	if c.udev == UdevOff || timedOut {
		return false, wrap("deferred remove", name, removeNode(name))
	}
	return false, nil
}

// CancelDeferredRemove cancels a scheduled removal. With none pending it
// succeeds; on a missing device it fails with ENXIO (ErrNotFound).
func (c *Control) CancelDeferredRemove(name string) error {
	_, err := c.message(name, 0, "@cancel_deferred_remove", 0) // replies nothing
	return err
}

// Rename gives a device a new name.
func (c *Control) Rename(name, newName string) error {
	if len(newName) >= unix.DM_NAME_LEN || newName == "" {
		return wrap("rename", name, fmt.Errorf("%w: bad new name %q", unix.EINVAL, newName))
	}
	_, err := c.withCookie("rename", name, unix.DM_DEV_RENAME, 0, func(r *request) error {
		r.putString(newName)
		return nil
	})
	if errors.Is(err, errUdevTimeout) || (err == nil && c.udev == UdevOff) {
		err = wrap("rename", name, renameNode(name, newName))
	}
	return err
}

// SetUUID sets the UUID of a device that has none.
func (c *Control) SetUUID(name, uuid string) error {
	_, err := c.call("set uuid", name, unix.DM_DEV_RENAME, func(r *request) error {
		r.header().Flags |= unix.DM_UUID_FLAG
		r.putString(uuid)
		return nil
	})
	return err
}

// Table returns the live table as the kernel prints it (devices as major:minor).
func (c *Control) Table(name string) ([]TableLine, error) {
	return c.tableStatus("table", name, unix.DM_STATUS_TABLE_FLAG)
}

// Status returns each target's status line. noFlush asks the kernel not to
// commit pending metadata first (cheaper; numbers may lag a little).
func (c *Control) Status(name string, noFlush bool) ([]TableLine, error) {
	var flags uint32
	if noFlush {
		flags = unix.DM_NOFLUSH_FLAG
	}
	return c.tableStatus("status", name, flags)
}

func (c *Control) tableStatus(op, name string, flags uint32) ([]TableLine, error) {
	r, err := c.call(op, name, unix.DM_TABLE_STATUS, func(r *request) error {
		r.header().Flags |= flags
		return nil
	})
	if err != nil {
		return nil, err
	}
	lines, err := r.targets()
	return lines, wrap(op, name, err)
}

// Deps lists the devices (as device numbers) the live table uses.
func (c *Control) Deps(name string) ([]uint64, error) {
	r, err := c.call("deps", name, unix.DM_TABLE_DEPS, nil)
	if err != nil {
		return nil, err
	}
	out := r.output()
	if len(out) < 8 {
		return nil, wrap("deps", name, fmt.Errorf("short reply (%d bytes)", len(out)))
	}
	n := int(ne32(out))
	if 8+8*n > len(out) {
		return nil, wrap("deps", name, fmt.Errorf("reply names %d devices in %d bytes", n, len(out)))
	}
	devs := make([]uint64, n)
	for i := range devs {
		devs[i] = ne64(out[8+8*i:])
	}
	return devs, nil
}

// Message sends a target message (to the target at sector) and returns the
// target's reply, if any. A message is sent once: a reply over 16 KiB is an
// error (ENOBUFS), not a reason to send it again.
func (c *Control) Message(name string, sector Sectors, msg string) (string, error) {
	return c.message(name, sector, msg, initialBufferSize)
}

// message sends msg with room bytes for the reply (the kernel writes it over
// the message): 0 for messages known to reply nothing.
func (c *Control) message(name string, sector Sectors, msg string, room int) (string, error) {
	op := "message " + msg
	r, err := c.callRoom(op, name, unix.DM_TARGET_MSG, room, false, func(r *request) error {
		r.reserve(8 + len(msg) + 1)
		p := r.payload()
		binary.NativeEndian.PutUint64(p, uint64(sector))
		n := copy(p[8:], msg)
		p[8+n] = 0
		return nil
	})
	if err != nil {
		return "", err
	}
	if r.header().Flags&unix.DM_DATA_OUT_FLAG == 0 {
		return "", nil
	}
	return strings.TrimRight(cString(r.output()), "\n"), nil
}

// errUdevTimeout: the op itself succeeded, but udev did not report back in
// time (an event lost while udevd was starting, or rules missing); callers
// then make or remove the node themselves, as libdevmapper's fallback does.
var errUdevTimeout = errors.New("udev did not complete the event")

// withCookie runs an op that makes the kernel send a uevent. With udev it
// passes a cookie and waits for udev's rules to finish with the device node;
// a NoUdevWait Control passes one too (udev's rules want its flags) but
// leaves it to the jar instead of waiting.
func (c *Control) withCookie(op, name string, cmd uintptr, udevFlags uint16, fill func(*request) error) (*request, error) {
	var ck *cookie
	if c.udev == UdevSync {
		var err error
		if c.noWait {
			ck, err = c.jar.newCookie()
		} else {
			ck, err = newCookie(2)
		}
		if err != nil {
			return nil, wrap(op, name, err)
		}
	}
	r, err := c.call(op, name, cmd, func(r *request) error {
		if ck != nil {
			r.header().Event_nr = ck.eventNr(udevFlags)
		}
		if fill != nil {
			return fill(r)
		}
		return nil
	})
	if ck == nil {
		return r, err
	}
	if err != nil || r.header().Flags&unix.DM_UEVENT_GENERATED_FLAG == 0 {
		if c.noWait {
			c.jar.drop(ck)
		} else {
			ck.release()
		}
		return r, err
	}
	if c.noWait {
		c.jar.keep(ck) // udev completes it; the next cookie or Close destroys it
		return r, nil
	}
	if err := ck.wait(c.udevWait); err != nil {
		if errors.Is(err, unix.ETIMEDOUT) {
			return r, fmt.Errorf("%w: %v", errUdevTimeout, err)
		}
		return r, wrap(op, name, err)
	}
	return r, nil
}
