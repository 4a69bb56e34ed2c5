//! Peers on the same LAN, found by UDP multicast without any server.
//!
//! Every node joins the group [`DEFAULT_GROUP`]:[`DEFAULT_PORT`] (239.255.0.0/16 is the
//! IPv4 organisation-local scope, RFC 2365, which routers do not forward past the site;
//! packets go out with TTL 1 so they stay on the link anyway). It multicasts a signed
//! announcement (its [`AddressRecord`]) at start, every [`LanConfig::announce_every`] and
//! when its addresses change, and a query at start, which the others answer with an
//! announcement (multicast too: nodes on one host share the port through `SO_REUSEPORT`, and
//! the kernel hands a unicast reply to only one of them). Announcements are verified (the
//! record's key is the PeerId announced, so nobody can announce someone else) and must be
//! fresh and newer than the last one seen from that peer (a replay cannot roll addresses
//! back). Packets beyond a rate are dropped, the peer table is bounded, and entries
//! expire. Peers seen go to the endpoint only when asked for ([`LanDiscovery::lookup_into`]):
//! its address book has no bound, and anyone on the LAN can make up as many keys as it
//! likes.
//!
//! Packet (I/O-free codec, fuzzed): `"APLN" | version 1 | type | payload`; type 1: an
//! announcement, the payload a signed record; type 2: a query, the payload the asker's
//! public key (only so a node can ignore its own query; it is not trusted for anything).

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::DiscoveryError;
use allpeers_net::discovery::Discovery;
use allpeers_net::endpoint::Endpoint;
use allpeers_net::identity::Identity;
use allpeers_net::record::{AddressRecord, MAX_RECORD_LEN, RecordAddress, RecordError};
use allpeers_net::transport::Address;

/// The multicast group of LAN discovery (organisation-local scope, RFC 2365).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 70, 80);
/// Its UDP port (unassigned by IANA).
pub const DEFAULT_PORT: u16 = 41_730;

const MAGIC: &[u8; 4] = b"APLN";
const VERSION: u8 = 1;
const TYPE_ANNOUNCE: u8 = 1;
const TYPE_QUERY: u8 = 2;
const PACKET_HEADER: usize = 6;
/// The longest valid packet: an announcement of the longest record.
pub const MAX_PACKET_LEN: usize = PACKET_HEADER + MAX_RECORD_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet is {0} bytes, more than {MAX_PACKET_LEN}")]
    Oversized(usize),
    #[error("packet is truncated")]
    Truncated,
    #[error("not an AllPeers LAN packet")]
    BadMagic,
    #[error("LAN packet version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("unknown LAN packet type {0}")]
    UnknownType(u8),
    #[error("query with {0} bytes of payload (expected 32)")]
    BadQuery(usize),
    #[error("announcement: {0}")]
    Record(#[from] RecordError),
}

/// A decoded LAN packet; an announcement's record signature is already verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanPacket {
    Announce(AddressRecord),
    Query { asker: PeerId },
}

impl LanPacket {
    pub fn decode(bytes: &[u8]) -> Result<LanPacket, PacketError> {
        if bytes.len() > MAX_PACKET_LEN {
            return Err(PacketError::Oversized(bytes.len()));
        }
        if bytes.len() < PACKET_HEADER {
            return Err(PacketError::Truncated);
        }
        if &bytes[..4] != MAGIC {
            return Err(PacketError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(PacketError::UnsupportedVersion(bytes[4]));
        }
        let payload = &bytes[PACKET_HEADER..];
        match bytes[5] {
            TYPE_ANNOUNCE => Ok(LanPacket::Announce(AddressRecord::decode(payload)?)),
            TYPE_QUERY => {
                let key: [u8; 32] = payload
                    .try_into()
                    .map_err(|_| PacketError::BadQuery(payload.len()))?;
                Ok(LanPacket::Query {
                    asker: PeerId::from_public_key(key),
                })
            }
            other => Err(PacketError::UnknownType(other)),
        }
    }

    /// An announcement carrying an already signed record.
    pub fn encode_announce(signed_record: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKET_HEADER + signed_record.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, TYPE_ANNOUNCE]);
        out.extend_from_slice(signed_record);
        out
    }

    pub fn encode_query(asker: &PeerId) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKET_HEADER + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, TYPE_QUERY]);
        out.extend_from_slice(asker.public_key());
        out
    }
}

