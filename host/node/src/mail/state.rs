//! The mail area's state in the daemon: the told-set. A contact whose messages went to its
//! mailbox at the hub gets one "message waiting" notice, then none until it is seen online
//! again (it will find everything waiting when it comes back).

use std::collections::HashSet;
use std::sync::Mutex;

use allpeers_model::PeerId;

/// Offline contacts remembered as told. Past it the set starts afresh: at worst a contact
/// gets a second notice, which the hub's per-recipient daily limit still bounds.
const MAX_TOLD: usize = 4096;

#[derive(Default)]
pub struct MailState {
    told: Mutex<HashSet<PeerId>>,
}

impl MailState {
    /// True (and `peer` is now told) if `peer` has not been told since it was last online.
    pub fn tell(&self, peer: PeerId) -> bool {
        let mut told = self.told.lock().expect("told lock");
        if told.contains(&peer) {
            return false;
        }
        if told.len() >= MAX_TOLD {
            told.clear();
        }
        told.insert(peer)
    }

    /// The notice did not go out (the hub could not be asked): the next letter tries again.
    pub fn untell(&self, peer: &PeerId) {
        self.told.lock().expect("told lock").remove(peer);
    }

    /// `peer` is online: it reads its messages, and a later absence is worth a notice.
    pub fn came_online(&self, peer: &PeerId) {
        self.told.lock().expect("told lock").remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_until_back_online_and_bounded() {
        let s = MailState::default();
        let bob = PeerId::from_public_key([2; 32]);
        assert!(s.tell(bob));
        assert!(!s.tell(bob));
        s.came_online(&bob);
        assert!(s.tell(bob));
        s.untell(&bob);
        assert!(s.tell(bob));
        for i in 0..MAX_TOLD as u32 + 10 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[31] = 9;
            s.tell(PeerId::from_public_key(key));
        }
        assert!(s.told.lock().unwrap().len() <= MAX_TOLD);
    }
}
