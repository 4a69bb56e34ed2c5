//! The endpoint: one per node (the seed's "network context").
//!
//! It holds the identity, listens on UDP (QUIC) and TCP (TLS + yamux), dials peers by PeerId
//! and address, accepts connections, keeps one connection per peer, and routes every
//! incoming stream to the service registered for the namespace its head names (like iroh's
//! router by ALPN, one level down: one ALPN, many service namespaces).
//!
//! **One connection per peer.** When a second live connection to the same peer appears, both
//! sides apply the same rule: if one side dialled both, the newer wins (it re-dialled); if
//! each side dialled one (simultaneous dial), the connection dialled by the smaller PeerId
//! wins — except that a connection over a relay always gives way to one that is not (the
//! connector's upgrade from relayed to direct). The loser is closed with
//! [`close_code::DUPLICATE`]; a relayed connection given up for a direct one, and the loser
//! of crossed dials, are retired only once the streams on it are done, so the services using
//! it never see the switch. A request that loses its connection retries on the winner.
//!
//! **Bulk streams.** [`Endpoint::open_bulk_stream`] opens a stream on a TCP+TLS connection of
//! its own, beside the peer's connection ([`crate::transport::bulk`]: no yamux copies), where
//! the peer's TCP listener is known to be reachable, or is likely to be: a peer reached
//! directly over QUIC, or that dialled us over TCP, with a TCP address on the same IP, tried
//! for a few round trips (QUIC at a 1,500-byte path moves about half what TCP+TLS does per CPU
//! second, and a yamux stream about three quarters, `docs/benchmarks.md`).
//! Such connections are not kept, carry one stream each and are routed like any stream.
//! Anywhere else it is an ordinary stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::task::JoinHandle;

use crate::address_book::AddressBook;
use crate::error::NetError;
use crate::frame::{DEFAULT_FRAME_LIMIT, FrameError};
use crate::identity::Identity;
use crate::service::wire::{self, ACK_LIMIT, HEAD_LIMIT};
use crate::service::{
    ChannelReceiver, ChannelSender, Context, ErrorCode, Namespace, RemoteError, Service,
    StreamKind, decode, encode,
};
use crate::throttle::Throttle;
use crate::tls;
use crate::transport::{
    Address, Connection, ConnectionError, Direction, Inner as ConnInner, PathKind, RecvStream,
    SendStream, StreamShared, TransportKind, bulk, close_code, quic, tcp, udp::HookedUdpSocket,
};

/// Endpoint settings. [`EndpointConfig::default`] listens on all interfaces, ephemeral ports.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// UDP address for QUIC (None: no QUIC).
    pub quic: Option<SocketAddr>,
    /// TCP address for TLS over TCP (None: no TCP listener; dialling TCP still works).
    pub tcp: Option<SocketAddr>,
    pub connect_timeout: Duration,
    /// Default time a request may take, reply included.
    pub request_timeout: Duration,
    /// Time a write may wait on a peer that does not read before the stream is reset.
    pub send_timeout: Duration,
    /// Time a peer has to send a stream's head and request.
    pub head_timeout: Duration,
    /// Streams handled at once per connection; more are refused (reset) with a log line.
    /// At least the transports' own caps (QUIC: 1024 open streams a peer may have; TCP: 200
    /// a well-behaved peer opens), so only a misbehaving peer or a lower setting meets it.
    pub max_inbound_streams: usize,
    /// Incoming handshakes in progress at once, per transport; more are refused.
    pub max_handshakes: usize,
    /// Most streams of each kind (bidi, uni) a remote may have open at once on one QUIC
    /// connection; further opens wait on QUIC flow control (they are not refused). Over TCP
    /// it also caps the streams this side opens at once (at most
    /// [`tcp::MAX_OUTBOUND_STREAMS`]); further opens wait. quinn sets up state for every
    /// stream a remote may open, so an endpoint holding many idle connections (the hub)
    /// takes a small value: ~190 KiB per idle QUIC connection at 1024, much less at 64.
    /// Default [`quic::MAX_STREAMS`] (1024), for bulk transfers.
    pub max_concurrent_streams: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            quic: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            max_inbound_streams: 1024,
            max_handshakes: 64,
            max_concurrent_streams: quic::MAX_STREAMS,
        }
    }
}

impl EndpointConfig {
    /// Loopback only, ephemeral ports (tests, benchmarks).
    pub fn loopback() -> Self {
        EndpointConfig {
            quic: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        }
    }
}

/// Connection changes, for presence and the local API.
#[derive(Debug, Clone)]
pub enum EndpointEvent {
    Connected {
        peer: PeerId,
        transport: TransportKind,
        direction: Direction,
    },
    Disconnected {
        peer: PeerId,
        reason: String,
    },
}

struct Inner {
    identity: Identity,
    peer_id: PeerId,
    config: EndpointConfig,
    quic: Option<quinn::Endpoint>,
    /// The QUIC socket's STUN side (answers to our STUN requests are taken out before quinn).
    quic_socket: Option<Arc<HookedUdpSocket>>,
    tcp_local: Option<SocketAddr>,
    tcp_connector: tokio_rustls::TlsConnector,
    /// TLS client side for bulk connections (the same identity, [`tls::BULK_ALPN`]).
    bulk_connector: tokio_rustls::TlsConnector,
    /// What bulk connections carried ([`Endpoint::bulk_stats`]).
    bulk: Arc<bulk::Totals>,
    /// TCP addresses where a bulk dial beside a QUIC connection failed lately.
    bulk_refused: Mutex<bulk::Refused>,
    /// TLS server side for TCP streams the connector punched (the listener has its own).
    tcp_acceptor: tokio_rustls::TlsAcceptor,
    services: RwLock<HashMap<Namespace, Arc<dyn Service>>>,
    conns: Mutex<HashMap<PeerId, Connection>>,
    conn_changed: Notify,
    addrs: Mutex<AddressBook>,
    /// Paths other than `Direct` announced for the next connection from or to a remote
    /// socket address (the hub client's relay bridges); taken when that connection is made.
    paths: Mutex<HashMap<SocketAddr, PathKind>>,
    /// Paths announced for any connection with a peer while the connector works on it
    /// (callback, hole punch); consulted after `paths`, cleared by the connector.
    peer_paths: Mutex<HashMap<PeerId, PathKind>>,
    /// quinn's client settings, for dialling from the connector's extra punch sockets.
    quic_client: Option<quinn::ClientConfig>,
    dial_locks: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>,
    throttle: Throttle,
    events: broadcast::Sender<EndpointEvent>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap().drain(..) {
            task.abort();
        }
        // Serving tasks hold connection clones: close the connections so they end.
        for (_, conn) in self.conns.get_mut().unwrap().drain() {
            conn.close(close_code::SHUTDOWN, "endpoint dropped");
        }
        if let Some(q) = &self.quic {
            q.close(close_code::SHUTDOWN.into(), b"endpoint closed");
        }
    }
}

