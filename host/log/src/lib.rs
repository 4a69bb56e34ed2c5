//! The logging service: the seed's four levels on top of `tracing`.
//!
//! | level  | meaning                                              | tracing level |
//! |--------|------------------------------------------------------|---------------|
//! | skin   | always logged                                        | ERROR         |
//! | marrow | well-tested areas: exceptional cases only            | WARN          |
//! | flesh  | standard logging                                     | INFO          |
//! | bone   | deep debugging                                       | DEBUG, TRACE  |
//!
//! A filter such as `flesh,allpeers_net=bone` sets the default level and a level per area
//! (a module path). Setting an area to `marrow` shows its exceptional cases and skin
//! messages; `skin` is the floor, so nothing can silence skin messages. Standard tracing
//! names (`info`, `debug`...) are accepted too.
//!
//! Lines go to `<dir>/<name>.log`; once it passes `max_file_bytes` it is renamed
//! `<name>.log.1` (older ones shift up) and the oldest past `max_files` are removed. Writing
//! happens on a dedicated thread fed by a bounded queue, so logging never blocks the async
//! runtime on disk I/O; if the disk cannot keep up, lines are dropped rather than stalling
//! the node.

use std::path::{Path, PathBuf};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing::Subscriber;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Logs a message that is always written.
#[macro_export]
macro_rules! skin { ($($arg:tt)+) => { ::tracing::error!($($arg)+) } }
/// Logs an exceptional case in a well-tested area.
#[macro_export]
macro_rules! marrow { ($($arg:tt)+) => { ::tracing::warn!($($arg)+) } }
/// Logs a standard message.
#[macro_export]
macro_rules! flesh { ($($arg:tt)+) => { ::tracing::info!($($arg)+) } }
/// Logs a deep-debugging message.
#[macro_export]
macro_rules! bone { ($($arg:tt)+) => { ::tracing::debug!($($arg)+) } }

/// Environment variable holding the filter, e.g. `ALLPEERS_LOG=flesh,allpeers_net=bone`.
pub const ENV_FILTER: &str = "ALLPEERS_LOG";
pub const DEFAULT_FILTER: &str = "flesh";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("unknown log level \"{level}\" in \"{directive}\": use skin, marrow, flesh or bone")]
    UnknownLevel { level: String, directive: String },
    #[error("bad log filter \"{0}\": {1}")]
    BadFilter(String, String),
    #[error("cannot create log directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
    #[error("the logger is gone")]
    Gone,
}

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// File name stem: `<dir>/<name>.log`. One name per process kind, so two processes
    /// never rotate the same file.
    pub name: String,
    pub max_file_bytes: usize,
    /// Files kept, the current one included.
    pub max_files: usize,
    /// The filter in the seed's level names.
    pub filter: String,
    /// Also write to stderr (for foreground runs; never for the native-messaging host,
    /// whose stdout belongs to the browser).
    pub stderr: bool,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        LogConfig {
            dir: dir.into(),
            name: name.into(),
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 5,
            filter: std::env::var(ENV_FILTER).unwrap_or_else(|_| DEFAULT_FILTER.into()),
            stderr: false,
        }
    }
}

/// Maps one of the seed's level names (or a tracing name) to a tracing directive level.
fn tracing_level(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_lowercase().as_str() {
        "skin" | "error" | "off" => "error",
        "marrow" | "warn" => "warn",
        "flesh" | "info" => "info",
        "bone" | "debug" => "debug",
        "trace" => "trace",
        _ => return None,
    })
}

/// Translates `flesh,allpeers_net=bone` into a tracing `EnvFilter`.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, LogError> {
    let mut directives = Vec::new();
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (area, level) = match directive.rsplit_once('=') {
            Some((area, level)) => (Some(area.trim()), level.trim()),
            None => (None, directive),
        };
        let mapped = tracing_level(level).ok_or_else(|| LogError::UnknownLevel {
            level: level.into(),
            directive: directive.into(),
        })?;
        if let Some(area) = area
            && (area.is_empty()
                || !area
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        {
            return Err(LogError::BadFilter(
                directive.into(),
                "an area is a module path such as allpeers_net::transport".into(),
            ));
        }
        directives.push(match area {
            Some(area) => format!("{area}={mapped}"),
            None => mapped.to_string(),
        });
    }
    if directives.is_empty() {
        directives.push("info".into());
    }
    EnvFilter::builder()
        .parse(directives.join(","))
        .map_err(|e| LogError::BadFilter(filter.into(), e.to_string()))
}

/// Controls a running logger: change the filter at run time; dropping it flushes the file.
pub struct LogHandle {
    reload: reload::Handle<EnvFilter, Registry>,
    filter: std::sync::Mutex<String>,
    dir: PathBuf,
    _guard: WorkerGuard,
}

impl LogHandle {
    pub fn set_filter(&self, filter: &str) -> Result<(), LogError> {
        let parsed = parse_filter(filter)?;
        self.reload.reload(parsed).map_err(|_| LogError::Gone)?;
        *self.filter.lock().expect("filter lock") = filter.to_string();
        Ok(())
    }

