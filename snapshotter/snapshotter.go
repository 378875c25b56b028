// Package snapshotter gives containerd's snapshotter semantics (Prepare,
// View, Commit, Mounts, Remove, Stat, Update, Usage, Walk) over a
// deviceset.DeviceSet: every snapshot is a thin device of the pool, and a
// bbolt database maps snapshot keys to those devices.
//
// # Crash safety
//
// Each call changes the database in one bbolt transaction, written before
// the DeviceSet touches the pool (whose own transaction covers the thin
// device and its DevInfo):
//   - Prepare/View commit the new record, then create the device;
//   - Remove deletes the record, then the device (a failure puts the
//     record back);
//   - Commit only renames the record.
//
// So a crash at any step leaves at most a record without a device or a
// device without a record, and Open reconciles the two: a layer of ours
// that no record names is deleted, a record whose device is missing is
// dropped.
//
// # Locks
//
// Lock order: key locks (in byte order) → bbolt's writer lock → the
// DeviceSet's. A key lock is held for the whole call on that key; bbolt
// transactions are short and never span pool work.
package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"

	"github.com/thinlayer/thinlayer/deviceset"
	"github.com/thinlayer/thinlayer/internal/keylock"
)

// DBFile is the metadata database's name under the snapshotter's root.
const DBFile = "snapshots.db"

// Snapshotter is containerd's snapshotter over one DeviceSet. Its methods
// are safe for concurrent use.
type Snapshotter struct {
	ds     *deviceset.DeviceSet
	ownsDS bool
	db     *bolt.DB
	keys   keylock.Locks
	log    *logrus.Entry
}

// Open opens (or creates) the metadata database in root and reconciles it
// with ds's layers. ds stays the caller's.
func Open(root string, ds *deviceset.DeviceSet) (*Snapshotter, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("snapshotter root %s: %w", root, err)
	}
	path := filepath.Join(root, DBFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open snapshot database %s: %w", path, err)
	}
	s := &Snapshotter{ds: ds, db: db, log: logrus.WithField("snapshotter", "thinlayer")}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSnapshots)
		return err
	})
	if err == nil {
		err = s.reconcile()
	}
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// OpenHome opens the DeviceSet of home with dm.* options and a snapshotter
// on it (database in home); Close shuts both down.
func OpenHome(home string, options []string) (*Snapshotter, error) {
	cfg, err := deviceset.ParseOptions(options)
	if err != nil {
		return nil, err
	}
	cfg.Logger = logrus.WithField("snapshotter", "thinlayer")
	ds, err := deviceset.New(home, cfg)
	if err != nil {
		return nil, err
	}
	s, err := Open(home, ds)
	if err != nil {
		return nil, errors.Join(err, ds.Shutdown())
	}
	s.ownsDS = true
	return s, nil
}

// DeviceSet is the DeviceSet the snapshots live in.
func (s *Snapshotter) DeviceSet() *deviceset.DeviceSet { return s.ds }

// Close closes the database, and shuts the DeviceSet down if OpenHome
// opened it.
func (s *Snapshotter) Close() error {
	err := s.db.Close()
	if s.ownsDS {
		err = errors.Join(err, s.ds.Shutdown())
	}
	return err
}

// lockKeys takes the key locks of a call, in byte order.
func (s *Snapshotter) lockKeys(a, b string) (unlock func()) {
	if b == "" || a == b {
		s.keys.Lock(a)
		return func() { s.keys.Unlock(a) }
	}
	if b < a {
		a, b = b, a
	}
	s.keys.Lock(a)
	s.keys.Lock(b)
	return func() { s.keys.Unlock(b); s.keys.Unlock(a) }
}

func applyOpts(info *Info, opts []Opt) error {
	for _, o := range opts {
		if err := o(info); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
	}
	return nil
}

func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
