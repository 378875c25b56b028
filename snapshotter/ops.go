package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/thinlayer/thinlayer/internal/faults"
)

// Prepare creates an active (writable) snapshot key of the committed
// snapshot parent ("" is the empty base filesystem) and returns its mounts.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return s.create(ctx, KindActive, key, parent, opts)
}

// View creates a read-only snapshot key of parent and returns its mounts.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return s.create(ctx, KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind Kind, key, parent string, opts []Opt) ([]Mount, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if key == "" {
		return nil, fmt.Errorf("%w: empty snapshot key", ErrInvalidArgument)
	}
	defer s.lockKeys(key, parent)()
	now := time.Now().UTC()
	r := record{Info: Info{Kind: kind, Name: key, Parent: parent, Created: now, Updated: now}}
	if err := applyOpts(&r.Info, opts); err != nil {
		return nil, err
	}
	var err error
	if r.ID, err = newID(); err != nil {
		return nil, err
	}
	if err := faultPoint("prepare.intent"); err != nil {
		return nil, err
	}
	var parentID string
	err = s.db.Update(func(tx *bolt.Tx) error {
		if hasRecord(tx, key) {
			return fmt.Errorf("snapshot %q: %w", key, ErrAlreadyExists)
		}
		if parentID, err = committedID(tx, parent); err != nil {
			return err
		}
		return putRecord(tx, key, r)
	})
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", kind, key, err)
	}
	if err := s.makeDevice(key, r.ID, parentID); err != nil {
		return nil, err
	}
	if err := faultPoint("prepare.mounts"); err != nil {
		return nil, err
	}
	s.log.WithFields(logrus.Fields{"key": key, "parent": parent, "id": r.ID, "kind": kind}).Debug("created")
	return s.mounts(r)
}

// committedID is the layer of the committed snapshot parent ("" for the
// base device).
func committedID(tx *bolt.Tx, parent string) (string, error) {
	if parent == "" {
		return "", nil
	}
	p, err := getRecord(tx, parent)
	if err != nil {
		return "", fmt.Errorf("parent: %w", err)
	}
	if p.Info.Kind != KindCommitted {
		return "", fmt.Errorf("parent %q is %s, not committed: %w", parent, p.Info.Kind, ErrFailedPrecondition)
	}
	return p.ID, nil
}

// makeDevice creates the thin device of a recorded snapshot; when that
// fails the record goes again.
func (s *Snapshotter) makeDevice(key, id, parentID string) error {
	err := faultPoint("prepare.device")
	if err == nil {
		err = s.ds.AddDevice(id, parentID, nil)
	}
	if err == nil {
		return nil
	}
	uerr := s.db.Update(func(tx *bolt.Tx) error { return deleteRecord(tx, key) })
	return errors.Join(fmt.Errorf("snapshot %q: %w", key, err), uerr)
}

// Commit turns the active snapshot key into the committed snapshot name:
// the same thin device, renamed in the database.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...Opt) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("%w: empty snapshot name", ErrInvalidArgument)
	}
	defer s.lockKeys(name, key)()
	if err := faultPoint("commit.tx"); err != nil {
		return err
	}
	var id string
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if r.Info.Kind != KindActive {
			return fmt.Errorf("snapshot %q is %s, not active: %w", key, r.Info.Kind, ErrFailedPrecondition)
		}
		if hasRecord(tx, name) {
			return fmt.Errorf("snapshot %q: %w", name, ErrAlreadyExists)
		}
		now := time.Now().UTC()
		r.Info = Info{Kind: KindCommitted, Name: name, Parent: r.Info.Parent, Created: now, Updated: now}
		if err := applyOpts(&r.Info, opts); err != nil {
			return err
		}
		id = r.ID
		if err := deleteRecord(tx, key); err != nil {
			return err
		}
		return putRecord(tx, name, r)
	})
	if err != nil {
		return fmt.Errorf("commit %q as %q: %w", key, name, err)
	}
	// Committed snapshots are not mounted; the device can go. A client
	// still holding it open keeps it (deferred removal) or it stays.
	if err := s.ds.DeactivateDevice(id); err != nil {
		s.log.WithError(err).WithField("name", name).Debug("committed snapshot's device left active")
	}
	return nil
}

// Remove deletes snapshot key and its thin device. A snapshot that others
// name as their parent is refused with ErrFailedPrecondition.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	defer s.lockKeys(key, "")()
	if err := faultPoint("remove.intent"); err != nil {
		return err
	}
	var r record
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if r, err = getRecord(tx, key); err != nil {
			return err
		}
		if busy, err := hasChildren(tx, key); err != nil || busy {
			return errors.Join(err, fmt.Errorf("snapshot %q has children: %w", key, ErrFailedPrecondition))
		}
		return deleteRecord(tx, key)
	})
	if err != nil {
		return fmt.Errorf("remove %q: %w", key, err)
	}
	err = faultPoint("remove.device")
	if err == nil {
		err = s.ds.DeleteDevice(r.ID, false)
	}
	if err != nil { // the device stays: so does its snapshot
		rerr := s.db.Update(func(tx *bolt.Tx) error { return putRecord(tx, key, r) })
		return errors.Join(fmt.Errorf("remove %q: %w", key, err), rerr)
	}
	s.log.WithFields(logrus.Fields{"key": key, "id": r.ID}).Debug("removed")
	return nil
}

