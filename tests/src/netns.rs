//! A public host and two peers behind separately configurable NAT routers, built in Linux
//! network namespaces (root only: tests call [`skip_reason`] first and skip loudly).
//!
//! ```text
//!                    inet: bridge br0 (the "internet", 203.0.113.0/24)
//!        ┌─────────────────────────┼──────────────────────────┐
//!  pub 203.0.113.10 + .11   router A wan 203.0.113.21   router B wan 203.0.113.22
//!  (hub, STUN)              lan 198.18.1.1/24           lan 198.18.2.1/24
//!                                  │                           │
//!                           host A 198.18.1.2           host B 198.18.2.2
//! ```
//!
//! Each router masquerades its LAN and filters like the [`NatBehaviour`] of its [`Site`]
//! says (the rules are in [`router_rules`]). In-process servers and clients run on a thread
//! that entered a namespace ([`in_netns`], [`in_netns_async`]); the sockets it creates stay
//! in that namespace. Programs run through `ip netns exec` ([`exec`], [`spawn_in`]); `ip`
//! execs the program, so the child's PID is the program's and it is killed by that PID.
//!
//! Only documentation ranges are used (RFC 5737 203.0.113.0/24, RFC 2544 198.18.0.0/15).

use std::borrow::Borrow;
use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use allpeers_model::PeerId;

/// The hub's address on `pub` (QUIC and TCP on [`HUB_PORT`], STUN primary on 3478).
pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The second address of `pub`: the STUN server's RFC 5780 alternate.
pub const STUN_ALTERNATE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
pub const HUB_PORT: u16 = 7700;
pub const HUB_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(HUB_IP, HUB_PORT));
pub const STUN_PRIMARY: SocketAddr = SocketAddr::V4(SocketAddrV4::new(HUB_IP, 3478));
pub const STUN_ALTERNATE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(STUN_ALTERNATE_IP, 3479));
/// A second hub on `pub` ([`Topology::second_hub`]), for peers homed at different hubs, with
/// its own STUN ports.
pub const SECOND_HUB_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(HUB_IP, 7701));
const SECOND_STUN_PRIMARY: SocketAddr = SocketAddr::V4(SocketAddrV4::new(HUB_IP, 3480));
const SECOND_STUN_ALTERNATE: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(STUN_ALTERNATE_IP, 3481));

/// How long a router remembers a UDP mapping for its filter sets: the kernel's default
/// `nf_conntrack_udp_timeout_stream`, so the filter forgets about when conntrack does.
const MAPPING_LIFETIME_SECS: u32 = 120;

/// What a NAT router does to UDP (RFC 4787 terms). Every router masquerades TCP and lets
/// in only replies (and its port forward, if any), like a home router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatBehaviour {
    /// Endpoint-independent mapping and filtering: anyone may send to a mapped port.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering: inbound to a mapped port
    /// from any port of an IP that mapping has sent to.
    AddressRestricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Address-and-port-dependent mapping (a new random port per destination) and
    /// address-and-port-dependent filtering.
    Symmetric,
    /// No UDP through the router at all, either way; TCP works.
    UdpBlocked,
}

impl NatBehaviour {
    pub const ALL: [NatBehaviour; 5] = [
        NatBehaviour::FullCone,
        NatBehaviour::AddressRestricted,
        NatBehaviour::PortRestricted,
        NatBehaviour::Symmetric,
        NatBehaviour::UdpBlocked,
    ];
}

impl fmt::Display for NatBehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatBehaviour::FullCone => "full cone",
            NatBehaviour::AddressRestricted => "address-restricted cone",
            NatBehaviour::PortRestricted => "port-restricted cone",
            NatBehaviour::Symmetric => "symmetric",
            NatBehaviour::UdpBlocked => "UDP blocked",
        })
    }
}

/// One peer's side: its router's behaviour and an optional TCP port forward (the router's
/// WAN port `p` to the host's port `p`, as a user would set one up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    pub nat: NatBehaviour,
    pub forward_tcp: Option<u16>,
}

impl Site {
    /// A site behind `nat`, without a port forward.
    pub fn behind(nat: NatBehaviour) -> Site {
        Site {
            nat,
            forward_tcp: None,
        }
    }
}

