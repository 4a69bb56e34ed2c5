//! Opening a peer connection, plain or encrypted ([`super::mse`]) as the engine's [`Encryption`] setting says: we
//! dial (`prefer` tries MSE first and dials again in plain if the peer does not speak it, unless it never answered
//! at all: a dead peer costs one handshake timeout, not two), or we accept (a plain
//! handshake starts with `\x13BitTorrent protocol`, anything else is taken for an MSE key). Either way the result
//! is a [`Connection`] whose reads and writes go through the negotiated cipher, and the peer's BitTorrent handshake.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::mse::{self, Cipher, Encryption, MseError, Secrets, Step};
use super::wire::{self, HANDSHAKE_LEN, PeerHandshake, WireError};

/// A peer must connect and complete the handshake (MSE and BitTorrent) within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How a plain handshake starts: the protocol name's length, then the name.
const PLAIN_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";
/// Bytes read at a time during the MSE handshake.
const HANDSHAKE_READ: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("no answer to the handshake")]
    Unanswered,
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("encrypted handshake: {0}")]
    Mse(#[from] MseError),
    #[error("the peer is for another torrent")]
    WrongTorrent,
    #[error("a plain BitTorrent handshake, and encryption is required")]
    PlainRefused,
    #[error("an encrypted handshake (or garbage), and encryption is off")]
    EncryptedRefused,
}

/// The reading half of a connection: bytes come out decrypted.
#[derive(Debug)]
pub struct ConnectionReader {
    stream: OwnedReadHalf,
    cipher: Cipher,
    /// Payload that came with the handshake, already decrypted: handed out before the socket is read.
    received: BytesMut,
}

impl ConnectionReader {
    /// Appends what the peer sent next to `buf` (decrypted); 0 at the end of the stream.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        if !self.received.is_empty() {
            let n = self.received.len();
            buf.extend_from_slice(&self.received.split());
            return Ok(n);
        }
        let start = buf.len();
        let n = self.stream.read_buf(buf).await?;
        self.cipher.apply(&mut buf[start..]);
        Ok(n)
    }

    async fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ConnectError> {
        let mut buf = BytesMut::with_capacity(out.len());
        while buf.len() < out.len() {
            buf.reserve(out.len() - buf.len());
            if self.read_buf(&mut buf).await? == 0 {
                return Err(ConnectError::Closed);
            }
        }
        out.copy_from_slice(&buf[..out.len()]);
        // What came past the wanted bytes is kept for the next read.
        let mut rest = buf.split_off(out.len());
        rest.extend_from_slice(&self.received);
        self.received = rest;
        Ok(())
    }
}

/// The writing half of a connection: bytes go out encrypted.
#[derive(Debug)]
pub struct ConnectionWriter {
    stream: OwnedWriteHalf,
    cipher: Cipher,
}

impl ConnectionWriter {
    /// Sends `bytes`, encrypting them in place first: afterwards they are what went on the wire.
    pub async fn write_all(&mut self, bytes: &mut [u8]) -> std::io::Result<()> {
        self.cipher.apply(bytes);
        self.stream.write_all(bytes).await
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }
}

/// An open peer connection, after the MSE handshake if there was one.
#[derive(Debug)]
pub struct Connection {
    pub reader: ConnectionReader,
    pub writer: ConnectionWriter,
    encrypted: bool,
}

impl Connection {
    fn new(
        reader: OwnedReadHalf,
        writer: OwnedWriteHalf,
        ciphers: (Cipher, Cipher),
        received: &[u8],
        encrypted: bool,
    ) -> Self {
        Self {
            reader: ConnectionReader {
                stream: reader,
                cipher: ciphers.0,
                received: BytesMut::from(received),
            },
            writer: ConnectionWriter {
                stream: writer,
                cipher: ciphers.1,
            },
            encrypted,
        }
    }

