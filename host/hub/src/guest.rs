//! Guests: what a hub lets a peer it does not host do (issue 18, cross-hub reach).
//!
//! A node reaches a contact homed at another hub by opening a light *guest line* to that hub
//! (as SMTP delivers to the recipient's MX), so hubs never talk to each other. This module
//! decides, without I/O, what such a guest may do; `server.rs` asks it at a few hook points.
//!
//! **Who is a guest.** A peer is *hosted* here when it holds a registered name here, has a
//! home presence line open here, or ever had one (its last-seen time is stored only for home
//! lines). Every other authenticated peer is a guest. A new node becomes hosted by its first
//! home line or registration, so single-hub behaviour is unchanged: a node's home hub hosts
//! it from its first Hello on.
//!
//! **What a guest gets.** No registration while its guest line is open (a guest line says "my
//! home is elsewhere"); watches of peers hosted here only, at most [`MAX_GUEST_WATCHES`]
//! (presence stays mutual-consent: the watch policy decides as for anyone); lookups,
//! signals, letter deposits and relay requests each under a per-guest rate
//! ([`GuestRules`]), on top of the limits every peer has (signal rate, mailbox quotas per
//! sender, relay slots and bytes). Nothing of the directory beyond a lookup (the directory
//! has no listing) and this hub's own signed record; nothing of the other hubs it knows
//! ([`crate::hubs`]). A guest line is not presence: the hub never announces it, resolves never
//! show a guest as online here, and it gets no relay offers and no mailbox.
//!
//! **Letters wait where the recipient looks.** A letter for a peer this hub does not host is
//! refused to everyone with [`code::NOT_HOSTED`]: the sender deposits it at the recipient's
//! own hub.

use std::num::NonZeroU32;

use allpeers_hub_client::proto::code;
use allpeers_model::PeerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Most peers one guest may watch here.
pub const MAX_GUEST_WATCHES: usize = 256;
/// Most guest lines open at once (a hub's own peers are not limited by guests).
pub const MAX_GUEST_LINES: usize = 4096;
/// Per guest: lookups per second and burst (a contact list checked at start).
const LOOKUPS: (u32, u32) = (10, 64);
/// Per guest: signals per second and burst (a connect takes two or three).
const SIGNALS: (u32, u32) = (5, 20);
/// Per guest: letters per second and burst (an outbox catching up).
const DEPOSITS: (u32, u32) = (2, 30);
/// Per guest: relay requests per second and burst.
const RELAYS: (u32, u32) = (1, 4);
/// Guests each limiter remembers before it forgets the idle ones (memory stays bounded).
const LIMITER_KEYS: usize = 16_384;

/// Whether this hub hosts a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Hosted,
    Guest,
}

impl Standing {
    /// `home_line`: a home presence line is open now; `named`: a registered name here;
    /// `seen_home`: a home line was open here before (its last-seen time is stored).
    pub fn of(home_line: bool, named: bool, seen_home: bool) -> Standing {
        if home_line || named || seen_home {
            Standing::Hosted
        } else {
            Standing::Guest
        }
    }
}

/// A registry request, as the guest rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// `guest_line`: the asker has a guest line open here.
    Register {
        guest_line: bool,
    },
    Lookup,
    Signal,
    /// A letter for a peer of this standing.
    Deposit {
        to: Standing,
    },
    Relay,
    /// Introduce another hub, or look one up ([`crate::hubs`]): the hub's peers only.
    HubDirectory,
}

/// Why a request is refused: the hub's application code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: u32,
    pub message: String,
}

