//! `allpeers`: the AllPeers node and its command line.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use allpeers_node::native_host::{self, Caller};
use allpeers_node::paths::{ENV_DATA_DIR, NodePaths};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "allpeers",
    version,
    about = "AllPeers: share with your friends, peer to peer, from your browser's sidebar",
    long_about = "AllPeers runs as a daemon per user; the browser extension reaches it through the \
                  native-messaging host, and this command line through the same local API.\n\n\
                  First steps:\n  allpeers demo        see a node start and answer, in a temp dir\n  \
                  allpeers install     let Firefox, Chrome and Chromium start AllPeers\n  \
                  allpeers id          print your PeerId"
)]
struct Cli {
    /// Data directory of the node [default: ~/.local/share/allpeers]
    #[arg(long, global = true, env = ENV_DATA_DIR, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print results as JSON (status, resource, query, list and schema commands)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node in the foreground (the browser starts it on demand otherwise)
    Daemon {
        /// Print "READY <socket>" on stdout once serving (used by the native host)
        #[arg(long)]
        notify_ready: bool,
        /// Also log to stderr
        #[arg(long)]
        foreground: bool,
    },
    /// The native-messaging host browsers launch (arguments as the browser passes them)
    NativeHost {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        browser_args: Vec<String>,
    },
    /// Register the native-messaging host with browsers
    Install(cli::InstallArgs),
    /// Remove the native-messaging host registration
    Uninstall(cli::InstallArgs),
    /// Print your PeerId (creating your identity on first run)
    Id,
    /// Show whether the daemon runs, and its state
    Status,
    /// Stop the daemon
    Stop,
    /// Back up, restore or unlock your identity
    #[command(subcommand)]
    Identity(cli::IdentityCommand),
    /// Show or change log levels (skin, marrow, flesh, bone; per area: flesh,allpeers_net=bone)
    #[command(subcommand)]
    Log(cli::LogCommand),
    /// Create, show, change or delete resources
    #[command(subcommand)]
    Resource(cli::resource::ResourceCommand),
    /// Find resources: allpeers query '{"type":"File","where":[{"prop":{"name":"size","op":">","value":1000}}]}'
    Query {
        query: String,
        /// Only count the matches
        #[arg(long)]
        count: bool,
    },
    /// Items of lists: show, insert, move, remove
    #[command(subcommand)]
    List(cli::resource::ListCommand),
    /// Resource types: register a schema file, list, describe
    #[command(subcommand)]
    Schema(cli::resource::SchemaCommand),
    /// Register a name at your home hub: allpeers register alice (or alice@hub)
    Register { name: String },
    /// Look a peer up at your home hub: by name, name@hub or PeerId (the answer is checked)
    Resolve { query: String },
    /// The peer-to-peer network: status, connect
    #[command(subcommand)]
    Net(cli::NetCommand),
    /// Your contacts: list, add (name@hub, PeerId, invite code), accept, decline, remove,
    /// block, invite
    #[command(subcommand)]
    Contacts(cli::social::ContactsCommand),
    /// Your presence: get, set online|away|busy [TEXT]
    #[command(subcommand)]
    Presence(cli::social::PresenceCommand),
    /// Conversations: list, send, history, group, open (interactive)
    #[command(subcommand)]
    Chat(cli::social::ChatCommand),
    /// E-mail through your hub: status, address ADDR, confirm CODE, invite ADDR, prefs,
    /// unsubscribe (no subcommand: status)
    Mail {
        #[command(subcommand)]
        command: Option<cli::mail::MailCommand>,
    },
    /// Download a .torrent, or a File shared with you (by its id), with a live progress line, until done
    Get(cli::transfers::GetArgs),
    /// Which shared files arrive by themselves: show, or set a share's policy (off, small, all) or what "small"
    /// means: allpeers autodownload all --share ID; allpeers autodownload --max 50M
    Autodownload {
        /// off, small (files up to --max; the default) or all
        policy: Option<String>,
        /// The share the policy is for
        #[arg(long, value_name = "ID")]
        share: Option<String>,
        /// What "small" means, e.g. 50M
        #[arg(long, value_name = "SIZE")]
        max: Option<String>,
    },
    /// Measure throughput to and from a peer (a contact's name or a PeerId)
    Speedtest {
        peer: String,
        /// Bytes each way, e.g. 64M [default: 16M]
        #[arg(long, value_name = "SIZE")]
        bytes: Option<String>,
    },
    /// Downloads and uploads: list (the default), pause, resume, cancel, uploads, limits
    Transfers {
        #[command(subcommand)]
        command: Option<cli::transfers::TransfersCommand>,
    },
    /// Share a file: make its .torrent and seed it where it is
    Seed(cli::transfers::SeedArgs),
    /// Share a resource: allpeers share <resource-id> with bob carol [--write|--admin]
    Share {
        /// The resource's id (a List shares its items)
        resource: String,
        /// The word "with"
        with: String,
        /// Contacts (name, name@hub, PeerId)
        who: Vec<String>,
        /// They may edit (default: read only)
        #[arg(long, conflicts_with = "admin")]
        write: bool,
        /// They may edit, and add and revoke members
        #[arg(long)]
        admin: bool,
    },
    /// Shared resources: list (default), accept, add, revoke, leave
    Shares {
        #[command(subcommand)]
        command: Option<cli::shares::SharesCommand>,
    },
    /// Replication: status
    #[command(subcommand)]
    Sync(cli::shares::SyncCommand),
    /// Web apps granted access: list (default), revoke ORIGIN [SCOPE...]
    Apps {
        #[command(subcommand)]
        command: Option<cli::apps::AppsCommand>,
    },
    /// Call any local API method (for developers): allpeers call status.get '{}'
    Call {
        method: String,
        /// JSON params
        params: Option<String>,
    },
    /// Start a node in a temporary dir and walk through what it does
    Demo,
    /// Catalog files and folders: type, metadata and thumbnails (allpeers add ~/Music -r)
    Add {
        #[arg(value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Descend into sub-folders
        #[arg(short, long)]
        recursive: bool,
        /// Catalog once; do not keep the folders up to date as files change
        #[arg(long)]
        no_watch: bool,
    },
    /// What the catalog knows of a file: by path or resource id
    Info { target: String },
    /// The paths the catalog keeps up to date
    Watched,
    /// Stop keeping a path up to date (its files stay catalogued)
    Unwatch { path: PathBuf },
    /// One sandboxed media extraction worker on stdin/stdout (started by the daemon)
    #[command(hide = true)]
    MediaWorker,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The host manifest points at this binary, and browsers pass their own arguments.
    if Caller::is_browser_argv(&args) {
        return report(
            NodePaths::resolve(std::env::var_os(ENV_DATA_DIR).map(PathBuf::from).as_deref())
                .and_then(|paths| native_host::run(paths, args)),
        );
    }
    let cli = Cli::parse();
    report(run(cli))
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(code) = e.downcast_ref::<cli::Exit>() {
                return ExitCode::from(code.0);
            }
            eprintln!("allpeers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Demo = cli.command {
        return cli::demo::run();
    }
    if let Command::MediaWorker = cli.command {
        std::process::exit(allpeers_media::worker::run_stdio());
    }
    let paths = NodePaths::resolve(cli.data_dir.as_deref())?;
    match cli.command {
        Command::Daemon {
            notify_ready,
            foreground,
        } => allpeers_node::daemon::run(allpeers_node::daemon::DaemonOptions {
            paths,
            notify_ready,
            log_stderr: foreground,
        }),
        Command::NativeHost { browser_args } => native_host::run(paths, browser_args),
        Command::Install(args) => cli::install(&args, cli.data_dir.as_deref(), true),
        Command::Uninstall(args) => cli::install(&args, cli.data_dir.as_deref(), false),
        Command::Id => cli::id(&paths),
        Command::Status => cli::status(&paths, cli.json),
        Command::Stop => cli::stop(&paths),
        Command::Identity(command) => cli::identity(&paths, command),
        Command::Log(command) => cli::log(&paths, command),
        Command::Resource(command) => cli::resource::resource(&paths, command, cli.json),
        Command::Query { query, count } => cli::resource::query(&paths, &query, count, cli.json),
        Command::List(command) => cli::resource::list(&paths, command, cli.json),
        Command::Schema(command) => cli::resource::schema(&paths, command, cli.json),
        Command::Register { name } => cli::register(&paths, &name, cli.json),
        Command::Resolve { query } => cli::resolve(&paths, &query, cli.json),
        Command::Net(command) => cli::net(&paths, command, cli.json),
        Command::Contacts(command) => cli::social::contacts(&paths, command, cli.json),
        Command::Mail { command } => cli::mail::mail(&paths, command, cli.json),
        Command::Presence(command) => cli::social::presence(&paths, command),
        Command::Chat(command) => cli::social::chat(&paths, command, cli.json),
        Command::Get(args) => cli::transfers::get(&paths, args, cli.json),
        Command::Transfers { command } => cli::transfers::transfers(&paths, command, cli.json),
        Command::Seed(args) => cli::transfers::seed(&paths, args, cli.json),
        Command::Autodownload { policy, share, max } => {
            cli::transfers::auto_download(&paths, policy, share, max, cli.json)
        }
        Command::Speedtest { peer, bytes } => {
            cli::transfers::speedtest(&paths, &peer, bytes, cli.json)
        }
        Command::Share {
            resource,
            with,
            who,
            write,
            admin,
        } => cli::shares::share(&paths, &resource, &with, &who, (write, admin), cli.json),
        Command::Shares { command } => cli::shares::shares(&paths, command, cli.json),
        Command::Sync(command) => cli::shares::sync(&paths, command, cli.json),
        Command::Apps { command } => cli::apps::apps(&paths, command, cli.json),
        Command::Call { method, params } => cli::call(&paths, &method, params.as_deref()),
        Command::Add {
            files,
            recursive,
            no_watch,
        } => cli::media::add(&paths, &files, recursive, no_watch, cli.json),
        Command::Info { target } => cli::media::info(&paths, &target, cli.json),
        Command::Watched => cli::media::watched(&paths, cli.json),
        Command::Unwatch { path } => cli::media::unwatch(&paths, &path),
        Command::Demo | Command::MediaWorker => unreachable!("handled above"),
    }
}
