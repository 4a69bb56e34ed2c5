//! The files area's rules, with no I/O.

use std::collections::BTreeMap;

use allpeers_model::PeerId;
use allpeers_model::resource::Resource;
use allpeers_replica::{Level, Replica, ShareId};
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

/// Whether `peer` may fetch the content `hash`: a share we hold names it as a member and holds a resource with
/// that hash. Checked on every request, so a revoked member or a file taken out of the share is refused at once.
pub fn entitled(replicas: &BTreeMap<ShareId, Replica>, peer: &PeerId, hash: &ContentHash) -> bool {
    let hex = hash.to_hex();
    replicas
        .values()
        .any(|r| r.level(peer).is_some() && resources_with_hash(r, &hex).next().is_some())
}

/// Whom to fetch a shared file from: the share's other members, its owner first (who shared it, most likely), then
/// the rest in a stable order.
pub fn sources(
    members: &BTreeMap<PeerId, Level>,
    owner: Option<PeerId>,
    me: &PeerId,
) -> Vec<PeerId> {
    let mut sources: Vec<PeerId> = owner.filter(|o| o != me).into_iter().collect();
    sources.extend(
        members
            .keys()
            .filter(|p| *p != me && Some(**p) != owner)
            .copied(),
    );
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
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
    fn sources_put_the_owner_first_and_never_us() {
        let members: BTreeMap<PeerId, Level> = [
            (peer(1), Level::Admin),
            (peer(2), Level::Read),
            (peer(3), Level::Write),
        ]
        .into();
        assert_eq!(
            sources(&members, Some(peer(3)), &peer(1)),
            vec![peer(3), peer(2)]
        );
        assert_eq!(sources(&members, None, &peer(2)), vec![peer(1), peer(3)]);
    }
}
