package devmapper

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Sentinel errors for what callers branch on. An *Error matches them through
// errors.Is by the kernel's errno, so both errors.Is(err, ErrNotFound) and
// errors.Is(err, unix.ENXIO) hold for a missing device (the kernel says
// ENXIO for a name it does not know, ENODEV for a device gone mid-call).
var (
	ErrNotFound     = errors.New("device not found")    // ENXIO or ENODEV from the kernel
	ErrBusy         = errors.New("device busy")         // EBUSY
	ErrExists       = errors.New("already exists")      // EEXIST: device name or thin id
	ErrNoThinDevice = errors.New("no such thin device") // ENODATA from a pool message
	ErrNotSupported = errors.New("device-mapper not supported here")
)

// Error reports a failed device-mapper operation: which op, on which device,
// and the kernel's errno (or other cause) underneath.
type Error struct {
	Op     string // e.g. "create", "resume", "message create_thin 7"
	Device string // device name, may be empty for global ops
	Err    error
}

func (e *Error) Error() string {
	if e.Device == "" {
		return fmt.Sprintf("devmapper: %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("devmapper: %s %s: %v", e.Op, e.Device, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Is maps errnos to the package's sentinels.
func (e *Error) Is(target error) bool {
	var errno unix.Errno
	if !errors.As(e.Err, &errno) {
		return false
	}
	switch target {
	case ErrNotFound:
		return errno == unix.ENXIO || errno == unix.ENODEV
	case ErrBusy:
		return errno == unix.EBUSY
	case ErrExists:
		return errno == unix.EEXIST
	case ErrNoThinDevice:
		return errno == unix.ENODATA
	}
	return false
}

func wrap(op, dev string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Device: dev, Err: err}
}
