//! Fuzzes what a peer can hand the replication core as an op (allpeers-replica `op`, and the
//! replica that judges it) and as an `allpeers/sync/1` frame (`sync::Message`). Everything must
//! fail cleanly, never panic or allocate without bound.
#![no_main]

use allpeers_replica::sync::Message;
use allpeers_replica::{Op, Replica};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = Op::decode(data) {
        // Canonical: the decoded body re-encodes to exactly the bytes its id hashes.
        assert_eq!(op.body().canonical_bytes(), op.canonical());
        assert_eq!(op.wire(), data);
        let _ = op.verify();
    }
    // Into a replica of some share: refused, or judged, never a panic.
    let owner = SigningKey::from_bytes(&[1; 32]);
    let mut replica = Replica::create_share(
        &owner,
        "r",
        "List",
        serde_json::json!({}),
        1_764_590_000_000,
    )
    .expect("a genesis");
    let _ = replica.receive(data, 1_764_590_000_000);
    if let Ok(message) = Message::decode(data) {
        assert_eq!(Message::decode(&message.encode()).as_ref(), Ok(&message));
    }
});