/// Which of the two sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> u8 {
        match self {
            Side::A => 1,
            Side::B => 2,
        }
    }

    /// The router's public address.
    pub fn router_wan_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 20 + self.index())
    }

    /// The router's address on its LAN (the host's gateway).
    pub fn router_lan_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index(), 1)
    }

    /// The host's (private) address.
    pub fn host_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index(), 2)
    }
}

/// Why namespace tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (network namespaces and iptables need it)".into());
    }
    for (program, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("ipset", "ipset"),
        ("sysctl", "procps"),
    ] {
        if !on_path(program) {
            return Some(format!("{program} is missing (apt-get install {package})"));
        }
    }
    let probe = format!("ap{}-probe", std::process::id());
    if let Err(e) = run(&["ip", "netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let _ = run(&["ip", "netns", "del", &probe]);
    None
}

/// Prints the loud skip message a namespace test gives when it cannot run.
pub fn announce_skip(test: &str, why: &str) {
    eprintln!("\n\n*** SKIPPED {test}: {why} ***\n");
}

/// Whether `program` is on PATH (or in the sbin directories root's PATH usually has).
pub fn on_path(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .any(|dir| Path::new(dir).join(program).is_file())
}

/// Runs a program to completion; its stdout, or its stderr as the error.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `args` inside namespace `ns` to completion; its stdout.
pub fn exec(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// A program running in a namespace; killed (by its PID) and reaped on drop.
pub struct NetnsChild {
    child: Child,
    program: String,
}

impl NetnsChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Everything the program writes to stdout until it exits, if it exits within `limit`;
    /// otherwise it is killed and the error says so.
    pub fn stdout_within(mut self, limit: Duration) -> Result<String, String> {
        let mut stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| format!("{}: stdout is not piped", self.program))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Stdout closes when the program exits (or is killed), which ends this thread.
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        rx.recv_timeout(limit).map_err(|_| {
            format!(
                "{} (pid {}) did not finish within {limit:?}; killed",
                self.program,
                self.pid()
            )
        })
    }
}

impl Drop for NetnsChild {
    fn drop(&mut self) {
        // `Child::kill` signals the child's PID; a program that already exited is only reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (a `Command`, `&Command` or `&mut Command`) inside namespace `ns`:
/// program, arguments, environment and working directory are taken from it; stdin is
/// closed, stdout piped, stderr inherited.
pub fn spawn_in(ns: &str, command: impl Borrow<Command>) -> Result<NetnsChild, String> {
    let command = command.borrow();
    let program = command.get_program().to_string_lossy().into_owned();
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let child = wrapped
        .spawn()
        .map_err(|e| format!("start {program} in {ns}: {e}"))?;
    Ok(NetnsChild { child, program })
}

/// A UDP socket bound to `addr` inside namespace `ns` (non-blocking, ready for
/// `tokio::net::UdpSocket::from_std`): it stays in that namespace whichever thread uses it.
pub fn bind_udp_in(ns: &str, addr: SocketAddr) -> Result<std::net::UdpSocket, String> {
    let where_ = format!("bind UDP {addr} in {ns}");
    in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(socket)
    })
    .join()
    .map_err(|_| format!("{where_}: the thread panicked"))?
    .map_err(|e| format!("{where_}: {e}"))
}

/// Runs `f` on a new thread that has entered network namespace `ns`: sockets it opens live
/// there. (setns changes only the calling thread, so the rest of the process is unaffected.)
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
}

/// [`in_netns`] with a current-thread tokio runtime driving the future `f` makes (the
/// future is made on that thread, so it need not be `Send`).
pub fn in_netns_async<T, F, Fut>(ns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f())
    })
}

