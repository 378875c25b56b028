// Package layertar reads and writes container image layers as tars, in
// process: it is what Moby's devicemapper driver borrows from pkg/archive
// through its NaiveDiffDriver. Changes and DiffSize compare a layer's tree
// with its parent's, TarTree and ExportChanges write the layer tars that
// docker push and docker save carry, and ApplyLayer extracts such a tar on
// top of a snapshot of the parent, making the tree Moby's own apply makes.
// The tars are compatible with the ones Moby writes and reads: PAX headers
// with whole-second mtimes, ".wh." whiteouts, ".wh..wh..opq" opaque
// directories, xattrs as SCHILY.xattr PAX records.
//
// A layer's files are the container's, so the attacker's: every read and
// write resolves its path beneath the layer root with openat2
// (RESOLVE_BENEATH / RESOLVE_IN_ROOT, no symlink followed; an equivalent
// walk by hand on kernels without it) and works relative to an open parent
// directory, and a file's header and content come from one inode. No entry
// of a hostile tar, and no link a container planted, can make it read or
// write outside the layer (OpenLayerRoot gives callers the same).
package layertar