/// The node's network endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint(Arc<Inner>);

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("peer_id", &self.0.peer_id)
            .field("addresses", &self.local_addresses())
            .finish()
    }
}

/// The path announced for a connection with `remote` ([`Endpoint::expect_path`]), else the
/// one announced for `peer` ([`Endpoint::expect_peer_path`]), else `Direct`.
fn take_path(inner: &Inner, remote: SocketAddr, peer: &PeerId) -> PathKind {
    let by_addr = inner.paths.lock().unwrap().remove(&remote);
    by_addr
        .or_else(|| inner.peer_paths.lock().unwrap().get(peer).copied())
        .unwrap_or(PathKind::Direct)
}

fn endpoint_err(e: impl std::fmt::Display) -> NetError {
    NetError::Endpoint(e.to_string())
}

impl Endpoint {
    /// Binds the listeners and starts accepting.
    pub async fn bind(identity: Identity, config: EndpointConfig) -> Result<Endpoint, NetError> {
        let server_tls = tls::server_config(&identity).map_err(endpoint_err)?;
        let client_tls = tls::client_config(&identity).map_err(endpoint_err)?;
        let bulk_tls = tls::bulk_client_config(&identity).map_err(endpoint_err)?;
        let listener_tls = tls::listener_config(&identity).map_err(endpoint_err)?;
        let quic_client = quic::client_config(client_tls.clone(), config.max_concurrent_streams)
            .map_err(endpoint_err)?;
        let quic_and_socket = match config.quic {
            Some(addr) => Some(
                quic::bind(
                    &identity,
                    addr,
                    quic::server_config(server_tls.clone(), config.max_concurrent_streams)
                        .map_err(endpoint_err)?,
                    quic_client.clone(),
                )
                .map_err(|e| endpoint_err(format!("cannot bind UDP {addr}: {e}")))?,
            ),
            None => None,
        };
        let (quic, quic_socket) = match quic_and_socket {
            Some((q, s)) => (Some(q), Some(s)),
            None => (None, None),
        };
        let tcp_listener = match config.tcp {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| endpoint_err(format!("cannot bind TCP {addr}: {e}")))?,
            ),
            None => None,
        };
        let tcp_local = match &tcp_listener {
            Some(l) => Some(l.local_addr().map_err(endpoint_err)?),
            None => None,
        };
        let peer_id = identity.peer_id();
        let quic_client = config.quic.map(|_| quic_client);
        let inner = Arc::new(Inner {
            identity,
            peer_id,
            config,
            quic: quic.clone(),
            quic_socket,
            tcp_local,
            tcp_connector: tokio_rustls::TlsConnector::from(Arc::new(client_tls)),
            bulk_connector: tokio_rustls::TlsConnector::from(Arc::new(bulk_tls)),
            bulk: Default::default(),
            bulk_refused: Default::default(),
            tcp_acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server_tls.clone())),
            services: Default::default(),
            conns: Default::default(),
            conn_changed: Notify::new(),
            addrs: Mutex::new(AddressBook::new(Default::default())),
            paths: Default::default(),
            peer_paths: Default::default(),
            quic_client,
            dial_locks: Default::default(),
            throttle: Throttle::default(),
            events: broadcast::channel(256).0,
            tasks: Default::default(),
            closed: AtomicBool::new(false),
        });
        let mut tasks = Vec::new();
        if let Some(q) = quic {
            tasks.push(tokio::spawn(quic_accept_loop(Arc::downgrade(&inner), q)));
        }
        if let Some(l) = tcp_listener {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(listener_tls));
            tasks.push(tokio::spawn(tcp_accept_loop(
                Arc::downgrade(&inner),
                l,
                acceptor,
            )));
        }
        inner.tasks.lock().unwrap().extend(tasks);
        tracing::info!(peer = ?peer_id, quic = ?inner.quic.as_ref().and_then(|q| q.local_addr().ok()), tcp = ?tcp_local, "endpoint listening");
        Ok(Endpoint(inner))
    }

    /// The QUIC socket (None without QUIC), for protocols that must share it: STUN, whose
    /// mapped address is then the QUIC socket's own public address, and hole punching.
    pub fn quic_socket(&self) -> Option<Arc<HookedUdpSocket>> {
        self.0.quic_socket.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        self.0.peer_id
    }

    pub fn identity(&self) -> &Identity {
        &self.0.identity
    }

    /// The addresses the endpoint listens on.
    pub fn local_addresses(&self) -> Vec<Address> {
        let mut out = Vec::new();
        if let Some(addr) = self.0.quic.as_ref().and_then(|q| q.local_addr().ok()) {
            out.push(Address::quic(addr));
        }
        if let Some(addr) = self.0.tcp_local {
            out.push(Address::tcp(addr));
        }
        out
    }

    pub fn local_address(&self, transport: TransportKind) -> Option<Address> {
        self.local_addresses()
            .into_iter()
            .find(|a| a.transport == transport)
    }

    pub fn throttle(&self) -> &Throttle {
        &self.0.throttle
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.0.config
    }

    pub fn events(&self) -> broadcast::Receiver<EndpointEvent> {
        self.0.events.subscribe()
    }

    /// Registers (or replaces) the service of a namespace.
    pub fn register(&self, namespace: Namespace, service: impl Service) {
        self.register_arc(namespace, Arc::new(service));
    }

    pub fn register_arc(&self, namespace: Namespace, service: Arc<dyn Service>) {
        self.0.services.write().unwrap().insert(namespace, service);
    }

    pub fn unregister(&self, namespace: &Namespace) {
        self.0.services.write().unwrap().remove(namespace);
    }

    /// Remembers an address of a peer (tried in the order added, QUIC before TCP; bounded
    /// and ageing, see [`crate::address_book`]).
    pub fn add_peer_address(&self, peer: PeerId, address: Address) {
        self.0
            .addrs
            .lock()
            .unwrap()
            .add(peer, address, Instant::now());
    }

    pub fn peer_addresses(&self, peer: &PeerId) -> Vec<Address> {
        self.0.addrs.lock().unwrap().get(peer, Instant::now())
    }

    /// The live connection to a peer, if any.
    pub fn connection(&self, peer: &PeerId) -> Option<Connection> {
        self.0
            .conns
            .lock()
            .unwrap()
            .get(peer)
            .filter(|c| !c.is_closed())
            .cloned()
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.0
            .conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| !c.is_closed())
            .cloned()
            .collect()
    }

    /// Announces that the next connection made from or to the remote socket address `remote`
    /// goes over `path` (not `Direct`): the hub client calls it for a relay bridge's loopback
    /// address before the bridge carries the TLS handshake, so the connection the endpoint
    /// builds reports [`PathKind::Relayed`]. Taken by that connection; see
    /// [`Endpoint::forget_path`] for when none comes.
    pub fn expect_path(&self, remote: SocketAddr, path: PathKind) {
        self.0.paths.lock().unwrap().insert(remote, path);
    }

    /// Drops an announcement of [`Endpoint::expect_path`] no connection took.
    pub fn forget_path(&self, remote: &SocketAddr) {
        self.0.paths.lock().unwrap().remove(remote);
    }

    /// Announces the path of connections with `peer` made from now on, whoever dials (the
    /// connector, while it runs a callback or a hole punch); `None` ends the announcement.
    pub fn expect_peer_path(&self, peer: PeerId, path: Option<PathKind>) {
        let mut paths = self.0.peer_paths.lock().unwrap();
        match path {
            Some(p) => paths.insert(peer, p),
            None => paths.remove(&peer),
        };
    }

    /// Waits up to `timeout` for a live connection to `peer` (dialled by either side).
    pub async fn wait_connection(&self, peer: &PeerId, timeout: Duration) -> Option<Connection> {
        let wait = async {
            loop {
                let notified = self.0.conn_changed.notified();
                if let Some(c) = self.connection(peer) {
                    return c;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Runs `attempt` again when it fails because its connection was lost, at most
    /// [`LOST_CONNECTION_TRIES`] times in all. A crossed dial's loser closed by the duplicate
    /// rule, or a restarted peer, is replaced by a connection that may be arriving from the
    /// other side: each retry first waits (briefly) for a live one — at once if the stream
    /// failed and its connection lives on. The work must tolerate being repeated.
    pub async fn retry_when_connection_lost<T, F, Fut>(
        &self,
        peer: PeerId,
        what: &str,
        mut attempt: F,
    ) -> Result<T, NetError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, NetError>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(e) if e.is_connection_lost() && tries < LOST_CONNECTION_TRIES => {
                    tracing::debug!(?peer, "{what} lost its connection, trying again: {e}");
                    tries += 1;
                    self.wait_connection(&peer, RECONNECT_WAIT).await;
                }
                other => return other,
            }
        }
    }

    /// Closes every connection and stops listening.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        for task in self.0.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        for conn in self.0.conns.lock().unwrap().drain().map(|(_, c)| c) {
            conn.close(close_code::SHUTDOWN, "endpoint closed");
        }
        if let Some(q) = &self.0.quic {
            q.close(close_code::SHUTDOWN.into(), b"endpoint closed");
        }
    }

    /// Closes and waits (bounded) for QUIC to tell the peers.
    pub async fn shutdown(&self) {
        self.close();
        if let Some(q) = &self.0.quic {
            let _ = tokio::time::timeout(Duration::from_secs(2), q.wait_idle()).await;
        }
    }

    /// The connection to `peer`: the live one, or a new one to a known address.
    pub async fn connect(&self, peer: PeerId) -> Result<Connection, NetError> {
        if let Some(c) = self.connection(&peer) {
            return Ok(c);
        }
        if self.0.closed.load(Ordering::SeqCst) {
            return Err(NetError::EndpointClosed);
        }
        self.with_dial_lock(peer, self.connect_locked(peer)).await
    }

    /// Runs a dial to `peer` holding the peer's dial lock, so one side never dials a peer twice
    /// at once: two connections dialled by one side are told apart by which came last, and
    /// the two ends can see a different order and each keep the one the other closed.
    async fn with_dial_lock(
        &self,
        peer: PeerId,
        dial: impl Future<Output = Result<Connection, NetError>>,
    ) -> Result<Connection, NetError> {
        let lock = self
            .0
            .dial_locks
            .lock()
            .unwrap()
            .entry(peer)
            .or_default()
            .clone();
        let guard = lock.lock().await;
        let result = match self.connection(&peer) {
            Some(c) => Ok(c),
            None => dial.await,
        };
        drop(guard);
        // The last one out removes the lock, so the map holds only dials in progress.
        let mut locks = self.0.dial_locks.lock().unwrap();
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&peer);
        }
        result
    }

    /// [`Endpoint::connect`] once it holds the peer's dial lock.
    async fn connect_locked(&self, peer: PeerId) -> Result<Connection, NetError> {
        let addrs = self.peer_addresses(&peer);
        if addrs.is_empty() {
            return Err(NetError::NoAddress(peer));
        }
        let mut last = None;
        for addr in addrs {
            match self.dial(peer, addr).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(?peer, %addr, "dial failed: {e}");
                    // Someone answering as another key is worth reporting over a timeout.
                    if !matches!(last, Some(NetError::WrongPeer { .. })) {
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or(NetError::NoAddress(peer)))
    }

    /// Dials `peer` at `address` (and remembers the address). Returns the connection kept
    /// for the peer, which is an existing live one if there is one.
    pub async fn connect_addr(
        &self,
        peer: PeerId,
        address: Address,
    ) -> Result<Connection, NetError> {
        self.add_peer_address(peer, address);
        if let Some(c) = self.connection(&peer) {
            return Ok(c);
        }
        let relayed = self.0.paths.lock().unwrap().get(&address.addr) == Some(&PathKind::Relayed);
        if relayed {
            // Told apart from a direct connection by its path, not by which came last: a relay
            // set up while a direct dial is under way need not wait for it.
            return self.dial(peer, address).await;
        }
        self.with_dial_lock(peer, self.dial(peer, address)).await
    }

    async fn dial(&self, peer: PeerId, address: Address) -> Result<Connection, NetError> {
        let conn = self.handshake(peer, address, None).await?;
        Ok(self.adopt(conn))
    }

    /// Keeps a connection made by [`Endpoint::handshake`] (the duplicate rule applies);
    /// returns the connection kept for its peer.
    pub fn adopt(&self, conn: Connection) -> Connection {
        adopt(&self.0, conn)
    }

    /// Dials `peer` at `address` and completes the handshake, without keeping the
    /// connection: the connector races several and keeps the first ([`Endpoint::adopt`]).
    /// `path` labels the connection (default: what was announced, else `Direct`).
    pub async fn handshake(
        &self,
        peer: PeerId,
        address: Address,
        path: Option<PathKind>,
    ) -> Result<Connection, NetError> {
        let label = || path.unwrap_or_else(|| take_path(&self.0, address.addr, &peer));
        if peer == self.0.peer_id {
            return Err(NetError::Connect {
                peer,
                reason: "that is this node".into(),
            });
        }
        let timeout = self.0.config.connect_timeout;
        let fail = |reason: String| classify_dial_error(peer, address, reason);
        let conn = match address.transport {
            TransportKind::Quic => {
                let q = self.0.quic.as_ref().ok_or_else(|| NetError::Connect {
                    peer,
                    reason: "QUIC is off on this endpoint".into(),
                })?;
                let connecting = q
                    .connect(address.addr, &peer.to_string())
                    .map_err(|e| fail(e.to_string()))?;
                let conn = tokio::time::timeout(timeout, connecting)
                    .await
                    .map_err(|_| NetError::Timeout(timeout))?
                    .map_err(|e| fail(e.to_string()))?;
                let remote =
                    quic_remote_peer(&conn).ok_or_else(|| fail("no certificate".into()))?;
                if remote != peer {
                    return Err(NetError::WrongPeer {
                        expected: peer,
                        addr: address.to_string(),
                    });
                }
                Connection::new(
                    ConnInner::Quic(conn),
                    peer,
                    address.addr,
                    label(),
                    Direction::Outbound,
                    self.stream_shared(&peer),
                )
            }
            TransportKind::Tcp => {
                let path = label();
                let dial = async {
                    let tcp = tokio::net::TcpStream::connect(address.addr)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    self.handshake_tcp_stream(tcp, peer, true, path).await
                };
                tokio::time::timeout(timeout, dial)
                    .await
                    .map_err(|_| NetError::Timeout(timeout))??
            }
        };
        Ok(conn)
    }

    /// Runs TLS over a connected TCP stream — our dial's, or one both sides opened at once (a
    /// TCP hole punch: neither side listened) — as the client when `as_client` (the peers agree
    /// on it), and checks the peer's key either way. The connection is not kept yet
    /// ([`Endpoint::adopt`]).
    pub async fn handshake_tcp_stream(
        &self,
        tcp: tokio::net::TcpStream,
        peer: PeerId,
        as_client: bool,
        path: PathKind,
    ) -> Result<Connection, NetError> {
        let remote = tcp.peer_addr().map_err(endpoint_err)?;
        let address = Address::tcp(remote);
        let fail = |reason: String| classify_dial_error(peer, address, reason);
        let _ = tcp.set_nodelay(true);
        let timeout = self.0.config.connect_timeout;
        let handshake = async {
            let tls: tokio_rustls::TlsStream<tokio::net::TcpStream> = if as_client {
                self.0
                    .tcp_connector
                    .connect(tls::server_name(&peer), tcp)
                    .await
                    .map_err(|e| fail(tls_io_error(&e)))?
                    .into()
            } else {
                self.0
                    .tcp_acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| fail(tls_io_error(&e)))?
                    .into()
            };
            check_tls_peer(tls.get_ref().1, peer, address, tls::ALPN)?;
            Ok::<_, NetError>(tls)
        };
        let tls = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| NetError::Timeout(timeout))??;
        Ok(Connection::new(
            ConnInner::Tcp(tcp::Mux::start(
                tls,
                as_client,
                self.0.config.max_concurrent_streams as usize,
            )),
            peer,
            remote,
            path,
            if as_client {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            self.stream_shared(&peer),
        ))
    }

    /// Dials `peer` over QUIC from `socket` instead of the endpoint's own socket (a hole
    /// punched from one of the connector's extra sockets, whose NAT mapping is the one the
    /// peer reached). A client-only quinn endpoint drives the socket; it lives as long as
    /// the connection. The connection is not kept yet ([`Endpoint::adopt`]).
    pub async fn handshake_from_socket(
        &self,
        socket: std::net::UdpSocket,
        peer: PeerId,
        addr: SocketAddr,
        path: PathKind,
    ) -> Result<Connection, NetError> {
        let client = self
            .0
            .quic_client
            .clone()
            .ok_or_else(|| NetError::Connect {
                peer,
                reason: "QUIC is off on this endpoint".into(),
            })?;
        let fail = |reason: String| classify_dial_error(peer, Address::quic(addr), reason);
        socket
            .set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        let mut aux = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| fail(e.to_string()))?;
        aux.set_default_client_config(client);
        let timeout = self.0.config.connect_timeout;
        let connecting = aux
            .connect(addr, &peer.to_string())
            .map_err(|e| fail(e.to_string()))?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| NetError::Timeout(timeout))?
            .map_err(|e| fail(e.to_string()))?;
        if quic_remote_peer(&conn) != Some(peer) {
            conn.close(close_code::PROTOCOL.into(), b"wrong peer");
            return Err(NetError::WrongPeer {
                expected: peer,
                addr: Address::quic(addr).to_string(),
            });
        }
        // quinn's endpoint driver runs while a connection of it lives; the handle can go.
        drop(aux);
        Ok(Connection::new(
            ConnInner::Quic(conn),
            peer,
            addr,
            path,
            Direction::Outbound,
            self.stream_shared(&peer),
        ))
    }

    fn stream_shared(&self, peer: &PeerId) -> Arc<StreamShared> {
        stream_shared(&self.0, peer)
    }

    /// Sends a request and waits for the reply (default timeout).
    pub async fn request<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        peer: PeerId,
        namespace: &Namespace,
        request: &Req,
    ) -> Result<Resp, NetError> {
        self.request_timeout(peer, namespace, request, self.0.config.request_timeout)
            .await
    }

    pub async fn request_timeout<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        peer: PeerId,
        namespace: &Namespace,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let body = encode(request)?;
        let reply = self
            .request_bytes(peer, namespace, body, DEFAULT_FRAME_LIMIT, timeout)
            .await?;
        decode(&reply)
    }

    /// A request with raw bodies. A request whose connection is lost is sent again
    /// ([`Endpoint::retry_when_connection_lost`]: services should tolerate a repeated request).
    pub async fn request_bytes(
        &self,
        peer: PeerId,
        namespace: &Namespace,
        body: Bytes,
        max_reply: usize,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        let attempt = self.retry_when_connection_lost(peer, "request", || async {
            let conn = self.connect(peer).await?;
            request_on(&conn, namespace, &body, max_reply).await
        });
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| NetError::Timeout(timeout))?
            .map_err(|e| match e {
                NetError::Remote {
                    code: ErrorCode::UnknownNamespace,
                    ..
                } => NetError::UnknownNamespace {
                    peer,
                    namespace: namespace.to_string(),
                },
                other => other,
            })
    }

    /// Sends one request to many peers at once; one result per peer, in order.
    pub async fn multicast<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        peers: &[PeerId],
        namespace: &Namespace,
        request: &Req,
        timeout: Duration,
    ) -> Vec<(PeerId, Result<Resp, NetError>)> {
        let body = match encode(request) {
            Ok(b) => b,
            Err(e) => return peers.iter().map(|p| (*p, Err(e.clone()))).collect(),
        };
        let futures = peers.iter().map(|peer| {
            let body = body.clone();
            async move {
                let result = self
                    .request_bytes(*peer, namespace, body, DEFAULT_FRAME_LIMIT, timeout)
                    .await
                    .and_then(|reply| decode(&reply));
                (*peer, result)
            }
        });
        futures::future::join_all(futures).await
    }

    /// Opens a one-way channel of messages to a peer's service.
    pub async fn open_channel(
        &self,
        peer: PeerId,
        namespace: &Namespace,
    ) -> Result<ChannelSender, NetError> {
        let (send, _recv) = self
            .open_acked(peer, namespace, StreamKind::Channel)
            .await?;
        Ok(ChannelSender::new(
            send,
            DEFAULT_FRAME_LIMIT,
            self.0.config.send_timeout,
        ))
    }

    /// Opens a raw stream to a peer's service.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        namespace: &Namespace,
    ) -> Result<(SendStream, RecvStream), NetError> {
        self.open_acked(peer, namespace, StreamKind::Stream).await
    }

    async fn open_acked(
        &self,
        peer: PeerId,
        namespace: &Namespace,
        kind: StreamKind,
    ) -> Result<(SendStream, RecvStream), NetError> {
        let timeout = self.0.config.request_timeout;
        let open = async {
            let conn = self.connect(peer).await?;
            let (send, recv) = conn.open_bi().await?;
            acknowledged(send, recv, peer, namespace, kind).await
        };
        tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| NetError::Timeout(timeout))?
    }

    /// Opens a raw stream to a peer's service for a bulk transfer: on a TCP+TLS connection of
    /// its own ([`crate::transport::bulk`]) when our connection to the peer is a direct TCP
    /// dial — its address is then known to answer — or another direct connection (QUIC, or the
    /// peer's TCP dial of us) from an IP where the peer has a TCP address (tried for
    /// [`BULK_TRY_RTTS`] round trips, and not again for
    /// [`bulk::RETRY_AFTER`] once it failed); otherwise, or if that fails, on the connection like
    /// [`Endpoint::open_stream`]. The stream's connection is not kept: it closes when both
    /// halves of the stream are dropped.
    pub async fn open_bulk_stream(
        &self,
        peer: PeerId,
        namespace: &Namespace,
    ) -> Result<(SendStream, RecvStream), NetError> {
        let conn = self.connect(peer).await?;
        if let Some((address, bound)) = self.bulk_address(&conn) {
            let attempt = self.open_bulk_stream_at(peer, address, namespace);
            let opened = match bound {
                None => attempt.await,
                Some(bound) => tokio::time::timeout(bound, attempt)
                    .await
                    .unwrap_or(Err(NetError::Timeout(bound))),
            };
            match opened {
                Ok(stream) => return Ok(stream),
                Err(e @ (NetError::UnknownNamespace { .. } | NetError::Remote { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    if bound.is_some() {
                        self.0
                            .bulk_refused
                            .lock()
                            .unwrap()
                            .refused(address.addr, Instant::now());
                    }
                    tracing::debug!(?peer, %address, "no bulk connection, a stream on the connection instead: {e}")
                }
            }
        }
        self.open_stream(peer, namespace).await
    }

    /// Where a bulk connection to the peer of `conn` may be dialled, and for how long at most
    /// when the peer is already reached another way (`None`: its address is known to answer).
    fn bulk_address(&self, conn: &Connection) -> Option<(Address, Option<Duration>)> {
        // A callback is our dial of the peer's listener too (the connector's label for a dial
        // the peer asked for); a punched or relayed connection says nothing of a listener.
        if !matches!(conn.path(), PathKind::Direct | PathKind::Callback) {
            return None;
        }
        match (conn.transport(), conn.direction()) {
            (TransportKind::Tcp, Direction::Outbound) => {
                Some((Address::tcp(conn.remote_addr()), None))
            }
            // The peer dialled our TCP listener, or we are on QUIC: its own listener may answer too.
            (TransportKind::Tcp, Direction::Inbound) | (TransportKind::Quic, _) => {
                let ip = conn.remote_addr().ip().to_canonical();
                let now = Instant::now();
                let known = self.peer_addresses(&conn.remote_peer());
                let refused = self.0.bulk_refused.lock().unwrap();
                let address = known.into_iter().find(|a| {
                    a.transport == TransportKind::Tcp
                        && a.addr.ip().to_canonical() == ip
                        && !refused.is_refused(a.addr, now)
                })?;
                let rtt = conn
                    .stats()
                    .rtt_ms
                    .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms / 1000.0));
                let bound = (rtt * BULK_TRY_RTTS)
                    .max(BULK_TRY_MIN)
                    .min(self.0.config.connect_timeout);
                Some((address, Some(bound)))
            }
        }
    }

    /// Dials a bulk connection to `peer` at `address` (TCP) and opens its one stream to
    /// `namespace`.
    pub async fn open_bulk_stream_at(
        &self,
        peer: PeerId,
        address: Address,
        namespace: &Namespace,
    ) -> Result<(SendStream, RecvStream), NetError> {
        if address.transport != TransportKind::Tcp {
            return Err(NetError::Connect {
                peer,
                reason: "bulk connections are TCP".into(),
            });
        }
        let fail = |reason: String| classify_dial_error(peer, address, reason);
        let timeout = self.0.config.connect_timeout;
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(address.addr)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let tls: tokio_rustls::TlsStream<tokio::net::TcpStream> = self
                .0
                .bulk_connector
                .connect(tls::server_name(&peer), tcp)
                .await
                .map_err(|e| fail(tls_io_error(&e)))?
                .into();
            check_tls_peer(tls.get_ref().1, peer, address, tls::BULK_ALPN)?;
            Ok::<_, NetError>(tls)
        };
        let tls = tokio::time::timeout(timeout, dial)
            .await
            .map_err(|_| NetError::Timeout(timeout))??;
        let conn = Connection::new(
            ConnInner::Bulk(Box::new(bulk::Line::new(tls))),
            peer,
            address.addr,
            PathKind::Direct,
            Direction::Outbound,
            bulk_stream_shared(&self.0, &peer),
        );
        let (send, recv) = conn.take_bulk_stream().expect("a new bulk connection");
        let timeout = self.0.config.request_timeout;
        let stream = tokio::time::timeout(
            timeout,
            acknowledged(send, recv, peer, namespace, StreamKind::Stream),
        )
        .await
        .map_err(|_| NetError::Timeout(timeout))??;
        self.0.bulk.dialled();
        Ok(stream)
    }

    /// What this endpoint's bulk connections ([`Endpoint::open_bulk_stream`]) carried since
    /// it started.
    pub fn bulk_stats(&self) -> crate::transport::BulkStats {
        self.0.bulk.stats()
    }

    /// Sends a datagram to a peer's service (unreliable over QUIC).
    pub async fn send_datagram<M: Serialize + ?Sized>(
        &self,
        peer: PeerId,
        namespace: &Namespace,
        message: &M,
    ) -> Result<(), NetError> {
        let conn = self.connect(peer).await?;
        let body = encode(message)?;
        conn.send_datagram(wire::encode_datagram(namespace, &body))
            .await
            .map_err(Into::into)
    }
}

