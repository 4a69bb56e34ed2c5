//! Other hubs in this hub's directory (issue 18): "which key and addresses is hub X".
//!
//! A hub learns other hubs from the peers it hosts: when a node opens a guest line to a
//! contact's home hub (TLS pinned to that hub's key), it asks that hub for its own signed
//! record ([`SignedHubRecord`]: name, key, addresses, signed by that key) and hands it to its
//! home hub ([`HubRequest::IntroduceHub`](allpeers_hub_client::proto::HubRequest)). Hubs
//! never talk to each other and never dial an address a peer gave them. The other peers
//! hosted here can then ask [`HubQuery::Key`] (where is the hub whose key a certificate
//! named: checkable, every record must be signed by that key) or [`HubQuery::Name`] (which
//! key calls itself that: only as trusted as this hub and its peers, names not being unique;
//! the client refuses a name under several keys). The reasoning is in
//! `docs/architecture-hub.md`, "Other hubs in our hub's directory".
//!
//! This module decides, without I/O, what is kept and who may ask; `server.rs` stores
//! (SQLite or PostgreSQL, [`crate::store`]) and answers.

use std::num::NonZeroU32;

use allpeers_hub_client::proto::{HubQuery, HubRecord, SignedHubRecord, code};
use allpeers_model::PeerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::guest::{Refusal, refuse};

/// Most other hubs kept; past it the least recently introduced go.
pub const MAX_KNOWN_HUBS: usize = 10_000;
/// Most keys kept under one hub name (as many as one answer carries); past it the least
/// recently introduced key of that name goes.
pub const MAX_KEYS_PER_NAME: usize = allpeers_hub_client::proto::MAX_HUB_RECORDS;
/// Per hosted peer: introductions per second and burst (a node introduces each hub it
/// opens a guest line to, at most 16 at once).
const INTRODUCTIONS: (u32, u32) = (1, 16);
/// Per hosted peer: hub lookups per second and burst.
const LOOKUPS: (u32, u32) = (5, 20);
/// Peers each limiter remembers before it forgets the idle ones.
const LIMITER_KEYS: usize = 16_384;

fn limiter((per_sec, burst): (u32, u32)) -> DefaultKeyedRateLimiter<PeerId> {
    let n = |v: u32| NonZeroU32::new(v.max(1)).expect("non-zero");
    RateLimiter::keyed(Quota::per_second(n(per_sec)).allow_burst(n(burst)))
}

/// The per-peer limits of the hub directory (guests never reach it: [`crate::guest`]).
pub struct HubDirectoryRules {
    introductions: DefaultKeyedRateLimiter<PeerId>,
    lookups: DefaultKeyedRateLimiter<PeerId>,
}

impl Default for HubDirectoryRules {
    fn default() -> Self {
        HubDirectoryRules {
            introductions: limiter(INTRODUCTIONS),
            lookups: limiter(LOOKUPS),
        }
    }
}

impl HubDirectoryRules {
    pub fn check_introduction(&self, asker: &PeerId) -> Result<(), Refusal> {
        check(
            &self.introductions,
            asker,
            "hub introductions",
            INTRODUCTIONS.0,
        )
    }

    pub fn check_lookup(&self, asker: &PeerId) -> Result<(), Refusal> {
        check(&self.lookups, asker, "hub lookups", LOOKUPS.0)
    }
}

fn check(
    limiter: &DefaultKeyedRateLimiter<PeerId>,
    asker: &PeerId,
    what: &str,
    rate: u32,
) -> Result<(), Refusal> {
    if limiter.len() > LIMITER_KEYS {
        limiter.retain_recent();
    }
    limiter.check_key(asker).map_err(|_| {
        refuse(
            code::RATE_LIMITED,
            format!("at most {rate} {what} per second"),
        )
    })
}

/// Whether an introduced record may be kept: it verifies (signed by the key it names, a hub
/// name, bounded, fresh), and it is not about this hub, whose own record is answered from
/// itself (a record of another key claiming this hub's name is a lie this hub can see).
pub fn admit(
    signed: &SignedHubRecord,
    own_key: &PeerId,
    own_name: &str,
    now_ms: u64,
) -> Result<HubRecord, Refusal> {
    let record = signed
        .verify(now_ms)
        .map_err(|e| refuse(code::BAD_RECORD, e.to_string()))?;
    if record.hub == *own_key {
        return Err(refuse(code::BAD_RECORD, "that is this hub's own record"));
    }
    if record.name == own_name {
        return Err(refuse(
            code::BAD_RECORD,
            format!("another key calls itself {own_name}: this hub is {own_name}"),
        ));
    }
    Ok(record)
}

/// Whether a query is about this hub (answered with its own record, nothing else).
pub fn is_own(query: &HubQuery, own_key: &PeerId, own_name: &str) -> bool {
    match query {
        HubQuery::Key(k) => k == own_key,
        HubQuery::Name(n) => n == own_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_net::{Address, Identity};

    #[test]
    fn only_verified_records_of_other_hubs_are_admitted() {
        let us = Identity::generate();
        let two = Identity::generate();
        let now = allpeers_model::hlc::now_ms();
        let addr = Address::quic("127.0.0.1:7700".parse().unwrap());
        let good = SignedHubRecord::sign(&two, "two.test", &[addr]);
        assert_eq!(
            admit(&good, &us.peer_id(), "one.test", now).unwrap().hub,
            two.peer_id()
        );
        // Our own record, or another key under our name: refused.
        let own = SignedHubRecord::sign(&us, "one.test", &[addr]);
        assert_eq!(
            admit(&own, &us.peer_id(), "one.test", now)
                .unwrap_err()
                .code,
            code::BAD_RECORD
        );
        let squat = SignedHubRecord::sign(&two, "one.test", &[addr]);
        assert_eq!(
            admit(&squat, &us.peer_id(), "one.test", now)
                .unwrap_err()
                .code,
            code::BAD_RECORD
        );
        // A forged signature.
        let mut forged = good.clone();
        forged.signature = us.sign(b"something else").to_vec();
        assert_eq!(
            admit(&forged, &us.peer_id(), "one.test", now)
                .unwrap_err()
                .code,
            code::BAD_RECORD
        );
        assert!(is_own(
            &HubQuery::Name("one.test".into()),
            &us.peer_id(),
            "one.test"
        ));
        assert!(is_own(
            &HubQuery::Key(us.peer_id()),
            &us.peer_id(),
            "one.test"
        ));
        assert!(!is_own(
            &HubQuery::Key(two.peer_id()),
            &us.peer_id(),
            "one.test"
        ));
    }

    #[test]
    fn introductions_are_rate_limited_per_peer() {
        let rules = HubDirectoryRules::default();
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let passed = (0..40)
            .filter(|_| rules.check_introduction(&a).is_ok())
            .count();
        assert!((16..=18).contains(&passed), "{passed}");
        assert!(rules.check_introduction(&b).is_ok(), "per peer");
    }
}
