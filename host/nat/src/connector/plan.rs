//! Which way to connect: a pure function from both peers' NAT facts to what each side does.
//! Both sides run it on the same inputs (the facts travel in the signals), so they agree on
//! who dials, who punches, who sprays probes and who opens the extra sockets, without
//! another round trip. Unit-tested over every pair of NAT behaviours.
//!
//! The methods, cheapest first:
//! * **direct**: dial the other's addresses; works when its filter lets anyone in
//!   (endpoint-independent filtering, or no NAT).
//! * **callback**: the target dials the requester, whose filter lets anyone in.
//! * **hole punch** (both mappings endpoint-independent): the target sends punch packets to
//!   the requester's public address, which opens its own NAT's filter for the requester; the
//!   requester dials, and its dial opens its own filter for the replies.
//! * **hard side** (one mapping depends on the destination, "symmetric"): its packets to us
//!   come from a port nobody can know in advance. If the easy side filters by address only,
//!   one punch to the hard side's IP opens it for every port, and the hard side dials. If the
//!   easy side filters by address *and port*, the two meet by the birthday paradox: the hard
//!   side opens many sockets, each sending towards the easy side (each gets its own mapping);
//!   the easy side sprays probes at predicted and then random ports of the hard side's IP;
//!   the first socket a probe reaches dials from that very mapping.
//! * **TCP**: dial a peer whose TCP listener the hub found reachable (callback likewise);
//!   without UDP and without a reachable listener, both sides connect to each other at once
//!   from announced ports (TCP simultaneous open), which port-preserving NATs let through.
//! * **relay** through the hub, when none of these can work (both symmetric, or no UDP and a
//!   symmetric NAT on one side), and as the fallback while punching; a later
//!   successful punch replaces the relayed connection.

use serde::{Deserialize, Serialize};

use crate::connectivity::ConnectivityReport;
use crate::connectivity::nat::{Filtering, Mapping, NatType};

/// What a peer knows about its own network (from connectivity discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub mapping: Mapping,
    pub filtering: Filtering,
    /// UDP reaches the internet (a STUN answer came back).
    pub udp: bool,
    /// The hub reached our TCP listener from outside.
    pub tcp_reachable: bool,
}

impl Facts {
    /// Nothing measured yet: assume a common home router, try everything.
    pub fn unknown() -> Facts {
        Facts {
            mapping: Mapping::Unknown,
            filtering: Filtering::Unknown,
            udp: true,
            tcp_reachable: false,
        }
    }

    pub fn from_report(r: &ConnectivityReport) -> Facts {
        Facts {
            mapping: r.mapping,
            filtering: r.filtering,
            udp: r.nat_type != NatType::UdpBlocked,
            tcp_reachable: r.tcp.as_ref().is_some_and(|t| t.reachable),
        }
    }

    /// Unsolicited UDP reaches us.
    fn open(&self) -> bool {
        self.udp && self.filtering == Filtering::EndpointIndependent
    }

    /// Our public UDP port depends on where we send (punching needs the other side's help).
    fn hard(&self) -> bool {
        matches!(
            self.mapping,
            Mapping::AddressDependent | Mapping::AddressAndPortDependent
        )
    }
}

/// What one side does once the signals are exchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    /// Dial the other's QUIC addresses from our own socket.
    pub dial_udp: bool,
    /// Dial the other's TCP addresses.
    pub dial_tcp: bool,
    /// Send punch packets to the other's public address and candidates (opens our filter).
    pub punch: bool,
    /// Spray probes at predicted and random ports of the other's public IP (we are the easy
    /// side facing a hard one, and our filter needs the exact port).
    pub spray: bool,
    /// Open extra sockets towards the other and dial from the first one a probe reaches (we
    /// are the hard side).
    pub birthday: bool,
    /// TCP simultaneous open with the other side (both do it), when UDP cannot work.
    pub tcp_punch: bool,
}

/// The plan for one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub requester: Actions,
    pub target: Actions,
    /// No direct path can work: relay at once instead of after the punching deadline.
    pub relay_now: bool,
}

/// The plan for `requester` connecting to `target`.
pub fn plan(requester: &Facts, target: &Facts) -> Plan {
    let mut r = Actions::default();
    let mut t = Actions::default();
    let udp = requester.udp && target.udp;
    if udp && target.open() {
        // The target lets anyone in: the requester's dial is all it takes.
        r.dial_udp = true;
    } else if udp && requester.open() {
        // The requester lets anyone in: the target calls back.
        t.dial_udp = true;
    } else if udp {
        match (requester.hard(), target.hard()) {
            (false, false) => {
                // Classic simultaneous open: the target punches, the requester dials.
                t.punch = true;
                r.punch = true;
                r.dial_udp = true;
            }
            (true, false) => easy_meets_hard(target, &mut t, &mut r),
            (false, true) => easy_meets_hard(requester, &mut r, &mut t),
            (true, true) => {}
        }
    }
    if target.tcp_reachable {
        r.dial_tcp = true;
    }
    if requester.tcp_reachable {
        t.dial_tcp = true;
    }
    // No UDP path and no TCP listener to dial: punch TCP, unless a NAT picks ports per
    // destination (its SYN would come from a port nobody announced).
    if !udp && !r.dial_tcp && !t.dial_tcp && !requester.hard() && !target.hard() {
        r.tcp_punch = true;
        t.tcp_punch = true;
    }
    let any = |a: &Actions| a.dial_udp || a.dial_tcp || a.birthday || a.tcp_punch;
    Plan {
        requester: r,
        target: t,
        relay_now: !any(&r) && !any(&t),
    }
}

