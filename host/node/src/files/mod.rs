//! The `files` area: the content of File resources shared with peers (issue 17): one-to-one over HTTP, or from a
//! private swarm of every member holding it.
//!
//! * [`rules`] — pure: what a File resource says of its content (hash, size, name), who may fetch a hash (a peer
//!   that a share holding a File with that hash names, through an index of each share's hashes), whom to fetch it
//!   from (the members of every share naming it).
//! * [`sources`] — those sources kept current for the downloads under way, as members join and leave.
//! * [`service`] — the `allpeers/files/1` service: HTTP one-to-one (`allpeers_transfer::blob::http`) on each peer
//!   stream, entitlement checked on every request; the dial the download manager fetches through; hashing the
//!   files a share names (at `shares.create`, and again when a shared file changed on disk).
//! * [`imports`] — a file's bytes brought in from a client that has no path to give (a file dropped on the
//!   sidebar): chunks in order into the imports folder, bounded (size, chunk, open imports, plain names).
//! * [`auto`] — auto-download: per share off / small files / everything, so a shared album fills in by itself.
//! * [`api`] — `files.get` ([`AREA`]): a shared File's content as a transfer; `files.import_*`;
//!   `files.auto_download.*`.

pub mod api;
pub mod auto;
pub mod imports;
pub mod policy;
pub mod rules;
pub mod service;
pub mod sources;

pub use api::AREA;