/// Sends a new stream's head and waits for the service's acknowledgement.
async fn acknowledged(
    mut send: SendStream,
    mut recv: RecvStream,
    peer: PeerId,
    namespace: &Namespace,
    kind: StreamKind,
) -> Result<(SendStream, RecvStream), NetError> {
    send.write_frame(&wire::encode_head(namespace, kind)?, HEAD_LIMIT)
        .await?;
    let ack = recv
        .read_frame(ACK_LIMIT)
        .await?
        .ok_or_else(|| ConnectionError::Stream("refused without a reply".into()))?;
    match wire::decode_reply(ack)? {
        Ok(_) => Ok((send, recv)),
        Err(e) if e.code == ErrorCode::UnknownNamespace => Err(NetError::UnknownNamespace {
            peer,
            namespace: namespace.to_string(),
        }),
        Err(e) => Err(NetError::Remote {
            code: e.code,
            message: e.message,
        }),
    }
}

async fn request_on(
    conn: &Connection,
    namespace: &Namespace,
    body: &[u8],
    max_reply: usize,
) -> Result<Bytes, NetError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let head = wire::encode_head(namespace, StreamKind::Request)?;
    // Head and request in one write: one round trip for the whole exchange.
    let mut out = crate::frame::encode_frame(&head, HEAD_LIMIT)?.to_vec();
    out.extend_from_slice(&crate::frame::encode_frame(
        body,
        crate::frame::MAX_FRAME_LIMIT,
    )?);
    send.write_all(&out).await?;
    send.finish().await?;
    let reply = recv
        .read_frame(max_reply.saturating_add(1))
        .await?
        .ok_or_else(|| ConnectionError::Stream("the stream ended without a reply".into()))?;
    match wire::decode_reply(reply)? {
        Ok(body) => Ok(body),
        Err(e) => Err(NetError::Remote {
            code: e.code,
            message: e.message,
        }),
    }
}

