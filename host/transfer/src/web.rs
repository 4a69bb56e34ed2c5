//! HTTP(S) GETs of small documents from the web: `.torrent` files named by URL and HTTP(S) tracker announces.
//! hyper's HTTP/1 client over a tokio socket, TLS by rustls (ring) trusting the Mozilla roots (`webpki-roots`)
//! plus any roots the caller adds (a test's own CA). Every answer is bounded: a byte limit checked against
//! `Content-Length` before reading and again while reading, one deadline for the whole exchange including
//! redirects, at most [`MAX_REDIRECTS`] redirects, `http` and `https` only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use url::Url;

/// Redirects followed before giving up (browsers allow about 20; a .torrent link has one or two).
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not an http:// or https:// URL: {0}")]
    Url(String),
    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("TLS with {host}: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    #[error("a redirect without a usable Location")]
    BadRedirect,
    #[error("CA roots in {path}: {reason}")]
    Roots {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// What one GET may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_len: usize,
    pub timeout: Duration,
}

/// An HTTP(S) client; clones share one TLS configuration.
#[derive(Clone)]
pub struct WebClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebClient")
    }
}

impl Default for WebClient {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl WebClient {
    /// Trusts the Mozilla roots and `extra_roots` (a certificate that is not a valid root is skipped).
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Self {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        roots.add_parsable_certificates(extra_roots.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// Trusts the Mozilla roots and every certificate in the PEM files `paths` (a user's own CA, for a tracker or
    /// a .torrent server it signed). A file that cannot be read, or holds no certificate, is an error naming it.
    pub fn with_pem_roots(paths: &[std::path::PathBuf]) -> Result<Self, WebError> {
        use rustls::pki_types::pem::PemObject;
        let mut extra = Vec::new();
        for path in paths {
            let roots = |reason: String| WebError::Roots {
                path: path.clone(),
                reason,
            };
            let before = extra.len();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| roots(e.to_string()))? {
                extra.push(cert.map_err(|e| roots(e.to_string()))?);
            }
            if extra.len() == before {
                return Err(roots("no certificate in the file".into()));
            }
        }
        Ok(Self::new(&extra))
    }

    /// The body of a 200 answer to a GET of `url`, following redirects, within `bounds`.
    pub async fn get(&self, url: &str, bounds: Bounds) -> Result<Bytes, WebError> {
        let mut url = parse(url)?;
        let exchange = async {
            for _ in 0..=MAX_REDIRECTS {
                match self.get_once(&url, bounds.max_len).await? {
                    Answer::Body(body) => return Ok(body),
                    Answer::Redirect(location) => {
                        url = url
                            .join(&location)
                            .ok()
                            .filter(|u| matches!(u.scheme(), "http" | "https"))
                            .ok_or(WebError::BadRedirect)?;
                    }
                }
            }
            Err(WebError::Redirects)
        };
        tokio::time::timeout(bounds.timeout, exchange)
            .await
            .map_err(|_| WebError::Timeout(bounds.timeout))?
    }

    async fn get_once(&self, url: &Url, max_len: usize) -> Result<Answer, WebError> {
        let host = url
            .host()
            .ok_or_else(|| WebError::Url(url.to_string()))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| WebError::Url(url.to_string()))?;
        let (name, server_name) = match &host {
            url::Host::Domain(domain) => (
                domain.clone(),
                ServerName::try_from(domain.clone()).map_err(|_| WebError::Url(url.to_string()))?,
            ),
            url::Host::Ipv4(ip) => (ip.to_string(), ServerName::IpAddress((*ip).into())),
            url::Host::Ipv6(ip) => (ip.to_string(), ServerName::IpAddress((*ip).into())),
        };
        let tcp = TcpStream::connect((name.as_str(), port))
            .await
            .map_err(|source| WebError::Connect {
                host: name.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = hyper::Request::get(target)
            .header(HOST, authority)
            .header(USER_AGENT, crate::bt::wire::CLIENT_NAME)
            .body(Empty::<Bytes>::new())
            .map_err(|_| WebError::Url(url.to_string()))?;
        if url.scheme() == "https" {
            let tls = self
                .tls
                .connect(server_name, tcp)
                .await
                .map_err(|source| WebError::Tls { host: name, source })?;
            exchange(TokioIo::new(tls), request, max_len).await
        } else {
            exchange(TokioIo::new(tcp), request, max_len).await
        }
    }
}

enum Answer {
    Body(Bytes),
    Redirect(String),
}

fn parse(url: &str) -> Result<Url, WebError> {
    let parsed = Url::parse(url.trim()).map_err(|_| WebError::Url(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(WebError::Url(url.to_owned()));
    }
    Ok(parsed)
}

async fn exchange<I>(
    io: I,
    request: hyper::Request<Empty<Bytes>>,
    max_len: usize,
) -> Result<Answer, WebError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // The connection is driven beside the request and ends with it (the task ends when the exchange is dropped).
    let driver = tokio::spawn(connection);
    let answer = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        if status.is_redirection() {
            return match response.headers().get(LOCATION).map(|l| l.to_str()) {
                Some(Ok(location)) => Ok(Answer::Redirect(location.to_owned())),
                _ => Err(WebError::BadRedirect),
            };
        }
        if status != hyper::StatusCode::OK {
            return Err(WebError::Status(status.as_u16()));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_len as u64) {
            return Err(WebError::TooLarge(max_len));
        }
        let body = Limited::new(response.into_body(), max_len)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => WebError::Http(*e),
                Err(_) => WebError::TooLarge(max_len),
            })?;
        Ok(Answer::Body(body.to_bytes()))
    }
    .await;
    driver.abort();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_and_https_urls_are_fetched() {
        assert!(parse("https://example.org/a.torrent").is_ok());
        assert!(parse("http://[::1]:8080/announce?x=1").is_ok());
        for bad in [
            "ftp://example.org/a.torrent",
            "file:///etc/passwd",
            "https://user:pw@example.org/a",
            "http://",
            "not a url",
        ] {
            assert!(matches!(parse(bad), Err(WebError::Url(_))), "{bad}");
        }
    }
}
