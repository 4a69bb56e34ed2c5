//! The shares area's rules, pure: levels between the API and the core, who may do what, share
//! ids as text, a local edit as ops, and what travels on `allpeers/sync/1` besides the core's
//! frames (offers).

use allpeers_model::PeerId;
use allpeers_model::api::shares::ShareLevel;
use allpeers_model::resource::Resource;
use allpeers_replica::sync::{self, SyncError};
use allpeers_replica::{Action, Level, OpId, ShareId};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

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

/// A resource's whole state as a create op (local metadata stays out).
pub fn create_action(r: &Resource) -> Action {
    Action::Create {
        resource: r.id.clone(),
        kind: r.type_name.clone(),
        value: allpeers_store::ops::create_value(r),
    }
}

/// Child keys as the core numbers a create's children (`00000`, `00001`, …).
fn child_key(i: usize) -> String {
    format!("{i:05}")
}

/// The ops that turn `old` into `new` (both checked by the store): one per property that
/// changed (`null` for one removed), one per child of a replaced slot. Local metadata is not
/// replicated.
pub fn edit_actions(old: &Resource, new: &Resource) -> Vec<Action> {
    let mut actions = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        old.properties.keys().chain(new.properties.keys()).collect();
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
    let slots: std::collections::BTreeSet<&String> =
        old.children.keys().chain(new.children.keys()).collect();
    for slot in slots {
        let before = old.children.get(slot).map(Vec::as_slice).unwrap_or(&[]);
        let after = new.children.get(slot).map(Vec::as_slice).unwrap_or(&[]);
        for i in 0..before.len().max(after.len()) {
            if before.get(i) == after.get(i) {
                continue;
            }
            actions.push(Action::SetChild {
                resource: new.id.clone(),
                slot: slot.clone(),
                key: child_key(i),
                value: after
                    .get(i)
                    .map(|c| serde_json::to_value(c).unwrap_or(Json::Null)),
            });
        }
    }
    actions
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
        let actions = edit_actions(&old, &new);
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
