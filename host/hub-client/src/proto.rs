//! Hub protocol messages (postcard on the service framework).
//!
//! * [`registry_ns`] — request/response: [`HubRequest`] -> [`HubResponse`] (register,
//!   resolve, relay request, info). Refusals are [`RemoteError`]s with the
//!   [`code`] application codes.
//! * [`presence_ns`] — one raw stream per online peer, frames both ways: [`PresenceUp`]
//!   from the peer (hello, pings, watch lists, relay answers), [`PresenceDown`] from the hub
//!   (welcome, pongs, presence changes, relay offers).
//! * [`relay_ns`] — one raw stream per relay end: the peer sends one [`RelayJoin`] frame,
//!   the hub answers one [`RelayReady`] frame when the other end joined, then raw bytes.
//!
//! Signed data: a [`NameCertificate`] (name + PeerId + hub, signed by the hub's Ed25519 key)
//! and a [`SignedAnswer`] (a [`DirectoryAnswer`] echoing the asker's nonce, with the hub's
//! time, signed). Signatures cover a domain-separation tag and the postcard bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allpeers_model::PeerId;
use serde::{Deserialize, Serialize};

use allpeers_net::identity::Identity;
use allpeers_net::service::{Namespace, RemoteError};
use allpeers_net::transport::Address;

/// Largest registry message.
pub const REGISTRY_LIMIT: usize = 64 * 1024;
/// Largest presence frame.
pub const PRESENCE_LIMIT: usize = 64 * 1024;
/// Largest relay join / ready frame.
pub const RELAY_HEAD_LIMIT: usize = 1024;
/// Most addresses a peer may announce.
pub const MAX_ADDRESSES: usize = 16;
/// Most peers in one watch message.
pub const MAX_WATCH: usize = 1024;
/// How far a directory answer's time may be from ours.
pub const ANSWER_MAX_SKEW: Duration = Duration::from_secs(60);

pub fn registry_ns() -> Namespace {
    Namespace::allpeers("hub-registry", 1).expect("valid namespace")
}
pub fn presence_ns() -> Namespace {
    Namespace::allpeers("hub-presence", 1).expect("valid namespace")
}
pub fn relay_ns() -> Namespace {
    Namespace::allpeers("hub-relay", 1).expect("valid namespace")
}

/// Application error codes of the hub.
pub mod code {
    pub const NAME_TAKEN: u32 = 1;
    pub const NOT_FOUND: u32 = 2;
    pub const RELAY_REFUSED: u32 = 3;
    pub const QUOTA: u32 = 4;
    pub const OFFLINE: u32 = 5;
    pub const BAD_NAME: u32 = 6;
    pub const NOT_YOURS: u32 = 7;
    pub const MAILBOX_FULL: u32 = 8;
    pub const TOO_LARGE: u32 = 9;
    pub const RATE_LIMITED: u32 = 10;
    /// A letter (or a relay) for a peer this hub does not host: deposit it at the
    /// recipient's own hub (the one named in its certificate).
    pub const NOT_HOSTED: u32 = 11;
    /// Something only the peers a hub hosts may do (register, watch a peer hosted
    /// elsewhere) asked by a guest.
    pub const GUEST_REFUSED: u32 = 12;
    /// A hub record ([`super::SignedHubRecord`]) that does not verify, is stale, or claims
    /// the name of the hub it was given to.
    pub const BAD_RECORD: u32 = 13;
}

/// Largest signal body the hub passes between two peers ([`HubRequest::Signal`]).
pub const MAX_SIGNAL: usize = 2048;

