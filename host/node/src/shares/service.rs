//! The `allpeers/sync/1` service: the core's sync frames and share offers between members.
//!
//! Requests (`rules::Envelope`) are sent in order per peer by that peer's pump task (a bounded
//! queue; a request that does not fit is dropped, and a peer that cannot be reached loses its
//! queue and its session: the next reconciliation starts clean). The pump sends what is queued
//! as few requests as the bounds allow (frames in batches, up to
//! [`allpeers_replica::sync::MAX_FRAMES_PER_REQUEST`] and [`MAX_REQUEST_BYTES`]); the receiver handles a request's
//! frames together and commits them in one store transaction per share. Answers travel as
//! requests the other way, so neither side waits on the other.
//!
//! Reconciliation runs when the network starts and when the hub line comes up (with every
//! member, dialling them), when a peer connects, and every [`RECONCILE_INTERVAL`] with the members connected. New ops are
//! pushed at once to every member (any member forwards what it receives). The core answers a
//! non-member exactly as for a share we do not hold, and never sends it an op. Each peer's requests
//! are rate-limited ([`REQUESTS_PER_SECOND`]), and the ops it pushes unasked, per share and in
//! all (the core's push limit: over it, ops are fetched by reconciliation at our pace).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::HubEvent;
use allpeers_model::PeerId;
use allpeers_model::api::shares::{ShareReceived, SyncProgress, topics};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_net::service::{BoxFuture, ErrorCode as NetCode};
use allpeers_net::{Context, EndpointEvent, Namespace, RemoteError, Service};
use allpeers_replica::sync::{Event as SyncEvent, MAX_REQUEST_BYTES};
use allpeers_replica::{Replica, ShareId};
use allpeers_store::ops::ShareRecord;
use allpeers_store::{Store, StoreError};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::rules::{self, Envelope};
use super::state::{Inner, MAX_OFFERS, OFFERED};
use crate::daemon::limit::PeerRateLimit;
use crate::daemon::state::Daemon;

/// Requests queued for one peer before new ones are dropped: a full reconciliation of a large
/// share is a few dozen frames; more means the peer is not keeping up.
const PEER_QUEUE: usize = 256;
/// How long reaching an unconnected member may take before its frames are dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request's delivery. The (empty) answer comes once the receiver has handled and
/// committed the request: up to 4 MiB of ops, a second or two of signature checks and writes
/// on a busy machine, hence more than a network round trip needs. Replies to its frames come
/// as requests of their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers are empty; a few bytes of slack for the framing.
const MAX_REPLY: usize = 64;
/// A pump with nothing to send for this long ends (the next frame starts another): peers we
/// once talked to cost no task.
const PUMP_IDLE: Duration = Duration::from_secs(60);
/// Timeouts (peers that stop answering, deferred ops) are checked this often.
const TICK: Duration = Duration::from_secs(1);
/// Connected members reconcile this often, to catch what a lost push missed.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(15);
/// Requests one peer may send us per second (and in a burst): each takes the store's lock, so a
/// flood (from a stranger too: it is answered like a member of nothing) must not hold it. A
/// well-behaved peer stays far below: a reconciliation is a few dozen frames, and a refused
/// request costs it only its session (the next reconciliation starts clean). The ops a
/// request may carry are limited by the core ([`allpeers_replica::sync::PUSHED_OPS_PER_SECOND_PER_SHARE`]).
const REQUESTS_PER_SECOND: u32 = 200;
const REQUEST_BURST: u32 = 1000;

/// Our accepted contacts (the social area's, wired in by `net::start`): offers are taken
/// from them only.
pub type Contacts = fn(&Store) -> Result<Vec<PeerId>, StoreError>;

pub fn namespace() -> Namespace {
    Namespace::allpeers("sync", 1).expect("valid namespace")
}

fn now_ms() -> u64 {
    allpeers_model::hlc::now_ms()
}

pub fn store_error(e: StoreError) -> RpcError {
    let api = allpeers_store::api::ApiError::from(e);
    RpcError {
        code: i32::try_from(api.code).unwrap_or(ErrorCode::Internal.code()),
        message: api.message,
        data: api.data,
    }
}

