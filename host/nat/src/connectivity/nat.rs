//! The NAT classifier: a pure function from STUN test results (RFC 5780 §4.3 and §4.4) to
//! the mapping and filtering behaviour and a summary type. No I/O: the tests are run by
//! [`super::discover`], and unit-tested here with every combination.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// How the NAT maps an internal address to external ones (RFC 4787 / RFC 5780 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// No NAT: the mapped address is our own.
    None,
    /// One external address for every destination (hole punching works).
    EndpointIndependent,
    /// A new mapping per destination IP.
    AddressDependent,
    /// A new mapping per destination IP and port ("symmetric").
    AddressAndPortDependent,
    /// The tests could not tell (no STUN answer, or the server has no second address).
    Unknown,
}

/// Which inbound packets the NAT or firewall lets through to a mapping (RFC 5780 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// From anywhere.
    EndpointIndependent,
    /// Only from IPs we sent to.
    AddressDependent,
    /// Only from IP:port pairs we sent to.
    AddressAndPortDependent,
    Unknown,
}

/// A one-word summary, in the classic names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatType {
    /// Public address, nothing filtered.
    Open,
    /// Public address behind a firewall that filters unsolicited packets.
    Firewalled,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Mapping depends on the destination.
    Symmetric,
    /// No STUN answer at all: UDP is blocked (or the server is down).
    UdpBlocked,
    Unknown,
}

/// Outcome of one binding test: the mapped address, or no answer.
pub type Answer = Option<SocketAddr>;

/// The raw results of the RFC 5780 tests, as [`super::discover`] collects them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResults {
    /// The local address of the socket that ran the mapping tests.
    pub local: Option<SocketAddr>,
    /// Mapping test I: request to the primary address.
    pub primary: Answer,
    /// The server's OTHER-ADDRESS, from test I.
    pub other: Option<SocketAddr>,
    /// Mapping test II: request to (other IP, primary port).
    pub alternate_ip: Answer,
    /// Mapping test III: request to (other IP, other port).
    pub alternate_both: Answer,
    /// Filtering test II (fresh socket): CHANGE-REQUEST IP and port — answered?
    pub change_ip_port_answered: Option<bool>,
    /// Filtering test III: CHANGE-REQUEST port only — answered?
    pub change_port_answered: Option<bool>,
}

/// What the classifier concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub nat_type: NatType,
}

/// Mapping behaviour from tests I-III (RFC 5780 §4.3).
pub fn mapping(r: &TestResults) -> Mapping {
    let Some(m1) = r.primary else {
        return Mapping::Unknown;
    };
    if let Some(local) = r.local
        && same_address(local, m1)
    {
        return Mapping::None;
    }
    let Some(m2) = r.alternate_ip else {
        return Mapping::Unknown;
    };
    if m2 == m1 {
        return Mapping::EndpointIndependent;
    }
    match r.alternate_both {
        Some(m3) if m3 == m2 => Mapping::AddressDependent,
        Some(_) => Mapping::AddressAndPortDependent,
        None => Mapping::Unknown,
    }
}

/// A socket bound to 0.0.0.0 reports an unspecified IP: then only the port can be compared.
fn same_address(local: SocketAddr, mapped: SocketAddr) -> bool {
    if local.ip().is_unspecified() {
        // Without knowing which interface was used, a matching port alone is not proof of
        // "no NAT" (port-preserving NATs keep it): the caller passes the real local IP.
        return false;
    }
    local == mapped
}

/// Filtering behaviour from tests II-III (RFC 5780 §4.4).
pub fn filtering(r: &TestResults) -> Filtering {
    match (r.change_ip_port_answered, r.change_port_answered) {
        (Some(true), _) => Filtering::EndpointIndependent,
        (Some(false), Some(true)) => Filtering::AddressDependent,
        (Some(false), Some(false)) => Filtering::AddressAndPortDependent,
        _ => Filtering::Unknown,
    }
}

