//! A local API client over the daemon's Unix socket, used by the CLI, the demo and tests.
//! Requests may be issued concurrently; a reader task routes each response to its caller
//! by id and queues events.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allpeers_model::api::methods::{self as m, HelloParams, HelloResult};
use allpeers_model::api::{
    API_VERSION, Event, Incoming, Request, Response, RpcError, encode_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::frames::FrameReader;

/// Largest frame accepted from the daemon.
const MAX_FRAME: usize = 256 * 1024 * 1024;
const EVENT_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("connection to the daemon failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon closed the connection")]
    Closed,
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

pub struct ApiClient {
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: Mutex<mpsc::Receiver<Event>>,
    hello: HelloResult,
}

impl ApiClient {
    /// Connects and says hello.
    pub async fn connect(socket: &Path, client_name: &str) -> Result<ApiClient, ClientError> {
        Self::connect_as(socket, client_name, None).await
    }

    /// Connects as a web app's session, bound to `origin` (what the extension opens for a page).
    pub async fn connect_app(
        socket: &Path,
        client_name: &str,
        origin: &str,
    ) -> Result<ApiClient, ClientError> {
        Self::connect_as(socket, client_name, Some(origin.into())).await
    }

    async fn connect_as(
        socket: &Path,
        client_name: &str,
        origin: Option<String>,
    ) -> Result<ApiClient, ClientError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        Self::over_as(stream, client_name, origin).await
    }

    /// Says hello over a connected stream.
    pub async fn over(stream: UnixStream, client_name: &str) -> Result<ApiClient, ClientError> {
        Self::over_as(stream, client_name, None).await
    }

    async fn over_as(
        stream: UnixStream,
        client_name: &str,
        origin: Option<String>,
    ) -> Result<ApiClient, ClientError> {
        let (reader, writer) = stream.into_split();
        let pending: Pending = Arc::default();
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let routes = pending.clone();
        tokio::spawn(async move {
            let mut frames = FrameReader::new(reader, MAX_FRAME);
            while let Ok(Some(frame)) = frames.next_frame().await {
                match Incoming::parse(&frame) {
                    Ok(Incoming::Response(response)) => {
                        let waiter = response
                            .id
                            .as_u64()
                            .and_then(|id| routes.lock().expect("pending").remove(&id));
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(response);
                        }
                    }
                    Ok(Incoming::Notification { method, params }) if method == "event" => {
                        if let Ok(event) = serde_json::from_value::<Event>(params) {
                            let _ = events_tx.try_send(event);
                        }
                    }
                    Ok(Incoming::Notification { .. }) | Err(_) => {}
                }
            }
            // Wake every caller still waiting: their replies will never come.
            routes.lock().expect("pending").clear();
        });
        let mut client = ApiClient {
            writer: Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            events: Mutex::new(events_rx),
            hello: HelloResult {
                server: String::new(),
                server_version: String::new(),
                api_version: 0,
                methods: vec![],
                topics: vec![],
                peer_id: None,
            },
        };
        client.hello = client
            .call_typed(
                m::HELLO,
                HelloParams {
                    client: client_name.into(),
                    api_version: API_VERSION,
                    origin,
                },
            )
            .await?;
        Ok(client)
    }

    pub fn hello(&self) -> &HelloResult {
        &self.hello
    }

    /// Sends a request and waits for its response.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, tx);
        let payload =
            serde_json::to_vec(&Request::new(id, method, params)).expect("requests serialise");
        {
            let mut writer = self.writer.lock().await;
            if let Err(e) = writer.write_all(&encode_frame(&payload)).await {
                self.pending.lock().expect("pending").remove(&id);
                return Err(e.into());
            }
        }
        let response = rx.await.map_err(|_| ClientError::Closed)?;
        match (response.result, response.error) {
            (_, Some(error)) => Err(ClientError::Rpc(error)),
            (Some(result), None) => Ok(result),
            (None, None) => Err(ClientError::Protocol(
                "response without result or error".into(),
            )),
        }
    }

    pub async fn call_typed<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
    ) -> Result<R, ClientError> {
        let value = self
            .call(
                method,
                serde_json::to_value(params).expect("params serialise"),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(format!("{method}: {e}")))
    }

    /// The next pushed event on a subscribed topic; `None` once the connection is gone.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await
    }
}