/// The easy side's and the hard side's parts (see the module docs).
fn easy_meets_hard(easy: &Facts, easy_does: &mut Actions, hard_does: &mut Actions) {
    match easy.filtering {
        Filtering::EndpointIndependent => hard_does.dial_udp = true,
        Filtering::AddressAndPortDependent => {
            easy_does.spray = true;
            hard_does.birthday = true;
        }
        // Address-dependent (or unknown: the punch costs little and may be all it takes).
        Filtering::AddressDependent | Filtering::Unknown => {
            easy_does.punch = true;
            hard_does.dial_udp = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mapping: Mapping, filtering: Filtering) -> Facts {
        Facts {
            mapping,
            filtering,
            udp: true,
            tcp_reachable: false,
        }
    }
    fn full_cone() -> Facts {
        facts(Mapping::EndpointIndependent, Filtering::EndpointIndependent)
    }
    fn restricted() -> Facts {
        facts(Mapping::EndpointIndependent, Filtering::AddressDependent)
    }
    fn port_restricted() -> Facts {
        facts(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        )
    }
    fn symmetric() -> Facts {
        facts(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
        )
    }
    fn udp_blocked() -> Facts {
        Facts {
            udp: false,
            ..Facts::unknown()
        }
    }

    #[test]
    fn a_direct_path_in_every_cell_where_one_side_is_not_symmetric() {
        let kinds = [full_cone(), restricted(), port_restricted(), symmetric()];
        for r in &kinds {
            for t in &kinds {
                let p = plan(r, t);
                let both_symmetric = r.hard() && t.hard();
                assert_eq!(p.relay_now, both_symmetric, "{r:?} -> {t:?}: {p:?}");
                if !both_symmetric {
                    // Somebody dials over UDP, directly or from a birthday socket.
                    let dials = p.requester.dial_udp
                        || p.target.dial_udp
                        || p.requester.birthday
                        || p.target.birthday;
                    assert!(dials, "{r:?} -> {t:?}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn each_pair_gets_the_method_that_works_for_it() {
        // An open target is dialled; an open requester is called back; nobody punches.
        let p = plan(&symmetric(), &full_cone());
        assert!(p.requester.dial_udp && p.target == Actions::default());
        let p = plan(&full_cone(), &port_restricted());
        assert!(p.target.dial_udp && p.requester == Actions::default());
        // Cone to cone: the target punches, the requester dials.
        let p = plan(&port_restricted(), &restricted());
        assert!(p.target.punch && p.requester.dial_udp);
        // Symmetric facing address-restricted: one punch to its IP, the hard side dials.
        let p = plan(&symmetric(), &restricted());
        assert!(p.target.punch && p.requester.dial_udp && !p.requester.birthday);
        // Symmetric facing port-restricted: birthday sockets on the hard side, probes from
        // the easy side, in both directions of the request.
        let p = plan(&symmetric(), &port_restricted());
        assert!(p.requester.birthday && p.target.spray);
        let p = plan(&port_restricted(), &symmetric());
        assert!(p.target.birthday && p.requester.spray);
    }

    #[test]
    fn without_udp_only_tcp_or_the_relay_is_left() {
        // A TCP punch, on both sides, unless a NAT is symmetric.
        let p = plan(&udp_blocked(), &port_restricted());
        assert!(
            !p.relay_now && p.requester.tcp_punch && p.target.tcp_punch,
            "{p:?}"
        );
        assert!(plan(&udp_blocked(), &symmetric()).relay_now);
        let reachable = Facts {
            tcp_reachable: true,
            ..port_restricted()
        };
        let p = plan(&udp_blocked(), &reachable);
        assert!(!p.relay_now && p.requester.dial_tcp && !p.requester.dial_udp);
        // The other way round, the target calls back over TCP.
        let p = plan(&reachable, &udp_blocked());
        assert!(!p.relay_now && p.target.dial_tcp);
        assert!(plan(&udp_blocked(), &udp_blocked()).requester.tcp_punch);
    }

    #[test]
    fn unknown_facts_try_the_punch() {
        let p = plan(&Facts::unknown(), &Facts::unknown());
        assert!(!p.relay_now && p.target.punch && p.requester.dial_udp);
    }
}
