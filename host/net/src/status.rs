//! Network status: online or offline, the machine's addresses, the endpoint's listening
//! addresses, and events when they change. The comparison is pure ([`diff`]); a monitor
//! polls the interfaces (there is no portable change notification) and publishes changes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::transport::Address;

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NetworkStatus {
    /// True when some non-loopback interface has an address.
    pub online: bool,
    /// Non-loopback interface addresses.
    pub addresses: Vec<IpAddr>,
    /// Where the endpoint listens.
    pub listening: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StatusEvent {
    Online,
    Offline,
    AddressAdded { address: IpAddr },
    AddressRemoved { address: IpAddr },
}

/// What changed from `old` to `new`.
pub fn diff(old: &NetworkStatus, new: &NetworkStatus) -> Vec<StatusEvent> {
    let mut events = Vec::new();
    for a in &old.addresses {
        if !new.addresses.contains(a) {
            events.push(StatusEvent::AddressRemoved { address: *a });
        }
    }
    for a in &new.addresses {
        if !old.addresses.contains(a) {
            events.push(StatusEvent::AddressAdded { address: *a });
        }
    }
    match (old.online, new.online) {
        (false, true) => events.push(StatusEvent::Online),
        (true, false) => events.push(StatusEvent::Offline),
        _ => {}
    }
    events
}

/// The machine's non-loopback addresses.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// Watches the network status.
pub struct StatusMonitor {
    current: watch::Sender<NetworkStatus>,
    events: broadcast::Sender<StatusEvent>,
}

impl StatusMonitor {
    pub fn new(listening: Vec<Address>) -> Arc<Self> {
        let addresses = interface_addresses();
        let status = NetworkStatus {
            online: !addresses.is_empty(),
            addresses,
            listening,
        };
        Arc::new(StatusMonitor {
            current: watch::channel(status).0,
            events: broadcast::channel(64).0,
        })
    }

    pub fn current(&self) -> NetworkStatus {
        self.current.borrow().clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.events.subscribe()
    }

    pub fn watch(&self) -> watch::Receiver<NetworkStatus> {
        self.current.subscribe()
    }

    /// Applies observed addresses; publishes and returns what changed.
    pub fn update(&self, addresses: Vec<IpAddr>) -> Vec<StatusEvent> {
        let old = self.current();
        let new = NetworkStatus {
            online: !addresses.is_empty(),
            addresses,
            listening: old.listening.clone(),
        };
        let events = diff(&old, &new);
        if !events.is_empty() {
            for e in &events {
                tracing::info!(?e, "network status changed");
                let _ = self.events.send(e.clone());
            }
            self.current.send_replace(new);
        }
        events
    }

    /// Re-reads the interfaces.
    pub fn refresh(&self) -> Vec<StatusEvent> {
        self.update(interface_addresses())
    }

    /// Polls every `interval` until the returned task is aborted.
    pub fn spawn_polling(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                me.refresh();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_events() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let monitor = StatusMonitor {
            current: watch::channel(NetworkStatus::default()).0,
            events: broadcast::channel(8).0,
        };
        let mut rx = monitor.subscribe();
        assert_eq!(
            monitor.update(vec![a]),
            vec![
                StatusEvent::AddressAdded { address: a },
                StatusEvent::Online
            ]
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            StatusEvent::AddressAdded { address: a }
        );
        assert!(monitor.update(vec![a]).is_empty());
        assert_eq!(
            monitor.update(vec![b]),
            vec![
                StatusEvent::AddressRemoved { address: a },
                StatusEvent::AddressAdded { address: b }
            ]
        );
        assert_eq!(
            monitor.update(vec![]),
            vec![
                StatusEvent::AddressRemoved { address: b },
                StatusEvent::Offline
            ]
        );
        assert!(!monitor.current().online);
    }
}