pub fn app_error(code: u32, message: impl Into<String>) -> RemoteError {
    RemoteError::new(allpeers_net::service::ErrorCode::Application(code), message)
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const CERT_TAG: &[u8] = b"allpeers-hub-name-certificate-v1\0";
const ANSWER_TAG: &[u8] = b"allpeers-hub-directory-answer-v1\0";
const HUB_RECORD_TAG: &[u8] = b"allpeers-hub-self-record-v1\0";

/// Most records in one answer to [`HubRequest::LookupHub`] (the keys a hub knows under one
/// hub name: names are not unique).
pub const MAX_HUB_RECORDS: usize = 4;
/// Largest signed hub record, in bytes (a name of 253 and 16 addresses fit in well under).
pub const MAX_HUB_RECORD: usize = 2048;
/// A hub record older than this is not passed on: a hub signs a fresh one each time it is
/// asked, and its peers' guest lines bring fresh ones to their home hubs.
pub const HUB_RECORD_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A request to the registry namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubRequest {
    /// Register `name` for `peer` (must be the asker's own PeerId).
    Register { name: String, peer: PeerId },
    /// Resolve a name or PeerId; the answer echoes `nonce`.
    Resolve { query: Query, nonce: [u8; 16] },
    /// Ask for a relay to `target`; the hub asks the target over its presence line.
    Relay { target: PeerId },
    /// The hub's name, PeerId and addresses.
    Info,
    /// Keep a sealed letter ([`allpeers_net::mail`]) for `to` until it comes and fetches it.
    MailDeposit { to: PeerId, sealed: Vec<u8> },
    /// Letters waiting for the asker, oldest first, at most `max` (and what fits a frame).
    MailFetch { max: u32 },
    /// The asker took these letters: delete them.
    MailAck { ids: Vec<u64> },
    /// Pass `body` (at most [`MAX_SIGNAL`] bytes, the connector's signed connection
    /// signals) to `to` on its presence line, with our PeerId and the address we are seen at.
    Signal { to: PeerId, body: Vec<u8> },
    /// This hub's own signed record ([`SignedHubRecord`]: its name, key and addresses), to
    /// anyone, guests included.
    HubRecord,
    /// A peer hosted here hands its home hub the record of another hub it reached (over a
    /// guest line pinned to that hub's key), so the others hosted here can find that hub.
    IntroduceHub(SignedHubRecord),
    /// Which key and addresses the hubs known here under a name have, or what a hub of a
    /// known key says its addresses are (records signed by those hubs, not by this one).
    LookupHub(HubQuery),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubResponse {
    Registered(NameCertificate),
    Resolved(SignedAnswer),
    Relay(RelayTicket),
    Info(HubInfo),
    MailDeposited {
        id: u64,
    },
    Mail(Vec<MailItem>),
    MailAcked {
        removed: u32,
    },
    /// The signal is on the target's presence line.
    Signalled,
    HubRecord(SignedHubRecord),
    HubIntroduced,
    /// At most [`MAX_HUB_RECORDS`], most recently introduced first; none: unknown here.
    Hubs(Vec<SignedHubRecord>),
}

/// What [`HubRequest::LookupHub`] asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HubQuery {
    /// A hub name (folded by the hub).
    Name(String),
    /// A hub key (from a `name@hub` certificate or a contact): where is it now.
    Key(PeerId),
}

/// A hub's own statement of its name, key and addresses, signed by that key. Anyone can
/// check it came from the key it names; nothing can check that the key is "the" hub of that
/// name (hub names are not unique, and there is no list of hubs), see
/// `docs/architecture-hub.md` "Other hubs in our hub's directory".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRecord {
    /// The hub's folded name.
    pub name: String,
    /// The hub's key: the signer.
    pub hub: PeerId,
    /// Where it takes connections, at most [`MAX_ADDRESSES`].
    pub addresses: Vec<Address>,
    /// Unix milliseconds.
    pub issued_at: u64,
}

/// A [`HubRecord`] as signed bytes, passed on unchanged by hubs and peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHubRecord {
    pub record: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a hub record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubRecordError {
    #[error("the hub record is larger than {MAX_HUB_RECORD} bytes")]
    TooLarge,
    #[error("the hub record cannot be decoded: {0}")]
    Malformed(String),
    #[error("the hub record is not signed by the key it names")]
    BadSignature,
    #[error("the hub record's name is not a hub name")]
    BadName,
    #[error("the hub record lists more than {MAX_ADDRESSES} addresses")]
    TooManyAddresses,
    #[error("the hub record is {0} days old")]
    Stale(u64),
    #[error("the hub record is dated {0} ms ahead of our clock")]
    FromTheFuture(u64),
    #[error("the hub record is for another hub than asked")]
    WrongHub,
}

