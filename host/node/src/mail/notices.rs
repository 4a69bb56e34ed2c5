//! The "message waiting" notice: when a chat message for a contact went into its mailbox at
//! the hub (the contact is offline), the hub is asked to mail the contact a notice — never
//! the message, which the hub cannot read — if its confirmed address accepts the kind. Once
//! per absence ([`super::state::MailState`]).

use std::sync::Arc;

use allpeers_hub_client::mail::{MailRequest, MailResponse, Notice, NotifyOutcome};
use allpeers_hub_client::{HubError, HubState};
use allpeers_model::PeerId;

use crate::daemon::state::Daemon;

/// A message to `peer` was sealed into its mailbox: ask the hub (in the background) to tell
/// it by mail, unless it was told already during this absence.
pub fn message_waiting(daemon: &Arc<Daemon>, peer: PeerId) {
    let Some(hub) = daemon
        .hub()
        .filter(|h| h.state() == HubState::Online)
        .cloned()
    else {
        return;
    };
    if !daemon.mail.tell(peer) {
        return;
    }
    let weak = Arc::downgrade(daemon);
    tokio::spawn(async move {
        let request = MailRequest::Notify {
            to: peer,
            notice: Notice::Waiting { count: 1 },
        };
        let outcome = hub.mail(&request).await;
        match outcome {
            Ok(MailResponse::Notified(NotifyOutcome::Queued)) => {
                allpeers_log::flesh!(?peer, "mail: message-waiting notice queued at the hub");
            }
            Ok(MailResponse::Notified(NotifyOutcome::NotSent)) => {
                allpeers_log::bone!(?peer, "mail: no message-waiting notice (not accepted)");
            }
            Ok(other) => allpeers_log::marrow!(?peer, "mail: the hub answered {other:?}"),
            // The hub could not be asked: the next mailed message tries again.
            Err(e @ (HubError::Net(_) | HubError::Proxy(_) | HubError::Stopped)) => {
                allpeers_log::skin!(?peer, "mail: notice not asked: {e}");
                if let Some(daemon) = weak.upgrade() {
                    daemon.mail.untell(&peer);
                }
            }
            // No gateway, a rate limit, no name at the hub: nothing to retry soon.
            Err(e) => allpeers_log::flesh!(?peer, "mail: no notice: {e}"),
        }
    });
}
