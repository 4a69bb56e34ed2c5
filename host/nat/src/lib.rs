//! `allpeers-nat`: NAT traversal, the seed's STUN and TCP connectivity modules and the
//! connector that chooses how to reach a peer.
//!
//! * [`connectivity`] — STUN client on `rtc-stun` (strict framing), the I/O-free STUN
//!   server core the hub runs ([`connectivity::responder`]), STUN on the QUIC socket (a packet
//!   hook, [`connectivity::demux`]), the I/O-free RFC 5780 classifier
//!   ([`connectivity::nat`]), [`connectivity::discover`] and the monitor that keeps the
//!   report fresh.
//! * [`connector`] — reaching a PeerId: direct, callback, hole punch (with birthday
//!   sockets against symmetric NATs), relay; upgrade from relayed to direct; discovery
//!   sources asked when the hub cannot tell where a peer is. One connect is the I/O-free
//!   state machine [`connector::session`]; the decisions are [`connector::plan`], the wire
//!   [`connector::signal`], the packets [`connector::punch`].

pub mod connectivity;
pub mod connector;
