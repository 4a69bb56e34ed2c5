//! `allpeers get FILE.torrent`, `allpeers transfers …`, `allpeers seed FILE`: downloads and uploads from a terminal,
//! with a live progress line while a download runs.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allpeers_model::api::methods as m;
use allpeers_model::api::transfers::{
    self as t, ChangedEvent, Limits, ProgressEvent, SeedResult, Transfer, TransferProgress,
    TransferState, Upload, topics,
};
use allpeers_node::client::ApiClient;
use allpeers_node::paths::NodePaths;
use anyhow::{Context, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{connect, runtime};

/// Without a terminal (a log, a pipe) a new progress line at most this often, instead of one redrawn line.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct GetArgs {
    /// The .torrent file, its http(s) URL, a magnet link, or the id of a File shared with you
    torrent: String,
    /// Where the files go [default: the daemon's download directory]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A peer to dial besides the torrent's trackers (ip:port); repeatable
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<SocketAddr>,
    /// Add the download and return without waiting for it
    #[arg(long)]
    no_wait: bool,
    /// This download's own limit, e.g. 2M (the global limits apply too)
    #[arg(long, value_name = "RATE")]
    down: Option<String>,
    /// Its own upload limit while it runs and seeds, e.g. 500K
    #[arg(long, value_name = "RATE")]
    up: Option<String>,
}

#[derive(Args)]
pub struct SeedArgs {
    /// The file or folder to share (it stays where it is; it is read, never copied)
    file: PathBuf,
    /// A tracker to put in the torrent; repeatable
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Where to write the .torrent to give others [default: ./NAME.torrent]
    #[arg(long, value_name = "FILE")]
    torrent_out: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TransfersCommand {
    /// Every transfer with its state and progress
    List,
    /// Pause a transfer (it stays paused across restarts)
    Pause { id: u64 },
    /// Resume a transfer from what is on disk
    Resume { id: u64 },
    /// Stop and forget a transfer
    Cancel {
        id: u64,
        /// Delete its downloaded files too (files you seed in place are never deleted)
        #[arg(long)]
        delete_files: bool,
    },
    /// Who downloads from you, fastest first
    Uploads,
    /// Show or set the global limits: --down 2M --up 500K (none: no limit)
    Limits {
        #[arg(long, value_name = "RATE")]
        down: Option<String>,
        #[arg(long, value_name = "RATE")]
        up: Option<String>,
    },
}

/// `1.5M`, `500K`, `2MiB`, `1000` (bytes per second), or `none` / `0` for no limit.
fn parse_rate(text: &str) -> anyhow::Result<Option<u64>> {
    let text = text.trim().to_ascii_lowercase();
    if text == "none" || text == "0" {
        return Ok(None);
    }
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let number: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a rate (e.g. 500K, 2M, none)"))?;
    let scale = match unit.trim().trim_end_matches("/s") {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown unit {other:?} (use K, M or G)"),
    };
    Ok(Some((number * scale) as u64))
}

pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(limit: Option<u64>) -> String {
    limit.map_or_else(|| "no limit".into(), |r| format!("{}/s", size(r)))
}

pub(crate) fn state_word(state: TransferState) -> &'static str {
    match state {
        TransferState::Queued => "queued",
        TransferState::FetchingMetadata => "fetching metadata",
        TransferState::Downloading => "downloading",
        TransferState::Seeding => "seeding",
        TransferState::Paused => "paused",
        TransferState::Retrying => "retrying",
        TransferState::Failed => "failed",
    }
}

/// A time left as the sidebar says it (`formatEta`): `42 s`, `3 min 5 s`, `2 h 10 min`, `3 days`.
fn duration_words(secs: u64) -> String {
    let (minutes, hours) = (secs / 60, secs / 3600);
    if secs < 60 {
        format!("{secs} s")
    } else if minutes < 60 {
        format!("{minutes} min {} s", secs % 60)
    } else if hours < 48 {
        format!("{hours} h {} min", minutes % 60)
    } else {
        format!("{} days", hours / 24)
    }
}

