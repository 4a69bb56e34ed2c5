//! One `media.add` job, in the background: walk the paths, skip what is unchanged, describe
//! the rest in the worker pool, write the descriptions in batches, mark vanished files
//! missing, then replace estimated audio durations with exact ones. Progress goes out a few
//! times a second at most, and once at the end with the summary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_log::{bone, flesh, marrow};
use allpeers_media::{Extractor, Options};
use allpeers_model::api::media::{MediaProgress, MediaSummary};
use allpeers_model::query::{Expr, MAX_LIMIT, Op, Query};
use allpeers_model::resource::{Patch, Resource, Value};
use allpeers_store::{Store, StoreError};
use futures::StreamExt;

use super::catalog::{self, Decision, DiskFile};

/// Progress events at most this often (the last one always goes out).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Files looked up in the store per lock of it: long enough to be cheap, short enough not
/// to hold up the user's own calls.
const LOOKUP_BATCH: usize = 256;
/// Descriptions written per transaction, for the same reason.
const WRITE_BATCH: usize = 64;
/// Files handed to the pool at once; the pool itself runs as many as it has workers, the
/// rest wait their turn there so no worker idles between files.
const IN_FLIGHT: usize = 32;

/// What a job needs of the daemon.
pub(crate) struct JobContext {
    pub store: Arc<Mutex<Store>>,
    pub extractor: Arc<Extractor>,
    /// Publishes a `media.progress` event.
    pub report: Box<dyn Fn(&MediaProgress) + Send + Sync>,
    /// Whether a resource is in a share: its changes must reach the members.
    pub is_shared: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Writes a patch to a shared resource as a shared edit (signed ops to the members).
    pub shared_update: Box<dyn Fn(String, Patch) -> SharedWrite + Send + Sync>,
}

/// A shared edit under way; its error says why it was not written.
pub(crate) type SharedWrite =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

struct Progress<'a> {
    cx: &'a JobContext,
    state: MediaProgress,
    last: Option<Instant>,
}

impl Progress<'_> {
    fn advance(&mut self, by: u64, current: Option<&Path>) {
        self.state.done += by;
        if let Some(path) = current {
            self.state.current = Some(path.to_string_lossy().into_owned());
        }
        if self.last.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL) {
            self.last = Some(Instant::now());
            (self.cx.report)(&self.state);
        }
    }

    fn finish(mut self, summary: MediaSummary) {
        self.state.finished = true;
        self.state.summary = Some(summary);
        (self.cx.report)(&self.state);
    }
}

