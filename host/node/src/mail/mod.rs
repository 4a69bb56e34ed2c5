//! The `mail` area: e-mail through the home hub's gateway (`allpeers/hub-mail/1`). The hub
//! holds the address, sends the fixed-template mails and enforces consent and limits; the
//! node asks (register, confirm, preferences, invite, notify, stop all) and decides when a
//! contact is worth a notice: "message waiting", "shared with you".
//!
//! * [`state`] — the told-set: which notices were already asked for.
//! * [`notices`] — the notices the chat outbox and the shares area trigger.
//! * [`api`] — the `mail.*` methods ([`AREA`]).

pub mod api;
pub mod notices;
pub mod state;

pub use api::AREA;