/// Runs `work` on the blocking pool with the store and the shares locked (in that order),
/// commits every replica's changes, then sends what the sessions queued and publishes what
/// happened (`sync.progress`, `share.changed`). `from`: the peer whose frame this is.
pub async fn with_shares<T: Send + 'static>(
    daemon: &Arc<Daemon>,
    from: Option<PeerId>,
    work: impl FnOnce(&mut Store, &mut Inner, &Daemon) -> Result<T, RpcError> + Send + 'static,
) -> Result<T, RpcError> {
    let d = daemon.clone();
    let (result, frames) = tokio::task::spawn_blocking(move || {
        let mut store = d.store.lock().expect("store lock");
        let mut inner = d.shares.lock();
        let result = work(&mut store, &mut inner, &d)?;
        let me = d.peer_id();
        let committed = inner
            .commit_all(&mut store, me, from)
            .map_err(store_error)?;
        if committed.ops > 0 {
            // New files may have arrived: the files area fetches those the share's policy wants.
            d.files_auto.wake();
        }
        let now = now_ms();
        for (peer, event) in inner.events() {
            match event {
                SyncEvent::Reconciled {
                    share,
                    round_trips,
                    sent,
                    received,
                    missing,
                } => {
                    inner.last_sync.insert(share, now);
                    d.publish(
                        topics::SYNC_PROGRESS,
                        serde_json::to_value(SyncProgress {
                            share: rules::share_text(&share),
                            peer,
                            round_trips: round_trips as u64,
                            sent: sent as u64,
                            received: received as u64,
                            missing: missing as u64,
                        })
                        .expect("serialises"),
                    );
                }
                // A member that does not hold the share yet (offline when offered, or it
                // has not accepted): offer it again.
                SyncEvent::Unknown { share } => {
                    let member = inner
                        .replicas
                        .get(&share)
                        .is_some_and(|r| r.level(&peer).is_some());
                    if member && let Some(offer) = inner.offer(&share) {
                        inner.extra.push((peer, offer));
                    }
                }
                SyncEvent::BadFrame(e) => {
                    allpeers_log::bone!(?peer, "sync frame not used: {e}")
                }
                SyncEvent::Throttled { share, dropped } => {
                    allpeers_log::bone!(?peer, %share, dropped, "pushed ops over the limit: reconciling instead")
                }
            }
        }
        for share in committed.membership {
            if let Some(view) = inner.view(&share, &me) {
                d.publish(
                    topics::SHARE_CHANGED,
                    serde_json::to_value(view).expect("serialises"),
                );
            }
        }
        Ok::<_, RpcError>((result, inner.outgoing()))
    })
    .await
    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))??;
    send(daemon, frames);
    Ok(result)
}

/// Queues requests to their peers' pumps.
pub fn send(daemon: &Arc<Daemon>, frames: Vec<(PeerId, Envelope)>) {
    if frames.is_empty() {
        return;
    }
    let mut links = daemon.shares.links.lock().expect("links lock");
    // Idle pumps ended: forget them.
    links.retain(|_, link| !link.is_closed());
    for (peer, body) in frames {
        let link = links
            .entry(peer)
            .or_insert_with(|| spawn_pump(daemon, peer));
        match link.try_send(body) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                allpeers_log::bone!(?peer, "sync queue full: request dropped")
            }
            Err(mpsc::error::TrySendError::Closed(body)) => {
                let fresh = spawn_pump(daemon, peer);
                let _ = fresh.try_send(body);
                links.insert(peer, fresh);
            }
        }
    }
}

/// Drops `peer`'s pump and what it queued: frames for a connection that went away (a pump
/// may be stuck on it) must not hold up those for the new one. `forget_session` also drops
/// the sync session (the peer left: what was in flight is gone).
fn reset_link(daemon: &Daemon, peer: PeerId, forget_session: bool) {
    daemon
        .shares
        .links
        .lock()
        .expect("links lock")
        .remove(&peer);
    if forget_session {
        daemon.shares.lock().end_session(&peer);
    }
}

