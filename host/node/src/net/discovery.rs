//! Discovery without a hub in the daemon (`config.json` `discovery`): publishes our signed
//! address record on the Mainline DHT and announces it on the LAN, and gives both to the
//! connector, which looks a peer up in them (the LAN cache, then the DHT) when the home hub
//! cannot resolve it (none configured, down, unreachable), so `net.connect` and letters
//! (chat) still reach a contact. `net.status` shows it as `discovery`; LAN peers
//! found are `net.changed` events (`{"lan_peer": …}`).

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use allpeers_discovery::dht::{DhtConfig, DhtDiscovery};
use allpeers_discovery::lan::{LanConfig, LanDiscovery};
use allpeers_model::api::methods::topics;
use allpeers_net::discovery::record_addresses;
use allpeers_net::record::RecordAddress;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

use super::parts::Discovery;
use crate::daemon::state::Daemon;

/// How often our addresses are recomputed besides on interface and hub changes (the
/// connectivity report's mapped address has no change event of its own).
const ADDRESS_REFRESH: Duration = Duration::from_secs(60);

/// Starts the enabled parts with the endpoint (called once it listens, after the hub
/// client). Failures are logged and shown in `net.status`; the node runs without them.
pub fn start(daemon: &Arc<Daemon>) {
    let config = daemon.discovery_config.clone();
    if !config.dht.enabled && !config.lan.enabled {
        return;
    }
    let Some(network) = daemon.network.get() else {
        return;
    };
    let identity = network.endpoint.identity().clone();
    let (addresses_tx, addresses) = watch::channel(our_addresses(daemon));
    spawn_address_refresh(daemon, addresses_tx);
    let mut errors = Vec::new();
    let lan = config
        .lan
        .enabled
        .then(|| {
            if !config.lan.group.is_multicast() {
                errors.push(format!(
                    "lan: {} is not a multicast group",
                    config.lan.group
                ));
                return None;
            }
            let lan_config = LanConfig {
                group: config.lan.group,
                port: config.lan.port,
                interface: config.lan.interface,
                ..LanConfig::default()
            };
            LanDiscovery::start(
                identity.clone(),
                lan_config,
                addresses.clone(),
                daemon.shutdown.clone(),
            )
            .inspect(|lan| spawn_lan_events(daemon, lan))
            .map_err(|e| {
                allpeers_log::skin!("LAN discovery did not start: {e}");
                errors.push(format!("lan: {e}"));
            })
            .ok()
        })
        .flatten();
    allpeers_log::flesh!(
        dht = config.dht.enabled,
        lan = lan.is_some(),
        "discovery without a hub starting"
    );
    let _ = network.discovery.set(Discovery {
        dht: OnceLock::new(),
        lan,
        errors: Mutex::new(errors),
        addresses: addresses.clone(),
    });
    // The connector asks them when the hub cannot tell it where a peer is.
    if let Some(lan) = network.discovery.get().and_then(|d| d.lan.clone()) {
        network.connector.add_discovery(Arc::new(lan));
    }
    if config.dht.enabled {
        let dht_config = DhtConfig {
            bootstrap: config.dht.bootstrap.clone(),
            bind: config.dht.bind,
            ..DhtConfig::default()
        };
        spawn_dht_start(daemon, identity, dht_config, addresses);
    }
}

/// Starts the DHT node off the runtime: `mainline` resolves bootstrap host names with
/// blocking DNS, which must not stall the daemon's two workers.
fn spawn_dht_start(
    daemon: &Arc<Daemon>,
    identity: allpeers_net::Identity,
    config: DhtConfig,
    addresses: watch::Receiver<Vec<RecordAddress>>,
) {
    let weak = Arc::downgrade(daemon);
    tokio::spawn(async move {
        let started = tokio::task::spawn_blocking(move || DhtDiscovery::start(identity, config))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let Some(daemon) = weak.upgrade() else { return };
        let Some(running) = daemon.network.get().and_then(|n| n.discovery.get()) else {
            return;
        };
        match started {
            Ok(dht) => {
                dht.spawn_publisher(addresses, daemon.shutdown.clone());
                spawn_dht_events(&daemon, &dht);
                if let Some(network) = daemon.network.get() {
                    network.connector.add_discovery(Arc::new(dht.clone()));
                }
                let _ = running.dht.set(dht);
                crate::transfers::share_dht(&daemon);
            }
            Err(e) => {
                allpeers_log::skin!("DHT discovery did not start: {e}");
                running
                    .errors
                    .lock()
                    .expect("discovery errors lock")
                    .push(format!("dht: {e}"));
            }
        }
    });
}

