//! The mail area's state in the daemon: the told-set. A contact whose messages went to its
//! mailbox at the hub gets one "message waiting" notice, then none until it is seen online
//! again (it will find everything waiting when it comes back); a contact made a member of a
//! share gets one "shared with you" notice for that share, ever.

use std::collections::HashSet;
use std::sync::Mutex;

use allpeers_model::PeerId;

/// Notices remembered as sent. Past it the set starts afresh: at worst a contact gets a
/// second notice, which the hub's per-recipient daily limit still bounds.
pub const MAX_TOLD: usize = 4096;

/// What a contact was told by mail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Told {
    /// Messages wait for it at the hub (forgotten when it is seen online).
    Waiting(PeerId),
    /// It was made a member of this share (its id as text).
    Shared(PeerId, String),
}

impl Told {
    pub fn peer(&self) -> &PeerId {
        match self {
            Told::Waiting(p) | Told::Shared(p, _) => p,
        }
    }
}

#[derive(Default)]
pub struct MailState {
    told: Mutex<HashSet<Told>>,
}

impl MailState {
    /// True (and it is now told) if this notice was not sent yet.
    pub fn tell(&self, told: Told) -> bool {
        let mut set = self.told.lock().expect("told lock");
        if set.contains(&told) {
            return false;
        }
        if set.len() >= MAX_TOLD {
            set.clear();
        }
        set.insert(told)
    }

    /// The notice did not go out (the hub could not be asked): the next occasion tries again.
    pub fn untell(&self, told: &Told) {
        self.told.lock().expect("told lock").remove(told);
    }

    /// `peer` is online: it reads its messages, and a later absence is worth a notice. True
    /// if it had been told of waiting messages.
    pub fn came_online(&self, peer: &PeerId) -> bool {
        self.told
            .lock()
            .expect("told lock")
            .remove(&Told::Waiting(*peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_until_back_online_and_bounded() {
        let s = MailState::default();
        let bob = PeerId::from_public_key([2; 32]);
        assert!(s.tell(Told::Waiting(bob)));
        assert!(!s.tell(Told::Waiting(bob)));
        assert!(s.came_online(&bob));
        assert!(!s.came_online(&bob));
        assert!(s.tell(Told::Waiting(bob)));
        s.untell(&Told::Waiting(bob));
        assert!(s.tell(Told::Waiting(bob)));
        for i in 0..MAX_TOLD as u32 + 10 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[31] = 9;
            s.tell(Told::Waiting(PeerId::from_public_key(key)));
        }
        assert!(s.told.lock().unwrap().len() <= MAX_TOLD);
    }

    #[test]
    fn a_share_is_told_once_whatever_the_presence() {
        let s = MailState::default();
        let bob = PeerId::from_public_key([2; 32]);
        let holiday = Told::Shared(bob, "s1".into());
        assert!(s.tell(holiday.clone()));
        assert!(!s.came_online(&bob));
        assert!(!s.tell(holiday.clone()));
        assert!(s.tell(Told::Shared(bob, "s2".into())));
        assert!(s.tell(Told::Waiting(bob)), "kinds are apart");
    }
}