fn spawn_pump(daemon: &Arc<Daemon>, peer: PeerId) -> mpsc::Sender<Envelope> {
    let (tx, mut rx) = mpsc::channel::<Envelope>(PEER_QUEUE);
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        // A request taken from the queue that did not fit the one before it.
        let mut held: Option<Envelope> = None;
        loop {
            let mut request = match held.take() {
                Some(request) => request,
                None => tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(PUMP_IDLE) => break,
                    request = rx.recv() => match request {
                        Some(request) => request,
                        None => break,
                    },
                },
            };
            // What queued up meanwhile goes along, within the bounds.
            while let Ok(next) = rx.try_recv() {
                if let Err(next) = rules::merge_frames(&mut request, next) {
                    held = Some(next);
                    break;
                }
            }
            let Some(daemon) = weak.upgrade() else { break };
            if let Err(why) = deliver(&daemon, peer, request.encode()).await {
                allpeers_log::bone!(?peer, "sync frame not delivered: {why}");
                // What is queued would fail the same way; the next reconciliation resends
                // what matters, from a clean session.
                held = None;
                while rx.try_recv().is_ok() {}
                daemon.shares.lock().end_session(&peer);
            }
        }
    });
    tx
}

async fn deliver(daemon: &Daemon, peer: PeerId, body: Vec<u8>) -> Result<(), String> {
    let network = daemon.network.get().ok_or("the node is offline")?;
    if network.endpoint.connection(&peer).is_none() {
        tokio::time::timeout(CONNECT_TIMEOUT, network.connector.connect(peer))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
    }
    network
        .endpoint
        .request_bytes(
            peer,
            &namespace(),
            Bytes::from(body),
            MAX_REPLY,
            REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The peers to reconcile `replica` with: its members but us; for a share whose genesis has
/// not arrived yet, the member that offered it.
fn peers_of(replica: &Replica, record: Option<&ShareRecord>, me: &PeerId) -> Vec<PeerId> {
    if replica.owner().is_none() {
        return record
            .and_then(|r| r.peer.parse().ok())
            .into_iter()
            .collect();
    }
    replica.members().into_keys().filter(|p| p != me).collect()
}

/// Starts reconciling every share with its members that `pick` selects.
async fn reconcile_all(daemon: &Arc<Daemon>, pick: impl Fn(&PeerId) -> bool + Send + 'static) {
    let result = with_shares(daemon, None, move |_, inner, d| {
        let me = d.peer_id();
        let now = now_ms();
        let pairs: Vec<(ShareId, PeerId)> = inner
            .replicas
            .iter()
            .flat_map(|(share, r)| {
                peers_of(r, inner.records.get(share), &me)
                    .into_iter()
                    .map(move |p| (*share, p))
            })
            .filter(|(_, p)| pick(p))
            .collect();
        for (share, peer) in pairs {
            inner.reconcile(share, peer, now);
        }
        Ok(())
    })
    .await;
    if let Err(e) = result {
        allpeers_log::skin!("reconciliation not started: {}", e.message);
    }
}

/// The service peers send frames and offers to.
struct SyncService {
    daemon: std::sync::Weak<Daemon>,
    contacts: Contacts,
    limiter: PeerRateLimit,
}

impl Service for SyncService {
    fn max_message_size(&self) -> usize {
        // The envelope's tag byte on top of the core's largest request.
        MAX_REQUEST_BYTES + 1
    }

    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, RemoteError>> {
        if !self.limiter.allows(&ctx.peer) {
            allpeers_log::bone!(peer = ?ctx.peer, "sync frame refused: rate limit");
            return Box::pin(async {
                Err(RemoteError::new(
                    NetCode::Busy,
                    "too many sync frames: slow down",
                ))
            });
        }
        let daemon = self.daemon.clone();
        let contacts = self.contacts;
        Box::pin(async move {
            let daemon = daemon
                .upgrade()
                .ok_or_else(|| RemoteError::refused("shutting down"))?;
            let peer = ctx.peer;
            let envelope =
                Envelope::decode(&body).map_err(|e| RemoteError::bad_request(e.to_string()))?;
            let result = match envelope {
                Envelope::Frames(frames) => {
                    with_shares(&daemon, Some(peer), move |_, inner, _| {
                        inner.handle_frames(peer, &frames, now_ms());
                        Ok(())
                    })
                    .await
                }
                Envelope::Offer(offer) => take_offer(&daemon, peer, offer, contacts).await,
            };
            result
                .map(|()| Bytes::new())
                .map_err(|e| RemoteError::refused(e.message))
        })
    }
}

/// Keeps an offer from a contact for the user to accept (`share.received`); offers of shares
/// we already know, from strangers, or beyond [`MAX_OFFERS`] are dropped.
async fn take_offer(
    daemon: &Arc<Daemon>,
    from: PeerId,
    offer: rules::Offer,
    contacts: Contacts,
) -> Result<(), RpcError> {
    with_shares(daemon, Some(from), move |store, inner, d| {
        let share = rules::parse_share(&offer.share).expect("checked when decoded");
        if inner.records.contains_key(&share) || inner.offers_waiting() >= MAX_OFFERS {
            return Ok(());
        }
        let contacts = contacts(store).map_err(store_error)?;
        if !rules::takes_offer_from(&from, &contacts) {
            allpeers_log::bone!(?from, "share offer from a non-contact dropped");
            return Ok(());
        }
        let record = ShareRecord {
            share,
            root: offer.resource.clone(),
            peer: from.to_string(),
            state: OFFERED.into(),
            title: offer.title.clone(),
        };
        store.put_share_record(&record).map_err(store_error)?;
        inner.records.insert(share, record);
        d.publish(
            topics::SHARE_RECEIVED,
            serde_json::to_value(ShareReceived {
                share: offer.share,
                resource: offer.resource,
                title: offer.title,
                from,
            })
            .expect("serialises"),
        );
        Ok(())
    })
    .await
}

/// Registers the service and starts reconciliation: now with every member, then on each
/// connection and every [`RECONCILE_INTERVAL`] with those connected; timeouts every [`TICK`].
pub fn start(daemon: &Arc<Daemon>, contacts: Contacts) {
    let Some(network) = daemon.network.get() else {
        return;
    };
    network.endpoint.register(
        namespace(),
        SyncService {
            daemon: Arc::downgrade(daemon),
            contacts,
            limiter: PeerRateLimit::new(REQUESTS_PER_SECOND, REQUEST_BURST),
        },
    );
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    let mut connections = network.endpoint.events();
    // Members are found through the hub: when its line comes up (after our start, or again
    // after a loss), reconcile with every member.
    let mut hub_events = daemon.hub().map(|hub| hub.events());
    tokio::spawn(async move {
        if let Some(daemon) = weak.upgrade() {
            reconcile_all(&daemon, |_| true).await;
        }
        let mut tick = tokio::time::interval(TICK);
        let mut round = tokio::time::interval(RECONCILE_INTERVAL);
        // The first tick of each fires at once: the round above just ran.
        round.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let Some(daemon) = weak.upgrade() else { break };
                    let _ = with_shares(&daemon, None, |_, inner, _| {
                        inner.handle_timeout(now_ms());
                        Ok(())
                    })
                    .await;
                }
                _ = round.tick() => {
                    let Some(daemon) = weak.upgrade() else { break };
                    let connected: HashSet<PeerId> = daemon
                        .network
                        .get()
                        .map(|n| n.endpoint.connections().iter().map(|c| c.remote_peer()).collect())
                        .unwrap_or_default();
                    reconcile_all(&daemon, move |p| connected.contains(p)).await;
                }
                Some(event) = async {
                    match hub_events.as_mut() {
                        Some(events) => Some(events.recv().await),
                        None => std::future::pending().await,
                    }
                } => match event {
                    Ok(HubEvent::Online { .. }) => {
                        let Some(daemon) = weak.upgrade() else { break };
                        reconcile_all(&daemon, |_| true).await;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => hub_events = None,
                },
                event = connections.recv() => match event {
                    Ok(EndpointEvent::Connected { peer, .. }) => {
                        let Some(daemon) = weak.upgrade() else { break };
                        reset_link(&daemon, peer, false);
                        reconcile_all(&daemon, move |p| *p == peer).await;
                    }
                    Ok(EndpointEvent::Disconnected { peer, .. }) => {
                        let Some(daemon) = weak.upgrade() else { break };
                        reset_link(&daemon, peer, true);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
    });
}