/// After a TLS handshake over TCP: our protocol version, and the key of the peer we meant.
fn check_tls_peer(
    session: &rustls::CommonState,
    peer: PeerId,
    address: Address,
    alpn: &[u8],
) -> Result<(), NetError> {
    if session.alpn_protocol() != Some(alpn) {
        return Err(classify_dial_error(
            peer,
            address,
            "the peer speaks another protocol version".into(),
        ));
    }
    if tls::remote_peer_id(session.peer_certificates()) != Some(peer) {
        return Err(NetError::WrongPeer {
            expected: peer,
            addr: address.to_string(),
        });
    }
    Ok(())
}

fn classify_dial_error(peer: PeerId, address: Address, reason: String) -> NetError {
    if reason.contains("WrongPeer") || reason.contains("not the PeerId dialled") {
        NetError::WrongPeer {
            expected: peer,
            addr: address.to_string(),
        }
    } else {
        NetError::Connect { peer, reason }
    }
}

fn tls_io_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => format!("{tls:?}"),
        None => e.to_string(),
    }
}

fn quic_remote_peer(conn: &quinn::Connection) -> Option<PeerId> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::remote_peer_id(Some(&certs))
}

fn stream_shared(inner: &Inner, peer: &PeerId) -> Arc<StreamShared> {
    StreamShared::new(
        inner.throttle.global().clone(),
        inner.throttle.peer(peer),
        None,
    )
}

