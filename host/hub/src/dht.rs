//! The hub's address record on the Mainline DHT (issue 18: hubs find each other's addresses
//! without a central list).
//!
//! A `name@hub` certificate names its hub's PeerId; a node holding such a certificate knows
//! the key but perhaps not where the hub is now. The hub publishes its advertised addresses
//! as the same signed record nodes publish ([`allpeers_discovery::dht`]): a BEP 44 mutable
//! item under the hub's own key, whose value is an [`allpeers_net::record::AddressRecord`]
//! signed again by that key. A reader looks it up by the key it already trusts, so a record
//! signed by any other key (a hub impersonating another) is refused by the DHT nodes and by
//! the reader; this is key pinning with no list of hubs anywhere.
//!
//! Every instance of a cluster publishes the same record (same key, same advertised
//! addresses, the name's shared front); the newest sequence number wins, which is harmless.

use allpeers_discovery::dht::{DhtConfig as Bep44Config, DhtDiscovery};
use allpeers_net::record::{AddressKind, RecordAddress};
use allpeers_net::{Address, Identity};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The running publisher: republishes on its own (every 30 minutes, sooner after a failed
/// publish) until dropped.
pub struct DhtPublisher {
    pub discovery: DhtDiscovery,
    /// The addresses published (kept so the publisher's watch stays open).
    _addresses: watch::Sender<Vec<RecordAddress>>,
    cancel: CancellationToken,
}

impl Drop for DhtPublisher {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Joins the DHT and keeps the hub's record of `advertised` published.
pub async fn publish(
    identity: Identity,
    config: &crate::config::DhtConfig,
    advertised: &[Address],
) -> anyhow::Result<DhtPublisher> {
    let bep44 = Bep44Config {
        bootstrap: config.bootstrap.clone(),
        bind: config.bind,
        ..Bep44Config::default()
    };
    // Off the runtime: mainline resolves bootstrap host names with blocking DNS.
    let discovery = tokio::task::spawn_blocking(move || DhtDiscovery::start(identity, bep44))
        .await?
        .map_err(|e| anyhow::anyhow!("dht: {e}"))?;
    let records: Vec<RecordAddress> = advertised
        .iter()
        .map(|&address| RecordAddress {
            kind: AddressKind::Local,
            address,
        })
        .collect();
    let (addresses, watched) = watch::channel(records);
    let cancel = CancellationToken::new();
    discovery.spawn_publisher(watched, cancel.clone());
    Ok(DhtPublisher {
        discovery,
        _addresses: addresses,
        cancel,
    })
}
