//! Keeps the connectivity report fresh: runs [`super::discover`] when the hub line comes up,
//! when the interface addresses change (a [`StatusMonitor`] event), and every
//! [`MonitorConfig::every`]; never two runs closer than [`MonitorConfig::min_interval`] (the
//! hub rate-limits TCP probes). The state is a `watch` channel: the node shows the last
//! report in `net.status` and publishes each new one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ConnectivityReport, DiscoveryConfig};
use allpeers_hub_client::{HubClient, HubEvent, HubState};
use allpeers_net::endpoint::Endpoint;
use allpeers_net::status::StatusMonitor;

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub min_interval: Duration,
    pub every: Duration,
    pub discovery: DiscoveryConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            min_interval: Duration::from_secs(15),
            every: Duration::from_secs(30 * 60),
            discovery: DiscoveryConfig::default(),
        }
    }
}

/// What the monitor knows.
#[derive(Debug, Clone, Default)]
pub struct MonitorState {
    /// A run is in progress.
    pub checking: bool,
    pub last: Option<ConnectivityReport>,
    /// Runs finished so far.
    pub runs: u64,
}

/// A running connectivity monitor; dropping it stops it.
pub struct ConnectivityMonitor {
    state: watch::Receiver<MonitorState>,
    task: JoinHandle<()>,
}

impl Drop for ConnectivityMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectivityMonitor {
    pub fn start(
        endpoint: Endpoint,
        hub: HubClient,
        status: &Arc<StatusMonitor>,
        config: MonitorConfig,
    ) -> ConnectivityMonitor {
        let (tx, rx) = watch::channel(MonitorState::default());
        // Subscribed before the first look at the hub's state: no Online event is missed.
        let hub_events = hub.events();
        let status_events = status.subscribe();
        let task = tokio::spawn(run(endpoint, hub, hub_events, status_events, config, tx));
        ConnectivityMonitor { state: rx, task }
    }

    pub fn current(&self) -> MonitorState {
        self.state.borrow().clone()
    }

    /// Changes of the state (each finished run bumps `runs`).
    pub fn watch(&self) -> watch::Receiver<MonitorState> {
        self.state.clone()
    }
}

async fn run(
    endpoint: Endpoint,
    hub: HubClient,
    mut hub_events: broadcast::Receiver<HubEvent>,
    mut status_events: broadcast::Receiver<allpeers_net::status::StatusEvent>,
    config: MonitorConfig,
    state: watch::Sender<MonitorState>,
) {
    use broadcast::error::RecvError;
    let mut due = (hub.state() == HubState::Online).then(Instant::now);
    let mut last_run: Option<Instant> = None;
    loop {
        let at = due.map(|d| match last_run {
            Some(l) => d.max(l + config.min_interval),
            None => d,
        });
        let timer = async {
            match at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = hub_events.recv() => match event {
                Ok(HubEvent::Online { .. }) => due = Some(Instant::now()),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            event = status_events.recv() => match event {
                Ok(_) => due = Some(Instant::now()),
                Err(RecvError::Lagged(_)) => due = Some(Instant::now()),
                Err(RecvError::Closed) => return,
            },
            _ = timer => {
                last_run = Some(Instant::now());
                if hub.state() != HubState::Online {
                    // The next Online event brings it back.
                    due = None;
                    continue;
                }
                due = Some(Instant::now() + config.every);
                state.send_modify(|s| s.checking = true);
                let report = super::discover(
                    &endpoint,
                    hub.hub(),
                    hub.status().observed,
                    &config.discovery,
                )
                .await;
                tracing::info!(
                    nat_type = ?report.nat_type,
                    mapped = ?report.udp_mapped,
                    tcp_reachable = ?report.tcp.as_ref().map(|t| t.reachable),
                    errors = ?report.errors,
                    "connectivity checked in {} ms",
                    report.duration_ms
                );
                state.send_modify(|s| {
                    s.checking = false;
                    s.last = Some(report);
                    s.runs += 1;
                });
            }
        }
    }
}
