//! Guest lines to the home hubs of contacts homed elsewhere (issue 18, cross-hub reach).
//!
//! A contact's home hub (its PeerId and addresses) comes from the invite code that
//! introduced it or from the contact's own signed letter saying where it lives
//! (`ContactPayload::Home`); it is kept on the contact's Peer resource. To reach such a
//! contact the node opens a *guest line* to that hub, lazily: a hub client with
//! [`HubClientConfig::guest`] whose TLS handshake must prove the hub's PeerId (a hub
//! presenting another key is refused) and whose directory answers are checked against that
//! key. Through it go the contact's presence (watched there, mutual consent as at home),
//! connection signals, relays and letters for the contact's mailbox. A line nobody watches
//! through closes after [`IDLE`]; at most [`MAX_FOREIGN_HUBS`] are open.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use allpeers_hub_client::proto::DirectoryRecord;
use allpeers_hub_client::{
    HubClient, HubClientConfig, HubError, HubState, NameCertificate, RefuseAll, WatchHolder,
};
use allpeers_model::PeerId;
use allpeers_net::{Address, Endpoint};

/// Most foreign hubs with a line open at once.
pub const MAX_FOREIGN_HUBS: usize = 16;
/// A line without watches closes after this long unused.
pub const IDLE: Duration = Duration::from_secs(90);
/// How long a send waits for a fresh line to come up.
const OPEN_WAIT: Duration = Duration::from_secs(5);
/// Most contacts whose home hub is remembered in memory (all contacts, in practice).
const MAX_KNOWN: usize = 16_384;

/// Where a peer lives: its home hub's PeerId and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeHub {
    pub peer: PeerId,
    pub addresses: Vec<Address>,
}

impl HomeHub {
    /// `PeerId addr addr…` (the form kept on a contact's Peer resource).
    pub fn to_text(&self) -> String {
        let mut out = self.peer.to_string();
        for a in &self.addresses {
            out.push(' ');
            out.push_str(&a.to_string());
        }
        out
    }

    pub fn parse(text: &str) -> Option<HomeHub> {
        let mut parts = text.split_whitespace();
        let peer = parts.next()?.parse().ok()?;
        let addresses: Vec<Address> = parts
            .filter_map(|a| parse_address(a).ok())
            .take(allpeers_hub_client::proto::MAX_ADDRESSES)
            .collect();
        (!addresses.is_empty()).then_some(HomeHub { peer, addresses })
    }

    /// From an invite's or a letter's `(PeerId, ["quic://…"])`; bad addresses are skipped.
    pub fn from_parts(peer: PeerId, addresses: &[String]) -> Option<HomeHub> {
        let addresses: Vec<Address> = addresses
            .iter()
            .filter_map(|a| parse_address(a).ok())
            .take(allpeers_hub_client::proto::MAX_ADDRESSES)
            .collect();
        (!addresses.is_empty()).then_some(HomeHub { peer, addresses })
    }
}

/// `name@hub` of `peer` from a certificate it sent about itself, when `hub` (the home hub it
/// named) signed it for that peer: a forged or borrowed certificate gives no name.
pub fn certified_name(cert: &NameCertificate, hub: &PeerId, peer: &PeerId) -> Option<String> {
    (cert.verify(hub) && cert.peer == *peer).then(|| cert.full_name())
}

/// `quic://ip:port` or `tcp://ip:port`.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let bad = || format!("{text:?}: expected quic://ip:port or tcp://ip:port");
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    let addr = rest.parse().map_err(|_| bad())?;
    match scheme {
        "quic" => Ok(Address::quic(addr)),
        "tcp" => Ok(Address::tcp(addr)),
        _ => Err(bad()),
    }
}

struct Line {
    client: HubClient,
    /// The addresses it dials.
    addresses: Vec<Address>,
    last_used: Instant,
    /// Contacts watched through this line.
    watches: BTreeSet<PeerId>,
}

/// Called with each guest line opened (the connector answers signals on it, the daemon
/// forwards its presence reports).
pub type OnOpen = Box<dyn Fn(&HubClient) + Send + Sync>;

/// The node's guest lines.
pub struct ForeignHubs {
    endpoint: Endpoint,
    /// Our own home hub (contacts homed there need no guest line).
    home: Option<PeerId>,
    homes: Mutex<HashMap<PeerId, HomeHub>>,
    /// Hub names and the keys that signed certificates under them, first seen first kept
    /// ([`ForeignHubs::learn_hub_key`]).
    hub_keys: Mutex<HashMap<String, PeerId>>,
    lines: tokio::sync::Mutex<HashMap<PeerId, Line>>,
    on_open: OnceLock<OnOpen>,
}

impl ForeignHubs {
    pub fn new(endpoint: Endpoint, home: Option<PeerId>) -> Arc<ForeignHubs> {
        Arc::new(ForeignHubs {
            endpoint,
            home,
            homes: Default::default(),
            hub_keys: Default::default(),
            lines: Default::default(),
            on_open: OnceLock::new(),
        })
    }

