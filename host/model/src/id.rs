//! `PeerId`: the self-certifying identifier of a user, derived from their Ed25519 public key.
//!
//! Text form: `ap` + lowercase RFC 4648 base32 (no padding) of `public key (32 bytes) ||
//! checksum (3 bytes)`, where the checksum is the first three bytes of a domain-separated
//! BLAKE3 hash of the key. 58 characters, case-insensitive on input, no ambiguous symbols,
//! and a mistyped or truncated id is caught by the checksum with probability 1 - 2^-24.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const PREFIX: &str = "ap";
const KEY_LEN: usize = 32;
const CHECKSUM_LEN: usize = 3;
const CHECKSUM_CONTEXT: &[u8] = b"allpeers peer id checksum v1";
/// Length of the text form: prefix + ceil(35 * 8 / 5) base32 characters.
pub const PEER_ID_TEXT_LEN: usize = 2 + 56;

/// Identifies a peer by its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; KEY_LEN]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerIdError {
    #[error("a peer id starts with \"{PREFIX}\"")]
    MissingPrefix,
    #[error("a peer id is {PEER_ID_TEXT_LEN} characters long, this one has {0}")]
    Length(usize),
    #[error("a peer id uses only the letters a-z and digits 2-7")]
    Alphabet,
    #[error("the peer id's checksum does not match: it was mistyped or truncated")]
    Checksum,
}

impl PeerId {
    /// The peer id of an Ed25519 public key (its 32 raw bytes).
    pub fn from_public_key(key: [u8; KEY_LEN]) -> Self {
        PeerId(key)
    }

    /// The Ed25519 public key this id stands for.
    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn checksum(key: &[u8; KEY_LEN]) -> [u8; CHECKSUM_LEN] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(CHECKSUM_CONTEXT);
        hasher.update(key);
        let hash = hasher.finalize();
        let mut out = [0u8; CHECKSUM_LEN];
        out.copy_from_slice(&hash.as_bytes()[..CHECKSUM_LEN]);
        out
    }

    /// A short form for logs and UIs where the full id is too long (not unique, never parse it).
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; KEY_LEN + CHECKSUM_LEN];
        bytes[..KEY_LEN].copy_from_slice(&self.0);
        bytes[KEY_LEN..].copy_from_slice(&Self::checksum(&self.0));
        write!(
            f,
            "{PREFIX}{}",
            BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
        )
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl FromStr for PeerId {
    type Err = PeerIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let body = lower
            .strip_prefix(PREFIX)
            .ok_or(PeerIdError::MissingPrefix)?;
        if text.len() != PEER_ID_TEXT_LEN {
            return Err(PeerIdError::Length(text.chars().count()));
        }
        let bytes = BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| PeerIdError::Alphabet)?;
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&bytes[..KEY_LEN]);
        if bytes[KEY_LEN..] != Self::checksum(&key) {
            return Err(PeerIdError::Checksum);
        }
        Ok(PeerId(key))
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PeerId {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8 * 7;
        }
        PeerId::from_public_key(key)
    }

    #[test]
    fn text_form_round_trips_and_has_fixed_length() {
        let id = sample();
        let text = id.to_string();
        assert_eq!(text.len(), PEER_ID_TEXT_LEN);
        assert!(text.starts_with("ap"));
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<PeerId>().unwrap(), id);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let text = sample().to_string();
        for pos in 2..text.len() {
            for replacement in ['a', 'q', 'z', '2', '7'] {
                let mut chars: Vec<char> = text.chars().collect();
                if chars[pos] == replacement {
                    continue;
                }
                chars[pos] = replacement;
                let typo: String = chars.into_iter().collect();
                assert!(typo.parse::<PeerId>().is_err(), "typo at {pos} accepted");
            }
        }
    }

    #[test]
    fn malformed_ids_get_precise_errors() {
        let text = sample().to_string();
        assert_eq!("xx".parse::<PeerId>(), Err(PeerIdError::MissingPrefix));
        assert_eq!(text[..40].parse::<PeerId>(), Err(PeerIdError::Length(40)));
        let bad = format!("ap{}", "1".repeat(56));
        assert_eq!(bad.parse::<PeerId>(), Err(PeerIdError::Alphabet));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id = sample();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<PeerId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<PeerId>("\"apnope\"").is_err());
    }
}
