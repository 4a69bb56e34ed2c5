//! One TCP connection to a peer: the handshake, then a reader that cuts frames and hands them to the torrent's
//! session in batches, and a writer that sends what the session asks (reading uploaded blocks from storage itself,
//! so the session never waits on the disk).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::connection::{self, ConnectError, Connection, ConnectionReader, ConnectionWriter};
use super::mse::Encryption;
use super::wire::{self, OutMessage, PeerHandshake, PeerMessage, WireError};
use crate::cache::storage::Storage;
use crate::swarm::PeerKey;
use crate::swarm::geometry::Block;
use crate::throttle::Throttles;

/// A peer that sends nothing for this long (not even a keep-alive, due every 2 minutes) is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Bytes read from the socket at a time: a few blocks, so one read yields a batch of messages.
const READ_CHUNK: usize = 256 * 1024;
/// Messages read from a peer and not yet taken by the session: a slow session stops reading the socket.
pub const PEER_EVENT_QUEUE: usize = 64;
/// Read buffers a connection keeps to read into in turn. A received block stays a slice of the buffer it was read
/// into until the session has copied it into its piece, which it does after the reader has read again: with one
/// buffer nearly every read found it still held and allocated a new one, and the allocator handed the freed ones'
/// pages back to the kernel, so each read faulted in and zeroed 256 KiB afresh (page faults, zeroing and
/// compaction were ~10% of a download's CPU). With a few, a read finds one the session has let go of and reuses it.
const READ_BUFFERS: usize = 4;
/// Each read buffer's size: room for two reads, so that the partial frame a read ends with and the next read fit in
/// the same buffer (or in a spare one).
const READ_BUFFER_LEN: usize = 2 * READ_CHUNK;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("idle for {IDLE_TIMEOUT:?}")]
    Idle,
}

/// What the session tells a connection to do.
#[derive(Debug)]
pub enum PeerCommand {
    Send(OutMessage),
    /// Read this block from storage and send it.
    Upload(Block),
    Close,
}

/// What a connection tells the session.
#[derive(Debug)]
pub enum PeerEvent {
    Ready {
        key: PeerKey,
        addr: SocketAddr,
        handshake: PeerHandshake,
        /// Whether the connection is RC4-encrypted (MSE).
        encrypted: bool,
        commands: mpsc::UnboundedSender<PeerCommand>,
    },
    Messages {
        key: PeerKey,
        messages: Vec<PeerMessage>,
    },
    Uploaded {
        key: PeerKey,
        bytes: u64,
    },
    Closed {
        key: PeerKey,
        error: Option<PeerError>,
    },
}

/// What every connection of one torrent shares.
#[derive(Debug, Clone)]
pub struct PeerContext {
    pub info_hash: [u8; 20],
    pub our_id: [u8; 20],
    pub storage: Arc<Storage>,
    pub throttles: Throttles,
    pub events: mpsc::Sender<PeerEvent>,
    /// Whether we dial encrypted.
    pub encryption: Encryption,
}

impl PeerContext {
    async fn closed(&self, key: PeerKey, error: PeerError) {
        let _ = self
            .events
            .send(PeerEvent::Closed {
                key,
                error: Some(error),
            })
            .await;
    }
}

/// Dials `addr` and runs the connection until it ends.
pub async fn connect(key: PeerKey, addr: SocketAddr, cx: PeerContext) {
    match connection::dial(addr, cx.info_hash, cx.our_id, cx.encryption).await {
        Ok((connection, handshake)) => run(key, addr, connection, handshake, cx).await,
        Err(error) => cx.closed(key, error.into()).await,
    }
}

/// Answers an incoming connection whose handshake was read (and routed to us by info-hash).
pub async fn accept(
    key: PeerKey,
    addr: SocketAddr,
    mut connection: Connection,
    handshake: PeerHandshake,
    cx: PeerContext,
) {
    if let Err(error) = connection.send_handshake(cx.info_hash, cx.our_id).await {
        return cx.closed(key, error.into()).await;
    }
    run(key, addr, connection, handshake, cx).await;
}

