//! The mail area's state in the daemon: the told-set. A contact whose messages went to its
//! mailbox at the hub gets one "message waiting" notice, then none until it is seen online
//! again (it will find everything waiting when it comes back); a contact made a member of a
//! share gets one "shared with you" notice for that share, ever.
//!
//! The set lives in memory and in the store (`ap_told`, [`allpeers_store::told`]), loaded at
//! start: a restart does not send a notice again. Each change is written on the blocking pool
//! as the set stands when the write runs, so writes that overtake one another still leave
//! the store as the set is.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use allpeers_hub_client::mail::Notice;
use allpeers_model::PeerId;
use allpeers_store::Store;
use allpeers_store::told::ToldMark;

/// Notices remembered as sent (the store keeps as many). Past it the set starts afresh: at
/// worst a contact gets a second notice, which the hub's per-recipient daily limit bounds.
pub const MAX_TOLD: usize = allpeers_store::told::MAX_TOLD;

/// Notices kept for when the hub line comes back up; past it the newest are dropped.
pub const MAX_DEFERRED: usize = 256;

/// A notice that could not be asked for (the hub line was down): asked when it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    pub told: Told,
    pub notice: Notice,
}

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

    fn mark(&self) -> ToldMark {
        let (kind, subject) = match self {
            Told::Waiting(_) => ("waiting", ""),
            Told::Shared(_, share) => ("shared", share.as_str()),
        };
        ToldMark {
            kind: kind.into(),
            peer: self.peer().to_string(),
            subject: subject.into(),
        }
    }

    fn from_mark(mark: &ToldMark) -> Option<Told> {
        let peer = mark.peer.parse().ok()?;
        match mark.kind.as_str() {
            "waiting" => Some(Told::Waiting(peer)),
            "shared" => Some(Told::Shared(peer, mark.subject.clone())),
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct MailState {
    told: Arc<Mutex<HashSet<Told>>>,
    /// Where the set is kept (none: memory only).
    store: Option<Arc<Mutex<Store>>>,
    /// In memory only: a restart while the hub is unreachable loses them.
    deferred: Mutex<Vec<Deferred>>,
}

impl MailState {
    /// The set as the store keeps it.
    pub fn load(store: &Arc<Mutex<Store>>) -> MailState {
        let marks = store.lock().expect("store lock").told_marks();
        let told = match marks {
            Ok(marks) => marks.iter().filter_map(Told::from_mark).collect(),
            Err(e) => {
                allpeers_log::skin!("mail: told-set not loaded: {e}");
                HashSet::new()
            }
        };
        MailState {
            told: Arc::new(Mutex::new(told)),
            store: Some(store.clone()),
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `d` for when the hub line is up (once; bounded by [`MAX_DEFERRED`]).
    pub fn defer(&self, d: Deferred) {
        let mut deferred = self.deferred.lock().expect("deferred lock");
        if deferred.len() < MAX_DEFERRED && !deferred.contains(&d) {
            deferred.push(d);
        }
    }

    /// The deferred notices, oldest first; none is kept.
    pub fn take_deferred(&self) -> Vec<Deferred> {
        std::mem::take(&mut *self.deferred.lock().expect("deferred lock"))
    }

    /// Whether this notice was asked for already.
    pub fn is_told(&self, told: &Told) -> bool {
        self.told.lock().expect("told lock").contains(told)
    }

    /// True (and it is now told) if this notice was not sent yet.
    pub fn tell(&self, told: Told) -> bool {
        {
            let mut set = self.told.lock().expect("told lock");
            if set.contains(&told) {
                return false;
            }
            if set.len() >= MAX_TOLD {
                set.clear();
            }
            set.insert(told.clone());
        }
        self.persist(told);
        true
    }

    /// The notice did not go out (the hub could not be asked): the next occasion tries again.
    pub fn untell(&self, told: &Told) {
        if self.told.lock().expect("told lock").remove(told) {
            self.persist(told.clone());
        }
    }

    /// `peer` is online: it reads its messages, and a later absence is worth a notice. True
    /// if it had been told of waiting messages.
    pub fn came_online(&self, peer: &PeerId) -> bool {
        let told = Told::Waiting(*peer);
        let was = self.told.lock().expect("told lock").remove(&told);
        if was {
            self.persist(told);
        }
        was
    }

    /// Writes whether `told` is in the set, as it stands when the write runs (on the blocking
    /// pool; inline outside a runtime).
    fn persist(&self, told: Told) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let set = self.told.clone();
        let write = move || {
            let mut store = store.lock().expect("store lock");
            let present = set.lock().expect("told lock").contains(&told);
            let mark = told.mark();
            let result = if present {
                store.put_told(&mark, allpeers_model::hlc::now_ms())
            } else {
                store.remove_told(&mark)
            };
            if let Err(e) = result {
                allpeers_log::skin!("mail: told-set not saved: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
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

    #[test]
    fn deferred_once_and_bounded() {
        let s = MailState::default();
        let d = |i: u32| Deferred {
            told: Told::Shared(PeerId::from_public_key([2; 32]), format!("s{i}")),
            notice: Notice::Shared {
                title: "Trip".into(),
            },
        };
        s.defer(d(0));
        s.defer(d(0));
        for i in 1..MAX_DEFERRED as u32 + 10 {
            s.defer(d(i));
        }
        let taken = s.take_deferred();
        assert_eq!(taken.len(), MAX_DEFERRED);
        assert_eq!(taken[0], d(0));
        assert_eq!(taken[1], d(1), "no duplicate");
        assert!(s.take_deferred().is_empty());
    }

    #[test]
    fn the_set_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let open = || Arc::new(Mutex::new(Store::open(&path, "me").unwrap()));
        let bob = PeerId::from_public_key([2; 32]);
        let carol = PeerId::from_public_key([3; 32]);
        {
            let s = MailState::load(&open());
            assert!(s.tell(Told::Waiting(bob)));
            assert!(s.tell(Told::Waiting(carol)));
            assert!(s.tell(Told::Shared(bob, "s1".into())));
            assert!(s.came_online(&carol));
        }
        let s = MailState::load(&open());
        assert!(!s.tell(Told::Waiting(bob)), "still told after a restart");
        assert!(!s.tell(Told::Shared(bob, "s1".into())));
        assert!(s.tell(Told::Waiting(carol)), "carol came online before");
    }
}
