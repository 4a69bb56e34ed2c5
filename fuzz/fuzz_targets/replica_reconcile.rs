//! Fuzzes negentropy reconciliation messages (allpeers-replica `reconcile`): the standalone
//! decoder, and both roles answering the fuzzer's bytes against a small set of items.
#![no_main]

use std::sync::OnceLock;

use allpeers_replica::OpId;
use allpeers_replica::reconcile::{self, Item, Items, MIN_FRAME_LIMIT, Reconciler};
use libfuzzer_sys::fuzz_target;

fn items() -> &'static Items {
    static ITEMS: OnceLock<Items> = OnceLock::new();
    ITEMS.get_or_init(|| {
        (0..200u32)
            .map(|i| Item {
                timestamp: 1_764_590_000_000 + u64::from(i / 3),
                id: OpId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = reconcile::decode_message(data);
    let items = items();
    let mut responder = Reconciler::new(MIN_FRAME_LIMIT, false).expect("valid limit");
    if let Ok(reply) = responder.respond(items, data) {
        assert!(reply.len() <= MIN_FRAME_LIMIT);
    }
    let mut initiator = Reconciler::new(MIN_FRAME_LIMIT, true).expect("valid limit");
    let _ = initiator.initiate(items);
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let _ = initiator.reconcile(items, data, &mut have, &mut need);
});
