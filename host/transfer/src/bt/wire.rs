//! The peer wire: the 68-byte handshake and length-prefixed messages. Frames are cut and bounded here; the
//! messages themselves are parsed and written with `librqbit-peer-protocol`. A piece's data stays a slice of the
//! received frame (no copy). Message ids librqbit does not know (the DHT port, the Fast extension) are passed up
//! as [`PeerMessage::Unknown`] so a peer that speaks them is not dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use librqbit_bencode::ByteBuf;
use librqbit_core::hash_id::Id20;
use librqbit_peer_protocol::extended::{ExtendedMessage, PeerExtendedMessageIds};
use librqbit_peer_protocol::{Handshake, Message, Piece, Request};

use crate::swarm::geometry::{Block, MAX_PIECES};

/// The largest frame accepted: the bitfield of the largest torrent we take (MAX_PIECES / 8 = 256 KiB) and any
/// block we request (16 KiB) fit; anything longer is a broken or hostile peer, dropped before buffering it.
pub const MAX_FRAME_LEN: usize = (MAX_PIECES / 8) as usize + 1024;
pub const HANDSHAKE_LEN: usize = 68;
/// Message ids librqbit parses (0..=8 and the extension protocol's 20).
const KNOWN_IDS: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, MSGID_EXTENDED];
const MSGID_EXTENDED: u8 = 20;
/// Extended message id 0 is the extension handshake (BEP 10).
const EXTENDED_HANDSHAKE_ID: u8 = 0;
/// The id we ask peers to use for `ut_metadata` messages to us (BEP 9); librqbit's choice, kept for its parser.
pub const OUR_UT_METADATA_ID: u8 = librqbit_peer_protocol::MY_EXTENDED_UT_METADATA;
/// The id we ask peers to use for `ut_pex` messages to us (BEP 11).
pub const OUR_UT_PEX_ID: u8 = librqbit_peer_protocol::MY_EXTENDED_UT_PEX;
/// Peers taken from one `ut_pex` message: BEP 11 allows 50 added per message; a little slack, then the rest is
/// ignored.
pub const MAX_PEX_ADDED: usize = 100;
/// The metadata travels in pieces of this size (BEP 9); only the last is shorter.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("not a BitTorrent handshake: {0}")]
    Handshake(String),
}

/// A message from a peer, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Bytes),
    Request(Block),
    Cancel(Block),
    Piece {
        block: Block,
        data: Bytes,
    },
    /// The extension protocol's handshake (BEP 10): what we use of it.
    ExtendedHandshake {
        reqq: Option<u32>,
        client: Option<String>,
        /// The id the peer wants its `ut_metadata` messages sent with; `None` if it does not speak BEP 9.
        ut_metadata: Option<u8>,
        /// The size of the info dictionary, from a peer that has it.
        metadata_size: Option<u32>,
        /// The id the peer wants its `ut_pex` messages sent with; `None` if it does not exchange peers.
        ut_pex: Option<u8>,
        /// The port the peer listens on (`p`): how others reach a peer that dialed us.
        listen_port: Option<u16>,
    },
    /// A `ut_metadata` message (BEP 9).
    Metadata(MetadataMessage),
    /// A `ut_pex` message (BEP 11): peers the sender is connected to. Its `dropped` lists are not used (a peer we
    /// know of is dialed until it fails, whatever another peer says).
    Pex {
        added: Vec<SocketAddr>,
    },
    /// Another extension message: not used yet.
    Extended(u8),
    Unknown(u8),
}

/// The peer's side of the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHandshake {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub supports_extended: bool,
}

pub fn encode_handshake(info_hash: [u8; 20], peer_id: [u8; 20]) -> [u8; HANDSHAKE_LEN] {
    let mut out = [0; HANDSHAKE_LEN];
    let written =
        Handshake::new(Id20::new(info_hash), Id20::new(peer_id)).serialize_unchecked_len(&mut out);
    debug_assert_eq!(written, HANDSHAKE_LEN);
    out
}

