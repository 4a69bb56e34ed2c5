//! Keys and tokens of the gateway, all derived from the hub's identity (stable across
//! restarts, unknown to anyone who only has the database).
//!
//! * A *recipient key* names an address without spelling it: a keyed BLAKE3 hash of the
//!   folded address. Suppressions, invitation records and rate counts use it.
//! * An *unsubscribe token* is `recipient key || MAC(purpose, recipient key)` in base64url:
//!   unguessable (the key is keyed), checkable without storing it, and purpose-bound (a
//!   token made for another purpose does not verify as an unsubscribe token).
//! * Confirmation codes and link secrets are random; only their hashes are stored.

use rand::Rng;

/// Bytes of MAC in a token: 128 bits is beyond guessing over HTTP.
const TOKEN_MAC: usize = 16;
/// The base64url length of a token (32-byte key + MAC): longer input is refused unread.
pub const TOKEN_CHARS: usize = (32 + TOKEN_MAC).div_ceil(3) * 4;
/// Confirmation codes: 8 characters of Crockford's base32 alphabet (no I, L, O, U: nothing
/// to misread), 40 bits; with the attempt limit a guess succeeds once in 2^37.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 8;

/// What a token is for (part of its MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Unsubscribe,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Unsubscribe => b"allpeers-hub-mail unsubscribe v1\0",
        }
    }
}

pub struct Keys {
    recipient: [u8; 32],
    token: [u8; 32],
    message_id: [u8; 32],
}

impl Keys {
    /// From a secret only the hub has (its identity's signature over a fixed string).
    pub fn derive(secret: &[u8]) -> Keys {
        Keys {
            recipient: blake3::derive_key("allpeers hub mail recipient key v1", secret),
            token: blake3::derive_key("allpeers hub mail token key v1", secret),
            message_id: blake3::derive_key("allpeers hub mail message-id key v1", secret),
        }
    }

    /// The recipient key of a folded address.
    pub fn recipient(&self, folded_address: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.recipient, folded_address.as_bytes()).as_bytes()
    }

    fn mac(&self, purpose: Purpose, recipient: &[u8; 32]) -> [u8; TOKEN_MAC] {
        let mut h = blake3::Hasher::new_keyed(&self.token);
        h.update(purpose.tag());
        h.update(recipient);
        let mut out = [0u8; TOKEN_MAC];
        out.copy_from_slice(&h.finalize().as_bytes()[..TOKEN_MAC]);
        out
    }

    pub fn token(&self, purpose: Purpose, recipient: &[u8; 32]) -> String {
        let mut bytes = recipient.to_vec();
        bytes.extend_from_slice(&self.mac(purpose, recipient));
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    }

    /// The recipient key inside `token`, if the token is ours and for `purpose`.
    pub fn check(&self, purpose: Purpose, token: &str) -> Option<[u8; 32]> {
        if token.len() > TOKEN_CHARS {
            return None;
        }
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(token.as_bytes())
            .ok()?;
        if bytes.len() != 32 + TOKEN_MAC {
            return None;
        }
        let recipient: [u8; 32] = bytes[..32].try_into().ok()?;
        // Constant time: blake3's Hash equality is.
        let expected = blake3::Hash::from_bytes(pad(&self.mac(purpose, &recipient)));
        let given = blake3::Hash::from_bytes(pad(bytes[32..].try_into().ok()?));
        (expected == given).then_some(recipient)
    }

    /// A Message-ID for queue entry `id` (stable across retries, unique per hub).
    pub fn message_id(&self, id: i64, queued_at: u64, domain: &str) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.message_id);
        h.update(&id.to_le_bytes());
        h.update(&queued_at.to_le_bytes());
        format!("<{}@{domain}>", &h.finalize().to_hex()[..32])
    }
}

fn pad(mac: &[u8; TOKEN_MAC]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..TOKEN_MAC].copy_from_slice(mac);
    out
}

/// A fresh confirmation code (what the person types) and link secret (what the link holds).
pub fn fresh_code_and_link() -> (String, String) {
    let mut rng = rand::thread_rng();
    let code: String = (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    let link: [u8; 16] = rng.r#gen();
    (code, data_encoding::BASE64URL_NOPAD.encode(&link))
}

/// What the database keeps of a code or link secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_when_ours() {
        let keys = Keys::derive(b"hub secret");
        let other = Keys::derive(b"another hub");
        let r = keys.recipient("alice@example.org");
        let t = keys.token(Purpose::Unsubscribe, &r);
        assert!(t.len() <= TOKEN_CHARS);
        assert_eq!(keys.check(Purpose::Unsubscribe, &t), Some(r));
        assert_eq!(other.check(Purpose::Unsubscribe, &t), None);
        // A flipped character, a truncated or padded token, garbage: refused.
        let mut flipped = t.clone().into_bytes();
        flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.check(Purpose::Unsubscribe, std::str::from_utf8(&flipped).unwrap()),
            None
        );
        assert_eq!(keys.check(Purpose::Unsubscribe, &t[..t.len() - 1]), None);
        assert_eq!(keys.check(Purpose::Unsubscribe, &format!("{t}A")), None);
        assert_eq!(keys.check(Purpose::Unsubscribe, "../../etc"), None);
        // Another recipient's key with this MAC: refused.
        let r2 = keys.recipient("bob@example.org");
        let mut forged = r2.to_vec();
        forged
            .extend_from_slice(&data_encoding::BASE64URL_NOPAD.decode(t.as_bytes()).unwrap()[32..]);
        assert_eq!(
            keys.check(
                Purpose::Unsubscribe,
                &data_encoding::BASE64URL_NOPAD.encode(&forged)
            ),
            None
        );
    }

    #[test]
    fn codes() {
        let (a, la) = fresh_code_and_link();
        let (b, lb) = fresh_code_and_link();
        assert_eq!(a.len(), CODE_LEN);
        assert!(a.bytes().all(|c| CODE_ALPHABET.contains(&c)));
        assert_ne!((a, la), (b, lb));
    }
}