#[derive(Debug, Clone)]
pub struct LanConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// The interface (by its IPv4 address) to join and send on; unspecified: the kernel
    /// picks (the default route's interface).
    pub interface: Ipv4Addr,
    pub announce_every: Duration,
    /// A peer not heard from for this long is forgotten.
    pub peer_ttl: Duration,
    pub max_peers: usize,
    /// Packets handled per second; the rest are dropped unread (signature checks cost CPU).
    pub max_packets_per_second: u32,
    /// Queries are answered at most this often, however many arrive.
    pub min_answer_interval: Duration,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            group: DEFAULT_GROUP,
            port: DEFAULT_PORT,
            interface: Ipv4Addr::UNSPECIFIED,
            announce_every: Duration::from_secs(30),
            peer_ttl: Duration::from_secs(100),
            max_peers: 256,
            max_packets_per_second: 200,
            min_answer_interval: Duration::from_secs(1),
        }
    }
}

/// A peer seen on the LAN.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LanPeer {
    pub peer: PeerId,
    pub addresses: Vec<RecordAddress>,
    pub issued_at_ms: u64,
    /// The source of its last announcement.
    pub from: SocketAddr,
    #[serde(skip)]
    seen: Instant,
}

/// Published on [`LanDiscovery::events`] when a peer appears or its addresses change.
#[derive(Debug, Clone)]
pub struct LanEvent {
    pub peer: PeerId,
    pub addresses: Vec<RecordAddress>,
    pub from: SocketAddr,
    /// False when a known peer's addresses changed.
    pub new: bool,
}

/// Counters for `net.status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LanStats {
    pub announcements_sent: u64,
    pub announcements_accepted: u64,
    /// Packets that failed to decode or verify, or were stale or replayed.
    pub refused: u64,
    /// Packets dropped over the rate limit.
    pub dropped: u64,
    pub last_refusal: Option<String>,
}

#[derive(Clone)]
pub struct LanDiscovery {
    inner: Arc<Inner>,
}

struct Inner {
    identity: Identity,
    config: LanConfig,
    socket: UdpSocket,
    peers: Mutex<HashMap<PeerId, LanPeer>>,
    events: broadcast::Sender<LanEvent>,
    stats: watch::Sender<LanStats>,
}

impl LanDiscovery {
    /// Joins the group and starts announcing `addresses` (and re-announcing when they
    /// change) until `cancel`.
    pub fn start(
        identity: Identity,
        config: LanConfig,
        addresses: watch::Receiver<Vec<RecordAddress>>,
        cancel: CancellationToken,
    ) -> Result<LanDiscovery, DiscoveryError> {
        let socket = multicast_socket(&config).map_err(DiscoveryError::LanSocket)?;
        let discovery = LanDiscovery {
            inner: Arc::new(Inner {
                identity,
                config,
                socket,
                peers: Mutex::new(HashMap::new()),
                events: broadcast::channel(64).0,
                stats: watch::channel(LanStats::default()).0,
            }),
        };
        tokio::spawn(run(discovery.inner.clone(), addresses, cancel));
        Ok(discovery)
    }

    pub fn events(&self) -> broadcast::Receiver<LanEvent> {
        self.inner.events.subscribe()
    }

    /// Peers heard from within the TTL.
    pub fn peers(&self) -> Vec<LanPeer> {
        let ttl = self.inner.config.peer_ttl;
        self.inner
            .peers
            .lock()
            .expect("lan peers lock")
            .values()
            .filter(|p| p.seen.elapsed() < ttl)
            .cloned()
            .collect()
    }

    pub fn lookup(&self, peer: &PeerId) -> Option<LanPeer> {
        let ttl = self.inner.config.peer_ttl;
        self.inner
            .peers
            .lock()
            .expect("lan peers lock")
            .get(peer)
            .filter(|p| p.seen.elapsed() < ttl)
            .cloned()
    }