    /// Sets what is done with each line opened (once, at start).
    pub fn on_open(&self, f: OnOpen) {
        let _ = self.on_open.set(f);
    }

    /// Remembers where `contact` lives. A contact homed at our own hub needs no guest line.
    pub fn learn(&self, contact: PeerId, home: HomeHub) {
        let mut homes = self.homes.lock().expect("homes lock");
        if Some(home.peer) == self.home {
            homes.remove(&contact);
        } else if homes.len() < MAX_KNOWN || homes.contains_key(&contact) {
            homes.insert(contact, home);
        }
    }

    /// The home hub of `contact` when it is not ours.
    pub fn home_of(&self, contact: &PeerId) -> Option<HomeHub> {
        self.homes.lock().expect("homes lock").get(contact).cloned()
    }

    /// Remembers that `key` signs certificates as hub `hub_name` (from a certificate that
    /// verified with it), so `name@hub_name` can be resolved at that hub without an invite.
    /// Hub names are not unique (any hub may call itself anything), so the first key seen
    /// for a name is kept and a later, different one is refused: trust on first use, as
    /// with SSH host keys. Our own hub's name never maps to another key.
    /// True when `key` is the key kept for `hub_name` (worth keeping in the store: every
    /// key kept there for a name is then the first one, and a restart learns it first).
    pub fn learn_hub_key(&self, hub_name: &str, key: PeerId) -> bool {
        let mut keys = self.hub_keys.lock().expect("hub keys lock");
        match keys.get(hub_name) {
            Some(known) if *known != key => {
                allpeers_log::marrow!(
                    hub_name,
                    ?key,
                    ?known,
                    "a certificate names another key for a hub we know: kept the first"
                );
                false
            }
            Some(_) => true,
            None if Some(key) == self.home || keys.len() >= MAX_KNOWN => false,
            None => {
                keys.insert(hub_name.to_string(), key);
                true
            }
        }
    }

    /// The key of the hub called `hub_name` (folded), when a certificate taught it.
    pub fn hub_key(&self, hub_name: &str) -> Option<PeerId> {
        self.hub_keys
            .lock()
            .expect("hub keys lock")
            .get(hub_name)
            .copied()
    }

    /// The addresses of hub `key` that a contact homed there gave us (perhaps old).
    pub fn known_addresses(&self, key: &PeerId) -> Option<Vec<Address>> {
        self.homes
            .lock()
            .expect("homes lock")
            .values()
            .find(|h| h.peer == *key)
            .map(|h| h.addresses.clone())
    }

    /// Looks `name@hub` up in the directory of `home` (the hub by that name), over a guest
    /// line; the answer is checked against `home`'s key by the hub client.
    pub async fn resolve_at(
        &self,
        home: &HomeHub,
        full_name: &str,
    ) -> Result<Option<DirectoryRecord>, HubError> {
        self.line(home).await?.resolve(full_name).await
    }

    pub fn is_foreign(&self, contact: &PeerId) -> bool {
        self.homes.lock().expect("homes lock").contains_key(contact)
    }

    /// The guest line to `contact`'s home hub, up (opened if need be); `None` when the
    /// contact is homed at our hub or nowhere we know.
    pub async fn line_for(&self, contact: &PeerId) -> Option<Result<HubClient, HubError>> {
        let home = self.home_of(contact)?;
        Some(self.line(&home).await)
    }

    /// The line to `home`, up (waiting at most [`OPEN_WAIT`] for a new one).
    async fn line(&self, home: &HomeHub) -> Result<HubClient, HubError> {
        let client = self.client(home).await?;
        if !client.wait_online(OPEN_WAIT).await {
            let why = client
                .status()
                .last_error
                .unwrap_or_else(|| "no answer".into());
            return Err(HubError::Config(format!(
                "the guest line to hub {:?} did not come up: {why}",
                home.peer
            )));
        }
        Ok(client)
    }

    /// The client of the line to `home`, started if need be (it comes up in the background).
    async fn client(&self, home: &HomeHub) -> Result<HubClient, HubError> {
        let client = {
            let mut lines = self.lines.lock().await;
            // A hub that moved (its DHT record says so) gets a new line if the old one is
            // down; its watches go with it.
            let mut watches = BTreeSet::new();
            if let Some(line) = lines.get(&home.peer)
                && line.addresses != home.addresses
                && line.client.status().state != HubState::Online
                && let Some(old) = lines.remove(&home.peer)
            {
                old.client.stop();
                watches = old.watches;
            }
            if let Some(line) = lines.get_mut(&home.peer) {
                line.last_used = Instant::now();
                line.client.clone()
            } else {
                if lines.len() >= MAX_FOREIGN_HUBS && !evict_idlest(&mut lines) {
                    return Err(HubError::Config(format!(
                        "guest lines to {MAX_FOREIGN_HUBS} other hubs are open and watched"
                    )));
                }
                let mut config = HubClientConfig::new(home.peer, home.addresses.clone());
                config.guest = true;
                // A guest line takes no relay offers (the hub sends none to guests).
                let client =
                    HubClient::start(self.endpoint.clone(), config, Arc::new(RefuseAll)).await?;
                allpeers_log::flesh!(hub = ?home.peer, "guest line opened");
                if let Some(f) = self.on_open.get() {
                    f(&client);
                }
                if !watches.is_empty() {
                    client
                        .watch(
                            WatchHolder::Contacts,
                            &watches.iter().copied().collect::<Vec<_>>(),
                        )
                        .await;
                }
                lines.insert(
                    home.peer,
                    Line {
                        client: client.clone(),
                        addresses: home.addresses.clone(),
                        last_used: Instant::now(),
                        watches,
                    },
                );
                client
            }
        };
        Ok(client)
    }

