//! `allpeers add PATH... [-r] [--no-watch]`, `allpeers info PATH|ID`, `allpeers watched` and
//! `allpeers unwatch PATH`: the media catalog from the command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allpeers_model::api::media::{
    self as api, AddResult, MediaProgress, UnwatchResult, WatchedPath, topics,
};
use allpeers_model::api::methods as m;
use allpeers_node::paths::NodePaths;
use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{connect, runtime};

/// How long `add` waits without hearing of its job before giving up: longer than the pool's
/// deadline for one file (`allpeers_media::pool::DEFAULT_DEADLINE`, 30 s) with room for an
/// exact-duration scan of a long recording.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Properties `info` does not list (every resource has them; the header shows the type).
const HIDDEN: &[&str] = &["owner", "created", "modified", "title", "name"];

pub fn add(
    paths: &NodePaths,
    files: &[PathBuf],
    recursive: bool,
    no_watch: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    // The daemon runs elsewhere (another working directory): it gets absolute paths.
    let absolute = files
        .iter()
        .map(|f| std::fs::canonicalize(f).with_context(|| format!("cannot find {}", f.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Unsaid (null), the daemon's default: folders watched, single files not.
    let watch = no_watch.then_some(false);
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        client
            .call(m::EVENTS_SUBSCRIBE, json!({"topics": [topics::MEDIA_PROGRESS]}))
            .await?;
        let started = Instant::now();
        let AddResult { job } = client
            .call_typed(
                api::MEDIA_ADD,
                json!({"paths": absolute, "recursive": recursive, "watch": watch}),
            )
            .await?;
        let live = std::io::stderr().is_terminal() && !json_out;
        loop {
            let event = tokio::time::timeout(STALL_TIMEOUT, client.next_event())
                .await
                .with_context(|| format!("no news of job {job} for {STALL_TIMEOUT:?}"))?
                .context("the daemon closed the connection")?;
            if event.topic != topics::MEDIA_PROGRESS {
                continue;
            }
            let progress: MediaProgress = serde_json::from_value(event.data)?;
            if progress.job != job {
                continue;
            }
            if live {
                let current = progress
                    .current
                    .as_deref()
                    .and_then(|c| Path::new(c).file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                eprint!("\r\x1b[2K{}/{} {current}", progress.done, progress.total);
                let _ = std::io::stderr().flush();
            }
            let Some(summary) = progress.summary.filter(|_| progress.finished) else {
                continue;
            };
            if live {
                eprint!("\r\x1b[2K");
            }
            if json_out {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "{} files in {:.1} s: {} added, {} updated, {} unchanged, {} missing, {} failed",
                    progress.total,
                    started.elapsed().as_secs_f64(),
                    summary.added,
                    summary.updated,
                    summary.unchanged,
                    summary.missing,
                    summary.failed
                );
            }
            return Ok(());
        }
    })
}

pub fn watched(paths: &NodePaths, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let list: Vec<WatchedPath> = client.call_typed(api::MEDIA_WATCHED, json!({})).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else if list.is_empty() {
            println!("no path is watched (allpeers add FOLDER watches it)");
        }
        for w in list.iter().filter(|_| !json_out) {
            let how = if w.recursive {
                "with sub-folders"
            } else {
                "its own files"
            };
            match &w.error {
                None => println!("{}  ({how})", w.path),
                Some(e) => println!("{}  ({how}) — {e}", w.path),
            }
        }
        Ok(())
    })
}

pub fn unwatch(paths: &NodePaths, path: &Path) -> anyhow::Result<()> {
    // A vanished path is still named by the path it had.
    let absolute = std::fs::canonicalize(path).or_else(|_| std::path::absolute(path))?;
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result: UnwatchResult = client
            .call_typed(api::MEDIA_UNWATCH, json!({"path": absolute}))
            .await?;
        if result.removed {
            println!(
                "{} is no longer watched (its files stay catalogued)",
                absolute.display()
            );
            Ok(())
        } else {
            bail!("{} was not watched", absolute.display())
        }
    })
}

pub fn info(paths: &NodePaths, target: &str, json_out: bool) -> anyhow::Result<()> {
    let local = Path::new(target);
    let params = if local.exists() {
        json!({"path": std::fs::canonicalize(local)?})
    } else if target.contains('/') {
        // A vanished file is still looked up by the path it had.
        json!({"path": std::path::absolute(local)?})
    } else {
        json!({"id": target})
    };
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let resource = client.call(api::MEDIA_INFO, params).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&resource)?);
            return Ok(());
        }
        print!("{}", render(&resource)?);
        Ok(())
    })
}

/// The human form of a catalogued file.
fn render(r: &Value) -> anyhow::Result<String> {
    let Some(props) = r["properties"].as_object() else {
        bail!("the daemon answered something that is not a resource");
    };
    let meta = r["meta"].as_object().cloned().unwrap_or_default();
    let mut out = format!(
        "{}\n  {:<12} {}\n  {:<12} {}\n",
        meta.get("path").and_then(Value::as_str).unwrap_or("?"),
        "type",
        r["type"].as_str().unwrap_or("?"),
        "id",
        r["id"].as_str().unwrap_or("?"),
    );
    if let Some(title) = props.get("title").and_then(Value::as_str) {
        out += &format!("  {:<12} {title}\n", "title");
    }
    for (key, value) in props.iter().filter(|(k, _)| !HIDDEN.contains(&k.as_str())) {
        let shown = match (key.as_str(), value) {
            ("thumbnail", Value::String(b64)) => format!("{} bytes", b64.len() / 4 * 3),
            ("duration", Value::Number(n)) => format!("{:.2} s", n.as_f64().unwrap_or(0.0)),
            ("size", Value::Number(n)) => format!("{n} bytes"),
            (_, Value::String(s)) => s.replace('\n', " ⏎ "),
            (_, other) => other.to_string(),
        };
        out += &format!("  {key:<12} {shown}\n");
    }
    for key in ["mtime", "missing", "error"] {
        if let Some(v) = meta.get(key) {
            out += &format!(
                "  {key:<12} {}\n",
                v.as_str().map_or(v.to_string(), str::to_owned)
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_shows_facts_and_hides_bulk() {
        let r = json!({
            "id": "file:abc", "type": "Audio",
            "properties": {"name": "a.mp3", "title": "Song", "duration": 3.0, "size": 1000,
                           "thumbnail": "AAAA", "owner": "ap1"},
            "meta": {"path": "/m/a.mp3", "error": "bad"}
        });
        let text = render(&r).unwrap();
        assert!(text.starts_with("/m/a.mp3\n"), "{text}");
        assert!(text.contains("duration     3.00 s"), "{text}");
        assert!(text.contains("thumbnail    3 bytes"), "{text}");
        assert!(text.contains("error        bad"), "{text}");
        assert!(!text.contains("owner"), "{text}");
    }
}
