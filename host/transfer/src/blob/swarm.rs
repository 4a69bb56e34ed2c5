//! The private swarm's driver: workers for each source in its turn (at most
//! [`MAX_ASKED`](super::sources::MAX_ASKED) sources at once, the rest waiting for a turn one gives up), over the
//! rules of [`super::sources`]; sources named or withdrawn while it runs are taken in or stopped.
//!
//! A worker opens one HTTP connection to its source (a stream of the files service), asks what it holds (`HEAD`:
//! the whole file, or the chunks a download under way holds — no tracker: holders say it themselves), then asks for
//! up to a chunk at a time as a `Range` (256 KiB), verified block by block against the hash as it arrives. Each
//! source has [`REQUESTS_PER_SOURCE`] workers, so a request to it is under way while the last one is still sent. When its
//! source holds nothing more that we need, it asks again: a source downloading too answers once it holds chunks it
//! did not name before (or after [`HAVE_WAIT`](super::http::HAVE_WAIT)), so news of a chunk reaches the others as
//! soon as it lands; a whole file's holder is asked again after [`POLL`]. Every block lands through the download's
//! landing, so the node serves it to others at once.
//!
//! A source whose bytes fail verification, or that refuses a chunk it said it held, is banned for the download; one
//! whose connection fails is dialled again after a backoff. The download fails when every source is banned, when
//! every source left failed [`UNREACHABLE_AFTER`](super::sources::UNREACHABLE_AFTER) times in a row, or when no
//! block arrived for [`STALL`] (the manager then retries later, or at once when a source comes online), and at once
//! when our own disk fails to take a verified block (a block counts as arrived only once it is written, so no
//! source is blamed for it).

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, watch};

use super::http::{Connection, Decoding, FetchError, Holding, Verified};
use super::landing::{Counters, Held, Landing, commit_apart};
use super::sources::{REQUESTS_PER_SOURCE, SourceBook, SourceState};
use super::{
    BLOCK_BYTES, BoxFuture, ContentHash, Dial, DownloadError, FileSpec, GATHER_BYTES, chunk_count,
};
use crate::swarm::PeerKey;
use crate::swarm::geometry::PieceSet;
use crate::throttle::Throttles;

/// The least time between two questions to a source about what it holds (one that holds nothing we need, and
/// does not wait for news before it answers).
pub const POLL: Duration = Duration::from_millis(250);
/// The download fails (and is retried by the manager) after this long without a block from anyone.
pub const STALL: Duration = Duration::from_secs(30);
/// Longest wait for a source to connect or to answer a request's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before a source whose connection failed is dialled again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The wait before a source is dialled again after `failures` failed connections in a row (at least one).
fn backoff(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(RETRY_MAX)
}

struct Swarm {
    hash: ContentHash,
    size: u64,
    dial: Dial,
    throttles: Throttles,
    landing: Arc<Mutex<Landing>>,
    counters: Arc<Counters>,
    book: Mutex<SourceBook>,
    /// Woken when a chunk completes or a source is banned: the download checks whether it is over.
    changed: Notify,
    /// A source came online: its workers waiting out a backoff look whether it is theirs.
    came_online: Notify,
    last_block: Mutex<Instant>,
    /// Our own disk failed to take verified bytes: the download fails with it (no source is blamed).
    landing_failed: Mutex<Option<std::io::Error>>,
}

/// A request whose body was read: its blocks are still being verified and written.
struct Landed {
    range: Range<u64>,
    read: Result<(), FetchError>,
    decoding: Decoding,
    /// Its verified blocks not yet written.
    held: Arc<Mutex<Held>>,
}

/// How a worker's turn with its source ended.
enum Ended {
    Complete,
    Banned,
    Failed(String),
    /// Writing what it sent failed on our side: the whole download stops.
    Landing,
    /// Its turn is over (given to a source waiting, or it is no longer a source).
    TurnOver,
}

