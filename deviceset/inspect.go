package deviceset

import (
	"errors"
	"fmt"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/fsutil"
)

// Read-only views of a home for tools (the thinlayer command).

// HomeRecord is the home-wide record, <home>/metadata/deviceset-metadata.
type HomeRecord struct {
	NextDeviceID         int
	BaseDeviceUUID       string
	BaseDeviceFilesystem string
}

// HomeRecord returns the home-wide record as loaded at Open.
func (ds *DeviceSet) HomeRecord() HomeRecord {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return HomeRecord{ds.meta.NextDeviceID, ds.meta.BaseDeviceUUID, ds.meta.BaseDeviceFilesystem}
}

// Home is the directory the DeviceSet was opened on.
func (ds *DeviceSet) Home() string { return ds.home }

// DevicePrefix is the prefix of the device-mapper names of home's devices
// ("docker-<major>:<minor>-<inode>"), as Moby derives it.
func DevicePrefix(home string) (string, error) { return devicePrefix(home) }

// ProbeBase reads the filesystem superblock of the base device. A base
// device that is not active is activated for the look and deactivated
// after (under the look lock: another reader's probe may be under way);
// on a read-only home its pool refuses writes throughout.
func (ds *DeviceSet) ProbeBase() (fsutil.FSInfo, error) {
	ds.layers.Lock("")
	defer ds.layers.Unlock("")
	unlock, err := LockLook(ds.home)
	if err != nil {
		return fsutil.FSInfo{}, fmt.Errorf("base device: %w", err)
	}
	defer unlock()
	info, err := ds.lookup("")
	if err != nil {
		return fsutil.FSInfo{}, fmt.Errorf("base device: %w", err)
	}
	name := ds.deviceName("")
	_, err = ds.dm.Info(name)
	wasActive := err == nil
	if err != nil && !errors.Is(err, dm.ErrNotFound) {
		return fsutil.FSInfo{}, err
	}
	dev, err := ds.activate(info)
	if err != nil {
		return fsutil.FSInfo{}, err
	}
	probe, err := fsutil.ProbeDevice(dev)
	if !wasActive {
		if rerr := ds.dm.Remove(name, udevFlags); rerr != nil && !errors.Is(rerr, dm.ErrNotFound) {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return probe, fmt.Errorf("base device %s: %w", name, err)
	}
	return probe, nil
}
