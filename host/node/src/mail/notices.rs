//! The notices other areas trigger: the hub is asked to mail a contact — if its confirmed
//! address accepts the kind — a fixed-template notice, never content the hub cannot read.
//!
//! * "message waiting": a chat message for the contact went into its mailbox at the hub
//!   (it is offline); once per absence ([`super::state::MailState`]).
//! * "shared with you": the contact was made a member of a share; once per share.
//!
//! Imports point down: the chat outbox (`social`) and the shares area call in here; this
//! file knows neither of them beyond the contact state.

use std::sync::Arc;

use allpeers_hub_client::mail::{MAX_TITLE, MailRequest, MailResponse, Notice, NotifyOutcome};
use allpeers_hub_client::{HubError, HubState};
use allpeers_model::PeerId;

use super::state::Told;
use crate::daemon::state::Daemon;
use crate::social::contacts::{self, ContactState};

/// A message to `peer` was sealed into its mailbox: ask the hub (in the background) to tell
/// it by mail, unless it was told already during this absence.
pub fn message_waiting(daemon: &Arc<Daemon>, peer: PeerId) {
    ask(
        daemon,
        Told::Waiting(peer),
        Notice::Waiting { count: 1 },
        false,
    );
}

/// `peer` was made a member of the share `share` (its id as text) titled `title`: ask the
/// hub to tell it by mail, once per share. Only an accepted contact is told (a stranger
/// could not take the share's offer anyway).
pub fn share_granted(daemon: &Arc<Daemon>, peer: PeerId, share: String, title: &str) {
    // The hub takes at most MAX_TITLE characters (and cleans control characters out).
    let title: String = title.chars().take(MAX_TITLE).collect();
    let title = if title.trim().is_empty() {
        "a share".to_string()
    } else {
        title
    };
    ask(
        daemon,
        Told::Shared(peer, share),
        Notice::Shared { title },
        true,
    );
}

/// Asks the hub for `notice` to `told`'s peer, unless it was told already; `contacts_only`:
/// not unless the peer is an accepted contact.
fn ask(daemon: &Arc<Daemon>, told: Told, notice: Notice, contacts_only: bool) {
    let Some(hub) = daemon
        .hub()
        .filter(|h| h.state() == HubState::Online)
        .cloned()
    else {
        return;
    };
    if !daemon.mail.tell(told.clone()) {
        return;
    }
    let weak = Arc::downgrade(daemon);
    let daemon = daemon.clone();
    tokio::spawn(async move {
        let peer = *told.peer();
        if contacts_only {
            let state = daemon.on_store(move |s| contacts::state(s, &peer)).await;
            if !matches!(state, Ok(ContactState::Accepted)) {
                allpeers_log::bone!(?peer, "mail: no notice to a non-contact");
                return;
            }
        }
        drop(daemon);
        let kind = match notice {
            Notice::Shared { .. } => "share",
            Notice::Waiting { .. } => "message-waiting",
        };
        let request = MailRequest::Notify { to: peer, notice };
        match hub.mail(&request).await {
            Ok(MailResponse::Notified(NotifyOutcome::Queued)) => {
                allpeers_log::flesh!(?peer, "mail: {kind} notice queued at the hub");
            }
            Ok(MailResponse::Notified(NotifyOutcome::NotSent)) => {
                allpeers_log::bone!(?peer, "mail: no {kind} notice (not accepted)");
            }
            Ok(other) => allpeers_log::marrow!(?peer, "mail: the hub answered {other:?}"),
            // The hub could not be asked: the next occasion tries again.
            Err(e @ (HubError::Net(_) | HubError::Proxy(_) | HubError::Stopped)) => {
                allpeers_log::skin!(?peer, "mail: {kind} notice not asked: {e}");
                if let Some(daemon) = weak.upgrade() {
                    daemon.mail.untell(&told);
                }
            }
            // No gateway, a rate limit, no name at the hub: nothing to retry soon.
            Err(e) => allpeers_log::flesh!(?peer, "mail: no {kind} notice: {e}"),
        }
    });
}