/// Fetches every block missing from `landing` from all of its `sources` at once; a source named later starts at
/// once, one no longer named stops.
pub(super) async fn fetch(
    spec: &FileSpec,
    mut sources: watch::Receiver<Vec<String>>,
    mut online: broadcast::Receiver<String>,
    dial: &Dial,
    throttles: &Throttles,
    landing: &Arc<Mutex<Landing>>,
    counters: &Arc<Counters>,
) -> Result<(), DownloadError> {
    let done = landing.lock().expect("landing").done.clone();
    let names = sources.borrow_and_update().clone();
    let book = SourceBook::new(spec.size, &done, names.clone(), rand::random());
    let swarm = Arc::new(Swarm {
        hash: spec.hash,
        size: spec.size,
        dial: dial.clone(),
        throttles: throttles.clone(),
        landing: landing.clone(),
        counters: counters.clone(),
        book: Mutex::new(book),
        changed: Notify::new(),
        came_online: Notify::new(),
        last_block: Mutex::new(Instant::now()),
        landing_failed: Mutex::new(None),
    });
    let mut workers = tokio::task::JoinSet::new();
    // The workers of each turn under way: a turn that ended (given up, banned, withdrawn) has its workers stopped
    // at once, so no more than MAX_ASKED sources hold a connection or a waiting question.
    let mut turns: Vec<(PeerKey, u64, Vec<tokio::task::AbortHandle>)> = Vec::new();
    let mut start_turns = |book: &mut SourceBook| {
        turns.retain(|(key, turn, handles)| {
            let going_on = book.has_turn(*key, *turn);
            if !going_on {
                handles.iter().for_each(tokio::task::AbortHandle::abort);
            }
            going_on
        });
        for (key, turn) in book.start_turns(Instant::now()) {
            let handles = (0..REQUESTS_PER_SOURCE)
                .map(|_| workers.spawn(swarm.clone().worker(key, turn)))
                .collect();
            turns.push((key, turn, handles));
        }
    };
    // Once the sender is gone (the download ends) the sources stay as they are.
    let mut named = true;
    let mut told_online = true;
    let outcome = loop {
        let changed = swarm.changed.notified();
        {
            if let Some(source) = swarm.landing_failed.lock().expect("landing failed").take() {
                break Err(DownloadError::io("the partial file".into(), source));
            }
            let mut book = swarm.book.lock().expect("book");
            if book.is_complete() {
                break Ok(());
            }
            start_turns(&mut book);
            if book.none_left() {
                let failures = book.failures();
                break Err(DownloadError::NoSource(if failures.is_empty() {
                    "no source is named any more".into()
                } else {
                    failures.join("; ")
                }));
            }
            if book.none_reachable() {
                allpeers_log::flesh!(hash = %spec.hash, sources = book.failures().len(), "files: no swarm source can be reached: the download waits for one");
                break Err(DownloadError::NoSource(book.failures().join("; ")));
            }
            if swarm.last_block.lock().expect("last block").elapsed() >= STALL {
                let failures = book.failures();
                break Err(DownloadError::NoSource(if failures.is_empty() {
                    "no source gave a block for 30 s".into()
                } else {
                    failures.join("; ")
                }));
            }
        }
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(1), changed) => {}
            renamed = sources.changed(), if named => match renamed {
                Ok(()) => {
                    let names = sources.borrow_and_update().clone();
                    let mut book = swarm.book.lock().expect("book");
                    for key in book.not_named(&names) {
                        allpeers_log::flesh!(hash = %spec.hash, peer = %book.name(key), "files: a swarm source is no longer named");
                        book.withdraw(key);
                    }
                    for name in &names {
                        if book.add(name).is_some() {
                            allpeers_log::flesh!(hash = %spec.hash, peer = %name, "files: a swarm source joins");
                        }
                    }
                    start_turns(&mut book);
                }
                Err(_) => named = false,
            },
            back = online.recv(), if told_online => match back {
                Ok(name) => {
                    let mut book = swarm.book.lock().expect("book");
                    if book.wake(&name) {
                        allpeers_log::flesh!(hash = %spec.hash, peer = %name, "files: a swarm source came online: asked now");
                        start_turns(&mut book);
                        swarm.came_online.notify_waiters();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => told_online = false,
            },
        }
    };
    workers.shutdown().await;
    let committed = commit_apart(landing).await.map(|_| ());
    outcome?;
    committed.map_err(|source| DownloadError::io("the partial file".into(), source))
}

