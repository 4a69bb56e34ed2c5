//! One local API client: reads frames, answers requests, forwards subscribed events.
//!
//! Bad input is answered, never fatal: a frame that is not UTF-8 or not JSON, or a request
//! with an unknown method or wrong params, gets an error response naming the problem and
//! the session goes on. Only a frame over the size limit or a stream that ends inside a
//! frame closes the session, since the framing is then lost; other clients never notice.

use std::collections::BTreeSet;
use std::sync::Arc;

use allpeers_model::api::frame::API_MAX_FRAME;
use allpeers_model::api::message::parse_request;
use allpeers_model::api::methods::{ClientsChanged, topics};
use allpeers_model::api::{ErrorCode, Event, FrameError, Response, RpcError, encode_frame};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, Semaphore, broadcast, mpsc, watch};

use super::client::{EventSink, Session};
use super::router;
use super::state::Daemon;
use crate::frames::{FrameReader, ReadError};

/// Events queued for one client alone (its resource subscriptions) before they are dropped.
const OWN_EVENTS: usize = 1024;
/// Slow requests of one client in progress at once (quick ones run inline).
const CONCURRENT_REQUESTS: usize = 32;

pub async fn serve_client(stream: UnixStream, daemon: Arc<Daemon>) {
    // The socket is 0600 in a 0700 dir; checking the peer's uid as well costs nothing.
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == rustix::process::getuid().as_raw() => {}
        Ok(cred) => {
            allpeers_log::skin!(
                uid = cred.uid(),
                "refused a local API client of another user"
            );
            return;
        }
        Err(e) => {
            allpeers_log::marrow!(error = %e, "cannot read the client's credentials; refusing it");
            return;
        }
    }
    let (reader, writer) = stream.into_split();
    // Responses are written by the task that produced them, without a hop through a
    // writer task: that hop costs more than the work of most requests. A client that
    // stops reading blocks only its own session (and loses events, counted).
    let writer: Writer = Arc::new(Mutex::new(writer));

    let (own_events, own_events_rx) = mpsc::channel(OWN_EVENTS);
    let (subscriptions_tx, subscriptions_rx) = watch::channel(BTreeSet::<String>::new());
    let session = Arc::new(Session::new(own_events, subscriptions_tx));
    // On the bus before the first request is read, not when the task first runs: a busy
    // runtime may start it after `events.subscribe` and a status read have been answered, and
    // a change published in between (the hub line coming up) would reach nobody.
    let bus = daemon.subscribe_events();
    let events_task = tokio::spawn(forward_events(
        daemon.clone(),
        bus,
        subscriptions_rx,
        own_events_rx,
        session.clone(),
        writer.clone(),
    ));
    let permits = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    let mut frames = FrameReader::new(reader, API_MAX_FRAME);
    let mut said_hello = false;

    loop {
        let next = tokio::select! {
            _ = daemon.shutdown.cancelled() => break,
            next = frames.next_frame() => next,
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(ReadError::Frame(e)) => {
                // Framing is lost: say why, then close.
                allpeers_log::marrow!(client = session.client_name(), "{e}; closing");
                let code = match e {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    FrameError::Truncated { .. } => ErrorCode::TruncatedFrame,
                };
                send(
                    &writer,
                    &Response::err(Value::Null, RpcError::new(code, e.to_string())),
                )
                .await;
                break;
            }
            Err(ReadError::Io(e)) => {
                allpeers_log::bone!(error = %e, "client read failed");
                break;
            }
        };
        let request = match parse_request(&frame) {
            Ok(request) => request,
            Err(response) => {
                allpeers_log::bone!(error = ?response.error, "bad request");
                send(&writer, &response).await;
                continue;
            }
        };
        // Quick requests run inline, in order (so a request pipelined behind `hello`
        // or `events.subscribe` sees its effect); slow ones run beside the session.
        if !router::is_slow(&request.method) {
            let response = router::handle(&daemon, &session, request).await;
            send(&writer, &response).await;
            if !said_hello && session.has_said_hello() {
                said_hello = true;
                let clients = daemon.client_joined();
                daemon.publish(
                    topics::CLIENTS_CHANGED,
                    serde_json::to_value(ClientsChanged {
                        clients,
                        client: session.client_name(),
                        connected: true,
                    })
                    .expect("serialises"),
                );
            }
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (daemon, session, writer) = (daemon.clone(), session.clone(), writer.clone());
        tokio::spawn(async move {
            let response = router::handle(&daemon, &session, request).await;
            send(&writer, &response).await;
            drop(permit);
        });
    }

    events_task.abort();
    crate::resources::forget_client(&daemon, session.take_subscriptions()).await;
    crate::hub::forget_client(&daemon, &session).await;
    let _ = writer.lock().await.shutdown().await;
    if said_hello {
        let clients = daemon.client_left();
        daemon.publish(
            topics::CLIENTS_CHANGED,
            serde_json::to_value(ClientsChanged {
                clients,
                client: session.client_name(),
                connected: false,
            })
            .expect("serialises"),
        );
    }
}

type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// Writes one frame in one syscall; a failed write means the client is gone, which the
/// read side notices.
async fn write_frame(writer: &Writer, payload: &[u8]) -> bool {
    writer
        .lock()
        .await
        .write_all(&encode_frame(payload))
        .await
        .is_ok()
}

async fn send(writer: &Writer, response: &Response) {
    let payload = serde_json::to_vec(response).expect("responses serialise");
    write_frame(writer, &payload).await;
}

/// Forwards events: those of the shared bus on the client's subscribed topics, and those
/// queued for this client alone (its resource subscriptions). A client too slow to take
/// them loses events (both queues are bounded), never stalls the daemon, and is told how
/// many it lost. An app session's events pass its origin's live grant first (the apps area),
/// so a revoke silences subscriptions already made.
async fn forward_events(
    daemon: Arc<Daemon>,
    mut events: broadcast::Receiver<Event>,
    subscriptions: watch::Receiver<BTreeSet<String>>,
    mut own: mpsc::Receiver<Event>,
    session: Arc<Session>,
    writer: Writer,
) {
    let sink: EventSink = session.event_sink();
    let mut dropped = 0u64;
    loop {
        let event = tokio::select! {
            shared = events.recv() => match shared {
                Ok(event) if subscriptions.borrow().contains(&event.topic) => event,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    dropped += n;
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            own_event = own.recv() => match own_event {
                Some(event) => event,
                None => return,
            },
        };
        let event = match session.origin() {
            Some(origin) => match crate::apps::deliverable(&daemon, origin, event).await {
                Some(event) => event,
                None => continue,
            },
            None => event,
        };
        dropped += sink.take_dropped();
        if dropped > 0 {
            let notice = Event {
                topic: topics::EVENTS_DROPPED.into(),
                data: serde_json::json!({"dropped": dropped}),
            };
            if !write_frame(&writer, notice.to_notification().to_string().as_bytes()).await {
                return;
            }
            dropped = 0;
        }
        if !write_frame(&writer, event.to_notification().to_string().as_bytes()).await {
            return;
        }
    }
}
