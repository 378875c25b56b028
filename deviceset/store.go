package deviceset

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/dmopts"
	"github.com/thinlayer/thinlayer/internal/recordfile"
)

// The files under <home>/metadata are Moby's, byte for byte in meaning, so
// that homes move both ways between Moby's driver and this one.
const (
	transactionFile = "transaction-metadata"
	deviceSetFile   = "deviceset-metadata"
	baseFileName    = "base" // the base device's hash is ""
	// baseGrowFile is the base grow's intent (growRecord); the leading
	// dot keeps it out of listDevices, as out of Moby's walk.
	baseGrowFile = ".grow-base"
)

// DevInfo is one layer's record: <home>/metadata/<hash>. One held in the
// DeviceSet's cache is read and changed only under its layer's lock (Hash
// and DeviceID, fixed once cached, are read without it).
type DevInfo struct {
	Hash          string    `json:"-"`
	DeviceID      dm.ThinID `json:"device_id"` // a JSON number, as Moby writes it
	Size          uint64    `json:"size"`      // bytes
	TransactionID uint64    `json:"transaction_id"`
	Initialized   bool      `json:"initialized"`
	Deleted       bool      `json:"deleted"`

	// pristine: created by this process as a snapshot and never active
	// since, so it owns no block of its own and its discard frees nothing.
	pristine bool
	// loadedSize is the size of the table this process last loaded for
	// the layer's device: a device found active at that size needs no
	// check of its table.
	loadedSize uint64
}

// transaction is the intent record written before the pool changes.
type transaction struct {
	OpenTransactionID uint64    `json:"open_transaction_id"`
	DeviceIDHash      string    `json:"device_hash"`
	DeviceID          dm.ThinID `json:"device_id"`
}

// growRecord is the intent record of a base device grow, written before
// the base's DevInfo changes and removed once the grow is done or undone
// (see grow.go).
type growRecord struct {
	From uint64 `json:"from"` // bytes
	To   uint64 `json:"to"`
}

// setMetadata is the home-wide record Moby writes from its DeviceSet.
type setMetadata struct {
	NextDeviceID         int    `json:"next_device_id"`
	BaseDeviceUUID       string `json:"BaseDeviceUUID"`
	BaseDeviceFilesystem string `json:"BaseDeviceFilesystem"`
}

// ErrCorruptMetadata marks a DevInfo file that cannot be used.
var ErrCorruptMetadata = errors.New("corrupt device metadata")

// store reads and writes the metadata directory.
type store struct {
	dir string
}

func hashFile(hash string) string {
	if hash == "" {
		return baseFileName
	}
	return hash
}

func (s store) path(name string) string { return filepath.Join(s.dir, name) }

// isDeviceFile tells DevInfo files from the other files Moby keeps there.
func isDeviceFile(name string) bool {
	return !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".migrated") &&
		name != transactionFile && name != deviceSetFile
}

// loadDevice reads a DevInfo; os.ErrNotExist when there is none.
func (s store) loadDevice(hash string) (*DevInfo, error) {
	p, err := s.devicePath(hash)
	if err != nil {
		return nil, err
	}
	b, err := readSmall(p)
	if err != nil {
		return nil, err
	}
	info, err := decodeDevInfo(hash, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return info, nil
}

// maxRecordSize bounds what is read of a metadata file: Moby's records are
// well under 1 KiB, and a huge file is not one of them.
const maxRecordSize = 64 << 10

// readSmall reads a metadata file of at most maxRecordSize bytes, by the
// one rule every reader of the home's records follows (recordfile): a
// link, a FIFO, a device or a huge file is ErrCorruptMetadata; a missing
// file is os.ErrNotExist.
func readSmall(path string) ([]byte, error) {
	b, err := recordfile.Read(path, maxRecordSize)
	if errors.Is(err, recordfile.ErrInvalid) {
		return nil, fmt.Errorf("%w: %w", ErrCorruptMetadata, err)
	}
	return b, err
}

// decodeDevInfo parses and checks a DevInfo file's contents: JSON of the
// right types, a thin id that fits in 24 bits, a non-zero size.
func decodeDevInfo(hash string, b []byte) (*DevInfo, error) {
	info := &DevInfo{Hash: hash}
	if err := json.Unmarshal(b, info); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptMetadata, err)
	}
	if err := info.check(); err != nil {
		return nil, err
	}
	return info, nil
}

// check applies decodeDevInfo's rules to a DevInfo about to be written:
// nothing is written that would not be read back.
func (info *DevInfo) check() error {
	if err := info.DeviceID.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptMetadata, err)
	}
	if err := dmopts.CheckDeviceSize(info.Size); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptMetadata, err)
	}
	return nil
}