/// A bulk connection's: its streams count into the endpoint's bulk totals as well.
fn bulk_stream_shared(inner: &Inner, peer: &PeerId) -> Arc<StreamShared> {
    StreamShared::new(
        inner.throttle.global().clone(),
        inner.throttle.peer(peer),
        Some(inner.bulk.clone()),
    )
}

/// Who dialled a connection.
fn dialer(local: PeerId, conn: &Connection) -> PeerId {
    match conn.direction() {
        Direction::Outbound => local,
        Direction::Inbound => conn.remote_peer(),
    }
}

/// The duplicate rule, pure: with a live connection dialled by `existing` and a new one
/// dialled by `new`, between `local` and `remote`, is the new one kept? Both ends compute
/// the same answer: a side that dialled twice re-dialled (newer wins); crossed dials keep the
/// one dialled by the smaller PeerId.
pub fn keep_new_connection(local: PeerId, remote: PeerId, existing: PeerId, new: PeerId) -> bool {
    if existing == new {
        true
    } else {
        new == local.min(remote)
    }
}

/// Bulk connections ([`Endpoint::open_bulk_stream`]) open at once from all peers together;
/// more are refused (the dialler then uses a stream on its connection).
const MAX_BULK_CONNECTIONS: usize = 64;

/// A bulk dial beside a QUIC connection is given this many round trips of that connection (a
/// TCP and a TLS handshake take two or three)...
const BULK_TRY_RTTS: u32 = 8;
/// ...and at least this long (a LAN's round trip says little of a busy host's accept).
const BULK_TRY_MIN: Duration = Duration::from_millis(500);

