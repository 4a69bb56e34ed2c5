//! The media area's state in the daemon: the pool of extraction workers (the node's own
//! binary in its hidden `media-worker` mode), job numbers, the bound on jobs at once, and
//! the watched paths.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allpeers_media::{Extractor, ExtractorConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The `allpeers` subcommand that runs one extraction worker on stdin/stdout.
pub const WORKER_SUBCOMMAND: &str = "media-worker";

/// Indexing jobs at once: each already uses every worker, so more would only interleave
/// them and hold more file lists in memory.
const MAX_JOBS: usize = 4;

pub struct Media {
    pub(crate) extractor: Arc<Extractor>,
    next_job: AtomicU64,
    jobs: Arc<Semaphore>,
    /// The paths kept up to date, and the OS watcher.
    pub(crate) watching: Arc<super::watch::Watching>,
}

impl Media {
    /// Workers are the program `worker` run with [`WORKER_SUBCOMMAND`]; none starts before
    /// the first file is described.
    pub fn new(worker: PathBuf) -> Media {
        let mut config = ExtractorConfig::new(worker);
        config.args = vec![OsString::from(WORKER_SUBCOMMAND)];
        Media {
            extractor: Arc::new(Extractor::new(config)),
            next_job: AtomicU64::new(1),
            jobs: Arc::new(Semaphore::new(MAX_JOBS)),
            watching: Arc::new(super::watch::Watching::new()),
        }
    }

    /// The daemon's own binary as the worker.
    pub fn for_this_binary() -> Media {
        // current_exe fails only without /proc; the name on PATH is the best left then.
        Media::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("allpeers")))
    }

    /// A new job's number and its slot, or `None` when [`MAX_JOBS`] already run.
    pub(crate) fn start_job(&self) -> Option<(u64, OwnedSemaphorePermit)> {
        let permit = self.jobs.clone().try_acquire_owned().ok()?;
        Some((self.next_job.fetch_add(1, Ordering::Relaxed), permit))
    }

    /// A new job's number and its slot once one is free (the watcher's jobs wait their turn
    /// rather than fail).
    pub(crate) async fn wait_job(&self) -> (u64, OwnedSemaphorePermit) {
        let permit = self
            .jobs
            .clone()
            .acquire_owned()
            .await
            .expect("the jobs semaphore is never closed");
        (self.next_job.fetch_add(1, Ordering::Relaxed), permit)
    }
}
