//! Message Stream Encryption (MSE, also called Protocol Encryption): BitTorrent's obfuscated handshake, as Azureus,
//! libtorrent, aria2 and Transmission speak it. Obfuscation, not security: it keeps a connection from being told
//! apart by its first bytes, and its Diffie-Hellman is unauthenticated.
//!
//! ```text
//! 1 A->B: Ya, PadA
//! 2 B->A: Yb, PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), then the payload in the selected method
//! 5 A->B: the payload in the selected method
//! ```
//!
//! Y is `G^X mod P` (768-bit P, G = 2) as 96 big-endian bytes; S the shared secret the same way; HASH is SHA-1;
//! SKEY the torrent's info-hash; A encrypts with RC4 keyed `HASH('keyA', S, SKEY)` and B with `HASH('keyB', S,
//! SKEY)`, each keystream's first 1024 bytes thrown away; VC is 8 zero bytes; every pad is at most 512 bytes. B
//! finds where A's step 3 starts by looking for `HASH('req1', S)` in the 532 bytes after Ya, A finds step 4 by
//! looking for `ENCRYPT(VC)` in the 520 bytes after Yb. The initial payload IA carries A's BitTorrent handshake.
//!
//! This module is I/O-free: a [`Handshake`] is fed what the peer sent and says what to send back, until it yields
//! an [`Established`] connection (the ciphers for both ways and the payload bytes that came with the handshake).
//! Every length is bounded, so the bytes one handshake buffers are bounded too ([`MAX_HANDSHAKE_BYTES`]).

use num_bigint::BigUint;
use rand::{Rng, RngCore};
use rc4::consts::U20;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

/// The prime of MSE's Diffie-Hellman group (the 768-bit MODP group of RFC 2409).
const P_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";
const G: u32 = 2;
/// A public key or the shared secret: 768 bits, big-endian.
pub const KEY_LEN: usize = 96;
/// Every pad (PadA, PadB, PadC, PadD) is at most this long.
pub const MAX_PAD: usize = 512;
/// The verification constant.
const VC: [u8; 8] = [0; 8];
/// `crypto_provide` / `crypto_select` bits.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
pub const CRYPTO_RC4: u32 = 0x02;
/// Bytes after the initiator's key within which `HASH('req1', S)` must have come (PadA + the hash).
pub const REQ1_SEARCH: usize = MAX_PAD + 20;
/// Bytes after the responder's key within which `ENCRYPT(VC)` must have come (PadB + VC).
pub const VC_SEARCH: usize = MAX_PAD + VC.len();
/// The most a responder buffers before the handshake ends: Ya, PadA and the hash, the obfuscated SKEY, the
/// encrypted VC / crypto_provide / len(PadC), PadC, len(IA), and IA (whose length is a u16).
pub const MAX_HANDSHAKE_BYTES: usize =
    KEY_LEN + REQ1_SEARCH + 20 + 14 + MAX_PAD + 2 + u16::MAX as usize;
/// Keystream bytes thrown away before use (RC4's first bytes leak its key).
const RC4_DISCARD: usize = 1024;
/// Bits of our private exponent (the specification asks for at least 128).
const PRIVATE_KEY_LEN: usize = 20;

/// Whether peer connections are encrypted: one setting per engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Plain BitTorrent only: encrypted handshakes are refused, we dial in plain.
    Off,
    /// Dial encrypted (RC4 or plaintext, the peer chooses) and fall back to plain if the peer does not speak MSE;
    /// accept both, choosing RC4 when offered.
    #[default]
    Prefer,
    /// RC4-encrypted connections only, both ways; plain handshakes and the plaintext method are refused.
    Require,
}

