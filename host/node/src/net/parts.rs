//! The node's network, started once the identity is unlocked, as one value: the endpoint,
//! what watches it, the home hub's line, connectivity discovery, the connector and
//! discovery without a hub. The daemon holds it in one `OnceLock`; every area reads it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use allpeers_discovery::dht::DhtDiscovery;
use allpeers_discovery::lan::LanDiscovery;
use allpeers_hub_client::HubClient;
use allpeers_nat::connectivity::monitor::{ConnectivityMonitor, MonitorState};
use allpeers_nat::connector::Connector;
use allpeers_net::Endpoint;
use allpeers_net::record::RecordAddress;
use allpeers_net::status::StatusMonitor;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The running network.
pub struct Network {
    pub endpoint: Endpoint,
    pub status: Arc<StatusMonitor>,
    /// The home hub's client (None without a configured hub).
    pub hub: Option<HubClient>,
    /// Connectivity discovery through the home hub (None without one).
    pub connectivity: Option<ConnectivityMonitor>,
    /// Reaches peers by the cheapest path that works (direct, callback, punch, relay).
    pub connector: Connector,
    /// Guest lines to the home hubs of contacts homed elsewhere.
    pub foreign: Arc<crate::hub::foreign::ForeignHubs>,
    /// Discovery without a hub (DHT, LAN), when enabled in `config.json`.
    pub discovery: OnceLock<Discovery>,
}

impl Network {
    /// Our UDP mapping as STUN last reported it (for the discovery record).
    pub fn udp_mapped(&self) -> Option<SocketAddr> {
        self.connectivity.as_ref()?.current().last?.udp_mapped
    }

    /// `net.status`'s `connectivity` object: `state` (`unknown`, `checking`, `done`) and the
    /// last report's fields.
    pub fn connectivity_json(&self) -> Value {
        let Some(monitor) = &self.connectivity else {
            return json!({
                "state": "unknown",
                "reason": "no home hub is configured: discovery needs one",
            });
        };
        let MonitorState { checking, last, .. } = monitor.current();
        let mut value = match &last {
            Some(report) => serde_json::to_value(report).unwrap_or_else(|_| json!({})),
            None => json!({}),
        };
        value["state"] = json!(match (checking, &last) {
            (true, _) => "checking",
            (false, Some(_)) => "done",
            (false, None) => "unknown",
        });
        if last.is_none() && !checking {
            value["reason"] = json!("not checked yet (waiting for the hub line)");
        }
        value
    }
}

/// The running parts of discovery without a hub.
pub struct Discovery {
    /// Set once the DHT node is up (it starts in the background).
    pub dht: OnceLock<DhtDiscovery>,
    pub lan: Option<LanDiscovery>,
    /// Why a part did not start.
    pub errors: Mutex<Vec<String>>,
    pub addresses: watch::Receiver<Vec<RecordAddress>>,
}
