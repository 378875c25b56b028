package deviceset

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// A layer's device-mapper name is <prefix>-<hash>, and the home's own
// devices live in the same namespace: the pool (<prefix>-pool unless
// dm.thinpooldev names another), the base device (<prefix>-base), and a
// user's pool may sit under the prefix too, with the names LVM gives its
// parts. A layer whose name is one of them would have Get load a thin
// table onto the pool and Put or Remove take the pool down. So the rule
// is on the derived name, not on the id: no layer name equals a device
// the home owns.

// SnapshotPrefix begins the ids of the layers the containerd snapshotter
// owns: it deletes any it has no record of, and their files sit at the
// filesystem's root, where a container may have planted a rootfs link. A
// graph driver layer never takes the prefix, nor one as parent.
const SnapshotPrefix = "ctrd-"

// lvmPoolParts are the suffixes LVM appends to a thin-pool LV's name for
// the devices under it (hidden data and metadata LVs, and the pool proper
// once thin volumes exist).
var lvmPoolParts = []string{"_tdata", "_tmeta", "-tpool"}

// CheckLayerID is CheckHash plus what only an open home can tell: the
// layer's device-mapper name fits in DM_NAME_LEN and is none of the
// home's own devices. "" is the base device. The error wraps
// ErrInvalidHash.
func (ds *DeviceSet) CheckLayerID(hash string) error {
	if err := CheckHash(hash); err != nil || hash == "" {
		return err
	}
	name := ds.deviceName(hash)
	if len(name) >= unix.DM_NAME_LEN {
		return fmt.Errorf("%w: %q: its device name would be %d bytes long, device-mapper's limit is %d",
			ErrInvalidHash, hash, len(name), unix.DM_NAME_LEN-1)
	}
	if strings.IndexByte(hash, '\\') >= 0 {
		// udev names /dev/mapper links by libdevmapper's mangling, which
		// writes what is outside its whitelist as \xNN and takes a name
		// holding \xNN as mangled already: "a b" and `a\x20b` would share
		// one link. Without backslashes, mangled names stay distinct.
		return fmt.Errorf("%w: %q: a backslash in a layer id", ErrInvalidHash, hash)
	}
	if what, owned := ds.ownedName(name); owned {
		return fmt.Errorf("%w: %q: its device-mapper name %s is the home's %s", ErrInvalidHash, hash, name, what)
	}
	return nil
}

// ownedName reports whether name is a device-mapper name the home uses
// for something other than a layer, and what.
func (ds *DeviceSet) ownedName(name string) (string, bool) {
	pools := []string{ds.prefix + "-pool"}
	if ds.pool != nil && ds.pool.name != pools[0] {
		pools = append(pools, ds.pool.name)
	}
	if name == ds.deviceName("") {
		return "base device", true
	}
	for _, p := range pools {
		rest, ok := strings.CutPrefix(name, p)
		switch {
		case !ok:
		case rest == "":
			return "thin pool", true
		case isLVMPart(rest):
			return "thin pool's LVM device", true
		}
	}
	return "", false
}

func isLVMPart(suffix string) bool {
	for _, s := range lvmPoolParts {
		if suffix == s {
			return true
		}
	}
	return false
}

// isLayerDevice reports whether an active device's name is one of this
// home's layers (for the sweeps at start and Shutdown).
func (ds *DeviceSet) isLayerDevice(name string) bool {
	if !strings.HasPrefix(name, ds.prefix+"-") {
		return false
	}
	_, owned := ds.ownedName(name)
	return !owned || name == ds.deviceName("")
}
