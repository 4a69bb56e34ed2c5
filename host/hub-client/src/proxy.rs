//! Reaching the hub (and relays, which ride on the hub connection) through a proxy.
//!
//! Both kinds tunnel TCP, so a proxied hub connection is always the TCP transport:
//! * HTTP `CONNECT host:port` (RFC 9110 §9.3.6), optional Basic authentication;
//! * SOCKS5 (RFC 1928) with no authentication or username/password (RFC 1929).
//!
//! The endpoint dials plain TCP sockets, so a [`Forwarder`] listens on loopback and turns
//! each connection it accepts into a tunnel through the proxy; the endpoint dials the
//! forwarder with the hub's PeerId and runs TLS (key pinned) through the tunnel.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy to go through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProxyConfig {
    Http {
        addr: SocketAddr,
        auth: Option<(String, String)>,
    },
    Socks5 {
        addr: SocketAddr,
        auth: Option<(String, String)>,
    },
}

impl ProxyConfig {
    /// Parses `http://host:port`, `socks5://host:port`, with optional `user:pass@`.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let bad = || {
            ProxyError::Config(format!(
                "{url:?}: expected http://[user:pass@]ip:port or socks5://[user:pass@]ip:port"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => {
                let (u, p) = a.split_once(':').ok_or_else(bad)?;
                (Some((u.to_string(), p.to_string())), h)
            }
            None => (None, rest),
        };
        let addr: SocketAddr = hostport.parse().map_err(|_| bad())?;
        match scheme {
            "http" => Ok(ProxyConfig::Http { addr, auth }),
            "socks5" | "socks5h" => Ok(ProxyConfig::Socks5 { addr, auth }),
            _ => Err(bad()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            ProxyConfig::Http { addr, .. } | ProxyConfig::Socks5 { addr, .. } => *addr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy configuration: {0}")]
    Config(String),
    #[error("cannot reach the proxy at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("the proxy refused the tunnel to {target}: {reason}")]
    Refused { target: SocketAddr, reason: String },
    #[error("the proxy dropped the connection before the tunnel was up: {0}")]
    Dropped(String),
    #[error("the proxy broke the protocol: {0}")]
    Protocol(String),
    #[error("the proxy did not answer within {0:?}")]
    Timeout(Duration),
}

/// Largest HTTP response head we read from a proxy.
const HTTP_HEAD_LIMIT: usize = 8 * 1024;

/// Opens a TCP tunnel to `target` through `proxy`.
pub async fn connect_via(
    proxy: &ProxyConfig,
    target: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    tokio::time::timeout(timeout, connect_inner(proxy, target))
        .await
        .map_err(|_| ProxyError::Timeout(timeout))?
}

async fn connect_inner(proxy: &ProxyConfig, target: SocketAddr) -> Result<TcpStream, ProxyError> {
    let addr = proxy.addr();
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| ProxyError::Unreachable {
            addr,
            reason: e.to_string(),
        })?;
    let _ = s.set_nodelay(true);
    let io = |e: std::io::Error| ProxyError::Dropped(e.to_string());
    match proxy {
        ProxyConfig::Http { auth, .. } => {
            let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
            if let Some((u, p)) = auth {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes()).await.map_err(io)?;
            // Read the head byte by byte: nothing past it may be consumed (it is the hub's).
            let mut head = Vec::with_capacity(256);
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() >= HTTP_HEAD_LIMIT {
                    return Err(ProxyError::Protocol(format!(
                        "response head over {HTTP_HEAD_LIMIT} bytes"
                    )));
                }
                let n = s.read(&mut byte).await.map_err(io)?;
                if n == 0 {
                    return Err(ProxyError::Dropped("closed without an answer".into()));
                }
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head);
            let status = text.lines().next().unwrap_or_default().to_string();
            let mut parts = status.split_whitespace();
            let version = parts.next().unwrap_or_default();
            let code = parts.next().unwrap_or_default();
            if !version.starts_with("HTTP/1.") {
                return Err(ProxyError::Protocol(format!(
                    "not an HTTP answer: {status:?}"
                )));
            }
            if code != "200" {
                return Err(ProxyError::Refused {
                    target,
                    reason: status,
                });
            }
        }
        ProxyConfig::Socks5 { auth, .. } => {
            let greeting: &[u8] = if auth.is_some() {
                &[5, 2, 0, 2]
            } else {
                &[5, 1, 0]
            };
            s.write_all(greeting).await.map_err(io)?;
            let mut reply = [0u8; 2];
            s.read_exact(&mut reply).await.map_err(io)?;
            if reply[0] != 5 {
                return Err(ProxyError::Protocol(format!("SOCKS version {}", reply[0])));
            }
            match (reply[1], auth) {
                (0, _) => {}
                (2, Some((u, p))) => {
                    if u.len() > 255 || p.len() > 255 {
                        return Err(ProxyError::Config(
                            "SOCKS5 user or password too long".into(),
                        ));
                    }
                    let mut msg = vec![1, u.len() as u8];
                    msg.extend_from_slice(u.as_bytes());
                    msg.push(p.len() as u8);
                    msg.extend_from_slice(p.as_bytes());
                    s.write_all(&msg).await.map_err(io)?;
                    let mut r = [0u8; 2];
                    s.read_exact(&mut r).await.map_err(io)?;
                    if r[1] != 0 {
                        return Err(ProxyError::Refused {
                            target,
                            reason: "SOCKS5 authentication failed".into(),
                        });
                    }
                }
                (m, _) => {
                    return Err(ProxyError::Refused {
                        target,
                        reason: format!("no acceptable SOCKS5 authentication method ({m})"),
                    });
                }
            }
            let mut req = vec![5, 1, 0];
            match target {
                SocketAddr::V4(a) => {
                    req.push(1);
                    req.extend_from_slice(&a.ip().octets());
                }
                SocketAddr::V6(a) => {
                    req.push(4);
                    req.extend_from_slice(&a.ip().octets());
                }
            }
            req.extend_from_slice(&target.port().to_be_bytes());
            s.write_all(&req).await.map_err(io)?;
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await.map_err(io)?;
            if head[1] != 0 {
                return Err(ProxyError::Refused {
                    target,
                    reason: format!("SOCKS5 reply code {}", head[1]),
                });
            }
            let rest = match head[3] {
                1 => 4 + 2,
                4 => 16 + 2,
                3 => {
                    let mut len = [0u8; 1];
                    s.read_exact(&mut len).await.map_err(io)?;
                    len[0] as usize + 2
                }
                t => return Err(ProxyError::Protocol(format!("SOCKS5 address type {t}"))),
            };
            let mut skip = vec![0u8; rest];
            s.read_exact(&mut skip).await.map_err(io)?;
        }
    }
    Ok(s)
}

/// A loopback listener that tunnels each accepted connection to `target` through a proxy.
pub struct Forwarder {
    local: SocketAddr,
    last_error: Arc<Mutex<Option<ProxyError>>>,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forwarder {
    pub async fn start(
        proxy: ProxyConfig,
        target: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<Forwarder> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let local = listener.local_addr()?;
        let last_error: Arc<Mutex<Option<ProxyError>>> = Default::default();
        let errors = last_error.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let proxy = proxy.clone();
                let errors = errors.clone();
                tokio::spawn(async move {
                    match connect_via(&proxy, target, timeout).await {
                        Ok(mut tunnel) => {
                            *errors.lock().unwrap() = None;
                            let _ = inbound.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut tunnel).await;
                        }
                        Err(e) => {
                            tracing::warn!(proxy = %proxy.addr(), %target, "proxy tunnel failed: {e}");
                            *errors.lock().unwrap() = Some(e);
                        }
                    }
                });
            }
        });
        Ok(Forwarder {
            local,
            last_error,
            task,
        })
    }

    /// The loopback address to dial instead of the target.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Why the last tunnel failed (cleared by a success).
    pub fn last_error(&self) -> Option<ProxyError> {
        self.last_error.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_urls() {
        assert_eq!(
            ProxyConfig::parse("http://127.0.0.1:8888").unwrap(),
            ProxyConfig::Http {
                addr: "127.0.0.1:8888".parse().unwrap(),
                auth: None
            }
        );
        assert_eq!(
            ProxyConfig::parse("socks5://u:p@127.0.0.1:1080/").unwrap(),
            ProxyConfig::Socks5 {
                addr: "127.0.0.1:1080".parse().unwrap(),
                auth: Some(("u".into(), "p".into()))
            }
        );
        assert!(ProxyConfig::parse("ftp://127.0.0.1:1").is_err());
        assert!(ProxyConfig::parse("http://nohost").is_err());
    }
}
