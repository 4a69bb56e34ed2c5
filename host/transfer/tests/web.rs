//! HTTP(S) on loopback: an https tracker behind a TLS front whose certificate a test CA signed (trusted by our
//! client, refused by a client without it), a .torrent fetched by URL through a redirect, and junk answers — bad
//! status, HTML, an endless body, a lying `Content-Length`, silence, redirect loops — each a clear, typed error.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allpeers_transfer::bt::tracker::{self, AnnounceRequest, TrackerError};
use allpeers_transfer::web::{Bounds, WebClient, WebError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(30);

/// A test CA (DER and PEM) and a certificate it signed for `localhost` and 127.0.0.1.
fn test_pki() -> (CertificateDer<'static>, String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "AllPeers test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (ca.der().clone(), ca.pem(), server)
}

/// The raw answer for a request target; `None`: read the request and never answer.
type Routes = fn(&str) -> Option<Vec<u8>>;

/// Serves `routes` on loopback (over TLS with `tls`), recording each request's target.
async fn serve(
    routes: Routes,
    tls: Option<rustls::ServerConfig>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        // A client that does not trust the CA ends the handshake: nothing to serve.
                        if let Ok(stream) = acceptor.accept(socket).await {
                            answer(stream, routes, log).await;
                        }
                    }
                    None => answer(socket, routes, log).await,
                }
            });
        }
    });
    (addr, seen)
}

async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    routes: Routes,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read_exact(&mut byte).await.is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    log.lock().unwrap().push(target.clone());
    match routes(&target) {
        Some(response) => {
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
        }
        None => {
            // Silence: hold the connection until the client gives up.
            let _ = stream.read(&mut byte).await;
        }
    }
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

const TORRENT: &[u8] = b"d8:announce22:http://127.0.0.1:1/anne";