    /// Gives the endpoint the addresses `peer` last announced, if it was seen within the
    /// TTL; returns them.
    pub fn lookup_into(&self, endpoint: &Endpoint, peer: &PeerId) -> Option<LanPeer> {
        let found = self.lookup(peer)?;
        for a in &found.addresses {
            endpoint.add_peer_address(*peer, a.address);
        }
        Some(found)
    }

    pub fn stats(&self) -> LanStats {
        self.inner.stats.borrow().clone()
    }

    /// The counters, changed after every packet handled or sent.
    pub fn watch_stats(&self) -> watch::Receiver<LanStats> {
        self.inner.stats.subscribe()
    }

    pub fn config(&self) -> &LanConfig {
        &self.inner.config
    }
}

/// The connector asks the LAN cache: what the peer last announced within the TTL (no
/// packet is sent, so it is free and asked first).
impl Discovery for LanDiscovery {
    fn name(&self) -> &'static str {
        "lan"
    }

    fn cached(&self) -> bool {
        true
    }

    fn lookup(
        &self,
        peer: PeerId,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Address>, String>> + Send + '_>> {
        let found = match self.lookup(&peer) {
            Some(p) => Ok(p.addresses.iter().map(|a| a.address).collect()),
            None => Err(format!(
                "not heard on the LAN within {} s",
                self.inner.config.peer_ttl.as_secs()
            )),
        };
        Box::pin(std::future::ready(found))
    }
}

fn multicast_socket(config: &LanConfig) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Several nodes on one host (several users, tests) share the group's port.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port).into())?;
    socket.join_multicast_v4(&config.group, &config.interface)?;
    if !config.interface.is_unspecified() {
        socket.set_multicast_if_v4(&config.interface)?;
    }
    // Other nodes on this host must hear us too.
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn run(
    inner: Arc<Inner>,
    mut addresses: watch::Receiver<Vec<RecordAddress>>,
    cancel: CancellationToken,
) {
    let group = SocketAddr::V4(SocketAddrV4::new(inner.config.group, inner.config.port));
    let me = inner.identity.peer_id();
    send(&inner, group, &LanPacket::encode_query(&me)).await;
    let mut announce = tokio::time::interval(inner.config.announce_every);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
    let mut window = (Instant::now(), 0u32);
    let mut last_answer: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = announce.tick() => {
                let current = addresses.borrow().clone();
                announce_now(&inner, &current, group).await;
                expire(&inner);
            }
            changed = addresses.changed() => {
                if changed.is_err() { break }
                let current = addresses.borrow_and_update().clone();
                announce_now(&inner, &current, group).await;
            }
            received = inner.socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(received) => received,
                    Err(e) => {
                        // Not expected on an unconnected UDP socket; never spin on it.
                        tracing::debug!("LAN discovery receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if window.0.elapsed() >= Duration::from_secs(1) {
                    window = (Instant::now(), 0);
                }
                window.1 += 1;
                if window.1 > inner.config.max_packets_per_second {
                    inner.stats.send_modify(|s| s.dropped += 1);
                    continue;
                }
                match LanPacket::decode(&buf[..len]) {
                    Ok(LanPacket::Announce(record)) => {
                        if record.peer != me {
                            accept(&inner, record, from);
                        }
                    }
                    Ok(LanPacket::Query { asker }) => {
                        let due = last_answer
                            .is_none_or(|t| t.elapsed() >= inner.config.min_answer_interval);
                        if asker != me && due {
                            last_answer = Some(Instant::now());
                            let current = addresses.borrow().clone();
                            announce_now(&inner, &current, group).await;
                        }
                    }
                    Err(e) => refuse(&inner, from, &e.to_string()),
                }
            }
        }
    }
}

async fn announce_now(inner: &Inner, addresses: &[RecordAddress], group: SocketAddr) {
    if addresses.is_empty() {
        return;
    }
    let record = AddressRecord::new(
        inner.identity.peer_id(),
        allpeers_model::hlc::now_ms(),
        addresses,
    );
    match record.sign(&inner.identity) {
        Ok(signed) => {
            if send(inner, group, &LanPacket::encode_announce(&signed)).await {
                inner.stats.send_modify(|s| s.announcements_sent += 1);
            }
        }
        Err(e) => tracing::warn!("cannot sign our LAN announcement: {e}"),
    }
}

