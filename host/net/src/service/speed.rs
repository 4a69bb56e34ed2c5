//! The speed-test service (`allpeers/speed/1`): measures upload and download throughput
//! between two peers over a raw service stream.
//!
//! The client sends a request frame (bytes to upload, bytes to download), then the upload
//! bytes; the server reads them all, then sends the download bytes and finishes.

use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use serde::{Deserialize, Serialize};

use super::{Namespace, ServiceFn, decode, encode};
use crate::endpoint::Endpoint;
use crate::error::NetError;

/// Largest test, each way.
pub const MAX_TEST_BYTES: u64 = 1 << 30;

pub fn namespace() -> Namespace {
    Namespace::allpeers("speed", 1).expect("valid")
}

#[derive(Debug, Serialize, Deserialize)]
struct SpeedRequest {
    upload: u64,
    download: u64,
}

/// What a speed test measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedResult {
    pub upload_bytes: u64,
    pub download_bytes: u64,
    /// Bytes per second, client to server (includes one round trip).
    pub upload_rate: f64,
    /// Bytes per second, server to client.
    pub download_rate: f64,
    pub elapsed: Duration,
}

const CHUNK: usize = 256 * 1024;

/// The server side; register it under [`namespace`].
pub fn service() -> ServiceFn {
    ServiceFn::new().on_stream(|ctx, mut send, mut recv| async move {
        let req = match recv.read_frame(64).await {
            Ok(Some(frame)) => match decode::<SpeedRequest>(&frame) {
                Ok(r) if r.upload <= MAX_TEST_BYTES && r.download <= MAX_TEST_BYTES => r,
                _ => {
                    tracing::warn!(peer = ?ctx.peer, "speed test: bad request");
                    return;
                }
            },
            _ => return,
        };
        let mut left = req.upload;
        let mut buf = vec![0u8; CHUNK];
        while left > 0 {
            match recv.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
        let data = vec![0x5au8; CHUNK];
        let mut left = req.download;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            if send.write_all(&data[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = send.finish().await;
    })
}

/// Runs a speed test against `peer`.
pub async fn measure(
    endpoint: &Endpoint,
    peer: PeerId,
    upload: u64,
    download: u64,
) -> Result<SpeedResult, NetError> {
    let upload = upload.min(MAX_TEST_BYTES);
    let download = download.min(MAX_TEST_BYTES);
    endpoint
        .retry_when_connection_lost(peer, "speed test", || {
            measure_once(endpoint, peer, upload, download)
        })
        .await
}

async fn measure_once(
    endpoint: &Endpoint,
    peer: PeerId,
    upload: u64,
    download: u64,
) -> Result<SpeedResult, NetError> {
    let (mut send, mut recv) = endpoint.open_stream(peer, &namespace()).await?;
    let start = Instant::now();
    send.write_frame(&encode(&SpeedRequest { upload, download })?, 64)
        .await?;
    let data = vec![0xa5u8; CHUNK];
    let mut left = upload;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        send.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    loop {
        let n = recv.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if first.is_none() {
            first = Some(Instant::now());
        }
        got += n as u64;
    }
    let end = Instant::now();
    if got != download {
        return Err(NetError::Decode(format!(
            "speed test: {got} of {download} bytes came back"
        )));
    }
    let first = first.unwrap_or(end);
    let up_secs = first.duration_since(start).as_secs_f64().max(1e-9);
    let down_secs = end.duration_since(first).as_secs_f64().max(1e-9);
    Ok(SpeedResult {
        upload_bytes: upload,
        download_bytes: download,
        upload_rate: upload as f64 / up_secs,
        download_rate: download as f64 / down_secs,
        elapsed: end - start,
    })
}
