//! Params, results and events of the network methods: `net.*`, `hub.*`, and the events
//! `net.changed`, `hub.changed`, `presence.refused`, `relay.offered`.
//!
//! The network crates keep their own richer types; these are what crosses the local API.
//! Parts that are diagnostic reports of those crates (connectivity, discovery) are carried
//! as JSON here and described in `docs/api.md`.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::Json;
use crate::PeerId;

/// Which transport carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Quic,
    Tcp,
}

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

/// How a connection was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// One side dialled the other's address.
    Direct,
    /// The target connected back to us on request.
    Callback,
    /// A UDP hole punched through both NATs.
    HolePunched,
    /// Through the hub's relay, end-to-end encrypted.
    Relayed,
}

/// An address to dial: the transport and the socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Address {
    pub transport: TransportKind,
    pub addr: SocketAddr,
}

/// `{"peer": PeerId}`: the params of `net.connect`, `hub.relay`, `contacts.*`, `chat.open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PeerParams {
    pub peer: PeerId,
}

/// `net.speedtest`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SpeedtestParams {
    pub peer: PeerId,
    /// Bytes to send each way (absent: 16 MiB; at most 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// `net.speedtest`'s result: throughput each way over the connection to the peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SpeedtestResult {
    pub peer: PeerId,
    pub upload_bytes: u64,
    pub download_bytes: u64,
    /// Bytes per second, to the peer (one round trip included).
    pub upload_rate: f64,
    /// Bytes per second, from the peer.
    pub download_rate: f64,
    pub elapsed_ms: u64,
}

/// `hub.register`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct NameParams {
    /// `alice` or `alice@hub`.
    pub name: String,
}

/// `hub.resolve`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ResolveParams {
    /// `name`, `name@hub` or a PeerId.
    pub query: String,
}

/// `hub.watch` / `hub.unwatch`: params and result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PeersParams {
    pub peers: Vec<PeerId>,
}

/// `daemon.shutdown`'s result: always `{"stopping": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ShutdownResult {
    #[cfg_attr(feature = "ts", ts(type = "true"))]
    pub stopping: bool,
}

/// A name certificate signed by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Certificate {
    pub name: String,
    pub hub_name: String,
    /// `name@hub_name`.
    pub full_name: String,
    pub peer_id: PeerId,
    pub hub_peer_id: PeerId,
    /// Unix milliseconds.
    pub issued_at: u64,
    /// Base64 of the hub's signature.
    pub signature: String,
}

/// `hub.register`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RegisterResult {
    pub certificate: Certificate,
}

/// The hub a peer is online at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OnlineAt {
    pub name: String,
    pub peer_id: PeerId,
    /// `quic://ip:port`, `tcp://ip:port`.
    pub addresses: Vec<String>,
}

/// `hub.resolve`'s result: not found, or the peer's verified directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(untagged)]
pub enum ResolveResult {
    NotFound(NotFound),
    Found(Box<Resolved>),
}

/// `{"found": false, "verified": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct NotFound {
    /// False.
    #[cfg_attr(feature = "ts", ts(type = "false"))]
    pub found: bool,
    /// Always true: a forged, replayed or stale answer is an error instead.
    pub verified: bool,
}

/// A peer's entry in the hub's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Resolved {
    /// True.
    #[cfg_attr(feature = "ts", ts(type = "true"))]
    pub found: bool,
    /// Always true: a forged, replayed or stale answer is an error instead.
    pub verified: bool,
    pub peer_id: PeerId,
    /// `name@hub`, when the peer registered one.
    pub name: Option<String>,
    pub certificate: Option<Certificate>,
    /// `quic://ip:port`, `tcp://ip:port`.
    pub addresses: Vec<String>,
    pub online: bool,
    pub online_at: Option<OnlineAt>,
    /// Unix milliseconds of the last presence, if ever seen.
    pub last_seen: Option<u64>,
}

/// `hub.relay`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RelayResult {
    pub peer_id: PeerId,
    /// `relayed`.
    pub path: PathKind,
    pub transport: TransportKind,
}

/// How the NAT maps an internal address to external ones (RFC 4787 / RFC 5780 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    None,
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    Unknown,
}

/// Which inbound packets the NAT lets through to a mapping (RFC 5780 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    Unknown,
}

