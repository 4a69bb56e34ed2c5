//! The share the sync fuzz targets talk about (shared by `replica_sync_session` and
//! `replica_sync_request`).

use std::collections::BTreeMap;

use allpeers_model::id::PeerId;
use allpeers_replica::{Action, Level, Replica, ShareId};
use ed25519_dalek::SigningKey;

pub const T0: u64 = 1_764_590_000_000;

pub fn peer(n: u8) -> PeerId {
    PeerId::from_public_key(SigningKey::from_bytes(&[n; 32]).verifying_key().to_bytes())
}

/// A share of a list with `items` items, bob (2) a writer; mallory (3) is no member.
pub fn shares(items: u64) -> (BTreeMap<ShareId, Replica>, ShareId) {
    let owner = SigningKey::from_bytes(&[1; 32]);
    let mut replica = Replica::create_share(
        &owner,
        "holiday",
        "List",
        serde_json::json!({"properties": {"name": "Holiday"}}),
        T0,
    )
    .expect("a genesis");
    let grant = Action::Grant {
        member: peer(2),
        level: Level::Write,
    };
    replica.author(&owner, grant, T0 + 1).expect("signed");
    for i in 0..items {
        let add = Action::ListAdd {
            list: "holiday".into(),
            item: format!("i{i}"),
        };
        replica.author(&owner, add, T0 + 2 + i).expect("signed");
    }
    let share = replica.share();
    (BTreeMap::from([(share, replica)]), share)
}