async fn send(inner: &Inner, to: SocketAddr, packet: &[u8]) -> bool {
    match inner.socket.send_to(packet, to).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(%to, "LAN discovery send failed: {e}");
            false
        }
    }
}

fn refuse(inner: &Inner, from: SocketAddr, why: &str) {
    tracing::debug!(%from, "refused a LAN packet: {why}");
    inner.stats.send_modify(|stats| {
        stats.refused += 1;
        stats.last_refusal = Some(format!("from {from}: {why}"));
    });
}

/// Takes a verified announcement if it is fresh and newer than what we have.
fn accept(inner: &Inner, record: AddressRecord, from: SocketAddr) {
    if let Err(e) = record.check_fresh(allpeers_model::hlc::now_ms()) {
        refuse(inner, from, &e.to_string());
        return;
    }
    let event = {
        let mut peers = inner.peers.lock().expect("lan peers lock");
        let previous = peers.get(&record.peer);
        if previous.is_some_and(|p| record.issued_at_ms < p.issued_at_ms) {
            drop(peers);
            refuse(
                inner,
                from,
                "an older announcement than one already seen (replay?)",
            );
            return;
        }
        let new = previous.is_none();
        let changed = previous.is_none_or(|p| p.addresses != record.addresses);
        if new && peers.len() >= inner.config.max_peers {
            // Make room by forgetting the peer heard from longest ago.
            if let Some(oldest) = peers.values().min_by_key(|p| p.seen).map(|p| p.peer) {
                peers.remove(&oldest);
            }
        }
        peers.insert(
            record.peer,
            LanPeer {
                peer: record.peer,
                addresses: record.addresses.clone(),
                issued_at_ms: record.issued_at_ms,
                from,
                seen: Instant::now(),
            },
        );
        changed.then(|| LanEvent {
            peer: record.peer,
            addresses: record.addresses.clone(),
            from,
            new,
        })
    };
    inner.stats.send_modify(|s| s.announcements_accepted += 1);
    if let Some(event) = event {
        tracing::debug!(peer = %event.peer, %from, new = event.new, "LAN peer seen");
        let _ = inner.events.send(event);
    }
}

fn expire(inner: &Inner) {
    let ttl = inner.config.peer_ttl;
    inner
        .peers
        .lock()
        .expect("lan peers lock")
        .retain(|_, p| p.seen.elapsed() < ttl);
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_net::record::AddressKind;
    use allpeers_net::transport::Address;

    fn signed(identity: &Identity, at: u64) -> Vec<u8> {
        AddressRecord::new(
            identity.peer_id(),
            at,
            &[RecordAddress {
                kind: AddressKind::Local,
                address: Address::quic("198.18.3.2:4433".parse().unwrap()),
            }],
        )
        .sign(identity)
        .unwrap()
    }

    #[test]
    fn packets_round_trip_and_bad_ones_are_refused() {
        let me = Identity::generate();
        let record = signed(&me, 1);
        let packet = LanPacket::encode_announce(&record);
        assert_eq!(
            LanPacket::decode(&packet).unwrap(),
            LanPacket::Announce(AddressRecord::decode(&record).unwrap())
        );
        assert_eq!(
            LanPacket::decode(&LanPacket::encode_query(&me.peer_id())).unwrap(),
            LanPacket::Query {
                asker: me.peer_id()
            }
        );
        let mut tampered = packet.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            LanPacket::decode(&tampered),
            Err(PacketError::Record(RecordError::BadSignature(_)))
        ));
        assert_eq!(LanPacket::decode(b"APLN"), Err(PacketError::Truncated));
        assert_eq!(
            LanPacket::decode(b"XXXX\x01\x01"),
            Err(PacketError::BadMagic)
        );
        assert_eq!(
            LanPacket::decode(b"APLN\x01\x07"),
            Err(PacketError::UnknownType(7))
        );
        assert_eq!(
            LanPacket::decode(b"APLN\x01\x02abc"),
            Err(PacketError::BadQuery(3))
        );
        assert_eq!(
            LanPacket::decode(&vec![0; MAX_PACKET_LEN + 1]),
            Err(PacketError::Oversized(MAX_PACKET_LEN + 1))
        );
    }
}
