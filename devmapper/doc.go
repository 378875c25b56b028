// Package devmapper drives Linux device-mapper from Go through its ioctls
// on /dev/mapper/control: no libdevmapper, no cgo, no dmsetup. It is the
// lowest layer of thinlayer and knows nothing of layers or homes.
//
// What it holds:
//
//   - Control (control.go, device.go, list.go): an open control node. Each
//     method is one operation on one device (Create, Load, Resume, Suspend,
//     Remove, Rename, Info, Table, Status, Deps, Message, ...), safe for
//     concurrent use. Open takes the defaults; OpenWith takes Options (the
//     control node's path, the udev mode and how long to wait for udev).
//   - Thin pools and thin devices (pool.go, status.go): the pool messages
//     (CreateThin, CreateSnap, DeleteThin, SetTransactionID, metadata
//     snapshots) and typed, parsed status lines (ThinPoolStatus,
//     ThinStatus) whose parsers are pure and fuzzed.
//   - Tables (target.go): typed targets (ThinPool, Thin, Linear,
//     ErrorTarget) that render and parse their parameter strings.
//   - udev (udev.go, cookies.go): cookies and semaphores as libdevmapper
//     uses them, so udevd's rules run and the caller can wait for them
//     (UdevSync) or not (NoUdevWait); device nodes made where no udev runs
//     (nodes.go).
//   - Units (units.go): Sectors, DataBlocks, MetaBlocks, so sizes in
//     different units do not mix silently.
//
// Errors are *Error values naming the operation and the device, wrapping
// the kernel's errno: errors.Is works both with the errno (unix.EBUSY) and
// with the package's sentinels (ErrNotFound, ErrBusy, ErrExists,
// ErrNoThinDevice, ErrNotSupported).
package devmapper
