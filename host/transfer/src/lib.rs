//! AllPeers transfers: multi-source downloads and uploads, a data cache, and a BitTorrent engine that real clients
//! accept.
//!
//! Module map:
//! - [`swarm`]: the I/O-free core every multi-source protocol shares, driven with `now` and tested
//!   deterministically — [`swarm::geometry`] (pieces, blocks, piece sets), [`swarm::picker`] (rarest-first with a
//!   seeded tie-break, sequential, endgame), [`swarm::pipeline`] (per-peer request depth: 3 s of the measured rate,
//!   clamped to the peer's `reqq`), [`swarm::choker`] (tit-for-tat with a rotating optimistic unchoke),
//!   [`swarm::assembler`] (blocks hashed in order as they arrive), [`swarm::rate`].
//! - [`cache`]: the data cache — [`cache::layout`] (files and safe paths), [`cache::storage`] (files on disk, in
//!   place for shared files, space accounting), [`cache::journal`] (pieces durably on disk), [`cache::disk`] (the
//!   disk thread: one vectored write per run, sync, then journal).
//! - [`blob`]: files shared inside AllPeers — content addressed by BLAKE3 with Bao-verified ranges, outboards kept
//!   in the data cache beside files referenced in place, HTTP one-to-one, the verified, resumable download.
//! - [`bt`]: BitTorrent on the librqbit crates — [`bt::metainfo`], [`bt::wire`] (framing), [`bt::mse`]
//!   (Message Stream Encryption, I/O-free), [`bt::connection`] (dial / accept, plain or encrypted), [`bt::peer`]
//!   (connections), [`bt::session`] (the per-torrent actor over the swarm core), [`bt::tracker`] (HTTP(S) and UDP
//!   announces),
//!   [`bt::engine`] (listening socket, add / remove torrents).
//! - [`throttle`]: global and per-transfer upload / download limits (token buckets).
//! - [`web`]: bounded HTTP(S) GETs (hyper + rustls) for `.torrent` URLs and HTTP(S) trackers.
//! - [`bt::create`]: a .torrent from a file on disk, to seed it in place.
//! - `testing` (feature `testing`): fixtures for tests with real clients on loopback (aria2c, ports, content).
//! - [`manager`]: the download manager (queue, pause / resume / cancel, retries, persisted list, progress events,
//!   upload monitor) — the API the node calls.

pub mod blob;
pub mod bt;
pub mod cache;
pub mod manager;
pub mod swarm;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod web;