pub fn decode_handshake(bytes: &[u8; HANDSHAKE_LEN]) -> Result<PeerHandshake, WireError> {
    let (handshake, _) =
        Handshake::deserialize(bytes).map_err(|e| WireError::Handshake(e.to_string()))?;
    Ok(PeerHandshake {
        info_hash: handshake.info_hash.0,
        peer_id: handshake.peer_id.0,
        supports_extended: handshake.supports_extended(),
    })
}

/// Cuts the next whole message off the front of `buf`; `Ok(None)` until one is complete. Room for the rest of a
/// frame is the caller's to make when it reads again: reserving here, on a buffer whose earlier frames are still
/// held, would allocate a new buffer for every partial frame.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<PeerMessage>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLong(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let frame = buf.split_to(4 + len).freeze();
    if len == 0 {
        return Ok(Some(PeerMessage::KeepAlive));
    }
    let id = frame[4];
    if !KNOWN_IDS.contains(&id) {
        return Ok(Some(PeerMessage::Unknown(id)));
    }
    // Extension messages carry bencode after the extended id: checked before librqbit parses it.
    if id == MSGID_EXTENDED && frame.len() > 6 {
        super::bencode_guard::check(&frame[6..]).map_err(|e| WireError::Malformed(e.into()))?;
        if frame[5] == OUR_UT_METADATA_ID {
            return decode_metadata(frame.slice(6..)).map(|m| Some(PeerMessage::Metadata(m)));
        }
        if frame[5] == OUR_UT_PEX_ID {
            return decode_pex(&frame[6..]).map(|added| Some(PeerMessage::Pex { added }));
        }
    }
    let (message, _) =
        Message::deserialize(&frame, &[]).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(Some(match message {
        Message::KeepAlive => PeerMessage::KeepAlive,
        Message::Choke => PeerMessage::Choke,
        Message::Unchoke => PeerMessage::Unchoke,
        Message::Interested => PeerMessage::Interested,
        Message::NotInterested => PeerMessage::NotInterested,
        Message::Have(piece) => PeerMessage::Have(piece),
        Message::Bitfield(_) => PeerMessage::Bitfield(frame.slice(5..)),
        Message::Request(r) => PeerMessage::Request(Block {
            piece: r.index,
            offset: r.begin,
            len: r.length,
        }),
        Message::Cancel(r) => PeerMessage::Cancel(Block {
            piece: r.index,
            offset: r.begin,
            len: r.length,
        }),
        Message::Piece(piece) => {
            let data = frame.slice(13..);
            let block = Block {
                piece: piece.index,
                offset: piece.begin,
                len: data.len() as u32,
            };
            PeerMessage::Piece { block, data }
        }
        Message::Extended(ExtendedMessage::Handshake(handshake)) => {
            PeerMessage::ExtendedHandshake {
                reqq: handshake.reqq,
                ut_metadata: handshake.m.ut_metadata.filter(|id| *id != 0),
                metadata_size: handshake.metadata_size,
                ut_pex: handshake.m.ut_pex.filter(|id| *id != 0),
                listen_port: handshake.port().filter(|port| *port != 0),
                client: handshake
                    .v
                    .map(|v| String::from_utf8_lossy(v.as_ref()).into_owned()),
            }
        }
        Message::Extended(_) => PeerMessage::Extended(frame[5]),
    }))
}

/// A `ut_metadata` message (BEP 9): a bencoded head, and for `data` the piece's bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    Request(u32),
    Data {
        piece: u32,
        total_size: u32,
        data: Bytes,
    },
    Reject(u32),
}