    /// Watches contacts homed elsewhere at their home hubs (others are skipped: our own hub
    /// watches them). Kept across the line's reconnects.
    pub async fn watch(&self, contacts: &[PeerId]) {
        let mut by_hub: HashMap<PeerId, (HomeHub, Vec<PeerId>)> = HashMap::new();
        for c in contacts {
            if let Some(home) = self.home_of(c) {
                by_hub
                    .entry(home.peer)
                    .or_insert_with(|| (home, Vec::new()))
                    .1
                    .push(*c);
            }
        }
        for (hub, (home, peers)) in by_hub {
            // Not waiting for the line: the client sends its watches whenever it comes up.
            let client = match self.client(&home).await {
                Ok(c) => c,
                Err(e) => {
                    allpeers_log::flesh!(?hub, "no guest line for watching: {e}");
                    continue;
                }
            };
            if let Some(line) = self.lines.lock().await.get_mut(&hub) {
                line.watches.extend(peers.iter().copied());
            }
            client.watch(WatchHolder::Contacts, &peers).await;
        }
    }

    pub async fn unwatch(&self, contacts: &[PeerId]) {
        let mut lines = self.lines.lock().await;
        for c in contacts {
            let Some(home) = self.home_of(c) else {
                continue;
            };
            if let Some(line) = lines.get_mut(&home.peer)
                && line.watches.remove(c)
            {
                line.last_used = Instant::now();
                line.client.unwatch(WatchHolder::Contacts, &[*c]).await;
            }
        }
    }

    /// Closes the lines idle for [`IDLE`] with nothing watched through them.
    pub async fn sweep(&self) {
        let mut lines = self.lines.lock().await;
        lines.retain(|hub, line| {
            let keep = !line.watches.is_empty() || line.last_used.elapsed() < IDLE;
            if !keep {
                allpeers_log::flesh!(?hub, "idle guest line closed");
                line.client.stop();
            }
            keep
        });
    }

    /// Stops every line (the node goes offline).
    pub async fn stop(&self) {
        for (_, line) in self.lines.lock().await.drain() {
            line.client.stop();
        }
    }
}

/// Closes the least recently used line with no watches; false when every line is watched.
fn evict_idlest(lines: &mut HashMap<PeerId, Line>) -> bool {
    let idlest = lines
        .iter()
        .filter(|(_, l)| l.watches.is_empty())
        .min_by_key(|(_, l)| l.last_used)
        .map(|(hub, _)| *hub);
    match idlest.and_then(|hub| lines.remove(&hub)) {
        Some(line) => {
            line.client.stop();
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_certificate_the_named_hub_signed_for_the_sender_gives_a_name() {
        let hub = allpeers_net::Identity::generate();
        let liar = allpeers_net::Identity::generate();
        let peer = allpeers_net::Identity::generate().peer_id();
        let other = allpeers_net::Identity::generate().peer_id();
        let cert = NameCertificate::issue(&hub, "two.test", "bob", peer);
        assert_eq!(
            certified_name(&cert, &hub.peer_id(), &peer).as_deref(),
            Some("bob@two.test")
        );
        // Signed by another key than the hub it names (a hub lying about another's user).
        let forged = NameCertificate::issue(&liar, "two.test", "bob", peer);
        assert_eq!(certified_name(&forged, &hub.peer_id(), &peer), None);
        // Someone else's genuine certificate.
        assert_eq!(certified_name(&cert, &hub.peer_id(), &other), None);
        // Altered after signing.
        let mut altered = cert.clone();
        altered.name = "admin".into();
        assert_eq!(certified_name(&altered, &hub.peer_id(), &peer), None);
    }

    #[test]
    fn home_hub_text_round_trip_and_bad_input() {
        let hub = allpeers_net::Identity::generate().peer_id();
        let home =
            HomeHub::from_parts(hub, &["quic://127.0.0.1:7700".into(), "nonsense".into()]).unwrap();
        assert_eq!(home.addresses.len(), 1);
        assert_eq!(HomeHub::parse(&home.to_text()), Some(home));
        assert_eq!(HomeHub::parse(""), None);
        assert_eq!(HomeHub::parse("not-a-peer quic://127.0.0.1:1"), None);
        assert_eq!(HomeHub::parse(&hub.to_string()), None, "no address");
        assert!(HomeHub::from_parts(hub, &[]).is_none());
    }
}
