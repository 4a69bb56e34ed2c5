//! Relays across instances: the database side and the hop between two instances.
//!
//! Alice's line is at instance A, Bob's at B. A relay splices streams inside one process,
//! so A splices Alice's relay stream with a *hop*: a stream A opens to B, on B's ordinary
//! hub endpoint, under the namespace [`instance_relay_ns`]; B splices the hop with Bob's
//! relay stream. What authorises a hop is a *ticket*: 128 random bits A writes to
//! `hub_relay_tickets` (from, to, the instance it is for, an expiry) and announces to B
//! with a `NOTIFY` in the same transaction ([`crate::cluster::event::Event::RelayOffer`]).
//! Only the instances see tickets (through the database); peers see session ids of their
//! own instance. B takes a ticket once (`UPDATE ... WHERE NOT used AND expires > now()`),
//! only if it is for B. A dials B with a throw-away identity (one endpoint per target
//! instance: all instances present the one hub key, and an endpoint keeps one connection
//! per key) and pins the hub key, so the hop is TLS to a holder of the hub key; the bytes
//! it carries are the peers' own TLS records anyway.
//!
//! Quotas are counted here too, so two instances cannot each grant a peer its full quota:
//! `hub_relays` holds one row per party of each live relay (with the instance that
//! granted it: a dead instance's rows go with its lines), `hub_relay_usage` the bytes each
//! peer sent in its current hour.

use std::collections::HashMap;

use allpeers_hub_client::proto::{self, RelayReady};
use allpeers_model::PeerId;
use allpeers_net::service::{decode, encode};
use allpeers_net::transport::{RecvStream, SendStream};
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity, Namespace};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::cluster::event::Event;
use crate::store::StoreError;

/// How long a ticket may wait to be used: the target's answer, then both joins.
pub const TICKET_LIFETIME_SECS: i64 = 30;
/// Advisory lock class of the relay quota checks (one lock per peer inside it).
const LOCK_RELAY_SLOTS: i32 = 0x4150_0003;

/// The hop between instances (`allpeers/hub-instance-relay/1`).
pub fn instance_relay_ns() -> Namespace {
    Namespace::allpeers("hub-instance-relay", 1).expect("valid namespace")
}

/// The head of a hop: the ticket it is for. Answered with [`RelayReady`], then raw bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceJoin {
    pub ticket: [u8; 16],
}

/// What a taken ticket says.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub from: PeerId,
    pub to: PeerId,
}

/// Why a relay was not granted.
#[derive(Debug)]
pub enum SlotRefusal {
    Quota(String),
    Store(StoreError),
}

impl From<StoreError> for SlotRefusal {
    fn from(e: StoreError) -> Self {
        SlotRefusal::Store(e)
    }
}

impl From<tokio_postgres::Error> for SlotRefusal {
    fn from(e: tokio_postgres::Error) -> Self {
        SlotRefusal::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for SlotRefusal {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        SlotRefusal::Store(e.into())
    }
}

fn parse_peer(text: &str) -> Result<PeerId, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("peer id {text:?}")))
}

impl Cluster {
    /// Records the addresses the other instances dial for hops (see
    /// [`crate::config::PostgresConfig::instance_addresses`]).
    pub async fn set_addresses(&self, addresses: Vec<Address>) -> Result<(), StoreError> {
        let blob =
            postcard::to_allocvec(&addresses).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        *self.addresses.lock().unwrap() = blob;
        self.heartbeat().await?;
        Ok(())
    }

