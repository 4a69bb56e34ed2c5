//! `allpeers-discovery`: finding peers with no hub.
//!
//! * [`dht`] — our signed address record as a BEP 44 mutable item on the BitTorrent Mainline
//!   DHT, under the node's own key; lookups by PeerId.
//! * [`lan`] — signed announcements and queries by UDP multicast on the local network.
//!
//! Both implement [`allpeers_net::discovery::Discovery`], which the connector consults when
//! the hub cannot tell it where a peer is; the record itself (I/O-free, signed) is
//! [`allpeers_net::record`]. Nodes link this crate; hubs link it only to publish their own
//! record (`allpeers_hub::dht`, when configured), so nodes holding a hub's key find it.

pub mod dht;
pub mod lan;

use std::time::Duration;

use allpeers_model::PeerId;
use allpeers_net::record::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("cannot start the DHT node: {0}")]
    DhtStart(std::io::Error),
    #[error("DHT publish failed: {0}")]
    DhtPut(String),
    #[error("no address record for {0} on the DHT")]
    NotFound(PeerId),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("too many lookups at once")]
    Busy,
    #[error("LAN discovery socket: {0}")]
    LanSocket(std::io::Error),
}