async fn run(
    key: PeerKey,
    addr: SocketAddr,
    connection: Connection,
    handshake: PeerHandshake,
    cx: PeerContext,
) {
    let encrypted = connection.is_encrypted();
    let (reader, writer) = connection.into_split();
    let (commands, queue) = mpsc::unbounded_channel();
    if cx
        .events
        .send(PeerEvent::Ready {
            key,
            addr,
            handshake,
            encrypted,
            commands,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut writing = tokio::spawn(write_loop(
        key,
        writer,
        queue,
        cx.storage.clone(),
        cx.throttles.clone(),
        cx.events.clone(),
    ));
    // The connection ends when either side does: the peer closing, or the session closing it.
    let error = tokio::select! {
        read = read_loop(key, reader, &cx.throttles, &cx.events) => read.err(),
        _ = &mut writing => None,
    };
    writing.abort();
    let _ = cx.events.send(PeerEvent::Closed { key, error }).await;
}

async fn read_loop(
    key: PeerKey,
    mut reader: ConnectionReader,
    throttles: &Throttles,
    events: &mpsc::Sender<PeerEvent>,
) -> Result<(), PeerError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_LEN);
    let mut spare: Vec<BytesMut> = Vec::with_capacity(READ_BUFFERS);
    loop {
        if !buf.try_reclaim(READ_CHUNK) {
            buf = next_read_buffer(&mut spare, buf);
        }
        let read = tokio::time::timeout(IDLE_TIMEOUT, reader.read_buf(&mut buf))
            .await
            .map_err(|_| PeerError::Idle)??;
        if read == 0 {
            return Ok(());
        }
        // Waiting here (not reading) is what slows the sender: TCP's window closes.
        throttles.received(read).await;
        let mut messages = Vec::new();
        while let Some(message) = wire::decode_frame(&mut buf)? {
            messages.push(message);
        }
        if !messages.is_empty()
            && events
                .send(PeerEvent::Messages { key, messages })
                .await
                .is_err()
        {
            return Ok(());
        }
    }
}

/// A buffer with room for a read that starts with `current`'s unread bytes (a partial frame): a spare one whose
/// frames the session has all let go of, or a new one. `current` becomes a spare (its frames may still be held).
fn next_read_buffer(spare: &mut Vec<BytesMut>, mut current: BytesMut) -> BytesMut {
    let free = spare
        .iter_mut()
        .position(|buffer| buffer.try_reclaim(READ_CHUNK + current.len()));
    let mut next = match free {
        Some(index) => spare.swap_remove(index),
        None => BytesMut::with_capacity(READ_BUFFER_LEN.max(READ_CHUNK + current.len())),
    };
    next.extend_from_slice(&current);
    current.clear();
    if spare.len() < READ_BUFFERS {
        spare.push(current);
    }
    next
}

async fn write_loop(
    key: PeerKey,
    mut writer: ConnectionWriter,
    mut queue: mpsc::UnboundedReceiver<PeerCommand>,
    storage: Arc<Storage>,
    throttles: Throttles,
    events: mpsc::Sender<PeerEvent>,
) {
    let mut out = BytesMut::new();
    while let Some(first) = queue.recv().await {
        let mut uploaded = 0u64;
        let mut next = Some(first);
        // Everything queued goes out in one write.
        while let Some(command) = next {
            match command {
                PeerCommand::Send(message) => wire::encode(&message, &mut out),
                PeerCommand::Upload(block) => match storage.read_block(block) {
                    Ok(data) => {
                        uploaded += data.len() as u64;
                        wire::encode(&OutMessage::Piece { block, data }, &mut out);
                    }
                    Err(error) => {
                        allpeers_log::marrow!(%error, "transfer: cannot read a block to upload");
                        let _ = writer.shutdown().await;
                        return;
                    }
                },
                PeerCommand::Close => {
                    let _ = writer.write_all(&mut out).await;
                    let _ = writer.shutdown().await;
                    return;
                }
            }
            next = if out.len() < READ_CHUNK {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        throttles.sending(out.len()).await;
        if writer.write_all(&mut out).await.is_err() {
            return;
        }
        out.clear();
        if uploaded > 0
            && events
                .send(PeerEvent::Uploaded {
                    key,
                    bytes: uploaded,
                })
                .await
                .is_err()
        {
            return;
        }
    }
}
