//! The replication core of AllPeers: shares of resources kept in sync between their members
//! with no server. Pure and I/O-free (no async runtime, no SQLite, no sockets, no clock): the
//! store persists what it is handed and the daemon moves frames and time in and out.
//!
//! ## Module map
//! - [`op`]: operations (create, create in a list, set property, set child, delete, list
//!   add/remove/move, grant, revoke), their canonical bytes (format 1, bounded decoder), BLAKE3
//!   op ids and Ed25519 signatures over a domain tag, one per op or one per batch of ops (a
//!   Merkle root, each op carrying its path).
//! - [`state`]: the materialised state, a commutative merge: last-writer-wins registers by
//!   (HLC stamp, author, op id), add-wins lists, tombstones that never resurrect; and which ops
//!   each op supersedes.
//! - [`position`]: list positions (decimal-fraction keys: one always fits between two).
//! - [`signature`]: Ed25519 checks of ops, one at a time or many in one equation, with the
//!   same verdict either way (cofactored, strict encodings).
//! - [`replica`]: one share: validity against the membership each op names (convergent
//!   capabilities after Keyhive: a revocation rejects its target's concurrent and later ops
//!   everywhere, earlier ones stand), ops waiting for parents, future-stamped ops deferred, the
//!   live set offered to sync, and the [`Changes`] the store must persist.
//! - [`reconcile`]: set reconciliation over `(timestamp, op id)` items: rateless IBLT coded
//!   symbols first ([`reconcile::coded`]), then range-based (the negentropy protocol, range
//!   fingerprints from prefix sums) when the differences are too many.
//! - [`sync`]: the session with one peer on the `allpeers/sync/1` stream: membership checks
//!   before anything is revealed, reconciliation, wanted ops with a deadline, pushes.
//! - [`store`]: the [`store::OpStore`] trait the resource store implements, and an in-memory
//!   implementation for tests.
//!
//! ## Driving it
//! ```text
//! start:       for each share: replica = store::open(&store, share, now)
//! local edit:  (op, _) = replica.author(&key, action, now); store::commit(&mut store, &mut replica);
//!              for each connected member session: session.push(&op, &mut shares)
//! connect:     session = SyncPeer::new(peer, MAX_MESSAGE_BYTES); session.start(share, &mut shares, now)
//!              for every share both hold (and periodically)
//! frame in:    session.handle(&frame, &mut shares, now); commit each touched replica;
//!              push the changes' new ops to the other sessions (any member forwards)
//! always:      write session.poll_transmit() frames; act on session.poll_event();
//!              wake at min(session.poll_timeout(), replica.poll_timeout()) and call
//!              handle_timeout(now) on both
//! ```

pub mod op;
pub mod position;
pub mod reconcile;
pub mod replica;
pub mod signature;
pub mod state;
pub mod store;
pub mod sync;
mod wire;

pub use op::{Action, Level, Op, OpBody, OpError, OpId, ShareId, Stamp};
pub use replica::{Accepted, Changes, Refused, Rejection, Replica};
