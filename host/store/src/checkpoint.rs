//! WAL checkpoints off the request path.
//!
//! With SQLite's default (`wal_autocheckpoint=1000`), the commit that takes the WAL past 1000
//! pages runs the checkpoint itself: it copies the WAL into the database and fsyncs both, on the
//! writer's thread, so now and then one write (a chat message) waits for two fsyncs. Here the
//! writer's connection only reports each commit's WAL size (SQLite's WAL hook, the same hook
//! its autocheckpoint uses) and a [`Checkpointer`] thread with its own connection does the rest,
//! as [`Policy`] decides:
//!
//! * PASSIVE checkpoint when the WAL reaches [`TRIGGER_PAGES`]. PASSIVE never waits for (or
//!   blocks) the writer or readers, so no write waits for it. Not on a timer: after a complete
//!   checkpoint the WAL starts over, and the next commit fsyncs the new WAL header on the
//!   writer's thread (`sqlite3WalFrames`, "Sync the header", unless `synchronous=OFF`) — once
//!   per checkpoint, so checkpoints should be rare, not frequent.
//! * fsync of the WAL file [`INTERVAL`] after the first commit no fsync or checkpoint covers:
//!   with `synchronous=NORMAL` commits are not fsynced, so this bounds what a power loss can
//!   take back to about a second, without a checkpoint (and its restart fsync on the writer).
//! * TRUNCATE after [`IDLE`] without commits, after a PASSIVE that leaves it little to copy: it
//!   waits for writers and blocks them while it runs, harmless when nobody writes, and gives
//!   the WAL file's space back; the first commit after the pause pays the header fsync.
//! * A backstop on the writer's thread: the WAL only starts over once a checkpoint covers every
//!   frame, which a burst of writes faster than the checkpoints never lets happen. Past
//!   [`BACKSTOP_PAGES`] the writer waits (after its commit) for the checkpoint that covers it,
//!   as SQLite's own autocheckpoint would make it, so the WAL stays bounded; if the thread does
//!   not answer within [`BACKSTOP_WAIT`], the writer checkpoints itself.
//!
//! [`Policy`] is the decision logic without I/O (inputs with `now`, `poll`, `poll_timeout`),
//! tested below; the thread around it is thin.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, StoreError};

/// The WAL file is fsynced at most this long after a commit: what a power loss can take back.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// The WAL is checkpointed (PASSIVE) once it holds this many pages: 16 MiB at 4 KiB pages, about
/// 260 chat messages (a message dirties ~15 pages: its rows and their indexes, measured), so the header
/// fsync after each checkpoint lands on fewer than 1 in 200 writes, and readers search a WAL
/// index of modest size.
pub(crate) const TRIGGER_PAGES: i32 = 4000;
/// No commit for this long: TRUNCATE the WAL (a pause in the conversation).
pub(crate) const IDLE: Duration = Duration::from_secs(30);
/// Past this WAL size (64 MiB at 4 KiB pages) the writer waits for a checkpoint that covers
/// its commit: a sustained burst outruns the checkpointer, and the WAL only starts over once a
/// checkpoint covers every frame. WAL growth stays bounded.
pub(crate) const BACKSTOP_PAGES: i32 = 4 * TRIGGER_PAGES;
/// How long the writer waits at the backstop before checkpointing itself (the checkpointer
/// thread is stuck or gone).
const BACKSTOP_WAIT: Duration = Duration::from_secs(5);

/// What the thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// fsync the WAL file (no checkpoint).
    SyncWal,
    /// PASSIVE checkpoint.
    Passive,
    /// TRUNCATE checkpoint.
    Truncate,
}

/// When to sync and checkpoint. Inputs: commits (with the WAL's page count) and finished steps.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// Commits so far; a step covers the commits counted when it started.
    commits: u64,
    /// WAL pages after the last commit.
    wal_pages: i32,
    /// The first commit no fsync of the WAL has covered yet.
    unsynced_since: Option<Instant>,
    last_commit: Option<Instant>,
    /// The WAL file holds frames a TRUNCATE has not yet removed.
    untruncated: bool,
}

