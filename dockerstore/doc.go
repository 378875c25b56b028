// Package dockerstore reads Docker's own image store beside a
// devicemapper home, with no daemon: the tags (repositories.json), the
// image configs (imagedb), the layer chains (layerdb) with each layer's
// graph-driver id and tar-split record, the containers' read-write layers
// (layerdb/mounts) and configs (containers/*/config.v2.json). It writes
// `docker save` archives whose layers are reassembled byte for byte from
// a layer's files and its tar-split record (assemble.go, save.go).
//
// Every file Docker wrote is input: each is opened without following a
// symlink, must be a regular file of bounded size, and every digest and
// id in it is checked for its form before it names anything.
package dockerstore