/// What a peer knows about its own network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NatFacts {
    pub mapping: Mapping,
    pub filtering: Filtering,
    /// UDP reaches the internet (a STUN answer came back).
    pub udp: bool,
    /// The hub reached our TCP listener from outside.
    pub tcp_reachable: bool,
}

/// One dial, signal, punch, birthday or relay attempt of a connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Attempt {
    pub method: String,
    pub outcome: String,
    /// Milliseconds after the start of the connect.
    pub at_ms: u64,
}

/// `net.connect`'s result: the path that won, why, and every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConnectResult {
    pub peer_id: PeerId,
    pub path: PathKind,
    pub transport: TransportKind,
    /// Which way won and why.
    pub why: String,
    pub elapsed_ms: u64,
    pub local: Option<NatFacts>,
    /// The target's facts, when it answered our signal.
    pub remote: Option<NatFacts>,
    pub attempts: Vec<Attempt>,
}

/// `error.data` of [`crate::api::ErrorCode::ConnectFailed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConnectFailedData {
    pub attempts: Vec<Attempt>,
}

/// The home hub line's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum HubState {
    Connecting,
    Online,
    Offline,
    Stopped,
}

/// The hub part of `net.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HubStatus {
    /// The hub's PeerId.
    pub hub: PeerId,
    pub state: HubState,
    /// The address the hub sees us at (while online).
    pub observed: Option<SocketAddr>,
    pub via_proxy: bool,
    pub proxy_error: Option<String>,
    /// Why the line went down last.
    pub last_error: Option<String>,
    /// Peers we ask the hub to watch: contacts, and local clients' `hub.watch` (each client's end with its session).
    pub watching: u32,
}

/// A live connection in `net.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConnectionInfo {
    pub peer: PeerId,
    pub transport: TransportKind,
    pub direction: Direction,
    pub path: PathKind,
    /// The connector's reason, when it made the connection.
    pub why: Option<String>,
}

/// The `bulk` part of `net.status`: connections of their own that file transfers over TCP
/// opened (no multiplexer; the other transfers are streams on the peer's connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BulkStatus {
    /// Bulk connections this node dialled (its downloads).
    pub dialled: u64,
    /// Bulk connections peers dialled to this node (their downloads from it).
    pub accepted: u64,
    /// Stream bytes written and read on them, both directions.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// `net.status`'s result: stopped (identity locked, endpoint down), or running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(untagged)]
pub enum NetStatus {
    Stopped(NetStopped),
    Running(Box<NetRunning>),
}

/// The endpoint is not running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct NetStopped {
    /// False.
    #[cfg_attr(feature = "ts", ts(type = "false"))]
    pub running: bool,
    pub reason: String,
}

/// The endpoint is running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NetRunning {
    /// True.
    #[cfg_attr(feature = "ts", ts(type = "true"))]
    pub running: bool,
    /// Some non-loopback interface has an address.
    pub online: bool,
    /// Non-loopback interface addresses.
    pub addresses: Vec<IpAddr>,
    pub listening: Vec<Address>,
    pub connections: Vec<ConnectionInfo>,
    /// What bulk connections (file transfers over a TCP+TLS connection of their own) carried
    /// since the node started.
    #[serde(default)]
    pub bulk: BulkStatus,
    /// Null without a home hub.
    pub hub: Option<HubStatus>,
    /// What discovery through the home hub found (`state` unknown/checking/done, the NAT
    /// report's fields; `docs/api.md`).
    #[cfg_attr(feature = "ts", ts(type = "Record<string, unknown>"))]
    pub connectivity: Json,
    /// DHT and LAN discovery (`dht`, `lan`, `addresses`, `errors`; `docs/api.md`), null
    /// until configured.
    #[cfg_attr(feature = "ts", ts(type = "Record<string, unknown> | null"))]
    pub discovery: Json,
}

/// A change of the interface addresses or of being online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StatusEvent {
    Online,
    Offline,
    AddressAdded { address: IpAddr },
    AddressRemoved { address: IpAddr },
}

/// A peer connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Connected {
    pub peer: PeerId,
    pub transport: TransportKind,
    pub direction: Direction,
}

/// A peer disconnected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Disconnected {
    pub peer: PeerId,
    pub reason: String,
}

