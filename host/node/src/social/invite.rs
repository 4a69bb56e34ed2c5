//! Invite codes: `apinvite1` + base32 of who we are, how to reach us, and a token.
//!
//! The token is an expiry time and a MAC over our PeerId and that time, keyed by a key
//! derived from our identity: we can check tokens we issued without storing them, and a
//! contact request that carries a valid one is accepted at once (whoever holds the code
//! was given it by us). Codes expire after [`VALIDITY`].

use std::time::Duration;

use allpeers_model::PeerId;
use allpeers_net::Identity;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "apinvite1";
/// How long an invite code works.
pub const VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600);
/// Longest code we parse.
const MAX_CODE: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub peer: PeerId,
    /// `name@hub`, if registered.
    pub name: Option<String>,
    /// The inviter's home hub: its PeerId and addresses (`quic://…`, `tcp://…`).
    pub hub: Option<(PeerId, Vec<String>)>,
    pub token: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an invite code: {0}")]
pub struct InviteError(pub String);

fn token_key(identity: &Identity) -> [u8; 32] {
    blake3::derive_key(
        "allpeers 2026 invite token key v1",
        &identity.sign(b"allpeers-invite-token-key"),
    )
}

fn mac(identity: &Identity, expires_ms: u64) -> [u8; 16] {
    let mut h = blake3::Hasher::new_keyed(&token_key(identity));
    h.update(identity.peer_id().public_key());
    h.update(&expires_ms.to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// A fresh token of ours, valid until `now_ms + VALIDITY`.
pub fn issue_token(identity: &Identity, now_ms: u64) -> Vec<u8> {
    let expires = now_ms + VALIDITY.as_millis() as u64;
    let mut token = expires.to_le_bytes().to_vec();
    token.extend_from_slice(&mac(identity, expires));
    token
}

/// When an invite's token stops being honoured (unix ms), as its issuer wrote it; only the
/// issuer can check the rest.
pub fn token_expires(token: &[u8]) -> Option<u64> {
    (token.len() == 24).then(|| u64::from_le_bytes(token[..8].try_into().expect("8 bytes")))
}

/// Whether `token` is one of ours and not expired.
pub fn check_token(identity: &Identity, token: &[u8], now_ms: u64) -> bool {
    if token.len() != 24 {
        return false;
    }
    let expires = u64::from_le_bytes(token[..8].try_into().expect("8 bytes"));
    expires > now_ms && token[8..] == mac(identity, expires)
}

impl Invite {
    pub fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(self).expect("invites serialise");
        format!(
            "{PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase()
        )
    }

    pub fn decode(code: &str) -> Result<Invite, InviteError> {
        let code = code.trim();
        if code.len() > MAX_CODE {
            return Err(InviteError("too long".into()));
        }
        let Some(body) = code.strip_prefix(PREFIX) else {
            return Err(InviteError(format!("it does not start with {PREFIX}")));
        };
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_uppercase().as_bytes())
            .map_err(|e| InviteError(format!("bad base32: {e}")))?;
        postcard::from_bytes(&bytes).map_err(|e| InviteError(format!("malformed: {e}")))
    }

    pub fn looks_like(text: &str) -> bool {
        text.trim().starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_tokens_check() {
        let me = Identity::generate();
        let other = Identity::generate();
        let invite = Invite {
            peer: me.peer_id(),
            name: Some("alice@hub.test".into()),
            hub: Some((other.peer_id(), vec!["quic://127.0.0.1:7700".into()])),
            token: issue_token(&me, 1000),
        };
        let code = invite.encode();
        assert!(Invite::looks_like(&code));
        assert_eq!(Invite::decode(&code).unwrap(), invite);
        assert!(check_token(&me, &invite.token, 2000));
        assert!(!check_token(&other, &invite.token, 2000));
        assert!(!check_token(
            &me,
            &invite.token,
            1000 + VALIDITY.as_millis() as u64
        ));
        let mut forged = invite.token.clone();
        forged[0] ^= 1; // a later expiry without the MAC
        assert!(!check_token(&me, &forged, 2000));
        assert!(Invite::decode("apinvite1!!!").is_err());
        assert!(Invite::decode("hello").is_err());
    }
}