    /// Whether the payload travels RC4-encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    pub fn into_split(self) -> (ConnectionReader, ConnectionWriter) {
        (self.reader, self.writer)
    }

    /// Sends our BitTorrent handshake.
    pub async fn send_handshake(
        &mut self,
        info_hash: [u8; 20],
        peer_id: [u8; 20],
    ) -> std::io::Result<()> {
        self.writer
            .write_all(&mut wire::encode_handshake(info_hash, peer_id))
            .await
    }

    async fn read_handshake(&mut self) -> Result<PeerHandshake, ConnectError> {
        let mut bytes = [0u8; HANDSHAKE_LEN];
        self.reader.read_exact(&mut bytes).await?;
        Ok(wire::decode_handshake(&bytes)?)
    }
}

fn plain_ciphers() -> (Cipher, Cipher) {
    (Cipher::plaintext(), Cipher::plaintext())
}

async fn tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let _ = stream.set_nodelay(true);
    Ok(stream.into_split())
}

/// Dials `addr` for the torrent `info_hash`: the connection and the peer's handshake (for that torrent).
pub async fn dial(
    addr: SocketAddr,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    encryption: Encryption,
) -> Result<(Connection, PeerHandshake), ConnectError> {
    dial_within(addr, info_hash, peer_id, encryption, HANDSHAKE_TIMEOUT).await
}

async fn dial_within(
    addr: SocketAddr,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    encryption: Encryption,
    timeout: Duration,
) -> Result<(Connection, PeerHandshake), ConnectError> {
    let (reader, writer) = tcp(addr, timeout).await?;
    let result = match encryption {
        Encryption::Off => dial_plain(reader, writer, info_hash, peer_id, timeout).await,
        Encryption::Prefer | Encryption::Require => {
            dial_encrypted(reader, writer, info_hash, peer_id, encryption, timeout).await
        }
    };
    match result {
        // A peer that does not speak MSE drops the connection (or answers nonsense, or stalls after answering):
        // dial again in plain. One that never answered is not there, plain or not ([`ConnectError::Unanswered`]).
        Err(
            ConnectError::Io(_)
            | ConnectError::Closed
            | ConnectError::Timeout
            | ConnectError::Mse(_),
        ) if encryption == Encryption::Prefer => {
            let (reader, writer) = tcp(addr, timeout).await?;
            dial_plain(reader, writer, info_hash, peer_id, timeout).await
        }
        result => result,
    }
}

async fn dial_plain(
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    timeout: Duration,
) -> Result<(Connection, PeerHandshake), ConnectError> {
    let mut connection = Connection::new(reader, writer, plain_ciphers(), &[], false);
    tokio::time::timeout(timeout, async {
        connection.send_handshake(info_hash, peer_id).await?;
        let handshake = connection.read_handshake().await?;
        if handshake.info_hash != info_hash {
            return Err(ConnectError::WrongTorrent);
        }
        Ok(handshake)
    })
    .await
    .map_err(|_| ConnectError::Timeout)?
    .map(|handshake| (connection, handshake))
}

async fn dial_encrypted(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    encryption: Encryption,
    timeout: Duration,
) -> Result<(Connection, PeerHandshake), ConnectError> {
    let mut answered = false;
    let result = tokio::time::timeout(timeout, async {
        let ours = wire::encode_handshake(info_hash, peer_id);
        let (handshake, first) =
            mse::Handshake::initiator(info_hash, ours.to_vec(), encryption, Secrets::random())?;
        let established = drive(
            &mut reader,
            &mut writer,
            handshake,
            first,
            &[],
            &mut answered,
        )
        .await?;
        after_mse(reader, writer, established, info_hash).await
    })
    .await;
    match result {
        Ok(result) => result,
        Err(_) if !answered => Err(ConnectError::Unanswered),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Answers a connection a peer opened: the connection and the peer's handshake. An encrypted one names its
/// torrent in the MSE handshake, found among `info_hashes` (asked once the peer's first bytes came).
pub async fn accept(
    stream: TcpStream,
    encryption: Encryption,
    info_hashes: impl FnOnce() -> Vec<[u8; 20]>,
) -> Result<(Connection, PeerHandshake), ConnectError> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut first = [0u8; PLAIN_PREFIX.len()];
        reader.read_exact(&mut first).await?;
        if first == *PLAIN_PREFIX {
            if encryption == Encryption::Require {
                return Err(ConnectError::PlainRefused);
            }
            let mut connection = Connection::new(reader, writer, plain_ciphers(), &first, false);
            let handshake = connection.read_handshake().await?;
            return Ok((connection, handshake));
        }
        if encryption == Encryption::Off {
            return Err(ConnectError::EncryptedRefused);
        }
        let handshake = mse::Handshake::responder(info_hashes(), encryption, Secrets::random())?;
        let established = drive(
            &mut reader,
            &mut writer,
            handshake,
            Vec::new(),
            &first,
            &mut true,
        )
        .await?;
        let skey = established.info_hash;
        after_mse(reader, writer, established, skey).await
    })
    .await
    .map_err(|_| ConnectError::Timeout)?
}

