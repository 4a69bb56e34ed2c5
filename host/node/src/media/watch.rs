//! Keeping catalogued paths up to date as it happens: a file that changes is described again,
//! one that appears is added, one that vanishes is marked missing.
//!
//! * [`Pending`] — the rules, I/O-free: which watched path an event touches, gathered until
//!   the folder has been quiet a moment (a copy of a thousand files is one job, not a
//!   thousand), bounded (past [`MAX_PENDING_PER_ROOT`] paths the whole path is walked again).
//! * [`Watching`] — the glue: the operating system's watcher (`notify`: inotify on Linux),
//!   the watched paths kept in the store (`ap_watched`), and one job at a time run through
//!   [`super::job::run`], which reports on `media.progress` like any `media.add`.
//!
//! Which files changed is still decided by the catalog (modification time and size), so a
//! spurious event costs a `stat`, never a description.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_log::{bone, flesh, marrow, skin};
use allpeers_model::api::media::WatchedPath;
use allpeers_store::watched::WatchedRow;
use notify::Watcher as _;
use tokio::sync::mpsc;

/// A folder quiet this long after its last event is looked at.
const QUIET: Duration = Duration::from_secs(1);
/// A folder that never goes quiet (a long download into it) is looked at this often anyway.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// Paths remembered per watched path between jobs; past it the whole path is walked again,
/// which finds the same changes (and the catalog skips what did not change).
pub const MAX_PENDING_PER_ROOT: usize = 4096;
/// Events queued from the watcher's thread; when full, every watched path is walked again.
const EVENT_QUEUE: usize = 4096;
/// How often paths that are not watched (gone, or refused by the system) are tried again: a
/// folder on a disk plugged back in, or restored, is watched again within this.
const RETRY: Duration = Duration::from_secs(30);
/// Files being written by a download: described once renamed into place, not while they grow.
const PARTIAL_SUFFIX: &str = ".part";

/// A watched path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub path: PathBuf,
    pub recursive: bool,
    /// A folder (otherwise a single file).
    pub is_dir: bool,
}

impl Root {
    /// Whether an event at `path` concerns this root: the root itself, or what a walk of it
    /// covers (a non-recursive folder's own entries; anything below a recursive one).
    fn covers(&self, path: &Path) -> bool {
        if path == self.path {
            return true;
        }
        self.is_dir
            && if self.recursive {
                path.starts_with(&self.path)
            } else {
                path.parent() == Some(self.path.as_path())
            }
    }
}

/// What is known to have changed under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// These paths (files, folders, or paths that vanished).
    Paths(BTreeSet<PathBuf>),
    /// Too many, or the watcher lost events: walk the whole root.
    Whole,
}

/// Events gathered since the last job, and when they are due.
#[derive(Debug, Default)]
pub struct Pending {
    by_root: BTreeMap<PathBuf, Touched>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Pending {
    /// Notes an event at `path`, for the most specific root that covers it (none: ignored).
    pub fn touch(&mut self, roots: &[Root], path: &Path, now: Instant) {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(PARTIAL_SUFFIX))
        {
            return;
        }
        let Some(root) = roots
            .iter()
            .filter(|r| r.covers(path))
            .max_by_key(|r| r.path.as_os_str().len())
        else {
            return;
        };
        let entry = self
            .by_root
            .entry(root.path.clone())
            .or_insert_with(|| Touched::Paths(BTreeSet::new()));
        if let Touched::Paths(paths) = entry {
            paths.insert(path.to_path_buf());
            if paths.len() > MAX_PENDING_PER_ROOT {
                *entry = Touched::Whole;
            }
        }
        self.stamp(now);
    }

    /// Marks a whole root to be walked again (events were lost, or the daemon just started).
    pub fn rescan(&mut self, root: &Root, now: Instant) {
        self.by_root.insert(root.path.clone(), Touched::Whole);
        self.stamp(now);
    }

    fn stamp(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the gathered events are due: [`QUIET`] after the last one, [`MAX_WAIT`] after
    /// the first at the latest; `None` with nothing gathered.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + QUIET).min(first + MAX_WAIT))
    }

