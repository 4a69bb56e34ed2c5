//! Fuzzes a sync session (allpeers-replica `sync`) handed the fuzzer's bytes as a peer's frames:
//! raw, and with the real share's id spliced in after the tag byte (so the session's handling
//! is reached, not only the decoder), from a member and from a stranger, before and after a
//! reconciliation starts. Every frame is answered or dropped without a panic, what the session
//! sends decodes, and a stranger is never sent an op.
#![no_main]

use allpeers_replica::reconcile::MAX_MESSAGE_BYTES;
use allpeers_replica::sync::{Message, SyncPeer};
use libfuzzer_sys::fuzz_target;

#[path = "common/share.rs"]
mod share;

use share::{T0, peer, shares};

fuzz_target!(|data: &[u8]| {
    let (mut shares, share) = shares(8);
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