/// The `added` and `added6` peers of a `ut_pex` message, bounded by [`MAX_PEX_ADDED`].
fn decode_pex(payload: &[u8]) -> Result<Vec<SocketAddr>, WireError> {
    #[derive(serde::Deserialize)]
    struct Pex<'a> {
        #[serde(borrow, default)]
        added: Option<ByteBuf<'a>>,
        #[serde(borrow, default)]
        added6: Option<ByteBuf<'a>>,
    }
    let pex: Pex<'_> = librqbit_bencode::from_bytes(payload)
        .map_err(|e| WireError::Malformed(format!("ut_pex: {}", e.into_kind())))?;
    let v4 = pex.added.as_ref().map_or(&[][..], |b| b.as_ref());
    let v6 = pex.added6.as_ref().map_or(&[][..], |b| b.as_ref());
    let added = v4
        .chunks_exact(6)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::new(ip.into(), u16::from_be_bytes([c[4], c[5]]))
        })
        .chain(v6.chunks_exact(18).map(|c| {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).expect("16 bytes"));
            SocketAddr::new(ip.into(), u16::from_be_bytes([c[16], c[17]]))
        }))
        .filter(|addr| addr.port() != 0 && !addr.ip().is_unspecified())
        .take(MAX_PEX_ADDED)
        .collect();
    Ok(added)
}

