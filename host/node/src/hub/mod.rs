//! The `hub` area: the home hub's client, started with the network, its methods on the
//! local API (`hub.register`, `hub.resolve`, `hub.watch`, `hub.unwatch`, `hub.relay`, `hub.set_home`) and
//! its events (`presence.changed`, `presence.refused`, `hub.changed`, `relay.offered`).
//!
//! [`foreign`]: guest lines to the home hubs of contacts homed elsewhere (their presence,
//! signals, relays and mailboxes). A contact's presence comes from its home hub only: our
//! hub's reports about a contact homed elsewhere are dropped, its hub's are taken.

pub mod foreign;

pub use foreign::parse_address;

use std::sync::Arc;

use allpeers_hub_client::proto::code;
use allpeers_hub_client::{
    AcceptAll, DirectoryRecord, HubClient, HubClientConfig, HubError, HubEvent, NameCertificate,
    PeerStatus, ProxyConfig, RefuseAll, RelayPolicy, WatchHolder,
};
use allpeers_model::PeerId;
use allpeers_model::api::methods::{self as m, topics};
use allpeers_model::api::net::PeerParams;
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_net::Endpoint;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::HubSection;
use crate::daemon::area::Area;
use crate::daemon::client::Session;
use crate::daemon::rpc::{codes, parse};
use crate::daemon::state::Daemon;

pub const AREA: Area = Area {
    name: "hub",
    methods: &[
        m::HUB_REGISTER,
        m::HUB_RESOLVE,
        m::HUB_WATCH,
        m::HUB_UNWATCH,
        m::HUB_RELAY,
        m::HUB_SET_HOME,
    ],
    handle: |call| Box::pin(handle(call.daemon, call.session, call.method, call.params)),
    slow: &[],
};

/// Called for each presence change the hub reports, before `presence.changed` is published
/// (the social area keeps contacts' presence): given at start, so the hub does not depend on
/// its consumers.
pub type PresenceSink = fn(&Daemon, PeerId, bool, PeerStatus);

/// Addresses a hub address may list.
const MAX_HUB_ADDRESSES: usize = 8;

/// `<hub PeerId>@quic://ip:port[,tcp://ip:port…]`: the hub's PeerId and its addresses, each checked.
pub fn parse_hub(text: &str) -> Result<(PeerId, Vec<String>), String> {
    let text = text.trim();
    let (peer, addresses) = text
        .split_once('@')
        .ok_or("expected <hub PeerId>@quic://ip:port[,tcp://ip:port]")?;
    let peer: PeerId = peer.parse().map_err(|e| format!("the hub's PeerId: {e}"))?;
    let addresses: Vec<String> = addresses.split(',').map(|a| a.trim().to_string()).collect();
    if addresses.len() > MAX_HUB_ADDRESSES {
        return Err(format!("at most {MAX_HUB_ADDRESSES} addresses"));
    }
    for a in &addresses {
        parse_address(a)?;
    }
    Ok((peer, addresses))
}

/// `hub.set_home`: the hub of an address or of an invite code, written to `config.json` (used from the next start).
fn set_home(daemon: &Daemon, p: m::SetHomeParams) -> Result<Value, RpcError> {
    let invalid = |e: String| RpcError::new(ErrorCode::InvalidParams, e);
    let (peer, addresses) = match (p.hub, p.invite) {
        (Some(hub), None) => parse_hub(&hub).map_err(invalid)?,
        (None, Some(code)) => {
            let invite = crate::social::invite::Invite::decode(code.trim())
                .map_err(|e| invalid(e.to_string()))?;
            let (peer, addresses) = invite
                .hub
                .ok_or_else(|| invalid("this invite code names no hub".into()))?;
            for a in &addresses {
                parse_address(a).map_err(invalid)?;
            }
            if addresses.is_empty() || addresses.len() > MAX_HUB_ADDRESSES {
                return Err(invalid("the invite's hub has no usable addresses".into()));
            }
            (peer, addresses)
        }
        _ => return Err(invalid("give exactly one of hub and invite".into())),
    };
    let value = json!({"peer_id": peer.to_string(), "addresses": addresses});
    crate::config::NodeConfig::update(&daemon.paths.config(), |config| {
        // Other settings of the hub section (proxy, relays) stay.
        match config.get_mut("hub").and_then(Value::as_object_mut) {
            Some(hub) => {
                hub.insert("peer_id".into(), value["peer_id"].clone());
                hub.insert("addresses".into(), value["addresses"].clone());
            }
            None => config["hub"] = value.clone(),
        }
    })
    .map_err(|e| RpcError::new(ErrorCode::Internal, format!("{e:#}")))?;
    let current = daemon
        .hub_config
        .as_ref()
        .is_some_and(|h| h.peer_id == peer.to_string() && h.addresses == addresses);
    allpeers_log::flesh!(hub = %peer, "hub: a new home hub, from the next start");
    Ok(serde_json::to_value(m::HomeHub {
        peer_id: peer,
        addresses,
        restart_needed: !current,
    })
    .expect("serialises"))
}

