package deviceset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	units "github.com/docker/go-units"

	dm "github.com/thinlayer/thinlayer/devmapper"
	"github.com/thinlayer/thinlayer/dmopts"
)

// One bound on a device's size, the same where a size comes in (the
// dm.basesize option, the size storage option) and where it is read back
// (a DevInfo): a size accepted on create is readable after, so the home
// opens again. Sizes between 2^62 and 2^63 (5000p, 7000p) were accepted on
// create and refused on read.
func TestSizeBoundAgrees(t *testing.T) {
	for _, s := range []string{"1g", "10g", "1p", "4096p", "4e", "4095p", "4097p", "5000p", "7000p", "8191p", "7e",
		"4611686018427387904", "4611686018427387905", "4611686018427388416", "9223372036854775806"} {
		checkSizeAgreement(t, s)
	}
}

// FuzzSizeBound: whatever the options accept, a DevInfo of that size
// decodes, and a DevInfo the store writes it reads back.
func FuzzSizeBound(f *testing.F) {
	for _, s := range []string{"10g", "5000p", "7000p", "4e", "4611686018427387905", "1.5e", "0x10", "9e18b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkSizeAgreement(t, s) })
}

func checkSizeAgreement(t *testing.T, s string) {
	t.Helper()
	n, perr := units.RAMInBytes(s)
	c, baseErr := ParseOptions([]string{"dm.basesize=" + s})
	if baseErr == nil && !decodes(c.BaseSize) {
		t.Errorf("dm.basesize=%s accepted as %d, which a DevInfo cannot hold", s, c.BaseSize)
	}
	size, optErr := parseStorageOpt(map[string]string{"size": s})
	if optErr == nil && !decodes(size) {
		t.Errorf("size=%s accepted as %d, which a DevInfo cannot hold", s, size)
	}
	// Above the minimum base size, the two options and the decoder agree
	// on every size the units parser reads.
	if perr == nil && n >= dmopts.MinBaseSize {
		if dec := decodes(uint64(n)); dec != (baseErr == nil) || dec != (optErr == nil) {
			t.Errorf("%s (%d bytes): DevInfo decodes=%v, dm.basesize err=%v, size err=%v", s, n, dec, baseErr, optErr)
		}
	}
}

func decodes(size uint64) bool {
	_, err := decodeDevInfo("h", fmt.Appendf(nil, `{"device_id":1,"size":%d}`, size))
	return err == nil
}

// A Config made by hand (not parsed) is held to the same bound.
func TestValidateBaseSizeBound(t *testing.T) {
	c := DefaultConfig()
	c.BaseSize = maxDeviceSize + 1
	if err := c.Validate(); err == nil {
		t.Errorf("Validate of a base size of %d: nil", c.BaseSize)
	}
	c.BaseSize = maxDeviceSize
	if err := c.Validate(); err != nil {
		t.Errorf("Validate at the bound: %v", err)
	}
}

// The store writes no DevInfo it would refuse to read.
func TestSaveDeviceRefusesUnreadable(t *testing.T) {
	s := store{dir: filepath.Join(t.TempDir(), "metadata")}
	must(t, os.Mkdir(s.dir, 0o700))
	for _, info := range []DevInfo{{Hash: "big", DeviceID: 1, Size: maxDeviceSize + 512}, {Hash: "zero", DeviceID: 1},
		{Hash: "id", DeviceID: dm.MaxThinID + 1, Size: 512}} {
		err := s.saveDevice(&info)
		if !errors.Is(err, ErrCorruptMetadata) {
			t.Errorf("saveDevice(%+v): %v, want ErrCorruptMetadata", info, err)
		}
		if _, err := os.Lstat(s.path(info.Hash)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("saveDevice(%+v) wrote the file", info)
		}
	}
	if err := s.saveDevice(&DevInfo{Hash: "ok", DeviceID: 1, Size: maxDeviceSize}); err != nil {
		t.Errorf("saveDevice at the bound: %v", err)
	}
}
