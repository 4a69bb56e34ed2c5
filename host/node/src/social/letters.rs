//! Letters between peers (`allpeers_net::mail`): the `allpeers/letters/1` service that takes
//! them directly, the way they are sent (direct, else through the hub's relay, else sealed
//! into the recipient's mailbox at the hub), and the fetching of our own mailbox.
//!
//! The hub of a letter is the *recipient's*: for a contact homed at another hub, the guest
//! line to that hub (`crate::hub::foreign`) tells whether it is online, carries the relay
//! and keeps the sealed letter where the recipient fetches it. We fetch only at our own
//! hub. When the guest line cannot be opened (the hub is down, or presents another key than
//! the one the contact named), the letter is not left at our hub, where the recipient never
//! looks: the send fails and the outbox retries.
//!
//! Every letter is signed by its author whichever way it travels, so one code path checks
//! them all (the [`Sink`] the node gives at start: the social area's `take_letter`);
//! directly delivered letters must also come from the peer at the other end of the TLS
//! connection (a forged author is refused).

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::{HubClient, HubEvent, HubState};
use allpeers_model::PeerId;
use allpeers_net::mail::{self, Letter, SignedLetter};
use allpeers_net::service::{BoxFuture, ErrorCode as NetCode};
use allpeers_net::{Context, Endpoint, Namespace, NetError, PathKind, RemoteError, Service};
use bytes::Bytes;

use crate::daemon::limit::PeerRateLimit;
use crate::daemon::state::Daemon;

/// Where checked letters go: given at start, so this module does not depend on its consumer.
pub type Sink = for<'a> fn(&'a Arc<Daemon>, Letter, Via) -> Taken<'a>;
pub type Taken<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TakeError>> + Send + 'a>>;

/// Letters one peer may hand us per second (and in a burst): a flood is refused with
/// `Busy`, and a well-behaved sender's outbox retries later.
const LETTERS_PER_SECOND: u32 = 100;
const LETTER_BURST: u32 = 300;
/// How long a direct delivery may take before we try another way.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Letters older than this are refused (the hub keeps mail 30 days).
const MAX_LETTER_AGE_MS: u64 = 31 * 24 * 3600 * 1000;
/// Letters fetched from the mailbox per request.
const FETCH_BATCH: u32 = 64;

pub fn namespace() -> Namespace {
    Namespace::allpeers("letters", 1).expect("valid namespace")
}

/// How a letter was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivered {
    Direct,
    Relayed,
    /// Sealed into the recipient's mailbox at the hub.
    Mailed,
}

/// How a letter reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Direct,
    Mail,
}

/// Why a letter was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The recipient read it and said no (not a contact, too large...): do not retry.
    #[error("refused by the recipient: {0}")]
    Refused(String),
    /// No way worked now (offline without a mailbox, hub down...): retry later.
    #[error("{0}")]
    Unreachable(String),
}

/// A refusal of a letter we were handed.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("{0}")]
    Refused(String),
    /// Our own failure (the store): the sender should retry; a mailbox letter stays.
    #[error("internal: {0}")]
    Local(String),
}

/// The service peers deliver letters to.
pub struct LetterService {
    daemon: std::sync::Weak<Daemon>,
    sink: Sink,
    limiter: PeerRateLimit,
}

impl LetterService {
    pub fn new(daemon: &Arc<Daemon>, sink: Sink) -> LetterService {
        LetterService {
            daemon: Arc::downgrade(daemon),
            sink,
            limiter: PeerRateLimit::new(LETTERS_PER_SECOND, LETTER_BURST),
        }
    }
}

impl Service for LetterService {
    fn max_message_size(&self) -> usize {
        mail::MAX_SIGNED
    }

    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, RemoteError>> {
        if !self.limiter.allows(&ctx.peer) {
            allpeers_log::bone!(peer = ?ctx.peer, "letter refused: rate limit");
            return Box::pin(async {
                Err(RemoteError::new(
                    NetCode::Busy,
                    "too many letters: slow down",
                ))
            });
        }
        let daemon = self.daemon.clone();
        let sink = self.sink;
        Box::pin(async move {
            let daemon = daemon
                .upgrade()
                .ok_or_else(|| RemoteError::new(NetCode::Busy, "shutting down"))?;
            let me = daemon.peer_id();
            let letter = SignedLetter::from_bytes(&body)
                .and_then(|s| s.verify(&me))
                .map_err(|e| RemoteError::bad_request(e.to_string()))?;
            if letter.from != ctx.peer {
                allpeers_log::marrow!(peer = ?ctx.peer, author = ?letter.from, "letter with a forged author refused");
                return Err(RemoteError::refused(
                    "the letter's author is not the peer that delivered it",
                ));
            }
            match take(&daemon, letter, Via::Direct, sink).await {
                Ok(()) => Ok(Bytes::new()),
                Err(TakeError::Refused(why)) => Err(RemoteError::refused(why)),
                Err(TakeError::Local(why)) => Err(RemoteError::new(NetCode::Busy, why)),
            }
        })
    }
}

async fn take(daemon: &Arc<Daemon>, letter: Letter, via: Via, sink: Sink) -> Result<(), TakeError> {
    let now = allpeers_model::hlc::now_ms();
    if letter.written_ms + MAX_LETTER_AGE_MS < now {
        return Err(TakeError::Refused("the letter is too old".into()));
    }
    sink(daemon, letter, via).await
}

/// Our key, unless the identity is still sealed.
pub fn unlocked_key(daemon: &Daemon) -> Option<allpeers_net::Identity> {
    daemon.identity.lock().expect("identity lock").key.clone()
}

