//! Fuzzes a sync session (allpeers-replica `sync`) handed the fuzzer's bytes as a peer's frames:
//! raw, and with the real share's id spliced in after the tag byte (so the session's handling
//! is reached, not only the decoder), from a member and from a stranger, before and after a
//! reconciliation starts. Every frame is answered or dropped without a panic, what the session
//! sends decodes, and a stranger is never sent an op.
#![no_main]

use std::collections::BTreeMap;

use allpeers_model::id::PeerId;
use allpeers_replica::reconcile::MAX_MESSAGE_BYTES;
use allpeers_replica::sync::{Message, SyncPeer};
use allpeers_replica::{Action, Level, Replica, ShareId};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

const T0: u64 = 1_764_590_000_000;

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key(SigningKey::from_bytes(&[n; 32]).verifying_key().to_bytes())
}

/// A share of a list with a few items, bob (2) a writer; mallory (3) is no member.
fn shares() -> (BTreeMap<ShareId, Replica>, ShareId) {
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
    for i in 0..8u64 {
        let add = Action::ListAdd {
            list: "holiday".into(),
            item: format!("i{i}"),
        };
        replica.author(&owner, add, T0 + 2 + i).expect("signed");
    }
    let share = replica.share();
    (BTreeMap::from([(share, replica)]), share)
}

fuzz_target!(|data: &[u8]| {
    let (mut shares, share) = shares();
    let mut spliced = data.first().map(|t| vec![*t]).unwrap_or_default();
    spliced.extend_from_slice(&share.0);
    spliced.extend_from_slice(data.get(1..).unwrap_or_default());
    for (who, member) in [(peer(2), true), (peer(3), false)] {
        let mut session = SyncPeer::new(who, MAX_MESSAGE_BYTES);
        session.handle(data, &mut shares, T0 + 100);
        session.handle(&spliced, &mut shares, T0 + 100);
        let _ = session.start(share, &mut shares, T0 + 200);
        session.handle(&spliced, &mut shares, T0 + 300);
        session.handle_timeout(T0 + 10_000_000);
        while let Some(frame) = session.poll_transmit() {
            let message = Message::decode(&frame).expect("the session's own frames decode");
            if !member {
                assert!(
                    !matches!(message, Message::Ops { .. }),
                    "an op was sent to a stranger"
                );
            }
        }
        while session.poll_event().is_some() {}
    }
});