/// The commands (one line each, words separated by spaces) that make a router with `wan`
/// and `lan` interfaces behave like `site`, its host being `host`.
///
/// Mapping: `MASQUERADE` keeps the source port when it is free (always, with one host per
/// LAN), so the mapping is endpoint-independent; `--random-fully` picks a random port per
/// conntrack entry, i.e. per destination: symmetric.
///
/// Filtering of UDP: conntrack alone lets in replies from the exact IP:port a mapping sent
/// to (port-restricted). The cone variants add, per mapping, an ipset filled from the
/// host's outbound packets (`SET --add-set`), and DNAT inbound packets that match it to
/// the host, keeping the port: full cone remembers the mapped ports (`bitmap:port`),
/// address-restricted the pairs (remote IP, mapped port) (`hash:ip,port`). The sets are
/// filled in FORWARD, before the source NAT, with the host's source port: that is the
/// mapped port because MASQUERADE preserves it here. Entries expire with the mapping.
/// (The `recent` match would be simpler but remembers remote IPs per router, not per
/// mapping: a host's STUN mapping tests to the alternate IP would then open every other
/// mapping to that IP, and the filtering test would see a full cone.)
pub fn router_rules(site: Site, host: Ipv4Addr) -> Vec<String> {
    let lifetime = MAPPING_LIFETIME_SECS;
    let mut rules = vec!["sysctl -qw net.ipv4.ip_forward=1".to_string()];
    rules.push(match site.nat {
        NatBehaviour::Symmetric => {
            "iptables -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully".into()
        }
        _ => "iptables -t nat -A POSTROUTING -o wan -j MASQUERADE".into(),
    });
    match site.nat {
        NatBehaviour::FullCone => rules.extend([
            format!("ipset create udp_mapped_ports bitmap:port range 1-65535 timeout {lifetime}"),
            "iptables -A FORWARD -i lan -o wan -p udp -j SET --add-set udp_mapped_ports src --exist".into(),
            format!("iptables -t nat -A PREROUTING -i wan -p udp -m set --match-set udp_mapped_ports dst -j DNAT --to-destination {host}"),
        ]),
        NatBehaviour::AddressRestricted => rules.extend([
            format!("ipset create udp_mapped_remotes hash:ip,port timeout {lifetime}"),
            "iptables -A FORWARD -i lan -o wan -p udp -j SET --add-set udp_mapped_remotes dst,src --exist".into(),
            format!("iptables -t nat -A PREROUTING -i wan -p udp -m set --match-set udp_mapped_remotes src,dst -j DNAT --to-destination {host}"),
        ]),
        NatBehaviour::PortRestricted | NatBehaviour::Symmetric => {}
        // First in FORWARD: no UDP crosses the router, not even replies.
        NatBehaviour::UdpBlocked => rules.push("iptables -A FORWARD -p udp -j DROP".into()),
    }
    if let Some(port) = site.forward_tcp {
        rules.push(format!(
            "iptables -t nat -A PREROUTING -i wan -p tcp --dport {port} -j DNAT --to-destination {host}:{port}"
        ));
    }
    rules.extend([
        // A home router's firewall: replies, and what its own NAT table sends to the LAN
        // (cone filtering, port forwards); nothing else from the WAN.
        "iptables -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into(),
        "iptables -A FORWARD -i wan -m conntrack --ctstate DNAT -j ACCEPT".into(),
        "iptables -A FORWARD -i wan -j DROP".into(),
        // The recipe's pitfall: without it, a peer's punch packet reaching the router
        // before the host's own creates a conntrack entry that makes MASQUERADE change
        // the host's port.
        "iptables -A INPUT -i wan -m conntrack --ctstate NEW -j DROP".into(),
    ]);
    rules
}

/// The namespaces of one test's network; deleted on drop (also when the test panics),
/// after killing any process still running in them.
pub struct Topology {
    inet: String,
    public: String,
    routers: [String; 2],
    hosts: [String; 2],
    sites: [Site; 2],
    /// Namespaces created so far, for the cleanup.
    created: Vec<String>,
}