// Stat returns the Info of snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (Info, error) {
	r, err := s.get(ctx, key)
	return r.Info, err
}

func (s *Snapshotter) get(ctx context.Context, key string) (r record, err error) {
	if err := ctxErr(ctx); err != nil {
		return r, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		r, err = getRecord(tx, key)
		return err
	})
	return r, err
}

// Update changes a snapshot's labels: all of them, or with fieldpaths
// "labels" / "labels.<key>", just those.
func (s *Snapshotter) Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error) {
	if err := ctxErr(ctx); err != nil {
		return Info{}, err
	}
	defer s.lockKeys(info.Name, "")()
	var out Info
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, info.Name)
		if err != nil {
			return err
		}
		if r.Info.Labels, err = updateLabels(r.Info.Labels, info.Labels, fieldpaths); err != nil {
			return err
		}
		r.Info.Updated = time.Now().UTC()
		out = r.Info
		return putRecord(tx, info.Name, r)
	})
	return out, err
}

// Usage is what the snapshot takes in the pool beyond its parent, as
// containerd defines it: the bytes of the data blocks its thin device maps
// that its parent's (the base device's, for a snapshot without parent)
// does not map at the same place. Read from a metadata snapshot of the
// pool, as thin_delta reads it. Inodes stays 0: counting them would mean
// mounting the filesystem.
func (s *Snapshotter) Usage(ctx context.Context, key string) (Usage, error) {
	if err := ctxErr(ctx); err != nil {
		return Usage{}, err
	}
	var id, parentID string
	err := s.db.View(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		id = r.ID
		if r.Info.Parent == "" {
			return nil
		}
		p, err := getRecord(tx, r.Info.Parent)
		if err != nil {
			return fmt.Errorf("parent: %w", err)
		}
		parentID = p.ID
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %q: %w", key, err)
	}
	n, err := s.ds.BytesOverParent(id, parentID)
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EOPNOTSUPP) {
		n, err = s.mappedFallback(key, id, err)
	}
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %q: %w", key, err)
	}
	return Usage{Size: int64(n)}, nil
}

// mappedFallback answers Usage when the pool gives no metadata snapshot:
// another tool holds its one snapshot (EBUSY), or a read-only pool serves
// no messages (EOPNOTSUPP). CRI asks every snapshot's Usage every few
// seconds: an active device's mapped bytes, its parent's included, come
// from the thin target's status and are an upper bound. A device that is
// not active has no status: err stands.
func (s *Snapshotter) mappedFallback(key, id string, err error) (uint64, error) {
	n, merr := s.ds.MappedBytes(id)
	if merr != nil {
		return 0, err
	}
	s.log.WithError(err).WithField("key", key).Warn("usage: all the snapshot's mapped bytes, its parent's included")
	return n, nil
}

// Mounts activates the device of an active or view snapshot (without
// mounting it) and returns its mount spec.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]Mount, error) {
	r, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.mounts(r)
}

func (s *Snapshotter) mounts(r record) ([]Mount, error) {
	if r.Info.Kind != KindActive && r.Info.Kind != KindView {
		return nil, fmt.Errorf("mounts of %q: snapshot is %s: %w", r.Info.Name, r.Info.Kind, ErrFailedPrecondition)
	}
	dev, fsType, err := s.ds.ActivateDevice(r.ID)
	if err != nil {
		return nil, fmt.Errorf("mounts of %q: %w", r.Info.Name, err)
	}
	var opts []string
	if r.Info.Kind == KindView {
		opts = append(opts, "ro")
	}
	if fsType == "xfs" { // every snapshot carries the base's UUID
		opts = append(opts, "nouuid")
	}
	return []Mount{{Type: fsType, Source: dev, Options: opts}}, nil
}

// Walk calls fn with the Info of every snapshot that matches any of
// filters (all when none), outside the database transaction.
func (s *Snapshotter) Walk(ctx context.Context, fn func(context.Context, Info) error, filters ...string) error {
	match, err := ParseFilters(filters...)
	if err != nil {
		return err
	}
	var infos []Info
	err = s.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(r record) error {
			if match(r.Info) {
				infos = append(infos, r.Info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := ctxErr(ctx); err != nil {
			return err
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// faultPoint is a step of this package for the crash walk (its names are
// in faultpoints.go).
func faultPoint(name string) error { return faults.Point("snapshotter." + name) }