/// Tries work gets when its connection is lost under it
/// ([`Endpoint::retry_when_connection_lost`]).
pub const LOST_CONNECTION_TRIES: u32 = 3;

/// How long a retry waits for the replacing connection to arrive from the other side.
const RECONNECT_WAIT: Duration = Duration::from_millis(500);

/// Longest a superseded connection stays open for the streams still running on it.
const RETIRE_GRACE: Duration = Duration::from_secs(60);

/// Adds a new connection; returns the one kept for its peer. Serves the new connection's
/// streams either way.
fn adopt(inner: &Arc<Inner>, conn: Connection) -> Connection {
    let peer = conn.remote_peer();
    let local = inner.peer_id;
    let (winner, loser) = {
        let mut conns = inner.conns.lock().unwrap();
        match conns.get(&peer) {
            Some(existing) if !existing.is_closed() => {
                let existing_relayed = existing.path() == PathKind::Relayed;
                let new_relayed = conn.path() == PathKind::Relayed;
                // Not relayed beats relayed (the upgrade); otherwise the dialler rule.
                let new_wins = if existing_relayed != new_relayed {
                    existing_relayed
                } else {
                    keep_new_connection(local, peer, dialer(local, existing), dialer(local, &conn))
                };
                if new_wins {
                    let old = conns.insert(peer, conn.clone());
                    (conn.clone(), old)
                } else {
                    (existing.clone(), Some(conn.clone()))
                }
            }
            _ => {
                conns.insert(peer, conn.clone());
                (conn.clone(), None)
            }
        }
    };
    spawn_serve(inner, conn.clone());
    if let Some(loser) = loser {
        tracing::debug!(
            ?peer,
            kept = winner.id(),
            closed = loser.id(),
            "duplicate connection"
        );
        // Whichever way the two formed (an upgrade from a relay, dials that crossed, or one side
        // dialling twice — its connector and an area's dial racing as the peer comes back), either
        // end may have begun an exchange on the loser already: let the exchanges running on it
        // finish, and open new ones on the winner. A loser that is in fact stale (the peer
        // restarted) is poked, so its reset arrives at once and its streams fail as they would
        // have; a dead TCP one was closed by the peer's kernel already.
        if loser.transport() == TransportKind::Quic && loser.path() != PathKind::Relayed {
            let l = loser.clone();
            tokio::spawn(async move {
                let _ = l.send_datagram(Bytes::new()).await;
            });
        }
        tokio::spawn(async move {
            loser
                .close_when_idle(RETIRE_GRACE, close_code::DUPLICATE, "superseded")
                .await;
        });
        // A stale winner (the peer restarted) is reset at once by the peer's endpoint when it
        // sees a packet: poke it.
        if winner.transport() == TransportKind::Quic && winner.id() != conn.id() {
            let w = winner.clone();
            tokio::spawn(async move {
                let _ = w.send_datagram(Bytes::new()).await;
            });
        }
    }
    if winner.id() == conn.id() {
        tracing::info!(?peer, transport = ?conn.transport(), direction = ?conn.direction(), addr = %conn.remote_addr(), "connected");
        let _ = inner.events.send(EndpointEvent::Connected {
            peer,
            transport: conn.transport(),
            direction: conn.direction(),
        });
    }
    inner.conn_changed.notify_waiters();
    winner
}

