package layertar

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What an apply knows about the directories it writes into, so that it can
// leave out syscalls whose effect is already there. Every syscall counts
// where they cost a millisecond each (User-Mode Linux), and a small file
// otherwise costs eight of them.

// dirFacts is what this apply has proven about a directory.
type dirFacts struct {
	// created: this apply made it (mkdirat), so it holds only what the
	// tar itself put there; new entries try O_EXCL before any lstat.
	created bool
	// plain: no setgid bit and no default ACL, so an inode created in it
	// is owned by our fsuid:fsgid and has exactly mode &^ umask.
	plain bool
}

// dirFacts returns what is known about the directory at rel. Only the
// root and directories this apply created directly inside a known
// directory are known: their paths then hold no symlink, and they stay
// valid until some directory is removed or merged (forgetFacts).
func (a *applier) dirFacts(rel string) dirFacts {
	if rel == "." {
		return a.rootFacts()
	}
	return a.known[a.hash(rel)]
}

// rootFacts checks the root's setgid bit and default ACL once.
func (a *applier) rootFacts() dirFacts {
	if a.rootChecked {
		return a.root0
	}
	a.rootChecked = true
	a.root0 = dirFacts{}
	var st unix.Stat_t
	if err := unix.Fstat(a.root, &st); err != nil || st.Mode&unix.S_ISGID != 0 {
		return a.root0
	}
	_, err := unix.Fgetxattr(a.root, "system.posix_acl_default", nil)
	a.root0.plain = errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP)
	return a.root0
}

// learnDir records a directory this apply just created at rel, inside a
// parent with facts pf, with the metadata of hdr.
func (a *applier) learnDir(rel string, pf dirFacts, hdr *tar.Header) {
	if dir, _ := splitRel(rel); rel == "." || (dir != "." && !a.isKnown(dir)) {
		return // the parent's path may hold a symlink
	}
	a.known[a.hash(rel)] = dirFacts{
		created: true,
		plain:   pf.plain && hdr.Mode&unix.S_ISGID == 0 && !hasXattrs(hdr),
	}
}

func (a *applier) isKnown(rel string) bool {
	_, ok := a.known[a.hash(rel)]
	return ok
}

// forgetFacts drops everything known: a directory was removed or its
// metadata rewritten, maybe under another name (through a symlink), so a
// known path may now lead elsewhere or to a setgid directory.
func (a *applier) forgetFacts() {
	clear(a.known)
	a.rootChecked = false
}

func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPAXPrefix) {
			return true
		}
	}
	return false
}

// creds is what /proc/self/status says about the process: a new inode
// gets mode &^ umask, fsuid and (outside setgid directories) fsgid.
type creds struct {
	ok           bool
	umask        uint32
	fsuid, fsgid int
}

// creds reads /proc/self/status once per apply ("Umask:" is there since
// Linux 4.7); without it nothing is skipped.
func (a *applier) creds() creds {
	if !a.credsRead {
		a.credsRead = true
		a.cred = readCreds()
	}
	return a.cred
}

func readCreds() creds {
	fd, err := unix.Open("/proc/self/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return creds{}
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || m <= 0 {
			break
		}
		n += m
		// The three lines come within the first ~600 bytes.
		if c, ok := parseCreds(buf[:n]); ok {
			return c
		}
	}
	return creds{}
}

// parseCreds needs whole Umask:, Uid: and Gid: lines; Uid and Gid list
// real, effective, saved and filesystem IDs.
func parseCreds(b []byte) (creds, bool) {
	var c creds
	var seen int
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // a partial line: read on
		}
		key, val, _ := strings.Cut(string(b[:i]), ":")
		b = b[i+1:]
		f := strings.Fields(val)
		switch {
		case key == "Umask" && len(f) == 1:
			m, err := strconv.ParseUint(f[0], 8, 32)
			if err != nil {
				return creds{}, false
			}
			c.umask, seen = uint32(m), seen|1
		case (key == "Uid" || key == "Gid") && len(f) == 4:
			id, err := strconv.Atoi(f[3])
			if err != nil {
				return creds{}, false
			}
			if key == "Uid" {
				c.fsuid, seen = id, seen|2
			} else {
				c.fsgid, seen = id, seen|4
			}
		}
	}
	c.ok = seen == 7
	return c, c.ok
}

// newInodeMeta says which of chown and chmod a new inode, just created
// with permissions hdr.Mode&0o777 in a directory with facts pf, still
// needs. chown clears only setuid and setgid (and file capabilities,
// which are set after it), so with none of the 0o7000 bits asked for it
// leaves the permissions alone; setting an ACL xattr rewrites the mode,
// so an entry with xattrs always chmods.
func (a *applier) newInodeMeta(pf dirFacts, hdr *tar.Header, uid, gid int) (chown, chmod bool) {
	if !pf.plain {
		return true, true
	}
	c := a.creds()
	if !c.ok {
		return true, true
	}
	chown = uid != c.fsuid || gid != c.fsgid
	perm := uint32(hdr.Mode & 0o777)
	chmod = hdr.Mode&0o7000 != 0 || perm&^c.umask != perm || hasXattrs(hdr)
	return chown, chmod
}

// writeAll writes b to fd, retrying short writes and EINTR.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}