impl Topology {
    /// Builds the network; namespace names are `ap<pid>-<tag>-<role>`, so tests in other
    /// processes, or with other tags, can run at the same time.
    pub fn build(tag: &str, a: Site, b: Site) -> Result<Topology, String> {
        let prefix = format!("ap{}-{tag}", std::process::id());
        let name = |role: &str| format!("{prefix}-{role}");
        let mut topo = Topology {
            inet: name("inet"),
            public: name("pub"),
            routers: [name("r1"), name("r2")],
            hosts: [name("h1"), name("h2")],
            sites: [a, b],
            created: Vec::new(),
        };
        let all = [
            topo.inet.clone(),
            topo.public.clone(),
            topo.routers[0].clone(),
            topo.routers[1].clone(),
            topo.hosts[0].clone(),
            topo.hosts[1].clone(),
        ];
        for ns in &all {
            // A namespace left by a crashed process that had the same PID.
            let _ = run(&["ip", "netns", "del", ns]);
            run(&["ip", "netns", "add", ns])?;
            topo.created.push(ns.clone());
            ip(ns, "link set lo up")?;
        }
        let inet = &topo.inet;
        ip(inet, "link add br0 type bridge")?;
        ip(inet, "link set br0 up")?;
        let public = &topo.public;
        ip(
            public,
            &format!("link add wan type veth peer name pub netns {inet}"),
        )?;
        ip(inet, "link set pub master br0 up")?;
        ip(public, &format!("addr add {HUB_IP}/24 dev wan"))?;
        ip(public, &format!("addr add {STUN_ALTERNATE_IP}/24 dev wan"))?;
        ip(public, "link set wan up")?;
        for side in [Side::A, Side::B] {
            let router = topo.router_ns(side);
            let host = topo.host_ns(side);
            let bridge_port = format!("r{}", side.index());
            ip(
                router,
                &format!("link add wan type veth peer name {bridge_port} netns {inet}"),
            )?;
            ip(inet, &format!("link set {bridge_port} master br0 up"))?;
            ip(
                router,
                &format!("addr add {}/24 dev wan", side.router_wan_ip()),
            )?;
            ip(router, "link set wan up")?;
            ip(
                router,
                &format!("link add lan type veth peer name lan netns {host}"),
            )?;
            ip(
                router,
                &format!("addr add {}/24 dev lan", side.router_lan_ip()),
            )?;
            ip(router, "link set lan up")?;
            ip(host, &format!("addr add {}/24 dev lan", side.host_ip()))?;
            ip(host, "link set lan up")?;
            ip(
                host,
                &format!("route add default via {}", side.router_lan_ip()),
            )?;
            for rule in router_rules(topo.site(side), side.host_ip()) {
                let words: Vec<&str> = rule.split_whitespace().collect();
                exec(router, &words)?;
            }
        }
        Ok(topo)
    }

    /// The namespace holding the bridge.
    pub fn inet_ns(&self) -> &str {
        &self.inet
    }

    /// The public host (hub, STUN): [`HUB_IP`] and [`STUN_ALTERNATE_IP`].
    pub fn pub_ns(&self) -> &str {
        &self.public
    }

    pub fn router_ns(&self, side: Side) -> &str {
        &self.routers[usize::from(side.index() - 1)]
    }

    pub fn host_ns(&self, side: Side) -> &str {
        &self.hosts[usize::from(side.index() - 1)]
    }

    pub fn site(&self, side: Side) -> Site {
        self.sites[usize::from(side.index() - 1)]
    }