/// The addresses our record carries now: the hub's view of our QUIC socket and STUN's
/// mapping (when known), then our listening addresses.
fn our_addresses(daemon: &Daemon) -> Vec<RecordAddress> {
    let Some(network) = daemon.network.get() else {
        return Vec::new();
    };
    let status = network.status.current();
    let observed = daemon.hub().and_then(|h| h.status().observed);
    let mapped = network.udp_mapped();
    record_addresses(
        &network.endpoint.local_addresses(),
        &status.addresses,
        observed,
        mapped,
    )
}

/// Recomputes our addresses when the interfaces or the hub line change, and every
/// [`ADDRESS_REFRESH`]; the publishers (DHT, LAN) react to a change.
fn spawn_address_refresh(daemon: &Arc<Daemon>, addresses: watch::Sender<Vec<RecordAddress>>) {
    let Some(network) = daemon.network.get() else {
        return;
    };
    let mut status = network.status.watch();
    let mut hub_events = daemon.hub().map(|h| h.events());
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = status.changed() => if changed.is_err() { break },
                _ = async {
                    match hub_events.as_mut() {
                        Some(events) => { let _ = events.recv().await; }
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep(ADDRESS_REFRESH) => {}
            }
            let Some(daemon) = weak.upgrade() else { break };
            let now = our_addresses(&daemon);
            addresses.send_if_modified(|current| {
                let changed = *current != now;
                if changed {
                    *current = now;
                }
                changed
            });
        }
    });
}

/// Each publish of our record becomes a `net.changed` event
/// (`{"dht_published": {"at_ms", "stored_at", "addresses"}}`).
fn spawn_dht_events(daemon: &Arc<Daemon>, dht: &DhtDiscovery) {
    let mut status = dht.watch_status();
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        let mut published = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = status.changed() => if changed.is_err() { break },
            }
            let s = status.borrow_and_update().clone();
            if s.last_publish_ms == published {
                continue;
            }
            published = s.last_publish_ms;
            let Some(daemon) = weak.upgrade() else { break };
            daemon.publish(
                topics::NET_CHANGED,
                json!({"dht_published": {
                    "at_ms": s.last_publish_ms, "stored_at": s.last_publish_stored_at,
                    "addresses": s.published,
                }}),
            );
        }
    });
}

fn spawn_lan_events(daemon: &Arc<Daemon>, lan: &LanDiscovery) {
    daemon.forward_events(lan.events(), |_, event| {
        Some((
            topics::NET_CHANGED,
            json!({"lan_peer": {
                "peer": event.peer, "addresses": event.addresses,
                "from": event.from, "new": event.new,
            }}),
        ))
    });
}

/// `net.status`'s `discovery` object.
pub fn status(daemon: &Daemon) -> Value {
    let config = &daemon.discovery_config;
    let Some(running) = daemon.network.get().and_then(|n| n.discovery.get()) else {
        return json!({
            "dht": {"enabled": config.dht.enabled, "running": false},
            "lan": {"enabled": config.lan.enabled, "running": false},
        });
    };
    let dht = match running.dht.get() {
        Some(dht) => {
            let s = dht.status();
            json!({
                "enabled": true, "running": true,
                "bootstrapped": s.bootstrapped,
                "last_publish_ms": s.last_publish_ms,
                "last_publish_stored_at": s.last_publish_stored_at,
                "last_publish_error": s.last_publish_error,
                "lookups": s.lookups,
                "lookups_found": s.lookups_found,
                "last_lookup_error": s.last_lookup_error,
            })
        }
        None => {
            json!({"enabled": config.dht.enabled, "running": false})
        }
    };
    let lan = match &running.lan {
        Some(lan) => {
            let stats = lan.stats();
            let peers: Vec<Value> = lan
                .peers()
                .iter()
                .map(|p| json!({"peer": p.peer, "addresses": p.addresses, "from": p.from}))
                .collect();
            let group = SocketAddr::from((lan.config().group, lan.config().port));
            json!({
                "enabled": true, "running": true,
                "group": group,
                "peers": peers,
                "announcements_sent": stats.announcements_sent,
                "refused": stats.refused,
                "last_refusal": stats.last_refusal,
            })
        }
        None => json!({"enabled": config.lan.enabled, "running": false}),
    };
    json!({
        "dht": dht,
        "lan": lan,
        "addresses": *running.addresses.borrow(),
        "errors": *running.errors.lock().expect("discovery errors lock"),
    })
}
