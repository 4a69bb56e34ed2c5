//! A magnet link's metadata (the torrent's info dictionary) fetched from peers: BEP 9's `ut_metadata` over the
//! extension protocol (BEP 10). Peers come from the link's `x.pe` addresses, its trackers and the DHT (BEP 5). Each peer is asked
//! for the whole dictionary on a connection of its own, several peers at once; the first dictionary whose SHA-1 is
//! the link's info-hash wins, so a lying peer only wastes its own attempt. The result is a `.torrent` file that the
//! engine then adds like any other.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::connection::{self, ConnectError, ConnectionReader};
use super::dht::{self, PeerFinder};
use super::magnet::MagnetLink;
use super::metainfo::{MAX_TORRENT_LEN, MetainfoError, Torrent};
use super::mse::Encryption;
use super::tracker::{self, AnnounceEvent, AnnounceRequest, MAX_TRACKERS_ANNOUNCED};
use super::wire::{self, METADATA_PIECE_LEN, MetadataMessage, OutMessage, PeerMessage, WireError};
use crate::swarm::assembler::sha1_of;
use crate::web::WebClient;

/// One peer has this long to send the whole dictionary (a few hundred KiB at most).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(20);
/// Peers asked at once.
pub const PEERS_AT_ONCE: usize = 8;
/// Addresses kept to try: trackers may list thousands.
pub const MAX_CANDIDATES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(
        "no peer to ask: the link names no peer address, and no tracker or DHT node listed one"
    )]
    NoPeers,
    #[error("no peer sent the metadata within {waited:?} ({tried} asked; the last said: {last})")]
    Timeout {
        waited: Duration,
        tried: usize,
        last: String,
    },
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
}

/// Why one peer did not give us the dictionary.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the peer does not speak the extension protocol")]
    NoExtensions,
    #[error("the peer does not offer the metadata (no ut_metadata or metadata_size)")]
    NoMetadata,
    #[error("the peer refused piece {0} of the metadata")]
    Rejected(u32),
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer took over {PEER_TIMEOUT:?}")]
    Slow,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssemblyError {
    #[error("a metadata size of {0} bytes (1 to {MAX_TORRENT_LEN} are accepted)")]
    Size(u32),
    #[error("a piece for a dictionary of {got} bytes, announced as {expected}")]
    TotalChanged { expected: u32, got: u32 },
    #[error("piece {piece} of {pieces}, or of the wrong length ({len} bytes)")]
    BadPiece { piece: u32, pieces: u32, len: usize },
    #[error("the dictionary's SHA-1 is not the link's info-hash")]
    WrongHash,
}

/// One peer's pieces of the dictionary, checked as they come and hashed once whole. I/O-free.
#[derive(Debug)]
pub struct Assembly {
    info_hash: [u8; 20],
    size: u32,
    pieces: Vec<Option<Bytes>>,
    missing: usize,
}

impl Assembly {
    pub fn new(info_hash: [u8; 20], size: u32) -> Result<Self, AssemblyError> {
        if size == 0 || size as usize > MAX_TORRENT_LEN {
            return Err(AssemblyError::Size(size));
        }
        let count = (size as usize).div_ceil(METADATA_PIECE_LEN);
        Ok(Self {
            info_hash,
            size,
            pieces: vec![None; count],
            missing: count,
        })
    }

