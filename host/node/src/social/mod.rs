//! The `social` area: contacts, presence and chat — what a person does first with AllPeers.
//!
//! Domain rules, with no I/O other than the store:
//! * [`wire`] — what peers say to each other (letter bodies), bounded.
//! * [`contacts`] — contacts as Peer resources and the contact handshake's states.
//! * [`chat`] — conversations as Chat and Message resources; who may write what.
//! * [`invite`] — invite codes a user can paste (PeerId, name, hub, a signed token).
//!
//! The daemon's side:
//! * [`api`] — the `contacts.*`, `presence.*` and `chat.*` methods ([`AREA`]), letters
//!   taken from peers, presence from the hub, and the outbox that retries our messages.
//! * [`letters`] — the `allpeers/letters/1` service and the ways a letter travels (direct,
//!   relayed, sealed into the recipient's mailbox at the hub).
//! * [`state`] — presence, the clock, the outbox's wake-up.

pub mod api;
pub mod chat;
pub mod contacts;
pub mod invite;
pub mod letters;
pub mod state;
pub mod wire;

pub use api::AREA;
