//! UDP tracker announces (BEP 15): a connect exchange gives a connection id, an announce exchange with it gives
//! the peers. Each request is one datagram, sent again on silence; answers are matched by transaction id, so a
//! stray or forged datagram is ignored rather than taken. The codec is I/O-free and bounded; [`announce`] is the
//! thin socket glue.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{
    ANNOUNCE_TIMEOUT, AnnounceEvent, AnnounceRequest, AnnounceResponse, MAX_INTERVAL,
    MAX_PEERS_PER_RESPONSE, MIN_INTERVAL, TrackerError,
};

/// The magic constant of a connect request.
const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_ERROR: u32 = 3;
const CONNECT_LEN: usize = 16;
const ANNOUNCE_LEN: usize = 98;
/// The fixed head of an announce answer, before the peers.
const ANNOUNCE_HEAD_LEN: usize = 20;
/// The largest datagram read: an answer of [`MAX_PEERS_PER_RESPONSE`] IPv6 peers fits; longer ones are cut there.
const MAX_DATAGRAM: usize = ANNOUNCE_HEAD_LEN + MAX_PEERS_PER_RESPONSE * 18;
/// Silence before the first resend, doubled each time. BEP 15's 15 s * 2^n suits a client with all day; one
/// announce here has [`ANNOUNCE_TIMEOUT`] in all, so it sends at 0, 1, 3 and 7 s.
const FIRST_RESEND: Duration = Duration::from_secs(1);

/// Host and port of a `udp://host:port[/path]` URL (the path, BEP 41's URL data, is not sent).
pub fn split_url(url: &str) -> Result<(String, u16), TrackerError> {
    let bad = || TrackerError::Url(url.to_owned());
    let scheme_len = "udp://".len();
    if url.len() < scheme_len || !url[..scheme_len].eq_ignore_ascii_case("udp://") {
        return Err(bad());
    }
    let rest = &url[scheme_len..];
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        authority.rsplit_once(':').ok_or_else(bad)?
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

pub fn connect_request(transaction: u32) -> [u8; CONNECT_LEN] {
    let mut out = [0; CONNECT_LEN];
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[12..].copy_from_slice(&transaction.to_be_bytes());
    out
}

/// The connection id of a connect answer; `Ok(None)` for a datagram that is not the answer to `transaction`.
pub fn parse_connect(datagram: &[u8], transaction: u32) -> Result<Option<u64>, TrackerError> {
    let Some((action, rest)) = head(datagram, transaction) else {
        return Ok(None);
    };
    match action {
        ACTION_CONNECT if rest.len() >= 8 => Ok(Some(u64::from_be_bytes(
            rest[..8].try_into().expect("8 bytes"),
        ))),
        ACTION_CONNECT => Err(TrackerError::Malformed("short connect answer".into())),
        ACTION_ERROR => Err(failure(rest)),
        other => Err(TrackerError::Malformed(format!(
            "action {other} in answer to a connect"
        ))),
    }
}

/// The announce datagram. `key` identifies this client to the tracker across address changes.
pub fn announce_request(
    connection: u64,
    transaction: u32,
    key: u32,
    request: &AnnounceRequest,
) -> [u8; ANNOUNCE_LEN] {
    let event: u32 = match request.event {
        None => 0,
        Some(AnnounceEvent::Completed) => 1,
        Some(AnnounceEvent::Started) => 2,
        Some(AnnounceEvent::Stopped) => 3,
    };
    let mut out = [0; ANNOUNCE_LEN];
    out[..8].copy_from_slice(&connection.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out[12..16].copy_from_slice(&transaction.to_be_bytes());
    out[16..36].copy_from_slice(&request.info_hash);
    out[36..56].copy_from_slice(&request.peer_id);
    out[56..64].copy_from_slice(&request.downloaded.to_be_bytes());
    out[64..72].copy_from_slice(&request.left.to_be_bytes());
    out[72..80].copy_from_slice(&request.uploaded.to_be_bytes());
    out[80..84].copy_from_slice(&event.to_be_bytes());
    // 84..88: our IP address, 0 = the one the datagram comes from.
    out[88..92].copy_from_slice(&key.to_be_bytes());
    // num_want -1: the tracker's default.
    out[92..96].copy_from_slice(&(-1i32).to_be_bytes());
    out[96..98].copy_from_slice(&request.port.to_be_bytes());
    out
}

/// The peers of an announce answer; `Ok(None)` for a datagram that is not the answer to `transaction`. Peers are
/// 6-byte IPv4 entries when we asked over IPv4 and 18-byte IPv6 entries over IPv6 (BEP 15's rule).
pub fn parse_announce(
    datagram: &[u8],
    transaction: u32,
    over_ipv6: bool,
) -> Result<Option<AnnounceResponse>, TrackerError> {
    let Some((action, rest)) = head(datagram, transaction) else {
        return Ok(None);
    };
    match action {
        ACTION_ANNOUNCE => {}
        ACTION_ERROR => return Err(failure(rest)),
        other => {
            return Err(TrackerError::Malformed(format!(
                "action {other} in answer to an announce"
            )));
        }
    }
    if rest.len() < ANNOUNCE_HEAD_LEN - 8 {
        return Err(TrackerError::Malformed("short announce answer".into()));
    }
    let interval = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
    // rest[4..12]: leechers and seeders, not used.
    let entry = if over_ipv6 { 18 } else { 6 };
    let peers = rest[12..]
        .chunks_exact(entry)
        .take(MAX_PEERS_PER_RESPONSE)
        .map(|chunk| {
            let (ip, port) = chunk.split_at(entry - 2);
            let ip = if over_ipv6 {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).expect("16 bytes")))
            } else {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).expect("4 bytes")))
            };
            SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
        })
        .filter(|peer| peer.port() != 0)
        .collect();
    Ok(Some(AnnounceResponse {
        interval: Duration::from_secs(u64::from(interval)).clamp(MIN_INTERVAL, MAX_INTERVAL),
        peers,
    }))
}

