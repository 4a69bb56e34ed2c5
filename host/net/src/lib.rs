//! AllPeers networking: the user's identity (key pair, PeerId, certificate), mutually
//! authenticated transports (QUIC, TCP+TLS) behind one [`Connection`] type, the node's
//! [`Endpoint`] with its service framework, throttling and network status.
//!
//! Module map:
//! * [`identity`] — Ed25519 key, PeerId, self-signed certificate, sealed key file.
//! * [`tls`] — rustls configs and the key-pinning certificate verifiers.
//! * [`transport`] — [`Connection`], streams, datagrams; [`transport::quic`] and
//!   [`transport::tcp`] (yamux over TLS).
//! * [`frame`] — length-prefixed frames, an I/O-free bounded decoder.
//! * [`endpoint`] — listening, dialling, one connection per peer, routing to services.
//! * [`service`] — the [`Service`] trait, namespaces, request/response, channels,
//!   datagrams, multicast; [`service::speed`] the speed-test service.
//! * [`throttle`] — token-bucket limits (global, per peer, per stream) and rate meters.
//! * [`mail`] — signed letters, sealed to the recipient's key for store-and-forward.
//! * [`status`] — online/offline, local addresses, change events.
//! * [`connectivity`] — STUN client, NAT classification (RFC 5780), TCP reachability probe
//!   through the hub.
//! * [`connector`] — reaching a PeerId: direct, callback, hole punch (with birthday
//!   sockets against symmetric NATs), relay; upgrade from relayed to direct.
//! * [`discovery`] — signed address records on the Mainline DHT (BEP 44) and by LAN
//!   multicast: finding peers when their hub is unreachable.

pub mod connectivity;
pub mod connector;
pub mod discovery;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod hub;
pub mod identity;
pub mod mail;
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