impl Encryption {
    /// The methods we offer as initiator and accept as responder.
    fn methods(self) -> u32 {
        match self {
            Encryption::Off => 0,
            Encryption::Prefer => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
            Encryption::Require => CRYPTO_RC4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    #[error("the peer's Diffie-Hellman key is degenerate")]
    BadKey,
    #[error(
        "no HASH('req1', S) within {REQ1_SEARCH} bytes after the peer's key: not an encrypted BitTorrent handshake"
    )]
    NoReq1,
    #[error("no encrypted verification constant within {VC_SEARCH} bytes after the peer's key")]
    NoVc,
    #[error("the peer asks for a torrent we do not have")]
    UnknownTorrent,
    #[error("the verification constant is not zero: the keys do not agree")]
    WrongVc,
    #[error("no crypto method in common: the peer offers {offered:#x}, we accept {accepted:#x}")]
    NoCommonMethod { offered: u32, accepted: u32 },
    #[error("the peer selected crypto method {0:#x}, which we did not offer")]
    BadSelect(u32),
    #[error("a pad of {0} bytes (at most {MAX_PAD})")]
    PadTooLong(u16),
    #[error("encryption is off")]
    Disabled,
    #[error("the handshake already ended")]
    Finished,
}

/// An RC4 keystream, or nothing (the plaintext method).
pub struct Cipher(Option<Box<Rc4<U20>>>);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Cipher(RC4)"
        } else {
            "Cipher(plaintext)"
        })
    }
}

impl Cipher {
    /// No encryption.
    pub fn plaintext() -> Self {
        Self(None)
    }

    /// RC4 keyed with `HASH(label, S, SKEY)`, its first 1024 bytes discarded.
    fn rc4(label: &[u8], secret: &[u8; KEY_LEN], skey: &[u8; 20]) -> Self {
        let key: [u8; 20] = Sha1::new()
            .chain_update(label)
            .chain_update(secret)
            .chain_update(skey)
            .finalize()
            .into();
        let mut rc4 = Box::new(Rc4::<U20>::new(&key.into()));
        rc4.apply_keystream(&mut [0; RC4_DISCARD]);
        Self(Some(rc4))
    }

    pub fn is_rc4(&self) -> bool {
        self.0.is_some()
    }

    /// Encrypts or decrypts `bytes` in place (RC4 is its own inverse), advancing the keystream.
    pub fn apply(&mut self, bytes: &mut [u8]) {
        if let Some(rc4) = &mut self.0 {
            rc4.apply_keystream(bytes);
        }
    }
}

/// The random parts of one side's handshake: fixed in tests and fuzzing, random otherwise.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The private exponent X, big-endian.
    pub private_key: [u8; PRIVATE_KEY_LEN],
    /// PadA or PadB: sent in the clear, so random bytes (at most [`MAX_PAD`]).
    pub pad: Vec<u8>,
}

impl Secrets {
    pub fn random() -> Self {
        let mut rng = rand::thread_rng();
        let mut private_key = [0; PRIVATE_KEY_LEN];
        rng.fill_bytes(&mut private_key);
        let mut pad = vec![0; rng.gen_range(0..=MAX_PAD)];
        rng.fill_bytes(&mut pad);
        Self { private_key, pad }
    }
}

/// A handshake that succeeded.
#[derive(Debug)]
pub struct Established {
    /// The torrent (the responder learns it from the handshake).
    pub info_hash: [u8; 20],
    /// What reads from the peer go through, and what writes to it.
    pub reader: Cipher,
    pub writer: Cipher,
    /// Payload bytes that came with the handshake, decrypted: for the responder, the initiator's IA first.
    pub received: Vec<u8>,
}

/// What a step of the handshake asks of the caller.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes (possibly none) and feed what the peer sends next.
    Continue(Vec<u8>),
    /// Send these bytes; the connection is established.
    Done(Vec<u8>, Established),
}

