//! HTTP and HTTPS tracker announces (BEP 3, compact peers BEP 23): the announce URL built here, the GET by
//! [`crate::web`] (hyper, rustls for `https://`), the bencoded answer parsed here, I/O-free and bounded.
//! `librqbit-tracker-comms` was not taken: it brings `reqwest` and a second TLS stack for a single GET.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{
    ANNOUNCE_TIMEOUT, AnnounceEvent, AnnounceRequest, AnnounceResponse, MAX_INTERVAL,
    MAX_PEERS_PER_RESPONSE, MAX_RESPONSE_LEN, MIN_INTERVAL, TrackerError,
};
use crate::web::{Bounds, WebClient};

use librqbit_bencode::{BencodeValue, ByteBuf};

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The announce's URL: the tracker's own (its query kept) with the announce's parameters after it.
pub fn announce_url(request: &AnnounceRequest) -> String {
    let mut url = request.url.clone();
    // A fragment would swallow the parameters.
    if let Some(cut) = url.find('#') {
        url.truncate(cut);
    }
    url.push(if url.contains('?') { '&' } else { '?' });
    let _ = write!(
        url,
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1",
        percent_encode(&request.info_hash),
        percent_encode(&request.peer_id),
        request.port,
        request.uploaded,
        request.downloaded,
        request.left
    );
    if let Some(event) = request.event {
        let name = match event {
            AnnounceEvent::Started => "started",
            AnnounceEvent::Completed => "completed",
            AnnounceEvent::Stopped => "stopped",
        };
        let _ = write!(url, "&event={name}");
    }
    url
}

pub(super) async fn announce(
    request: &AnnounceRequest,
    web: &WebClient,
) -> Result<AnnounceResponse, TrackerError> {
    let body = web
        .get(
            &announce_url(request),
            Bounds {
                max_len: MAX_RESPONSE_LEN,
                timeout: ANNOUNCE_TIMEOUT,
            },
        )
        .await?;
    parse_body(&body)
}

fn get<'a, 'b>(
    dict: &'b BencodeValue<ByteBuf<'a>>,
    key: &'static [u8],
) -> Option<&'b BencodeValue<ByteBuf<'a>>> {
    match dict {
        BencodeValue::Dict(map) => map.get(&ByteBuf(key)),
        _ => None,
    }
}

/// Parses the bencoded body of an announce response.
pub fn parse_body(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    crate::bt::bencode_guard::check(body).map_err(|e| TrackerError::Malformed(e.into()))?;
    let value: BencodeValue<ByteBuf<'_>> = librqbit_bencode::dyn_from_bytes(body)
        .map_err(|e| TrackerError::Malformed(e.into_kind().to_string()))?;
    if !matches!(value, BencodeValue::Dict(_)) {
        return Err(TrackerError::Malformed("not a dictionary".into()));
    }
    if let Some(BencodeValue::Bytes(reason)) = get(&value, b"failure reason") {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(reason.as_ref())
                .chars()
                .take(200)
                .collect(),
        ));
    }
    let interval = match get(&value, b"interval") {
        Some(BencodeValue::Integer(secs)) => Duration::from_secs((*secs).max(0) as u64),
        _ => MIN_INTERVAL,
    }
    .clamp(MIN_INTERVAL, MAX_INTERVAL);
    let mut peers = Vec::new();
    match get(&value, b"peers") {
        Some(BencodeValue::Bytes(compact)) => {
            for chunk in compact
                .as_ref()
                .chunks_exact(6)
                .take(MAX_PEERS_PER_RESPONSE)
            {
                let ip = Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]);
                peers.push(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([chunk[4], chunk[5]]),
                ));
            }
        }
        Some(BencodeValue::List(list)) => {
            for entry in list.iter().take(MAX_PEERS_PER_RESPONSE) {
                let ip = match get(entry, b"ip") {
                    Some(BencodeValue::Bytes(ip)) => std::str::from_utf8(ip.as_ref())
                        .ok()
                        .and_then(|s| s.parse().ok()),
                    _ => None,
                };
                let port = match get(entry, b"port") {
                    Some(BencodeValue::Integer(port)) => u16::try_from(*port).ok(),
                    _ => None,
                };
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        _ => {}
    }
    if let Some(BencodeValue::Bytes(compact6)) = get(&value, b"peers6") {
        for chunk in compact6
            .as_ref()
            .chunks_exact(18)
            .take(MAX_PEERS_PER_RESPONSE)
        {
            let octets: [u8; 16] = chunk[..16].try_into().expect("16 bytes");
            let ip = IpAddr::V6(Ipv6Addr::from(octets));
            peers.push(SocketAddr::new(
                ip,
                u16::from_be_bytes([chunk[16], chunk[17]]),
            ));
        }
    }
    peers.retain(|p| p.port() != 0);
    Ok(AnnounceResponse { interval, peers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_dictionary_peers_are_read() {
        let body = b"d8:intervali1800e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
        let response = parse_body(body).unwrap();
        assert_eq!(response.interval, Duration::from_secs(1800));
        assert_eq!(
            response.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        let dicts = b"d8:intervali5e5:peersld2:ip9:127.0.0.14:porti7000eeee";
        let response = parse_body(dicts).unwrap();
        assert_eq!(response.interval, MIN_INTERVAL, "clamped");
        assert_eq!(response.peers, vec!["127.0.0.1:7000".parse().unwrap()]);
    }

    #[test]
    fn junk_answers_give_typed_errors() {
        assert!(
            matches!(parse_body(b"d14:failure reason7:go awaye"), Err(TrackerError::Failure(r)) if r == "go away")
        );
        assert!(matches!(
            parse_body(b"i3e"),
            Err(TrackerError::Malformed(_))
        ));
        assert!(matches!(
            parse_body(b"<html>"),
            Err(TrackerError::Malformed(_))
        ));
        assert!(parse_body(b"d5:peers0:e").unwrap().peers.is_empty());
    }

    #[test]
    fn the_request_encodes_binary_ids_and_keeps_the_urls_query() {
        let request = AnnounceRequest {
            url: "http://127.0.0.1:6969/announce?key=x".into(),
            info_hash: [0xff; 20],
            peer_id: *b"-AP0001-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(AnnounceEvent::Started),
        };
        let url = announce_url(&request);
        assert!(
            url.starts_with("http://127.0.0.1:6969/announce?key=x&info_hash=%FF%FF"),
            "{url}"
        );
        assert!(url.ends_with("&peer_id=-AP0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1&event=started"));
    }
}
