// Package fsutil holds the filesystem work of thinlayer that is not
// device-mapper itself and not a layer's tar (package layertar): making
// and growing filesystems (mkfs, xfs_growfs/resize2fs), telling a
// device's filesystem from its superblock, and mounting and unmounting
// layers with validated options.
package fsutil