fn routes(target: &str) -> Option<Vec<u8>> {
    let path = target.split('?').next().unwrap_or("");
    Some(match path {
        "/announce" => ok(b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e"),
        "/refuse" => ok(b"d14:failure reason12:unregisterede"),
        "/html" => ok(b"<html><body>Welcome to nginx!</body></html>"),
        "/missing" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/old" => b"HTTP/1.1 302 Found\r\nLocation: /files/a.torrent\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/files/a.torrent" => ok(TORRENT),
        "/loop" => b"HTTP/1.1 301 Moved\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/elsewhere" => {
            b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/a\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nd4:ab\r\n4\r\n1:ce\r\n0\r\n\r\n".to_vec(),
        "/huge" => {
            // Told as 64 KiB and sent as such, past the client's limit.
            let mut body = b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n".to_vec();
            body.resize(body.len() + 65536, b'x');
            body
        }
        "/endless" => {
            // No length: the body runs until the connection closes, past the client's limit.
            let mut body = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            body.resize(body.len() + 65536, b'x');
            body
        }
        "/garbage" => b"\x00\x01 this is not HTTP\r\n\r\n".to_vec(),
        _ => return None,
    })
}

/// Whether an error is the one a case expects.
type Expected = fn(&WebError) -> bool;

fn request(url: String) -> AnnounceRequest {
    AnnounceRequest {
        url,
        info_hash: [0xab; 20],
        peer_id: *b"-AP0001-abcdefghijkl",
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 10,
        event: None,
    }
}

#[tokio::test]
async fn an_https_tracker_is_announced_to_over_tls_trusting_a_test_ca() {
    tokio::time::timeout(DEADLINE, async {
        let (ca, _, server) = test_pki();
        let (addr, seen) = serve(routes, Some(server)).await;
        let trusting = WebClient::new(&[ca]);
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("https://{host}:{}/announce", addr.port());
            let answer = tracker::announce(&request(url), &trusting).await.unwrap();
            assert_eq!(answer.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
            assert_eq!(answer.interval, Duration::from_secs(1800));
        }
        let targets = seen.lock().unwrap().clone();
        assert_eq!(targets.len(), 2);
        assert!(
            targets[0].starts_with("/announce?info_hash=%AB%AB")
                && targets[0].contains("&left=10&compact=1"),
            "{targets:?}"
        );
        let refused = tracker::announce(
            &request(format!("https://127.0.0.1:{}/refuse", addr.port())),
            &trusting,
        )
        .await;
        assert!(
            matches!(refused, Err(TrackerError::Failure(ref r)) if r == "unregistered"),
            "{refused:?}"
        );
        // Without the test CA the certificate is refused, and the error says so.
        let error = tracker::announce(
            &request(format!("https://127.0.0.1:{}/announce", addr.port())),
            &WebClient::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, TrackerError::Web(WebError::Tls { .. })),
            "{error:?}"
        );
        assert!(error.to_string().contains("certificate"), "{error}");
        // Plain HTTP to a TLS port is junk, not a hang.
        let plain = tracker::announce(
            &request(format!("http://127.0.0.1:{}/announce", addr.port())),
            &trusting,
        )
        .await;
        assert!(plain.is_err());
    })
    .await
    .expect("the test finished in time");
}

/// The `transfers.ca_roots` setting: a CA's PEM file, read from disk, is trusted for a .torrent URL over https; a
/// file without a certificate, or no file, is refused naming it.
#[tokio::test]
async fn ca_roots_from_a_pem_file_are_trusted_and_bad_files_are_named() {
    tokio::time::timeout(DEADLINE, async {
        let (_, ca_pem, server) = test_pki();
        let (addr, _) = serve(routes, Some(server)).await;
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, ca_pem).unwrap();
        let url = format!("https://localhost:{}/old", addr.port());
        let bounds = Bounds {
            max_len: 1 << 20,
            timeout: Duration::from_secs(10),
        };
        let trusting = WebClient::with_pem_roots(std::slice::from_ref(&pem)).unwrap();
        assert_eq!(&trusting.get(&url, bounds).await.unwrap()[..], TORRENT);
        let error = WebClient::default().get(&url, bounds).await.unwrap_err();
        assert!(matches!(error, WebError::Tls { .. }), "{error:?}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for bad in [empty, dir.path().join("missing.pem")] {
            let error = WebClient::with_pem_roots(&[pem.clone(), bad.clone()]).unwrap_err();
            assert!(
                matches!(&error, WebError::Roots { path, .. } if *path == bad),
                "{error:?}"
            );
            assert!(error.to_string().contains(&*bad.to_string_lossy()));
        }
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test]
async fn a_torrent_url_is_fetched_and_junk_answers_give_clear_errors() {
    tokio::time::timeout(DEADLINE, async {
        let (addr, _) = serve(routes, None).await;
        let web = WebClient::default();
        let bounds = Bounds {
            max_len: 4096,
            timeout: Duration::from_secs(2),
        };
        let url = |path: &str| format!("http://127.0.0.1:{}{path}", addr.port());
        let got = web.get(&url("/old"), bounds).await.unwrap();
        assert_eq!(&got[..], TORRENT, "followed the redirect");
        let chunked = web.get(&url("/chunked"), bounds).await.unwrap();
        assert_eq!(&chunked[..], b"d4:ab1:ce");

        let cases: Vec<(&str, Expected)> = vec![
            ("/missing", |e| matches!(e, WebError::Status(404))),
            ("/loop", |e| matches!(e, WebError::Redirects)),
            ("/elsewhere", |e| matches!(e, WebError::BadRedirect)),
            ("/huge", |e| matches!(e, WebError::TooLarge(4096))),
            ("/endless", |e| matches!(e, WebError::TooLarge(4096))),
            ("/garbage", |e| matches!(e, WebError::Http(_))),
            ("/silent", |e| matches!(e, WebError::Timeout(_))),
        ];
        for (path, expected) in cases {
            let error = web.get(&url(path), bounds).await.unwrap_err();
            assert!(expected(&error), "{path}: {error:?}");
        }
        let closed = web
            .get("http://127.0.0.1:9/a.torrent", bounds)
            .await
            .unwrap_err();
        assert!(matches!(closed, WebError::Connect { .. }), "{closed:?}");
        assert!(matches!(
            web.get("ftp://127.0.0.1/a.torrent", bounds).await,
            Err(WebError::Url(_))
        ));
        // A tracker answering HTML is malformed, not a crash.
        let html = tracker::announce(&request(url("/html")), &web).await;
        assert!(matches!(html, Err(TrackerError::Malformed(_))), "{html:?}");
    })
    .await
    .expect("the test finished in time");
}