/// Sends `body` to `to`'s `service`: directly when we can reach it, else through the hub's
/// relay, else (when `may_mail`) sealed into its mailbox at its home hub (ours, or the guest
/// line to its own).
pub async fn send(
    daemon: &Arc<Daemon>,
    to: PeerId,
    service: &str,
    body: Vec<u8>,
    may_mail: bool,
) -> Result<Delivered, SendError> {
    let identity = unlocked_key(daemon)
        .ok_or_else(|| SendError::Unreachable("the identity is locked".into()))?;
    let network = daemon
        .network
        .get()
        .ok_or_else(|| SendError::Unreachable("the node is offline".into()))?;
    let signed = Letter::new(identity.peer_id(), to, service, body)
        .sign(&identity)
        .map_err(|e| SendError::Refused(e.to_string()))?;
    let bytes = Bytes::from(signed.to_bytes());
    let endpoint = &network.endpoint;
    let mut why = Vec::new();
    let guest_line;
    let hub = match network.foreign.line_for(&to).await {
        None => daemon.hub(),
        Some(Ok(client)) => {
            guest_line = client;
            Some(&guest_line)
        }
        Some(Err(e)) => {
            why.push(format!("the recipient's hub: {e}"));
            None
        }
    };

    // 1. A live connection, or a peer the hub says is online. When the hub cannot tell (none,
    // its line down, an error), the connector tries anyway: it dials what we know and asks
    // discovery without a hub (LAN, DHT).
    let online = endpoint.connection(&to).is_some() || {
        match hub.filter(|h| h.state() == HubState::Online) {
            Some(h) => match h.resolve(&to.to_string()).await {
                Ok(Some(record)) => record.online,
                Ok(None) => false,
                Err(e) => {
                    why.push(format!("resolve: {e}"));
                    true
                }
            },
            None => true,
        }
    };
    if online {
        // 2. The connector: direct, callback, punched hole, or the hub's relay.
        match daemon.connector() {
            Some(connector) => match connector.connect(to).await {
                Ok((conn, _)) => match deliver(endpoint, to, bytes.clone()).await {
                    Ok(()) if conn.path() == PathKind::Relayed => return Ok(Delivered::Relayed),
                    Ok(()) => return Ok(Delivered::Direct),
                    Err(e @ SendError::Refused(_)) => return Err(e),
                    Err(e) => why.push(format!("{:?}: {e}", conn.path())),
                },
                Err(e) => why.push(e.to_string()),
            },
            None => why.push("no connector".into()),
        }
    } else {
        why.push("offline".into());
    }
    // 3. The mailbox.
    if may_mail && let Some(h) = hub {
        let sealed = mail::seal(&signed, &to).map_err(|e| SendError::Refused(e.to_string()))?;
        match h.mail_deposit(to, sealed).await {
            Ok(_) => return Ok(Delivered::Mailed),
            Err(e) => why.push(format!("mailbox: {e}")),
        }
    }
    Err(SendError::Unreachable(why.join("; ")))
}

async fn deliver(endpoint: &Endpoint, to: PeerId, bytes: Bytes) -> Result<(), SendError> {
    match endpoint
        .request_bytes(to, &namespace(), bytes, 1024, DIRECT_TIMEOUT)
        .await
    {
        Ok(_) => Ok(()),
        Err(NetError::Remote { code, message })
            if !matches!(code, NetCode::Busy | NetCode::Internal) =>
        {
            Err(SendError::Refused(message))
        }
        Err(e) => Err(SendError::Unreachable(e.to_string())),
    }
}

/// Fetches our mailbox whenever the hub line comes up or says letters wait.
pub fn spawn_mail_fetcher(daemon: &Arc<Daemon>, hub: HubClient, sink: Sink) {
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    let mut events = hub.events();
    // The line may have come up (with letters waiting) before we subscribed: look once now.
    let mut look_now = hub.state() == HubState::Online;
    tokio::spawn(async move {
        loop {
            if !std::mem::take(&mut look_now) {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    e = events.recv() => e,
                };
                match event {
                    Ok(HubEvent::Online { .. } | HubEvent::MailWaiting { .. }) => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            let Some(daemon) = weak.upgrade() else { break };
            if let Err(e) = fetch_mail(&daemon, &hub, sink).await {
                allpeers_log::marrow!("mailbox fetch failed: {e}");
            }
        }
    });
}

/// Takes every letter waiting at the hub. A letter is acknowledged (deleted at the hub) once
/// it is stored here, or when it can never be taken (not for us, forged, garbage).
pub async fn fetch_mail(
    daemon: &Arc<Daemon>,
    hub: &HubClient,
    sink: Sink,
) -> Result<usize, String> {
    let identity = unlocked_key(daemon).ok_or("the identity is locked")?;
    let mut taken = 0;
    loop {
        let items = hub
            .mail_fetch(FETCH_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if items.is_empty() {
            return Ok(taken);
        }
        let mut done = Vec::new();
        let mut retry_later = false;
        for item in items {
            match mail::open(&identity, &item.sealed) {
                Ok(letter) => {
                    let from = letter.from;
                    match take(daemon, letter, Via::Mail, sink).await {
                        Ok(()) => taken += 1,
                        Err(TakeError::Refused(why)) => {
                            allpeers_log::flesh!(?from, "mailbox letter refused: {why}");
                        }
                        Err(TakeError::Local(why)) => {
                            allpeers_log::skin!("mailbox letter not stored: {why}");
                            retry_later = true;
                            continue;
                        }
                    }
                }
                Err(e) => allpeers_log::marrow!(id = item.id, "mailbox letter dropped: {e}"),
            }
            done.push(item.id);
        }
        hub.mail_ack(&done).await.map_err(|e| e.to_string())?;
        if retry_later {
            return Ok(taken);
        }
    }
}
