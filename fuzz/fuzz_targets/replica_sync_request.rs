//! Fuzzes the request decoder of `allpeers/sync/1` (allpeers-replica `sync::decode_frames`: a
//! batch of frames, bounded in bytes, count and each frame's length) and hands what it decodes
//! to a member's and a stranger's sessions, frame by frame as the daemon does. The first byte
//! picks whether the frames get the real share's id spliced in after their tag, so the
//! sessions' handling is reached, not only the decoders. A decoded request re-encodes to one
//! that decodes to the same frames, nothing panics, what the sessions send decodes, and a
//! stranger is never sent an op.
#![no_main]

use allpeers_replica::reconcile::MAX_MESSAGE_BYTES;
use allpeers_replica::sync::{Message, SyncPeer, decode_frames, encode_frames};
use libfuzzer_sys::fuzz_target;

#[path = "common/share.rs"]
mod share;

use share::{T0, peer, shares};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, request)) = data.split_first() else {
        return;
    };
    let Ok(frames) = decode_frames(request) else {
        return;
    };
    let owned: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
    let again = encode_frames(&owned);
    assert_eq!(
        decode_frames(&again).expect("a re-encoded request decodes"),
        frames,
        "a request re-encodes to the same frames"
    );
    let (mut shares, share) = shares(4);
    let frames: Vec<Vec<u8>> = owned
        .into_iter()
        .map(|frame| match (mode & 1, frame.split_first()) {
            (1, Some((tag, rest))) => {
                let mut spliced = vec![*tag];
                spliced.extend_from_slice(&share.0);
                spliced.extend_from_slice(rest);
                spliced
            }
            _ => frame,
        })
        .collect();
    for (who, member) in [(peer(2), true), (peer(3), false)] {
        let mut session = SyncPeer::new(who, MAX_MESSAGE_BYTES);
        if mode & 2 != 0 {
            let _ = session.start(share, &mut shares, T0 + 50);
        }
        for frame in &frames {
            session.handle(frame, &mut shares, T0 + 100);
        }
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
