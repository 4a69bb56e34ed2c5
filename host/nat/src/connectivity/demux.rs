//! STUN on the QUIC socket: a [`PacketHook`] that takes the answers to our own STUN
//! transactions out of the QUIC socket's receive path before quinn sees them, and sends STUN
//! requests through the same socket. So the mapped address STUN reports is the QUIC
//! socket's own public address (what a peer must dial, or punch towards).
//!
//! Demultiplexing: a STUN message starts with two zero bits and carries the magic cookie at
//! bytes 4..8; QUIC packets set the "fixed bit" (0x40) unless both ends agreed to grease it.
//! Only a packet that looks like STUN *and* carries the transaction id of one of our
//! outstanding requests (96 random bits) is taken; everything else goes on untouched.
//! Late duplicates of an answered transaction (a retransmitted request answered twice) are
//! dropped too, so quinn never answers them with a stateless reset.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use allpeers_net::Endpoint;
use allpeers_net::transport::udp::{HookedUdpSocket, PacketHook};
use tokio::sync::oneshot;

use super::stun::{self, BindingResponse, Retransmit, StunError};

/// Answered transactions remembered to drop their late duplicates.
const RECENT: usize = 64;

type Waiter = oneshot::Sender<(Vec<u8>, SocketAddr)>;

/// Our outstanding STUN transactions on one socket: the hook.
#[derive(Default)]
pub struct StunTransactions {
    inner: Mutex<Transactions>,
}

#[derive(Default)]
struct Transactions {
    waiting: HashMap<[u8; 12], Waiter>,
    recent: VecDeque<[u8; 12]>,
}

/// The transaction id of a packet that looks like STUN.
pub(crate) fn stun_transaction(packet: &[u8]) -> Option<[u8; 12]> {
    if packet.len() < 20 || packet.len() > stun::MAX_PACKET || packet[0] & 0xC0 != 0 {
        return None;
    }
    if packet[4..8] != rtc_stun::message::MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    packet[8..20].try_into().ok()
}

impl PacketHook for StunTransactions {
    /// True if `packet` answers one of our transactions (or is a late duplicate of an
    /// answered one): then it is consumed.
    fn take(&self, packet: &[u8], from: SocketAddr) -> bool {
        let Some(id) = stun_transaction(packet) else {
            return false;
        };
        let mut t = self.inner.lock().expect("stun transactions lock");
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
}

/// STUN through the QUIC socket.
#[derive(Clone, Debug)]
pub struct StunDemux {
    socket: Arc<HookedUdpSocket>,
    transactions: Arc<StunTransactions>,
}

impl std::fmt::Debug for StunTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StunTransactions")
    }
}

impl StunDemux {
    /// STUN on the endpoint's QUIC socket (None without QUIC).
    pub fn of(endpoint: &Endpoint) -> Option<StunDemux> {
        endpoint.quic_socket().map(StunDemux::on)
    }

    pub fn on(socket: Arc<HookedUdpSocket>) -> StunDemux {
        StunDemux {
            transactions: socket.hook::<StunTransactions>(),
            socket,
        }
    }

    /// The socket, to send other datagrams from it.
    pub fn socket(&self) -> &Arc<HookedUdpSocket> {
        &self.socket
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
            .inner
            .lock()
            .expect("stun transactions lock")
            .waiting
            .insert(id, tx);
        // Forgets the transaction however this future ends (also when it is dropped).
        let _pending = Pending {
            transactions: &self.transactions,
            id,
        };
        let start = tokio::time::Instant::now();
        let outcome = async {
            for at in schedule.sends.iter().filter(|at| **at < schedule.total) {
                // Wait for the next send time, unless the answer comes first.
                if let Ok(got) = tokio::time::timeout_at(start + *at, &mut rx).await {
                    return got.map_err(|_| StunError::Io("the socket went away".into()));
                }
                self.socket
                    .send(&request, server)
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
    transactions: &'a StunTransactions,
    id: [u8; 12],
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.transactions.inner.lock() {
            t.waiting.remove(&self.id);
        }
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

    fn demux() -> StunDemux {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let runtime = quinn::TokioRuntime;
        StunDemux::on(HookedUdpSocket::new(
            quinn::Runtime::wrap_udp_socket(&runtime, socket).unwrap(),
        ))
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
        assert!(d.transactions.inner.lock().unwrap().waiting.is_empty());
        // An answer to a live transaction is taken (once); a late duplicate is dropped too;
        // anything else passes.
        let id = stun::new_transaction();
        let (tx, _rx) = oneshot::channel();
        d.transactions.inner.lock().unwrap().waiting.insert(id, tx);
        let answer = stun::binding_request(id, 0);
        assert!(d.transactions.take(&answer, to));
        assert!(d.transactions.take(&answer, to), "late duplicate");
        assert!(
            !d.transactions
                .take(&stun::binding_request(stun::new_transaction(), 0), to)
        );
        let mut quic = answer.clone();
        quic[0] = 0x40;
        assert!(!d.transactions.take(&quic, to));
    }
}