async fn on_store<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&mut store.lock().expect("store lock")))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Runs the job to its end and says what it did.
pub(crate) async fn run(
    cx: JobContext,
    job: u64,
    roots: Vec<PathBuf>,
    recursive: bool,
) -> MediaSummary {
    let mut summary = MediaSummary::default();
    let mut progress = Progress {
        cx: &cx,
        state: MediaProgress {
            job,
            done: 0,
            total: 0,
            current: None,
            finished: false,
            summary: None,
        },
        last: None,
    };
    let started = Instant::now();
    let walk = match tokio::task::spawn_blocking(move || catalog::walk(&roots, recursive)).await {
        Ok(walk) => walk,
        Err(e) => {
            marrow!(job, error = %e, "media walk failed");
            progress.finish(summary);
            return summary;
        }
    };
    if walk.truncated {
        marrow!(
            job,
            limit = catalog::MAX_FILES_PER_JOB,
            "media job stopped at its file limit"
        );
    }
    progress.state.total = walk.files.len() as u64;
    let seen: HashSet<String> = walk.files.iter().map(DiskFile::id).collect();

    // What is new or changed (and what the catalog held for it).
    let mut todo: Vec<(DiskFile, Option<Resource>)> = Vec::new();
    for chunk in walk.files.chunks(LOOKUP_BATCH) {
        let ids: Vec<String> = chunk.iter().map(DiskFile::id).collect();
        let olds = on_store(&cx.store, move |s| {
            ids.iter()
                .map(|id| s.get(id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap_or_else(|e| {
            marrow!(job, error = %e, "media lookup failed; describing again");
            vec![None; chunk.len()]
        });
        let mut unchanged = 0;
        for (file, old) in chunk.iter().zip(olds) {
            match catalog::decide(old.as_ref(), file) {
                Decision::Unchanged => unchanged += 1,
                Decision::New | Decision::Changed => todo.push((file.clone(), old)),
            }
        }
        summary.unchanged += unchanged;
        progress.advance(unchanged, chunk.last().map(|f| f.path.as_path()));
    }

    // Describe in the pool, write in batches.
    let mut estimated: Vec<(String, PathBuf)> = Vec::new();
    let extractor = cx.extractor.clone();
    let mut described = futures::stream::iter(todo)
        .map(|(file, old)| {
            let extractor = extractor.clone();
            async move {
                // The content hash beside the extraction: extraction reads headers in a worker, hashing reads
                // every byte on a blocking thread.
                let path = file.path.clone();
                let (outcome, hash) = tokio::join!(
                    extractor.extract(&file.path, Options::default()),
                    tokio::task::spawn_blocking(move || catalog::content_hash(&path))
                );
                let hash = match hash {
                    Ok(Ok(hash)) => Some(hash),
                    Ok(Err(e)) => {
                        bone!(job, path = %file.path.display(), error = %e, "media file not hashed");
                        None
                    }
                    Err(_) => None,
                };
                (file, old, outcome, hash)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .ready_chunks(WRITE_BATCH);
    while let Some(batch) = described.next().await {
        let count = batch.len() as u64;
        let last = batch.last().map(|(f, _, _, _)| f.path.clone());
        let items: Vec<(Option<Resource>, Resource)> = batch
            .into_iter()
            .map(|(file, old, outcome, hash)| {
                if let Err(e) = &outcome {
                    bone!(job, path = %file.path.display(), error = %e, "media file not described");
                }
                let mut new = catalog::describe(&file, outcome);
                // Without it (the file could not be read whole), an old hash is removed by the patch: the
                // content is not known to be what it named.
                if let Some(hash) = hash {
                    new.properties.insert("hash".into(), Value::String(hash));
                }
                if new.get("durationEstimated") == Some(&Value::Bool(true)) {
                    estimated.push((new.id.clone(), file.path.clone()));
                }
                (old, new)
            })
            .collect();
        // A changed file that is shared goes to the members too: written as a shared edit, not by the store
        // alone (its ops are taken from what the store holds before the write).
        let (shared, items): (Vec<_>, Vec<_>) = items.into_iter().partition(|(old, new)| {
            old.as_ref()
                .is_some_and(|o| o.type_name == new.type_name && (cx.is_shared)(&new.id))
        });
        for (old, new) in shared {
            let old = old.expect("partitioned on Some");
            let failed = new.meta.contains_key("error");
            match (cx.shared_update)(new.id.clone(), catalog::patch(&old, &new)).await {
                Ok(()) => summary.updated += 1,
                Err(e) => {
                    bone!(job, id = %new.id, error = %e, "media: shared file's new description not written");
                    summary.failed += 1;
                    continue;
                }
            }
            if failed {
                summary.failed += 1;
            }
        }
        match on_store(&cx.store, move |s| Ok(write_batch(s, items))).await {
            Ok(written) => {
                summary.added += written.added;
                summary.updated += written.updated;
                summary.failed += written.failed;
            }
            Err(e) => {
                marrow!(job, error = %e, "media write failed");
                summary.failed += count;
            }
        }
        progress.advance(count, last.as_deref());
    }

    for folder in walk.folders {
        let seen = seen.clone();
        let marked = on_store(&cx.store, move |s| {
            mark_missing(s, &folder, recursive, &seen)
        })
        .await;
        match marked {
            Ok(n) => summary.missing += n,
            Err(e) => marrow!(job, error = %e, "media missing check failed"),
        }
    }
    for gone in walk.gone {
        match on_store(&cx.store, move |s| mark_gone(s, &gone)).await {
            Ok(n) => summary.missing += n,
            Err(e) => marrow!(job, error = %e, "media missing check failed"),
        }
    }

    // Exact durations where the header gave an estimate: a packet scan reads the whole file.
    let mut exact = futures::stream::iter(estimated)
        .map(|(id, path)| {
            let extractor = extractor.clone();
            async move { (id, extractor.exact_duration(&path).await) }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some((id, seconds)) = exact.next().await {
        let Ok(seconds) = seconds else { continue };
        let patch = Patch::default()
            .set("duration", seconds)
            .set("durationEstimated", false);
        let written = if (cx.is_shared)(&id) {
            (cx.shared_update)(id, patch).await
        } else {
            on_store(&cx.store, move |s| s.update(&id, &patch))
                .await
                .map(|_| ())
        };
        if let Err(e) = written {
            bone!(job, error = %e, "exact duration not written");
        }
    }

    flesh!(
        job,
        ms = started.elapsed().as_millis() as u64,
        added = summary.added,
        updated = summary.updated,
        unchanged = summary.unchanged,
        missing = summary.missing,
        failed = summary.failed,
        skipped = walk.skipped,
        "media job finished"
    );
    progress.finish(summary);
    summary
}

#[derive(Default)]
struct Written {
    added: u64,
    updated: u64,
    failed: u64,
}

/// Writes fresh descriptions: new files in one transaction, changed ones each by a patch
/// (a changed type replaces the resource under the same id). A description the store
/// refuses is replaced by a plain File carrying the reason, so the file stays catalogued.
fn write_batch(store: &mut Store, items: Vec<(Option<Resource>, Resource)>) -> Written {
    let mut written = Written::default();
    let mut creates = Vec::new();
    for (old, new) in items {
        let failed = new.meta.contains_key("error");
        match old {
            Some(old) if old.type_name == new.type_name => {
                match store.update(&new.id, &catalog::patch(&old, &new)) {
                    Ok(_) => written.updated += 1,
                    Err(e) => {
                        let _ = store.delete(&new.id);
                        creates.push((refused(&new, &e), true));
                        written.failed += 1;
                        continue;
                    }
                }
            }
            Some(old) => {
                // A resource keeps its type for life: a file now of another kind is a new
                // resource under the same id.
                if let Err(e) = store.delete(&old.id) {
                    bone!(id = %old.id, error = %e, "media: old description not removed");
                }
                written.updated += 1;
                creates.push((new, failed));
            }
            None => {
                written.added += 1;
                creates.push((new, failed));
            }
        }
        if failed {
            written.failed += 1;
        }
    }
    // The second of each pair: the file is already counted as failed.
    let all: Vec<Resource> = creates.iter().map(|(r, _)| r.clone()).collect();
    if store.create_many(all).is_err() {
        // One refused description fails the whole transaction: write them one by one.
        for (r, counted) in creates {
            if let Err(e) = store.create(r.clone()) {
                if let Err(e) = store.create(refused(&r, &e)) {
                    marrow!(id = %r.id, error = %e, "media: file not catalogued");
                }
                if !counted {
                    written.failed += 1;
                }
            }
        }
    }
    written
}

/// A plain File standing for a description the store refused.
fn refused(new: &Resource, e: &StoreError) -> Resource {
    let mut r = Resource::new("File").with_id(&new.id);
    for key in ["name", "title", "size"] {
        if let Some(v) = new.get(key) {
            r.properties.insert(key.to_owned(), v.clone());
        }
    }
    for key in ["path", "mtime"] {
        if let Some(v) = new.meta.get(key) {
            r.meta.insert(key.to_owned(), v.clone());
        }
    }
    r.with_meta("error", format!("the description was refused: {e}"))
}

/// Marks what was catalogued at `path`, which no longer exists, as missing: the file itself,
/// or every file below the folder it was. Answers how many.
fn mark_gone(store: &mut Store, path: &Path) -> Result<u64, StoreError> {
    let mut marked = 0;
    let own = catalog::file_id(path);
    if let Some(r) = store.get(&own)?
        && r.meta.contains_key("path")
        && r.meta.get("missing") != Some(&Value::Bool(true))
        && !path.exists()
    {
        store.update(&own, &catalog::missing_patch())?;
        marked += 1;
    }
    Ok(marked + mark_missing(store, path, true, &HashSet::new())?)
}

/// Marks catalogued files of `folder` that the walk did not see and that are gone from disk
/// as missing; answers how many.
fn mark_missing(
    store: &mut Store,
    folder: &Path,
    recursive: bool,
    seen: &HashSet<String>,
) -> Result<u64, StoreError> {
    let mut prefix = folder.to_string_lossy().into_owned();
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let query = Query::of("File")
        .and(Expr::meta("path", Op::Prefix, prefix))
        .limit(MAX_LIMIT);
    let mut marked = 0;
    for id in store.query_ids(&query)? {
        if seen.contains(&id) {
            continue;
        }
        let Some(r) = store.get(&id)? else { continue };
        let Some(path) = r
            .meta
            .get("path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
        else {
            continue;
        };
        let already = r.meta.get("missing") == Some(&Value::Bool(true));
        if !already && catalog::in_folder(folder, &path, recursive) && !path.exists() {
            store.update(&id, &catalog::missing_patch())?;
            marked += 1;
        }
    }
    Ok(marked)
}
