package layertar

import "fmt"

// IDMap maps a contiguous range of Size container IDs starting at
// ContainerID onto host IDs starting at HostID (one line of
// /proc/<pid>/uid_map).
type IDMap struct {
	ContainerID int
	HostID      int
	Size        int
}

// IdentityMapping holds the user-namespace remapping of a daemon. The zero
// value, and any empty list in it, means "no remapping": IDs pass through
// unchanged.
type IdentityMapping struct {
	UIDMaps []IDMap
	GIDMaps []IDMap
}

// ToHost maps a container uid/gid pair to host IDs. An ID that no range
// covers is an error naming it.
func (m IdentityMapping) ToHost(uid, gid int) (int, int, error) {
	hu, err := mapID(m.UIDMaps, uid, true, "uid")
	if err != nil {
		return -1, -1, err
	}
	hg, err := mapID(m.GIDMaps, gid, true, "gid")
	if err != nil {
		return -1, -1, err
	}
	return hu, hg, nil
}

// ToContainer maps a host uid/gid pair to container IDs. An ID that no
// range covers is an error naming it.
func (m IdentityMapping) ToContainer(uid, gid int) (int, int, error) {
	cu, err := mapID(m.UIDMaps, uid, false, "uid")
	if err != nil {
		return -1, -1, err
	}
	cg, err := mapID(m.GIDMaps, gid, false, "gid")
	if err != nil {
		return -1, -1, err
	}
	return cu, cg, nil
}

// empty reports whether m remaps nothing.
func (m IdentityMapping) empty() bool {
	return len(m.UIDMaps) == 0 && len(m.GIDMaps) == 0
}

// mapID translates id through maps; toHost selects the direction.
func mapID(maps []IDMap, id int, toHost bool, kind string) (int, error) {
	if len(maps) == 0 {
		return id, nil
	}
	if id >= 0 {
		for _, e := range maps {
			from, to := e.HostID, e.ContainerID
			if toHost {
				from, to = e.ContainerID, e.HostID
			}
			if e.Size > 0 && id >= from && id-from < e.Size {
				return to + (id - from), nil
			}
		}
	}
	if toHost {
		return -1, fmt.Errorf("layertar: container %s %d has no host mapping", kind, id)
	}
	return -1, fmt.Errorf("layertar: host %s %d has no container mapping", kind, id)
}
