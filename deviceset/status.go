package deviceset

import (
	"fmt"

	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

// Space is used/total/available bytes.
type Space struct{ Used, Total, Available uint64 }

// Status is what Moby's DeviceSet.Status reports, plus the raw pool status.
type Status struct {
	PoolName              string
	PoolBlockSize         uint64 // bytes
	BaseDeviceSize        uint64
	BaseDeviceFS          string
	UdevSyncSupported     bool
	DataFile              string // the device under the pool
	MetadataFile          string
	DataLoopback          string // loopback file, if any
	MetadataLoopback      string
	Data, Metadata        Space
	MinFreeSpace          uint64
	DeferredRemoveEnabled bool
	DeferredDeleteEnabled bool
	DeferredDeletedCount  int
	IdleDeviceCount       int // unmounted layers whose device is kept active
	Pool                  dm.ThinPoolStatus
}

// Status reports the pool's usage and the home's settings.
func (ds *DeviceSet) Status() (Status, error) {
	s := Status{
		PoolName:              ds.pool.name,
		UdevSyncSupported:     ds.dm.UdevMode() == dm.UdevSync,
		DataFile:              ds.pool.dataDev,
		MetadataFile:          ds.pool.metadataDev,
		DataLoopback:          ds.pool.dataFile,
		MetadataLoopback:      ds.pool.metadataFile,
		DeferredRemoveEnabled: ds.cfg.DeferredRemove,
		DeferredDeleteEnabled: ds.cfg.DeferredDelete,
	}
	if ds.deleter != nil {
		s.DeferredDeletedCount = ds.deleter.count()
	}
	s.IdleDeviceCount = ds.IdleDevices()
	ds.mu.Lock()
	s.BaseDeviceFS = ds.meta.BaseDeviceFilesystem
	ds.mu.Unlock()
	if base, err := ds.Info(""); err == nil {
		s.BaseDeviceSize = base.Size
	}
	blockBytes := ds.pool.blockBytes
	st, err := ds.poolStatus(true)
	if err != nil {
		return s, err
	}
	s.Pool = st
	if st.Mode == dm.PoolModeFail || st.TotalDataBlocks == 0 {
		return s, fmt.Errorf("thin pool %s has failed", ds.pool.name)
	}
	s.PoolBlockSize = blockBytes
	s.Data = space(uint64(st.UsedDataBlocks)*blockBytes, uint64(st.TotalDataBlocks)*blockBytes, ds.pool.dataFile)
	s.Metadata = space(uint64(st.UsedMetaBlocks)*dm.MetaBlockSize, uint64(st.TotalMetaBlocks)*dm.MetaBlockSize, ds.pool.metadataFile)
	s.MinFreeSpace = uint64(st.TotalDataBlocks) * uint64(ds.cfg.MinFreeSpacePercent) / 100 * blockBytes
	return s, nil
}

// poolTableBlockBytes is the data block size in a pool's table, which
// must be a single thin-pool line: pool.blockBytes, the one source of it.
// (Not the table's length over the pool's block count: a data device need
// not be a whole number of blocks.)
func poolTableBlockBytes(name string, table []dm.TableLine) (uint64, error) {
	if len(table) != 1 || table[0].Type != dm.TypeThinPool {
		types := make([]string, len(table))
		for i, l := range table {
			types[i] = l.Type
		}
		return 0, fmt.Errorf("table of pool %s has %d targets %v, want one thin-pool", name, len(table), types)
	}
	p, err := dm.ParseThinPool(table[0].Params)
	if err != nil {
		return 0, fmt.Errorf("table of pool %s: %w", name, err)
	}
	return p.DataBlockSize.Bytes(), nil
}

// space caps what is available by what the filesystem under a loopback
// file really has free, as Moby does.
func space(used, total uint64, loopFile string) Space {
	s := Space{Used: used, Total: total, Available: total - used}
	if loopFile == "" {
		return s
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(loopFile, &fs); err == nil {
		if free := fs.Bavail * uint64(fs.Bsize); free < s.Available {
			s.Available = free
		}
	}
	return s
}

// DeviceMetadata is what GetMetadata reports for a layer.
type DeviceMetadata struct {
	DeviceID   dm.ThinID
	DeviceSize uint64
	DeviceName string
}

// Metadata reports a layer's thin id, size and device name.
func (ds *DeviceSet) Metadata(hash string) (DeviceMetadata, error) {
	info, err := ds.Info(hash)
	if err != nil {
		return DeviceMetadata{}, err
	}
	return DeviceMetadata{DeviceID: info.DeviceID, DeviceSize: info.Size, DeviceName: ds.deviceName(hash)}, nil
}

// DeviceStatus is a layer's thin device as the pool sees it.
type DeviceStatus struct {
	DeviceID            dm.ThinID
	Size                uint64 // bytes
	MappedSectors       uint64
	HighestMappedSector uint64
	Active              bool
}

// DeviceStatus reports how much of an active layer's device is mapped.
func (ds *DeviceSet) DeviceStatus(hash string) (DeviceStatus, error) {
	info, err := ds.Info(hash)
	if err != nil {
		return DeviceStatus{}, err
	}
	s := DeviceStatus{DeviceID: info.DeviceID, Size: info.Size}
	st, err := ds.dm.ThinDeviceStatus(ds.deviceName(hash))
	if err != nil {
		return s, nil // not active: the pool tells nothing without a device
	}
	s.Active = true
	s.MappedSectors, s.HighestMappedSector = uint64(st.MappedSectors), uint64(st.HighestMappedSector)
	return s, nil
}
