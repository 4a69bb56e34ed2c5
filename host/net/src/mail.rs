//! Letters: signed messages from one peer to another that may travel through a hub.
//!
//! A [`Letter`] says who wrote it, to whom, when, for which service, and carries that
//! service's bytes. The author signs it ([`SignedLetter`]); the signature covers a domain tag
//! and the postcard bytes, so a letter cannot be re-addressed or altered. For store-and-forward
//! through a hub the signed letter is **sealed** to the recipient's key ([`seal`] / [`open`]):
//! an ephemeral X25519 key agreement with the recipient's Ed25519 key (converted to its
//! Montgomery form), BLAKE3 key derivation, XChaCha20-Poly1305. The hub stores
//! `ephemeral key || nonce || ciphertext` and learns neither the content nor the author (the
//! author is inside the ciphertext; the hub only knows which connection deposited it).
//!
//! Sign-then-encrypt with the recipient's key in the associated data: a sealed letter cannot
//! be re-sealed to someone else without the signature naming the wrong recipient.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::VerifyingKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use allpeers_model::PeerId;

use crate::identity::Identity;

/// Largest letter body (the service's bytes).
pub const MAX_BODY: usize = 48 * 1024;
/// Largest signed letter on the wire.
pub const MAX_SIGNED: usize = MAX_BODY + 1024;
/// Largest sealed letter: a signed letter plus key, nonce and tag.
pub const MAX_SEALED: usize = MAX_SIGNED + 32 + 24 + 16;

const SIGN_TAG: &[u8] = b"allpeers-letter-v1\0";
const SEAL_CONTEXT: &str = "allpeers 2026 sealed letter v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LetterError {
    #[error("letter too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed letter: {0}")]
    Malformed(String),
    #[error("bad signature: the letter was not written by {0}")]
    BadSignature(PeerId),
    #[error("the letter is addressed to {to}, not to {me}")]
    NotForMe { to: PeerId, me: PeerId },
    #[error("cannot open the sealed letter (not sealed to this key, or altered)")]
    CannotOpen,
    #[error("the recipient's key is not a valid Ed25519 point")]
    BadRecipientKey,
}

/// What one peer writes to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    pub from: PeerId,
    pub to: PeerId,
    /// Unique per author: receivers drop a letter they already took (replays).
    pub id: [u8; 16],
    /// Author's clock, unix milliseconds (receivers refuse letters far too old).
    pub written_ms: u64,
    /// The service the body is for, e.g. `allpeers/chat/1`.
    pub service: String,
    pub body: Vec<u8>,
}

impl Letter {
    pub fn new(from: PeerId, to: PeerId, service: &str, body: Vec<u8>) -> Letter {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        Letter {
            from,
            to,
            id,
            written_ms: allpeers_model::hlc::now_ms(),
            service: service.to_string(),
            body,
        }
    }

    /// Signs with `author`, which must be `self.from`.
    pub fn sign(&self, author: &Identity) -> Result<SignedLetter, LetterError> {
        if self.body.len() > MAX_BODY {
            return Err(LetterError::TooLarge(self.body.len()));
        }
        if author.peer_id() != self.from {
            return Err(LetterError::BadSignature(self.from));
        }
        let bytes =
            postcard::to_allocvec(self).map_err(|e| LetterError::Malformed(e.to_string()))?;
        let signature = author.sign(&tagged(&bytes)).to_vec();
        Ok(SignedLetter {
            letter: bytes,
            signature,
        })
    }
}

fn tagged(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGN_TAG.len() + bytes.len());
    out.extend_from_slice(SIGN_TAG);
    out.extend_from_slice(bytes);
    out
}

/// A letter and its author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLetter {
    pub letter: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignedLetter {
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("signed letters serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SignedLetter, LetterError> {
        if bytes.len() > MAX_SIGNED {
            return Err(LetterError::TooLarge(bytes.len()));
        }
        postcard::from_bytes(bytes).map_err(|e| LetterError::Malformed(e.to_string()))
    }

    /// Decodes the letter, checks its author's signature and that it is addressed to `me`.
    pub fn verify(&self, me: &PeerId) -> Result<Letter, LetterError> {
        if self.letter.len() > MAX_SIGNED {
            return Err(LetterError::TooLarge(self.letter.len()));
        }
        let letter: Letter = postcard::from_bytes(&self.letter)
            .map_err(|e| LetterError::Malformed(e.to_string()))?;
        let signature: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| LetterError::BadSignature(letter.from))?;
        if !Identity::verify(&letter.from, &tagged(&self.letter), &signature) {
            return Err(LetterError::BadSignature(letter.from));
        }
        if letter.to != *me {
            return Err(LetterError::NotForMe {
                to: letter.to,
                me: *me,
            });
        }
        Ok(letter)
    }
}

fn montgomery(peer: &PeerId) -> Result<MontgomeryPoint, LetterError> {
    VerifyingKey::from_bytes(peer.public_key())
        .map(|k| k.to_montgomery())
        .map_err(|_| LetterError::BadRecipientKey)
}

