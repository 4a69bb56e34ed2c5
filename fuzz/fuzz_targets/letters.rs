//! Fuzzes what a peer or a hub can hand a node as a letter (allpeers-net `mail`): signed
//! letters straight off the wire, sealed letters from a mailbox, and the letter inside a
//! sealed envelope that opens; and hybrid-logical-clock timestamps (allpeers-model `hlc`).
//! Everything must fail cleanly, never panic or allocate without bound.
#![no_main]

use std::sync::OnceLock;

use allpeers_net::Identity;
use allpeers_net::mail::{self, SignedLetter};
use libfuzzer_sys::fuzz_target;

fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(Identity::generate)
}

fuzz_target!(|data: &[u8]| {
    let me = me();
    let _ = SignedLetter::from_bytes(data).and_then(|s| s.verify(&me.peer_id()));
    let _ = mail::open(me, data);
    // Sealed properly, so the fuzzer's bytes reach the letter decoder inside.
    let inner = SignedLetter {
        letter: data.to_vec(),
        signature: data.iter().copied().take(64).collect(),
    };
    if let Ok(sealed) = mail::seal(&inner, &me.peer_id()) {
        let _ = mail::open(me, &sealed);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = allpeers_model::hlc::Timestamp::parse(text);
    }
});
