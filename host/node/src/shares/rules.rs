//! The shares area's rules, pure: levels between the API and the core, who may do what, share
//! ids as text, a local edit as ops, and what travels on `allpeers/sync/1` besides the core's
//! frames (offers).

use allpeers_model::PeerId;
use allpeers_model::api::shares::ShareLevel;
use allpeers_model::resource::{Child, Resource};
use allpeers_model::schema::Registry;
use allpeers_model::schema::app::namespace_of;
use allpeers_replica::state::State;
use allpeers_replica::sync::{self, SyncError};
use allpeers_replica::{Action, Level, OpId, ShareId};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeSet;

/// An offer names a share, its root and a title: a few hundred bytes. Anything larger is
/// not an offer.
pub const MAX_OFFER_BYTES: usize = 4096;
/// A title shown in an offer, cut to this many characters (a peer chooses it).
const MAX_TITLE_CHARS: usize = 200;

/// Envelope tags of a request on `allpeers/sync/1` (1 was a single frame, before frames
/// travelled in batches).
const TAG_OFFER: u8 = 2;
const TAG_FRAMES: u8 = 3;

pub fn to_level(level: ShareLevel) -> Level {
    match level {
        ShareLevel::Read => Level::Read,
        ShareLevel::Write => Level::Write,
        ShareLevel::Admin => Level::Admin,
    }
}

pub fn to_api(level: Level) -> ShareLevel {
    match level {
        Level::Read => ShareLevel::Read,
        Level::Write => ShareLevel::Write,
        Level::Admin => ShareLevel::Admin,
    }
}

/// Editing shared resources needs write.
pub fn may_write(level: Option<Level>) -> bool {
    level >= Some(Level::Write)
}

/// Adding and revoking members needs admin, and nobody revokes the owner.
pub fn may_manage(level: Option<Level>, target: &PeerId, owner: Option<PeerId>) -> bool {
    level == Some(Level::Admin) && owner != Some(*target)
}

/// An offer is taken only from an accepted contact: a stranger cannot fill our disk (the
/// user still has to accept it).
pub fn takes_offer_from(from: &PeerId, contacts: &[PeerId]) -> bool {
    contacts.contains(from)
}

pub fn share_text(share: &ShareId) -> String {
    share.to_string()
}

/// A share id from its hex text.
pub fn parse_share(text: &str) -> Option<ShareId> {
    if text.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(OpId(id))
}

/// A resource's whole state (local metadata stays out) as a create op that also places it in
/// `list`: one op per item of a shared list, the create and the add.
pub fn create_in_list_action(r: &Resource, list: &str) -> Action {
    Action::CreateInList {
        resource: r.id.clone(),
        kind: r.type_name.clone(),
        value: allpeers_store::ops::create_value(r),
        list: list.to_owned(),
    }
}

/// The app schema files resources of `type_name` need, with their text: those declaring the
/// type, its ancestors, and the anonymous types of their children and metadata, when in an
/// app's namespace (built-in types are everyone's; other types registered locally do not
/// travel). What a share carries so a member can store a type it never saw.
pub fn app_schemas(reg: &Registry, type_name: &str) -> Vec<(String, String)> {
    let mut files: Vec<&str> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = vec![type_name];
    while let Some(name) = todo.pop() {
        if !seen.insert(name) || namespace_of(name).is_none() {
            continue;
        }
        let Some(t) = reg.get(name) else { continue };
        if !files.contains(&t.file.as_str()) {
            files.push(&t.file);
        }
        todo.extend(t.parent.as_deref());
        todo.extend(t.children.iter().map(|c| c.type_name.as_str()));
        todo.extend(t.metadata.as_deref());
    }
    files
        .into_iter()
        .filter_map(|file| {
            let (_, text) = reg.files().iter().find(|(f, _)| f == file)?;
            Some((file.to_string(), text.clone()))
        })
        .collect()
}