fn seal_key(shared: &MontgomeryPoint, ephemeral: &[u8; 32], recipient: &PeerId) -> [u8; 32] {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared.as_bytes());
    material.extend_from_slice(ephemeral);
    material.extend_from_slice(recipient.public_key());
    blake3::derive_key(SEAL_CONTEXT, &material)
}

/// Seals a signed letter so that only `recipient` can open it.
pub fn seal(letter: &SignedLetter, recipient: &PeerId) -> Result<Vec<u8>, LetterError> {
    let plaintext = letter.to_bytes();
    if plaintext.len() > MAX_SIGNED {
        return Err(LetterError::TooLarge(plaintext.len()));
    }
    let their = montgomery(recipient)?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(secret.as_mut());
    let ephemeral = MontgomeryPoint::mul_base_clamped(*secret).to_bytes();
    let shared = their.mul_clamped(*secret);
    let key = zeroize::Zeroizing::new(seal_key(&shared, &ephemeral, recipient));
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: recipient.public_key(),
            },
        )
        .map_err(|_| LetterError::CannotOpen)?;
    let mut out = Vec::with_capacity(32 + 24 + ciphertext.len());
    out.extend_from_slice(&ephemeral);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a letter sealed to `me`, checks its signature and address. Returns the letter.
pub fn open(me: &Identity, sealed: &[u8]) -> Result<Letter, LetterError> {
    if sealed.len() > MAX_SEALED {
        return Err(LetterError::TooLarge(sealed.len()));
    }
    if sealed.len() < 32 + 24 + 16 {
        return Err(LetterError::Malformed(
            "shorter than a sealed letter's header".into(),
        ));
    }
    let (ephemeral, rest) = sealed.split_at(32);
    let (nonce, ciphertext) = rest.split_at(24);
    let ephemeral: [u8; 32] = ephemeral.try_into().expect("32 bytes");
    let scalar = zeroize::Zeroizing::new(me.x25519_scalar());
    let shared = MontgomeryPoint(ephemeral).mul_clamped(*scalar);
    let me_id = me.peer_id();
    let key = zeroize::Zeroizing::new(seal_key(&shared, &ephemeral, &me_id));
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let plaintext = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: me_id.public_key(),
            },
        )
        .map_err(|_| LetterError::CannotOpen)?;
    SignedLetter::from_bytes(&plaintext)?.verify(&me_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(from: &Identity, to: &Identity) -> SignedLetter {
        Letter::new(
            from.peer_id(),
            to.peer_id(),
            "allpeers/chat/1",
            b"hello".to_vec(),
        )
        .sign(from)
        .unwrap()
    }

    #[test]
    fn sealed_letter_opens_for_its_recipient_only() {
        let (alice, bob, carol) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let signed = letter(&alice, &bob);
        let sealed = seal(&signed, &bob.peer_id()).unwrap();
        let opened = open(&bob, &sealed).unwrap();
        assert_eq!(opened.from, alice.peer_id());
        assert_eq!(opened.body, b"hello");
        assert_eq!(open(&carol, &sealed), Err(LetterError::CannotOpen));
        // The plaintext does not appear in the sealed bytes.
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn altered_sealed_letter_fails() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let mut sealed = seal(&letter(&alice, &bob), &bob.peer_id()).unwrap();
        for i in [0, 40, sealed.len() - 1] {
            sealed[i] ^= 1;
            assert!(open(&bob, &sealed).is_err(), "flipped byte {i}");
            sealed[i] ^= 1;
        }
        assert!(open(&bob, &sealed[..10]).is_err());
        assert!(open(&bob, &vec![0u8; MAX_SEALED + 1]).is_err());
    }

    #[test]
    fn forged_author_and_readdressed_letters_fail() {
        let (alice, bob, mallory) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        // Mallory writes a letter claiming to be Alice: she cannot sign it.
        let forged = Letter::new(alice.peer_id(), bob.peer_id(), "s", vec![]);
        assert!(forged.sign(&mallory).is_err());
        let mut signed = Letter::new(mallory.peer_id(), bob.peer_id(), "s", vec![])
            .sign(&mallory)
            .unwrap();
        let mut l: Letter = postcard::from_bytes(&signed.letter).unwrap();
        l.from = alice.peer_id();
        signed.letter = postcard::to_allocvec(&l).unwrap();
        assert_eq!(
            signed.verify(&bob.peer_id()),
            Err(LetterError::BadSignature(alice.peer_id()))
        );
        // A letter Alice wrote to Mallory, passed on to Bob.
        let to_mallory = letter(&alice, &mallory);
        assert!(matches!(
            to_mallory.verify(&bob.peer_id()),
            Err(LetterError::NotForMe { .. })
        ));
        let resealed = seal(&to_mallory, &bob.peer_id()).unwrap();
        assert!(matches!(
            open(&bob, &resealed),
            Err(LetterError::NotForMe { .. })
        ));
    }

    #[test]
    fn oversized_body_is_refused() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let big = Letter::new(alice.peer_id(), bob.peer_id(), "s", vec![0; MAX_BODY + 1]);
        assert_eq!(big.sign(&alice), Err(LetterError::TooLarge(MAX_BODY + 1)));
    }
}
