//! HTTP tracker announces (BEP 3, compact peers BEP 23), by a minimal HTTP/1.0 client over a tokio socket. Written by
//! hand rather than with `librqbit-tracker-comms`, which brings `reqwest` and a TLS stack for a single GET; the
//! response parser is I/O-free and bounded. `https` trackers are not done yet.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{
    ANNOUNCE_TIMEOUT, AnnounceEvent, AnnounceRequest, AnnounceResponse, MAX_INTERVAL,
    MAX_PEERS_PER_RESPONSE, MAX_RESPONSE_LEN, MIN_INTERVAL, TrackerError,
};

use librqbit_bencode::{BencodeValue, ByteBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Host, port and path-with-query of an `http://` URL.
fn split_url(url: &str) -> Result<(String, u16, String), TrackerError> {
    let bad = || TrackerError::Url(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, port.parse().map_err(|_| bad())?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        path.to_owned(),
    ))
}

/// The request line and headers of an announce.
pub fn request_bytes(request: &AnnounceRequest) -> Result<(String, u16, Vec<u8>), TrackerError> {
    let (host, port, path) = split_url(&request.url)?;
    let mut target = path;
    target.push(if target.contains('?') { '&' } else { '?' });
    let _ = write!(
        target,
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
        let _ = write!(target, "&event={name}");
    }
    let head = format!(
        "GET {target} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: {}\r\nConnection: close\r\n\r\n",
        crate::bt::wire::CLIENT_NAME
    );
    Ok((host, port, head.into_bytes()))
}

pub(super) async fn announce(request: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    let (host, port, head) = request_bytes(request)?;
    let exchange = async {
        let mut stream = TcpStream::connect((host.as_str(), port)).await?;
        stream.write_all(&head).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_LEN as u64 + 1)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, TrackerError>(response)
    };
    let response = tokio::time::timeout(ANNOUNCE_TIMEOUT, exchange)
        .await
        .map_err(|_| TrackerError::Timeout)??;
    parse_response(&response)
}

/// Parses a whole HTTP response from a tracker.
pub fn parse_response(response: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    if response.len() > MAX_RESPONSE_LEN {
        return Err(TrackerError::TooLarge);
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| TrackerError::Malformed("no end of headers".into()))?;
    let head = std::str::from_utf8(&response[..split])
        .map_err(|_| TrackerError::Malformed("headers".into()))?;
    let body = &response[split + 4..];
    let status_line = head.lines().next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TrackerError::Malformed(format!("status line {status_line:?}")))?;
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        return Err(TrackerError::Malformed(
            "transfer encodings are not accepted over HTTP/1.0".into(),
        ));
    }
    if status != 200 {
        return Err(TrackerError::Status(status));
    }
    parse_body(body)
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
        assert!(matches!(
            parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n"),
            Err(TrackerError::Status(404))
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.0 200 OK\r\n"),
            Err(TrackerError::Malformed(_))
        ));
        let ok = parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nd5:peers0:e")
            .unwrap();
        assert!(ok.peers.is_empty());
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
        let (host, port, head) = request_bytes(&request).unwrap();
        assert_eq!((host.as_str(), port), ("127.0.0.1", 6969));
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with("GET /announce?key=x&info_hash=%FF%FF"),
            "{head}"
        );
        assert!(head.contains("&peer_id=-AP0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1&event=started HTTP/1.0\r\n"));
        assert!(split_url("https://t/announce").is_err());
        assert!(split_url("http://user@t/announce").is_err());
        assert_eq!(split_url("http://[::1]:80/a").unwrap().0, "::1");
    }
}
