//! The files area's rules, with no I/O.

use std::collections::{BTreeMap, HashSet};

use allpeers_model::PeerId;
use allpeers_model::resource::Resource;
use allpeers_replica::{Replica, ShareId};
use allpeers_transfer::blob::ContentHash;

/// The type every shared file is (Image, Audio, Video and Text extend it).
pub const FILE_TYPE: &str = "File";

/// What a File resource says of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub hash: ContentHash,
    pub size: u64,
    pub name: String,
}

/// The content a File resource names: its `hash` (BLAKE3 hex), `size` and `name`; `None` if one is missing or
/// malformed (not shared yet, or written by hand).
pub fn facts(r: &Resource) -> Option<FileFacts> {
    let hash = ContentHash::parse(r.get("hash")?.as_str()?)?;
    let size = u64::try_from(r.get("size")?.as_i64()?).ok()?;
    let name = r
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| hash.to_hex());
    Some(FileFacts { hash, size, name })
}

/// The ids of the resources of `replica` whose `hash` is `hash` (hex).
pub fn resources_with_hash<'a>(
    replica: &'a Replica,
    hash: &'a str,
) -> impl Iterator<Item = String> + 'a {
    replica.state().resource_ids().filter_map(move |id| {
        let view = replica.resource(id)?;
        (view.get("properties")?.get("hash")?.as_str()? == hash).then(|| id.to_string())
    })
}

/// The content hashes each share's resources name, so serving checks a hash against the shares naming it without
/// reading every resource of every share on each request. A share's set is built again only when the share took an
/// op since (the ops held or an author's last sequence number moved: a file added, changed or taken out), on the
/// first request after.
#[derive(Debug, Default)]
pub struct HashIndex {
    shares: BTreeMap<ShareId, Indexed>,
}

#[derive(Debug)]
struct Indexed {
    /// The ops held and each author's last sequence number when the set was built.
    seqs: (usize, BTreeMap<PeerId, u64>),
    hashes: HashSet<ContentHash>,
}

impl HashIndex {
    /// Whom to fetch the content `hash` from: the members of every share we hold that names it (the file may be in
    /// several, each with members of its own) — the shares' owners first (who shared it, most likely), then the
    /// rest in a stable order; never `me`. Each of them checks that we are entitled before it serves us.
    pub fn sources(
        &mut self,
        replicas: &BTreeMap<ShareId, Replica>,
        hash: &ContentHash,
        me: &PeerId,
    ) -> Vec<PeerId> {
        self.shares.retain(|share, _| replicas.contains_key(share));
        let naming: Vec<&Replica> = replicas
            .iter()
            .filter(|(share, r)| self.hashes(**share, r).contains(hash))
            .map(|(_, r)| r)
            .collect();
        let owners = naming.iter().filter_map(|r| r.owner());
        let members = naming.iter().flat_map(|r| r.members().into_keys());
        let mut sources: Vec<PeerId> = Vec::new();
        for peer in owners.chain(members) {
            if peer != *me && !sources.contains(&peer) {
                sources.push(peer);
            }
        }
        sources
    }

    /// Whether `peer` may fetch the content `hash`: a share we hold names it as a member and holds a resource with
    /// that hash. Checked on every request, so a revoked member or a file taken out of the share is refused at once.
    pub fn entitled(
        &mut self,
        replicas: &BTreeMap<ShareId, Replica>,
        peer: &PeerId,
        hash: &ContentHash,
    ) -> bool {
        self.shares.retain(|share, _| replicas.contains_key(share));
        replicas
            .iter()
            .any(|(share, r)| r.level(peer).is_some() && self.hashes(*share, r).contains(hash))
    }

    fn hashes(&mut self, share: ShareId, replica: &Replica) -> &HashSet<ContentHash> {
        let seqs = (
            replica.held_count(),
            replica
                .author_seqs()
                .iter()
                .map(|(author, seq)| (*author, *seq))
                .collect(),
        );
        let indexed = self.shares.entry(share).or_insert_with(|| Indexed {
            seqs: (0, BTreeMap::new()),
            hashes: HashSet::new(),
        });
        if indexed.seqs != seqs || indexed.seqs.0 == 0 {
            indexed.hashes = replica
                .state()
                .resource_ids()
                .filter_map(|id| {
                    let view = replica.resource(id)?;
                    ContentHash::parse(view.get("properties")?.get("hash")?.as_str()?)
                })
                .collect();
            indexed.seqs = seqs;
        }
        &indexed.hashes
    }
}

#[cfg(test)]
mod tests {
    use allpeers_replica::{Action, Level};
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn member(n: u8) -> PeerId {
        PeerId::from_public_key(key(n).verifying_key().to_bytes())
    }