fn spawn_serve(inner: &Arc<Inner>, conn: Connection) {
    let weak = Arc::downgrade(inner);
    let max = inner.config.max_inbound_streams;
    tokio::spawn(serve_streams(weak.clone(), conn.clone(), max));
    tokio::spawn(serve_datagrams(weak.clone(), conn.clone()));
    tokio::spawn(async move {
        let reason = conn.closed().await;
        let Some(inner) = weak.upgrade() else { return };
        let peer = conn.remote_peer();
        let removed = {
            let mut conns = inner.conns.lock().unwrap();
            if conns.get(&peer).map(|c| c.id()) == Some(conn.id()) {
                conns.remove(&peer);
                true
            } else {
                false
            }
        };
        if removed {
            tracing::info!(?peer, %reason, "disconnected");
            let _ = inner
                .events
                .send(EndpointEvent::Disconnected { peer, reason });
        } else {
            tracing::debug!(?peer, %reason, "connection closed");
        }
        inner.conn_changed.notify_waiters();
    });
}

async fn serve_streams(weak: Weak<Inner>, conn: Connection, max: usize) {
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return,
        };
        let Some(inner) = weak.upgrade() else { return };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = conn.clone();
                tokio::spawn(async move {
                    handle_stream(&inner, conn, send, recv).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(peer = ?conn.remote_peer(), "stream refused: {max} streams already in progress on this connection");
                send.reset(close_code::PROTOCOL);
                recv.stop(close_code::PROTOCOL);
            }
        }
    }
}

async fn serve_datagrams(weak: Weak<Inner>, conn: Connection) {
    loop {
        let Ok(data) = conn.read_datagram().await else {
            return;
        };
        if data.is_empty() {
            continue; // a liveness poke
        }
        let Some(inner) = weak.upgrade() else { return };
        let Some((namespace, body)) = wire::decode_datagram(&data) else {
            tracing::warn!(peer = ?conn.remote_peer(), "malformed datagram dropped");
            continue;
        };
        let service = inner.services.read().unwrap().get(&namespace).cloned();
        match service {
            Some(s) if body.len() <= s.max_message_size() => s.datagram(
                Context {
                    peer: conn.remote_peer(),
                    namespace,
                    connection: conn.clone(),
                },
                body,
            ),
            Some(_) => {
                tracing::warn!(peer = ?conn.remote_peer(), %namespace, "datagram over the service's limit dropped")
            }
            None => {
                tracing::debug!(peer = ?conn.remote_peer(), %namespace, "datagram for no service dropped")
            }
        }
    }
}