/// Our record was stored on the DHT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DhtPublished {
    /// Unix milliseconds.
    pub at_ms: Option<u64>,
    /// DHT nodes that stored it.
    pub stored_at: Option<u64>,
    /// What the record carries.
    #[cfg_attr(feature = "ts", ts(type = "unknown[]"))]
    pub addresses: Json,
}

/// A peer seen on the LAN for the first time (`new`), or with changed addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LanPeer {
    pub peer: PeerId,
    /// `[{kind: local/observed/mapped, address: {transport, addr}}]`.
    #[cfg_attr(feature = "ts", ts(type = "unknown[]"))]
    pub addresses: Json,
    /// Where the announcement came from (ip:port).
    pub from: SocketAddr,
    pub new: bool,
}

/// `net.changed`'s data: one of its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum NetChange {
    Status(StatusEvent),
    Connected(Connected),
    Disconnected(Disconnected),
    /// A new connectivity report (the `net.status` `connectivity` fields).
    Connectivity(#[cfg_attr(feature = "ts", ts(type = "Record<string, unknown> | null"))] Json),
    DhtPublished(DhtPublished),
    LanPeer(LanPeer),
}

/// `hub.changed`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum HubChange {
    /// The line is up; the hub sees us at `observed`.
    Online {
        observed: SocketAddr,
    },
    Offline {
        reason: String,
    },
}

/// `{"peer_id": PeerId}` (`presence.refused`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PeerIdData {
    pub peer_id: PeerId,
}

/// `relay.offered`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RelayOffer {
    pub from: PeerId,
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer() -> PeerId {
        PeerId::from_public_key([7; 32])
    }

    #[test]
    fn net_status_reads_both_shapes() {
        let stopped = json!({"running": false, "reason": "locked"});
        let s: NetStatus = serde_json::from_value(stopped.clone()).unwrap();
        assert!(matches!(s, NetStatus::Stopped(_)));
        assert_eq!(serde_json::to_value(&s).unwrap(), stopped);
        let running = json!({
            "running": true, "online": true, "addresses": ["10.0.0.2"],
            "listening": [{"transport": "quic", "addr": "0.0.0.0:4433"}],
            "connections": [{"peer": peer(), "transport": "tcp", "direction": "inbound",
                             "path": "hole_punched", "why": null}],
            "bulk": {"dialled": 1, "accepted": 0, "bytes_sent": 200, "bytes_received": 3000000},
            "hub": null, "connectivity": {"state": "unknown"}, "discovery": null,
        });
        let s: NetStatus = serde_json::from_value(running.clone()).unwrap();
        assert!(matches!(s, NetStatus::Running(_)));
        assert_eq!(serde_json::to_value(&s).unwrap(), running);
    }

    #[test]
    fn events_keep_their_wire_shapes() {
        let change = NetChange::Status(StatusEvent::AddressAdded {
            address: "10.0.0.2".parse().unwrap(),
        });
        assert_eq!(
            serde_json::to_value(change).unwrap(),
            json!({"status": {"event": "address_added", "address": "10.0.0.2"}})
        );
        assert_eq!(
            serde_json::to_value(NetChange::Status(StatusEvent::Online)).unwrap(),
            json!({"status": {"event": "online"}})
        );
        assert_eq!(
            serde_json::to_value(HubChange::Offline {
                reason: "gone".into()
            })
            .unwrap(),
            json!({"state": "offline", "reason": "gone"})
        );
        let lan = json!({"lan_peer": {"peer": peer(), "addresses": [], "from": "10.0.0.3:41730", "new": true}});
        let parsed: NetChange = serde_json::from_value(lan.clone()).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), lan);
    }

    #[test]
    fn resolve_reads_found_and_not_found() {
        let missing = json!({"found": false, "verified": true});
        let r: ResolveResult = serde_json::from_value(missing.clone()).unwrap();
        assert!(matches!(r, ResolveResult::NotFound(_)));
        assert_eq!(serde_json::to_value(r).unwrap(), missing);
        let found = json!({"found": true, "verified": true, "peer_id": peer(), "name": null,
            "certificate": null, "addresses": ["quic://1.2.3.4:5"], "online": false,
            "online_at": null, "last_seen": 17});
        let r: ResolveResult = serde_json::from_value(found.clone()).unwrap();
        assert!(matches!(r, ResolveResult::Found(_)));
        assert_eq!(serde_json::to_value(r).unwrap(), found);
    }
}