enum Role {
    Initiator {
        info_hash: [u8; 20],
        /// IA: our BitTorrent handshake, sent with step 3.
        initial_payload: Vec<u8>,
    },
    Responder {
        /// The info-hashes of the torrents we serve: one of them is SKEY.
        info_hashes: Vec<[u8; 20]>,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for the peer's public key.
    Key,
    /// Initiator: looking for `ENCRYPT(VC)` after Yb (the pattern, and the bytes of PadB seen so far).
    Vc {
        pattern: [u8; 8],
    },
    /// Initiator: crypto_select and len(PadD).
    Select,
    PadD {
        len: usize,
        select: u32,
    },
    /// Responder: looking for `HASH('req1', S)` after Ya.
    Req1 {
        pattern: [u8; 20],
    },
    /// Responder: `HASH('req2', SKEY) xor HASH('req3', S)`.
    Skey,
    /// Responder: VC, crypto_provide and len(PadC), encrypted.
    Provide,
    PadC {
        len: usize,
        select: u32,
    },
    IaLen {
        select: u32,
    },
    Ia {
        len: usize,
        select: u32,
    },
    Ended,
}

/// One side of an MSE handshake, fed bytes as they come.
pub struct Handshake {
    role: Role,
    /// The methods we offer (initiator) or accept (responder).
    methods: u32,
    private_key: BigUint,
    pad: Vec<u8>,
    state: State,
    /// Bytes received and not yet consumed: bounded by the state's search window or field length.
    buf: Vec<u8>,
    secret: [u8; KEY_LEN],
    skey: [u8; 20],
    reader: Option<Cipher>,
    writer: Option<Cipher>,
}

fn prime() -> BigUint {
    BigUint::parse_bytes(P_HEX, 16).expect("the MSE prime is valid hex")
}

/// A number as [`KEY_LEN`] big-endian bytes.
fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part);
    }
    sha.finalize().into()
}

