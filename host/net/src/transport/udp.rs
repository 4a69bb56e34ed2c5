//! The QUIC endpoint's UDP socket, shared with protocols that are not QUIC.
//!
//! NAT traversal needs datagrams from the very socket QUIC uses: STUN requests (so the
//! mapped address STUN reports is the QUIC socket's own public address) and punch packets
//! (so the NAT mapping they open is the one a QUIC handshake will use). [`HookedUdpSocket`]
//! wraps quinn's socket: anyone may [`send`](HookedUdpSocket::send) a datagram from it, and
//! [`PacketHook`]s installed on it see each received datagram first and may take it, so
//! quinn never sees it. The transport knows no protocol but QUIC: the hooks (STUN answers,
//! punch packets) live with the NAT code that installs them.

use std::any::{Any, TypeId};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// Sees each datagram the QUIC socket receives before quinn does.
pub trait PacketHook: Send + Sync + 'static {
    /// True if the hook takes `packet` (quinn then never sees it). Called on the receive
    /// path: it must be quick and must not block.
    fn take(&self, packet: &[u8], from: SocketAddr) -> bool;
}

/// At most this many hooks: each costs a call per received datagram.
const MAX_HOOKS: usize = 8;

struct Installed {
    kind: TypeId,
    any: Arc<dyn Any + Send + Sync>,
    hook: Arc<dyn PacketHook>,
}

/// quinn's UDP socket with [`PacketHook`]s on its receive path.
pub struct HookedUdpSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    hooks: RwLock<Vec<Installed>>,
}

impl std::fmt::Debug for HookedUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedUdpSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HookedUdpSocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Arc<HookedUdpSocket> {
        Arc::new(HookedUdpSocket {
            inner,
            hooks: RwLock::default(),
        })
    }

    /// The socket's one hook of type `H`, installed on first use: every user of a kind of
    /// hook (all STUN transactions, say) shares one instance per socket.
    ///
    /// # Panics
    /// If more than [`MAX_HOOKS`] kinds are installed: hooks are a fixed set of protocols,
    /// not something that grows at run time.
    pub fn hook<H: PacketHook + Default>(&self) -> Arc<H> {
        let kind = TypeId::of::<H>();
        let found = |hooks: &[Installed]| {
            hooks
                .iter()
                .find(|h| h.kind == kind)
                .and_then(|h| h.any.clone().downcast::<H>().ok())
        };
        if let Some(h) = found(&self.hooks.read().expect("hooks lock")) {
            return h;
        }
        let mut hooks = self.hooks.write().expect("hooks lock");
        if let Some(h) = found(&hooks) {
            return h;
        }
        assert!(hooks.len() < MAX_HOOKS, "too many packet hook kinds");
        let hook = Arc::new(H::default());
        hooks.push(Installed {
            kind,
            any: hook.clone(),
            hook: hook.clone(),
        });
        hook
    }

    fn taken(&self, packet: &[u8], from: SocketAddr) -> bool {
        let hooks = self.hooks.read().expect("hooks lock");
        hooks.iter().any(|h| h.hook.take(packet, from))
    }

    /// Sends one datagram from the QUIC socket (STUN requests, punch packets, probes).
    pub async fn send(&self, packet: &[u8], to: SocketAddr) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: packet,
            segment_size: None,
            src_ip: None,
        };
        let mut poller = self.inner.clone().create_io_poller();
        loop {
            match self.inner.try_send(&transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await?
                }
                other => return other,
            }
        }
    }
}

impl AsyncUdpSocket for HookedUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut kept = 0;
            for i in 0..n {
                let m = meta[i];
                // Only single datagrams are offered to hooks (a GRO batch goes to quinn,
                // which drops what it cannot parse; STUN retransmits).
                if m.stride == m.len && self.taken(&bufs[i][..m.len], m.addr) {
                    continue;
                }
                if kept != i {
                    let (low, high) = bufs.split_at_mut(i);
                    if low[kept].len() < m.len {
                        // Cannot compact (never with quinn's equal buffers): deliver as is.
                        kept = i;
                    } else {
                        low[kept][..m.len].copy_from_slice(&high[0][..m.len]);
                        meta[kept] = m;
                    }
                }
                kept += 1;
            }
            if kept > 0 || n == 0 {
                return Poll::Ready(Ok(kept));
            }
            // Every datagram was taken: read on (Pending registers the waker).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct TakeZeros(Mutex<Vec<SocketAddr>>);

    impl PacketHook for TakeZeros {
        fn take(&self, packet: &[u8], from: SocketAddr) -> bool {
            let zero = packet.first() == Some(&0);
            if zero {
                self.0.lock().unwrap().push(from);
            }
            zero
        }
    }

    #[tokio::test]
    async fn one_hook_per_kind_and_it_takes_only_what_it_claims() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = HookedUdpSocket::new(
            quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket).unwrap(),
        );
        let a = s.hook::<TakeZeros>();
        let b = s.hook::<TakeZeros>();
        assert!(Arc::ptr_eq(&a, &b), "one instance per kind");
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(s.taken(&[0, 1], from));
        assert!(!s.taken(&[0x40, 1], from));
        assert_eq!(*a.0.lock().unwrap(), [from]);
    }

    /// A GSO batch arrives as one GRO buffer (several datagrams, `stride` apart) and goes to
    /// quinn whole, untouched by the hooks; a lone datagram a hook claims is taken out of the
    /// same receive call, and the wrapper reports the kernel's batch sizes as they are.
    #[tokio::test]
    async fn gro_batches_pass_through_whole_and_hooks_see_single_datagrams() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let s = HookedUdpSocket::new(
            quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket).unwrap(),
        );
        let taken = s.hook::<TakeZeros>();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = sender.local_addr().unwrap();
        let state = quinn::udp::UdpSocketState::new((&sender).into()).unwrap();
        if state.max_gso_segments() < 3 || s.max_receive_segments() < 3 {
            eprintln!("SKIPPED: no UDP GSO/GRO on this kernel");
            return;
        }
        let send = |contents: &[u8], segment_size: Option<usize>| {
            let t = Transmit {
                destination: to,
                ecn: None,
                contents,
                segment_size,
                src_ip: None,
            };
            state.send((&sender).into(), &t).unwrap();
        };
        send(&[0x40; 3000], Some(1000));
        send(&[0, 1, 2], None);
        send(&[0x41; 500], None);

        // As quinn's endpoint driver lays out its buffers: equal chunks, one per datagram slot.
        let slot = 1472 * s.max_receive_segments();
        let mut storage = vec![0u8; slot * quinn::udp::BATCH_SIZE];
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while got.len() < 2 {
                let mut bufs: Vec<IoSliceMut> =
                    storage.chunks_mut(slot).map(IoSliceMut::new).collect();
                let mut meta = vec![RecvMeta::default(); bufs.len()];
                let n = std::future::poll_fn(|cx| s.poll_recv(cx, &mut bufs, &mut meta))
                    .await
                    .unwrap();
                for (m, b) in meta.iter().zip(&bufs).take(n) {
                    got.push((m.len, m.stride, b[0]));
                }
            }
        })
        .await
        .expect("both kept datagrams arrive");
        assert_eq!(got, [(3000, 1000, 0x40), (500, 500, 0x41)]);
        assert_eq!(*taken.0.lock().unwrap(), [from]);
    }
}