impl SignedHubRecord {
    /// `hub`'s record of itself, dated now.
    pub fn sign(hub: &Identity, name: &str, addresses: &[Address]) -> Self {
        let record = HubRecord {
            name: name.into(),
            hub: hub.peer_id(),
            addresses: addresses.iter().take(MAX_ADDRESSES).copied().collect(),
            issued_at: allpeers_model::hlc::now_ms(),
        };
        let bytes = postcard::to_allocvec(&record).expect("encodable");
        let mut msg = HUB_RECORD_TAG.to_vec();
        msg.extend_from_slice(&bytes);
        SignedHubRecord {
            record: bytes,
            signature: hub.sign(&msg).to_vec(),
        }
    }

    /// Checks size, the signature against the key the record names, the name, the bounds
    /// and the age ([`HUB_RECORD_MAX_AGE`], at most [`ANSWER_MAX_SKEW`] ahead of `now_ms`).
    pub fn verify(&self, now_ms: u64) -> Result<HubRecord, HubRecordError> {
        if self.record.len() > MAX_HUB_RECORD {
            return Err(HubRecordError::TooLarge);
        }
        let sig = <[u8; 64]>::try_from(self.signature.as_slice())
            .map_err(|_| HubRecordError::BadSignature)?;
        let record: HubRecord = allpeers_net::service::decode(&self.record)
            .map_err(|e| HubRecordError::Malformed(e.to_string()))?;
        let mut msg = HUB_RECORD_TAG.to_vec();
        msg.extend_from_slice(&self.record);
        if !Identity::verify(&record.hub, &msg, &sig) {
            return Err(HubRecordError::BadSignature);
        }
        if crate::names::fold_hub_name(&record.name).ok().as_deref() != Some(record.name.as_str()) {
            return Err(HubRecordError::BadName);
        }
        if record.addresses.len() > MAX_ADDRESSES {
            return Err(HubRecordError::TooManyAddresses);
        }
        let ahead = record.issued_at.saturating_sub(now_ms);
        if ahead > ANSWER_MAX_SKEW.as_millis() as u64 {
            return Err(HubRecordError::FromTheFuture(ahead));
        }
        let age = now_ms.saturating_sub(record.issued_at);
        if age > HUB_RECORD_MAX_AGE.as_millis() as u64 {
            return Err(HubRecordError::Stale(age / (24 * 3600 * 1000)));
        }
        Ok(record)
    }
}

/// One stored letter, as fetched by its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailItem {
    pub id: u64,
    /// Unix milliseconds when the hub took it.
    pub deposited_ms: u64,
    pub sealed: Vec<u8>,
}

/// Most letter ids in one acknowledgement.
pub const MAX_MAIL_ACK: usize = 1024;
/// Longest status text (bytes).
pub const MAX_STATUS_TEXT: usize = 280;

/// How available a peer says it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Online,
    Away,
    Busy,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Online => "online",
            Availability::Away => "away",
            Availability::Busy => "busy",
        }
    }
}

impl std::str::FromStr for Availability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "online" => Ok(Availability::Online),
            "away" => Ok(Availability::Away),
            "busy" => Ok(Availability::Busy),
            other => Err(format!("{other:?}: presence is online, away or busy")),
        }
    }
}

/// What a peer shows its contacts while online.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub availability: Availability,
    /// A short line ("at lunch"), at most [`MAX_STATUS_TEXT`] bytes.
    pub text: String,
}

impl PeerStatus {
    /// Cuts the text to [`MAX_STATUS_TEXT`] bytes on a character boundary and drops control
    /// characters: a status is shown verbatim to contacts.
    pub fn bounded(mut self) -> PeerStatus {
        self.text.retain(|c| !c.is_control());
        if self.text.len() > MAX_STATUS_TEXT {
            let mut cut = MAX_STATUS_TEXT;
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.truncate(cut);
        }
        self
    }
}

