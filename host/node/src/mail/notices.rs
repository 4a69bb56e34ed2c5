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
use allpeers_hub_client::{HubError, HubEvent, HubState};
use allpeers_model::PeerId;

use super::state::{Deferred, Told};
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

/// Asks the hub for `notice` to `told`'s peer, unless it was told already. `share`: not
/// unless the peer is an accepted contact, and kept for when the hub line is up if it is
/// down (a membership happens once: there is no next occasion, unlike waiting messages).
fn ask(daemon: &Arc<Daemon>, told: Told, notice: Notice, share: bool) {
    let Some(hub) = daemon.hub().cloned() else {
        return;
    };
    if hub.state() != HubState::Online {
        if share && !daemon.mail.is_told(&told) {
            daemon.mail.defer(Deferred { told, notice });
            // The line may have come up meanwhile (its event already gone by).
            if hub.state() == HubState::Online {
                ask_deferred(daemon);
            }
        }
        return;
    }
    if !daemon.mail.tell(told.clone()) {
        return;
    }
    let contacts_only = share;
    let retry = share.then(|| notice.clone());
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
            // The hub could not be asked: the next occasion (for a share: the hub line
            // coming up) tries again.
            Err(e @ (HubError::Net(_) | HubError::Proxy(_) | HubError::Stopped)) => {
                allpeers_log::skin!(?peer, "mail: {kind} notice not asked: {e}");
                if let Some(daemon) = weak.upgrade() {
                    daemon.mail.untell(&told);
                    if let Some(notice) = retry {
                        daemon.mail.defer(Deferred { told, notice });
                    }
                }
            }
            // No gateway, a rate limit, no name at the hub: nothing to retry soon.
            Err(e) => allpeers_log::flesh!(?peer, "mail: no {kind} notice: {e}"),
        }
    });
}

/// Asks for the notices deferred while the hub line was down.
fn ask_deferred(daemon: &Arc<Daemon>) {
    for d in daemon.mail.take_deferred() {
        ask(daemon, d.told, d.notice, true);
    }
}

/// Asks for the deferred notices each time the hub line comes up.
pub fn start(daemon: &Arc<Daemon>) {
    let Some(hub) = daemon.hub() else {
        return;
    };
    let mut events = hub.events();
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => event,
            };
            match event {
                Ok(HubEvent::Online { .. }) => {
                    let Some(daemon) = weak.upgrade() else { break };
                    ask_deferred(&daemon);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    });
}
