//! The events instances send each other on [`CHANNEL`] (see [`crate::cluster`]).

use std::net::SocketAddr;

use allpeers_hub_client::proto::PeerStatus;
use allpeers_model::PeerId;
use allpeers_net::Address;
use serde::{Deserialize, Serialize};

/// The one `LISTEN`/`NOTIFY` channel of a hub's instances.
pub const CHANNEL: &str = "allpeers_hub";
/// PostgreSQL refuses payloads of 8000 bytes or more.
pub const MAX_PAYLOAD: usize = 7999;

/// What a presence line shows of its peer (the mirror's copy of a remote line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineState {
    pub observed: SocketAddr,
    pub addresses: Vec<Address>,
    pub accepts_relays: bool,
    pub status: PeerStatus,
    /// A guest line ([`crate::guest`]): not presence, never announced; recorded so a signal
    /// to the guest reaches the instance holding its line.
    pub guest: bool,
}

/// One change, as sent on [`CHANNEL`] (postcard, then base64: payloads are text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// `peer`'s line `line` is up at the sender, or its state changed.
    Line {
        peer: PeerId,
        line: u64,
        state: LineState,
    },
    /// `peer`'s line `line` ended.
    Down { peer: PeerId, line: u64 },
    /// `watcher`'s watch list changed (read it from `hub_watches`: a list of 4096 peers
    /// does not fit a payload).
    Watches { watcher: PeerId },
    /// A letter waits for `to` (sent in the deposit's transaction).
    MailWaiting { to: PeerId },
    /// A connection signal for `to`, whose line is held by another instance.
    Signal {
        to: PeerId,
        from: PeerId,
        observed: Option<SocketAddr>,
        body: Vec<u8>,
    },
    /// An instance died (or restarted): its lines are gone.
    Gone { instance: String },
    /// A relay from `from` to `to`, whose line `instance` holds, with the ticket the
    /// requester's instance wrote (sent in the ticket's transaction; see
    /// [`crate::cluster::relay`]). `instance` offers it to `to`.
    RelayOffer {
        ticket: [u8; 16],
        from: PeerId,
        to: PeerId,
        instance: String,
    },
    /// The target of `ticket`'s relay agreed or not (to the instance that wrote it).
    RelayAnswer { ticket: [u8; 16], accept: bool },
    /// A mail was queued for the e-mail gateway (sent in the enqueue's transaction): the
    /// other instances' delivery workers look at the queue.
    MailQueued,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: Event,
}

impl Event {
    /// The `NOTIFY` payload, from instance `origin`. Bounded: signals are at most
    /// [`allpeers_hub_client::proto::MAX_SIGNAL`] bytes, states at most 16 addresses and
    /// a bounded status (a test checks the largest fit [`MAX_PAYLOAD`]).
    pub fn payload(self, origin: &str) -> String {
        let envelope = Envelope {
            origin: origin.to_string(),
            event: self,
        };
        let bytes = postcard::to_allocvec(&envelope).unwrap_or_default();
        data_encoding::BASE64.encode(&bytes)
    }

    pub fn parse(payload: &str) -> Option<(String, Event)> {
        if payload.len() > MAX_PAYLOAD {
            return None;
        }
        let bytes = data_encoding::BASE64.decode(payload.as_bytes()).ok()?;
        let e: Envelope = postcard::from_bytes(&bytes).ok()?;
        Some((e.origin, e.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_hub_client::proto::{MAX_ADDRESSES, MAX_SIGNAL, MAX_STATUS_TEXT};
    use allpeers_net::Identity;

    #[test]
    fn the_largest_events_fit_a_notify_payload() {
        let peer = Identity::generate().peer_id();
        let observed: SocketAddr = "[2001:db8::1]:65535".parse().unwrap();
        let instance = "i".repeat(64);
        let signal = Event::Signal {
            to: peer,
            from: peer,
            observed: Some(observed),
            body: vec![0xff; MAX_SIGNAL],
        }
        .payload(&instance);
        let state = LineState {
            observed,
            addresses: vec![Address::quic(observed); MAX_ADDRESSES],
            accepts_relays: true,
            status: PeerStatus {
                text: "\u{10ffff}".repeat(MAX_STATUS_TEXT / 4),
                ..PeerStatus::default()
            },
            guest: false,
        };
        let line = Event::Line {
            peer,
            line: u64::MAX,
            state,
        }
        .payload(&instance);
        for p in [signal, line] {
            assert!(p.len() <= MAX_PAYLOAD, "{} bytes", p.len());
            assert!(Event::parse(&p).is_some());
        }
        assert!(Event::parse(&"A".repeat(MAX_PAYLOAD + 1)).is_none());
        assert!(Event::parse("not base64!").is_none());
    }
}