/// What a directory query asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Query {
    /// `name` or `name@hub` (folded by the hub).
    Name(String),
    Peer(PeerId),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubInfo {
    pub name: String,
    pub peer: PeerId,
    pub addresses: Vec<Address>,
}

/// The hub's signed binding of `name@hub` to a PeerId.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameCertificate {
    /// Folded local name.
    pub name: String,
    /// The hub's name (after the `@`).
    pub hub_name: String,
    pub peer: PeerId,
    /// The signing hub.
    pub hub: PeerId,
    /// Unix milliseconds.
    pub issued_at: u64,
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct CertBody<'a> {
    name: &'a str,
    hub_name: &'a str,
    peer: &'a PeerId,
    hub: &'a PeerId,
    issued_at: u64,
}

impl NameCertificate {
    fn signed_bytes(&self) -> Vec<u8> {
        let body = CertBody {
            name: &self.name,
            hub_name: &self.hub_name,
            peer: &self.peer,
            hub: &self.hub,
            issued_at: self.issued_at,
        };
        let mut out = CERT_TAG.to_vec();
        out.extend(postcard::to_allocvec(&body).expect("encodable"));
        out
    }

    /// Issues a certificate signed by the hub's identity.
    pub fn issue(hub: &Identity, hub_name: &str, name: &str, peer: PeerId) -> Self {
        let mut cert = NameCertificate {
            name: name.into(),
            hub_name: hub_name.into(),
            peer,
            hub: hub.peer_id(),
            issued_at: allpeers_model::hlc::now_ms(),
            signature: Vec::new(),
        };
        cert.signature = hub.sign(&cert.signed_bytes()).to_vec();
        cert
    }

    /// True if `hub` signed this certificate.
    pub fn verify(&self, hub: &PeerId) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        self.hub == *hub && Identity::verify(hub, &self.signed_bytes(), &sig)
    }

    pub fn full_name(&self) -> String {
        format!("{}@{}", self.name, self.hub_name)
    }
}

/// What the directory knows of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    pub peer: PeerId,
    pub certificate: Option<NameCertificate>,
    /// Addresses the peer announced on its presence line, then the one the hub saw.
    pub addresses: Vec<Address>,
    pub online: bool,
    /// The hub the peer is online at (this hub) when online.
    pub online_at: Option<HubInfo>,
    /// Unix milliseconds of the last presence, if ever seen.
    pub last_seen: Option<u64>,
}

/// The content of a directory answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryAnswer {
    pub query: Query,
    /// The asker's nonce, echoed: an answer to another question cannot be replayed.
    pub nonce: [u8; 16],
    /// The hub's clock, unix milliseconds.
    pub time: u64,
    pub hub: PeerId,
    /// None: not found.
    pub record: Option<DirectoryRecord>,
}

/// A directory answer as signed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnswer {
    pub answer: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a directory answer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the directory answer's signature is not the hub's")]
    BadSignature,
    #[error("the directory answer cannot be decoded: {0}")]
    Malformed(String),
    #[error("the directory answer is for another question (replayed or misdirected)")]
    WrongQuestion,
    #[error("the directory answer's time is {0} ms away from ours (stale or replayed)")]
    Stale(i64),
    #[error("the directory answer carries a name certificate the hub did not sign")]
    BadCertificate,
}

impl SignedAnswer {
    pub fn sign(hub: &Identity, answer: &DirectoryAnswer) -> Self {
        let bytes = postcard::to_allocvec(answer).expect("encodable");
        let mut msg = ANSWER_TAG.to_vec();
        msg.extend_from_slice(&bytes);
        SignedAnswer {
            answer: bytes,
            signature: hub.sign(&msg).to_vec(),
        }
    }

