//go:build linux && cgo

package mobyhome

import (
	"os"
	"path/filepath"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/daemon/graphdriver/devmapper"
	"github.com/docker/docker/pkg/idtools"
)

// DefaultOptions are the storage options Open starts from. Options given to
// Open come after them and win (Moby's parser lets a later dm.* option
// override an earlier one).
//
//   - Small loop files: the pool lives in sparse files under <home>/devicemapper
//     on the test's tmpfs.
//   - A 512 MiB base device: xfs needs ~300 MiB at least.
//   - dm.override_udev_sync_check: without udevd (as in the UML guest) libdm
//     reports no udev sync support, and Moby refuses to start without this.
//     libdm then creates and removes the /dev/mapper nodes itself.
//   - No deferred removal or deletion. Moby turns both on by default where
//     the kernel and libdm can do them, but its deferred removal asks libdm
//     not to remove the /dev/mapper node itself (DM_UDEV_DISABLE_LIBRARY_FALLBACK)
//     and leaves that to udev rules: without udevd every Put and Cleanup
//     then leaves a stale /dev/mapper/<name> node behind (see StaleNodes).
//     Pass dm.use_deferred_removal=true and dm.use_deferred_deletion=true
//     for Moby's production behaviour. Both are named every time because
//     Moby keeps them in package globals that an explicit option overwrites
//     for every later Init in the process.
//   - ext4, unless the caller passes dm.fs=xfs.
var DefaultOptions = []string{
	"dm.loopdatasize=2GB",
	"dm.loopmetadatasize=200MB",
	"dm.basesize=512MB",
	"dm.fs=ext4",
	"dm.override_udev_sync_check=true",
	"dm.use_deferred_removal=false",
	"dm.use_deferred_deletion=false",
}

// Options returns DefaultOptions followed by opts.
func Options(opts ...string) []string {
	return append(append([]string(nil), DefaultOptions...), opts...)
}

// Open starts Moby's devicemapper driver on home (created if missing), as
// dockerd would with --storage-driver=devicemapper and the storage options
// DefaultOptions + opts, with no user-namespace remapping. Call the driver's
// Cleanup when done: it unmounts, deactivates the devices and removes the
// pool (the loop devices go away with it: Moby attaches them autoclear).
func Open(home string, opts []string) (graphdriver.Driver, error) {
	if err := os.MkdirAll(filepath.Dir(home), 0o700); err != nil {
		return nil, err
	}
	return devmapper.Init(home, Options(opts...), idtools.IdentityMapping{})
}