fn xor20(a: [u8; 20], b: [u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Handshake {
    /// We dial: the handshake and step 1 (Ya, PadA) to send. `initial_payload` (our BitTorrent handshake) goes
    /// out encrypted with step 3.
    pub fn initiator(
        info_hash: [u8; 20],
        initial_payload: Vec<u8>,
        encryption: Encryption,
        secrets: Secrets,
    ) -> Result<(Self, Vec<u8>), MseError> {
        let mut handshake = Self::new(
            Role::Initiator {
                info_hash,
                initial_payload,
            },
            encryption,
            secrets,
        )?;
        let first = handshake.public_key_and_pad();
        Ok((handshake, first))
    }

    /// We were dialed: the handshake, to feed from the connection's first byte. `info_hashes` are the torrents
    /// the peer may ask for.
    pub fn responder(
        info_hashes: Vec<[u8; 20]>,
        encryption: Encryption,
        secrets: Secrets,
    ) -> Result<Self, MseError> {
        Self::new(Role::Responder { info_hashes }, encryption, secrets)
    }

    fn new(role: Role, encryption: Encryption, secrets: Secrets) -> Result<Self, MseError> {
        if encryption == Encryption::Off {
            return Err(MseError::Disabled);
        }
        let mut pad = secrets.pad;
        pad.truncate(MAX_PAD);
        Ok(Self {
            role,
            methods: encryption.methods(),
            private_key: BigUint::from_bytes_be(&secrets.private_key),
            pad,
            state: State::Key,
            buf: Vec::new(),
            secret: [0; KEY_LEN],
            skey: [0; 20],
            reader: None,
            writer: None,
        })
    }

    fn public_key_and_pad(&mut self) -> Vec<u8> {
        let public = BigUint::from(G).modpow(&self.private_key, &prime());
        let mut out = to_key_bytes(&public).to_vec();
        out.append(&mut self.pad);
        out
    }

    /// Takes what the peer sent; says what to send and whether the handshake ended. After an error or the end,
    /// the handshake takes nothing more.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, MseError> {
        if matches!(self.state, State::Ended) {
            return Err(MseError::Finished);
        }
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let result = self.advance(&mut out);
        match result {
            Ok(Some(established)) => {
                self.state = State::Ended;
                Ok(Step::Done(out, established))
            }
            Ok(None) => Ok(Step::Continue(out)),
            Err(error) => {
                self.state = State::Ended;
                self.buf = Vec::new();
                Err(error)
            }
        }
    }

    /// Consumes the first `n` buffered bytes, decrypted with the reading cipher.
    fn take_decrypted(&mut self, n: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.buf.drain(..n).collect();
        if let Some(reader) = &mut self.reader {
            reader.apply(&mut bytes);
        }
        bytes
    }

    fn encrypt(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        if let Some(writer) = &mut self.writer {
            writer.apply(&mut bytes);
        }
        bytes
    }

    /// Runs the states as far as the buffered bytes allow.
    fn advance(&mut self, out: &mut Vec<u8>) -> Result<Option<Established>, MseError> {
        loop {
            match self.state {
                State::Key => {
                    if self.buf.len() < KEY_LEN {
                        return Ok(None);
                    }
                    let peer_key: Vec<u8> = self.buf.drain(..KEY_LEN).collect();
                    self.on_peer_key(&peer_key, out)?;
                }
                State::Req1 { pattern } => {
                    let window = &self.buf[..self.buf.len().min(REQ1_SEARCH)];
                    match find(window, &pattern) {
                        Some(at) => {
                            self.buf.drain(..at + pattern.len());
                            self.state = State::Skey;
                        }
                        None if self.buf.len() >= REQ1_SEARCH => return Err(MseError::NoReq1),
                        None => return Ok(None),
                    }
                }
                State::Skey => {
                    if self.buf.len() < 20 {
                        return Ok(None);
                    }
                    let obfuscated: [u8; 20] = self.buf[..20].try_into().expect("20 bytes");
                    self.buf.drain(..20);
                    self.find_torrent(obfuscated)?;
                    self.state = State::Provide;
                }
                State::Provide => {
                    if self.buf.len() < 14 {
                        return Ok(None);
                    }
                    let fields = self.take_decrypted(14);
                    if fields[..8] != VC {
                        return Err(MseError::WrongVc);
                    }
                    let offered = u32::from_be_bytes(fields[8..12].try_into().expect("4 bytes"));
                    let len = u16::from_be_bytes([fields[12], fields[13]]);
                    let select = self.select(offered)?;
                    self.state = State::PadC {
                        len: pad_len(len)?,
                        select,
                    };
                }
                State::PadC { len, select } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    self.take_decrypted(len);
                    self.state = State::IaLen { select };
                }
                State::IaLen { select } => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    let len = self.take_decrypted(2);
                    self.state = State::Ia {
                        len: u16::from_be_bytes([len[0], len[1]]) as usize,
                        select,
                    };
                }
                State::Ia { len, select } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    let initial_payload = self.take_decrypted(len);
                    let mut answer = VC.to_vec();
                    answer.extend_from_slice(&select.to_be_bytes());
                    // PadD: none (it is encrypted, so it would hide nothing).
                    answer.extend_from_slice(&0u16.to_be_bytes());
                    out.extend_from_slice(&self.encrypt(answer));
                    return Ok(Some(self.established(select, initial_payload)));
                }
                State::Vc { pattern } => {
                    let window = &self.buf[..self.buf.len().min(VC_SEARCH)];
                    match find(window, &pattern) {
                        Some(at) => {
                            self.buf.drain(..at + pattern.len());
                            self.state = State::Select;
                        }
                        None if self.buf.len() >= VC_SEARCH => return Err(MseError::NoVc),
                        None => return Ok(None),
                    }
                }
                State::Select => {
                    if self.buf.len() < 6 {
                        return Ok(None);
                    }
                    let fields = self.take_decrypted(6);
                    let select = u32::from_be_bytes(fields[..4].try_into().expect("4 bytes"));
                    if !matches!(select, CRYPTO_PLAINTEXT | CRYPTO_RC4)
                        || select & self.methods == 0
                    {
                        return Err(MseError::BadSelect(select));
                    }
                    let len = pad_len(u16::from_be_bytes([fields[4], fields[5]]))?;
                    self.state = State::PadD { len, select };
                }
                State::PadD { len, select } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    self.take_decrypted(len);
                    return Ok(Some(self.established(select, Vec::new())));
                }
                State::Ended => return Err(MseError::Finished),
            }
        }
    }

    /// The peer's public key came: the shared secret, and our answer (responder: Yb and PadB; initiator: step 3).
    fn on_peer_key(&mut self, peer_key: &[u8], out: &mut Vec<u8>) -> Result<(), MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(peer_key);
        // 0, 1 and P-1 (and anything past P) would make the secret guessable or undefined.
        if y <= BigUint::from(1u32) || y >= &p - 1u32 {
            return Err(MseError::BadKey);
        }
        self.secret = to_key_bytes(&y.modpow(&self.private_key, &p));
        let initiator = match &self.role {
            Role::Initiator {
                info_hash,
                initial_payload,
            } => Some((*info_hash, initial_payload.clone())),
            Role::Responder { .. } => None,
        };
        match initiator {
            None => {
                let answer = self.public_key_and_pad();
                out.extend_from_slice(&answer);
                self.state = State::Req1 {
                    pattern: hash(&[b"req1", &self.secret]),
                };
            }
            Some((info_hash, initial_payload)) => {
                self.skey = info_hash;
                out.extend_from_slice(&hash(&[b"req1", &self.secret]));
                out.extend_from_slice(&xor20(
                    hash(&[b"req2", &info_hash]),
                    hash(&[b"req3", &self.secret]),
                ));
                self.writer = Some(Cipher::rc4(b"keyA", &self.secret, &info_hash));
                let mut reader = Cipher::rc4(b"keyB", &self.secret, &info_hash);
                let mut pattern = VC;
                reader.apply(&mut pattern);
                self.reader = Some(reader);
                let mut step = VC.to_vec();
                step.extend_from_slice(&self.methods.to_be_bytes());
                // PadC: none (it is encrypted, so it would hide nothing).
                step.extend_from_slice(&0u16.to_be_bytes());
                let ia_len = u16::try_from(initial_payload.len()).expect("IA is our handshake");
                step.extend_from_slice(&ia_len.to_be_bytes());
                step.extend_from_slice(&initial_payload);
                out.extend_from_slice(&self.encrypt(step));
                self.state = State::Vc { pattern };
            }
        }
        Ok(())
    }

    /// Which of our torrents `HASH('req2', SKEY) xor HASH('req3', S)` names; the ciphers keyed with it.
    fn find_torrent(&mut self, obfuscated: [u8; 20]) -> Result<(), MseError> {
        let Role::Responder { info_hashes } = &self.role else {
            unreachable!("only a responder looks for the torrent")
        };
        let req2 = xor20(obfuscated, hash(&[b"req3", &self.secret]));
        let skey = *info_hashes
            .iter()
            .find(|info_hash| hash(&[b"req2", info_hash.as_slice()]) == req2)
            .ok_or(MseError::UnknownTorrent)?;
        self.skey = skey;
        self.reader = Some(Cipher::rc4(b"keyA", &self.secret, &skey));
        self.writer = Some(Cipher::rc4(b"keyB", &self.secret, &skey));
        Ok(())
    }

    /// The responder's choice among what the initiator offers: RC4 when both may.
    fn select(&self, offered: u32) -> Result<u32, MseError> {
        let common = offered & self.methods;
        if common & CRYPTO_RC4 != 0 {
            Ok(CRYPTO_RC4)
        } else if common & CRYPTO_PLAINTEXT != 0 {
            Ok(CRYPTO_PLAINTEXT)
        } else {
            Err(MseError::NoCommonMethod {
                offered,
                accepted: self.methods,
            })
        }
    }

    /// The end: what came after the handshake is payload, decrypted when RC4 was selected.
    fn established(&mut self, select: u32, mut received: Vec<u8>) -> Established {
        let (mut reader, writer) = if select == CRYPTO_RC4 {
            (
                self.reader.take().expect("keyed"),
                self.writer.take().expect("keyed"),
            )
        } else {
            (Cipher::plaintext(), Cipher::plaintext())
        };
        let mut rest = std::mem::take(&mut self.buf);
        reader.apply(&mut rest);
        received.append(&mut rest);
        Established {
            info_hash: self.skey,
            reader,
            writer,
            received,
        }
    }
}

