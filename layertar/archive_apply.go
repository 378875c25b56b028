package layertar

import (
	"archive/tar"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// defaultMaxEntries bounds the entries of one layer tar when
// ApplyOptions.MaxEntries is 0.
const defaultMaxEntries = 1 << 21

// ApplyOptions tunes ApplyLayer.
type ApplyOptions struct {
	// IDMap maps owners in the tar (container IDs) to host IDs.
	IDMap IdentityMapping
	// NoLchown leaves created files owned by the caller.
	NoLchown bool
	// MaxEntries bounds the number of tar entries; 0 means 2097152.
	MaxEntries int
}

// ApplyLayer extracts the uncompressed layer tar on top of the tree at dir
// with the result of Moby v24's chrootarchive.ApplyUncompressedLayer: a
// missing parent directory is made (0755, owned by the container's root),
// ".wh.<name>" deletes <name>, ".wh..wh..opq" removes from its directory
// (unless that is a symlink or a file) every path whose name no entry of
// this tar wrote, other top-level ".wh..wh." names (aufs metadata) are
// skipped except the regular files of ".wh..wh.plnk", whose hard links
// become copies, an entry replaces whatever is at its path unless both
// are directories (a PAX global header too, writing nothing), and
// directory times are set after all entries, through what each name
// leads to then (a name that leads nowhere fails the apply). Owners are
// mapped container→host through opts.IDMap.
//
// Nothing is ever written, linked or removed outside dir: names and hard
// link targets that climb out of it, symlinks whose target climbs out of
// it, and whiteouts of "", "." or ".." fail the apply with ErrEscape;
// symlinks met inside a path, whether written by this tar or already in
// dir, resolve as if dir were "/" (as under Moby's chroot). Unlike Moby,
// sparse files are refused (their holes could demand terabytes), and a
// stream without an end-of-archive zero block after its last entry (cut
// at an entry boundary) fails with io.ErrUnexpectedEOF. Any error aborts
// the apply, leaving dir partly written.
//
// It returns the sum of the entries' content sizes, as Moby's ApplyDiff
// (which also adds the size field of header-only entries, normally 0).
func ApplyLayer(dir string, layer io.Reader, opts ApplyOptions) (size int64, err error) {
	rootfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("layertar: apply layer: open %s: %w", dir, err)
	}
	a := newApplier(rootfd, opts)
	defer a.close()
	if err := a.run(layer); err != nil {
		return 0, fmt.Errorf("layertar: apply layer: %w", err)
	}
	return a.size, nil
}

// newApplier takes ownership of rootfd.
func newApplier(rootfd int, opts ApplyOptions) *applier {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = defaultMaxEntries
	}
	return &applier{
		root:    rootfd,
		opts:    opts,
		cacheFd: -1,
		seed:    maphash.MakeSeed(),
		written: make(map[uint64]struct{}),
		known:   make(map[uint64]dirFacts),
		buf:     make([]byte, copyBufSize),
	}
}

// applier is the state of one ApplyLayer. Besides the directory times it
// keeps a hash of the name of every entry it wrote, as Moby's
// unpackedPaths, for ".wh..wh..opq": a directory this apply created may
// still hold what it did not write under that name (entries written
// through a symlink into it, implied directories), so it walks those too.
type applier struct {
	root     int
	opts     ApplyOptions
	size     int64
	entries  int
	cacheRel string // the parent directory last resolved ...
	cacheFd  int    // ... and its O_PATH descriptor, or -1
	seed     maphash.Seed
	written  map[uint64]struct{} // names of the entries this apply wrote
	aufs     *aufsLinks          // .wh..wh.plnk files, nil until one comes
	dirs     []dirTimes
	buf      []byte

	// See archive_facts.go.
	known       map[uint64]dirFacts // directories created inside known ones
	root0       dirFacts
	rootChecked bool
	staleCache  bool // drop the cached parent before the next lookup
	removed     bool // something was removed or replaced
	cred        creds
	credsRead   bool
}

type dirTimes struct {
	rel string
	ts  [2]unix.Timespec
}

func (a *applier) close() {
	a.invalidate(".")
	a.aufs.close()
	unix.Close(a.root)
}