/// `[#########-----------]  45.2%  3.6 MiB / 8.0 MiB  12.3 MiB/s  2 peers  ETA 1 s`
pub(crate) fn progress_line(p: &TransferProgress) -> String {
    const WIDTH: u64 = 24;
    let fraction = if p.total_bytes == 0 {
        1.0
    } else {
        p.done_bytes as f64 / p.total_bytes as f64
    };
    let filled = (fraction * WIDTH as f64).round() as u64;
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { '-' })
        .collect();
    let peers = |n: u32| format!("{n} peer{}", if n == 1 { "" } else { "s" });
    if p.total_bytes > 0 && p.done_bytes == p.total_bytes {
        // Whole: no download rate or ETA to show (a "0 B/s" would read as stalled).
        let serving = if p.peers > 0 {
            format!(", {} connected", peers(p.peers))
        } else {
            String::new()
        };
        return format!("[{bar}] 100.0%  {}  complete{serving}", size(p.total_bytes));
    }
    let eta = p
        .eta_secs
        .map(|s| format!("  ETA {}", duration_words(s)))
        .unwrap_or_default();
    format!(
        "[{bar}] {:5.1}%  {} / {}  {}/s  {}{eta}",
        fraction * 100.0,
        size(p.done_bytes),
        size(p.total_bytes),
        size(p.down_rate),
        peers(p.peers)
    )
}

fn print_transfer(transfer: &Transfer) {
    let p = &transfer.progress;
    let reason = transfer
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!(
        "{:>4}  {:<11} {}{reason}",
        transfer.id,
        state_word(transfer.state),
        transfer.name
    );
    println!(
        "      {}  up {}  {}",
        progress_line(p),
        size(p.uploaded),
        transfer.dir
    );
}

pub fn get(paths: &NodePaths, args: GetArgs, json_out: bool) -> anyhow::Result<()> {
    let is_torrent = args.torrent.contains("://")
        || args.torrent.starts_with("magnet:")
        || std::path::Path::new(&args.torrent).exists();
    if !is_torrent {
        return get_file(paths, args, json_out);
    }
    // Bytes, not a path: the daemon may not see the caller's working directory. A magnet link goes as it is (the
    // daemon fetches its metadata); so does a URL (the daemon fetches an http(s) one, names any other).
    let torrent = if args.torrent.contains("://") || args.torrent.starts_with("magnet:") {
        args.torrent.clone()
    } else {
        let bytes = std::fs::read(&args.torrent)
            .with_context(|| format!("cannot read {}", args.torrent))?;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let dir = match args.dir {
        Some(dir) => Some(
            std::path::absolute(&dir)
                .with_context(|| format!("cannot resolve {}", dir.display()))?,
        ),
        None => None,
    };
    let limits = Limits {
        down: args.down.as_deref().map(parse_rate).transpose()?.flatten(),
        up: args.up.as_deref().map(parse_rate).transpose()?.flatten(),
    };
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        // Subscribed before adding, so no event of this download is missed.
        client
            .call(
                m::EVENTS_SUBSCRIBE,
                json!({"topics": [topics::TRANSFER_PROGRESS, topics::TRANSFER_CHANGED, topics::TRANSFER_REMOVED]}),
            )
            .await?;
        let transfer: Transfer = client
            .call_typed(
                t::TRANSFERS_ADD,
                json!({"torrent": torrent, "dir": dir, "peers": args.peers, "limits": limits}),
            )
            .await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&transfer)?);
        } else {
            let what = if transfer.state == TransferState::FetchingMetadata {
                "fetching its metadata".to_owned()
            } else {
                size(transfer.progress.total_bytes)
            };
            println!(
                "{} ({what}) -> {} as transfer {}",
                transfer.name, transfer.dir, transfer.id
            );
        }
        if args.no_wait {
            return Ok(());
        }
        wait_done(&client, transfer).await
    })
}

