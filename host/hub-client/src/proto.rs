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
}
