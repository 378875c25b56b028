package deviceset

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The files under <home>/metadata are Moby's, byte for byte in meaning, so
// that homes move both ways between Moby's driver and this one.
const (
	transactionFile = "transaction-metadata"
	deviceSetFile   = "deviceset-metadata"
	baseFileName    = "base" // the base device's hash is ""
)

// DevInfo is one layer's record: <home>/metadata/<hash>.
type DevInfo struct {
	Hash          string `json:"-"`
	DeviceID      int    `json:"device_id"`
	Size          uint64 `json:"size"` // bytes
	TransactionID uint64 `json:"transaction_id"`
	Initialized   bool   `json:"initialized"`
	Deleted       bool   `json:"deleted"`
}

// transaction is the intent record written before the pool changes.
type transaction struct {
	OpenTransactionID uint64 `json:"open_transaction_id"`
	DeviceIDHash      string `json:"device_hash"`
	DeviceID          int    `json:"device_id"`
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
	b, err := os.ReadFile(s.path(hashFile(hash)))
	if err != nil {
		return nil, err
	}
	info := &DevInfo{Hash: hash}
	if err := json.Unmarshal(b, info); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptMetadata, s.path(hashFile(hash)), err)
	}
	if info.DeviceID < 0 || info.DeviceID > maxDeviceID {
		return nil, fmt.Errorf("%w: %s: device id %d out of range", ErrCorruptMetadata, s.path(hashFile(hash)), info.DeviceID)
	}
	return info, nil
}

func (s store) saveDevice(info *DevInfo) error {
	return s.writeJSON(hashFile(info.Hash), info)
}

func (s store) removeDevice(hash string) error {
	err := os.Remove(s.path(hashFile(hash)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove metadata of %q: %w", hash, err)
	}
	return syncDir(s.dir)
}

func (s store) hasDevice(hash string) bool {
	_, err := os.Lstat(s.path(hashFile(hash)))
	return err == nil
}

// listDevices returns every hash with a DevInfo file.
func (s store) listDevices() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var hashes []string
	for _, e := range entries {
		if e.Type().IsRegular() && isDeviceFile(e.Name()) {
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

func (s store) removeTransaction() error {
	err := os.Remove(s.path(transactionFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (s store) loadSetMetadata() (setMetadata, error) {
	var m setMetadata
	_, err := s.readJSON(deviceSetFile, &m)
	return m, err
}

func (s store) saveSetMetadata(m setMetadata) error { return s.writeJSON(deviceSetFile, m) }

func (s store) readJSON(name string, v any) (bool, error) {
	b, err := os.ReadFile(s.path(name))
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

// writeJSON replaces a file atomically and durably: temp file, fsync,
// rename, fsync of the directory (so the rename itself survives a crash).
func (s store) writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(name))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", s.path(name), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
