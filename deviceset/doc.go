// Package deviceset keeps container image layers as thin devices in a
// device-mapper thin pool, with Moby's on-disk layout: one DevInfo JSON file
// per layer under <home>/metadata, the transaction record, and the pool's
// own transaction id as the commit point.
//
// # Transactions
//
// Every change to the pool's set of thin devices runs as one transaction,
// in this order:
//
//  1. write transaction-metadata {open id = pool id + 1, hash, thin id}
//     (fsynced): the intent;
//  2. send the pool message (create_thin, create_snap or delete);
//  3. write or remove the layer's DevInfo file (fsynced);
//  4. set the pool's transaction id to the open id: the commit.
//
// At startup an open id above the pool's id means a crash between 1 and 4;
// the thin device is then deleted (unless another layer's DevInfo names
// it) and the layer's DevInfo too, if it names that device. For a create
// that undoes it, for a delete it finishes it: either way no thin device is
// left that no DevInfo names, and no DevInfo whose device is missing. A
// step that fails in a running process is settled the same way at once; if
// even that fails, before the next transaction. A record that cannot be
// ours (not the next id, a bad layer id) is ignored, not acted on.
//
// Startup also resumes a device a crash left suspended, removes one left
// half-made, unmounts what is left under <home>/mnt, and finishes a
// filesystem grow that was marked (<home>/mnt/.grow-<id>) but not done.
//
// # Locks
//
// Lock order: layer locks → txMu → mu; ids.mu (and loaded.mu, the same
// type), idle.mu and the deleter's mutex are leaves. Fields say which
// lock guards them; what Open sets and never changes needs none.
//   - layer lock (one per hash, in layers): held for the whole of an
//     operation on that layer: create, delete, mount, unmount; it guards
//     the layer's cached DevInfo. A create holds two, its parent's and its
//     own, taken in byte order of the ids (lockPair) — not parent first,
//     which two creates naming each other as parent would turn into a
//     deadlock. Settling a failed transaction holds its layer's lock too:
//     a transaction that finds another layer's failure still open (both
//     failed: the step, then settling it) takes that layer's lock without
//     waiting (TryLock, txMu being held); when it is in use, it lets go of
//     txMu, waits a bounded time for that layer (its holder may need txMu,
//     or a lock the caller holds), and looks again, refused only when the
//     wait runs out.
//   - txMu: serialises pool changes (the pool's id is a sequence) and thin
//     id allocation. Held across steps 1–4 above (and a delete's discard,
//     which must follow its intent), across building the id index that
//     allocation consults, across DeleteOrphanThin's check that no DevInfo
//     names the id and its delete (a create between its message and its
//     DevInfo has a device no DevInfo names yet), and across the home
//     record's write; never across mkfs, mounts, filesystem growth or
//     reads of the pool's metadata (the look lock serialises those). A
//     snapshot suspends its active origin only under txMu, across the
//     create_snap message alone: the intent and the id index come before,
//     the DevInfo and the commit after, so a mounted layer's I/O never
//     waits for another transaction.
//   - mu: guards the in-memory cache of DevInfos, the home record (meta)
//     and mountFS; never held across I/O other than reading one DevInfo
//     file. meta is written holding txMu and mu (updateMeta: txMu orders
//     the record's fsynced writes, made after letting go of mu) and read
//     holding mu.
//   - ids.mu: the thin id index; built under it once (at the first
//     create or delete, never at a mount) by reading every DevInfo, or by
//     reading the index the last clean Shutdown kept and a stat of each
//     DevInfo (idcache.go); then only map updates, until Shutdown writes
//     the index out (fsynced) under it, when nothing else runs.
//   - idle.mu: the set of unmounted layers whose device stays active; a
//     leaf. Evicting a layer from it takes that layer's lock, and so is
//     done only once the caller has let go of its own.
//
// # Idle devices
//
// Put unmounts a layer but leaves its device active, in a bounded LRU
// (Config.IdleDevices), so that the next mount is a mount and nothing
// more. The set is a hint: activation always asks the kernel. A snapshot
// of an idle origin deactivates it instead of suspending it; a Remove
// discards through it and then removes it; Shutdown removes them all, and
// Release (which leaves mounts) the idle ones.
//
// The deferred deletion worker takes a layer lock through DeleteDevice
// like any caller; its own mutex is a leaf.
package deviceset
