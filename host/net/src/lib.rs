//! `allpeers-net`, the networking core: the user's identity (key pair, PeerId, certificate),
//! mutually authenticated transports (QUIC, TCP+TLS) behind one [`Connection`] type, the
//! node's [`Endpoint`] with its service framework, throttling, letters and network status.
//!
//! Module map:
//! * [`identity`] — Ed25519 key, PeerId, self-signed certificate, sealed key file.
//! * [`tls`] — rustls configs and the key-pinning certificate verifiers.
//! * [`transport`] — [`Connection`], streams, datagrams; [`transport::quic`],
//!   [`transport::tcp`] (yamux over TLS), [`transport::udp`] (the QUIC socket with packet
//!   hooks, shared with STUN and hole punching), `transport::bulk` (a TCP+TLS connection
//!   carrying one bulk stream, no multiplexer).
//! * [`frame`] — length-prefixed frames, an I/O-free bounded decoder.
//! * [`endpoint`] — listening, dialling, one connection per peer, routing to services;
//!   [`address_book`] where each peer was last heard of (bounded, ageing).
//! * [`service`] — the [`Service`] trait, namespaces, request/response, channels,
//!   datagrams, multicast; [`service::speed`] the speed-test service.
//! * [`throttle`] — token-bucket limits (global, per peer, per stream) and rate meters.
//! * [`mail`] — signed letters, sealed to the recipient's key for store-and-forward.
//! * [`status`] — online/offline, local addresses, change events.
//! * [`record`] — the signed address record a node publishes (I/O-free, bounded).
//! * [`discovery`] — the [`discovery::Discovery`] trait the connector consults.
//!
//! Siblings, one concern each, above this crate: `allpeers-hub-client` (the hub protocol
//! and client), `allpeers-nat` (connectivity discovery and the connector),
//! `allpeers-discovery` (DHT and LAN).

pub mod address_book;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod identity;
pub mod mail;
pub mod record;
pub mod service;
pub mod status;
pub mod throttle;
pub mod tls;
pub mod transport;

pub use endpoint::{Endpoint, EndpointConfig, EndpointEvent};
pub use error::NetError;
pub use identity::{Identity, IdentityError, KeyFile};
pub use service::{Context, Namespace, RemoteError, Service, ServiceError, ServiceFn};
pub use transport::{Address, Connection, PathKind, TransportKind};
