//! The `mail` area: e-mail through the home hub's gateway (`allpeers/hub-mail/1`). The hub
//! holds the address, sends the fixed-template mails and enforces consent and limits; the
//! node asks (register, confirm, preferences, invite, notify, stop all) and decides when a
//! contact is worth a "message waiting" notice.
//!
//! * [`state`] — which offline contacts were already told about waiting messages.
//! * [`notices`] — the "message waiting" notice the chat outbox triggers.
//! * [`api`] — the `mail.*` methods ([`AREA`]).

pub mod api;
pub mod notices;
pub mod state;

pub use api::AREA;