func (a *applier) run(layer io.Reader) error {
	cr := &countingReader{r: layer}
	rd := tar.NewReader(cr)
	var dataEnd int64 // stream offset where the last entry's content ends
	for {
		hdr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			// archive/tar also ends cleanly at an entry boundary; only a
			// zero block after the last entry is an end-of-archive marker.
			if cr.n > 0 && cr.n-dataEnd < blockSize {
				return fmt.Errorf("tar ends without end-of-archive marker: %w", io.ErrUnexpectedEOF)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if a.entries++; a.entries > a.opts.MaxEntries {
			return fmt.Errorf("tar has more than %d entries", a.opts.MaxEntries)
		}
		data := dataSize(hdr)
		dataEnd = addClamped(cr.n, addClamped(data, (blockSize-data%blockSize)%blockSize))
		// Content the stream really held (checked by the reads): unlike
		// Moby's sum of hdr.Size it cannot overflow.
		a.size += data
		if err := a.entry(hdr, rd); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	return a.restoreDirTimes()
}

const blockSize = 512

// dataSize is how many content bytes follow hdr in the stream:
// archive/tar ignores the size of header-only entries.
func dataSize(hdr *tar.Header) int64 {
	switch hdr.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return 0
	}
	return hdr.Size
}

// addClamped adds non-negative a and b, saturating at math.MaxInt64.
func addClamped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (a *applier) entry(hdr *tar.Header, content io.Reader) error {
	if isSparse(hdr) {
		// Moby would expand the holes: a few bytes of tar could demand
		// terabytes of disk.
		return errors.New("sparse files are not supported")
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := splitRel(rel)
	if rel != "." {
		if err := a.impliedDir(dir); err != nil {
			return err
		}
	}
	switch {
	case isAufsMeta(hdr.Name) && rel != whiteoutOpaque:
		return a.aufsMeta(rel, hdr, content)
	case base == whiteoutOpaque:
		return a.opaque(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		return a.whiteout(dir, base[len(whiteoutPrefix):])
	case hdr.Typeflag == tar.TypeXGlobalHeader:
		return a.globalHeader(rel)
	case hdr.Typeflag == tar.TypeLink && isAufsLink(hdr.Linkname):
		return a.aufsLink(rel, hdr)
	}
	return a.create(rel, hdr, content)
}

func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// parent returns a cached descriptor of directory rel (the root's own
// for "."), creating missing directories when create is set. The caller
// must not close it.
func (a *applier) parent(rel string, create bool) (int, error) {
	if a.staleCache {
		a.staleCache = false
		a.invalidate(".")
	}
	if rel == "." {
		return a.root, nil
	}
	if a.cacheFd >= 0 && a.cacheRel == rel {
		return a.cacheFd, nil
	}
	fd, err := a.openDir(rel, create)
	if err != nil {
		return -1, err
	}
	a.setCache(rel, fd)
	return fd, nil
}

// setCache makes fd, a descriptor of directory rel, the cached parent.
func (a *applier) setCache(rel string, fd int) {
	a.invalidate(".")
	a.cacheRel, a.cacheFd, a.staleCache = rel, fd, false
}

// invalidate drops the cached parent if it is rel or below rel.
func (a *applier) invalidate(rel string) {
	if a.cacheFd >= 0 && (rel == "." || a.cacheRel == rel || strings.HasPrefix(a.cacheRel, rel+"/")) {
		unix.Close(a.cacheFd)
		a.cacheFd = -1
	}
}

// openDir resolves directory rel inside the root; with create, missing
// directories are made like Moby's implied directories (0755, owned by
// the container's root).
func (a *applier) openDir(rel string, create bool) (int, error) {
	fd, err := resolveDir(a.root, rel)
	if err == nil || !create || rel == "." || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return -1, fmt.Errorf("resolve %s: %w", rel, err)
		}
		return fd, nil
	}
	dir, base := splitRel(rel)
	pfd, err := a.openDir(dir, true)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir %s: %w", rel, err)
	} else if err == nil {
		if err := a.impliedDirMeta(pfd, base); err != nil {
			return -1, fmt.Errorf("mkdir %s: %w", rel, err)
		}
	}
	if fd, err = resolveDir(a.root, rel); err != nil {
		return -1, fmt.Errorf("resolve %s: %w", rel, err)
	}
	return fd, nil
}

func (a *applier) impliedDirMeta(pfd int, base string) error {
	if !a.opts.NoLchown {
		uid, gid, err := a.opts.IDMap.ToHost(0, 0)
		if err != nil {
			return err
		}
		if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	// 0755 whatever the umask, keeping the setgid bit a setgid parent
	// passes on (Moby's MkdirAll under umask 0 makes the same).
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if mode := 0o755 | st.Mode&unix.S_ISGID; st.Mode&0o7777 != mode {
		return unix.Fchmodat(pfd, base, mode, 0)
	}
	return nil
}

// restoreDirTimes sets the times of each directory entry as Moby does at
// the end: on what the name leads to now, following symlinks (inside the
// root), and failing the apply when it leads nowhere (the directory was
// removed or replaced by a dangling symlink later in the tar). While
// nothing was removed, every name still is the directory it made.
func (a *applier) restoreDirTimes() error {
	for _, d := range a.dirs {
		var err error
		if a.removed {
			err = a.setTimesFollow(d.rel, d.ts)
		} else {
			dir, base := splitRel(d.rel)
			var pfd int
			if pfd, err = a.parent(dir, false); err == nil {
				err = unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW)
			}
		}
		if err != nil {
			return fmt.Errorf("entry %q: set times: %w", d.rel+"/", err)
		}
	}
	return nil
}

func (a *applier) setTimesFollow(rel string, ts [2]unix.Timespec) error {
	fd, err := resolveAny(a.root, rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), ts[:], 0)
}

// tarTimes returns the atime and mtime of hdr as Moby sets them: atime no
// earlier than mtime, times outside what the kernel takes as the epoch.
func tarTimes(hdr *tar.Header) [2]unix.Timespec {
	at, mt := hdr.AccessTime, hdr.ModTime
	if at.Before(mt) {
		at = mt
	}
	return [2]unix.Timespec{toTimespec(at), toTimespec(mt)}
}

var maxUnixTime = time.Unix(0, math.MaxInt64)

func toTimespec(t time.Time) unix.Timespec {
	if t.Before(time.Unix(0, 0)) || t.After(maxUnixTime) {
		return unix.Timespec{}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// countingReader counts the bytes read: archive/tar reads exactly the
// blocks it needs, so the count is its position in the stream.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// logXattrErr logs an xattr the filesystem refused (Moby ignores EPERM
// and ENOTSUP the same way).
func logXattrErr(rel, name string, err error) {
	l := logrus.WithFields(logrus.Fields{"path": rel, "xattr": name, "error": err})
	if strings.HasPrefix(name, "security.") {
		l.Warn("layertar: apply layer: xattr not set")
		return
	}
	l.Debug("layertar: apply layer: xattr not set")
}
