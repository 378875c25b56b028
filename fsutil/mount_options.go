package fsutil

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountFlag is one fstab keyword that maps to a mount(2) flag.
type mountFlag struct {
	clear bool
	flag  uintptr
}

// mountFlags is moby/sys/mount's table (the one Moby v24 parses devmapper
// options with), plus lazytime/nolazytime.
var mountFlags = map[string]mountFlag{
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"suid":          {true, unix.MS_NOSUID},
	"nosuid":        {false, unix.MS_NOSUID},
	"dev":           {true, unix.MS_NODEV},
	"nodev":         {false, unix.MS_NODEV},
	"exec":          {true, unix.MS_NOEXEC},
	"noexec":        {false, unix.MS_NOEXEC},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"remount":       {false, unix.MS_REMOUNT},
	"mand":          {false, unix.MS_MANDLOCK},
	"nomand":        {true, unix.MS_MANDLOCK},
	"atime":         {true, unix.MS_NOATIME},
	"noatime":       {false, unix.MS_NOATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"bind":          {false, unix.MS_BIND},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"unbindable":    {false, unix.MS_UNBINDABLE},
	"runbindable":   {false, unix.MS_UNBINDABLE | unix.MS_REC},
	"private":       {false, unix.MS_PRIVATE},
	"rprivate":      {false, unix.MS_PRIVATE | unix.MS_REC},
	"shared":        {false, unix.MS_SHARED},
	"rshared":       {false, unix.MS_SHARED | unix.MS_REC},
	"slave":         {false, unix.MS_SLAVE},
	"rslave":        {false, unix.MS_SLAVE | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"nolazytime":    {true, unix.MS_LAZYTIME},
}

// ParseMountOptions splits an fstab-style option string such as
// "ro,nosuid,discard,nouuid" into mount(2) flags (MS_RDONLY|MS_NOSUID)
// and filesystem data ("discard,nouuid"). Later options override earlier
// ones ("ro,rw" is read-write). Empty items and "defaults" are dropped.
// Commas inside double quotes, as in an SELinux context="...:c1,c2",
// do not split.
func ParseMountOptions(s string) (flags uintptr, data string) {
	var fsData []string
	for _, opt := range splitMountOptions(s) {
		if opt == "" || opt == "defaults" {
			continue
		}
		f, ok := mountFlags[opt]
		switch {
		case !ok:
			fsData = append(fsData, opt)
		case f.clear:
			flags &^= f.flag
		default:
			flags |= f.flag
		}
	}
	return flags, strings.Join(fsData, ",")
}

// splitMountOptions splits s at commas that are outside double quotes.
// An unterminated quote runs to the end of s.
func splitMountOptions(s string) []string {
	var (
		opts    []string
		start   int
		inQuote bool
	)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				opts = append(opts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(opts, s[start:])
}

// ErrMountOption: an option string a layer mount refuses.
var ErrMountOption = errors.New("mount option refused")

// maxMountOptions bounds user options, leaving room in the kernel's one
// page of mount data (it cuts the rest off silently) for ours.
const maxMountOptions = 2048

// semanticMountOptions change what a layer mount is rather than how its
// filesystem behaves: read-write where it must be read-only, a remount or
// bind instead of a mount of the device, propagation.
var semanticMountOptions = map[string]bool{
	"rw": true, "remount": true, "bind": true, "rbind": true, "move": true,
	"private": true, "rprivate": true, "shared": true, "rshared": true,
	"slave": true, "rslave": true, "unbindable": true, "runbindable": true,
}

// ValidateMountOptions checks a user's mount options (dm.mountopt) before
// they are joined with the layer's own: plain comma-separated items only
// (no quotes, which would swallow what follows; no empty items), no option
// that changes what the mount is (rw, remount, bind, propagation), and
// short enough that the kernel sees all of it.
func ValidateMountOptions(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxMountOptions {
		return fmt.Errorf("%w: %d bytes of mount options, more than %d", ErrMountOption, len(s), maxMountOptions)
	}
	for i, opt := range strings.Split(s, ",") {
		if err := validateMountOption(opt); err != nil {
			return fmt.Errorf("%w: item %d (%q) of %q: %s", ErrMountOption, i+1, opt, s, err)
		}
	}
	return nil
}

func validateMountOption(opt string) error {
	if opt == "" {
		return errors.New("empty (a comma at the start, at the end or doubled)")
	}
	if semanticMountOptions[strings.ToLower(opt)] {
		return errors.New("changes what the layer mount is, not how its filesystem behaves")
	}
	for _, c := range opt {
		if !mountOptionChar(c) {
			return fmt.Errorf("character %q: only letters, digits and =_.:/+- are allowed (no quotes)", c)
		}
	}
	return nil
}

func mountOptionChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("=_.:/+-", c)
}