/// `allpeers autodownload [POLICY] [--share ID] [--max SIZE]`: shows the auto-download setting, or sets a share's
/// policy and/or what "small" means.
pub fn auto_download(
    paths: &NodePaths,
    policy: Option<String>,
    share: Option<String>,
    max: Option<String>,
    json_out: bool,
) -> anyhow::Result<()> {
    use allpeers_model::api::files::{self as f, AutoDownload, AutoDownloadPolicy};
    let policy = policy
        .map(|p| match p.to_ascii_lowercase().as_str() {
            "off" => Ok(AutoDownloadPolicy::Off),
            "small" => Ok(AutoDownloadPolicy::Small),
            "all" => Ok(AutoDownloadPolicy::All),
            other => bail!("{other:?} is not a policy: off, small or all"),
        })
        .transpose()?;
    if policy.is_some() != share.is_some() {
        bail!("a policy is set for a share: allpeers autodownload all --share ID");
    }
    let max_bytes = max
        .as_deref()
        .map(parse_rate)
        .transpose()?
        .map(|m| m.unwrap_or(0));
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let setting: AutoDownload = if policy.is_none() && max_bytes.is_none() {
            client
                .call_typed(f::FILES_AUTO_DOWNLOAD_GET, json!({}))
                .await?
        } else {
            client
                .call_typed(
                    f::FILES_AUTO_DOWNLOAD_SET,
                    json!({"share": share, "policy": policy, "max_bytes": max_bytes}),
                )
                .await?
        };
        if json_out {
            println!("{}", serde_json::to_string_pretty(&setting)?);
            return Ok(());
        }
        println!(
            "small files: up to {} (every share not listed below)",
            size(setting.max_bytes)
        );
        for s in &setting.shares {
            let policy = match s.policy {
                AutoDownloadPolicy::Off => "off",
                AutoDownloadPolicy::Small => "small",
                AutoDownloadPolicy::All => "all",
            };
            println!("{}  {policy}", s.share);
        }
        Ok(())
    })
}

/// `allpeers speedtest PEER`: throughput each way over the peer's speed-test service.
pub fn speedtest(
    paths: &NodePaths,
    peer: &str,
    bytes: Option<String>,
    json_out: bool,
) -> anyhow::Result<()> {
    let bytes = bytes.as_deref().map(parse_rate).transpose()?.flatten();
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let peer = super::social::find_contact(&client, peer).await?;
        let result: allpeers_model::api::net::SpeedtestResult = client
            .call_typed(m::NET_SPEEDTEST, json!({"peer": peer, "bytes": bytes}))
            .await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            println!(
                "{}: up {}/s, down {}/s ({} each way, {} ms)",
                result.peer.short(),
                size(result.upload_rate as u64),
                size(result.download_rate as u64),
                size(result.download_bytes),
                result.elapsed_ms
            );
        }
        Ok(())
    })
}

/// `allpeers get <resource>`: a shared File's content, fetched from the members of its share, verified.
fn get_file(paths: &NodePaths, args: GetArgs, json_out: bool) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => Some(
            std::path::absolute(&dir)
                .with_context(|| format!("cannot resolve {}", dir.display()))?,
        ),
        None => None,
    };
    let down = args.down.as_deref().map(parse_rate).transpose()?.flatten();
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        client
            .call(
                m::EVENTS_SUBSCRIBE,
                json!({"topics": [topics::TRANSFER_PROGRESS, topics::TRANSFER_CHANGED, topics::TRANSFER_REMOVED]}),
            )
            .await?;
        let mut transfer: Transfer = client
            .call_typed(
                allpeers_model::api::files::FILES_GET,
                json!({"resource": args.torrent, "dir": dir}),
            )
            .await?;
        if down.is_some() {
            transfer = client
                .call_typed(
                    t::TRANSFERS_SET_LIMITS,
                    json!({"id": transfer.id, "limits": {"down": down, "up": null}}),
                )
                .await?;
        }
        if json_out {
            println!("{}", serde_json::to_string_pretty(&transfer)?);
        } else {
            println!(
                "{} ({}) -> {} as transfer {}",
                transfer.name,
                size(transfer.progress.total_bytes),
                transfer.dir,
                transfer.id
            );
        }
        if args.no_wait {
            return Ok(());
        }
        wait_done(&client, transfer).await
    })
}

