package snapshotter

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// reconcile makes the database and the DeviceSet agree after a crash: a
// layer of ours that no snapshot names is deleted (a Prepare killed before
// its record, a Remove killed after it), and a snapshot whose device is
// missing is dropped (a Prepare killed before its device), with any
// snapshot that names a dropped one as parent.
func (s *Snapshotter) reconcile() error {
	layers, err := s.ds.List()
	if err != nil {
		return fmt.Errorf("reconcile: list layers: %w", err)
	}
	have := map[string]bool{}
	for _, h := range layers {
		if IsSnapshotLayer(h) {
			have[h] = true
		}
	}
	named, err := s.dropDeviceless(have)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var errs []error
	for h := range have {
		if named[h] {
			continue
		}
		s.log.WithField("id", h).Info("deleting a thin device no snapshot names (interrupted call)")
		if err := s.ds.DeleteDevice(h, true); err != nil {
			errs = append(errs, fmt.Errorf("reconcile: %w", err))
		}
	}
	return errors.Join(errs...)
}

// dropDeviceless drops, in one transaction, the records whose device is
// missing or whose parent is gone, and returns the layers still named.
func (s *Snapshotter) dropDeviceless(have map[string]bool) (map[string]bool, error) {
	named := map[string]bool{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for {
			drop, err := orphanRecords(tx, have)
			if err != nil || len(drop) == 0 {
				return err
			}
			for _, key := range drop {
				s.log.WithField("key", key).Info("dropping a snapshot whose device is missing (interrupted call)")
				if err := deleteRecord(tx, key); err != nil {
					return err
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(r record) error { named[r.ID] = true; return nil })
	})
	return named, err
}

func orphanRecords(tx *bolt.Tx, have map[string]bool) ([]string, error) {
	var drop []string
	err := forEach(tx, func(r record) error {
		if !have[r.ID] || (r.Info.Parent != "" && !hasRecord(tx, r.Info.Parent)) {
			drop = append(drop, r.Info.Name)
		}
		return nil
	})
	return drop, err
}