    /// Checks signature, question, nonce and freshness; returns the answer.
    pub fn verify(
        &self,
        hub: &PeerId,
        query: &Query,
        nonce: &[u8; 16],
        now_ms: u64,
    ) -> Result<DirectoryAnswer, AnswerError> {
        let sig = <[u8; 64]>::try_from(self.signature.as_slice())
            .map_err(|_| AnswerError::BadSignature)?;
        let mut msg = ANSWER_TAG.to_vec();
        msg.extend_from_slice(&self.answer);
        if !Identity::verify(hub, &msg, &sig) {
            return Err(AnswerError::BadSignature);
        }
        let answer: DirectoryAnswer = allpeers_net::service::decode(&self.answer)
            .map_err(|e| AnswerError::Malformed(e.to_string()))?;
        if answer.hub != *hub || &answer.query != query || &answer.nonce != nonce {
            return Err(AnswerError::WrongQuestion);
        }
        let skew = answer.time as i64 - now_ms as i64;
        if skew.unsigned_abs() > ANSWER_MAX_SKEW.as_millis() as u64 {
            return Err(AnswerError::Stale(skew));
        }
        if let Some(cert) = answer.record.as_ref().and_then(|r| r.certificate.as_ref())
            && (!cert.verify(hub) || Some(cert.peer) != answer.record.as_ref().map(|r| r.peer))
        {
            return Err(AnswerError::BadCertificate);
        }
        Ok(answer)
    }
}

/// The hub's grant of a relay session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayTicket {
    pub session: [u8; 16],
    pub target: PeerId,
}

/// From a peer on its presence line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceUp {
    /// First frame: the peer's listening addresses and whether it takes relay offers.
    Hello {
        addresses: Vec<Address>,
        accepts_relays: bool,
        status: PeerStatus,
    },
    Ping(u64),
    /// Ask to be told when these peers come and go (the hub's watch policy decides).
    Watch(Vec<PeerId>),
    Unwatch(Vec<PeerId>),
    /// Answer to a [`PresenceDown::RelayOffer`].
    RelayAnswer {
        session: [u8; 16],
        accept: bool,
    },
    /// The peer's availability and status text changed.
    Status(PeerStatus),
    /// First frame of a *guest line*: a peer homed at another hub that watches peers hosted
    /// here and takes connection signals from them. It announces no presence of its own (its
    /// home hub does), takes no relay offers and has no mailbox here.
    GuestHello,
}

/// From the hub on a presence line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceDown {
    /// Answer to Hello: the address the hub sees the peer at.
    Welcome {
        observed: std::net::SocketAddr,
    },
    Pong(u64),
    /// A watched peer came online or went offline.
    Presence {
        peer: PeerId,
        online: bool,
        status: PeerStatus,
    },
    /// The watch policy does not let us watch this peer (yet).
    WatchRefused {
        peer: PeerId,
    },
    /// `from` asks for a relay: answer with [`PresenceUp::RelayAnswer`].
    RelayOffer {
        session: [u8; 16],
        from: PeerId,
    },
    /// Letters wait in our mailbox: fetch them ([`HubRequest::MailFetch`]).
    MailWaiting {
        count: u32,
    },
    /// A peer's [`HubRequest::Signal`]: `from` is the authenticated sender, `observed` the
    /// address the hub sees its presence line at (its QUIC socket's public mapping).
    Signal {
        from: PeerId,
        observed: Option<std::net::SocketAddr>,
        body: Vec<u8>,
    },
}

/// First frame on a relay stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayJoin {
    pub session: [u8; 16],
}

