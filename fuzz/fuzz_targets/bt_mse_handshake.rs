//! Fuzzes BitTorrent's Message Stream Encryption handshake (allpeers-transfer `bt::mse`): raw bytes fed to a
//! responder or an initiator, and an honest exchange (fixed keys) whose step 3 or step 4 is corrupted and extended
//! by the input, so the states past the Diffie-Hellman keys are reached. Every input must end in an error or an
//! established connection, never a panic.
#![no_main]

use allpeers_transfer::bt::mse::{Encryption, Handshake, Secrets, Step};
use libfuzzer_sys::fuzz_target;

const INFO_HASH: [u8; 20] = [7; 20];

fn secrets(seed: u8) -> Secrets {
    Secrets {
        private_key: [seed; 20],
        pad: vec![seed; usize::from(seed)],
    }
}

/// Feeds `data` in chunks whose sizes come from the data itself; stops at the first error or the end.
fn feed(handshake: &mut Handshake, data: &[u8]) -> Option<Vec<u8>> {
    let mut rest = data;
    let mut sent = Vec::new();
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        match handshake.feed(chunk) {
            Ok(Step::Continue(out)) => sent.extend(out),
            Ok(Step::Done(out, _)) => {
                sent.extend(out);
                return Some(sent);
            }
            Err(_) => return None,
        }
    }
    Some(sent)
}

fn corrupt(honest: &[u8], input: &[u8]) -> Vec<u8> {
    let mut bytes = honest.to_vec();
    for (b, x) in bytes.iter_mut().zip(input) {
        *b ^= x;
    }
    bytes.extend_from_slice(input.get(honest.len()..).unwrap_or_default());
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let policy = if mode & 0x10 == 0 {
        Encryption::Prefer
    } else {
        Encryption::Require
    };
    match mode % 4 {
        0 => {
            let mut b = Handshake::responder(vec![INFO_HASH], policy, secrets(5)).unwrap();
            feed(&mut b, input);
        }
        1 => {
            let (mut a, _) =
                Handshake::initiator(INFO_HASH, vec![1; 68], policy, secrets(3)).unwrap();
            feed(&mut a, input);
        }
        corrupted_step => {
            let (mut a, first) =
                Handshake::initiator(INFO_HASH, vec![1; 68], policy, secrets(3)).unwrap();
            let mut b = Handshake::responder(vec![[1; 20], INFO_HASH], policy, secrets(5)).unwrap();
            let Ok(Step::Continue(yb)) = b.feed(&first) else {
                panic!("an honest step 1 is answered")
            };
            let Ok(Step::Continue(step3)) = a.feed(&yb) else {
                panic!("an honest step 2 is answered")
            };
            if corrupted_step == 2 {
                let _ = b.feed(&corrupt(&step3, input));
            } else if let Ok(Step::Done(step4, _)) = b.feed(&step3) {
                let _ = a.feed(&corrupt(&step4, input));
            } else {
                panic!("an honest step 3 ends the responder's handshake")
            }
        }
    }
});