/// The ops that turn `old` into `new` (both checked by the store; `state` is the replica's,
/// which `old` is the view of): one per property that changed (`null` for one removed), and
/// per child slot one per child changed, removed or appended. A child's key is where it sits
/// in the replica (see [`State::child_keys`]); appended children get new keys after every
/// key the slot had, carrying `author`'s tag, so two members appending at once both keep their
/// children (a key per position would make one overwrite the other). An insertion before
/// the end rewrites the children from there on. Local metadata is not replicated.
pub fn edit_actions(
    old: &Resource,
    new: &Resource,
    state: &State,
    author: &PeerId,
    now_ms: u64,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let names: BTreeSet<&String> = old.properties.keys().chain(new.properties.keys()).collect();
    for name in names {
        let (before, after) = (old.properties.get(name), new.properties.get(name));
        if before != after {
            actions.push(Action::SetProperty {
                resource: new.id.clone(),
                name: name.clone(),
                value: after
                    .map(|v| serde_json::to_value(v).unwrap_or(Json::Null))
                    .unwrap_or(Json::Null),
            });
        }
    }
    let slots: BTreeSet<&String> = old.children.keys().chain(new.children.keys()).collect();
    for slot in slots {
        let before = old.children.get(slot).map(Vec::as_slice).unwrap_or(&[]);
        let after = new.children.get(slot).map(Vec::as_slice).unwrap_or(&[]);
        let mut keys = state.child_keys(&new.id, slot);
        if keys.len() != before.len() {
            // Not the replica's view (it never held the slot): as a create numbers children.
            keys = (0..before.len()).map(child_key).collect();
        }
        let prefix = before.iter().zip(after).take_while(|(a, b)| a == b).count();
        // Children kept at the end. Not when the slot grew: no key fits before kept children,
        // so an insertion rewrites the slot from there to the end.
        let suffix = if after.len() > before.len() {
            0
        } else {
            before
                .iter()
                .rev()
                .zip(after.iter().rev())
                .take(after.len() - prefix)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let (mid_old, mid_new) = (
            before.len() - prefix - suffix,
            after.len() - prefix - suffix,
        );
        let set = |key: &str, value: Option<&Child>| Action::SetChild {
            resource: new.id.clone(),
            slot: slot.clone(),
            key: key.to_string(),
            value: value.map(|c| serde_json::to_value(c).unwrap_or(Json::Null)),
        };
        for j in 0..mid_old.min(mid_new) {
            let i = prefix + j;
            if before[i] != after[i] {
                actions.push(set(&keys[i], Some(&after[i])));
            }
        }
        for key in &keys[prefix + mid_new.min(mid_old)..prefix + mid_old] {
            actions.push(set(key, None));
        }
        if mid_new > mid_old {
            let last = state.last_child_key(&new.id, slot);
            let added = &after[prefix + mid_old..prefix + mid_new];
            let fresh = appended_keys(last, now_ms, author, added.len());
            for (key, child) in fresh.iter().zip(added) {
                actions.push(set(key, Some(child)));
            }
        }
    }
    actions
}

/// Child keys as the core numbers a create's children (`00000`, `00001`, …).
fn child_key(i: usize) -> String {
    format!("{i:05}")
}

/// Keys for `n` children appended after `last` (the slot's greatest key): a 13-digit time —
/// now, or just after the time in `last` if that is later — then the child's number and the
/// author's tag. They sort after `last` and every create's key (`00000`…), and two authors'
/// keys never meet.
fn appended_keys(last: Option<&str>, now_ms: u64, author: &PeerId, n: usize) -> Vec<String> {
    const MAX_MS: u64 = 9_999_999_999_999;
    let last_ms = last
        .and_then(|k| k.get(..13))
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok());
    let ms = last_ms
        .map_or(now_ms, |l| now_ms.max(l.saturating_add(1)))
        .min(MAX_MS);
    let tag: String = author.public_key()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (0..n).map(|i| format!("{ms:013}{i:05}.{tag}")).collect()
}

/// "This share exists and you are invited": sent by a member when it adds someone, and again
/// when a member answers that it does not hold the share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub share: String,
    pub resource: String,
    pub title: String,
}

/// What one request on `allpeers/sync/1` carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// Frames of the core's sync session (`allpeers_replica::sync::Message`), in order: what
    /// was queued for the peer, handled and committed at once at the receiver.
    Frames(Vec<Vec<u8>>),
    Offer(Offer),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("empty request")]
    Empty,
    #[error("unknown request tag {0}")]
    Tag(u8),
    #[error("offer of {0} bytes is over the limit")]
    OfferTooLarge(usize),
    #[error("malformed offer: {0}")]
    Offer(String),
    #[error(transparent)]
    Frames(#[from] SyncError),
}

