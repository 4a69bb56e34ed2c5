//! Downloads under way as sources: a node serves the blocks it has landed (and verified) to the other members as
//! soon as they are written, with the tree nodes that came with them — the private swarm's "downloaders serve each
//! other".
//!
//! A download registers its partial file, its tree (the outboard file it fills in as nodes arrive) and the set of
//! blocks written; the files service asks here when its own shared files do not have a hash. Entitlement is the
//! service's, checked before, as for any file. Each time the download offers more blocks it says so
//! ([`Written::watch`]), so a member waiting to hear of them is told at once instead of asking again later.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bao_tree::BaoTree;
use bao_tree::io::outboard::PreOrderOutboard;
use tokio::sync::watch;

use super::outboards::{Growing, Source};
use super::{BLOCK_SIZE, ContentHash};
use crate::swarm::geometry::PieceSet;

/// One download under way, as a source.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The partial file (`<name>.part`).
    pub part: PathBuf,
    /// Its tree: the pre-order outboard, nodes written as they arrive.
    pub outboard: PathBuf,
    pub size: u64,
    /// The blocks written and verified, their tree nodes saved before them.
    pub blocks: Arc<Written>,
}

/// The blocks a download has written and verified (their tree nodes saved before them): those it offers to others.
#[derive(Debug)]
pub struct Written {
    blocks: Mutex<PieceSet>,
    /// Counts the offers made: a member's `HEAD` that waits for more blocks wakes on a change.
    offers: watch::Sender<u64>,
}

impl Written {
    pub fn new(blocks: PieceSet) -> Written {
        Written {
            blocks: Mutex::new(blocks),
            offers: watch::Sender::new(0),
        }
    }

    /// Offers `blocks` (already written and verified), and tells whoever waits for more.
    pub fn offer(&self, blocks: impl IntoIterator<Item = u32>) {
        {
            let mut held = self.blocks.lock().expect("written");
            for block in blocks {
                held.insert(block);
            }
        }
        self.offers.send_modify(|offers| *offers += 1);
    }

    /// The blocks offered now.
    pub fn blocks(&self) -> PieceSet {
        self.blocks.lock().expect("written").clone()
    }

    /// Changes once more blocks are offered; closed when the download is over (whole, failed or stopped).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.offers.subscribe()
    }
}

/// The downloads under way, by hash; clones share one registry.
#[derive(Debug, Clone)]
pub struct Partials {
    inner: Arc<Mutex<HashMap<ContentHash, Partial>>>,
    /// Counts the downloads registered: a member waiting to hear of a file we hold none of wakes on a change.
    registered: Arc<watch::Sender<u64>>,
}

impl Default for Partials {
    fn default() -> Partials {
        Partials {
            inner: Default::default(),
            registered: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// What a node can serve of a file it does not share whole.
pub enum Serving {
    /// A download under way that holds blocks: opened to serve them.
    Held(std::io::Result<Source>),
    /// Nothing yet; changes when that may no longer be so (a download of it starts, or the one under way lands its
    /// first blocks).
    NothingYet(watch::Receiver<u64>),
}

impl Partials {
    pub fn insert(&self, hash: ContentHash, partial: Partial) {
        self.inner.lock().expect("partials").insert(hash, partial);
        self.registered.send_modify(|count| *count += 1);
    }

    pub fn remove(&self, hash: &ContentHash) {
        self.inner.lock().expect("partials").remove(hash);
    }

    /// The download of `hash` under way, opened to serve what it holds, or a signal for when it may hold some.
    /// Blocking: it opens two files.
    pub fn open_source(&self, hash: &ContentHash) -> Serving {
        // Each signal is subscribed to before what it tells of is read: a change in between is not missed.
        let registered = self.registered.subscribe();
        let Some(partial) = self.inner.lock().expect("partials").get(hash).cloned() else {
            return Serving::NothingYet(registered);
        };
        let more = partial.blocks.watch();
        let held = partial.blocks.blocks();
        if held.is_empty() {
            return Serving::NothingYet(more);
        }
        let open = || {
            Ok(Source {
                file: File::open(&partial.part)?,
                outboard: PreOrderOutboard {
                    root: blake3::Hash::from_bytes(hash.0),
                    tree: BaoTree::new(partial.size, BLOCK_SIZE),
                    data: File::open(&partial.outboard)?,
                },
                size: partial.size,
                growing: Some(Growing { held, more }),
                // Our own partial file: only the download writes it, and only blocks it verified.
                stamps: None,
                allowed: None,
            })
        };
        Serving::Held(open())
    }
}
