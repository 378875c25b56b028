package devmapper

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// ThinID is a thin device's id inside its pool (devicemapper-rs's
// ThinDevId): 24 bits, what the pool's messages and the thin target take.
type ThinID uint32

// MaxThinID is the largest thin device id (24 bits).
const MaxThinID = 1<<24 - 1

// ThinIDOf converts n to a ThinID, refusing a number out of range
// 0..MaxThinID: the one range check of a thin id from outside (a record,
// a table, a user).
func ThinIDOf[N ~int | ~int64 | ~uint32 | ~uint64](n N) (ThinID, error) {
	if n < 0 || uint64(n) > MaxThinID {
		return 0, fmt.Errorf("thin device id %d out of range 0..%d", n, MaxThinID)
	}
	return ThinID(n), nil
}

// Check reports an id over 24 bits (one made by a conversion that
// skipped ThinIDOf).
func (id ThinID) Check() error {
	_, err := ThinIDOf(id)
	return err
}

// UnmarshalJSON reads a JSON number (as Moby's records keep thin ids),
// refusing one that is no thin id. Marshalling needs nothing: a ThinID is
// written as the number it is.
func (id *ThinID) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	v, err := ThinIDOf(n)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// String is the id in decimal, as pool messages and tables write it.
func (id ThinID) String() string { return strconv.FormatUint(uint64(id), 10) }
