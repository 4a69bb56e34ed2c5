//! The `transfers` area: downloads and uploads through the transfer crate's download manager (BitTorrent for now).
//!
//! * [`convert`] — domain rules with no I/O: the engine's types to the API's and back, where a `.torrent` comes
//!   from (a path, base64, or a source we refuse), errors to the area's codes, and which progress events go out.
//! * [`api`] — the `transfers.*` and `net.limits.*` methods ([`AREA`]).
//! * [`state`] — the running manager, as the daemon holds it.
//! * here — the daemon's glue: the manager started with the daemon (restoring and resuming the persisted
//!   transfers), its events forwarded to the bus, and stopped with the daemon.

pub mod api;
pub mod convert;
pub mod state;

use std::sync::Arc;

use allpeers_transfer::bt::dht::{DhtNodeConfig, MainlineDht};
use allpeers_transfer::bt::engine::EngineConfig;
use allpeers_transfer::manager::{Manager, ManagerConfig, TransferEvent};
use allpeers_transfer::throttle::Limits;
use allpeers_transfer::web::WebClient;

pub use api::AREA;
pub use state::Transfers;

use crate::config::TransfersSection;
use crate::daemon::state::Daemon;

/// Starts the manager (which resumes the transfers it persisted) and forwards its events; a failure (the port is
/// taken, the state dir unreadable) is logged and kept for the area's answers, and the daemon runs on without it.
pub async fn start(daemon: &Arc<Daemon>, config: &TransfersSection) {
    let mut engine = EngineConfig::new(config.listen, daemon.paths.transfers());
    engine.space_limit = config.space_limit;
    engine.use_trackers = config.use_trackers;
    engine.encryption = config.encryption;
    if !config.ca_roots.is_empty() {
        match WebClient::with_pem_roots(&config.ca_roots) {
            Ok(web) => engine.web = web,
            Err(error) => {
                // Without the roots the user's trackers would fail one by one with a certificate error: say why
                // once, and keep the area down as for any other start failure.
                allpeers_log::skin!(%error, "transfers: the manager did not start");
                let _ = daemon.transfers.set(Err(error.to_string()));
                return;
            }
        }
    }
    // One DHT node per daemon: discovery's when it runs one (handed over once it is up, see `share_dht`), else our
    // own, started when a torrent first needs it.
    let shares_dht = config.dht.enabled && daemon.discovery_config.dht.enabled;
    if config.dht.enabled && !shares_dht {
        engine.dht = Some(Arc::new(MainlineDht::new(DhtNodeConfig {
            bootstrap: config.dht.bootstrap.clone(),
            bind: config.dht.bind,
            port: config.dht.port,
        })));
    }
    let mut manager_config = ManagerConfig::new(engine);
    manager_config.max_active = config.max_active.max(1);
    manager_config.global_limits = Limits {
        down: config.down_limit,
        up: config.up_limit,
    };
    manager_config.dial = Some(crate::files::service::dial(Arc::downgrade(daemon)));
    // A downloaded file is served on to the other members, as the files we share are.
    match crate::files::service::outboards(daemon) {
        Ok(outboards) => manager_config.outboards = Some(outboards),
        Err(error) => {
            allpeers_log::marrow!(%error, "transfers: downloaded files will not be served on")
        }
    }
    let result = match Manager::start(manager_config).await {
        Ok(manager) => {
            let mut gate = convert::EventGate::default();
            daemon.forward_events(manager.subscribe(), move |_, event: TransferEvent| {
                gate.pass(event)
            });
            allpeers_log::flesh!(
                listen = %manager.engine().listen_addr(),
                transfers = manager.list().len(),
                "transfers: manager started"
            );
            Ok(Transfers {
                manager,
                downloads: std::sync::Mutex::new(
                    config
                        .download_dir
                        .clone()
                        .unwrap_or_else(|| daemon.paths.downloads()),
                ),
                shares_dht,
            })
        }
        Err(error) => {
            allpeers_log::skin!(%error, "transfers: the manager did not start");
            Err(error.to_string())
        }
    };
    let _ = daemon.transfers.set(result);
    share_dht(daemon);
}

/// Hands discovery's DHT node to the engine when both run (called by each side once it is up: whichever comes
/// second does it).
pub fn share_dht(daemon: &Daemon) {
    let Some(Ok(transfers)) = daemon.transfers.get() else {
        return;
    };
    let dht = daemon
        .network
        .get()
        .and_then(|network| network.discovery.get())
        .and_then(|discovery| discovery.dht.get());
    if let Some(dht) = dht
        && transfers.shares_dht
    {
        allpeers_log::flesh!("transfers: torrents find peers on discovery's DHT node");
        transfers
            .manager
            .engine()
            .set_peer_finder(Some(Arc::new(MainlineDht::shared(dht.node()))));
    }
}

/// Stops every transfer cleanly; their data and journals stay, so the next start resumes them.
pub async fn stop(daemon: &Daemon) {
    if let Some(Ok(transfers)) = daemon.transfers.get() {
        transfers.manager.shutdown().await;
    }
}
