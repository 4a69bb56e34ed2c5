//! What the rest of the stack needs of discovery without a hub, apart from how it is done:
//! the [`Discovery`] trait the connector consults (implemented by the DHT and LAN discovery
//! of `allpeers-discovery`), and [`record_addresses`], the addresses a node announces.
//!
//! Discovery only decides where to dial: the TLS handshake still pins the key.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use allpeers_model::PeerId;

use crate::record::{self, AddressKind, RecordAddress};
use crate::transport::Address;

/// A way to find a peer's addresses when its hub cannot tell us (the DHT, the LAN).
pub trait Discovery: Send + Sync {
    /// A short name for reports and logs (`"dht"`, `"lan"`).
    fn name(&self) -> &'static str;
    /// Whether a lookup only reads what this source already heard (the LAN's cache): free,
    /// so asked first and on every connect. Others go out to the network (the DHT) and are
    /// asked about one peer at most once a minute.
    fn cached(&self) -> bool {
        false
    }
    /// `peer`'s addresses as this source knows them, checked (signed by `peer`, fresh).
    /// Bounded in time by the implementation; an error says why nothing was found.
    fn lookup(
        &self,
        peer: PeerId,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Address>, String>> + Send + '_>>;
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