/// After an MSE handshake, either side: the connection through the negotiated ciphers, and the peer's BitTorrent
/// handshake, which must name `info_hash`.
async fn after_mse(
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    established: mse::Established,
    info_hash: [u8; 20],
) -> Result<(Connection, PeerHandshake), ConnectError> {
    let encrypted = established.reader.is_rc4();
    let mut connection = Connection::new(
        reader,
        writer,
        (established.reader, established.writer),
        &established.received,
        encrypted,
    );
    let handshake = connection.read_handshake().await?;
    if handshake.info_hash != info_hash {
        return Err(ConnectError::WrongTorrent);
    }
    Ok((connection, handshake))
}

/// Runs an MSE handshake over the socket: sends `first`, feeds `already` (bytes read before), then what comes.
/// `answered` is set once the peer sent anything.
async fn drive(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    mut handshake: mse::Handshake,
    first: Vec<u8>,
    already: &[u8],
    answered: &mut bool,
) -> Result<mse::Established, ConnectError> {
    if !first.is_empty() {
        writer.write_all(&first).await?;
    }
    let mut chunk = vec![0u8; HANDSHAKE_READ];
    let mut input = already.len();
    chunk[..input].copy_from_slice(already);
    loop {
        if input > 0 {
            match handshake.feed(&chunk[..input])? {
                Step::Continue(send) => {
                    if !send.is_empty() {
                        writer.write_all(&send).await?;
                    }
                }
                Step::Done(send, established) => {
                    writer.write_all(&send).await?;
                    return Ok(established);
                }
            }
        }
        input = reader.read(&mut chunk).await?;
        if input == 0 {
            return Err(ConnectError::Closed);
        }
        *answered = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts (the kernel completes the TCP handshake) and never says a word: `prefer` gives up
    /// after one handshake timeout, without a plain second dial.
    #[tokio::test]
    async fn prefer_does_not_redial_plain_a_peer_that_never_answered() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let timeout = Duration::from_millis(300);
        let error = dial_within(addr, [1; 20], [2; 20], Encryption::Prefer, timeout)
            .await
            .expect_err("nobody answers");
        assert!(matches!(error, ConnectError::Unanswered), "{error}");
        // Every connection the dial opened waits in the listener's backlog.
        silent.set_nonblocking(true).unwrap();
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept() {
            connections.push(stream);
        }
        assert_eq!(connections.len(), 1, "dialed again in plain");
    }

    /// A peer that closes the connection on an MSE handshake (it speaks plain only) is still dialed again in plain.
    #[tokio::test]
    async fn prefer_redials_plain_a_peer_that_hung_up_on_mse() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let info_hash = [1; 20];
        let peer = tokio::spawn(async move {
            // The first connection carries an MSE key: hang up.
            drop(listener.accept().await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let (mut connection, handshake) =
                accept(stream, Encryption::Off, Vec::new).await.unwrap();
            connection
                .send_handshake(handshake.info_hash, [3; 20])
                .await
                .unwrap();
            connection
        });
        let (connection, handshake) = dial_within(
            addr,
            info_hash,
            [2; 20],
            Encryption::Prefer,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(!connection.is_encrypted());
        assert_eq!(handshake.peer_id, [3; 20]);
        drop(peer.await.unwrap());
    }
}
