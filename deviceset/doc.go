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
// the thin device and the DevInfo the record names are then both deleted.
// For a create that undoes it, for a delete it finishes it: either way no
// thin device is left that no DevInfo names, and no DevInfo whose device is
// missing.
//
// # Locks
//
// Lock order: layer locks (a parent's before its child's) → txMu → mu.
//   - layer lock (one per hash, in locks): held for the whole of an
//     operation on that layer: create, delete, mount, unmount.
//   - txMu: serialises pool transactions (the pool's id is a sequence) and
//     thin id allocation. Held only across steps 1–4 above, never across
//     mkfs, mounts or filesystem growth.
//   - mu: guards the in-memory cache of DevInfos; never held across I/O
//     other than reading one DevInfo file.
package deviceset