/// Shows the download's progress until it is complete (seeding); a failure, a pause or a cancel ends it with an
/// error.
async fn wait_done(client: &ApiClient, transfer: Transfer) -> anyhow::Result<()> {
    let started = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    let mut last_plain: Option<Instant> = None;
    let mut latest = transfer.progress.clone();
    let mut state = (transfer.state, transfer.reason.clone());
    loop {
        match &state {
            (TransferState::Seeding, _) => break,
            (TransferState::Failed, reason) => bail!(
                "transfer {} failed: {}",
                transfer.id,
                reason.as_deref().unwrap_or("?")
            ),
            (TransferState::Paused, reason) => bail!(
                "transfer {} paused: {} (resume it with `allpeers transfers resume {}`)",
                transfer.id,
                reason.as_deref().unwrap_or("?"),
                transfer.id
            ),
            _ => {}
        }
        let event = client
            .next_event()
            .await
            .context("the daemon closed the connection")?;
        match event.topic.as_str() {
            topics::TRANSFER_PROGRESS => {
                let progress: ProgressEvent = serde_json::from_value(event.data)?;
                if progress.id != transfer.id {
                    continue;
                }
                latest = progress.progress;
                if terminal {
                    print!("\r{}  ", progress_line(&latest));
                    std::io::stdout().flush()?;
                } else if last_plain.is_none_or(|at| at.elapsed() >= PLAIN_LINE_EVERY) {
                    println!("{}", progress_line(&latest));
                    last_plain = Some(Instant::now());
                }
            }
            topics::TRANSFER_CHANGED => {
                let changed: ChangedEvent = serde_json::from_value(event.data)?;
                if changed.id == transfer.id {
                    if state.0 == TransferState::FetchingMetadata
                        && matches!(
                            changed.state,
                            TransferState::Downloading | TransferState::Seeding
                        )
                    {
                        // The magnet's torrent came: say what it is.
                        let now: Transfer = client
                            .call_typed(t::TRANSFERS_GET, json!({"id": transfer.id}))
                            .await?;
                        println!("{} ({})", now.name, size(now.progress.total_bytes));
                    }
                    state = (changed.state, changed.reason);
                }
            }
            topics::TRANSFER_REMOVED => {
                let removed: t::TransferIdParams = serde_json::from_value(event.data)?;
                if removed.id == transfer.id {
                    bail!("transfer {} was cancelled", transfer.id);
                }
            }
            _ => {}
        }
    }
    // The final numbers: the last progress event may have been before the last piece.
    latest.done_bytes = latest.total_bytes;
    latest.eta_secs = None;
    if terminal {
        println!("\r{}  ", progress_line(&latest));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "done: {} in {seconds:.1} s ({}/s), now seeding",
        size(latest.total_bytes),
        size((latest.total_bytes as f64 / seconds.max(0.001)) as u64)
    );
    Ok(())
}

pub fn transfers(
    paths: &NodePaths,
    command: Option<TransfersCommand>,
    json_out: bool,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let command = command.unwrap_or(TransfersCommand::List);
        let print_one = |transfer: Transfer| -> anyhow::Result<()> {
            if json_out {
                println!("{}", serde_json::to_string_pretty(&transfer)?);
            } else {
                print_transfer(&transfer);
            }
            Ok(())
        };
        match command {
            TransfersCommand::List => {
                let list: Vec<Transfer> = client.call_typed(t::TRANSFERS_LIST, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no transfers (add one with `allpeers get FILE.torrent`)");
                }
                if !json_out {
                    list.iter().for_each(print_transfer);
                }
            }
            TransfersCommand::Pause { id } => print_one(
                client
                    .call_typed(t::TRANSFERS_PAUSE, json!({"id": id}))
                    .await?,
            )?,
            TransfersCommand::Resume { id } => print_one(
                client
                    .call_typed(t::TRANSFERS_RESUME, json!({"id": id}))
                    .await?,
            )?,
            TransfersCommand::Cancel { id, delete_files } => {
                client
                    .call(
                        t::TRANSFERS_CANCEL,
                        json!({"id": id, "delete_files": delete_files}),
                    )
                    .await?;
                println!(
                    "transfer {id} cancelled{}",
                    if delete_files {
                        ", its downloaded files deleted"
                    } else {
                        ""
                    }
                );
            }
            TransfersCommand::Uploads => {
                let uploads: Vec<Upload> =
                    client.call_typed(t::TRANSFERS_UPLOADS, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&uploads)?);
                } else if uploads.is_empty() {
                    println!("nobody is downloading from you");
                }
                if !json_out {
                    for u in uploads {
                        println!(
                            "{:>4}  {:<22} {:<16} {} sent, {}/s",
                            u.id,
                            u.addr,
                            u.client.as_deref().unwrap_or("?"),
                            size(u.uploaded),
                            size(u.up_rate)
                        );
                    }
                }
            }
            TransfersCommand::Limits { down, up } => {
                let mut limits: Limits = client.call_typed(t::NET_LIMITS_GET, json!({})).await?;
                if down.is_some() || up.is_some() {
                    if let Some(down) = down {
                        limits.down = parse_rate(&down)?;
                    }
                    if let Some(up) = up {
                        limits.up = parse_rate(&up)?;
                    }
                    limits = client.call_typed(t::NET_LIMITS_SET, limits).await?;
                }
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&limits)?);
                } else {
                    println!("down: {}", rate(limits.down));
                    println!("up:   {}", rate(limits.up));
                }
            }
        }
        Ok(())
    })
}

