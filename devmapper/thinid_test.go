package devmapper

import (
	"encoding/json"
	"testing"
)

// ThinIDOf takes 0..MaxThinID from any integer type and refuses the rest;
// JSON numbers decode through it, and encode as the plain number.
func TestThinID(t *testing.T) {
	if id, err := ThinIDOf(MaxThinID); err != nil || id != MaxThinID {
		t.Fatalf("ThinIDOf(MaxThinID) = %d, %v", id, err)
	}
	if id, err := ThinIDOf(uint32(0)); err != nil || id != 0 {
		t.Fatalf("ThinIDOf(0) = %d, %v", id, err)
	}
	for _, err := range []error{
		func() error { _, err := ThinIDOf(-1); return err }(),
		func() error { _, err := ThinIDOf(int64(MaxThinID + 1)); return err }(),
		func() error { _, err := ThinIDOf(uint64(1) << 40); return err }(),
		ThinID(MaxThinID + 1).Check(),
	} {
		if err == nil {
			t.Error("an id out of range accepted")
		}
	}
	var v struct {
		ID ThinID `json:"device_id"`
	}
	for in, ok := range map[string]bool{`{"device_id":7}`: true, `{"device_id":16777215}`: true, `{"device_id":-1}`: false,
		`{"device_id":16777216}`: false, `{"device_id":7.5}`: false, `{"device_id":"7"}`: false, `{"device_id":1e30}`: false} {
		if err := json.Unmarshal([]byte(in), &v); (err == nil) != ok {
			t.Errorf("decode %s: %v", in, err)
		}
	}
	v.ID = 4242
	if b, _ := json.Marshal(v); string(b) != `{"device_id":4242}` {
		t.Errorf("encoded %s", b)
	}
	if s := ThinID(4242).String(); s != "4242" {
		t.Errorf("String() = %q", s)
	}
}
