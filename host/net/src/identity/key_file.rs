//! The identity's file form, used both as the key file in the data dir and as the backup
//! that `allpeers identity export` writes.
//!
//! JSON, so a user can see what it is; the PeerId is in clear so `allpeers id` works while
//! the key is sealed. Sealing: Argon2id derives a key from the passphrase, which seals the
//! 32-byte secret with XChaCha20-Poly1305; the PeerId is the associated data, so a file
//! whose id was edited fails to open instead of yielding a mismatched identity.

use std::io::Write;
use std::path::Path;

use allpeers_model::PeerId;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Identity, IdentityError};

const FORMAT: &str = "allpeers-identity";
const VERSION: u32 = 1;
/// A key file is a few hundred bytes; refuse to read anything much larger.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Argon2id cost. The defaults follow OWASP's minimum (19 MiB, 2 passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// Within what a key file may ask of us: a file handed in as a backup must not make opening it take
    /// gigabytes or minutes.
    fn bounded(&self) -> bool {
        (8..=1024 * 1024).contains(&self.m_cost_kib)
            && (1..=16).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SecretKey {
    Plain {
        secret: String,
    },
    Sealed {
        kdf: String,
        params: KdfParams,
        salt: String,
        nonce: String,
        ciphertext: String,
    },
}

/// An identity as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    format: String,
    version: u32,
    pub peer_id: PeerId,
    key: SecretKey,
}

impl KeyFile {
    /// The file form of `identity`, sealed when a passphrase is given.
    pub fn new(identity: &Identity, passphrase: Option<&str>) -> Self {
        Self::with_params(identity, passphrase, KdfParams::default())
    }

