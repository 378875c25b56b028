// Package fsutil holds the filesystem work of the thinlayer graphdriver
// that is not device-mapper itself.
//
// The layer-tar part (archive*.go, changes.go, idmap.go) is an in-process
// replacement for what Moby's devicemapper driver borrows from
// pkg/archive through its NaiveDiffDriver: Changes and DiffSize compare a
// layer's tree with its parent's, TarTree and ExportChanges write the
// layer tars that docker push and docker save carry, and ApplyLayer
// extracts such a tar on top of a snapshot of the parent. The tars are
// compatible with the ones Moby writes and reads: PAX headers with
// whole-second mtimes, ".wh." whiteouts, ".wh..wh..opq" opaque
// directories, xattrs as SCHILY.xattr PAX records.
//
// ApplyLayer runs without chroot or re-exec: every path is resolved
// inside the target directory with openat2(RESOLVE_IN_ROOT) (or an
// equivalent walk by hand on kernels without it) and every file is made
// relative to an open parent directory, so no entry of a hostile tar can
// write, link or delete outside the target directory.
package fsutil