pub fn seed(paths: &NodePaths, args: SeedArgs, json_out: bool) -> anyhow::Result<()> {
    let file = std::fs::canonicalize(&args.file)
        .with_context(|| format!("cannot find {}", args.file.display()))?;
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result: SeedResult = client
            .call_typed(
                t::TRANSFERS_SEED,
                json!({"path": file, "trackers": args.trackers}),
            )
            .await?;
        let out = args
            .torrent_out
            .unwrap_or_else(|| Path::new(".").join(format!("{}.torrent", result.transfer.name)));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&result.torrent)
            .context("the daemon's torrent is not base64")?;
        std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            println!(
                "seeding {} ({}) in place as transfer {}, BitTorrent port {}",
                result.transfer.name,
                size(result.transfer.progress.total_bytes),
                result.transfer.id,
                result.listen.port()
            );
            println!("torrent written to {}", out.display());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units_or_none() {
        assert_eq!(parse_rate("500K").unwrap(), Some(500 * 1024));
        assert_eq!(parse_rate("1.5M").unwrap(), Some(1024 * 1024 * 3 / 2));
        assert_eq!(parse_rate("2MiB/s").unwrap(), Some(2 * 1024 * 1024));
        assert_eq!(parse_rate("1000").unwrap(), Some(1000));
        assert_eq!(parse_rate("none").unwrap(), None);
        assert!(parse_rate("fast").is_err() && parse_rate("3X").is_err());
    }

    #[test]
    fn the_progress_line_reads_well() {
        let line = progress_line(&TransferProgress {
            total_bytes: 8 << 20,
            done_bytes: 2 << 20,
            downloaded: 2 << 20,
            uploaded: 0,
            down_rate: 3 << 20,
            up_rate: 0,
            peers: 1,
            eta_secs: Some(2),
            peer_sources: Default::default(),
        });
        assert_eq!(
            line,
            "[######------------------]  25.0%  2.0 MiB / 8.0 MiB  3.0 MiB/s  1 peer  ETA 2 s"
        );
        for (secs, words) in [
            (0, "0 s"),
            (59, "59 s"),
            (185, "3 min 5 s"),
            (7_800, "2 h 10 min"),
            (3 * 86_400 + 5, "3 days"),
        ] {
            assert_eq!(duration_words(secs), words);
        }
        let whole = |peers| {
            progress_line(&TransferProgress {
                total_bytes: 8 << 20,
                done_bytes: 8 << 20,
                downloaded: 8 << 20,
                uploaded: 0,
                down_rate: 0,
                up_rate: 0,
                peers,
                eta_secs: None,
                peer_sources: Default::default(),
            })
        };
        assert_eq!(
            whole(0),
            "[########################] 100.0%  8.0 MiB  complete"
        );
        assert_eq!(
            whole(2),
            "[########################] 100.0%  8.0 MiB  complete, 2 peers connected"
        );
    }
}