fn pad_len(len: u16) -> Result<usize, MseError> {
    if len as usize > MAX_PAD {
        return Err(MseError::PadTooLong(len));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO_HASH: [u8; 20] = [7; 20];
    const BT_HANDSHAKE: &[u8] = b"\x13BitTorrent protocol handshake stand-in";

    fn secrets(seed: u8, pad: usize) -> Secrets {
        Secrets {
            private_key: [seed; PRIVATE_KEY_LEN],
            pad: vec![seed; pad],
        }
    }

    /// Runs both sides against each other, delivering `chunk` bytes at a time; the initiator's and responder's
    /// results.
    fn run(
        initiator: Encryption,
        responder: Encryption,
        pads: (usize, usize),
        chunk: usize,
        torrents: Vec<[u8; 20]>,
    ) -> Result<(Established, Established), MseError> {
        let (mut a, mut to_b) = Handshake::initiator(
            INFO_HASH,
            BT_HANDSHAKE.to_vec(),
            initiator,
            secrets(3, pads.0),
        )?;
        let mut b = Handshake::responder(torrents, responder, secrets(5, pads.1))?;
        let mut to_a = Vec::new();
        let (mut done_a, mut done_b) = (None, None);
        for _ in 0..10_000 {
            if done_b.is_none() && !to_b.is_empty() {
                let n = chunk.min(to_b.len());
                let bytes: Vec<u8> = to_b.drain(..n).collect();
                match b.feed(&bytes)? {
                    Step::Continue(out) => to_a.extend(out),
                    Step::Done(out, established) => {
                        to_a.extend(out);
                        done_b = Some(established);
                    }
                }
            }
            if done_a.is_none() && !to_a.is_empty() {
                let n = chunk.min(to_a.len());
                let bytes: Vec<u8> = to_a.drain(..n).collect();
                match a.feed(&bytes)? {
                    Step::Continue(out) => to_b.extend(out),
                    Step::Done(out, established) => {
                        to_b.extend(out);
                        done_a = Some(established);
                    }
                }
            }
            match (done_a.take(), done_b.take()) {
                (Some(a), Some(b)) => return Ok((a, b)),
                (a, b) => (done_a, done_b) = (a, b),
            }
        }
        panic!("the handshake did not end");
    }

    fn talk(a: &mut Established, b: &mut Established) {
        let mut message = b"interested".to_vec();
        a.writer.apply(&mut message);
        b.reader.apply(&mut message);
        assert_eq!(message, b"interested");
        let mut answer = b"unchoke".to_vec();
        b.writer.apply(&mut answer);
        a.reader.apply(&mut answer);
        assert_eq!(answer, b"unchoke");
    }

    #[test]
    fn both_sides_agree_whatever_the_pads_and_chunking() {
        for (pads, chunk) in [
            ((0, 0), 1),
            ((512, 512), 7),
            ((13, 400), 1000),
            ((511, 0), 96),
        ] {
            let torrents = vec![[1; 20], INFO_HASH, [9; 20]];
            let (mut a, mut b) = run(
                Encryption::Require,
                Encryption::Prefer,
                pads,
                chunk,
                torrents,
            )
            .unwrap();
            assert_eq!(b.info_hash, INFO_HASH);
            assert_eq!(b.received, BT_HANDSHAKE, "the responder gets IA");
            assert!(a.received.is_empty());
            assert!(a.writer.is_rc4() && b.writer.is_rc4());
            talk(&mut a, &mut b);
        }
    }

    #[test]
    fn the_responder_prefers_rc4_and_plaintext_only_when_both_allow_it() {
        let (a, b) = run(
            Encryption::Prefer,
            Encryption::Prefer,
            (5, 5),
            50,
            vec![INFO_HASH],
        )
        .unwrap();
        assert!(a.reader.is_rc4() && b.reader.is_rc4());
        // A peer that offers only plaintext: a `prefer` responder takes it, a `require` one refuses.
        let offer_plaintext = |responder: Encryption| -> Result<(), MseError> {
            let (mut a, first) = Handshake::initiator(
                INFO_HASH,
                BT_HANDSHAKE.to_vec(),
                Encryption::Prefer,
                secrets(3, 0),
            )
            .unwrap();
            a.methods = CRYPTO_PLAINTEXT;
            let mut b = Handshake::responder(vec![INFO_HASH], responder, secrets(5, 0)).unwrap();
            let Step::Continue(yb) = b.feed(&first).unwrap() else {
                panic!()
            };
            let Step::Continue(step3) = a.feed(&yb).unwrap() else {
                panic!()
            };
            let step4 = match b.feed(&step3)? {
                Step::Done(step4, b) => {
                    assert!(!b.reader.is_rc4());
                    assert_eq!(b.received, BT_HANDSHAKE);
                    step4
                }
                Step::Continue(_) => panic!("step 3 was whole"),
            };
            let Step::Done(_, a) = a.feed(&step4).unwrap() else {
                panic!()
            };
            assert!(!a.writer.is_rc4());
            Ok(())
        };
        offer_plaintext(Encryption::Prefer).unwrap();
        assert_eq!(
            offer_plaintext(Encryption::Require),
            Err(MseError::NoCommonMethod {
                offered: CRYPTO_PLAINTEXT,
                accepted: CRYPTO_RC4
            })
        );
    }

    #[test]
    fn payload_right_behind_the_handshake_is_decrypted_once() {
        let (mut a, first) = Handshake::initiator(
            INFO_HASH,
            BT_HANDSHAKE.to_vec(),
            Encryption::Require,
            secrets(3, 9),
        )
        .unwrap();
        let mut b =
            Handshake::responder(vec![INFO_HASH], Encryption::Require, secrets(5, 9)).unwrap();
        let Step::Continue(yb) = b.feed(&first).unwrap() else {
            panic!("the responder answers with its key")
        };
        let Step::Continue(step3) = a.feed(&yb).unwrap() else {
            panic!("the initiator waits for step 4")
        };
        let Step::Done(mut step4, mut b_done) = b.feed(&step3).unwrap() else {
            panic!("step 3 was whole")
        };
        // The responder's BitTorrent handshake goes out right behind step 4 and arrives in the same read.
        let mut payload = b"the responder's handshake".to_vec();
        b_done.writer.apply(&mut payload);
        step4.extend(payload);
        let Step::Done(_, a_done) = a.feed(&step4).unwrap() else {
            panic!("step 4 was whole")
        };
        assert_eq!(a_done.received, b"the responder's handshake");
    }

    #[test]
    fn garbage_wrong_keys_and_long_pads_are_errors() {
        // Garbage: no req1 hash in the window.
        let mut b =
            Handshake::responder(vec![INFO_HASH], Encryption::Prefer, secrets(5, 0)).unwrap();
        let garbage = vec![0x55; KEY_LEN + REQ1_SEARCH];
        assert_eq!(b.feed(&garbage).unwrap_err(), MseError::NoReq1);
        assert_eq!(b.feed(b"more").unwrap_err(), MseError::Finished);
        // A degenerate key.
        let mut b =
            Handshake::responder(vec![INFO_HASH], Encryption::Prefer, secrets(5, 0)).unwrap();
        let mut one = [0u8; KEY_LEN];
        one[KEY_LEN - 1] = 1;
        assert_eq!(b.feed(&one).unwrap_err(), MseError::BadKey);
        // A torrent we do not have.
        assert_eq!(
            run(
                Encryption::Prefer,
                Encryption::Prefer,
                (0, 0),
                64,
                vec![[1; 20]]
            )
            .unwrap_err(),
            MseError::UnknownTorrent
        );
        // The initiator never sees the VC: the responder answers garbage after its key.
        let (mut a, _) =
            Handshake::initiator(INFO_HASH, vec![], Encryption::Prefer, secrets(3, 0)).unwrap();
        let b_key = {
            let mut b =
                Handshake::responder(vec![INFO_HASH], Encryption::Prefer, secrets(5, 0)).unwrap();
            let (_, first) =
                Handshake::initiator(INFO_HASH, vec![], Encryption::Prefer, secrets(3, 0)).unwrap();
            let Step::Continue(yb) = b.feed(&first).unwrap() else {
                panic!()
            };
            yb
        };
        let mut reply = b_key.clone();
        reply.extend(vec![0xaa; VC_SEARCH]);
        assert_eq!(a.feed(&reply).unwrap_err(), MseError::NoVc);
        // Encryption off: no handshake at all.
        assert!(matches!(
            Handshake::responder(vec![], Encryption::Off, secrets(5, 0)),
            Err(MseError::Disabled)
        ));
    }

    /// The responder's view of a forged step 3: the right hashes, then VC / provide / PadC length as given.
    fn forged_step3(vc: [u8; 8], provide: u32, pad_c: u16) -> Result<Step, MseError> {
        let (_, first) =
            Handshake::initiator(INFO_HASH, vec![], Encryption::Prefer, secrets(3, 0)).unwrap();
        let mut b =
            Handshake::responder(vec![INFO_HASH], Encryption::Prefer, secrets(5, 0)).unwrap();
        let Step::Continue(yb) = b.feed(&first).unwrap() else {
            panic!()
        };
        let secret = {
            let p = prime();
            let y = BigUint::from_bytes_be(&yb[..KEY_LEN]);
            to_key_bytes(&y.modpow(&BigUint::from_bytes_be(&[3; PRIVATE_KEY_LEN]), &p))
        };
        let mut step = hash(&[b"req1", &secret]).to_vec();
        step.extend(xor20(
            hash(&[b"req2", &INFO_HASH]),
            hash(&[b"req3", &secret]),
        ));
        let mut fields = vc.to_vec();
        fields.extend(provide.to_be_bytes());
        fields.extend(pad_c.to_be_bytes());
        Cipher::rc4(b"keyA", &secret, &INFO_HASH).apply(&mut fields);
        step.extend(fields);
        b.feed(&step)
    }

    #[test]
    fn a_wrong_vc_no_common_method_or_a_long_pad_closes_the_handshake() {
        assert!(matches!(
            forged_step3(VC, CRYPTO_RC4, 0),
            Ok(Step::Continue(_))
        ));
        assert_eq!(
            forged_step3([1; 8], CRYPTO_RC4, 0).unwrap_err(),
            MseError::WrongVc
        );
        assert_eq!(
            forged_step3(VC, 0x04, 0).unwrap_err(),
            MseError::NoCommonMethod {
                offered: 4,
                accepted: 3
            }
        );
        assert_eq!(
            forged_step3(VC, CRYPTO_RC4, 513).unwrap_err(),
            MseError::PadTooLong(513)
        );
    }

    #[test]
    fn the_public_key_is_96_bytes_and_the_secret_is_shared() {
        let (_, first) =
            Handshake::initiator(INFO_HASH, vec![], Encryption::Prefer, secrets(3, 0)).unwrap();
        assert_eq!(first.len(), KEY_LEN);
        // A tiny private key gives a public key with leading zero bytes: still 96 bytes.
        let mut small = secrets(0, 0);
        small.private_key[PRIVATE_KEY_LEN - 1] = 3;
        let (_, first) =
            Handshake::initiator(INFO_HASH, vec![], Encryption::Prefer, small).unwrap();
        assert_eq!(&first[..KEY_LEN - 1], &[0; KEY_LEN - 1][..]);
        assert_eq!(first[KEY_LEN - 1], 8);
    }
}