impl Swarm {
    /// Asks `key` during its `turn` (one of its [`REQUESTS_PER_SOURCE`] workers). A connection that failed is tried
    /// again after a backoff that grows with the source's failures in a row, across turns (so offline members
    /// taking turns cost a dial each per backoff, not a busy loop); then the turn goes to a source waiting, if any.
    fn worker(self: Arc<Self>, key: PeerKey, turn: u64) -> BoxFuture<()> {
        Box::pin(async move {
            loop {
                if !self.book.lock().expect("book").has_turn(key, turn) {
                    return;
                }
                match self.work(key, turn).await {
                    Ended::Complete => return,
                    Ended::Banned | Ended::Landing | Ended::TurnOver => {
                        // Someone else may take the turn, or the download is over.
                        self.changed.notify_waiters();
                        return;
                    }
                    Ended::Failed(why) => {
                        let name = self.name(key);
                        allpeers_log::bone!(hash = %self.hash, peer = %name, %why, "files: a swarm source failed");
                        let failures = {
                            let mut book = self.book.lock().expect("book");
                            book.gone(key, why);
                            book.failed_in_a_row(key)
                        };
                        self.wait_backoff(key, failures).await;
                        if self
                            .book
                            .lock()
                            .expect("book")
                            .yield_turn(key, turn, Instant::now())
                        {
                            self.changed.notify_waiters();
                            return;
                        }
                    }
                }
            }
        })
    }

    /// Waits out `key`'s backoff after `failures` failures in a row, or less if it comes online meanwhile.
    async fn wait_backoff(&self, key: PeerKey, failures: u32) {
        let until = tokio::time::Instant::now() + backoff(failures);
        loop {
            let news = self.came_online.notified();
            if self.book.lock().expect("book").take_woken(key) {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                () = news => {}
            }
        }
    }

    fn name(&self, key: PeerKey) -> String {
        self.book.lock().expect("book").name(key).to_string()
    }