/// Action and the rest of an answer to `transaction`; `None` if it answers another (or is too short to say).
fn head(datagram: &[u8], transaction: u32) -> Option<(u32, &[u8])> {
    if datagram.len() < 8 {
        return None;
    }
    let action = u32::from_be_bytes(datagram[..4].try_into().expect("4 bytes"));
    let answered = u32::from_be_bytes(datagram[4..8].try_into().expect("4 bytes"));
    (answered == transaction).then_some((action, &datagram[8..]))
}

fn failure(message: &[u8]) -> TrackerError {
    TrackerError::Failure(String::from_utf8_lossy(message).chars().take(200).collect())
}

pub(super) async fn announce(request: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    tokio::time::timeout(ANNOUNCE_TIMEOUT, exchange_all(request))
        .await
        .map_err(|_| TrackerError::Timeout)?
}

async fn exchange_all(request: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    let (host, port) = split_url(&request.url)?;
    let mut addresses = tokio::net::lookup_host((host.as_str(), port)).await?;
    let tracker = addresses
        .next()
        .ok_or_else(|| TrackerError::NoAddress(host.clone()))?;
    let local: SocketAddr = if tracker.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(tracker).await?;
    // The key is stable for this client: the random tail of its peer id.
    let key = u32::from_be_bytes(request.peer_id[16..].try_into().expect("4 bytes"));

    let transaction = rand::thread_rng().r#gen();
    let connection = exchange(&socket, &connect_request(transaction), |answer| {
        parse_connect(answer, transaction)
    })
    .await?;
    let transaction = rand::thread_rng().r#gen();
    let datagram = announce_request(connection, transaction, key, request);
    exchange(&socket, &datagram, |answer| {
        parse_announce(answer, transaction, tracker.is_ipv6())
    })
    .await
}

