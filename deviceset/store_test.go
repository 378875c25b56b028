package deviceset

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dm "github.com/thinlayer/thinlayer/devmapper"
)

func TestDecodeDevInfo(t *testing.T) {
	cases := []struct {
		in      string
		want    DevInfo
		problem string // "" = valid
	}{
		{in: `{"device_id":7,"size":10737418240,"transaction_id":3,"initialized":false,"deleted":false}`,
			want: DevInfo{Hash: "h", DeviceID: 7, Size: 10737418240, TransactionID: 3}},
		{in: `{"device_id":16777215,"size":512,"deleted":true,"extra":"ignored, as Moby"}`,
			want: DevInfo{Hash: "h", DeviceID: 16777215, Size: 512, Deleted: true}},
		{in: ``, problem: "unexpected end of JSON"},
		{in: `{"device_id":7,"size":10`, problem: "unexpected end of JSON"},
		{in: `not json`, problem: "invalid character"},
		{in: `[]`, problem: "cannot unmarshal array"},
		{in: `{"device_id":"7","size":512}`, problem: "cannot unmarshal string"},
		{in: `{"device_id":7.5,"size":512}`, problem: "cannot unmarshal number"},
		{in: `{"device_id":7,"size":-1}`, problem: "cannot unmarshal number"},
		{in: `{"device_id":-1,"size":512}`, problem: "device id -1 out of range"},
		{in: `{"device_id":16777216,"size":512}`, problem: "device id 16777216 out of range"},
		{in: `{"device_id":1,"size":0}`, problem: "size 0 out of range"},
		{in: `{"device_id":1,"size":100}`, problem: "size 100 out of range"},
		{in: `{"device_id":1,"size":9223372036854775807}`, problem: "out of range"},
		{in: `{"device_id":1,"size":512,"initialized":"yes"}`, problem: "cannot unmarshal string"},
	}
	for _, c := range cases {
		got, err := decodeDevInfo("h", []byte(c.in))
		switch {
		case c.problem == "" && (err != nil || *got != c.want):
			t.Errorf("decode %s: %+v %v, want %+v", c.in, got, err, c.want)
		case c.problem != "" && (!errors.Is(err, ErrCorruptMetadata) || !strings.Contains(err.Error(), c.problem)):
			t.Errorf("decode %s: %v, want ErrCorruptMetadata with %q", c.in, err, c.problem)
		}
	}
}

// FuzzDecodeDevInfo: whatever the file holds, decoding does not panic, and
// what it accepts is a DevInfo this package can use — and writes back as
// the same record.
func FuzzDecodeDevInfo(f *testing.F) {
	for _, s := range []string{`{"device_id":7,"size":10737418240,"transaction_id":3}`, `{"deleted":true}`, `[]`, `{"size":1e400}`,
		`{"device_id":16777215,"size":512,"initialized":true}`, "\x00", `{"device_id":1,"size":512,"device_id":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := decodeDevInfo("h", b)
		if err != nil {
			if !errors.Is(err, ErrCorruptMetadata) {
				t.Fatalf("error without ErrCorruptMetadata: %v", err)
			}
			return
		}
		if info.DeviceID > dm.MaxThinID || info.Size < 512 || info.Size > maxDeviceSize {
			t.Fatalf("accepted %+v", info)
		}
		again, err := json.Marshal(info)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := decodeDevInfo("h", again); err != nil || *back != *info {
			t.Fatalf("round trip: %+v -> %s -> %+v %v", info, again, back, err)
		}
	})
}

func TestCheckHash(t *testing.T) {
	for _, ok := range []string{"", "a", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-init", strings.Repeat("x", 255), "a b", "ü"} {
		if err := CheckHash(ok); err != nil {
			t.Errorf("CheckHash(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{".", "..", "a/b", "/a", "../a", "a\x00", ".tmp123", strings.Repeat("x", 256), "base",
		"transaction-metadata", "deviceset-metadata", "x.migrated"} {
		if err := CheckHash(bad); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("CheckHash(%q): %v, want ErrInvalidHash", bad, err)
		}
	}
}

// The store never reads, writes or removes outside its directory, and
// never reads a huge file whole.
func TestStoreStaysInside(t *testing.T) {
	base := t.TempDir()
	s := store{dir: filepath.Join(base, "metadata")}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte(`{"device_id":1,"size":512}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"../victim", "..", "/etc/passwd"} {
		if _, err := s.loadDevice(h); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("loadDevice(%q): %v", h, err)
		}
		if err := s.removeDevice(h); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("removeDevice(%q): %v", h, err)
		}
		if err := s.saveDevice(&DevInfo{Hash: h, Size: 512}); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("saveDevice(%q): %v", h, err)
		}
		if s.hasDevice(h) {
			t.Errorf("hasDevice(%q)", h)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || !strings.Contains(string(b), "device_id") {
		t.Fatalf("file outside the store changed: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "big"), make([]byte, maxRecordSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.loadDevice("big"); !errors.Is(err, ErrCorruptMetadata) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge DevInfo: %v", err)
	}
}

// A DevInfo is written as Moby writes it: device_id a JSON number, byte
// for byte what Moby's int gives (dm.ThinID changes nothing on disk).
func TestDevInfoBytesAsMoby(t *testing.T) {
	s := store{dir: t.TempDir()}
	info := &DevInfo{Hash: "h", DeviceID: dm.MaxThinID, Size: 10737418240, TransactionID: 3, Initialized: true}
	if err := s.saveDevice(info); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(s.path("h"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"device_id":16777215,"size":10737418240,"transaction_id":3,"initialized":true,"deleted":false}`
	if string(got) != want {
		t.Fatalf("DevInfo on disk\n got %s\nwant %s", got, want)
	}
	if err := s.saveTransaction(transaction{OpenTransactionID: 4, DeviceIDHash: "h", DeviceID: 7}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(s.path(transactionFile))
	if want := `{"open_transaction_id":4,"device_hash":"h","device_id":7}`; string(got) != want {
		t.Fatalf("transaction record\n got %s\nwant %s", got, want)
	}
}