impl Policy {
    /// Commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Returns whether the thread must be woken: the commit brought a step closer than the
    /// wait it may be in (the first unsynced commit, or the WAL reaching the trigger). Most
    /// commits do not, and save the wake-up.
    pub fn on_commit(&mut self, now: Instant, wal_pages: i32) -> bool {
        let wake = self.unsynced_since.is_none()
            || (wal_pages >= TRIGGER_PAGES && self.wal_pages < TRIGGER_PAGES);
        self.commits += 1;
        self.wal_pages = wal_pages;
        self.unsynced_since.get_or_insert(now);
        self.last_commit = Some(now);
        self.untruncated = true;
        wake
    }

    /// The step due at `now`, if any, with the commit count it will cover (hand it back to
    /// [`Policy::on_done`]).
    pub fn poll(&self, now: Instant) -> Option<(Step, u64)> {
        let step = if self.wal_pages >= TRIGGER_PAGES {
            Step::Passive
        } else if self.untruncated && self.last_commit.is_some_and(|t| now >= t + IDLE) {
            Step::Truncate
        } else if self.unsynced_since.is_some_and(|t| now >= t + INTERVAL) {
            Step::SyncWal
        } else {
            return None;
        };
        Some((step, self.commits))
    }

    /// When [`Policy::poll`] may next have something to do (None: only after a commit).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.wal_pages >= TRIGGER_PAGES {
            return self.last_commit;
        }
        let sync = self.unsynced_since.map(|t| t + INTERVAL);
        let truncate = self
            .last_commit
            .filter(|_| self.untruncated)
            .map(|t| t + IDLE);
        match (sync, truncate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `step`, started when `covered` commits had been made, finished at `now`; `ok`: it
    /// succeeded (a checkpoint: every WAL frame reached the database).
    pub fn on_done(&mut self, now: Instant, step: Step, covered: u64, ok: bool) {
        let all_covered = ok && self.commits == covered;
        match step {
            // Commits made while it ran are checkpointed next, at once if the WAL is still
            // past the trigger (the backstop may be waiting for them); without any, the
            // trigger waits for the next commit's count rather than retrying at once.
            Step::Passive if self.commits == covered => self.wal_pages = 0,
            Step::Passive => {}
            Step::Truncate if all_covered => {
                self.wal_pages = 0;
                self.untruncated = false;
            }
            // Try again after another idle period (a writer came, or it failed).
            Step::Truncate => self.last_commit = Some(now),
            Step::SyncWal => {}
        }
        // A checkpoint fsyncs the WAL before copying it, so every step syncs what it covered;
        // later commits (or a failure) wait for the next sync.
        self.unsynced_since = if all_covered {
            None
        } else if ok {
            self.unsynced_since.map(|_| now)
        } else {
            Some(now)
        };
    }
}

struct State {
    policy: Policy,
    stop: bool,
    /// Checkpoints that copied the whole WAL into the database.
    completed: u64,
    /// Times the writer checkpointed itself at the backstop (the thread did not answer).
    writer_checkpoints: u64,
    /// Commits the last complete checkpoint covered.
    covered: u64,
}

