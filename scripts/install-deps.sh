#!/bin/sh
# Installs what thinlayer's tests need on a Debian host, when it is missing:
# a User-Mode Linux kernel with the dm-thin modules (for hosts whose own
# kernel has no device-mapper), filesystem tools, udev (the udev-sync path),
# thin-provisioning-tools and dmsetup (independent cross-checks in tests).
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have linux.uml || need="$need user-mode-linux"
have insmod || need="$need kmod"
have mkfs.xfs || need="$need xfsprogs"
have mkfs.ext4 || need="$need e2fsprogs"
have /lib/systemd/systemd-udevd || need="$need udev"
have thin_check || need="$need thin-provisioning-tools"
have dmsetup || need="$need dmsetup"
for pkg in ${EXTRA_PACKAGES:-}; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done

[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "thinlayer: the tests need these Debian packages:$need" >&2
	echo "thinlayer: run as root, or: sudo apt-get install -y$need" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "thinlayer: not a Debian system; install the equivalents of:$need" >&2
	exit 1
fi
echo "thinlayer: installing$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