    /// What to look at, root by root (roots no longer watched are dropped); empties the set.
    pub fn take(&mut self, roots: &[Root]) -> Vec<(Root, Touched)> {
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.by_root)
            .into_iter()
            .filter_map(|(path, touched)| {
                let root = roots.iter().find(|r| r.path == path)?;
                Some((root.clone(), touched))
            })
            .collect()
    }
}

/// The operating-system watches that cover `roots`: a folder as recursive as its root asks,
/// a single file through its folder (editors replace a file by renaming another over it,
/// which ends a watch on the file itself); none under a path already watched recursively.
pub fn os_watches(roots: &[Root]) -> BTreeMap<PathBuf, bool> {
    let mut wanted: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for root in roots {
        let (path, recursive) = if root.is_dir {
            (root.path.clone(), root.recursive)
        } else {
            match root.path.parent() {
                Some(parent) => (parent.to_path_buf(), false),
                None => continue,
            }
        };
        let entry = wanted.entry(path).or_insert(false);
        *entry |= recursive;
    }
    let recursive: Vec<PathBuf> = wanted
        .iter()
        .filter(|(_, r)| **r)
        .map(|(p, _)| p.clone())
        .collect();
    wanted.retain(|path, _| !recursive.iter().any(|r| path != r && path.starts_with(r)));
    wanted
}

/// What the paths of one root mean for a job: the paths to walk and whether folders among
/// them are walked recursively. A folder inside a non-recursive root is not catalogued.
pub fn job_paths(root: &Root, touched: Touched) -> Vec<PathBuf> {
    match touched {
        Touched::Whole => vec![root.path.clone()],
        Touched::Paths(paths) => paths
            .into_iter()
            .filter(|p| p == &root.path || root.recursive || !p.is_dir())
            .collect(),
    }
}

// ---- the glue ----

/// A watched path with why it is not watched now, if so.
struct Entry {
    root: Root,
    error: Option<String>,
}

struct Shared {
    entries: Mutex<Vec<Entry>>,
    /// The OS watches in place, by path: recursive or not.
    placed: Mutex<BTreeMap<PathBuf, bool>>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// Set when the event queue overflowed or the OS said events were lost.
    lost: AtomicBool,
}

/// The watched paths and the OS watcher; jobs run through [`run_loop`].
pub struct Watching {
    shared: Arc<Shared>,
    events: Mutex<Option<mpsc::Receiver<Vec<PathBuf>>>>,
    wake: Arc<tokio::sync::Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "the catalog already keeps {} paths up to date",
        allpeers_store::watched::MAX_WATCHED
    )]
    TooMany,
    #[error("{0}")]
    Store(String),
}

impl Watching {
    /// The OS watcher, idle until paths are added; `None` watcher (with a log line) where the
    /// system has none, in which case paths are still kept and caught up at start.
    pub fn new() -> Watching {
        let (tx, rx) = mpsc::channel::<Vec<PathBuf>>(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            entries: Mutex::new(Vec::new()),
            placed: Mutex::new(BTreeMap::new()),
            watcher: Mutex::new(None),
            lost: AtomicBool::new(false),
        });
        let wake = Arc::new(tokio::sync::Notify::new());
        let on_event = {
            let shared = Arc::downgrade(&shared);
            let wake = wake.clone();
            move |event: notify::Result<notify::Event>| {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match event {
                    Ok(event) if event.need_rescan() => shared.lost.store(true, Ordering::Relaxed),
                    Ok(event) if event.kind.is_access() => return,
                    Ok(event) => {
                        if tx.try_send(event.paths).is_err() {
                            shared.lost.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        bone!(error = %e, "file watcher error; walking watched paths again");
                        shared.lost.store(true, Ordering::Relaxed);
                    }
                }
                wake.notify_one();
            }
        };
        match notify::recommended_watcher(on_event) {
            Ok(w) => *shared.watcher.lock().unwrap() = Some(w),
            Err(e) => {
                marrow!(error = %e, "no file watcher: watched paths are caught up at start only")
            }
        }
        Watching {
            shared,
            events: Mutex::new(Some(rx)),
            wake,
        }
    }

    fn roots(&self) -> Vec<Root> {
        let entries = self.shared.entries.lock().unwrap();
        entries.iter().map(|e| e.root.clone()).collect()
    }

