package snapshotter

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/thinlayer/thinlayer/deviceset"
)

// The bbolt schema: one bucket, snapshot key → record. The record names
// the DeviceSet layer (ID) that holds the snapshot's thin device; a
// committed snapshot keeps the ID its active snapshot had (no copy).
var bucketSnapshots = []byte("snapshots/v1")

// IDPrefix marks the DeviceSet layers this snapshotter owns, so it can
// share a home with a graph driver and reconcile only its own layers.
const IDPrefix = deviceset.SnapshotPrefix

type record struct {
	ID   string `json:"id"`
	Info Info   `json:"info"`
}

func newID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return IDPrefix + hex.EncodeToString(b[:]), nil
}

// IsSnapshotLayer tells this snapshotter's layers from others in the home.
func IsSnapshotLayer(hash string) bool { return strings.HasPrefix(hash, IDPrefix) }

func getRecord(tx *bolt.Tx, key string) (record, error) {
	var r record
	v := tx.Bucket(bucketSnapshots).Get([]byte(key))
	if v == nil {
		return r, fmt.Errorf("snapshot %q: %w", key, ErrNotFound)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("snapshot %q: corrupt record: %w", key, err)
	}
	r.Info.Name = key
	return r, nil
}

func putRecord(tx *bolt.Tx, key string, r record) error {
	r.Info.Name = ""
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketSnapshots).Put([]byte(key), v)
}

func deleteRecord(tx *bolt.Tx, key string) error {
	return tx.Bucket(bucketSnapshots).Delete([]byte(key))
}

func hasRecord(tx *bolt.Tx, key string) bool {
	return tx.Bucket(bucketSnapshots).Get([]byte(key)) != nil
}

// forEach calls fn with every record in key order.
func forEach(tx *bolt.Tx, fn func(r record) error) error {
	return tx.Bucket(bucketSnapshots).ForEach(func(k, _ []byte) error {
		r, err := getRecord(tx, string(k))
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// hasChildren reports whether any snapshot names key as its parent.
func hasChildren(tx *bolt.Tx, key string) (bool, error) {
	found := false
	err := forEach(tx, func(r record) error {
		if r.Info.Parent == key {
			found = true
		}
		return nil
	})
	return found, err
}
