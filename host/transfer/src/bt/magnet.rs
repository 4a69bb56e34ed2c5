//! Magnet links (BEP 9): the info-hash, a display name, the trackers and peer addresses (`x.pe`) to ask for the
//! metadata. The link is parsed by librqbit-core (hashes in hex or base32, `tr`, `dn`); `x.pe`, which it skips, is
//! read here. Everything is bounded: a magnet is pasted by a user or handed over by a web page.

use std::net::SocketAddr;

use librqbit_core::magnet::Magnet;

use super::metainfo::MAX_TRACKERS;

/// Longer than this is not a link a person pasted.
pub const MAX_MAGNET_LEN: usize = 8 * 1024;
/// Peer addresses taken from one link.
pub const MAX_MAGNET_PEERS: usize = 50;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MagnetError {
    #[error("a magnet link over {MAX_MAGNET_LEN} bytes")]
    TooLong,
    #[error("not a magnet link: {0}")]
    Invalid(String),
    #[error(
        "the magnet link has no BitTorrent v1 info-hash (urn:btih); v2-only links are not supported"
    )]
    NoV1Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagnetLink {
    pub info_hash: [u8; 20],
    /// `dn`: what to call the transfer until the metadata names it.
    pub name: Option<String>,
    /// `tr`: the `http://`, `https://` and `udp://` trackers, in the link's order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to ask directly.
    pub peers: Vec<SocketAddr>,
}

impl MagnetLink {
    pub fn parse(link: &str) -> Result<Self, MagnetError> {
        let link = link.trim();
        if link.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong);
        }
        if !link
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("magnet:"))
        {
            return Err(MagnetError::Invalid(
                "it does not start with magnet:".into(),
            ));
        }
        let url = url::Url::parse(link).map_err(|e| MagnetError::Invalid(e.to_string()))?;
        // `so` (select only) is not used, and librqbit-core expands its ranges into a list without bound: a link of
        // 30 bytes asking for files 0-1000000000000 ran the parser out of memory (found by fuzzing). It is taken out
        // (by its decoded name, as librqbit-core reads it) before the link is parsed.
        let mut without_so = url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| key != "so")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        without_so.query_pairs_mut().clear().extend_pairs(kept);
        let magnet = Magnet::parse(without_so.as_str())
            .map_err(|e| MagnetError::Invalid(format!("{e:#}")))?;
        let info_hash = magnet.as_id20().ok_or(MagnetError::NoV1Hash)?.0;
        let mut trackers: Vec<String> = Vec::new();
        for tracker in &magnet.trackers {
            let lower = tracker.to_ascii_lowercase();
            if (lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("udp://"))
                && !trackers.contains(tracker)
                && trackers.len() < MAX_TRACKERS
            {
                trackers.push(tracker.clone());
            }
        }
        let mut peers = Vec::new();
        for (key, value) in url.query_pairs() {
            if key == "x.pe"
                && peers.len() < MAX_MAGNET_PEERS
                && let Ok(peer) = value.parse::<SocketAddr>()
                && peer.port() != 0
                && !peers.contains(&peer)
            {
                peers.push(peer);
            }
        }
        let name = magnet
            .name
            .map(|name| name.chars().filter(|c| !c.is_control()).take(255).collect());
        Ok(Self {
            info_hash,
            name,
            trackers,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "c9e15763f722f23e98a29decdfae341b98d53056";

    #[test]
    fn a_full_link() {
        let link = format!(
            "magnet:?xt=urn:btih:{HASH}&dn=Some%20Album&tr=udp%3A%2F%2F127.0.0.1%3A6969&tr=http://t/announce\
             &tr=wss://t&tr=udp://127.0.0.1:6969&x.pe=127.0.0.1:6881&x.pe=%5B%3A%3A1%5D%3A7000&x.pe=junk&x.pe=1.2.3.4:0"
        );
        let magnet = MagnetLink::parse(&link).unwrap();
        assert_eq!(magnet.info_hash[0], 0xc9);
        assert_eq!(magnet.name.as_deref(), Some("Some Album"));
        assert_eq!(
            magnet.trackers,
            vec!["udp://127.0.0.1:6969", "http://t/announce"],
            "websocket trackers are dropped, duplicates too"
        );
        assert_eq!(
            magnet.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[::1]:7000".parse().unwrap()
            ]
        );
    }

    #[test]
    fn base32_hashes_and_bare_links() {
        let magnet =
            MagnetLink::parse("MAGNET:?xt=urn:btih:ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMCW").unwrap();
        assert_eq!(magnet.info_hash[..2], [0xc9, 0xe1]);
        assert!(magnet.trackers.is_empty() && magnet.peers.is_empty() && magnet.name.is_none());
    }

    #[test]
    fn a_select_only_range_without_end_is_not_expanded() {
        // librqbit-core would make a list of 10^12 file indices of each (found by fuzzing: out of memory).
        for so in [
            "so=0-1000000000000",
            "s%6F=0-1000000000000",
            "so=1,2,0-99999999999",
        ] {
            let magnet =
                MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HASH}&{so}&dn=x")).unwrap();
            assert_eq!(magnet.info_hash[0], 0xc9);
            assert_eq!(magnet.name.as_deref(), Some("x"));
        }
    }

    #[test]
    fn bad_links_are_refused_with_a_reason() {
        assert!(matches!(
            MagnetLink::parse("http://example.com/a.torrent"),
            Err(MagnetError::Invalid(_))
        ));
        assert!(matches!(
            MagnetLink::parse("magnet:?dn=nothing"),
            Err(MagnetError::Invalid(_))
        ));
        assert!(matches!(
            MagnetLink::parse("magnet:?xt=urn:btih:123"),
            Err(MagnetError::Invalid(_))
        ));
        let long = format!(
            "magnet:?xt=urn:btih:{HASH}&dn={}",
            "a".repeat(MAX_MAGNET_LEN)
        );
        assert_eq!(MagnetLink::parse(&long), Err(MagnetError::TooLong));
        let many: String = (0..200)
            .map(|i| format!("&x.pe=127.0.0.1:{}", 1000 + i))
            .collect();
        let magnet = MagnetLink::parse(&format!("magnet:?xt=urn:btih:{HASH}{many}")).unwrap();
        assert_eq!(magnet.peers.len(), MAX_MAGNET_PEERS);
    }
}