/// Starts the hub client over the running endpoint and forwards its events.
/// Starts the hub client and publishes its events.
pub async fn start(
    daemon: &Arc<Daemon>,
    endpoint: Endpoint,
    section: &HubSection,
    on_presence: PresenceSink,
) -> anyhow::Result<HubClient> {
    let hub: PeerId = section
        .peer_id
        .parse()
        .map_err(|e| anyhow::anyhow!("hub.peer_id: {e}"))?;
    let addresses = section
        .addresses
        .iter()
        .map(|a| parse_address(a).map_err(|e| anyhow::anyhow!("hub.addresses: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = HubClientConfig::new(hub, addresses);
    if let Some(proxy) = &section.proxy {
        config.proxy = Some(ProxyConfig::parse(proxy)?);
    }
    let policy: Arc<dyn RelayPolicy> = match section.accept_relays.as_str() {
        "all" => Arc::new(AcceptAll),
        "none" => Arc::new(RefuseAll),
        other => anyhow::bail!("hub.accept_relays is \"all\" or \"none\", not {other:?}"),
    };
    let client = HubClient::start(endpoint, config, policy).await?;
    daemon.forward_events(client.events(), move |daemon, event| {
        Some(match event {
            HubEvent::Online { observed } => (
                topics::HUB_CHANGED,
                json!({"state": "online", "observed": observed}),
            ),
            HubEvent::Offline { reason } => (
                topics::HUB_CHANGED,
                json!({"state": "offline", "reason": reason}),
            ),
            HubEvent::PresenceChanged {
                peer,
                online,
                status,
            } => {
                if homed_elsewhere(daemon, &peer) {
                    return None;
                }
                presence_event(daemon, on_presence, peer, online, status)
            }
            // The letters module fetches them, the connector takes signals (each has its own
            // subscription).
            HubEvent::MailWaiting { .. } | HubEvent::Signal { .. } => return None,
            HubEvent::WatchRefused { peer } => {
                if homed_elsewhere(daemon, &peer) {
                    return None;
                }
                (topics::PRESENCE_REFUSED, json!({"peer_id": peer}))
            }
            HubEvent::RelayOffered { from, accepted } => (
                topics::RELAY_OFFERED,
                json!({"from": from, "accepted": accepted}),
            ),
        })
    });
    Ok(client)
}

/// Whether `peer` is a contact homed at another hub than ours (its presence comes from
/// there).
fn homed_elsewhere(daemon: &Daemon, peer: &PeerId) -> bool {
    daemon
        .network
        .get()
        .is_some_and(|n| n.foreign.is_foreign(peer))
}

fn presence_event(
    daemon: &Daemon,
    on_presence: PresenceSink,
    peer: PeerId,
    online: bool,
    status: PeerStatus,
) -> (&'static str, Value) {
    on_presence(daemon, peer, online, status.clone());
    (
        topics::PRESENCE_CHANGED,
        json!({"peer_id": peer, "online": online, "state": if online { status.availability.as_str() } else { "offline" }, "text": status.text}),
    )
}

/// Forwards a guest line's reports about the contacts homed at its hub (`hub`): their
/// presence and refused watches. Reports about anyone else are not that hub's to give.
pub fn forward_guest_events(
    daemon: &Arc<Daemon>,
    client: &HubClient,
    hub: PeerId,
    on_presence: PresenceSink,
) {
    let homed_there = move |daemon: &Daemon, peer: &PeerId| {
        daemon
            .network
            .get()
            .and_then(|n| n.foreign.home_of(peer))
            .is_some_and(|h| h.peer == hub)
    };
    daemon.forward_events(client.events(), move |daemon, event| match event {
        HubEvent::PresenceChanged {
            peer,
            online,
            status,
        } if homed_there(daemon, &peer) => {
            Some(presence_event(daemon, on_presence, peer, online, status))
        }
        HubEvent::WatchRefused { peer } if homed_there(daemon, &peer) => {
            Some((topics::PRESENCE_REFUSED, json!({"peer_id": peer})))
        }
        _ => None,
    });
}

/// The home hub's client, or `NoHub` saying why there is none.
pub fn client(daemon: &Daemon) -> Result<&HubClient, RpcError> {
    daemon.hub().ok_or_else(|| RpcError {
        code: codes::NO_HUB,
        message: match daemon.network.get() {
            None => "the node is offline (identity locked or endpoint down): see net.status".into(),
            Some(_) => {
                "no home hub is configured (config.json: hub.peer_id and hub.addresses)".into()
            }
        },
        data: None,
    })
}

fn rpc(error: HubError) -> RpcError {
    let message = error.to_string();
    let code = match (&error, error.app_code()) {
        (_, Some(code::NAME_TAKEN)) => codes::NAME_TAKEN,
        (_, Some(code::BAD_NAME)) | (HubError::Name(_), _) => codes::BAD_NAME,
        (HubError::Answer(_) | HubError::BadAnswer(_), _) => codes::ANSWER_REJECTED,
        (_, Some(code::RELAY_REFUSED)) => codes::RELAY_REFUSED,
        (_, Some(code::QUOTA)) => codes::QUOTA,
        (_, Some(code::OFFLINE)) => codes::PEER_OFFLINE,
        (_, Some(code::RATE_LIMITED)) => codes::QUOTA,
        (HubError::Net(_) | HubError::Proxy(_) | HubError::Stopped, _) => codes::HUB_UNREACHABLE,
        _ => ErrorCode::Internal.code(),
    };
    RpcError {
        code,
        message,
        data: None,
    }
}

fn certificate_json(cert: &NameCertificate) -> Value {
    json!({
        "name": cert.name,
        "hub_name": cert.hub_name,
        "full_name": format!("{}@{}", cert.name, cert.hub_name),
        "peer_id": cert.peer,
        "hub_peer_id": cert.hub,
        "issued_at": cert.issued_at,
        "signature": base64::engine::general_purpose::STANDARD.encode(&cert.signature),
    })
}

fn record_json(record: &DirectoryRecord) -> Value {
    json!({
        "found": true,
        "verified": true,
        "peer_id": record.peer,
        "name": record.certificate.as_ref().map(|c| format!("{}@{}", c.name, c.hub_name)),
        "certificate": record.certificate.as_ref().map(certificate_json),
        "addresses": record.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "online": record.online,
        "online_at": record.online_at.as_ref().map(|h| json!({
            "name": h.name, "peer_id": h.peer, "addresses": h.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
        "last_seen": record.last_seen,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveParams {
    query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersParams {
    peers: Vec<PeerId>,
}

async fn handle(
    daemon: &Daemon,
    session: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::HUB_REGISTER => {
            let p: NameParams = parse(params)?;
            let cert = client(daemon)?.register(&p.name).await.map_err(rpc)?;
            Ok(json!({"certificate": certificate_json(&cert)}))
        }
        m::HUB_RESOLVE => {
            let p: ResolveParams = parse(params)?;
            match client(daemon)?.resolve(&p.query).await.map_err(rpc)? {
                Some(record) => Ok(record_json(&record)),
                None => Ok(json!({"found": false, "verified": true})),
            }
        }
        m::HUB_WATCH | m::HUB_UNWATCH => {
            let p: PeersParams = parse(params)?;
            let hub = client(daemon)?;
            // Held by this session, apart from the contacts' watches and other clients': a
            // client's unwatch of a contact must not end its presence, and its watches end
            // with it (`forget_client`).
            let holder = WatchHolder::Client(session.id());
            if method == m::HUB_WATCH {
                hub.watch(holder, &p.peers).await;
            } else {
                hub.unwatch(holder, &p.peers).await;
            }
            Ok(json!({"peers": p.peers}))
        }
        m::HUB_SET_HOME => set_home(daemon, parse(params)?),
        m::HUB_RELAY => {
            let p: PeerParams = parse(params)?;
            // Through the peer's home hub: ours, or the guest line to its own.
            let guest = match daemon.network.get() {
                Some(n) => n.foreign.line_for(&p.peer).await,
                None => None,
            };
            let conn = match guest {
                Some(line) => line.map_err(rpc)?.connect_relayed(p.peer).await,
                None => client(daemon)?.connect_relayed(p.peer).await,
            }
            .map_err(rpc)?;
            Ok(json!({"peer_id": p.peer, "path": "relayed", "transport": conn.transport()}))
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{other}\""),
        )),
    }
}

/// Ends the hub watches of a client that went (those no contact or other client holds are
/// unwatched at the hub).
pub async fn forget_client(daemon: &Daemon, session: &Session) {
    // A node stopping keeps them: its line going down tells the peers it is offline, where an
    // unwatch first would tell them only that they may no longer see it.
    if daemon.shutdown.is_cancelled() {
        return;
    }
    if let Some(hub) = daemon.hub() {
        hub.unwatch_all(WatchHolder::Client(session.id())).await;
    }
}

/// The hub part of `net.status`.
pub fn status(daemon: &Daemon) -> Value {
    match daemon.hub() {
        Some(hub) => serde_json::to_value(hub.status()).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_address_is_a_peer_id_and_checked_addresses() {
        let peer = allpeers_net::Identity::generate().peer_id();
        let (p, addresses) = parse_hub(&format!(
            " {peer}@quic://127.0.0.1:4433, tcp://127.0.0.1:4434 "
        ))
        .unwrap();
        assert_eq!(p, peer);
        assert_eq!(addresses, ["quic://127.0.0.1:4433", "tcp://127.0.0.1:4434"]);
        for bad in [
            "no at sign".to_string(),
            "notapeer@quic://127.0.0.1:1".to_string(),
            format!("{peer}@http://127.0.0.1:1"),
            format!("{peer}@quic://hub.example:1"),
            format!("{peer}@{}", ["tcp://127.0.0.1:1"; 9].join(",")),
        ] {
            assert!(parse_hub(&bad).is_err(), "{bad}");
        }
    }
}