// ErrInvalidHash: a layer id that cannot name a DevInfo file in the home.
var ErrInvalidHash = errors.New("invalid layer id")

// CheckHash reports whether hash can name a layer: a single file name
// under <home>/metadata that is none of the home's own files. "" is the
// base device.
func CheckHash(hash string) error {
	switch {
	case hash == "":
		return nil
	case hash == baseFileName, hash == transactionFile, hash == deviceSetFile:
		return fmt.Errorf("%w: %q is reserved", ErrInvalidHash, hash)
	case len(hash) > 255:
		return fmt.Errorf("%w: %d bytes long (255 at most)", ErrInvalidHash, len(hash))
	case hash[0] == '.', strings.IndexByte(hash, '/') >= 0, strings.IndexByte(hash, 0) >= 0,
		strings.HasSuffix(hash, ".migrated"): // isDeviceFile's rules, spelled out: Exists runs this
		return fmt.Errorf("%w: %q (no '/' or NUL, no leading '.', no .migrated suffix)", ErrInvalidHash, hash)
	}
	return nil
}

// devicePath is the DevInfo file of hash, once hash is known to stay
// inside the metadata directory.
func (s store) devicePath(hash string) (string, error) {
	if err := CheckHash(hash); err != nil {
		return "", err
	}
	return s.path(hashFile(hash)), nil
}

func (s store) saveDevice(info *DevInfo) error {
	if err := CheckHash(info.Hash); err != nil {
		return err
	}
	if err := info.check(); err != nil {
		return fmt.Errorf("write metadata of %q: %w", info.Hash, err)
	}
	return s.writeJSON(hashFile(info.Hash), info)
}

func (s store) removeDevice(hash string) error {
	p, err := s.devicePath(hash)
	if err != nil {
		return err
	}
	err = unix.Unlink(p)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove metadata of %q: %w", hash, &os.PathError{Op: "unlink", Path: p, Err: err})
	}
	return recordfile.SyncDir(s.dir)
}

func (s store) hasDevice(hash string) bool {
	p, err := s.devicePath(hash)
	if err == nil {
		_, err = os.Lstat(p)
	}
	return err == nil
}

// listDevices returns every hash with a DevInfo file — or with anything
// else under a DevInfo's name: its loaders refuse what is not a regular
// file (openRecord), but its name is listed, so that no caller takes a
// thin id it may hold for free.
func (s store) listDevices() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var hashes []string
	for _, e := range entries {
		if isDeviceFile(e.Name()) {
			h := e.Name()
			if h == baseFileName {
				h = ""
			}
			hashes = append(hashes, h)
		}
	}
	return hashes, nil
}

// loadTransaction reads the transaction record; a missing one (a home from
// before transactions) reads as none open.
func (s store) loadTransaction() (transaction, bool, error) {
	var t transaction
	ok, err := s.readJSON(transactionFile, &t)
	return t, ok, err
}

func (s store) saveTransaction(t transaction) error { return s.writeJSON(transactionFile, t) }

// loadBaseGrow reads the base grow's intent record, if there is one.
func (s store) loadBaseGrow() (growRecord, bool, error) {
	var g growRecord
	ok, err := s.readJSON(baseGrowFile, &g)
	return g, ok, err
}

func (s store) saveBaseGrow(g growRecord) error { return s.writeJSON(baseGrowFile, g) }

func (s store) removeBaseGrow() error {
	err := unix.Unlink(s.path(baseGrowFile))
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unlink", Path: s.path(baseGrowFile), Err: err}
	}
	return recordfile.SyncDir(s.dir)
}

// loadSetMetadata reads the home-wide record. A damaged one (it is written
// atomically, so only outside damage does that) is not worth the home: it
// reads as empty, so ids are searched from 1 and the base device's UUID
// and filesystem are learnt again from the base device.
// onDisk reports that the file holds m.
func (s store) loadSetMetadata(log logrus.FieldLogger) (m setMetadata, onDisk bool, err error) {
	onDisk, err = s.readJSON(deviceSetFile, &m)
	if errors.Is(err, ErrCorruptMetadata) {
		log.WithError(err).Error("home-wide record unreadable; starting it afresh")
		return setMetadata{}, false, nil
	}
	return m, onDisk, err
}

func (s store) saveSetMetadata(m setMetadata) error { return s.writeJSON(deviceSetFile, m) }

func (s store) readJSON(name string, v any) (bool, error) {
	b, err := readSmall(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrCorruptMetadata, s.path(name), err)
	}
	return true, nil
}

// writeJSON replaces a record atomically and durably (recordfile.Write:
// temp file, fsync, rename, fsync of the directory).
func (s store) writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return recordfile.Write(s.dir, name, b)
}
