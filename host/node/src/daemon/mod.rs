//! `allpeers daemon`: the node process. It owns the data dir (lock file), the identity and
//! the local API socket, and serves every client (bridges for browsers, the CLI, apps).
//!
//! Module map: [`state`] (the daemon's shared state and event bus), [`area`] (what an area
//! of the API is), [`router`] (the method table built from each area's `AREA`), [`client`]
//! (what the daemon knows of one client), [`limit`] (a keyed rate limit: per peer for services, per origin for apps), [`session`] (serving one client: frames, requests,
//! events), [`rpc`] (params, results and errors shared by the areas). The areas are folders
//! of the crate: `core`, `net`, `hub`, `social`, `resources`, `mail`, `transfers`, `media`,
//! `shares`, `apps`.

pub mod area;
pub mod client;
pub mod limit;
pub mod router;
pub mod rpc;
mod session;
pub mod state;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::identity::{ENV_PASSPHRASE, load_or_create};
use crate::lock::DataDirLock;
use crate::paths::NodePaths;
pub use state::Daemon;

/// What the daemon is started with.
pub struct DaemonOptions {
    pub paths: NodePaths,
    /// Print `READY <socket>` on stdout once the socket accepts, then stop using stdout:
    /// how the bridge that started us knows when to connect (no polling).
    pub notify_ready: bool,
    /// Log to stderr too (foreground runs).
    pub log_stderr: bool,
}

/// Runs the daemon until `daemon.shutdown`, SIGTERM or SIGINT.
pub fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let paths = options.paths;
    let lock = DataDirLock::acquire(&paths)?;
    let config = crate::config::NodeConfig::load(&paths.config())?;
    let mut log_config = config.log_config(&paths.logs(), "daemon");
    log_config.stderr = options.log_stderr;
    let log = allpeers_log::init(&log_config)?;
    let passphrase = std::env::var(ENV_PASSPHRASE).ok();
    let identity = load_or_create(&paths, passphrase.as_deref())?;
    let store_path = paths.store();
    let store = allpeers_store::Store::open(&store_path, &identity.file.peer_id.to_string())
        .with_context(|| format!("cannot open the store {}", store_path.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("allpeers-daemon")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // The lock makes us the only owner: a socket file still there is a crashed
        // daemon's leftover.
        let _ = std::fs::remove_file(&paths.socket);
        let listener = UnixListener::bind(&paths.socket)
            .with_context(|| format!("cannot listen on {}", paths.socket.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))?;
        }
        let net_config = crate::net::endpoint_config(config.net.quic, config.net.tcp);
        let unlocked = identity.key.clone();
        let daemon = Arc::new(Daemon::new(
            paths.clone(),
            identity,
            store,
            net_config,
            &config,
            Some(log),
            started,
        ));
        // Writes to shared resources become signed ops (the shares area's rules).
        let _ = daemon.write_hook.set(crate::shares::api::local_write);
        if let Some(key) = unlocked {
            crate::net::go_online(&daemon, key).await;
        }
        // After the network: a file download resumed at start reaches its sources through it (started before,
        // its first attempt failed and waited for a retry).
        crate::transfers::start(&daemon, &config.transfers).await;
        crate::files::auto::start(&daemon);
        crate::media::start(&daemon);
        // Handle signals before announcing readiness: a SIGTERM right after READY must
        // shut down cleanly, not kill us.
        spawn_signal_handler(daemon.shutdown.clone())?;
        allpeers_log::flesh!(
            socket = %paths.socket.display(),
            peer_id = %daemon.peer_id(),
            ready_ms = started.elapsed().as_millis() as u64,
            "daemon ready"
        );
        if options.notify_ready {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "READY {}", paths.socket.display())?;
            stdout.flush()?;
            drop(stdout);
            detach_stdio()?;
        }
        serve(listener, daemon.clone()).await;
        crate::transfers::stop(&daemon).await;
        // Tell connected peers we are going. QUIC's close goes out from the endpoint's driver
        // task, which the runtime drops with everything else once this returns: without waiting
        // for it, a peer holds a dead connection to us until its idle timeout (30 s), and what it
        // sends us meanwhile — a restarted node's catch-up, say — times out.
        if let Some(network) = daemon.network.get() {
            network.endpoint.shutdown().await;
        }
        let _ = std::fs::remove_file(&paths.socket);
        allpeers_log::flesh!("daemon stopped");
        anyhow::Ok(())
    })?;
    drop(lock);
    Ok(())
}

/// Accepts clients until shutdown; each client is served by its own task, so one client's
/// bad input or slowness never touches another.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    let shutdown = daemon.shutdown.clone();
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let daemon = daemon.clone();
                    tasks.spawn(session::serve_client(stream, daemon));
                }
                Err(e) => {
                    // EMFILE and friends: log and keep serving the clients we have.
                    allpeers_log::marrow!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    tasks.close();
    // Sessions see the cancellation and close; give them a moment to flush replies.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tasks.wait()).await;
}

/// Whoever started us stops reading our stdout and stderr once we are ready; point them at
/// /dev/null so a late write can never fail (everything goes to the log files anyway).
fn detach_stdio() -> anyhow::Result<()> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    Ok(())
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
            _ = shutdown.cancelled() => return,
        }
        allpeers_log::flesh!("signal received, shutting down");
        shutdown.cancel();
    });
    Ok(())
}
