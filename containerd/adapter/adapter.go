// Package adapter presents a thinlayer snapshotter as containerd's
// snapshots.Snapshotter, converting types and errors one to one.
package adapter

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"

	"github.com/thinlayer/thinlayer/snapshotter"
)

// Snapshotter is containerd's interface over a thinlayer snapshotter.
type Snapshotter struct{ S *snapshotter.Snapshotter }

var _ snapshots.Snapshotter = Snapshotter{}

// Stat returns the snapshot's info (containerd's snapshots.Info).
func (a Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	i, err := a.S.Stat(ctx, key)
	return toInfo(i), convErr(err)
}

// Update changes the snapshot's labels; fieldpaths name which ("labels" or "labels.KEY").
func (a Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	i, err := a.S.Update(ctx, fromInfo(info), fieldpaths...)
	return toInfo(i), convErr(err)
}

// Usage is the snapshot's own size: the blocks its thin device maps that
// its parent's does not map at the same place, and its inode count.
func (a Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	u, err := a.S.Usage(ctx, key)
	return snapshots.Usage{Inodes: u.Inodes, Size: u.Size}, convErr(err)
}

// Mounts returns the mounts of an active snapshot: its thin device.
func (a Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	m, err := a.S.Mounts(ctx, key)
	return toMounts(m), convErr(err)
}

// Prepare makes an active (read-write) snapshot key on parent.
func (a Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := a.S.Prepare(ctx, key, parent, convOpts(opts)...)
	return toMounts(m), convErr(err)
}

// View makes a read-only active snapshot key on parent.
func (a Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := a.S.View(ctx, key, parent, convOpts(opts)...)
	return toMounts(m), convErr(err)
}

// Commit turns the active snapshot key into the committed snapshot name.
func (a Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return convErr(a.S.Commit(ctx, name, key, convOpts(opts)...))
}

// Remove deletes a snapshot and its thin device; one with children is refused.
func (a Snapshotter) Remove(ctx context.Context, key string) error {
	return convErr(a.S.Remove(ctx, key))
}

// Walk calls fn with every snapshot that matches the filters.
func (a Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return convErr(a.S.Walk(ctx, func(ctx context.Context, i snapshotter.Info) error {
		return fn(ctx, toInfo(i))
	}, filters...))
}

// Close closes the snapshotter (and its DeviceSet, when it opened it).
func (a Snapshotter) Close() error { return a.S.Close() }

func toInfo(i snapshotter.Info) snapshots.Info {
	return snapshots.Info{Kind: snapshots.Kind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels,
		Created: i.Created, Updated: i.Updated}
}

func fromInfo(i snapshots.Info) snapshotter.Info {
	return snapshotter.Info{Kind: snapshotter.Kind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels,
		Created: i.Created, Updated: i.Updated}
}

func toMounts(ms []snapshotter.Mount) []mount.Mount {
	var out []mount.Mount
	for _, m := range ms {
		out = append(out, mount.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	return out
}

// convOpts runs containerd's options on a containerd Info and carries the
// labels they set over.
func convOpts(opts []snapshots.Opt) []snapshotter.Opt {
	return []snapshotter.Opt{func(i *snapshotter.Info) error {
		var ci snapshots.Info
		for _, o := range opts {
			if err := o(&ci); err != nil {
				return err
			}
		}
		i.Labels = ci.Labels
		return nil
	}}
}

var errClasses = []struct{ ours, theirs error }{
	{snapshotter.ErrNotFound, errdefs.ErrNotFound},
	{snapshotter.ErrAlreadyExists, errdefs.ErrAlreadyExists},
	{snapshotter.ErrFailedPrecondition, errdefs.ErrFailedPrecondition},
	{snapshotter.ErrInvalidArgument, errdefs.ErrInvalidArgument},
}

// convErr adds containerd's errdefs class to an error, keeping its text
// and cause.
func convErr(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range errClasses {
		if errors.Is(err, c.ours) {
			return fmt.Errorf("%w: %w", err, c.theirs)
		}
	}
	return err
}