/// What the writer's hook and the thread share; one mutex, so a stop cannot slip in between
/// the thread's check and its wait.
struct Shared {
    state: Mutex<State>,
    /// The thread waits on it for commits and the stop.
    wake: Condvar,
    /// Signalled after every checkpoint.
    checkpointed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave the policy half-updated in a way that matters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The checkpointer thread of one database file. Dropping it stops and joins the thread.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Takes checkpoints of `path` (in WAL mode) off `writer`: disables its autocheckpoint,
    /// hooks its commits, starts the thread.
    pub fn start(writer: &mut Connection, path: &Path) -> Result<Checkpointer> {
        let checkpoints = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // TRUNCATE waits for a writer through the busy handler; when idle there is none, but a
        // write may start meanwhile: wait for it rather than fail.
        checkpoints.busy_timeout(Duration::from_secs(5))?;
        // A connection that has not read the database does not know it is in WAL mode yet
        // (its checkpoints would report -1 frames); asking makes it open the WAL.
        let mode: String = checkpoints.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "{} is in journal mode {mode}, not WAL",
                path.display()
            )));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                policy: Policy::default(),
                stop: false,
                completed: 0,
                writer_checkpoints: 0,
                covered: 0,
            }),
            wake: Condvar::new(),
            checkpointed: Condvar::new(),
        });
        let hook = shared.clone();
        // Replaces SQLite's autocheckpoint (the same hook; `wal_autocheckpoint` would undo it).
        // Replaces SQLite's autocheckpoint (the same hook; `wal_autocheckpoint` would undo it).
        // Runs after each commit; an error here would fail a write that has committed, so
        // there is none.
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
            let mut state = lock(&hook.state);
            if state.policy.on_commit(Instant::now(), pages) {
                hook.wake.notify_one();
            }
            if pages < BACKSTOP_PAGES {
                return Ok(());
            }
            // A write burst outruns the checkpointer: the WAL can only start over once one
            // checkpoint covers every frame, so the writer waits for the one that covers this
            // commit (due at once, past the trigger).
            let mine = state.policy.commits();
            let (mut state, wait) = hook
                .checkpointed
                .wait_timeout_while(state, BACKSTOP_WAIT, |s| s.covered < mine && !s.stop)
                .unwrap_or_else(|e| e.into_inner());
            if wait.timed_out() || state.stop {
                state.writer_checkpoints += 1;
                drop(state);
                allpeers_log::marrow!(
                    pages,
                    "WAL past its bound and no checkpointer: checkpointing on the writer"
                );
                if let Err(e) = wal.checkpoint() {
                    allpeers_log::marrow!(error = %e, "checkpoint on the writer failed");
                }
            }
            Ok(())
        }))?;
        let run = shared.clone();
        // SQLite's name for the WAL: the database path with "-wal" appended; absolute, so a
        // later change of the working directory cannot make the fsync miss it.
        let mut wal_file = std::path::absolute(path)
            .map_err(|source| StoreError::Io {
                what: format!("cannot resolve {}", path.display()),
                source,
            })?
            .into_os_string();
        wal_file.push("-wal");
        let wal_file = PathBuf::from(wal_file);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run_thread(&run, &checkpoints, &wal_file))
            .map_err(|e| StoreError::Io {
                what: "no checkpointer thread".into(),
                source: e,
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
impl Checkpointer {
    /// Waits until `n` complete checkpoints have run; false on timeout.
    fn wait_completed(&self, n: u64, timeout: Duration) -> bool {
        let state = lock(&self.shared.state);
        let (state, _) = self
            .shared
            .checkpointed
            .wait_timeout_while(state, timeout, |s| s.completed < n)
            .unwrap_or_else(|e| e.into_inner());
        state.completed >= n
    }

    fn writer_checkpoints(&self) -> u64 {
        lock(&self.shared.state).writer_checkpoints
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            allpeers_log::skin!("the checkpointer thread panicked");
        }
    }
}

fn run_thread(shared: &Shared, conn: &Connection, wal_file: &Path) {
    let mut state = lock(&shared.state);
    loop {
        if state.stop {
            return;
        }
        let now = Instant::now();
        if let Some((step, covered)) = state.policy.poll(now) {
            drop(state);
            let ok = run_step(conn, wal_file, step);
            state = lock(&shared.state);
            state.policy.on_done(Instant::now(), step, covered, ok);
            if ok && step != Step::SyncWal {
                state.completed += 1;
                state.covered = covered;
                shared.checkpointed.notify_all();
            }
            continue;
        }
        state = match state.policy.poll_timeout() {
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Runs `step`; whether it succeeded (a checkpoint: copied every frame).
fn run_step(conn: &Connection, wal_file: &Path, step: Step) -> bool {
    let mode = match step {
        // fsync only flushes what SQLite wrote; it changes nothing SQLite relies on. No WAL
        // file (never written, or removed on close): nothing to sync.
        Step::SyncWal => {
            return match std::fs::File::open(wal_file).and_then(|f| f.sync_data()) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => {
                    allpeers_log::marrow!(file = %wal_file.display(), error = %e, "WAL fsync failed");
                    false
                }
            };
        }
        Step::Passive => CheckpointMode::PASSIVE,
        Step::Truncate => {
            // Copy the WAL first without blocking anyone, so the TRUNCATE (which holds off a
            // message arriving meanwhile) has only an fsync and the truncation left to do.
            if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                allpeers_log::bone!(error = %e, "checkpoint before truncating");
            }
            CheckpointMode::TRUNCATE
        }
    };
    match conn.wal_checkpoint_v2(None::<&str>, mode) {
        // -1: not in WAL mode (cannot happen after `start`'s check; not a success).
        Ok((log, done)) => log >= 0 && log == done,
        Err(e) => {
            allpeers_log::marrow!(file = %wal_file.display(), error = %e, ?step, "checkpoint failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Small pages keep the real-file tests small: the bounds are in pages.
    const TEST_PAGE: i64 = 512;

    /// A database file in WAL mode with a blob table, its writer under a checkpointer.
    fn wal_db(dir: &tempfile::TempDir) -> (Connection, Checkpointer, PathBuf) {
        let path = dir.path().join("test.db");
        let mut writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(&format!("PRAGMA page_size={TEST_PAGE};"))
            .unwrap();
        let mode: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        writer
            .execute_batch("PRAGMA synchronous=NORMAL; CREATE TABLE t(b BLOB);")
            .unwrap();
        let checkpointer = Checkpointer::start(&mut writer, &path).unwrap();
        (writer, checkpointer, path)
    }

    /// Inserts `n` blobs, each filling most of a page of its own, in one transaction.
    fn write_pages(writer: &mut Connection, n: i32) {
        let tx = writer.transaction().unwrap();
        for _ in 0..n {
            tx.execute("INSERT INTO t(b) VALUES (zeroblob(?1))", [TEST_PAGE - 100])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    /// The real thread on a real file: a burst past the trigger reaches the database file
    /// without the writer checkpointing (its autocheckpoint is replaced by the hook).
    #[test]
    fn the_thread_checkpoints_a_burst_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, checkpointer, path) = wal_db(&dir);
        write_pages(&mut writer, TRIGGER_PAGES + 100);
        assert!(
            checkpointer.wait_completed(1, Duration::from_secs(20)),
            "no checkpoint within 20 s"
        );
        let db_len = std::fs::metadata(&path).unwrap().len();
        assert!(
            db_len >= TRIGGER_PAGES as u64 * TEST_PAGE as u64,
            "the database file holds {db_len} bytes"
        );
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, i64::from(TRIGGER_PAGES + 100));
        drop(checkpointer); // joins the thread
    }

    /// Small transactions as fast as they go: the writer outruns the thread, and the backstop
    /// keeps the WAL file near its bound.
    #[test]
    fn sustained_writes_keep_the_wal_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, checkpointer, path) = wal_db(&dir);
        // Past the bound by half, 8 pages a transaction.
        for _ in 0..(BACKSTOP_PAGES * 3 / 2 / 8) {
            write_pages(&mut writer, 8);
        }
        assert_eq!(
            checkpointer.writer_checkpoints(),
            0,
            "the thread left the backstop to the writer"
        );
        drop(checkpointer);
        // The WAL file keeps its largest size when it starts over: it shows the peak.
        let mut wal = path.into_os_string();
        wal.push("-wal");
        let wal_len = std::fs::metadata(wal).unwrap().len();
        let frame = TEST_PAGE as u64 + 24;
        assert!(
            wal_len <= (BACKSTOP_PAGES as u64 + 16) * frame + 32,
            "WAL reached {} frames",
            wal_len / frame
        );
    }

    #[test]
    fn nothing_to_do_before_any_commit() {
        let p = Policy::default();
        let t0 = Instant::now();
        assert_eq!(p.poll(ms(t0, 600_000)), None);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn the_wal_is_synced_an_interval_after_the_first_commit_without_a_checkpoint() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        assert!(p.on_commit(t0, 10), "the first commit wakes the thread");
        assert!(!p.on_commit(ms(t0, 400), 20), "later ones need not");
        assert_eq!(p.poll_timeout(), Some(t0 + INTERVAL));
        assert_eq!(p.poll(ms(t0, 999)), None);
        assert_eq!(p.poll(t0 + INTERVAL), Some((Step::SyncWal, 2)));
        p.on_done(t0 + INTERVAL, Step::SyncWal, 2, true);
        // Synced: nothing until the idle truncate, counted from the last commit.
        assert_eq!(p.poll_timeout(), Some(ms(t0, 400) + IDLE));
        assert_eq!(p.poll(ms(t0, 400) + IDLE - Duration::from_millis(1)), None);
    }

    #[test]
    fn passive_when_the_wal_reaches_the_trigger() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        p.on_commit(t0, 10);
        assert!(
            p.on_commit(ms(t0, 1), TRIGGER_PAGES),
            "reaching the trigger wakes it"
        );
        assert!(!p.on_commit(ms(t0, 2), TRIGGER_PAGES + 5));
        assert_eq!(p.poll(ms(t0, 2)), Some((Step::Passive, 3)));
        assert_eq!(p.poll_timeout(), Some(ms(t0, 2)));
        p.on_done(ms(t0, 5), Step::Passive, 3, true);
        // The checkpoint synced the WAL too.
        assert_eq!(p.poll(ms(t0, 5) + INTERVAL), None);
        assert_eq!(p.poll_timeout(), Some(ms(t0, 2) + IDLE));
    }

    #[test]
    fn truncate_once_idle_then_rest() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        p.on_commit(t0, 10);
        let (step, covered) = p.poll(t0 + INTERVAL).unwrap();
        p.on_done(t0 + INTERVAL, step, covered, true);
        assert_eq!(p.poll(t0 + IDLE), Some((Step::Truncate, 1)));
        p.on_done(t0 + IDLE, Step::Truncate, 1, true);
        assert_eq!(p.poll(t0 + IDLE * 10), None);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn commits_during_a_step_get_the_next_one() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        p.on_commit(t0, 10);
        let (step, covered) = p.poll(t0 + INTERVAL).unwrap();
        assert!(!p.on_commit(t0 + INTERVAL, 12), "while it runs");
        let done = t0 + INTERVAL + Duration::from_millis(3);
        p.on_done(done, step, covered, true);
        assert_eq!(p.poll(done), None);
        assert_eq!(p.poll(done + INTERVAL), Some((Step::SyncWal, 2)));
        // A checkpoint that ends with newer commits past the trigger runs again at once (a
        // writer at the backstop waits for the one that covers its commit).
        p.on_commit(done, TRIGGER_PAGES);
        let (step, covered) = p.poll(done).unwrap();
        assert_eq!(step, Step::Passive);
        p.on_commit(ms(t0, 1100), TRIGGER_PAGES + 3);
        p.on_done(ms(t0, 1110), step, covered, false);
        assert_eq!(p.poll(ms(t0, 1110)), Some((Step::Passive, covered + 1)));
        // One that covered every commit but could not finish waits for the next commit.
        p.on_done(ms(t0, 1120), Step::Passive, covered + 1, false);
        assert_eq!(p.poll(ms(t0, 1120)), None);
        assert_eq!(
            p.poll(ms(t0, 1120) + INTERVAL),
            Some((Step::SyncWal, covered + 1))
        );
    }

    #[test]
    fn a_failed_step_is_retried_later_not_at_once() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        p.on_commit(t0, 10);
        let (step, covered) = p.poll(t0 + INTERVAL).unwrap();
        p.on_done(t0 + INTERVAL, step, covered, false);
        assert_eq!(p.poll(t0 + INTERVAL), None);
        assert_eq!(p.poll(t0 + INTERVAL * 2), Some((Step::SyncWal, covered)));
        p.on_done(t0 + INTERVAL * 2, Step::SyncWal, covered, true);
        // A refused TRUNCATE (a writer came) waits another idle period.
        let idle = t0 + IDLE;
        assert_eq!(p.poll(idle), Some((Step::Truncate, covered)));
        p.on_done(idle, Step::Truncate, covered, false);
        assert_eq!(p.poll(idle), None);
        assert_eq!(p.poll(idle + IDLE), Some((Step::Truncate, covered)));
    }
}
