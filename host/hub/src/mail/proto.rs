//! `allpeers/hub-mail/1` on the hub: the protocol's types live in
//! [`allpeers_hub_client::mail`] (shared with the node, which never links a mail library), the
//! checked decoder in [`allpeers_hub_client::mail_check`] (a feature of that crate: the fuzz
//! target builds it without the hub).

pub use allpeers_hub_client::mail::*;
pub use allpeers_hub_client::mail_check::*;