/// Handles one inbound stream: head, then the exchange its kind names. A malformed or
/// slow stream is closed with a logged reason; the connection carries on.
async fn handle_stream(
    inner: &Arc<Inner>,
    conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let peer = conn.remote_peer();
    let head_timeout = inner.config.head_timeout;
    let send_timeout = inner.config.send_timeout;
    let head = match tokio::time::timeout(head_timeout, recv.read_frame(HEAD_LIMIT)).await {
        Ok(Ok(Some(frame))) => match decode::<wire::Head>(&frame) {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(?peer, "stream closed: bad head: {e}");
                send.reset(close_code::PROTOCOL);
                recv.stop(close_code::PROTOCOL);
                return;
            }
        },
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(?peer, "stream closed: bad head: {e}");
            send.reset(close_code::PROTOCOL);
            recv.stop(close_code::PROTOCOL);
            return;
        }
        Err(_) => {
            tracing::warn!(?peer, "stream closed: no head within {head_timeout:?}");
            send.reset(close_code::PROTOCOL);
            recv.stop(close_code::PROTOCOL);
            return;
        }
    };
    let service = inner.services.read().unwrap().get(&head.namespace).cloned();
    let ctx = Context {
        peer,
        namespace: head.namespace.clone(),
        connection: conn.clone(),
    };
    let refusal = match &service {
        None => Some(wire::unknown_namespace(head.namespace.as_str())),
        Some(s) if !s.accepts(head.kind) => Some(RemoteError::unsupported(match head.kind {
            StreamKind::Request => "requests",
            StreamKind::Channel => "channels",
            StreamKind::Stream => "streams",
        })),
        _ => None,
    };
    if let Some(refusal) = refusal {
        tracing::debug!(?peer, namespace = %head.namespace, "stream refused: {refusal}");
        let _ = tokio::time::timeout(
            send_timeout,
            send.write_frame(&wire::encode_reply(&Err(refusal)), ACK_LIMIT),
        )
        .await;
        let _ = send.finish().await;
        recv.stop(close_code::NORMAL);
        return;
    }
    let service = service.expect("checked");
    let limit = service.max_message_size();
    match head.kind {
        StreamKind::Request => {
            let reply = match tokio::time::timeout(head_timeout, recv.read_frame(limit)).await {
                Ok(Ok(Some(body))) => service.request(ctx, body).await,
                Ok(Ok(None)) => Err(RemoteError::bad_request("no request after the head")),
                Ok(Err(ConnectionError::Frame(FrameError::TooLarge { size, limit }))) => {
                    tracing::warn!(?peer, namespace = %head.namespace, "request refused: {size} bytes over the limit of {limit}");
                    recv.stop(close_code::PROTOCOL);
                    Err(RemoteError::new(
                        ErrorCode::TooLarge,
                        format!("request of {size} bytes is over the limit of {limit}"),
                    ))
                }
                Ok(Err(e)) => {
                    tracing::warn!(?peer, namespace = %head.namespace, "stream closed: {e}");
                    send.reset(close_code::PROTOCOL);
                    recv.stop(close_code::PROTOCOL);
                    return;
                }
                Err(_) => {
                    tracing::warn!(?peer, namespace = %head.namespace, "stream closed: no request within {head_timeout:?}");
                    send.reset(close_code::PROTOCOL);
                    recv.stop(close_code::PROTOCOL);
                    return;
                }
            };
            let reply = wire::encode_reply(&reply);
            let write = async {
                send.write_frame(&reply, crate::frame::MAX_FRAME_LIMIT)
                    .await?;
                send.finish().await
            };
            match tokio::time::timeout(send_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(?peer, "reply not delivered: {e}"),
                Err(_) => {
                    tracing::warn!(
                        ?peer,
                        "stream reset: the peer read no reply for {send_timeout:?}"
                    );
                    send.reset(close_code::PROTOCOL);
                }
            }
        }
        StreamKind::Channel | StreamKind::Stream => {
            let ack = wire::encode_reply(&Ok(Bytes::new()));
            match tokio::time::timeout(send_timeout, send.write_frame(&ack, ACK_LIMIT)).await {
                Ok(Ok(())) => {}
                _ => {
                    tracing::debug!(?peer, "stream closed before its acknowledgement");
                    return;
                }
            }
            if head.kind == StreamKind::Channel {
                let _ = send.finish().await;
                service
                    .channel(ctx, ChannelReceiver::new(recv, limit, peer))
                    .await;
            } else {
                service.stream(ctx, send, recv).await;
            }
        }
    }
}

async fn quic_accept_loop(weak: Weak<Inner>, endpoint: quinn::Endpoint) {
    let Some(handshakes) = weak
        .upgrade()
        .map(|i| Arc::new(Semaphore::new(i.config.max_handshakes)))
    else {
        return;
    };
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(addr = %incoming.remote_address(), "incoming QUIC connection refused: too many handshakes in progress");
            incoming.refuse();
            continue;
        };
        let weak = weak.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(timeout) = weak.upgrade().map(|i| i.config.connect_timeout) else {
                return;
            };
            let addr = incoming.remote_address();
            let conn = match tokio::time::timeout(timeout, async { incoming.await }).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::info!(%addr, "incoming QUIC connection failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "incoming QUIC handshake timed out");
                    return;
                }
            };
            let Some(peer) = quic_remote_peer(&conn) else {
                conn.close(close_code::PROTOCOL.into(), b"no identity certificate");
                return;
            };
            let Some(inner) = weak.upgrade() else { return };
            let shared = stream_shared(&inner, &peer);
            adopt(
                &inner,
                Connection::new(
                    ConnInner::Quic(conn),
                    peer,
                    addr,
                    take_path(&inner, addr, &peer),
                    Direction::Inbound,
                    shared,
                ),
            );
        });
    }
}

async fn tcp_accept_loop(
    weak: Weak<Inner>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let (timeout, handshakes) = match weak.upgrade() {
        Some(i) => (
            i.config.connect_timeout,
            Arc::new(Semaphore::new(i.config.max_handshakes)),
        ),
        None => return,
    };
    let bulk_streams = Arc::new(Semaphore::new(MAX_BULK_CONNECTIONS));
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "incoming TCP connection dropped: too many handshakes in progress");
            continue;
        };
        let weak = weak.clone();
        let acceptor = acceptor.clone();
        let bulk_streams = bulk_streams.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%addr, "incoming TLS handshake failed: {}", tls_io_error(&e));
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "incoming TLS handshake timed out");
                    return;
                }
            };
            drop(permit);
            let (_, session) = tls.get_ref();
            let bulk = match session.alpn_protocol() {
                Some(tls::ALPN) => false,
                Some(tls::BULK_ALPN) => true,
                _ => {
                    tracing::info!(%addr, "incoming TLS connection without our ALPN: closed");
                    return;
                }
            };
            let Some(peer) = tls::remote_peer_id(session.peer_certificates()) else {
                tracing::info!(%addr, "incoming TLS connection without identity: closed");
                return;
            };
            let Some(inner) = weak.upgrade() else { return };
            if bulk {
                let Ok(_permit) = bulk_streams.try_acquire_owned() else {
                    tracing::warn!(?peer, %addr, "bulk connection refused: {MAX_BULK_CONNECTIONS} already open");
                    return;
                };
                inner.bulk.accepted();
                let conn = Connection::new(
                    ConnInner::Bulk(Box::new(bulk::Line::new(tls.into()))),
                    peer,
                    addr,
                    PathKind::Direct,
                    Direction::Inbound,
                    bulk_stream_shared(&inner, &peer),
                );
                let (send, recv) = conn.take_bulk_stream().expect("a new bulk connection");
                handle_stream(&inner, conn, send, recv).await;
                return;
            }
            adopt(
                &inner,
                Connection::new(
                    ConnInner::Tcp(tcp::Mux::start(
                        tls.into(),
                        false,
                        inner.config.max_concurrent_streams as usize,
                    )),
                    peer,
                    addr,
                    take_path(&inner, addr, &peer),
                    Direction::Inbound,
                    stream_shared(&inner, &peer),
                ),
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_agree_on_which_duplicate_to_keep() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let (small, big) = (a.min(b), a.max(b));
        // Crossed dials, seen from either end and in either arrival order: the connection
        // dialled by the smaller id survives.
        for (local, remote) in [(small, big), (big, small)] {
            // existing dialled by big, new dialled by small: keep new.
            assert!(keep_new_connection(local, remote, big, small));
            // existing dialled by small, new by big: keep existing.
            assert!(!keep_new_connection(local, remote, small, big));
        }
        // The same side dialled again: the newer one wins, at both ends.
        for dialler in [small, big] {
            assert!(keep_new_connection(small, big, dialler, dialler));
            assert!(keep_new_connection(big, small, dialler, dialler));
        }
    }
}