    pub fn with_params(identity: &Identity, passphrase: Option<&str>, params: KdfParams) -> Self {
        let peer_id = identity.peer_id();
        let key = match passphrase {
            None => SecretKey::Plain {
                secret: BASE64.encode(*identity.secret()),
            },
            Some(passphrase) => {
                let mut salt = [0u8; 16];
                let mut nonce = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                rand::rngs::OsRng.fill_bytes(&mut nonce);
                let key =
                    derive_key(passphrase, &salt, params).expect("default KDF params are valid");
                let cipher = XChaCha20Poly1305::new((&*key).into());
                let aad = peer_id.to_string();
                let ciphertext = cipher
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: identity.secret().as_slice(),
                            aad: aad.as_bytes(),
                        },
                    )
                    .expect("encryption of 32 bytes cannot fail");
                SecretKey::Sealed {
                    kdf: "argon2id".into(),
                    params,
                    salt: BASE64.encode(salt),
                    nonce: BASE64.encode(nonce),
                    ciphertext: BASE64.encode(ciphertext),
                }
            }
        };
        KeyFile {
            format: FORMAT.into(),
            version: VERSION,
            peer_id,
            key,
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self.key, SecretKey::Sealed { .. })
    }

    /// Opens the key. `path` only names the file in errors.
    pub fn open(&self, passphrase: Option<&str>, path: &str) -> Result<Identity, IdentityError> {
        let corrupt = |reason: &str| IdentityError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        };
        let secret: Zeroizing<Vec<u8>> = match &self.key {
            SecretKey::Plain { secret } => Zeroizing::new(
                BASE64
                    .decode(secret)
                    .map_err(|_| corrupt("the secret key is not base64"))?,
            ),
            SecretKey::Sealed {
                kdf,
                params,
                salt,
                nonce,
                ciphertext,
            } => {
                if kdf != "argon2id" {
                    return Err(corrupt(&format!("unknown key derivation \"{kdf}\"")));
                }
                let passphrase = passphrase.ok_or(IdentityError::PassphraseRequired)?;
                let salt = BASE64
                    .decode(salt)
                    .map_err(|_| corrupt("salt is not base64"))?;
                let nonce = BASE64
                    .decode(nonce)
                    .map_err(|_| corrupt("nonce is not base64"))?;
                let ciphertext = BASE64
                    .decode(ciphertext)
                    .map_err(|_| corrupt("ciphertext is not base64"))?;
                if nonce.len() != 24 {
                    return Err(corrupt("nonce is not 24 bytes"));
                }
                let key = derive_key(passphrase, &salt, *params)
                    .map_err(|e| corrupt(&format!("bad key derivation parameters: {e}")))?;
                let cipher = XChaCha20Poly1305::new((&*key).into());
                let aad = self.peer_id.to_string();
                Zeroizing::new(
                    cipher
                        .decrypt(
                            XNonce::from_slice(&nonce),
                            Payload {
                                msg: &ciphertext,
                                aad: aad.as_bytes(),
                            },
                        )
                        .map_err(|_| IdentityError::WrongPassphrase)?,
                )
            }
        };
        let secret: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("the secret key is not 32 bytes"))?;
        let identity = Identity::from_secret(secret);
        if identity.peer_id() != self.peer_id {
            return Err(corrupt(
                "the key does not belong to the peer id written in the file",
            ));
        }
        Ok(identity)
    }

    /// Reads and checks a key file.
    pub fn read(path: &Path) -> Result<KeyFile, IdentityError> {
        let shown = path.display().to_string();
        let corrupt = |reason: String| IdentityError::Corrupt {
            path: shown.clone(),
            reason,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::NotFound(shown));
            }
            Err(source) => {
                return Err(IdentityError::Io {
                    action: "read",
                    path: shown,
                    source,
                });
            }
        };
        if meta.len() > MAX_FILE_LEN {
            return Err(corrupt(format!(
                "{} bytes is far too large for a key file",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|source| IdentityError::Io {
            action: "read",
            path: shown.clone(),
            source,
        })?;
        KeyFile::parse(&bytes, &shown)
    }

    /// Checks a key file's text (a backup handed over by a client). `shown` only names it in errors.
    pub fn parse(bytes: &[u8], shown: &str) -> Result<KeyFile, IdentityError> {
        let corrupt = |reason: String| IdentityError::Corrupt {
            path: shown.into(),
            reason,
        };
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(corrupt(format!(
                "{} bytes is far too large for a key file",
                bytes.len()
            )));
        }
        let file: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not an identity file: {e}")))?;
        if file.format != FORMAT {
            return Err(corrupt(format!(
                "format is \"{}\", expected \"{FORMAT}\"",
                file.format
            )));
        }
        if file.version != VERSION {
            return Err(corrupt(format!(
                "version {} is not supported (this build reads version {VERSION})",
                file.version
            )));
        }
        if let SecretKey::Sealed { params, .. } = &file.key
            && !params.bounded()
        {
            return Err(corrupt(format!(
                "key derivation cost out of bounds ({} KiB, {} passes, {} lanes)",
                params.m_cost_kib, params.t_cost, params.p_cost
            )));
        }
        Ok(file)
    }

    /// Writes the file atomically (temp file, fsync, rename) with mode 0600, so a crash
    /// never leaves a half-written key.
    pub fn write(&self, path: &Path) -> Result<(), IdentityError> {
        let shown = path.display().to_string();
        let io = |action: &'static str| {
            let shown = shown.clone();
            move |source| IdentityError::Io {
                action,
                path: shown,
                source,
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let json = Zeroizing::new(serde_json::to_vec_pretty(self).expect("key file serialises"));
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("identity")
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io("create"))?;
        file.write_all(&json).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io("replace"))?;
        Ok(())
    }
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, argon2::Error> {
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(passphrase.as_bytes(), salt, &mut *key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn plain_and_sealed_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate();
        for passphrase in [None, Some("correct horse")] {
            let path = dir.path().join("identity.json");
            KeyFile::with_params(&identity, passphrase, CHEAP)
                .write(&path)
                .unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            let file = KeyFile::read(&path).unwrap();
            assert_eq!(file.peer_id, identity.peer_id());
            assert_eq!(file.is_sealed(), passphrase.is_some());
            let opened = file.open(passphrase, "t").unwrap();
            assert_eq!(opened.peer_id(), identity.peer_id());
        }
    }

    #[test]
    fn wrong_or_missing_passphrase_is_a_clear_error() {
        let file = KeyFile::with_params(&Identity::generate(), Some("right"), CHEAP);
        assert!(matches!(
            file.open(Some("wrong"), "t"),
            Err(IdentityError::WrongPassphrase)
        ));
        assert!(matches!(
            file.open(None, "t"),
            Err(IdentityError::PassphraseRequired)
        ));
    }

    #[test]
    fn tampered_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        let other = Identity::generate().peer_id();

        // A plain file whose peer id was swapped for someone else's.
        let mut file = KeyFile::new(&Identity::generate(), None);
        file.peer_id = other;
        let err = file.open(None, "t").unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");

        // A sealed file whose peer id was swapped fails authentication.
        let mut sealed = KeyFile::with_params(&Identity::generate(), Some("p"), CHEAP);
        sealed.peer_id = other;
        assert!(sealed.open(Some("p"), "t").is_err());

        for garbage in [&b"{not json"[..], b"", b"{\"format\":\"other\"}"] {
            std::fs::write(&path, garbage).unwrap();
            let err = KeyFile::read(&path).unwrap_err();
            assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("identity.json"));
        }
        std::fs::write(&path, vec![b' '; 100_000]).unwrap();
        assert!(
            KeyFile::read(&path)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(matches!(
            KeyFile::read(&dir.path().join("missing.json")),
            Err(IdentityError::NotFound(_))
        ));
    }

    #[test]
    fn a_backup_text_is_checked_like_a_file_and_its_cost_is_bounded() {
        let identity = Identity::generate();
        let text = serde_json::to_vec(&KeyFile::with_params(&identity, Some("p"), CHEAP)).unwrap();
        let file = KeyFile::parse(&text, "backup").unwrap();
        assert_eq!(
            file.open(Some("p"), "backup").unwrap().peer_id(),
            identity.peer_id()
        );
        for garbage in [&b"{not json"[..], b"", b"{\"format\":\"other\"}"] {
            let err = KeyFile::parse(garbage, "backup").unwrap_err();
            assert!(err.to_string().contains("backup"), "{err}");
        }
        assert!(
            KeyFile::parse(&vec![b' '; 100_000], "backup")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        // A file asking for 4 GiB of memory to open is refused before any work.
        let greedy = KdfParams {
            m_cost_kib: 4 * 1024 * 1024,
            ..CHEAP
        };
        let mut value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        value["key"]["params"] = serde_json::to_value(greedy).unwrap();
        let err = KeyFile::parse(&serde_json::to_vec(&value).unwrap(), "backup").unwrap_err();
        assert!(err.to_string().contains("out of bounds"), "{err}");
    }
}