/// The hub's answer once both ends joined (or why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayReady {
    Ready,
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_and_answer_signatures() {
        let hub = Identity::generate();
        let other = Identity::generate();
        let peer = Identity::generate().peer_id();
        let cert = NameCertificate::issue(&hub, "hub.test", "alice", peer);
        assert!(cert.verify(&hub.peer_id()));
        assert!(!cert.verify(&other.peer_id()));
        let mut forged = cert.clone();
        forged.peer = other.peer_id();
        assert!(!forged.verify(&hub.peer_id()));

        let query = Query::Peer(peer);
        let nonce = [7u8; 16];
        let answer = DirectoryAnswer {
            query: query.clone(),
            nonce,
            time: allpeers_model::hlc::now_ms(),
            hub: hub.peer_id(),
            record: None,
        };
        let signed = SignedAnswer::sign(&hub, &answer);
        assert!(
            signed
                .verify(
                    &hub.peer_id(),
                    &query,
                    &nonce,
                    allpeers_model::hlc::now_ms()
                )
                .is_ok()
        );
        assert_eq!(
            signed.verify(
                &hub.peer_id(),
                &query,
                &[8u8; 16],
                allpeers_model::hlc::now_ms()
            ),
            Err(AnswerError::WrongQuestion)
        );
        assert!(matches!(
            signed.verify(
                &hub.peer_id(),
                &query,
                &nonce,
                allpeers_model::hlc::now_ms() + 120_000
            ),
            Err(AnswerError::Stale(_))
        ));
        let by_other = SignedAnswer::sign(&other, &answer);
        assert_eq!(
            by_other.verify(
                &hub.peer_id(),
                &query,
                &nonce,
                allpeers_model::hlc::now_ms()
            ),
            Err(AnswerError::BadSignature)
        );
    }

    /// Re-signs `record` with `key` (a record whose contents or signer lie).
    fn signed_by(key: &Identity, record: &HubRecord) -> SignedHubRecord {
        let bytes = postcard::to_allocvec(record).unwrap();
        let mut msg = HUB_RECORD_TAG.to_vec();
        msg.extend_from_slice(&bytes);
        SignedHubRecord {
            record: bytes,
            signature: key.sign(&msg).to_vec(),
        }
    }

    #[test]
    fn hub_records_verify_only_under_the_key_they_name() {
        let hub = Identity::generate();
        let liar = Identity::generate();
        let now = allpeers_model::hlc::now_ms();
        let addr = Address::quic("127.0.0.1:7700".parse().unwrap());
        let signed = SignedHubRecord::sign(&hub, "two.test", &[addr]);
        let record = signed.verify(now).unwrap();
        assert_eq!(
            (record.hub, record.name.as_str()),
            (hub.peer_id(), "two.test")
        );
        assert_eq!(record.addresses, vec![addr]);

        // Another key signing a record that names the hub's key (a lie about where it is).
        let mut moved = record.clone();
        moved.addresses = vec![Address::quic("192.0.2.1:1".parse().unwrap())];
        assert_eq!(
            signed_by(&liar, &moved).verify(now),
            Err(HubRecordError::BadSignature)
        );
        // Bytes changed after signing.
        let mut tampered = signed.clone();
        let last = tampered.record.len() - 1;
        tampered.record[last] ^= 1;
        assert!(tampered.verify(now).is_err());
        // A signature cut short.
        let mut short = signed.clone();
        short.signature.truncate(10);
        assert_eq!(short.verify(now), Err(HubRecordError::BadSignature));
        // Too large before anything is decoded.
        let big = SignedHubRecord {
            record: vec![0; MAX_HUB_RECORD + 1],
            signature: signed.signature.clone(),
        };
        assert_eq!(big.verify(now), Err(HubRecordError::TooLarge));
        // A name that is not a hub name, or not folded.
        let mut bad = record.clone();
        bad.name = "Two.Test".into();
        assert_eq!(
            signed_by(&hub, &bad).verify(now),
            Err(HubRecordError::BadName)
        );
        // Too many addresses.
        let mut many = record.clone();
        many.addresses = vec![addr; MAX_ADDRESSES + 1];
        assert_eq!(
            signed_by(&hub, &many).verify(now),
            Err(HubRecordError::TooManyAddresses)
        );
        // Old, and from the future.
        assert!(matches!(
            signed.verify(now + HUB_RECORD_MAX_AGE.as_millis() as u64 + 1_000),
            Err(HubRecordError::Stale(30))
        ));
        assert!(matches!(
            signed.verify(now - 120_000),
            Err(HubRecordError::FromTheFuture(_))
        ));
    }
}