    async fn addresses_of(&self, instance: &str) -> Result<Vec<Address>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT addresses FROM hub_instances WHERE id = $1",
                &[&instance],
            )
            .await?;
        let blob: Option<Vec<u8>> = row.and_then(|r| r.get(0));
        match blob {
            None => Ok(Vec::new()),
            Some(b) => postcard::from_bytes(&b).map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    /// Takes one concurrent-relay slot of both peers cluster-wide (refused past `max`, or
    /// when either spent `budget` bytes this hour), recorded as relay `relay` of this
    /// instance. Serialised per peer (advisory locks, in a fixed order: no deadlock).
    pub async fn take_relay_slots(
        &self,
        relay: [u8; 16],
        peers: [PeerId; 2],
        max: usize,
        budget: u64,
    ) -> Result<(), SlotRefusal> {
        let mut texts = [peers[0].to_string(), peers[1].to_string()];
        texts.sort();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for t in &texts {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_RELAY_SLOTS, t],
            )
            .await?;
        }
        for t in &texts {
            let live: i64 = tx
                .query_one("SELECT COUNT(*) FROM hub_relays WHERE peer = $1", &[t])
                .await?
                .get(0);
            if live as usize >= max {
                return Err(SlotRefusal::Quota(format!(
                    "{t} already has {max} relays (the most at once)"
                )));
            }
            let spent: Option<i64> = tx
                .query_opt(
                    "SELECT bytes FROM hub_relay_usage
                     WHERE peer = $1 AND window_start > now() - interval '1 hour'",
                    &[t],
                )
                .await?
                .map(|r| r.get(0));
            if spent.unwrap_or(0) as u64 >= budget {
                return Err(SlotRefusal::Quota(format!(
                    "{t} used its relay budget of {budget} bytes this hour"
                )));
            }
        }
        for t in &texts {
            tx.execute(
                "INSERT INTO hub_relays (relay, peer, instance) VALUES ($1, $2, $3)",
                &[&relay.as_slice(), t, &&*self.instance],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Relay `relay` ended: its slots are free.
    pub async fn release_relay(&self, relay: [u8; 16]) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM hub_relays WHERE relay = $1",
                &[&relay.as_slice()],
            )
            .await?;
        Ok(())
    }

    /// Adds `bytes` that `peer` sent through a relay to its hour; returns its hour's total.
    pub async fn charge_relay(&self, peer: &PeerId, bytes: u64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let total: i64 = client
            .query_one(
                "INSERT INTO hub_relay_usage (peer, window_start, bytes) VALUES ($1, now(), $2)
                 ON CONFLICT (peer) DO UPDATE SET
                   bytes = CASE WHEN hub_relay_usage.window_start <= now() - interval '1 hour'
                                THEN excluded.bytes ELSE hub_relay_usage.bytes + excluded.bytes END,
                   window_start = CASE WHEN hub_relay_usage.window_start <= now() - interval '1 hour'
                                THEN now() ELSE hub_relay_usage.window_start END
                 RETURNING bytes",
                &[&peer.to_string(), &(bytes.min(i64::MAX as u64) as i64)],
            )
            .await?
            .get(0);
        Ok(total.max(0) as u64)
    }

    /// Writes a ticket for a relay from `from` to `to`, whose line `instance` holds, and
    /// announces it to that instance in the same transaction. Old tickets are pruned.
    pub async fn write_ticket(
        &self,
        ticket: [u8; 16],
        from: PeerId,
        to: PeerId,
        instance: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM hub_relay_tickets WHERE expires < now() - interval '1 minute'",
            &[],
        )
        .await?;
        tx.execute(
            "INSERT INTO hub_relay_tickets (ticket, from_peer, to_peer, instance, expires, used)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::BIGINT), false)",
            &[
                &ticket.as_slice(),
                &from.to_string(),
                &to.to_string(),
                &instance,
                &TICKET_LIFETIME_SECS,
            ],
        )
        .await?;
        let event = Event::RelayOffer {
            ticket,
            from,
            to,
            instance: instance.to_string(),
        };
        Self::notify(&tx, event.payload(&self.instance)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Tells the instance that wrote `ticket` whether its target agreed.
    pub async fn answer_ticket(&self, ticket: [u8; 16], accept: bool) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        Self::notify(
            &client,
            Event::RelayAnswer { ticket, accept }.payload(&self.instance),
        )
        .await
    }

    /// Uses `ticket` at this instance: `None` if it does not exist, is for another
    /// instance, was used already or expired. At most one caller ever gets `Some`.
    pub async fn take_ticket(&self, ticket: [u8; 16]) -> Result<Option<Ticket>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE hub_relay_tickets SET used = true
                 WHERE ticket = $1 AND instance = $2 AND NOT used AND expires > now()
                 RETURNING from_peer, to_peer",
                &[&ticket.as_slice(), &&*self.instance],
            )
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let from: String = r.get(0);
                let to: String = r.get(1);
                Ok(Some(Ticket {
                    from: parse_peer(&from)?,
                    to: parse_peer(&to)?,
                }))
            }
        }
    }

    /// Opens the hop to `instance` for `ticket`: dials it (pinning the hub key `hub`),
    /// sends the ticket and waits for its answer (ready once the target joined too).
    pub async fn open_hop(
        &self,
        instance: &str,
        hub: PeerId,
        ticket: [u8; 16],
        wait: std::time::Duration,
    ) -> Result<(SendStream, RecvStream), String> {
        let addresses = self
            .addresses_of(instance)
            .await
            .map_err(|e| e.to_string())?;
        if addresses.is_empty() {
            return Err(format!("instance {instance} recorded no address"));
        }
        let endpoint = self.hop_endpoint(instance).await?;
        for a in addresses {
            endpoint.add_peer_address(hub, a);
        }
        let (mut send, mut recv) = endpoint
            .open_stream(hub, &instance_relay_ns())
            .await
            .map_err(|e| format!("dialling instance {instance}: {e}"))?;
        let head = encode(&InstanceJoin { ticket }).map_err(|e| e.to_string())?;
        send.write_frame(&head, proto::RELAY_HEAD_LIMIT)
            .await
            .map_err(|e| e.to_string())?;
        let frame = tokio::time::timeout(wait, recv.read_frame(proto::RELAY_HEAD_LIMIT))
            .await
            .map_err(|_| format!("instance {instance} did not answer within {wait:?}"))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("instance {instance} closed the hop"))?;
        match decode::<RelayReady>(&frame).map_err(|e| e.to_string())? {
            RelayReady::Ready => Ok((send, recv)),
            RelayReady::Refused(why) => Err(why),
        }
    }

    /// The endpoint this instance dials `instance` with (made at first use, kept).
    async fn hop_endpoint(&self, instance: &str) -> Result<Endpoint, String> {
        let mut hops = self.hops.lock().await;
        if let Some(e) = hops.get(instance) {
            return Ok(e.clone());
        }
        // It dials only; a QUIC socket is still needed to dial over QUIC.
        let config = EndpointConfig {
            quic: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            tcp: None,
            ..EndpointConfig::default()
        };
        let endpoint = Endpoint::bind(Identity::generate(), config)
            .await
            .map_err(|e| format!("hop endpoint: {e}"))?;
        hops.insert(instance.to_string(), endpoint.clone());
        Ok(endpoint)
    }
}

impl Cluster {
    /// Drops the endpoint this instance dials `instance` with (it died: its connection
    /// would be reused until QUIC's idle timeout); the next hop dials afresh.
    pub async fn forget_hop_endpoint(&self, instance: &str) {
        if let Some(endpoint) = self.hops.lock().await.remove(instance) {
            endpoint.close();
        }
    }
}

/// One endpoint per instance dialled for hops.
pub(crate) type Hops = tokio::sync::Mutex<HashMap<String, Endpoint>>;
