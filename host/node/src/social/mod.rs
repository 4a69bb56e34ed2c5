//! Contacts, presence and chat: what a person does first with AllPeers.
//!
//! * [`wire`] — what peers say to each other (letter bodies), bounded.
//! * [`contacts`] — contacts as Peer resources and the contact handshake's states.
//! * [`chat`] — conversations as Chat and Message resources; who may write what.
//! * [`invite`] — invite codes a user can paste (PeerId, name, hub, a signed token).
//!
//! None of these do I/O other than the store; the daemon (`daemon/social.rs`,
//! `daemon/letters.rs`) moves letters between peers.

pub mod chat;
pub mod contacts;
pub mod invite;
pub mod wire;
