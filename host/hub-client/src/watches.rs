//! Who wants which peers watched at the hub. The line watches a peer while any holder does:
//! one holder's unwatch must not end another's presence — nor, by the hub's mutual rule
//! (presence only between peers watching each other), the peer's view of us.

use std::collections::{BTreeMap, BTreeSet};

use allpeers_model::PeerId;

/// Who asked for a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchHolder {
    /// The node's own contacts (the social area keeps their presence).
    Contacts,
    /// One local API client's session (`hub.watch`), by its id: its watches end with it.
    Client(u64),
}

/// The peers watched, each with the holders that want it.
#[derive(Debug, Default)]
pub(crate) struct WatchSet {
    holders: BTreeMap<PeerId, BTreeSet<WatchHolder>>,
}

impl WatchSet {
    pub fn add(&mut self, holder: WatchHolder, peers: &[PeerId]) {
        for p in peers {
            self.holders.entry(*p).or_default().insert(holder);
        }
    }

    /// Drops `holder`'s watch on `peers`; returns those no holder watches any more (the
    /// ones to unwatch at the hub).
    pub fn remove(&mut self, holder: WatchHolder, peers: &[PeerId]) -> Vec<PeerId> {
        let mut unwatched = Vec::new();
        for p in peers {
            if let Some(holders) = self.holders.get_mut(p) {
                holders.remove(&holder);
                if holders.is_empty() {
                    self.holders.remove(p);
                    unwatched.push(*p);
                }
            }
        }
        unwatched
    }

    /// Drops every watch `holder` has; returns the peers no holder watches any more.
    pub fn remove_holder(&mut self, holder: WatchHolder) -> Vec<PeerId> {
        let held: Vec<PeerId> = self
            .holders
            .iter()
            .filter(|(_, holders)| holders.contains(&holder))
            .map(|(peer, _)| *peer)
            .collect();
        self.remove(holder, &held)
    }

    /// Every peer some holder watches (what a new line asks for).
    pub fn peers(&self) -> Vec<PeerId> {
        self.holders.keys().copied().collect()
    }

    /// How many peers some holder watches.
    pub fn len(&self) -> usize {
        self.holders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
    }

    #[test]
    fn a_peer_stays_watched_while_another_holder_wants_it() {
        let mut set = WatchSet::default();
        set.add(WatchHolder::Contacts, &[peer(1), peer(2)]);
        set.add(WatchHolder::Client(1), &[peer(2), peer(3)]);
        assert_eq!(set.peers(), vec![peer(1), peer(2), peer(3)]);

        // A client's unwatch of a contact leaves it watched; of its own peer, ends it.
        assert_eq!(
            set.remove(WatchHolder::Client(1), &[peer(2), peer(3)]),
            vec![peer(3)]
        );
        assert_eq!(set.peers(), vec![peer(1), peer(2)]);
        // The contact removed: now nobody watches it.
        assert_eq!(set.remove(WatchHolder::Contacts, &[peer(2)]), vec![peer(2)]);
        assert_eq!(set.peers(), vec![peer(1)]);
    }

    #[test]
    fn unwatching_what_a_holder_never_watched_changes_nothing() {
        let mut set = WatchSet::default();
        set.add(WatchHolder::Contacts, &[peer(1)]);
        assert!(
            set.remove(WatchHolder::Client(1), &[peer(1), peer(9)])
                .is_empty()
        );
        assert_eq!(set.peers(), vec![peer(1)]);
        // Twice the same holder: one watch, ended by one unwatch.
        set.add(WatchHolder::Contacts, &[peer(1)]);
        assert_eq!(set.remove(WatchHolder::Contacts, &[peer(1)]), vec![peer(1)]);
        assert!(set.peers().is_empty());
    }

    #[test]
    fn each_client_session_holds_its_own_watch() {
        let mut set = WatchSet::default();
        set.add(WatchHolder::Client(1), &[peer(1), peer(2)]);
        set.add(WatchHolder::Client(2), &[peer(2)]);
        assert_eq!(set.len(), 2);
        // The first session ends: what only it watched goes, what the other watches stays.
        assert_eq!(set.remove_holder(WatchHolder::Client(1)), vec![peer(1)]);
        assert_eq!(set.peers(), vec![peer(2)]);
        assert_eq!(set.remove_holder(WatchHolder::Client(2)), vec![peer(2)]);
        assert_eq!(set.len(), 0);
    }
}
