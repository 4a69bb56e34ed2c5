//! The user's identity: an Ed25519 key pair made at first run, its [`PeerId`], and a
//! self-signed X.509 certificate over the key for mutual TLS between peers (no web PKI:
//! peers check that the certificate's key is the PeerId they meant to reach).

mod key_file;

pub use key_file::{KdfParams, KeyFile};

use allpeers_model::PeerId;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::Digest;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no identity at {0} (run `allpeers daemon` once to create one, or import a backup)")]
    NotFound(String),
    #[error("identity file {path} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("the identity is sealed with a passphrase: give it (ALLPEERS_PASSPHRASE or a prompt)")]
    PassphraseRequired,
    #[error("wrong passphrase for the identity")]
    WrongPassphrase,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(String),
}

/// The user's key pair. Cloning copies the secret key in memory (the endpoint holds one
/// copy, the node another); it is zeroized when each copy drops.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    peer_id: PeerId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

/// A certificate and its private key in the DER forms rustls takes.
pub struct Certificate {
    pub cert_der: Vec<u8>,
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
}

impl Certificate {
    /// SHA-256 of the DER certificate, hex: shown to users to compare fingerprints.
    pub fn sha256_hex(&self) -> String {
        sha2::Sha256::digest(&self.cert_der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// OID of Ed25519 keys (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

impl Identity {
    pub fn generate() -> Self {
        Self::from_secret(SigningKey::generate(&mut rand::rngs::OsRng).to_bytes())
    }

    pub fn from_secret(secret: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&secret);
        let peer_id = PeerId::from_public_key(signing.verifying_key().to_bytes());
        Identity { signing, peer_id }
    }

    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The X25519 form of the secret key (for letters sealed to this identity,
    /// [`crate::mail`]); callers zeroize it.
    pub(crate) fn x25519_scalar(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Checks that `signature` over `message` was made by `signer`'s key.
    pub fn verify(signer: &PeerId, message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(signer.public_key())
            .map(|key| {
                key.verify(message, &Signature::from_bytes(signature))
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// A self-signed certificate over this key, common name = the PeerId. Valid from 2020
    /// to 9999: peers pin the key, not the validity period.
    pub fn certificate(&self) -> Result<Certificate, IdentityError> {
        let cert_err = |e: &dyn std::fmt::Display| IdentityError::Certificate(e.to_string());
        let pkcs8 = self.signing.to_pkcs8_der().map_err(|e| cert_err(&e))?;
        let key_pkcs8_der = Zeroizing::new(pkcs8.as_bytes().to_vec());
        let key_pair =
            rcgen::KeyPair::try_from(key_pkcs8_der.as_slice()).map_err(|e| cert_err(&e))?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_err(&e))?;
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, self.peer_id.to_string());
        name.push(rcgen::DnType::OrganizationName, "AllPeers");
        params.distinguished_name = name;
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(9999, 12, 31);
        let cert = params.self_signed(&key_pair).map_err(|e| cert_err(&e))?;
        Ok(Certificate {
            cert_der: cert.der().to_vec(),
            key_pkcs8_der,
        })
    }

    /// The PeerId a certificate speaks for: its subject key, which must be Ed25519. This is
    /// what the TLS verifiers compare with the PeerId being dialled.
    pub fn peer_id_from_certificate(cert_der: &[u8]) -> Result<PeerId, IdentityError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| IdentityError::Certificate(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(IdentityError::Certificate(
                "trailing bytes after the certificate".into(),
            ));
        }
        let spki = cert.public_key();
        if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
            return Err(IdentityError::Certificate(format!(
                "key algorithm {} is not Ed25519",
                spki.algorithm.algorithm.to_id_string()
            )));
        }
        let key: [u8; 32] = spki
            .subject_public_key
            .data
            .as_ref()
            .try_into()
            .map_err(|_| IdentityError::Certificate("Ed25519 key is not 32 bytes".into()))?;
        Ok(PeerId::from_public_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_peer_id_key() {
        let identity = Identity::generate();
        let cert = identity.certificate().unwrap();
        assert_eq!(
            Identity::peer_id_from_certificate(&cert.cert_der).unwrap(),
            identity.peer_id()
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.cert_der).unwrap();
        assert!(
            parsed
                .subject()
                .to_string()
                .contains(&identity.peer_id().to_string())
        );
        assert_eq!(cert.sha256_hex().len(), 64);
    }

    #[test]
    fn garbage_certificates_are_refused() {
        assert!(Identity::peer_id_from_certificate(b"not a cert").is_err());
        let mut cert = Identity::generate().certificate().unwrap().cert_der;
        cert.push(0);
        assert!(Identity::peer_id_from_certificate(&cert).is_err());
    }

    #[test]
    fn signatures_verify_only_for_their_signer() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let sig = alice.sign(b"hello");
        assert!(Identity::verify(&alice.peer_id(), b"hello", &sig));
        assert!(!Identity::verify(&alice.peer_id(), b"hellO", &sig));
        assert!(!Identity::verify(&bob.peer_id(), b"hello", &sig));
    }
}