    /// Bans `key` for the download, counted once though each of its workers may find it out (`bad_bytes`: it sent
    /// a block that failed verification, counted as a hash failure).
    fn ban(&self, key: PeerKey, why: String, bad_bytes: bool) -> Ended {
        let name = self.name(key);
        let mut book = self.book.lock().expect("book");
        if !matches!(book.state(key), SourceState::Banned(_)) {
            allpeers_log::skin!(hash = %self.hash, peer = %name, %why, "files: a swarm source is dropped");
            book.ban(key, why);
            self.counters.banned.fetch_add(1, Ordering::Relaxed);
            if bad_bytes {
                self.counters.hash_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ended::Banned
    }

    /// One connection to `key`: ask what it holds, fetch what it can give, ask again later; until the file is
    /// whole or the connection fails.
    async fn work(self: &Arc<Self>, key: PeerKey, turn: u64) -> Ended {
        let name = self.name(key);
        let connected = tokio::time::timeout(ANSWER_TIMEOUT, async {
            let io = (self.dial)(name.clone()).await?;
            Connection::open(io).await
        })
        .await;
        let mut connection = match connected {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Ended::Failed(error.to_string()),
            Err(_) => return Ended::Failed("it did not answer".into()),
        };
        let _in_use = Counters::using(&self.counters, &name);
        // The chunks it said it held last: a source still downloading answers the next `HEAD` once it holds others.
        let mut known: Option<PieceSet> = None;
        loop {
            {
                let book = self.book.lock().expect("book");
                if book.is_complete() {
                    return Ended::Complete;
                }
                // Another worker of the same source banned it or gave up its turn, or it is no longer a source.
                if !book.has_turn(key, turn) {
                    return Ended::TurnOver;
                }
            }
            let asked = tokio::time::Instant::now();
            let holding = tokio::time::timeout(
                ANSWER_TIMEOUT,
                connection.holding(self.hash, self.size, known.as_ref()),
            )
            .await;
            match holding {
                Ok(Ok(holding)) => {
                    known = match &holding {
                        Holding::Chunks(chunks) => Some(chunks.clone()),
                        Holding::Whole => None,
                    };
                    self.book.lock().expect("book").holding(key, holding)
                }
                // Nothing of it yet: the next `HEAD` says so, and is answered once it holds some (a member whose
                // own download starts later is heard of at once, and one that never fetches it is asked every
                // HAVE_WAIT, not every POLL).
                Ok(Err(FetchError::NotFound(_))) => {
                    known = Some(PieceSet::new(chunk_count(self.size)));
                    self.book.lock().expect("book").holds_nothing(key)
                }
                Ok(Err(FetchError::Refused(_) | FetchError::Changed(_))) => {
                    known = None;
                    self.book.lock().expect("book").holds_nothing(key)
                }
                Ok(Err(FetchError::Mismatch(why))) => {
                    return self.ban(key, format!("it answered for something else: {why}"), false);
                }
                Ok(Err(error)) => return Ended::Failed(error.to_string()),
                Err(_) => return Ended::Failed("it did not say what it holds".into()),
            }
            // One request's body is read while the one before it is still verified and written: the next
            // request goes out as soon as a body has arrived, not once it has landed.
            let mut under_way: Option<Landed> = None;
            loop {
                let ranges = self.book.lock().expect("book").next(key);
                if ranges.is_empty() {
                    match under_way.take() {
                        // What it lands may change what is left to ask.
                        Some(landed) => {
                            if let Err((range, error)) = self.finish_range(key, landed).await {
                                return self.failed(key, range, error);
                            }
                            continue;
                        }
                        None => break,
                    }
                }
                for range in ranges {
                    let started = self.start_range(&mut connection, key, range.clone()).await;
                    if let Some(landed) = under_way.take()
                        && let Err((range, error)) = self.finish_range(key, landed).await
                    {
                        return self.failed(key, range, error);
                    }
                    match started {
                        Ok(landed) => under_way = Some(landed),
                        Err(error) => return self.failed(key, range, error),
                    }
                }
            }
            // Nothing more to ask it: another source waiting for a turn takes this one's.
            if self
                .book
                .lock()
                .expect("book")
                .yield_turn(key, turn, Instant::now())
            {
                return Ended::TurnOver;
            }
            // A source that waited for news before it answered is asked again at once; one that answered at once
            // (it holds the whole file, or refused us) is asked at most once per POLL.
            tokio::time::sleep_until(asked + POLL).await;
        }
    }

    /// How a request for `range` to `key` that failed ends the worker's turn.
    fn failed(&self, key: PeerKey, range: Range<u64>, error: FetchError) -> Ended {
        match error {
            FetchError::Verification { offset } => {
                let why = format!("the block at byte {offset} failed verification");
                self.ban(key, why, true)
            }
            FetchError::NotHeld(_) => {
                self.ban(key, "it refused a chunk it said it held".into(), false)
            }
            FetchError::Mismatch(why) => {
                self.ban(key, format!("it answered for something else: {why}"), false)
            }
            FetchError::Landing(error) => {
                allpeers_log::marrow!(hash = %self.hash, %error, "files: writing a download failed");
                *self.landing_failed.lock().expect("landing failed") = Some(error);
                Ended::Landing
            }
            error => {
                self.book.lock().expect("book").release(key, range);
                Ended::Failed(error.to_string())
            }
        }
    }

    /// Asks `key` for `range` and reads the answer's body; its blocks are verified and written on the decoder
    /// thread, gathered apart from the other requests under way and written together (a write per 16 KiB block cost
    /// ~3x per byte what the one-source path's quarter-MiB writes do). They count as arrived once written.
    async fn start_range(
        self: &Arc<Self>,
        connection: &mut Connection,
        key: PeerKey,
        range: Range<u64>,
    ) -> Result<Landed, FetchError> {
        let fetch = tokio::time::timeout(
            ANSWER_TIMEOUT,
            connection.get(self.hash, self.size, range.clone()),
        )
        .await
        .map_err(|_| FetchError::Io(std::io::ErrorKind::TimedOut.into()))??;
        let held = Arc::new(Mutex::new(Held::default()));
        // The body's last block is written on the decoder thread too; only what a body cut short leaves is written
        // when the request is finished.
        let end = fetch.range.end;
        let sink = {
            let (swarm, held, name) = (self.clone(), held.clone(), self.name(key));
            let decoder = self.counters.decoders.start();
            move |item| {
                // Held as long as the decoder thread runs (see `Decoders`).
                let _running = &decoder;
                let Verified::Block { offset, data } = item else {
                    return swarm.landing.lock().expect("landing").land(item);
                };
                swarm
                    .counters
                    .received
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                let mut held = held.lock().expect("held");
                if let Err(data) = held.hold(offset, data) {
                    swarm.write(key, &name, &mut held)?;
                    held.hold(offset, data).expect("nothing held");
                }
                let range = held.range();
                if range.end - range.start >= GATHER_BYTES || range.end == end {
                    swarm.write(key, &name, &mut held)?;
                }
                Ok(())
            }
        };
        // A body cut short is reported when the request is finished (the next one then fails on the connection).
        let (read, decoding) = fetch
            .read_body(self.throttles.clone(), sink, std::future::pending())
            .await;
        Ok(Landed {
            range,
            read: read.map(|_| ()),
            decoding,
            held,
        })
    }

    /// Waits for a request's blocks to be verified and written (what was verified before its body failed is written
    /// here, a rare write on the runtime's thread).
    /// On failure, the request's range and why.
    async fn finish_range(
        &self,
        key: PeerKey,
        landed: Landed,
    ) -> Result<(), (Range<u64>, FetchError)> {
        let Landed {
            range,
            read,
            decoding,
            held,
        } = landed;
        let decoded = decoding.finish().await;
        let mut held = held.lock().expect("held");
        let written = self.write(key, &self.name(key), &mut held);
        let outcome = decoded.and(read).and(written.map_err(FetchError::Landing));
        outcome.map_err(|error| (range, error))
    }

    /// Writes the blocks `key` sent that are held, then counts them as arrived: written first, so a block that failed
    /// to land is still missing (a copy that came second is written again: the same verified bytes).
    fn write(&self, key: PeerKey, name: &str, held: &mut Held) -> std::io::Result<()> {
        let range = held.range();
        if range.is_empty() {
            return Ok(());
        }
        self.landing
            .lock()
            .expect("landing")
            .write(std::mem::take(held))?;
        let (kept, chunk_done) = {
            let mut book = self.book.lock().expect("book");
            let before = book.chunks_done();
            let mut kept = 0;
            for offset in range.clone().step_by(BLOCK_BYTES as usize) {
                if book.arrived(key, offset) {
                    kept += BLOCK_BYTES.min(range.end - offset);
                }
            }
            (kept, book.chunks_done() > before)
        };
        self.counters
            .wasted
            .fetch_add(range.end - range.start - kept, Ordering::Relaxed);
        if kept > 0 {
            self.counters.kept_from(name, kept);
            *self.last_block.lock().expect("last block") = Instant::now();
        }
        if chunk_done {
            self.changed.notify_waiters();
        }
        Ok(())
    }
}
