package dockerplugin

import "github.com/thinlayer/thinlayer/graphdriver"

// The JSON Docker sends and expects, field for field as Moby v24's
// graphDriverProxy marshals it.

// MimeType is the content type Docker's plugin client speaks.
const MimeType = "application/vnd.docker.plugins.v1.2+json"

type activateResponse struct {
	Implements []string
}

type initRequest struct {
	Home    string
	Opts    []string
	UIDMaps []idMap `json:"UIDMaps"`
	GIDMaps []idMap `json:"GIDMaps"`
}

// idMap is Moby's idtools.IDMap on the wire. Docker 20.10 sends none (its
// IdentityMapping had no exported fields): no remapping.
type idMap struct {
	ContainerID int `json:"container_id"`
	HostID      int `json:"host_id"`
	Size        int `json:"size"`
}

type request struct {
	ID         string            `json:",omitempty"`
	Parent     string            `json:",omitempty"`
	MountLabel string            `json:",omitempty"`
	StorageOpt map[string]string `json:",omitempty"`
}

type response struct {
	Err          string               `json:",omitempty"`
	Dir          string               `json:",omitempty"`
	Exists       bool                 `json:",omitempty"`
	Status       [][2]string          `json:",omitempty"`
	Changes      []graphdriver.Change `json:",omitempty"`
	Size         int64                `json:",omitempty"`
	Metadata     map[string]string    `json:",omitempty"`
	Capabilities *capabilities        `json:",omitempty"`
}

// capabilities is Moby's graphdriver.Capabilities. Layers are diffed
// naively (tree against tree), as Moby's devicemapper did, so two diffs of
// one layer need not be byte-identical.
type capabilities struct {
	ReproducesExactDiffs bool
}

func toMapping(uids, gids []idMap) graphdriver.IdentityMapping {
	conv := func(in []idMap) []graphdriver.IDMap {
		var out []graphdriver.IDMap
		for _, m := range in {
			out = append(out, graphdriver.IDMap{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
		}
		return out
	}
	return graphdriver.IdentityMapping{UIDMaps: conv(uids), GIDMaps: conv(gids)}
}
