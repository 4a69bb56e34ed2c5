//! STUN on the QUIC socket: a wrapper around quinn's UDP socket that takes the answers to
//! our own STUN transactions out of the receive path before quinn sees them, and sends
//! STUN requests through the same socket. So the mapped address STUN reports is the QUIC
//! socket's own public address (what a peer must dial, or punch towards).
//!
//! Demultiplexing: a STUN message starts with two zero bits and carries the magic cookie at
//! bytes 4..8; QUIC packets set the "fixed bit" (0x40) unless both ends agreed to grease it.
//! Only a packet that looks like STUN *and* carries the transaction id of one of our
//! outstanding requests (96 random bits) is taken; everything else goes to quinn untouched.
//! Late duplicates of an answered transaction (a retransmitted request answered twice) are
//! dropped too, so quinn never answers them with a stateless reset.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::oneshot;

use super::stun::{self, BindingResponse, Retransmit, StunError};

/// Answered transactions remembered to drop their late duplicates.
const RECENT: usize = 64;

type Waiter = oneshot::Sender<(Vec<u8>, SocketAddr)>;

#[derive(Default)]
struct Transactions {
    waiting: HashMap<[u8; 12], Waiter>,
    recent: VecDeque<[u8; 12]>,
}

/// The QUIC endpoint's socket with STUN taken out.
pub struct StunDemux {
    inner: Arc<dyn AsyncUdpSocket>,
    transactions: Mutex<Transactions>,
}

impl std::fmt::Debug for StunDemux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StunDemux")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The transaction id of a packet that looks like STUN.
fn stun_transaction(packet: &[u8]) -> Option<[u8; 12]> {
    if packet.len() < 20 || packet.len() > stun::MAX_PACKET || packet[0] & 0xC0 != 0 {
        return None;
    }
    if packet[4..8] != rtc_stun::message::MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    packet[8..20].try_into().ok()
}

impl StunDemux {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Arc<StunDemux> {
        Arc::new(StunDemux {
            inner,
            transactions: Mutex::default(),
        })
    }

    /// True if `packet` was the answer to one of our transactions, or a peer's punch
    /// packet (`crate::connector::punch`): then it is consumed.
    fn take(&self, packet: &[u8], from: SocketAddr) -> bool {
        let Some(id) = stun_transaction(packet) else {
            return false;
        };
        if crate::connector::punch::parse(packet).is_some() {
            return true;
        }
        let mut t = self.transactions.lock().expect("stun demux lock");
        if let Some(waiter) = t.waiting.remove(&id) {
            let _ = waiter.send((packet.to_vec(), from));
            t.recent.push_back(id);
            if t.recent.len() > RECENT {
                t.recent.pop_front();
            }
            return true;
        }
        t.recent.contains(&id)
    }

    /// Sends one datagram from the QUIC socket (STUN requests, punch packets, probes).
    pub(crate) async fn send(&self, packet: &[u8], to: SocketAddr) -> io::Result<()> {
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

    /// One binding transaction from the QUIC socket (retransmitted per `schedule`).
    pub async fn binding(
        &self,
        server: SocketAddr,
        change: u8,
        schedule: &Retransmit,
    ) -> Result<(BindingResponse, SocketAddr), StunError> {
        let id = stun::new_transaction();
        let request = stun::binding_request(id, change);
        let (tx, mut rx) = oneshot::channel();
        self.transactions
            .lock()
            .expect("stun demux lock")
            .waiting
            .insert(id, tx);
        // Forgets the transaction however this future ends (also when it is dropped).
        let _pending = Pending { demux: self, id };
        let start = tokio::time::Instant::now();
        let outcome = async {
            for at in schedule.sends.iter().filter(|at| **at < schedule.total) {
                // Wait for the next send time, unless the answer comes first.
                if let Ok(got) = tokio::time::timeout_at(start + *at, &mut rx).await {
                    return got.map_err(|_| StunError::Io("the socket went away".into()));
                }
                self.send(&request, server)
                    .await
                    .map_err(|e| StunError::Io(e.to_string()))?;
            }
            match tokio::time::timeout_at(start + schedule.total, &mut rx).await {
                Ok(got) => got.map_err(|_| StunError::Io("the socket went away".into())),
                Err(_) => Err(StunError::Timeout(schedule.total)),
            }
        };
        let (packet, from) = outcome.await?;
        Ok((stun::parse_binding_response(&packet, &id)?, from))
    }
}

struct Pending<'a> {
    demux: &'a StunDemux,
    id: [u8; 12],
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.demux.transactions.lock() {
            t.waiting.remove(&self.id);
        }
    }
}

impl AsyncUdpSocket for StunDemux {
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
                // Only single datagrams (a GRO batch of STUN answers goes to quinn, which
                // drops it; the transaction retransmits).
                let ours = m.stride == m.len && self.take(&bufs[i][..m.len], m.addr);
                if ours {
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
            // Everything was ours: read on (Pending registers the waker).
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

    #[test]
    fn only_stun_looking_packets_have_a_transaction() {
        let id = stun::new_transaction();
        let req = stun::binding_request(id, 0);
        assert_eq!(stun_transaction(&req), Some(id));
        let mut quic = req.clone();
        quic[0] |= 0x40;
        assert_eq!(stun_transaction(&quic), None, "the QUIC fixed bit");
        let mut cookie = req.clone();
        cookie[5] ^= 1;
        assert_eq!(stun_transaction(&cookie), None);
        assert_eq!(stun_transaction(&req[..19]), None);
    }

    fn demux() -> Arc<StunDemux> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let runtime = quinn::TokioRuntime;
        StunDemux::new(quinn::Runtime::wrap_udp_socket(&runtime, socket).unwrap())
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_forgotten_and_an_answer_is_taken_once() {
        let d = demux();
        // A "server" that never answers: the transaction is dropped by an outer timeout.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = silent.local_addr().unwrap();
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            d.binding(to, 0, &Retransmit::default()),
        )
        .await;
        assert!(dropped.is_err());
        assert!(d.transactions.lock().unwrap().waiting.is_empty());
        // An answer to a live transaction is taken (once); a late duplicate is dropped too;
        // anything else passes.
        let id = stun::new_transaction();
        let (tx, _rx) = oneshot::channel();
        d.transactions.lock().unwrap().waiting.insert(id, tx);
        let answer = stun::binding_request(id, 0);
        assert!(d.take(&answer, to));
        assert!(d.take(&answer, to), "late duplicate");
        assert!(!d.take(&stun::binding_request(stun::new_transaction(), 0), to));
        let mut quic = answer.clone();
        quic[0] = 0x40;
        assert!(!d.take(&quic, to));
    }
}