    pub fn filter(&self) -> String {
        self.filter.lock().expect("filter lock").clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Log files may name peers and addresses: readable by the user only.
fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Builds the subscriber without installing it (tests install it with
/// `tracing::subscriber::with_default`).
pub fn build(
    config: &LogConfig,
) -> Result<(impl Subscriber + Send + Sync + 'static, LogHandle), LogError> {
    let filter = parse_filter(&config.filter)?;
    std::fs::create_dir_all(&config.dir).map_err(|source| LogError::Dir {
        path: config.dir.clone(),
        source,
    })?;
    let rotating = FileRotate::new(
        config.dir.join(format!("{}.log", config.name)),
        AppendCount::new(config.max_files.saturating_sub(1).max(1)),
        ContentLimit::BytesSurpassed(config.max_file_bytes),
        Compression::None,
        Some(private_file_options()),
    );
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(64 * 1024)
        .lossy(true)
        .thread_name("allpeers-log")
        .finish(rotating);
    let (filter_layer, reload) = reload::Layer::new(filter);
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(true)
        .with_writer(writer);
    let stderr_layer = config
        .stderr
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let subscriber = Registry::default()
        .with(filter_layer)
        .with(file_layer)
        .with(stderr_layer);
    let handle = LogHandle {
        reload,
        filter: std::sync::Mutex::new(config.filter.clone()),
        dir: config.dir.clone(),
        _guard: guard,
    };
    Ok((subscriber, handle))
}

/// The last `lines` lines of log file `file` (empty if it cannot be read): what a tool shows
/// when a process it ran failed and the log would go with its temporary directory.
pub fn tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds the logger and installs it for the whole process.
pub fn init(config: &LogConfig) -> Result<LogHandle, LogError> {
    let (subscriber, handle) = build(config)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadyInstalled)?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_is_the_last_lines_and_nothing_for_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.log");
        std::fs::write(&file, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail(&file, 2), "two\nthree");
        assert_eq!(tail(&file, 10), "one\ntwo\nthree");
        assert_eq!(tail(&dir.path().join("none.log"), 5), "");
    }

    fn log_files(dir: &Path) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn seed_levels_translate_to_tracing() {
        assert_eq!(parse_filter("flesh").unwrap().to_string(), "info");
        assert_eq!(
            parse_filter("marrow, allpeers_net=bone")
                .unwrap()
                .to_string(),
            "allpeers_net=debug,warn"
        );
        assert!(matches!(
            parse_filter("loud"),
            Err(LogError::UnknownLevel { .. })
        ));
        assert!(matches!(
            parse_filter("a b=flesh"),
            Err(LogError::BadFilter(..))
        ));
    }

    #[test]
    fn files_rotate_past_the_size_and_old_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Files left by an earlier run with a higher count must be cleaned up too.
        for n in 1..=6 {
            std::fs::write(
                dir.path().join(format!("test.log.{n}")),
                "line=0 from an earlier run\n",
            )
            .unwrap();
        }
        let mut config = LogConfig::new(dir.path(), "test");
        config.max_file_bytes = 2_000;
        config.max_files = 3;
        config.filter = "bone".into();
        let (subscriber, handle) = build(&config).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..400 {
                flesh!(line = i, "a standard line that takes some room in the file");
            }
        });
        drop(handle); // flushes the writer thread
        let files = log_files(dir.path());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["test.log", "test.log.1", "test.log.2"], "{files:?}");
        for (name, len) in &files {
            // One line may pass the limit before the file is cut.
            assert!(*len < 2_000 + 200, "{name} has {len} bytes");
        }
        let newest = std::fs::read_to_string(dir.path().join("test.log")).unwrap();
        assert!(
            newest.contains("line=399"),
            "newest file holds the last line"
        );
        let oldest = std::fs::read_to_string(dir.path().join("test.log.2")).unwrap();
        assert!(!oldest.contains("line=0 "), "the oldest lines were removed");
    }

    #[test]
    fn levels_filter_per_area_and_change_at_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(dir.path(), "areas");
        config.filter = "marrow,chatty=bone".into();
        let (subscriber, handle) = build(&config).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            flesh!(target: "quiet", "quiet-flesh");
            marrow!(target: "quiet", "quiet-marrow");
            skin!(target: "quiet", "quiet-skin");
            bone!(target: "chatty", "chatty-bone");
            handle.set_filter("skin").unwrap();
            marrow!(target: "chatty", "chatty-marrow-after");
            skin!(target: "chatty", "chatty-skin-after");
            assert!(handle.set_filter("nonsense").is_err());
            assert_eq!(handle.filter(), "skin");
        });
        drop(handle);
        let text = std::fs::read_to_string(dir.path().join("areas.log")).unwrap();
        for present in [
            "quiet-marrow",
            "quiet-skin",
            "chatty-bone",
            "chatty-skin-after",
        ] {
            assert!(text.contains(present), "{present} missing from {text}");
        }
        for absent in ["quiet-flesh", "chatty-marrow-after"] {
            assert!(
                !text.contains(absent),
                "{absent} should be filtered: {text}"
            );
        }
    }
}