/// Sends `datagram` until `parse` takes an answer, resending on silence with the wait doubled each time.
async fn exchange<T>(
    socket: &UdpSocket,
    datagram: &[u8],
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, TrackerError>,
) -> Result<T, TrackerError> {
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut wait = FIRST_RESEND;
    loop {
        socket.send(datagram).await?;
        let resend_at = Instant::now() + wait;
        while let Ok(received) = tokio::time::timeout_at(resend_at, socket.recv(&mut buf)).await {
            // A refused port (ICMP) shows here as an I/O error: the tracker is not there.
            if let Some(answer) = parse(&buf[..received?])? {
                return Ok(answer);
            }
        }
        wait *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            url: "udp://127.0.0.1:6969/announce".into(),
            info_hash: [0xab; 20],
            peer_id: *b"-AP0001-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(AnnounceEvent::Started),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("udp://tracker.example:1337/announce").unwrap(),
            ("tracker.example".into(), 1337)
        );
        assert_eq!(split_url("UDP://[::1]:80").unwrap(), ("::1".into(), 80));
        for bad in [
            "udp://host",
            "udp://host:0",
            "udp://:80",
            "udp://u@host:80",
            "http://host:80",
            "udp://[::1:80",
            "udp:/",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_connect_exchange() {
        let datagram = connect_request(7);
        assert_eq!(&datagram[..8], &0x0417_2710_1980u64.to_be_bytes());
        assert_eq!(&datagram[8..], &[0, 0, 0, 0, 0, 0, 0, 7]);
        let mut answer = vec![0, 0, 0, 0, 0, 0, 0, 7];
        answer.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(parse_connect(&answer, 7).unwrap(), Some(42));
        assert_eq!(
            parse_connect(&answer, 8).unwrap(),
            None,
            "another transaction"
        );
        assert_eq!(parse_connect(&answer[..4], 7).unwrap(), None);
        assert!(matches!(
            parse_connect(&answer[..12], 7),
            Err(TrackerError::Malformed(_))
        ));
        let mut error = vec![0, 0, 0, 3, 0, 0, 0, 7];
        error.extend_from_slice(b"go away");
        assert!(
            matches!(parse_connect(&error, 7), Err(TrackerError::Failure(m)) if m == "go away")
        );
    }

    #[test]
    fn the_announce_datagram_has_every_field_in_place() {
        let datagram = announce_request(42, 9, 0xdead_beef, &request());
        assert_eq!(&datagram[..8], &42u64.to_be_bytes());
        assert_eq!(&datagram[8..16], &[0, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(&datagram[16..36], &[0xab; 20]);
        assert_eq!(&datagram[36..56], b"-AP0001-abcdefghijkl");
        assert_eq!(&datagram[56..64], &2u64.to_be_bytes(), "downloaded");
        assert_eq!(&datagram[64..72], &3u64.to_be_bytes(), "left");
        assert_eq!(&datagram[72..80], &1u64.to_be_bytes(), "uploaded");
        assert_eq!(&datagram[80..84], &2u32.to_be_bytes(), "started");
        assert_eq!(&datagram[88..92], &0xdead_beefu32.to_be_bytes());
        assert_eq!(&datagram[92..96], &[0xff; 4]);
        assert_eq!(&datagram[96..], &6881u16.to_be_bytes());
    }

    fn announce_answer(transaction: u32, interval: u32, peers: &[u8]) -> Vec<u8> {
        let mut answer = vec![0, 0, 0, 1];
        answer.extend_from_slice(&transaction.to_be_bytes());
        answer.extend_from_slice(&interval.to_be_bytes());
        answer.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        answer.extend_from_slice(peers);
        answer
    }

    #[test]
    fn announce_answers_give_peers_and_a_clamped_interval() {
        let v4 = announce_answer(5, 1800, &[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 0, 9]);
        let answer = parse_announce(&v4, 5, false).unwrap().unwrap();
        assert_eq!(answer.interval, Duration::from_secs(1800));
        // The zero port is dropped and the trailing odd byte ignored.
        assert_eq!(answer.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!(parse_announce(&v4, 6, false).unwrap(), None);

        let mut v6_peer = Ipv6Addr::LOCALHOST.octets().to_vec();
        v6_peer.extend_from_slice(&80u16.to_be_bytes());
        let v6 = announce_answer(5, 1, &v6_peer);
        let answer = parse_announce(&v6, 5, true).unwrap().unwrap();
        assert_eq!(
            answer.interval, MIN_INTERVAL,
            "a hammering interval is clamped"
        );
        assert_eq!(answer.peers, vec!["[::1]:80".parse().unwrap()]);
        let forever = announce_answer(5, u32::MAX, &[]);
        assert_eq!(
            parse_announce(&forever, 5, false)
                .unwrap()
                .unwrap()
                .interval,
            MAX_INTERVAL
        );

        let many = announce_answer(5, 60, &[1; 6 * (MAX_PEERS_PER_RESPONSE + 10)]);
        assert_eq!(
            parse_announce(&many, 5, false)
                .unwrap()
                .unwrap()
                .peers
                .len(),
            MAX_PEERS_PER_RESPONSE
        );
        assert!(matches!(
            parse_announce(&announce_answer(5, 60, &[])[..12], 5, false),
            Err(TrackerError::Malformed(_))
        ));
        let mut connect_again = vec![0, 0, 0, 0, 0, 0, 0, 5];
        connect_again.extend_from_slice(&[0; 8]);
        assert!(matches!(
            parse_announce(&connect_again, 5, false),
            Err(TrackerError::Malformed(_))
        ));
    }

    /// A tracker that ignores the first datagram of each exchange and sends a stray answer (another transaction)
    /// before the real one: the client resends, skips the stray answer and gets the peers.
    #[tokio::test]
    async fn resends_on_silence_and_skips_answers_to_other_transactions() {
        let tracker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let url = format!("udp://{}/announce", tracker.local_addr().unwrap());
        let serve = tokio::spawn(async move {
            let mut buf = [0u8; 128];
            let mut seen = 0;
            loop {
                let (len, from) = tracker.recv_from(&mut buf).await.unwrap();
                seen += 1;
                if seen % 2 == 1 {
                    continue;
                }
                let transaction = u32::from_be_bytes(buf[12..16].try_into().unwrap());
                let stray = announce_answer(transaction.wrapping_add(1), 60, &[]);
                tracker.send_to(&stray, from).await.unwrap();
                if len == CONNECT_LEN {
                    let mut answer = vec![0, 0, 0, 0];
                    answer.extend_from_slice(&transaction.to_be_bytes());
                    answer.extend_from_slice(&99u64.to_be_bytes());
                    tracker.send_to(&answer, from).await.unwrap();
                } else {
                    assert_eq!(&buf[..8], &99u64.to_be_bytes(), "the connection id");
                    let answer = announce_answer(transaction, 60, &[127, 0, 0, 1, 0, 80]);
                    tracker.send_to(&answer, from).await.unwrap();
                    return seen;
                }
            }
        });
        let answer = announce(&AnnounceRequest { url, ..request() })
            .await
            .unwrap();
        assert_eq!(answer.peers, vec!["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(serve.await.unwrap(), 4, "each request was sent twice");
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_not_a_wait() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}", closed.local_addr().unwrap());
        drop(closed);
        let started = std::time::Instant::now();
        let error = announce(&AnnounceRequest { url, ..request() })
            .await
            .unwrap_err();
        assert!(matches!(error, TrackerError::Io(_)), "{error}");
        assert!(started.elapsed() < ANNOUNCE_TIMEOUT);
    }
}
