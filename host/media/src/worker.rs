//! The worker process: limits itself (address space, CPU time, no file writes, few open
//! files, no core dumps), then answers [`Request`]s read from stdin with [`Response`]s on
//! stdout until stdin closes. Each file runs under `catch_unwind`; what `catch_unwind` cannot
//! stop (an allocation past the address-space limit aborts, a loop hits the deadline or the
//! CPU limit) ends the process, and the pool starts another.
//!
//! The daemon's own binary can be the worker ([`run_stdio`] from a worker mode); this crate
//! also ships the `allpeers-media-worker` binary that does only that.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rustix::process::{Resource, Rlimit, setrlimit};
use serde::{Deserialize, Serialize};

use crate::protocol::{
    self, FrameDecoder, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME, Outcome, Request, Response, Task,
};
use crate::{ExtractError, audio};

/// Environment variable through which the pool hands the worker its [`Limits`].
pub const LIMITS_ENV: &str = "ALLPEERS_MEDIA_LIMITS";

/// Resource limits a worker sets on itself before reading its first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Address space in bytes: decoders' own limits are the first line, this the last.
    pub address_space: u64,
    /// CPU seconds over the worker's life; the pool's per-file deadline is the finer bound,
    /// this one catches a worker the pool lost track of.
    pub cpu_seconds: u64,
    /// Open file descriptors: stdin, stdout, stderr, the file being read, and a few spare.
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // The largest picture we decode (image::MAX_DECODE_BYTES) plus the binary and heap.
            address_space: 1536 * 1024 * 1024,
            cpu_seconds: 600,
            open_files: 16,
        }
    }
}

impl Limits {
    /// The form passed in [`LIMITS_ENV`]: `address_space,cpu_seconds,open_files`.
    pub fn to_env(&self) -> String {
        format!(
            "{},{},{}",
            self.address_space, self.cpu_seconds, self.open_files
        )
    }

    pub fn from_env(value: &str) -> Option<Self> {
        let mut parts = value.split(',').map(|p| p.trim().parse::<u64>().ok());
        let limits = Self {
            address_space: parts.next()??,
            cpu_seconds: parts.next()??,
            open_files: parts.next()??,
        };
        parts.next().is_none().then_some(limits)
    }

    /// Applies the limits to this process.
    pub fn apply(&self) -> rustix::io::Result<()> {
        let cap = |n: u64| Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        setrlimit(Resource::As, cap(self.address_space))?;
        // The soft CPU limit sends SIGXCPU, the hard one a second later SIGKILL.
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(self.cpu_seconds),
                maximum: Some(self.cpu_seconds + 1),
            },
        )?;
        setrlimit(Resource::Nofile, cap(self.open_files))?;
        // Writing any byte to a file raises SIGXFSZ: a worker only reads. Pipes are not files.
        setrlimit(Resource::Fsize, cap(0))?;
        setrlimit(Resource::Core, cap(0))?;
        Ok(())
    }
}

/// The worker's main: limits from [`LIMITS_ENV`] (defaults otherwise), then serves stdin
/// until it closes. Returns the process exit code.
pub fn run_stdio() -> i32 {
    let limits = std::env::var(LIMITS_ENV)
        .ok()
        .and_then(|v| Limits::from_env(&v))
        .unwrap_or_default();
    if let Err(e) = limits.apply() {
        eprintln!("allpeers media worker: cannot set resource limits: {e}");
        return 2;
    }
    // A panic is reported in the response; the default hook would also print it to the
    // daemon's stderr, once per hostile file.
    std::panic::set_hook(Box::new(|_| {}));
    match serve(std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("allpeers media worker: {e}");
            1
        }
    }
}

/// Answers requests from `input` on `output` until `input` ends.
pub fn serve<R: Read, W: Write>(mut input: R, mut output: W) -> Result<(), std::io::Error> {
    let mut decoder = FrameDecoder::new(MAX_REQUEST_FRAME);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(body) = decoder.next_frame().map_err(std::io::Error::other)? {
            let request: Request = protocol::decode(&body).map_err(std::io::Error::other)?;
            let response = Response {
                id: request.id,
                result: run(&request),
            };
            let frame = match protocol::encode(&response, MAX_RESPONSE_FRAME) {
                Ok(frame) => frame,
                Err(e) => protocol::encode(
                    &Response {
                        id: request.id,
                        result: Err(ExtractError::Protocol(e.to_string())),
                    },
                    MAX_RESPONSE_FRAME,
                )
                .map_err(std::io::Error::other)?,
            };
            output.write_all(&frame)?;
            output.flush()?;
        }
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        decoder.push(&buf[..n]);
    }
}

fn run(request: &Request) -> Result<Outcome, ExtractError> {
    let path = Path::new(OsStr::from_bytes(&request.path));
    let task = || match &request.task {
        Task::Describe(options) => {
            crate::extract_path(path, options).map(|e| Outcome::Described(Box::new(e)))
        }
        Task::ExactDuration => {
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            audio::exact_duration(Box::new(std::io::BufReader::new(file)), len)
                .map(Outcome::Duration)
        }
    };
    catch_unwind(AssertUnwindSafe(task)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(ExtractError::Panicked(message))
    })
}

/// Test-only behaviours chosen by a file's first bytes, so the pool's deadline, crash and
/// panic handling can be tested with real worker processes.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    pub const HANG: &[u8] = b"ALLPEERS-TEST-HANG";
    pub const ABORT: &[u8] = b"ALLPEERS-TEST-ABORT";
    pub const PANIC: &[u8] = b"ALLPEERS-TEST-PANIC";

    pub fn run(head: &[u8]) {
        if head.starts_with(HANG) {
            loop {
                std::hint::spin_loop();
            }
        }
        if head.starts_with(ABORT) {
            std::process::abort();
        }
        if head.starts_with(PANIC) {
            panic!("test hook panic");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[test]
    fn limits_round_trip_through_the_environment() {
        let limits = Limits::default();
        assert_eq!(Limits::from_env(&limits.to_env()), Some(limits));
        assert_eq!(Limits::from_env("1,2"), None);
        assert_eq!(Limits::from_env("1,2,3,4"), None);
        assert_eq!(Limits::from_env("a,2,3"), None);
    }

    #[test]
    fn serve_answers_each_request_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.txt");
        std::fs::write(&text, "one\ntwo\n").unwrap();
        let mut input = Vec::new();
        for (id, path) in [(1, text.clone()), (2, dir.path().join("missing"))] {
            let request = Request {
                id,
                path: path.as_os_str().as_bytes().to_vec(),
                task: Task::Describe(Options::default()),
            };
            input.extend(protocol::encode(&request, MAX_REQUEST_FRAME).unwrap());
        }
        let mut output = Vec::new();
        serve(&input[..], &mut output).unwrap();
        let mut decoder = FrameDecoder::new(MAX_RESPONSE_FRAME);
        decoder.push(&output);
        let first: Response = protocol::decode(&decoder.next_frame().unwrap().unwrap()).unwrap();
        let second: Response = protocol::decode(&decoder.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(first.id, 1);
        let Ok(Outcome::Described(e)) = first.result else {
            panic!("{first:?}")
        };
        assert_eq!(e.kind, crate::MediaKind::Text);
        assert_eq!(second.id, 2);
        assert!(matches!(second.result, Err(ExtractError::Io(_))));
    }
}
