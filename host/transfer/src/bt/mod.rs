//! BitTorrent: metainfo, magnet links and their metadata, the peer wire, trackers, and the session that drives the
//! swarm core.

pub mod bencode_guard;
pub mod connection;
pub mod create;
pub mod dht;
pub mod engine;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod mse;
pub mod peer;
pub mod session;
pub mod tracker;
pub mod wire;
