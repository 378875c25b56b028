package cli

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/deviceset"
)

// hints say what to do about the errors people meet, most specific first.
var hints = []struct {
	err  error
	what string
}{
	{ErrNoKernel, "run as root on a kernel with device-mapper thin provisioning (modprobe dm_thin_pool); " +
		"`thinlayer demo` boots User-Mode Linux where the kernel has none"},
	{deviceset.ErrHomeLocked, "another process holds the home (a thinlayer command, or an engine built on thinlayer): " +
		"wait for it to finish, or stop it"},
	{ErrHomeBusy, "`thinlayer umount` the directories `thinlayer mount` mounted, or stop the engine that uses the home " +
		"(Docker: systemctl stop docker; Moby's driver takes no home lock)"},
	{deviceset.ErrNotHome, "--home must name a devicemapper home: the directory holding metadata/ and devicemapper/ " +
		"(Docker's is " + DefaultHome + ")"},
	{ErrRootfsNotDir, "a graph driver makes rootfs/ a directory and its containers cannot reach it: " +
		"something else changed this layer's filesystem, do not trust the layer"},
	{deviceset.ErrNotFound, "`thinlayer ls` lists the layer ids (the base device is \"base\")"},
	{deviceset.ErrExists, "pick another id, or remove that layer first"},
	{deviceset.ErrDeleted, "the layer awaits deferred deletion: `thinlayer gc` finishes it"},
	{deviceset.ErrNoSpace, "free space in the pool (`thinlayer gc`, remove layers) or lower dm.min_free_space"},
	{deviceset.ErrCorruptMetadata, "`thinlayer check` lists the damaged files"},
	{deviceset.ErrReadOnly, "this needs the home opened for writing"},
	{unix.EBUSY, "something still uses it: close its files and leave the directory (`fuser -vm DIR` shows who)"},
	{os.ErrPermission, "run as root"},
	{os.ErrNotExist, "check the path"},
}