pub(crate) fn refuse(code: u32, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The per-guest rate limiters.
pub struct GuestRules {
    lookups: DefaultKeyedRateLimiter<PeerId>,
    signals: DefaultKeyedRateLimiter<PeerId>,
    deposits: DefaultKeyedRateLimiter<PeerId>,
    relays: DefaultKeyedRateLimiter<PeerId>,
}

impl Default for GuestRules {
    fn default() -> Self {
        GuestRules::new()
    }
}

fn limiter((per_sec, burst): (u32, u32)) -> DefaultKeyedRateLimiter<PeerId> {
    let n = |v: u32| NonZeroU32::new(v.max(1)).expect("non-zero");
    RateLimiter::keyed(Quota::per_second(n(per_sec)).allow_burst(n(burst)))
}

impl GuestRules {
    pub fn new() -> GuestRules {
        GuestRules {
            lookups: limiter(LOOKUPS),
            signals: limiter(SIGNALS),
            deposits: limiter(DEPOSITS),
            relays: limiter(RELAYS),
        }
    }

    /// May `asker` (of `standing`) do `ask` now? Hosted peers pass (their own limits apply
    /// in the server); a letter for a peer not hosted here is refused to anyone.
    pub fn check(&self, asker: &PeerId, standing: Standing, ask: Ask) -> Result<(), Refusal> {
        if let Ask::Deposit {
            to: Standing::Guest,
        } = ask
        {
            return Err(refuse(
                code::NOT_HOSTED,
                "this hub does not host the recipient: deposit the letter at its own hub",
            ));
        }
        if standing == Standing::Hosted {
            return Ok(());
        }
        let (limiter, what, rate) = match ask {
            Ask::Register { guest_line: true } => {
                return Err(refuse(
                    code::GUEST_REFUSED,
                    "a guest cannot register here: close the guest line and make this hub your home",
                ));
            }
            // A new node registers before its first home line: that makes this hub its home.
            Ask::Register { guest_line: false } => return Ok(()),
            // Which hubs this hub's peers reach is theirs: a guest needs this hub's own
            // record ([`Ask::Lookup`]), not what it knows of others.
            Ask::HubDirectory => {
                return Err(refuse(
                    code::GUEST_REFUSED,
                    "only the peers this hub hosts may look up or introduce other hubs here",
                ));
            }
            Ask::Lookup => (&self.lookups, "lookups", LOOKUPS.0),
            Ask::Signal => (&self.signals, "signals", SIGNALS.0),
            Ask::Deposit { .. } => (&self.deposits, "letters", DEPOSITS.0),
            Ask::Relay => (&self.relays, "relay requests", RELAYS.0),
        };
        if limiter.len() > LIMITER_KEYS {
            limiter.retain_recent();
        }
        limiter.check_key(asker).map_err(|_| {
            refuse(
                code::RATE_LIMITED,
                format!("a guest may send at most {rate} {what} per second here"),
            )
        })
    }
}

/// Splits a guest's watch request into the peers it may watch and those refused: only peers
/// hosted here, and at most [`MAX_GUEST_WATCHES`] in all (`watching`: how many it watches
/// already; a peer already watched costs nothing again).
pub fn guest_watches(
    watching: &[PeerId],
    asked: &[(PeerId, Standing)],
) -> (Vec<PeerId>, Vec<PeerId>) {
    let mut count = watching.len();
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for (peer, standing) in asked {
        let already = watching.contains(peer) || allowed.contains(peer);
        if *standing == Standing::Guest {
            refused.push(*peer);
        } else if already {
            allowed.push(*peer);
        } else if count < MAX_GUEST_WATCHES {
            count += 1;
            allowed.push(*peer);
        } else {
            refused.push(*peer);
        }
    }
    allowed.dedup();
    (allowed, refused)
}

/// May another guest line open (`open`: guest lines open now; `replacing`: this peer's own
/// guest line is being replaced)?
pub fn may_open_line(open: usize, replacing: bool) -> bool {
    replacing || open < MAX_GUEST_LINES
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_net::Identity;

    fn peer() -> PeerId {
        Identity::generate().peer_id()
    }

    #[test]
    fn standing_is_hosted_by_any_home_mark() {
        assert_eq!(Standing::of(false, false, false), Standing::Guest);
        assert_eq!(Standing::of(true, false, false), Standing::Hosted);
        assert_eq!(Standing::of(false, true, false), Standing::Hosted);
        assert_eq!(Standing::of(false, false, true), Standing::Hosted);
    }

    #[test]
    fn letters_for_peers_not_hosted_are_refused_to_everyone() {
        let rules = GuestRules::new();
        for standing in [Standing::Hosted, Standing::Guest] {
            let e = rules
                .check(
                    &peer(),
                    standing,
                    Ask::Deposit {
                        to: Standing::Guest,
                    },
                )
                .unwrap_err();
            assert_eq!(e.code, code::NOT_HOSTED);
        }
        assert!(
            rules
                .check(
                    &peer(),
                    Standing::Guest,
                    Ask::Deposit {
                        to: Standing::Hosted
                    }
                )
                .is_ok()
        );
    }

    #[test]
    fn registration() {
        let rules = GuestRules::new();
        let e = rules
            .check(&peer(), Standing::Guest, Ask::Register { guest_line: true })
            .unwrap_err();
        assert_eq!(e.code, code::GUEST_REFUSED);
        // A new node (no line yet) registering makes this hub its home.
        assert!(
            rules
                .check(
                    &peer(),
                    Standing::Guest,
                    Ask::Register { guest_line: false }
                )
                .is_ok()
        );
        assert!(
            rules
                .check(
                    &peer(),
                    Standing::Hosted,
                    Ask::Register { guest_line: true }
                )
                .is_ok()
        );
    }

    #[test]
    fn the_other_hubs_a_hub_knows_are_for_its_own_peers() {
        let rules = GuestRules::new();
        let e = rules
            .check(&peer(), Standing::Guest, Ask::HubDirectory)
            .unwrap_err();
        assert_eq!(e.code, code::GUEST_REFUSED);
        assert!(
            rules
                .check(&peer(), Standing::Hosted, Ask::HubDirectory)
                .is_ok()
        );
    }

    #[test]
    fn every_guest_ask_is_rate_limited_per_guest_and_hosted_peers_are_not() {
        let rules = GuestRules::new();
        let cases = [
            (Ask::Lookup, LOOKUPS.1),
            (Ask::Signal, SIGNALS.1),
            (
                Ask::Deposit {
                    to: Standing::Hosted,
                },
                DEPOSITS.1,
            ),
            (Ask::Relay, RELAYS.1),
        ];
        for (ask, burst) in cases {
            let flooder = peer();
            let passed = (0..burst + 50)
                .filter(|_| rules.check(&flooder, Standing::Guest, ask).is_ok())
                .count() as u32;
            // The burst, plus what the rate refilled meanwhile (the loop takes microseconds).
            assert!(
                (burst..=burst + 1).contains(&passed),
                "{ask:?}: {passed} passed"
            );
            let e = rules.check(&flooder, Standing::Guest, ask).unwrap_err();
            assert_eq!(e.code, code::RATE_LIMITED);
            // Another guest has its own budget; hosted peers are not limited here.
            assert!(rules.check(&peer(), Standing::Guest, ask).is_ok());
            let home = peer();
            for _ in 0..burst + 50 {
                assert!(rules.check(&home, Standing::Hosted, ask).is_ok());
            }
        }
    }

    #[test]
    fn guests_watch_only_hosted_peers_and_a_bounded_number() {
        let hosted: Vec<PeerId> = (0..MAX_GUEST_WATCHES + 2).map(|_| peer()).collect();
        let stranger = peer();
        let mut asked: Vec<(PeerId, Standing)> =
            hosted.iter().map(|p| (*p, Standing::Hosted)).collect();
        asked.push((stranger, Standing::Guest));
        let (allowed, refused) = guest_watches(&[], &asked);
        assert_eq!(allowed.len(), MAX_GUEST_WATCHES);
        assert_eq!(refused.len(), 3);
        assert!(refused.contains(&stranger));
        // Watching a peer again costs nothing; a new one past the bound is refused.
        let (again, none) = guest_watches(&allowed, &[(allowed[0], Standing::Hosted)]);
        assert_eq!((again, none), (vec![allowed[0]], vec![]));
        let (no, yes) = guest_watches(&allowed, &[(hosted[MAX_GUEST_WATCHES], Standing::Hosted)]);
        assert!(no.is_empty());
        assert_eq!(yes, vec![hosted[MAX_GUEST_WATCHES]]);
    }

    #[test]
    fn guest_lines_are_bounded() {
        assert!(may_open_line(0, false));
        assert!(!may_open_line(MAX_GUEST_LINES, false));
        assert!(may_open_line(MAX_GUEST_LINES, true));
    }
}
