//! One local API client: reads frames, answers requests, forwards subscribed events.
//!
//! Bad input is answered, never fatal: a frame that is not UTF-8 or not JSON, or a request
//! with an unknown method or wrong params, gets an error response naming the problem and
//! the session goes on. Only a frame over the size limit or a stream that ends inside a
//! frame closes the session, since the framing is then lost; other clients never notice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allpeers_model::api::frame::API_MAX_FRAME;
use allpeers_model::api::message::parse_request;
use allpeers_model::api::methods::{ClientsChanged, topics};
use allpeers_model::api::{ErrorCode, FrameDecoder, FrameError, Response, RpcError, encode_frame};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc, watch};

use super::dispatch::{self, Session};
use super::state::Daemon;

/// Frames waiting to be written to one client. When full, responses wait (backpressure on
/// that client's own requests) and events are dropped and counted.
const OUTBOX: usize = 256;
/// Requests of one client in progress at once.
const CONCURRENT_REQUESTS: usize = 32;
const READ_CHUNK: usize = 64 * 1024;

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
    let (mut reader, mut writer) = stream.into_split();
    let (outbox, mut outbox_rx) = mpsc::channel::<Vec<u8>>(OUTBOX);
    let write_task = tokio::spawn(async move {
        while let Some(payload) = outbox_rx.recv().await {
            if writer.write_all(&encode_frame(&payload)).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });

    let session = Arc::new(Session::new());
    let (subscriptions_tx, subscriptions_rx) = watch::channel(BTreeSet::<String>::new());
    let events_task = tokio::spawn(forward_events(
        daemon.clone(),
        subscriptions_rx,
        outbox.clone(),
    ));
    let permits = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    let mut decoder = FrameDecoder::new(API_MAX_FRAME);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut said_hello = false;

    'read: loop {
        let read = tokio::select! {
            _ = daemon.shutdown.cancelled() => break 'read,
            read = reader.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) => {
                if let Err(e @ FrameError::Truncated { .. }) = decoder.finish() {
                    allpeers_log::marrow!(client = session.client_name(), "{e}; closing");
                    send(
                        &outbox,
                        &Response::err(
                            Value::Null,
                            RpcError::new(ErrorCode::TruncatedFrame, e.to_string()),
                        ),
                    )
                    .await;
                }
                break;
            }
            Ok(n) => n,
            Err(e) => {
                allpeers_log::bone!(error = %e, "client read failed");
                break;
            }
        };
        decoder.push(&buf[..n]);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    allpeers_log::marrow!(client = session.client_name(), "{e}; closing");
                    send(
                        &outbox,
                        &Response::err(
                            Value::Null,
                            RpcError::new(ErrorCode::FrameTooLarge, e.to_string()),
                        ),
                    )
                    .await;
                    break 'read;
                }
            };
            let request = match parse_request(&frame) {
                Ok(request) => request,
                Err(response) => {
                    allpeers_log::bone!(error = ?response.error, "bad request");
                    send(&outbox, &response).await;
                    continue;
                }
            };
            // `hello` and subscription changes run in order, so a request pipelined right
            // behind them sees their effect; everything else runs concurrently.
            if dispatch::is_ordered(&request.method) {
                let response =
                    dispatch::handle(&daemon, &session, &subscriptions_tx, request).await;
                send(&outbox, &response).await;
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
                break 'read;
            };
            let (daemon, session, outbox, subscriptions_tx) = (
                daemon.clone(),
                session.clone(),
                outbox.clone(),
                subscriptions_tx.clone(),
            );
            tokio::spawn(async move {
                let response =
                    dispatch::handle(&daemon, &session, &subscriptions_tx, request).await;
                send(&outbox, &response).await;
                drop(permit);
            });
        }
    }

    events_task.abort();
    drop(outbox);
    let _ = write_task.await;
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

async fn send(outbox: &mpsc::Sender<Vec<u8>>, response: &Response) {
    let payload = serde_json::to_vec(response).expect("responses serialise");
    let _ = outbox.send(payload).await;
}

/// Forwards events on the client's subscribed topics. A client too slow to take them loses
/// events, never stalls the daemon, and is told how many it lost.
async fn forward_events(
    daemon: Arc<Daemon>,
    subscriptions: watch::Receiver<BTreeSet<String>>,
    outbox: mpsc::Sender<Vec<u8>>,
) {
    let mut events = daemon.subscribe_events();
    let dropped = AtomicU64::new(0);
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                dropped.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if !subscriptions.borrow().contains(&event.topic) {
            continue;
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let notice = allpeers_model::api::Event {
                topic: topics::EVENTS_DROPPED.into(),
                data: serde_json::json!({"dropped": lost}),
            };
            if outbox
                .try_send(notice.to_notification().to_string().into_bytes())
                .is_err()
            {
                dropped.fetch_add(lost, Ordering::Relaxed);
            }
        }
        let payload = event.to_notification().to_string().into_bytes();
        if outbox.try_send(payload).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
