//! The swarm core shared by every multi-source protocol: I/O-free state machines driven with `now`.

pub mod assembler;
pub mod choker;
pub mod geometry;
pub mod picker;
pub mod pipeline;
pub mod rate;

/// A connected peer, as the session numbers them (never reused within a transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);