    /// The watched paths, for `media.watched`.
    pub fn list(&self) -> Vec<WatchedPath> {
        let entries = self.shared.entries.lock().unwrap();
        entries
            .iter()
            .map(|e| WatchedPath {
                path: e.root.path.to_string_lossy().into_owned(),
                recursive: e.root.recursive,
                error: e.error.clone(),
            })
            .collect()
    }

    /// Loads the kept paths (at start, before [`run_loop`]; places OS watches, so run it off
    /// the runtime's threads).
    pub fn load(&self, rows: Vec<WatchedRow>) {
        let mut entries = self.shared.entries.lock().unwrap();
        for row in rows {
            let path = PathBuf::from(&row.path);
            // Added by a `media.add` that came first: that one is current.
            if entries.iter().any(|e| e.root.path == path) {
                continue;
            }
            let meta = std::fs::metadata(&path);
            entries.push(Entry {
                root: Root {
                    is_dir: meta.as_ref().is_ok_and(|m| m.is_dir()),
                    path,
                    recursive: row.recursive,
                },
                error: meta.err().map(|e| format!("not watched: {e}")),
            });
        }
        drop(entries);
        self.place();
    }

    /// Adds (or updates) watched paths, already kept in the store.
    pub fn add(&self, roots: Vec<Root>) {
        let mut entries = self.shared.entries.lock().unwrap();
        for root in roots {
            entries.retain(|e| e.root.path != root.path);
            entries.push(Entry { root, error: None });
        }
        entries.sort_by(|a, b| a.root.path.cmp(&b.root.path));
        drop(entries);
        self.place();
    }

    /// Stops watching `path`; true if it was watched.
    pub fn remove(&self, path: &Path) -> bool {
        let mut entries = self.shared.entries.lock().unwrap();
        let before = entries.len();
        entries.retain(|e| e.root.path != path);
        let removed = entries.len() != before;
        drop(entries);
        self.place();
        removed
    }

    /// Notes paths that vanished while watched and tries again those that were not watched;
    /// answers the ones watched again (walk them: what is there may have changed meanwhile).
    pub fn revive(&self) -> Vec<Root> {
        let waiting: Vec<PathBuf> = {
            let mut entries = self.shared.entries.lock().unwrap();
            for e in entries.iter_mut().filter(|e| e.error.is_some()) {
                // Whether it is a folder may have changed too.
                e.root.is_dir = e.root.path.is_dir();
            }
            entries
                .iter()
                .filter(|e| e.error.is_some())
                .map(|e| e.root.path.clone())
                .collect()
        };
        self.place();
        let entries = self.shared.entries.lock().unwrap();
        entries
            .iter()
            .filter(|e| e.error.is_none() && waiting.contains(&e.root.path))
            .map(|e| e.root.clone())
            .collect()
    }

