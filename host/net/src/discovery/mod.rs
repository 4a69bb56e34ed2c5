//! Discovery without a hub: finding a peer's addresses when its hub cannot tell us.
//!
//! * [`record`] — the signed address record (I/O-free): PeerId, addresses with their kind,
//!   issue time; bounded encoding; the signer must be the PeerId.
//! * [`dht`] — the record as a BEP 44 mutable item on the BitTorrent Mainline DHT, under
//!   the node's own key; lookups by PeerId.
//! * [`lan`] — signed announcements and queries by UDP multicast on the local network.
//!
//! Both feed what they learn into the [`Endpoint`](crate::Endpoint)'s address book; the
//! TLS handshake still pins the key, so discovery only decides where to dial.

pub mod dht;
pub mod lan;
pub mod record;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use allpeers_model::PeerId;

pub use record::{AddressKind, AddressRecord, RecordAddress, RecordError};

use crate::transport::Address;

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

/// The addresses to put in our record, most useful first: the public ones others saw
/// (`observed`: the hub's view of our QUIC socket; `mapped`: STUN's), then every listening
/// address, an unspecified listening IP expanded to each interface address. Loopback
/// addresses are kept only when we listen on loopback explicitly (tests, single-host use).
pub fn record_addresses(
    listening: &[Address],
    interface_ips: &[IpAddr],
    observed_quic: Option<SocketAddr>,
    mapped_udp: Option<SocketAddr>,
) -> Vec<RecordAddress> {
    let mut out = Vec::new();
    if let Some(addr) = observed_quic {
        out.push(RecordAddress {
            kind: AddressKind::Observed,
            address: Address::quic(addr),
        });
    }
    if let Some(addr) = mapped_udp {
        out.push(RecordAddress {
            kind: AddressKind::Mapped,
            address: Address::quic(addr),
        });
    }
    for listen in listening {
        let ips: Vec<IpAddr> = if listen.addr.ip().is_unspecified() {
            interface_ips
                .iter()
                .filter(|ip| ip.is_ipv4() == listen.addr.is_ipv4() || listen.addr.is_ipv6())
                .copied()
                .collect()
        } else {
            vec![listen.addr.ip()]
        };
        for ip in ips {
            out.push(RecordAddress {
                kind: AddressKind::Local,
                address: Address {
                    transport: listen.transport,
                    addr: SocketAddr::new(ip, listen.addr.port()),
                },
            });
        }
    }
    // Capped and deduplicated here already, so callers comparing lists (to republish on a
    // change) compare what will be published.
    record::bounded_addresses(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_come_first_and_wildcards_expand() {
        let listening = [
            Address::quic("0.0.0.0:4433".parse().unwrap()),
            Address::tcp("127.0.0.1:4434".parse().unwrap()),
        ];
        let ips: Vec<IpAddr> = vec![
            "198.18.0.5".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ];
        let observed: SocketAddr = "203.0.113.7:5000".parse().unwrap();
        let got = record_addresses(&listening, &ips, Some(observed), Some(observed));
        let addrs: Vec<String> = got.iter().map(|a| a.address.to_string()).collect();
        assert_eq!(
            addrs,
            [
                Address::quic(observed).to_string(),
                Address::quic("198.18.0.5:4433".parse().unwrap()).to_string(),
                Address::tcp("127.0.0.1:4434".parse().unwrap()).to_string(),
            ]
        );
        assert_eq!(got[0].kind, AddressKind::Observed);
        assert_eq!(got[1].kind, AddressKind::Local);
    }
}