fn compact(addrs: &[SocketAddr], v6: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for addr in addrs {
        match (addr.ip(), v6) {
            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
    out
}

/// Decoded by hand rather than by librqbit, whose parsed `data` hides `total_size`.
fn decode_metadata(payload: Bytes) -> Result<MetadataMessage, WireError> {
    #[derive(serde::Deserialize)]
    struct Head {
        msg_type: u32,
        piece: u32,
        total_size: Option<u32>,
    }
    let malformed = |what: &str| WireError::Malformed(format!("ut_metadata: {what}"));
    let (head, rest): (Head, &[u8]) = librqbit_bencode::from_bytes_with_rest(&payload)
        .map_err(|e| malformed(&e.into_kind().to_string()))?;
    let data_at = payload.len() - rest.len();
    match head.msg_type {
        0 if rest.is_empty() => Ok(MetadataMessage::Request(head.piece)),
        1 => {
            let total_size = head
                .total_size
                .ok_or_else(|| malformed("data without total_size"))?;
            if rest.len() > METADATA_PIECE_LEN {
                return Err(malformed("a piece over 16 KiB"));
            }
            Ok(MetadataMessage::Data {
                piece: head.piece,
                total_size,
                data: payload.slice(data_at..),
            })
        }
        2 if rest.is_empty() => Ok(MetadataMessage::Reject(head.piece)),
        0 | 2 => Err(malformed("trailing bytes")),
        other => Err(malformed(&format!("message type {other}"))),
    }
}

fn no_extensions() -> PeerExtendedMessageIds {
    PeerExtendedMessageIds::default()
}

/// Appends one of our messages to `out`.
pub fn encode(message: &OutMessage, out: &mut BytesMut) {
    let wire = match message {
        OutMessage::KeepAlive => Message::KeepAlive,
        OutMessage::Choke => Message::Choke,
        OutMessage::Unchoke => Message::Unchoke,
        OutMessage::Interested => Message::Interested,
        OutMessage::NotInterested => Message::NotInterested,
        OutMessage::Have(piece) => Message::Have(*piece),
        OutMessage::Bitfield(bits) => Message::Bitfield(ByteBuf(bits)),
        OutMessage::Request(b) => Message::Request(Request::new(b.piece, b.offset, b.len)),
        OutMessage::Cancel(b) => Message::Cancel(Request::new(b.piece, b.offset, b.len)),
        OutMessage::Piece { block, data } => {
            Message::Piece(Piece::from_data(block.piece, block.offset, data))
        }
        OutMessage::ExtendedHandshake {
            reqq,
            port,
            metadata_size,
            pex,
        } => {
            // Written by hand: librqbit's handshake type always offers ut_pex, which a private torrent must not
            // (BEP 27). Keys in sorted order, as bencode requires.
            let pex = if *pex {
                format!("6:ut_pexi{OUR_UT_PEX_ID}e")
            } else {
                String::new()
            };
            let mut dict = format!("d1:md11:ut_metadatai{OUR_UT_METADATA_ID}e{pex}e").into_bytes();
            if let Some(size) = metadata_size {
                dict.extend_from_slice(format!("13:metadata_sizei{size}e").as_bytes());
            }
            if let Some(port) = port {
                dict.extend_from_slice(format!("1:pi{port}e").as_bytes());
            }
            dict.extend_from_slice(
                format!("4:reqqi{reqq}e1:v{}:{CLIENT_NAME}e", CLIENT_NAME.len()).as_bytes(),
            );
            out.extend_from_slice(&(dict.len() as u32 + 2).to_be_bytes());
            out.extend_from_slice(&[MSGID_EXTENDED, EXTENDED_HANDSHAKE_ID]);
            out.extend_from_slice(&dict);
            return;
        }
        OutMessage::Pex {
            peer_id,
            added,
            dropped,
        } => {
            fn string(out: &mut Vec<u8>, key: &str, value: &[u8]) {
                out.extend_from_slice(format!("{}:{key}{}:", key.len(), value.len()).as_bytes());
                out.extend_from_slice(value);
            }
            // Keys in sorted order: added, added.f, added6, added6.f, dropped, dropped6. No flags are claimed.
            let mut dict = b"d".to_vec();
            let added4 = compact(added, false);
            string(&mut dict, "added", &added4);
            string(&mut dict, "added.f", &vec![0; added4.len() / 6]);
            let added6 = compact(added, true);
            string(&mut dict, "added6", &added6);
            string(&mut dict, "added6.f", &vec![0; added6.len() / 18]);
            string(&mut dict, "dropped", &compact(dropped, false));
            string(&mut dict, "dropped6", &compact(dropped, true));
            dict.push(b'e');
            out.extend_from_slice(&(dict.len() as u32 + 2).to_be_bytes());
            out.extend_from_slice(&[MSGID_EXTENDED, *peer_id]);
            out.extend_from_slice(&dict);
            return;
        }
        OutMessage::Metadata { peer_id, message } => {
            let (head, data) = match message {
                MetadataMessage::Request(piece) => {
                    (format!("d8:msg_typei0e5:piecei{piece}ee"), None)
                }
                MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                } => (
                    format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{total_size}ee"),
                    Some(data),
                ),
                MetadataMessage::Reject(piece) => {
                    (format!("d8:msg_typei2e5:piecei{piece}ee"), None)
                }
            };
            let data_len = data.map_or(0, |d| d.len());
            out.extend_from_slice(&((head.len() + data_len) as u32 + 2).to_be_bytes());
            out.extend_from_slice(&[MSGID_EXTENDED, *peer_id]);
            out.extend_from_slice(head.as_bytes());
            if let Some(data) = data {
                out.extend_from_slice(data);
            }
            return;
        }
    };
    let start = out.len();
    let needed = match message {
        OutMessage::Bitfield(bits) => bits.len() + 5,
        OutMessage::Piece { data, .. } => data.len() + 13,
        _ => 256,
    };
    out.resize(start + needed, 0);
    let written = wire
        .serialize(&mut out[start..], &no_extensions)
        .expect("buffer sized for the message");
    out.truncate(start + written);
}

/// What we tell peers our client is.
pub const CLIENT_NAME: &str = "AllPeers 0.1";

/// A message we send.
#[derive(Debug, Clone)]
pub enum OutMessage {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Bytes),
    Request(Block),
    Cancel(Block),
    Piece {
        block: Block,
        data: Bytes,
    },
    ExtendedHandshake {
        reqq: u32,
        port: Option<u16>,
        /// The info dictionary's size, once we have it.
        metadata_size: Option<u32>,
        /// Offer `ut_pex` (never for a private torrent).
        pex: bool,
    },
    /// A `ut_pex` message, sent with the id the peer asked for: at most 50 of each list (BEP 11).
    Pex {
        peer_id: u8,
        added: Vec<SocketAddr>,
        dropped: Vec<SocketAddr>,
    },
    /// A `ut_metadata` message, sent with the id the peer asked for.
    Metadata {
        peer_id: u8,
        message: MetadataMessage,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: OutMessage) -> PeerMessage {
        let mut buf = BytesMut::new();
        encode(&message, &mut buf);
        let decoded = decode_frame(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        decoded
    }

    #[test]
    fn our_messages_decode_back() {
        let block = Block {
            piece: 3,
            offset: 16384,
            len: 16384,
        };
        assert_eq!(
            round_trip(OutMessage::Request(block)),
            PeerMessage::Request(block)
        );
        assert_eq!(round_trip(OutMessage::Have(9)), PeerMessage::Have(9));
        let data = Bytes::from(vec![7u8; 16384]);
        assert_eq!(
            round_trip(OutMessage::Piece {
                block,
                data: data.clone()
            }),
            PeerMessage::Piece { block, data }
        );
        assert_eq!(
            round_trip(OutMessage::Bitfield(Bytes::from_static(&[0xf0]))),
            PeerMessage::Bitfield(Bytes::from_static(&[0xf0]))
        );
        assert_eq!(
            round_trip(OutMessage::ExtendedHandshake {
                reqq: 2000,
                port: Some(6881),
                metadata_size: Some(40_000),
                pex: true,
            }),
            PeerMessage::ExtendedHandshake {
                reqq: Some(2000),
                client: Some(CLIENT_NAME.into()),
                ut_metadata: Some(OUR_UT_METADATA_ID),
                metadata_size: Some(40_000),
                ut_pex: Some(OUR_UT_PEX_ID),
                listen_port: Some(6881),
            }
        );
        let private = round_trip(OutMessage::ExtendedHandshake {
            reqq: 1,
            port: None,
            metadata_size: None,
            pex: false,
        });
        assert!(matches!(
            private,
            PeerMessage::ExtendedHandshake {
                ut_pex: None,
                listen_port: None,
                ..
            }
        ));
        let peers: Vec<SocketAddr> = vec![
            "10.0.0.1:6881".parse().unwrap(),
            "[2001:db8::1]:7000".parse().unwrap(),
        ];
        assert_eq!(
            round_trip(OutMessage::Pex {
                peer_id: OUR_UT_PEX_ID,
                added: peers.clone(),
                dropped: vec!["10.0.0.9:1".parse().unwrap()],
            }),
            PeerMessage::Pex { added: peers }
        );
        for message in [
            MetadataMessage::Request(2),
            MetadataMessage::Reject(7),
            MetadataMessage::Data {
                piece: 1,
                total_size: 20_000,
                data: Bytes::from(vec![9; 20_000 - METADATA_PIECE_LEN]),
            },
        ] {
            assert_eq!(
                round_trip(OutMessage::Metadata {
                    peer_id: OUR_UT_METADATA_ID,
                    message: message.clone()
                }),
                PeerMessage::Metadata(message)
            );
        }
    }

    #[test]
    fn pex_messages_are_bounded_and_junk_is_skipped() {
        fn frame(payload: &[u8]) -> BytesMut {
            let mut out = BytesMut::new();
            out.extend_from_slice(&(payload.len() as u32 + 2).to_be_bytes());
            out.extend_from_slice(&[MSGID_EXTENDED, OUR_UT_PEX_ID]);
            out.extend_from_slice(payload);
            out
        }
        let mut many = format!("d5:added{}:", 6 * 300).into_bytes();
        for i in 0..300u16 {
            many.extend_from_slice(&[10, 0, 0, 1]);
            many.extend_from_slice(&(i + 1).to_be_bytes());
        }
        many.push(b'e');
        let Some(PeerMessage::Pex { added }) = decode_frame(&mut frame(&many)).unwrap() else {
            panic!("a pex message")
        };
        assert_eq!(added.len(), MAX_PEX_ADDED);
        // Port 0 and the unspecified address are not peers; a trailing odd byte is ignored.
        let mut payload = b"d5:added13:".to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0x1a, 0xe1, 10, 0, 0, 1, 0, 0, 7]);
        payload.push(b'e');
        assert_eq!(
            decode_frame(&mut frame(&payload)).unwrap(),
            Some(PeerMessage::Pex { added: vec![] })
        );
        assert!(matches!(
            decode_frame(&mut frame(b"i5e")),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn bad_metadata_messages_are_typed_errors() {
        fn frame(payload: &[u8]) -> BytesMut {
            let mut out = BytesMut::new();
            out.extend_from_slice(&(payload.len() as u32 + 2).to_be_bytes());
            out.extend_from_slice(&[MSGID_EXTENDED, OUR_UT_METADATA_ID]);
            out.extend_from_slice(payload);
            out
        }
        for bad in [
            &b"d8:msg_typei1e5:piecei0ee"[..],
            b"d8:msg_typei0e5:piecei0eexx",
            b"d8:msg_typei9e5:piecei0ee",
            b"d5:piecei0ee",
            b"le",
        ] {
            assert!(
                matches!(decode_frame(&mut frame(bad)), Err(WireError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut huge = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        huge.extend_from_slice(&[0; METADATA_PIECE_LEN + 1]);
        assert!(matches!(
            decode_frame(&mut frame(&huge)),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn frames_wait_for_all_their_bytes() {
        let mut whole = BytesMut::new();
        encode(&OutMessage::Have(1), &mut whole);
        encode(&OutMessage::Unchoke, &mut whole);
        let mut buf = BytesMut::from(&whole[..6]);
        assert_eq!(decode_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&whole[6..]);
        assert_eq!(decode_frame(&mut buf).unwrap(), Some(PeerMessage::Have(1)));
        assert_eq!(decode_frame(&mut buf).unwrap(), Some(PeerMessage::Unchoke));
        assert_eq!(decode_frame(&mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_garbage_and_unknown_messages() {
        let mut huge = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0][..]);
        assert!(matches!(
            decode_frame(&mut huge),
            Err(WireError::FrameTooLong(_))
        ));
        let mut bad_have = BytesMut::from(&[0, 0, 0, 2, 4, 1][..]);
        assert!(matches!(
            decode_frame(&mut bad_have),
            Err(WireError::Malformed(_))
        ));
        let mut port = BytesMut::from(&[0, 0, 0, 3, 9, 0x1a, 0xe1][..]);
        assert_eq!(
            decode_frame(&mut port).unwrap(),
            Some(PeerMessage::Unknown(9))
        );
        let mut bad_extended = BytesMut::from(&[0, 0, 0, 3, 20, 0, b'x'][..]);
        assert!(matches!(
            decode_frame(&mut bad_extended),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn an_overflowing_integer_in_an_extension_message_is_an_error_not_a_panic() {
        // Found by fuzzing: librqbit-bencode's integer parser overflows on this.
        let payload = b"d1:pi99999999999999999999ee";
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&(payload.len() as u32 + 2).to_be_bytes());
        frame.extend_from_slice(&[20, 0]);
        frame.extend_from_slice(payload);
        assert!(matches!(
            decode_frame(&mut frame),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn handshake_round_trips_and_rejects_other_protocols() {
        let bytes = encode_handshake([1; 20], [2; 20]);
        let peer = decode_handshake(&bytes).unwrap();
        assert_eq!(
            peer,
            PeerHandshake {
                info_hash: [1; 20],
                peer_id: [2; 20],
                supports_extended: true
            }
        );
        let mut other = bytes;
        other[3] = b'X';
        assert!(decode_handshake(&other).is_err());
    }
}
