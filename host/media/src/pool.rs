//! [`Extractor`]: the daemon's pool of persistent worker processes. Up to
//! [`ExtractorConfig::workers`] files are described at once, each by one worker under a
//! wall-clock deadline. A worker that dies (abort, signal, limit) or overruns its deadline
//! is killed and dropped; the next request starts a fresh one. The caller gets a clear error
//! for that file and nothing else changes.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allpeers_log::{bone, marrow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::protocol::{
    self, FrameDecoder, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, Outcome, Request, Response, Task,
};
use crate::worker::{LIMITS_ENV, Limits};
use crate::{ExtractError, Extracted, Options};

/// How a pool starts its workers and bounds them.
#[derive(Debug, Clone)]
pub struct ExtractorConfig {
    /// The worker program: `allpeers-media-worker`, or the daemon's binary in worker mode.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Workers at most (files described at once).
    pub workers: usize,
    /// Wall-clock time one file may take.
    pub deadline: Duration,
    pub limits: Limits,
}

/// A file's wall-clock budget: a 100-megapixel PNG decodes in a few seconds; ten times that
/// is a hostile file, not a slow machine.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

impl ExtractorConfig {
    /// One worker per core, the default deadline and limits.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            deadline: DEFAULT_DEADLINE,
            limits: Limits::default(),
        }
    }
}

/// The pool. Cheap to share behind an `Arc`; dropping it kills its workers.
pub struct Extractor {
    config: ExtractorConfig,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
    next_id: AtomicU64,
    started: AtomicU64,
    restarts: AtomicU64,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    decoder: FrameDecoder,
}

impl Extractor {
    pub fn new(config: ExtractorConfig) -> Self {
        let slots = Semaphore::new(config.workers.max(1));
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            slots,
            next_id: AtomicU64::new(1),
            started: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    /// Type, metadata and (if asked) thumbnail of the file at `path`.
    pub async fn extract(&self, path: &Path, options: Options) -> Result<Extracted, ExtractError> {
        match self.call(path, Task::Describe(options)).await? {
            Outcome::Described(extracted) => Ok(*extracted),
            other => Err(ExtractError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The exact duration of an audio file whose header gave an estimate
    /// ([`crate::audio::AudioInfo::duration_estimated`]), by a packet scan. Run it in the
    /// background: it reads the whole file.
    pub async fn exact_duration(&self, path: &Path) -> Result<f64, ExtractError> {
        match self.call(path, Task::ExactDuration).await? {
            Outcome::Duration(seconds) => Ok(seconds),
            other => Err(ExtractError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Workers started so far (the first of each slot included).
    pub fn workers_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Workers killed or lost because of a file (crash, deadline, protocol breach).
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    async fn call(&self, path: &Path, task: Task) -> Result<Outcome, ExtractError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ExtractError::Spawn("pool closed".to_owned()))?;
        let request = Request {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            path: path.as_os_str().as_bytes().to_vec(),
            task,
        };
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        // Dropping this future mid-exchange (the caller gave up) drops the worker, which
        // `kill_on_drop` kills: a half-answered worker is never reused.
        let answer = tokio::time::timeout(self.config.deadline, worker.exchange(&request)).await;
        match answer {
            Ok(Ok(response)) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                response.result
            }
            Ok(Err(breach)) => {
                let status = worker.stop().await;
                self.restarts.fetch_add(1, Ordering::Relaxed);
                marrow!(path = %path.display(), %status, %breach, "media worker lost on a file");
                Err(ExtractError::WorkerDied(format!("{status}; {breach}")))
            }
            Err(_) => {
                worker.stop().await;
                self.restarts.fetch_add(1, Ordering::Relaxed);
                let ms = self.config.deadline.as_millis() as u64;
                marrow!(path = %path.display(), ms, "media worker over its deadline, killed");
                Err(ExtractError::Deadline(ms))
            }
        }
    }

    fn spawn(&self) -> Result<Worker, ExtractError> {
        let mut child = Command::new(&self.config.program)
            .args(&self.config.args)
            .env(LIMITS_ENV, self.config.limits.to_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExtractError::Spawn(format!("{}: {e}", self.config.program.display())))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| ExtractError::Spawn("no stdin".to_owned()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ExtractError::Spawn("no stdout".to_owned()))?;
        self.started.fetch_add(1, Ordering::Relaxed);
        bone!(pid = child.id(), "media worker started");
        Ok(Worker {
            child,
            stdin,
            stdout,
            decoder: FrameDecoder::new(MAX_RESPONSE_FRAME),
        })
    }
}

impl Worker {
    /// Sends one request and reads its response. An error means the worker can no longer be
    /// trusted (it died or broke the protocol).
    async fn exchange(&mut self, request: &Request) -> Result<Response, String> {
        let frame = protocol::encode(request, MAX_REQUEST_FRAME).map_err(|e| e.to_string())?;
        self.stdin
            .write_all(&frame)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.stdin
            .flush()
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(body) = self.decoder.next_frame().map_err(|e| e.to_string())? {
                let response: Response = protocol::decode(&body).map_err(|e| e.to_string())?;
                if response.id != request.id {
                    return Err(format!("answer {} to request {}", response.id, request.id));
                }
                return Ok(response);
            }
            let n = self
                .stdout
                .read(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("output closed".to_owned());
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Kills the worker (if still alive) and says how it ended.
    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        match self.child.wait().await {
            Ok(status) => describe_status(status),
            Err(e) => format!("unknown exit: {e}"),
        }
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}