    pub fn piece_count(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Takes one piece; the whole dictionary, verified, once the last one came.
    pub fn accept(
        &mut self,
        piece: u32,
        total_size: u32,
        data: Bytes,
    ) -> Result<Option<Bytes>, AssemblyError> {
        if total_size != self.size {
            return Err(AssemblyError::TotalChanged {
                expected: self.size,
                got: total_size,
            });
        }
        let start = piece as usize * METADATA_PIECE_LEN;
        let expected = (self.size as usize)
            .saturating_sub(start)
            .min(METADATA_PIECE_LEN);
        let Some(slot) = self.pieces.get_mut(piece as usize) else {
            return Err(self.bad(piece, data.len()));
        };
        if data.len() != expected {
            return Err(self.bad(piece, data.len()));
        }
        if slot.replace(data).is_none() {
            self.missing -= 1;
        }
        if self.missing > 0 {
            return Ok(None);
        }
        let parts: Vec<&[u8]> = self.pieces.iter().flatten().map(|p| p.as_ref()).collect();
        if sha1_of(&parts) != self.info_hash {
            return Err(AssemblyError::WrongHash);
        }
        Ok(Some(Bytes::from(parts.concat())))
    }

    fn bad(&self, piece: u32, len: usize) -> AssemblyError {
        AssemblyError::BadPiece {
            piece,
            pieces: self.piece_count(),
            len,
        }
    }
}

/// A `.torrent` file of a fetched info dictionary and the link's trackers.
pub fn torrent_file(info: &[u8], trackers: &[String]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(format!("{}:", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
    // Keys in sorted order, as bencode requires: announce, announce-list, info.
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        string(&mut out, b"announce");
        string(&mut out, first.as_bytes());
        string(&mut out, b"announce-list");
        out.push(b'l');
        for tracker in trackers {
            out.push(b'l');
            string(&mut out, tracker.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    string(&mut out, b"info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}

/// Who we are to the peers and trackers we ask.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub peer_id: [u8; 20],
    /// Our listening port, told to trackers.
    pub port: u16,
    pub timeout: Duration,
    pub use_trackers: bool,
    pub web: WebClient,
    /// Whether peers are dialed encrypted (MSE).
    pub encryption: Encryption,
    /// Where the info-hash is looked up besides the link's trackers (`None`: no DHT).
    pub dht: Option<Arc<dyn PeerFinder>>,
}

/// The `.torrent` file of `link`, from its peers and the peers its trackers and the DHT list.
pub async fn fetch(link: &MagnetLink, options: &FetchOptions) -> Result<Vec<u8>, MetadataError> {
    let started = tokio::time::Instant::now();
    let deadline = started + options.timeout;
    let (found, mut listed) = mpsc::channel::<Vec<SocketAddr>>(MAX_TRACKERS_ANNOUNCED);
    // Until every tracker and the DHT lookup are done (the channel closes), there may be peers to come.
    let mut listing = false;
    if let Some(finder) = options.dht.clone() {
        listing = true;
        let (found, info_hash) = (found.clone(), link.info_hash);
        tokio::spawn(async move {
            if let Err(error) = dht::find_peers(finder.as_ref(), info_hash, &found).await {
                allpeers_log::flesh!(%error, "transfer: a magnet's DHT lookup failed");
            }
        });
    }
    if options.use_trackers {
        for url in link.trackers.iter().take(MAX_TRACKERS_ANNOUNCED) {
            listing = true;
            let request = AnnounceRequest {
                url: url.clone(),
                info_hash: link.info_hash,
                peer_id: options.peer_id,
                port: options.port,
                uploaded: 0,
                downloaded: 0,
                // Unknown until the metadata comes; not zero, or the tracker would count us as a seeder.
                left: 1,
                event: Some(AnnounceEvent::Started),
            };
            let found = found.clone();
            let web = options.web.clone();
            tokio::spawn(async move {
                let peers = match tracker::announce(&request, &web).await {
                    Ok(answer) => answer.peers,
                    Err(error) => {
                        allpeers_log::flesh!(url = %request.url, %error, "transfer: a magnet's tracker failed");
                        Vec::new()
                    }
                };
                let _ = found.send(peers).await;
            });
        }
    }
    drop(found);

    let mut candidates: Vec<SocketAddr> = link.peers.clone();
    let mut seen: HashSet<SocketAddr> = candidates.iter().copied().collect();
    let mut attempts = JoinSet::new();
    let mut tried = 0;
    let mut last = String::from("nothing yet");
    loop {
        while attempts.len() < PEERS_AT_ONCE && !candidates.is_empty() {
            let addr = candidates.remove(0);
            tried += 1;
            let (info_hash, peer_id, encryption) =
                (link.info_hash, options.peer_id, options.encryption);
            attempts.spawn(async move {
                let result = tokio::time::timeout(
                    PEER_TIMEOUT,
                    from_peer(addr, info_hash, peer_id, encryption),
                )
                .await
                .unwrap_or(Err(AttemptError::Slow));
                (addr, result)
            });
        }
        if attempts.is_empty() && !listing {
            return Err(if tried == 0 {
                MetadataError::NoPeers
            } else {
                MetadataError::Timeout {
                    waited: started.elapsed(),
                    tried,
                    last,
                }
            });
        }
        tokio::select! {
            Some(done) = attempts.join_next() => match done {
                Ok((_, Ok(info))) => {
                    let file = torrent_file(&info, &link.trackers);
                    // Parsed here so a dictionary that hashes right but is not a usable torrent fails the fetch.
                    Torrent::from_bytes(&file)?;
                    return Ok(file);
                }
                Ok((addr, Err(error))) => {
                    allpeers_log::flesh!(%addr, %error, "transfer: a peer did not give the metadata");
                    last = format!("{addr}: {error}");
                }
                Err(join) => last = join.to_string(),
            },
            peers = listed.recv(), if listing => match peers {
                Some(peers) => {
                    for peer in peers {
                        if seen.len() < MAX_CANDIDATES && seen.insert(peer) {
                            candidates.push(peer);
                        }
                    }
                }
                None => listing = false,
            },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(MetadataError::Timeout { waited: options.timeout, tried, last });
            }
        }
    }
}

/// Asks one peer for the whole dictionary.
async fn from_peer(
    addr: SocketAddr,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    encryption: Encryption,
) -> Result<Bytes, AttemptError> {
    let (connection, handshake) = connection::dial(addr, info_hash, peer_id, encryption).await?;
    let (mut stream, mut writer) = connection.into_split();
    if !handshake.supports_extended {
        return Err(AttemptError::NoExtensions);
    }
    let mut out = BytesMut::new();
    wire::encode(
        &OutMessage::ExtendedHandshake {
            reqq: 250,
            port: None,
            metadata_size: None,
            pex: false,
        },
        &mut out,
    );
    writer.write_all(&mut out).await?;

    let mut buf = BytesMut::new();
    let (their_id, size) = loop {
        match next_message(&mut stream, &mut buf).await? {
            PeerMessage::ExtendedHandshake {
                ut_metadata: Some(id),
                metadata_size: Some(size),
                ..
            } => break (id, size),
            PeerMessage::ExtendedHandshake { .. } => return Err(AttemptError::NoMetadata),
            _ => {}
        }
    };
    let mut assembly = Assembly::new(info_hash, size)?;
    out.clear();
    for piece in 0..assembly.piece_count() {
        wire::encode(
            &OutMessage::Metadata {
                peer_id: their_id,
                message: MetadataMessage::Request(piece),
            },
            &mut out,
        );
    }
    writer.write_all(&mut out).await?;
    loop {
        match next_message(&mut stream, &mut buf).await? {
            PeerMessage::Metadata(MetadataMessage::Data {
                piece,
                total_size,
                data,
            }) => {
                if let Some(info) = assembly.accept(piece, total_size, data)? {
                    return Ok(info);
                }
            }
            PeerMessage::Metadata(MetadataMessage::Reject(piece)) => {
                return Err(AttemptError::Rejected(piece));
            }
            _ => {}
        }
    }
}

async fn next_message(
    stream: &mut ConnectionReader,
    buf: &mut BytesMut,
) -> Result<PeerMessage, AttemptError> {
    loop {
        if let Some(message) = wire::decode_frame(buf)? {
            return Ok(message);
        }
        buf.reserve(64 * 1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(AttemptError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dictionary(len: usize) -> (Vec<u8>, [u8; 20]) {
        let info: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let hash = sha1_of(&[&info]);
        (info, hash)
    }

    #[test]
    fn pieces_in_any_order_give_the_verified_dictionary() {
        let (info, hash) = dictionary(40_000);
        let mut assembly = Assembly::new(hash, 40_000).unwrap();
        assert_eq!(assembly.piece_count(), 3);
        let piece = |i: usize| {
            Bytes::copy_from_slice(
                &info[i * METADATA_PIECE_LEN..((i + 1) * METADATA_PIECE_LEN).min(info.len())],
            )
        };
        assert_eq!(assembly.accept(2, 40_000, piece(2)), Ok(None));
        assert_eq!(assembly.accept(0, 40_000, piece(0)), Ok(None));
        assert_eq!(assembly.accept(0, 40_000, piece(0)), Ok(None), "a repeat");
        assert_eq!(assembly.accept(1, 40_000, piece(1)).unwrap().unwrap(), info);
    }

    #[test]
    fn bad_pieces_and_sizes_are_refused() {
        let (info, hash) = dictionary(20_000);
        assert_eq!(Assembly::new(hash, 0).unwrap_err(), AssemblyError::Size(0));
        let huge = MAX_TORRENT_LEN as u32 + 1;
        assert_eq!(
            Assembly::new(hash, huge).unwrap_err(),
            AssemblyError::Size(huge)
        );
        let mut assembly = Assembly::new(hash, 20_000).unwrap();
        let first = Bytes::copy_from_slice(&info[..METADATA_PIECE_LEN]);
        assert!(matches!(
            assembly.accept(0, 20_001, first.clone()),
            Err(AssemblyError::TotalChanged { .. })
        ));
        assert!(matches!(
            assembly.accept(2, 20_000, first.clone()),
            Err(AssemblyError::BadPiece { piece: 2, .. })
        ));
        assert!(matches!(
            assembly.accept(1, 20_000, first.clone()),
            Err(AssemblyError::BadPiece { piece: 1, .. })
        ));
        assembly.accept(0, 20_000, first).unwrap();
        let mut forged = info[METADATA_PIECE_LEN..].to_vec();
        forged[0] ^= 1;
        assert_eq!(
            assembly.accept(1, 20_000, forged.into()),
            Err(AssemblyError::WrongHash)
        );
    }

    #[test]
    fn the_torrent_file_names_the_trackers_and_keeps_the_dictionary() {
        let info = b"d6:lengthi3e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let trackers = vec!["udp://127.0.0.1:1".to_string(), "http://t/a".to_string()];
        let file = torrent_file(info, &trackers);
        let torrent = Torrent::from_bytes(&file).unwrap();
        assert_eq!(torrent.trackers, trackers);
        assert_eq!(torrent.info_hash, sha1_of(&[info]));
        assert_eq!(torrent.info_bytes.as_ref(), info);
        let bare = Torrent::from_bytes(&torrent_file(info, &[])).unwrap();
        assert!(bare.trackers.is_empty());
    }

    #[tokio::test]
    async fn a_link_with_no_peer_and_no_tracker_fails_at_once() {
        let link = MagnetLink {
            info_hash: [1; 20],
            name: None,
            trackers: vec![],
            peers: vec![],
        };
        let options = FetchOptions {
            peer_id: [2; 20],
            port: 1,
            timeout: Duration::from_secs(30),
            use_trackers: true,
            web: WebClient::default(),
            encryption: Encryption::default(),
            dht: None,
        };
        assert!(matches!(
            fetch(&link, &options).await,
            Err(MetadataError::NoPeers)
        ));
    }
}
