//! `allpeers-hub-client`: the hub protocol (shared with the hub server, as iroh-relay keeps
//! its protocol, client and server together) and the node's hub client.
//!
//! A hub is a meeting point for peers: registration of `name@hub`, a directory that resolves
//! names and PeerIds to certificates and current addresses, a presence line each online peer
//! keeps open, and a relay that splices a stream between two peers who agreed to it. The hub
//! binary (`allpeers-hub`) serves these; a node uses [`HubClient`].
//!
//! * [`proto`] — the messages and the three namespaces (registry requests, presence stream,
//!   relay stream), the signed name certificate, the signed directory answer and the hub
//!   records (a hub's own signed name, key and addresses) a home hub passes on.
//! * [`connectivity`] — `allpeers/hub-connectivity/1`: the hub's STUN addresses and the TCP
//!   reachability probe.
//! * [`mail`] — `allpeers/hub-mail/1`: what a node asks the hub's e-mail gateway (address,
//!   consent, notices, invitations); the hub serves it, decoding requests with `mail_check`
//!   (feature `checked`).
//! * [`names`] — the name policy (allowed characters, case folding).
//! * [`client`] — [`HubClient`]: connect to the home hub (address + pinned hub PeerId),
//!   register, resolve (answers checked), presence line with reconnect (exponential backoff
//!   with jitter), watch peers, request and accept relays.
//! * [`proxy`] — HTTP CONNECT and SOCKS5 client handshakes and a loopback forwarder so the
//!   endpoint's ordinary TCP dial goes through a proxy.
//! * [`pipe`] — byte pumps between a TCP socket and a service stream.
//!
//! **Relayed connections are ordinary connections.** The relay is a raw stream on each peer's
//! connection to the hub, spliced by the hub. Each peer bridges its end of it to a loopback
//! TCP socket: the requester's endpoint dials a one-shot loopback forwarder as if it were the
//! target's address, the target's hub client connects its end to its own endpoint's TCP
//! listener. The endpoint then runs the usual TLS 1.3 handshake with key pinning end to end,
//! and yamux over it, so the result is an ordinary [`Connection`](allpeers_net::Connection) kept by
//! the endpoint and routed to services; the hub only sees TLS records. The client announces
//! each bridge's loopback address to the endpoint before the handshake crosses it, so
//! `Connection::path()` says `Relayed` on both sides.

pub mod client;
pub mod connectivity;
pub mod mail;
#[cfg(feature = "checked")]
pub mod mail_check;
pub mod names;
pub mod pipe;
pub mod proto;
pub mod proxy;
pub mod watches;

pub use client::{
    AcceptAll, AcceptListed, HubClient, HubClientConfig, HubError, HubEvent, HubState, HubStatus,
    RefuseAll, RelayPolicy,
};
pub use proto::{
    Availability, DirectoryAnswer, DirectoryRecord, HubQuery, HubRecord, HubRecordError, MailItem,
    NameCertificate, PeerStatus, Query, SignedAnswer, SignedHubRecord,
};
pub use proxy::ProxyConfig;
pub use watches::WatchHolder;