/// Frames as requests, in order: as many in each as [`sync::MAX_FRAMES_PER_REQUEST`] and
/// [`sync::MAX_REQUEST_BYTES`] allow.
pub fn frame_requests(frames: Vec<Vec<u8>>) -> Vec<Envelope> {
    let mut requests = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    for frame in frames {
        let cost = sync::framed_len(&frame);
        if !batch.is_empty()
            && (batch.len() >= sync::MAX_FRAMES_PER_REQUEST || bytes + cost > REQUEST_ROOM)
        {
            requests.push(Envelope::Frames(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += cost;
        batch.push(frame);
    }
    if !batch.is_empty() {
        requests.push(Envelope::Frames(batch));
    }
    requests
}

/// Adds `next`'s frames to `request` if both are frames and the bounds allow; else hands
/// `next` back.
pub fn merge_frames(request: &mut Envelope, next: Envelope) -> Result<(), Envelope> {
    match (request, next) {
        (Envelope::Frames(batch), Envelope::Frames(more)) => {
            let bytes: usize = batch.iter().chain(&more).map(|f| sync::framed_len(f)).sum();
            if batch.len() + more.len() > sync::MAX_FRAMES_PER_REQUEST || bytes > REQUEST_ROOM {
                return Err(Envelope::Frames(more));
            }
            batch.extend(more);
            Ok(())
        }
        (_, next) => Err(next),
    }
}

/// A request's frames take at most this many bytes: the limit less the tag and the count.
const REQUEST_ROOM: usize = sync::MAX_REQUEST_BYTES - 16;

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Envelope::Frames(frames) => {
                let mut out = vec![TAG_FRAMES];
                out.extend(sync::encode_frames(frames));
                out
            }
            Envelope::Offer(offer) => {
                let mut out = vec![TAG_OFFER];
                out.extend(serde_json::to_vec(offer).expect("offers serialise"));
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (&tag, rest) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        match tag {
            TAG_FRAMES => Ok(Envelope::Frames(
                sync::decode_frames(rest)?
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            )),
            TAG_OFFER => {
                if rest.len() > MAX_OFFER_BYTES {
                    return Err(EnvelopeError::OfferTooLarge(rest.len()));
                }
                let mut offer: Offer = serde_json::from_slice(rest)
                    .map_err(|e| EnvelopeError::Offer(e.to_string()))?;
                parse_share(&offer.share)
                    .ok_or_else(|| EnvelopeError::Offer("bad share id".into()))?;
                offer.title = offer.title.chars().take(MAX_TITLE_CHARS).collect();
                Ok(Envelope::Offer(offer))
            }
            other => Err(EnvelopeError::Tag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_model::resource::Child;

    #[test]
    fn share_ids_round_trip_as_text_and_bad_text_is_refused() {
        let id = OpId([0xab; 32]);
        assert_eq!(parse_share(&share_text(&id)), Some(id));
        assert_eq!(parse_share("ab"), None);
        assert_eq!(parse_share(&"zz".repeat(32)), None);
    }

    #[test]
    fn levels_decide_who_may_write_and_manage() {
        let owner = PeerId::from_public_key([1; 32]);
        let other = PeerId::from_public_key([2; 32]);
        assert!(!may_write(None));
        assert!(!may_write(Some(Level::Read)));
        assert!(may_write(Some(Level::Write)));
        assert!(!may_manage(Some(Level::Write), &other, Some(owner)));
        assert!(may_manage(Some(Level::Admin), &other, Some(owner)));
        assert!(!may_manage(Some(Level::Admin), &owner, Some(owner)));
        assert!(takes_offer_from(&owner, &[owner]));
        assert!(!takes_offer_from(&other, &[owner]));
    }

    #[test]
    fn an_edit_becomes_one_op_per_changed_property_and_child() {
        let old = Resource::new("Link")
            .with_id("l")
            .with("url", "https://a")
            .with("title", "A")
            .with_child("notes", Child::default().with("text", "one"));
        let new = Resource::new("Link")
            .with_id("l")
            .with("url", "https://b")
            .with_meta("rating", 5i64);
        let actions = edit_actions(
            &old,
            &new,
            &State::default(),
            &PeerId::from_public_key([1; 32]),
            0,
        );
        assert_eq!(
            actions,
            vec![
                Action::SetProperty {
                    resource: "l".into(),
                    name: "title".into(),
                    value: Json::Null
                },
                Action::SetProperty {
                    resource: "l".into(),
                    name: "url".into(),
                    value: Json::String("https://b".into())
                },
                Action::SetChild {
                    resource: "l".into(),
                    slot: "notes".into(),
                    key: "00000".into(),
                    value: None
                },
            ]
        );
    }

    /// Texts of the notes of board `b` as a replica has them.
    fn notes(replica: &allpeers_replica::Replica) -> Vec<String> {
        let view = replica.resource("b").unwrap();
        view["children"]["note"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["properties"]["text"].as_str().unwrap().to_string())
            .collect()
    }

    fn board(texts: &[&str]) -> Resource {
        texts
            .iter()
            .fold(Resource::new("Board").with_id("b"), |r, t| {
                r.with_child("note", Child::default().with("text", *t))
            })
    }

    #[test]
    fn two_members_appending_at_once_both_keep_their_children() {
        use allpeers_replica::{Op, Replica};
        use ed25519_dalek::SigningKey;
        const T0: u64 = 1_764_590_000_000;
        let keys = [
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        ];
        let ids = keys
            .clone()
            .map(|k| PeerId::from_public_key(k.verifying_key().to_bytes()));
        let start = board(&["first"]);
        let value = allpeers_store::ops::create_value(&start);
        let mut alice = Replica::create_share(&keys[0], "b", "Board", value, T0).unwrap();
        let grant = Action::Grant {
            member: ids[1],
            level: Level::Write,
        };
        alice.author(&keys[0], grant, T0 + 1).unwrap();
        let mut bob = Replica::new(alice.share());
        for op in alice.kept_ops().cloned().collect::<Vec<Op>>() {
            bob.receive(op.wire(), T0 + 2).unwrap();
        }
        let edit = |replica: &mut Replica, who: usize, old: &Resource, new: &Resource| {
            edit_actions(old, new, replica.state(), &ids[who], T0 + 10)
                .into_iter()
                .map(|a| replica.author(&keys[who], a, T0 + 10).unwrap().0)
                .collect::<Vec<Op>>()
        };
        let exchange = |a: &mut Replica, b: &mut Replica, from_a: &[Op], from_b: &[Op]| {
            for op in from_b {
                a.receive(op.wire(), T0 + 20).unwrap();
            }
            for op in from_a {
                b.receive(op.wire(), T0 + 20).unwrap();
            }
        };
        // Both append to the board in the same millisecond, neither having seen the other's.
        let from_alice = edit(&mut alice, 0, &start, &board(&["first", "alice's"]));
        let from_bob = edit(&mut bob, 1, &start, &board(&["first", "bob's"]));
        assert_eq!((from_alice.len(), from_bob.len()), (1, 1));
        exchange(&mut alice, &mut bob, &from_alice, &from_bob);
        let merged = notes(&alice);
        assert_eq!(merged, notes(&bob));
        assert_eq!(merged.len(), 3, "{merged:?}");
        assert!(merged.contains(&"alice's".to_string()) && merged.contains(&"bob's".to_string()));
        assert_eq!(merged[0], "first");

        // On the merged view: alice removes the first note while bob edits his and appends
        // again; each change is by key, so none is lost.
        let view: Vec<&str> = merged.iter().map(String::as_str).collect();
        let now = board(&view);
        let mut removed = view.clone();
        removed.remove(0);
        let from_alice = edit(&mut alice, 0, &now, &board(&removed));
        assert_eq!(from_alice.len(), 1, "one removal");
        let mut edited: Vec<&str> = view
            .iter()
            .map(|t| if *t == "bob's" { "bob's, edited" } else { t })
            .collect();
        edited.push("bob's second");
        let from_bob = edit(&mut bob, 1, &now, &board(&edited));
        exchange(&mut alice, &mut bob, &from_alice, &from_bob);
        let last = notes(&alice);
        assert_eq!(last, notes(&bob));
        let mut expected: Vec<String> = edited[1..].iter().map(|t| t.to_string()).collect();
        expected.sort();
        let mut got = last.clone();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(last.last().map(String::as_str), Some("bob's second"));
    }

    #[test]
    fn an_insertion_before_kept_children_rewrites_to_the_end() {
        let me = PeerId::from_public_key([1; 32]);
        let actions = edit_actions(
            &board(&["a", "b"]),
            &board(&["a", "x", "b"]),
            &State::default(),
            &me,
            1_764_590_000_000,
        );
        let keys: Vec<(&str, bool)> = actions
            .iter()
            .map(|a| match a {
                Action::SetChild { key, value, .. } => (key.as_str(), value.is_some()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[0], ("00001", true));
        assert!(keys[1].0 > "00001" && keys[1].1, "{keys:?}");
    }

    #[test]
    fn envelopes_round_trip_and_bad_ones_are_refused() {
        let offer = Offer {
            share: share_text(&OpId([7; 32])),
            resource: "r".into(),
            title: "Holiday".into(),
        };
        let frames = Envelope::Frames(vec![vec![1, 2, 3], vec![], vec![4; 300]]);
        for e in [frames, Envelope::Offer(offer)] {
            assert_eq!(Envelope::decode(&e.encode()), Ok(e));
        }
        assert_eq!(Envelope::decode(&[]), Err(EnvelopeError::Empty));
        assert_eq!(Envelope::decode(&[9]), Err(EnvelopeError::Tag(9)));
        // More frames than a request may carry, or a count the bytes do not hold.
        assert!(matches!(
            Envelope::decode(&[TAG_FRAMES, 0x7f]),
            Err(EnvelopeError::Frames(_))
        ));
        assert!(matches!(
            Envelope::decode(&[TAG_FRAMES, 2, 1, 0]),
            Err(EnvelopeError::Frames(_))
        ));
        let mut big = vec![TAG_OFFER];
        big.resize(MAX_OFFER_BYTES + 2, b' ');
        assert!(matches!(
            Envelope::decode(&big),
            Err(EnvelopeError::OfferTooLarge(_))
        ));
        let bad = [
            &[TAG_OFFER][..],
            br#"{"share":"x","resource":"r","title":""}"#,
        ]
        .concat();
        assert!(matches!(
            Envelope::decode(&bad),
            Err(EnvelopeError::Offer(_))
        ));
    }
}
