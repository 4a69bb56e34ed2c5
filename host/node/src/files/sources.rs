//! Whom a shared file is fetched from, kept current: the members of every share naming it
//! ([`HashIndex::sources`](super::rules::HashIndex::sources)), taken at `files.get` and taken again for every
//! download under way after each commit that stored ops (a member joined or left, the file turned up in another
//! share) — the swarm asks a newcomer at once, stops asking one who left, and a download that gave up starts again.
//! A source coming online starts again at once the downloads waiting for it: told by the hub (its presence, for
//! contacts) or by the source itself connecting to us (a share member who is not a contact, whose presence the hub
//! does not give us, dials every member to reconcile the shares as it comes back).

use std::sync::Arc;

use allpeers_model::PeerId;
use allpeers_net::EndpointEvent;
use allpeers_transfer::blob::ContentHash;
use allpeers_transfer::manager::{ContentKey, Status};

use crate::daemon::state::Daemon;

/// Whom to fetch `hash` from now.
pub fn of(daemon: &Daemon, hash: &ContentHash) -> Vec<PeerId> {
    daemon.file_hashes.lock().expect("file hashes").sources(
        &daemon.shares.lock().replicas,
        hash,
        &daemon.peer_id(),
    )
}

/// `peer` came online: the file downloads it is a source of that wait to retry, or gave up, start again now.
pub fn source_online(daemon: &Daemon, peer: PeerId) {
    let Some(Ok(transfers)) = daemon.transfers.get() else {
        return;
    };
    let manager = transfers.manager.clone();
    tokio::spawn(async move { manager.source_back(&peer.to_string()).await });
}

/// Follows the peer connections: a peer that connected to us is online, whatever the hub tells us.
pub fn start(daemon: &Arc<Daemon>) {
    let Some(network) = daemon.network.get() else {
        return;
    };
    daemon.forward_events(network.endpoint.events(), |daemon, event| {
        if let EndpointEvent::Connected { peer, .. } = event {
            source_online(daemon, peer);
        }
        // Nothing published: the manager tells of the downloads it starts again.
        None
    });
}

/// Gives every shared file not yet whole the sources the shares name now.
pub async fn refresh(daemon: &Arc<Daemon>) {
    let Some(Ok(transfers)) = daemon.transfers.get() else {
        return;
    };
    for transfer in transfers.manager.list() {
        let ContentKey::Blake3(hash) = transfer.content else {
            continue;
        };
        if transfer.status == Status::Seeding {
            continue;
        }
        let sources: Vec<String> = of(daemon, &hash).iter().map(ToString::to_string).collect();
        let count = sources.len();
        match transfers
            .manager
            .set_file_sources(transfer.id, sources)
            .await
        {
            Ok(true) => {
                allpeers_log::flesh!(id = transfer.id, %hash, count, "files: the shares name other sources for a download")
            }
            Ok(false) => {}
            Err(error) => {
                allpeers_log::bone!(id = transfer.id, %error, "files: a download's sources were not changed")
            }
        }
    }
}