    /// Brings the OS watches in line with the watched paths; a watch the system refuses
    /// (the path is gone, or the limit on watches is reached) is noted on its paths.
    fn place(&self) {
        let roots: Vec<Root> = {
            let entries = self.shared.entries.lock().unwrap();
            entries
                .iter()
                // A path gone meanwhile loses its watch (the system ended it with the folder).
                .filter(|e| e.root.path.exists())
                .map(|e| e.root.clone())
                .collect()
        };
        let wanted = os_watches(&roots);
        let mut guard = self.shared.watcher.lock().unwrap();
        let Some(watcher) = guard.as_mut() else {
            return;
        };
        let mut placed = self.shared.placed.lock().unwrap();
        let mut failed: HashMap<PathBuf, String> = HashMap::new();
        for (path, recursive) in placed.clone() {
            if wanted.get(&path) != Some(&recursive) {
                // Already gone with its folder: nothing to undo.
                let _ = watcher.unwatch(&path);
                placed.remove(&path);
            }
        }
        for (path, recursive) in &wanted {
            if placed.contains_key(path) {
                continue;
            }
            let mode = if *recursive {
                notify::RecursiveMode::Recursive
            } else {
                notify::RecursiveMode::NonRecursive
            };
            match watcher.watch(path, mode) {
                Ok(()) => {
                    placed.insert(path.clone(), *recursive);
                }
                Err(e) => {
                    bone!(path = %path.display(), error = %e, "path not watched");
                    failed.insert(path.clone(), format!("not watched: {e}"));
                }
            }
        }
        drop(placed);
        drop(guard);
        let mut entries = self.shared.entries.lock().unwrap();
        for e in entries.iter_mut() {
            let watched_at = if e.root.is_dir {
                e.root.path.clone()
            } else {
                e.root
                    .path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            e.error = failed.get(&watched_at).cloned().or_else(|| {
                (!e.root.path.exists()).then(|| "not watched: the path is gone".to_string())
            });
        }
    }
}

impl Default for Watching {
    fn default() -> Self {
        Watching::new()
    }
}

/// Gathers events and runs one job at a time for what they touched, until `shutdown`.
/// Every kept path is walked once at start, to catch up with what changed while the node
/// was not running. `run_job` runs one job over (paths, recursive) to its end.
pub async fn run_loop<F, Fut>(
    watching: Arc<Watching>,
    shutdown: tokio_util::sync::CancellationToken,
    run_job: F,
) where
    F: Fn(Vec<PathBuf>, bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(mut events) = watching.events.lock().unwrap().take() else {
        return;
    };
    let mut pending = Pending::default();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now = Instant::now();
    for root in watching.roots() {
        pending.rescan(&root, now);
    }
    loop {
        if watching.shared.lost.swap(false, Ordering::Relaxed) {
            skin!("file events were lost: walking every watched path again");
            let now = Instant::now();
            for root in watching.roots() {
                pending.rescan(&root, now);
            }
        }
        let due = pending.due();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = events.recv() => {
                let Some(paths) = got else { return };
                let roots = watching.roots();
                let now = Instant::now();
                for path in paths {
                    pending.touch(&roots, &path, now);
                }
            }
            _ = watching.wake.notified() => {}
            _ = retry.tick() => {
                let now = Instant::now();
                for root in watching.revive() {
                    skin!(root = %root.path.display(), "watched path is back");
                    pending.rescan(&root, now);
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                let roots = watching.roots();
                for (root, touched) in pending.take(&roots) {
                    let paths = job_paths(&root, touched);
                    if paths.is_empty() {
                        continue;
                    }
                    flesh!(root = %root.path.display(), paths = paths.len(), "watched path changed");
                    // Events that come meanwhile wait in the queue (or set `lost`).
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = run_job(paths, root.recursive) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str, recursive: bool) -> Root {
        Root {
            path: path.into(),
            recursive,
            is_dir: true,
        }
    }

    fn file(path: &str) -> Root {
        Root {
            path: path.into(),
            recursive: false,
            is_dir: false,
        }
    }

    fn set(paths: &[&str]) -> Touched {
        Touched::Paths(paths.iter().map(PathBuf::from).collect())
    }

    #[test]
    fn events_go_to_the_most_specific_root_that_covers_them() {
        let roots = [
            dir("/m", true),
            dir("/m/live", false),
            dir("/flat", false),
            file("/docs/a.txt"),
        ];
        let mut p = Pending::default();
        let t = Instant::now();
        for path in [
            "/m/a/b.mp3",
            "/m/live/x.flac",
            "/m/live/deep/y.flac",
            "/flat/c.jpg",
            "/flat/sub/d.jpg",
            "/docs/a.txt",
            "/docs/other.txt",
            "/elsewhere/e",
            "/m/big.iso.part",
        ] {
            p.touch(&roots, Path::new(path), t);
        }
        let taken = p.take(&roots);
        let got: Vec<(&str, Touched)> = taken
            .iter()
            .map(|(r, t)| (r.path.to_str().unwrap(), t.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/docs/a.txt", set(&["/docs/a.txt"])),
                ("/flat", set(&["/flat/c.jpg"])),
                // Not under /m/live's own folder, so /m (recursive) has it.
                ("/m", set(&["/m/a/b.mp3", "/m/live/deep/y.flac"])),
                ("/m/live", set(&["/m/live/x.flac"])),
            ]
        );
        assert_eq!(p.due(), None, "taking empties it");
    }

    #[test]
    fn due_after_a_quiet_moment_or_the_longest_wait() {
        let mut p = Pending::default();
        let roots = [dir("/m", true)];
        let t0 = Instant::now();
        assert_eq!(p.due(), None);
        p.touch(&roots, Path::new("/m/a"), t0);
        assert_eq!(p.due(), Some(t0 + QUIET));
        p.touch(&roots, Path::new("/m/b"), t0 + QUIET / 2);
        assert_eq!(p.due(), Some(t0 + QUIET / 2 + QUIET));
        // Events every half second keep it from going quiet: the longest wait wins.
        let mut t = t0;
        while t < t0 + MAX_WAIT * 2 {
            t += QUIET / 2;
            p.touch(&roots, Path::new("/m/c"), t);
        }
        assert_eq!(p.due(), Some(t0 + MAX_WAIT));
        // An event for no root changes nothing.
        let mut q = Pending::default();
        q.touch(&roots, Path::new("/other"), t0);
        assert_eq!(q.due(), None);
    }

    #[test]
    fn too_many_paths_become_a_walk_of_the_whole_root() {
        let roots = [dir("/m", true)];
        let mut p = Pending::default();
        let t = Instant::now();
        for i in 0..=MAX_PENDING_PER_ROOT {
            p.touch(&roots, Path::new(&format!("/m/{i}")), t);
        }
        assert_eq!(p.take(&roots), vec![(roots[0].clone(), Touched::Whole)]);
        p.rescan(&roots[0], t);
        p.touch(&roots, Path::new("/m/after"), t);
        assert_eq!(p.take(&roots), vec![(roots[0].clone(), Touched::Whole)]);
    }

    #[test]
    fn a_root_unwatched_meanwhile_is_dropped() {
        let roots = [dir("/m", true), dir("/n", true)];
        let mut p = Pending::default();
        let t = Instant::now();
        p.touch(&roots, Path::new("/m/a"), t);
        p.touch(&roots, Path::new("/n/a"), t);
        let left = [dir("/n", true)];
        assert_eq!(p.take(&left), vec![(left[0].clone(), set(&["/n/a"]))]);
    }

    #[test]
    fn os_watches_cover_each_root_once() {
        let roots = [
            dir("/m", true),
            dir("/m/sub", false),
            file("/m/sub/x"),
            dir("/flat", false),
            file("/flat/y"),
            file("/docs/z"),
            file("/docs/w"),
            dir("/deep/a", false),
            dir("/deep", true),
        ];
        let got: Vec<(String, bool)> = os_watches(&roots)
            .into_iter()
            .map(|(p, r)| (p.to_string_lossy().into_owned(), r))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/deep".into(), true),
                ("/docs".into(), false),
                ("/flat".into(), false),
                ("/m".into(), true),
            ]
        );
    }

    #[test]
    fn a_path_that_comes_back_is_watched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let music = tmp.path().join("music");
        let watching = Watching::new();
        watching.load(vec![WatchedRow {
            path: music.to_string_lossy().into_owned(),
            recursive: true,
            added_at: 0,
        }]);
        let listed = watching.list();
        assert!(
            listed[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("not watched"))
        );
        assert!(watching.revive().is_empty(), "still gone");
        std::fs::create_dir(&music).unwrap();
        let back = watching.revive();
        assert_eq!(back.len(), 1);
        assert!(back[0].is_dir && back[0].recursive);
        assert_eq!(watching.list()[0].error, None);
        assert!(watching.revive().is_empty(), "once");
        // Gone while watched, then back: watched again.
        std::fs::remove_dir(&music).unwrap();
        assert!(watching.revive().is_empty());
        assert!(watching.list()[0].error.is_some(), "noted as gone");
        std::fs::create_dir(&music).unwrap();
        assert_eq!(watching.revive().len(), 1);
        assert_eq!(watching.list()[0].error, None);
    }

    #[test]
    fn job_paths_leave_sub_folders_of_a_flat_root_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("f"), "x").unwrap();
        let flat = Root {
            path: root.clone(),
            recursive: false,
            is_dir: true,
        };
        let touched = Touched::Paths(
            [root.join("sub"), root.join("f"), root.join("gone")]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            job_paths(&flat, touched.clone()),
            vec![root.join("f"), root.join("gone")]
        );
        let deep = Root {
            recursive: true,
            ..flat.clone()
        };
        assert_eq!(job_paths(&deep, touched).len(), 3);
        assert_eq!(job_paths(&deep, Touched::Whole), vec![root]);
    }
}