    /// Runs a whole hub in `pub`: QUIC and TCP on [`HUB_ADDR`], STUN (RFC 5780) on
    /// [`STUN_PRIMARY`] and [`STUN_ALTERNATE`], data in `data_dir` (a path or a `TempDir`).
    /// Panics if it does not start: nothing a test could do without it.
    pub fn hub(&self, data_dir: impl AsRef<Path>) -> HubInPub {
        let at = (HUB_ADDR, STUN_PRIMARY, STUN_ALTERNATE);
        HubInPub::start(
            &self.public,
            data_dir.as_ref().to_path_buf(),
            "hub.test",
            at,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Another hub in `pub` (`two.test`), on [`SECOND_HUB_ADDR`] with its own STUN ports.
    pub fn second_hub(&self, data_dir: impl AsRef<Path>) -> HubInPub {
        let at = (SECOND_HUB_ADDR, SECOND_STUN_PRIMARY, SECOND_STUN_ALTERNATE);
        HubInPub::start(
            &self.public,
            data_dir.as_ref().to_path_buf(),
            "two.test",
            at,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn ip(ns: &str, rest: &str) -> Result<String, String> {
    let mut args = vec!["ip", "-n", ns];
    args.extend(rest.split_whitespace());
    run(&args)
}

impl Drop for Topology {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        for ns in &self.created {
            // Processes started with `ip netns exec` outlive `ip netns del`.
            let pids = run(&["ip", "netns", "pids", ns]).unwrap_or_default();
            for pid in pids.split_whitespace().filter(|pid| *pid != me) {
                if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// A hub running in `pub` on its own thread and runtime; stopped (endpoint shut down,
/// thread joined) on drop.
pub struct HubInPub {
    pub peer_id: PeerId,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HubInPub {
    /// `at`: the hub's QUIC and TCP address, STUN primary and alternate.
    fn start(
        ns: &str,
        data_dir: PathBuf,
        name: &str,
        at: (SocketAddr, SocketAddr, SocketAddr),
    ) -> Result<HubInPub, String> {
        let (addr, stun_primary, stun_alternate) = at;
        let name = name.to_string();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = in_netns_async(ns, move || async move {
            let mut config = allpeers_hub::HubConfig {
                name,
                data_dir,
                quic: Some(addr),
                tcp: Some(addr),
                stun: Some(allpeers_hub::stun::StunConfig {
                    primary: stun_primary,
                    alternate: Some(stun_alternate),
                    ..Default::default()
                }),
                ..Default::default()
            };
            // Probes of unreachable ports are expected in tests: give up soon.
            config.probe.timeout_secs = 2;
            let hub = match allpeers_hub::Hub::start(config).await {
                Ok(hub) => hub,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("hub in pub: {e:#}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(hub.endpoint.peer_id()));
            // Until told to stop, or until the handle is gone.
            let _ = stop_rx.await;
            hub.endpoint.shutdown().await;
        });
        let peer_id = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| "the hub in pub did not start within 20 s".to_string())??;
        Ok(HubInPub {
            peer_id,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn quic_address(&self) -> allpeers_net::Address {
        allpeers_net::Address::quic(self.addr)
    }

    pub fn tcp_address(&self) -> allpeers_net::Address {
        allpeers_net::Address::tcp(self.addr)
    }
}

impl Drop for HubInPub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the hub thread was reported there; don't panic again in drop.
            let _ = thread.join();
        }
    }
}

/// A peer inside a host namespace, as the NAT tests make them: an endpoint answering the echo
/// service, its hub line to `home` (QUIC and TCP), its NAT type as discovery found it, and a
/// connector over both.
pub struct NetnsPeer {
    pub endpoint: allpeers_net::Endpoint,
    pub hub: allpeers_hub_client::HubClient,
    pub connector: allpeers_nat::connector::Connector,
    pub nat_type: String,
}

/// The echo service every [`NetnsPeer`] answers: a request's text back.
pub fn echo_ns() -> allpeers_net::Namespace {
    allpeers_net::Namespace::allpeers("echo", 1).expect("a valid namespace")
}

/// Starts a [`NetnsPeer`] homed at the hub `hub` on `home`, its TCP listener on `tcp_port`
/// (0: any; a site forwarding a port names it). Run it inside the host's namespace.
pub async fn netns_peer(hub: PeerId, home: SocketAddr, tcp_port: u16) -> Result<NetnsPeer, String> {
    use std::sync::Arc;

    use allpeers_hub_client::{AcceptAll, HubClient, HubClientConfig};
    use allpeers_nat::connectivity::monitor::MonitorState;
    use allpeers_nat::connectivity::{self, DiscoveryConfig};
    use allpeers_nat::connector::{Connector, ConnectorConfig};
    use allpeers_net::{Address, Endpoint, EndpointConfig, Identity, ServiceFn};

    let endpoint = Endpoint::bind(
        Identity::generate(),
        EndpointConfig {
            quic: Some("0.0.0.0:0".parse().expect("an address")),
            tcp: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, tcp_port))),
            // UDP-blocked sites fall back from QUIC to TCP for the hub: do not wait long.
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    endpoint.register(
        echo_ns(),
        ServiceFn::new().on_request(|_ctx, text: String| async move { Ok(text) }),
    );
    let mut config = HubClientConfig::new(hub, vec![Address::quic(home), Address::tcp(home)]);
    config.backoff_max = Duration::from_secs(1);
    let client = HubClient::start(endpoint.clone(), config, Arc::new(AcceptAll))
        .await
        .map_err(|e| e.to_string())?;
    if !client.wait_online(Duration::from_secs(20)).await {
        return Err("the hub line did not come up".into());
    }
    let report = connectivity::discover(
        &endpoint,
        hub,
        client.status().observed,
        &DiscoveryConfig::default(),
    )
    .await;
    let nat_type = format!("{:?}", report.nat_type);
    // The sender may go: the receiver keeps the last value.
    let (_tx, rx) = tokio::sync::watch::channel(MonitorState {
        checking: false,
        last: Some(report),
        runs: 1,
    });
    let connector = Connector::start(
        endpoint.clone(),
        Some(client.clone()),
        Some(rx),
        Arc::new(AcceptAll),
        ConnectorConfig::default(),
    );
    Ok(NetnsPeer {
        endpoint,
        hub: client,
        connector,
        nat_type,
    })
}