/// The whole classification.
pub fn classify(r: &TestResults) -> Classification {
    let mapping = mapping(r);
    let filtering = filtering(r);
    let nat_type = if r.primary.is_none() {
        NatType::UdpBlocked
    } else {
        match (mapping, filtering) {
            (Mapping::None, Filtering::EndpointIndependent) => NatType::Open,
            (Mapping::None, Filtering::Unknown) => NatType::Unknown,
            (Mapping::None, _) => NatType::Firewalled,
            (Mapping::AddressDependent | Mapping::AddressAndPortDependent, _) => NatType::Symmetric,
            (Mapping::EndpointIndependent, Filtering::EndpointIndependent) => NatType::FullCone,
            (Mapping::EndpointIndependent, Filtering::AddressDependent) => NatType::RestrictedCone,
            (Mapping::EndpointIndependent, Filtering::AddressAndPortDependent) => {
                NatType::PortRestrictedCone
            }
            _ => NatType::Unknown,
        }
    };
    Classification {
        mapping,
        filtering,
        nat_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn base() -> TestResults {
        TestResults {
            local: a("198.18.1.2:5000"),
            primary: a("203.0.113.20:5000"),
            other: a("203.0.113.11:3479"),
            alternate_ip: a("203.0.113.20:5000"),
            alternate_both: a("203.0.113.20:5000"),
            change_ip_port_answered: Some(true),
            change_port_answered: Some(true),
        }
    }

    #[test]
    fn mapping_behaviours() {
        let r = base();
        assert_eq!(mapping(&r), Mapping::EndpointIndependent);
        let r = TestResults {
            alternate_ip: a("203.0.113.20:6000"),
            alternate_both: a("203.0.113.20:6000"),
            ..base()
        };
        assert_eq!(mapping(&r), Mapping::AddressDependent);
        let r = TestResults {
            alternate_ip: a("203.0.113.20:6000"),
            alternate_both: a("203.0.113.20:7000"),
            ..base()
        };
        assert_eq!(mapping(&r), Mapping::AddressAndPortDependent);
        let r = TestResults {
            alternate_ip: a("203.0.113.20:6000"),
            alternate_both: None,
            ..base()
        };
        assert_eq!(mapping(&r), Mapping::Unknown);
        let r = TestResults {
            alternate_ip: None,
            ..base()
        };
        assert_eq!(mapping(&r), Mapping::Unknown);
        let r = TestResults {
            local: a("203.0.113.20:5000"),
            ..base()
        };
        assert_eq!(mapping(&r), Mapping::None);
        // An unspecified local IP never counts as "no NAT" on the port alone.
        let r = TestResults {
            local: a("0.0.0.0:5000"),
            ..base()
        };
        assert_eq!(mapping(&r), Mapping::EndpointIndependent);
    }

    #[test]
    fn filtering_behaviours() {
        let mut r = base();
        assert_eq!(filtering(&r), Filtering::EndpointIndependent);
        r.change_ip_port_answered = Some(false);
        assert_eq!(filtering(&r), Filtering::AddressDependent);
        r.change_port_answered = Some(false);
        assert_eq!(filtering(&r), Filtering::AddressAndPortDependent);
        r.change_port_answered = None;
        assert_eq!(filtering(&r), Filtering::Unknown);
        r.change_ip_port_answered = None;
        assert_eq!(filtering(&r), Filtering::Unknown);
    }

    #[test]
    fn summary_types() {
        let t = |r: &TestResults| classify(r).nat_type;
        assert_eq!(t(&base()), NatType::FullCone);
        let mut r = base();
        r.change_ip_port_answered = Some(false);
        assert_eq!(t(&r), NatType::RestrictedCone);
        r.change_port_answered = Some(false);
        assert_eq!(t(&r), NatType::PortRestrictedCone);
        r.alternate_ip = a("203.0.113.20:6001");
        r.alternate_both = a("203.0.113.20:6002");
        assert_eq!(t(&r), NatType::Symmetric);
        let open = TestResults {
            local: a("203.0.113.20:5000"),
            ..base()
        };
        assert_eq!(t(&open), NatType::Open);
        let fw = TestResults {
            change_ip_port_answered: Some(false),
            change_port_answered: Some(false),
            ..open.clone()
        };
        assert_eq!(t(&fw), NatType::Firewalled);
        assert_eq!(t(&TestResults::default()), NatType::UdpBlocked);
        let single = TestResults {
            other: None,
            alternate_ip: None,
            alternate_both: None,
            change_ip_port_answered: None,
            change_port_answered: None,
            ..base()
        };
        assert_eq!(classify(&single).mapping, Mapping::Unknown);
        assert_eq!(t(&single), NatType::Unknown);
    }
}