    #[test]
    fn the_hash_index_follows_a_share_s_files_and_members() {
        let (one, two) = (ContentHash::of(b"one"), ContentHash::of(b"two"));
        let mut r = Replica::create_share(
            &key(1),
            "photo",
            "File",
            json!({"properties": {"name": "a.jpg", "size": 3, "hash": one.to_hex()}}),
            1_000,
        )
        .unwrap();
        let act = |r: &mut Replica, action: Action, at: u64| {
            r.author(&key(1), action, at).unwrap();
        };
        act(
            &mut r,
            Action::Grant {
                member: member(2),
                level: Level::Read,
            },
            1_001,
        );
        let mut replicas = BTreeMap::from([(r.share(), r)]);
        let mut index = HashIndex::default();
        assert!(index.entitled(&replicas, &member(2), &one));
        assert!(!index.entitled(&replicas, &member(3), &one), "not a member");
        assert!(
            !index.entitled(&replicas, &member(2), &two),
            "not in the share"
        );
        // The file changes: its new hash is served, the old one no longer.
        let r = replicas.values_mut().next().unwrap();
        act(
            r,
            Action::SetProperty {
                resource: "photo".into(),
                name: "hash".into(),
                value: json!(two.to_hex()),
            },
            1_002,
        );
        assert!(index.entitled(&replicas, &member(2), &two));
        assert!(!index.entitled(&replicas, &member(2), &one));
        let r = replicas.values_mut().next().unwrap();
        act(
            r,
            Action::Grant {
                member: member(3),
                level: Level::Read,
            },
            1_003,
        );
        assert!(index.entitled(&replicas, &member(3), &two), "a new member");
        // The share left: nothing is served from it.
        replicas.clear();
        assert!(!index.entitled(&replicas, &member(2), &two));
        assert!(index.shares.is_empty());
    }

    #[test]
    fn facts_need_a_hash_and_a_size() {
        let hash = ContentHash::of(b"x");
        let r = Resource::new("File")
            .with("name", "a.jpg")
            .with("size", 12i64)
            .with("hash", hash.to_hex());
        assert_eq!(
            facts(&r),
            Some(FileFacts {
                hash,
                size: 12,
                name: "a.jpg".into()
            })
        );
        assert_eq!(facts(&Resource::new("File").with("size", 12i64)), None);
        let bad = Resource::new("File")
            .with("size", -1i64)
            .with("hash", hash.to_hex());
        assert_eq!(facts(&bad), None);
        let garbled = Resource::new("File")
            .with("size", 1i64)
            .with("hash", "not a hash");
        assert_eq!(facts(&garbled), None);
    }

    #[test]
    fn sources_are_the_members_of_every_share_naming_the_file_owners_first_never_us() {
        let (photo, other) = (ContentHash::of(b"photo"), ContentHash::of(b"other"));
        let share = |owner: u8, hash: &ContentHash, members: &[u8], at: u64| {
            let mut r = Replica::create_share(
                &key(owner),
                "photo",
                "File",
                json!({"properties": {"name": "a.jpg", "size": 5, "hash": hash.to_hex()}}),
                at,
            )
            .unwrap();
            for (n, m) in members.iter().enumerate() {
                let grant = Action::Grant {
                    member: member(*m),
                    level: Level::Read,
                };
                r.author(&key(owner), grant, at + 1 + n as u64).unwrap();
            }
            r
        };
        // Alice (1) shared the photo with us (2) and carol (3); dave (4) shared the same photo with us and erin
        // (5); frank (6) shared something else with us and gina (7).
        let replicas: BTreeMap<ShareId, Replica> = [
            share(1, &photo, &[2, 3], 1_000),
            share(4, &photo, &[5, 2], 2_000),
            share(6, &other, &[2, 7], 3_000),
        ]
        .into_iter()
        .map(|r| (r.share(), r))
        .collect();
        let mut index = HashIndex::default();
        let sources = index.sources(&replicas, &photo, &member(2));
        let owners: HashSet<PeerId> = sources[..2].iter().copied().collect();
        assert_eq!(owners, HashSet::from([member(1), member(4)]), "{sources:?}");
        let rest: HashSet<PeerId> = sources[2..].iter().copied().collect();
        assert_eq!(rest, HashSet::from([member(3), member(5)]), "{sources:?}");
        assert_eq!(
            index.sources(&replicas, &other, &member(2)),
            vec![member(6), member(7)]
        );
        assert!(
            index
                .sources(&replicas, &ContentHash::of(b"none"), &member(2))
                .is_empty()
        );
    }
}
