//! Real Redis for tests: [`RedisServer`] runs one `redis-server` on a free
//! local port, [`RedisCluster`] runs a Redis Cluster of several masters.
//!
//! Servers are real processes, so a test exercises the same wire protocol,
//! scripting and cluster redirections production does. Each one lives in
//! its own temporary directory and is started by a tiny `sh` guardian that
//! kills it (and removes the directory) as soon as the test process's end of
//! the guardian's stdin closes: on `Drop`, and equally when the test process
//! exits without running destructors (a `static` shared server, a panic
//! under `panic = abort`, a `kill -9`). No server outlives its test binary.
//!
//! When `redis-server` is not installed, `start` prints a notice and returns
//! `None` so the caller can skip; with `CI=true` it panics instead, because
//! CI must never silently skip the Redis suites.
//!
//! Starting is synchronous (it spawns processes and polls a socket); call it
//! at the top of a test. [`RedisServer::shared`] and [`RedisCluster::shared`]
//! start one server per test binary, and [`unique_prefix`] gives each test a
//! key namespace so tests sharing a server never see each other's keys.
//! [`RedisServer::config`] and [`RedisCluster::config`] say how
//! `warble-mesh` connects to them; [`Topology`] names either shared one, so
//! one test body runs on a single node and on a cluster.
//!
//! Beyond Redis: [`arcadedb`] runs ArcadeDB as the Bolt server the Neo4j
//! adapter's tests use, [`live`] reads the environment of the tests gated
//! on a live ScyllaDB or Neo4j, [`served`] runs a server under test on a
//! port of its own, and [`binaries`] holds checks every service binary
//! shares. With the feature `s3`, `s3` runs a real S3 API server (s3s over
//! a directory, SigV4 on) for the object-store suites; with `tls`, `tls`
//! issues mesh certificates from a test CA for the mTLS suites; with
//! `otlp`, `otlp` receives spans as an OpenTelemetry collector would.

#![forbid(unsafe_code)]

pub mod arcadedb;
pub mod binaries;
pub mod live;
#[cfg(feature = "media")]
pub mod media;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "s3")]
pub mod s3;
pub mod served;
#[cfg(feature = "tls")]
pub mod tls;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warble_mesh::backends::{RedisConfig, RedisMode};

/// How long a server gets to answer PING (AOF loading included).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster gets to agree that every slot is served.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `redis-cli --cluster` command (create, reshard) may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at finding free ports before giving up (another process may
/// take a port between our probe and the server's bind).
const PORT_ATTEMPTS: usize = 5;
/// Connect and response timeouts of the clients tests connect: generous,
/// because the machine running the suite may be busy (tests run in
/// parallel, next to builds) and a reply 2 s late is not what any test
/// checks. A lost reply still fails the test rather than hanging it.
const CLIENT_TIMEOUT_MS: u64 = 10_000;

/// The guardian: starts redis-server in the background, reports its pid,
/// then waits for stdin to close and kills it. `$3 = cleanup` also removes
/// the server's directory.
const GUARDIAN: &str = r#"
dir="$1"; conf="$2"
redis-server "$conf" </dev/null >>"$dir/stdout.log" 2>&1 &
pid=$!
echo "$pid"
read -r _ignored
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "$3" = cleanup ] && rm -rf "$dir"
exit 0
"#;

/// How to run a [`RedisServer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Turn on append-only persistence so a server killed with `kill -9`
    /// and restarted on the same directory keeps every write it
    /// acknowledged. With `appendfsync always`, not production's
    /// `everysec`: under `everysec` a server whose disk is busy (builds
    /// running next to the tests) may reply before it has even written the
    /// AOF buffer, and a `kill -9` then loses acknowledged writes, failing
    /// a test by the disk's timing.
    pub appendonly: bool,
    /// Require this password (`requirepass`), to exercise AUTH.
    pub password: Option<String>,
    /// Run as a Redis Cluster node (`cluster-enabled yes`); used by [`RedisCluster`].
    pub cluster: bool,
}

/// One `redis-server` process on `127.0.0.1` (see the crate docs).
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    cluster_port: u16,
    dir: PathBuf,
    options: ServerOptions,
    /// One guardian per process started on this port and directory (a
    /// restart adds one); all are closed on drop.
    guardians: Vec<Guardian>,
    /// The running (or last) redis-server's pid, for `kill`.
    pid: u32,
}

#[derive(Debug)]
struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Guardian {
    fn drop(&mut self) {
        // Closing stdin is the signal; then reap the guardian.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Why a launch failed.
enum LaunchError {
    /// The port was taken between the probe and the bind: try other ports.
    PortTaken,
    /// Anything else: give up with this explanation.
    Fatal(String),
}

impl RedisServer {
    /// Starts a server with default options (no persistence); `None` when
    /// `redis-server` is missing (see the crate docs).
    pub fn start() -> Option<Self> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with `options`; `None` when `redis-server` is missing.
    pub fn start_with(options: ServerOptions) -> Option<Self> {
        if !binaries_available(&["redis-server"]) {
            return None;
        }
        let dir = fresh_dir();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let (port, cluster_port) = (free_port(), free_port());
            let mut server = Self {
                port,
                cluster_port,
                dir: dir.clone(),
                options: options.clone(),
                guardians: Vec::new(),
                pid: 0,
            };
            match server.launch() {
                Ok(()) => return Some(server),
                Err(LaunchError::PortTaken) => {
                    last = format!("port {port} or {cluster_port} was taken");
                    // Drop closes the failed guardian; the next attempt reuses the directory.
                    server.guardians.clear();
                    let _ = std::fs::remove_file(dir.join("redis.log"));
                }
                Err(LaunchError::Fatal(message)) => {
                    panic!("redis-server did not start in {}: {message}", dir.display())
                }
            }
        }
        panic!("redis-server did not start after {PORT_ATTEMPTS} attempts: {last}")
    }

    /// One server shared by every test of this test binary (started on
    /// first use, killed when the process exits). Pair it with
    /// [`unique_prefix`]. `None` when `redis-server` is missing.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<RedisServer>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (no password; pass that separately).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How `warble-mesh` connects to this server (its password included).
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            password: self.options.password.clone().unwrap_or_default().into(),
            connect_timeout_ms: CLIENT_TIMEOUT_MS,
            response_timeout_ms: CLIENT_TIMEOUT_MS,
            ..RedisConfig::default()
        }
    }

    /// The directory holding its config, log and (with `appendonly`) data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's pid (changes on restart).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until its
    /// port refuses connections. The directory is kept for [`Self::restart`].
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(self.address()).is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis-server {} survived kill -9",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port, directory and options
    /// (after [`Self::kill`]); with `appendonly` it reloads its data.
    pub fn restart(&mut self) {
        match self.launch() {
            Ok(()) => {}
            Err(LaunchError::PortTaken) => panic!(
                "cannot restart redis-server: port {} was taken meanwhile",
                self.port
            ),
            Err(LaunchError::Fatal(message)) => panic!("cannot restart redis-server: {message}"),
        }
    }

    /// Sends one command and returns its reply, for test assertions and
    /// set-up (`CONFIG SET`, `CLUSTER INFO`, ...). Errors come back as
    /// [`Reply::Error`].
    pub fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect_timeout(&self.address(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        if let Some(password) = &self.options.password {
            stream.write_all(&encode(&["AUTH", password]))?;
            if let Reply::Error(error) = read_reply(&mut reader)? {
                return Ok(Reply::Error(error));
            }
        }
        stream.write_all(&encode(args))?;
        read_reply(&mut reader)
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn write_config(&self) -> std::io::Result<PathBuf> {
        // A failed attempt's guardian removed the directory on its way out.
        std::fs::create_dir_all(&self.dir)?;
        let mut config = String::new();
        let _ = writeln!(config, "port {}", self.port);
        let _ = writeln!(config, "bind 127.0.0.1");
        let _ = writeln!(config, "dir {}", self.dir.display());
        let _ = writeln!(config, "logfile {}", self.dir.join("redis.log").display());
        let _ = writeln!(config, "save \"\"");
        let _ = writeln!(config, "daemonize no");
        if self.options.appendonly {
            let _ = writeln!(config, "appendonly yes");
            let _ = writeln!(config, "appendfsync always");
        } else {
            let _ = writeln!(config, "appendonly no");
        }
        if let Some(password) = &self.options.password {
            let _ = writeln!(config, "requirepass \"{password}\"");
        }
        if self.options.cluster {
            let _ = writeln!(config, "cluster-enabled yes");
            let _ = writeln!(config, "cluster-config-file nodes.conf");
            let _ = writeln!(config, "cluster-port {}", self.cluster_port);
            let _ = writeln!(config, "cluster-node-timeout 5000");
        }
        let path = self.dir.join("redis.conf");
        std::fs::write(&path, config)?;
        Ok(path)
    }

    fn launch(&mut self) -> Result<(), LaunchError> {
        let fatal =
            |what: &str, error: std::io::Error| LaunchError::Fatal(format!("{what}: {error}"));
        let config = self
            .write_config()
            .map_err(|error| fatal("writing redis.conf", error))?;
        // Only the first guardian removes the directory: a restart reuses it.
        let cleanup = if self.guardians.is_empty() {
            "cleanup"
        } else {
            "keep"
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARDIAN)
            .arg("warble-testkit")
            .arg(&self.dir)
            .arg(&config)
            .arg(cleanup)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| fatal("spawning sh", error))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("guardian stdout is piped");
        self.guardians.push(Guardian { child, stdin });
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|error| fatal("reading the server pid", error))?;
        self.pid = line
            .trim()
            .parse()
            .map_err(|_| LaunchError::Fatal(format!("guardian printed `{line}`, not a pid")))?;

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_as_itself() {
                return Ok(());
            }
            let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
            if [
                "Address already in use",
                "Could not create server TCP",
                "Failed listening",
            ]
            .iter()
            .any(|sign| log.contains(sign))
            {
                return Err(LaunchError::PortTaken);
            }
            if Instant::now() >= deadline || log.contains("FATAL") {
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(LaunchError::Fatal(format!(
                    "no PONG on port {} within {:?}; log tail:\n{}",
                    self.port,
                    START_TIMEOUT,
                    tail.join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether our process answers on our port. A PONG alone is not proof:
    /// when another test's server took the port between our probe and our
    /// bind, *it* answers, and this test would run on (and later kill) a
    /// server that is not its own. Until its log says the bind failed, ours
    /// is "not up yet".
    fn answers_as_itself(&self) -> bool {
        let pong = matches!(self.command(&["PING"]), Ok(Reply::Status(status)) if status == "PONG");
        let ours = format!("process_id:{}", self.pid);
        pong && matches!(self.command(&["INFO", "server"]),
            Ok(Reply::Bulk(info)) if info.lines().any(|line| line.trim() == ours))
    }
}

/// A Redis Cluster of masters (no replicas) on free local ports.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, joins them with
    /// `redis-cli --cluster create` (slots split evenly, no replicas) and
    /// waits until every node reports `cluster_state:ok`. `None` when
    /// `redis-server` or `redis-cli` is missing.
    pub fn start(masters: usize) -> Option<Self> {
        assert!(masters >= 3, "Redis Cluster needs at least three masters");
        if !binaries_available(&["redis-server", "redis-cli"]) {
            return None;
        }
        let options = ServerOptions {
            cluster: true,
            ..ServerOptions::default()
        };
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_with(options.clone()).expect("redis-server is available"))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        run_to_success(create, "redis-cli --cluster create");
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// One three-master cluster shared by every test of this test binary.
    /// Pair it with [`unique_prefix`]. `None` when Redis is missing.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<RedisCluster>> = OnceLock::new();
        SHARED.get_or_init(|| Self::start(3)).as_ref()
    }

    /// The nodes, in creation order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Every node's URL, comma-separated: the form `redis.cluster_nodes` takes.
    pub fn seed_urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How `warble-mesh` connects to this cluster (every node a seed).
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            mode: RedisMode::Cluster,
            cluster_nodes: self.seed_urls(),
            connect_timeout_ms: CLIENT_TIMEOUT_MS,
            response_timeout_ms: CLIENT_TIMEOUT_MS,
            ..RedisConfig::default()
        }
    }

    /// Moves `slots` hash slots (and their keys) from node `from` to node
    /// `to` with `redis-cli --cluster reshard`, then waits until every node
    /// agrees on the new layout. Clients keep their old slot maps until a
    /// `MOVED` reply tells them otherwise, as after a production reshard.
    pub fn move_slots(&self, from: usize, to: usize, slots: usize) {
        let id = |node: &RedisServer| match node.command(&["CLUSTER", "MYID"]) {
            Ok(Reply::Bulk(id)) => id,
            other => panic!("CLUSTER MYID failed: {other:?}"),
        };
        let mut reshard = Command::new("redis-cli");
        reshard
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[from].port()))
            .args(["--cluster-from", &id(&self.nodes[from])])
            .args(["--cluster-to", &id(&self.nodes[to])])
            .args(["--cluster-slots", &slots.to_string()])
            .arg("--cluster-yes");
        run_to_success(reshard, "redis-cli --cluster reshard");
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let views: Vec<Vec<String>> = self.nodes.iter().map(slot_layout).collect();
            if views.windows(2).all(|pair| pair[0] == pair[1]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes never agreed on the slot layout: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_ok();
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let masters = self.nodes.len().to_string();
        loop {
            let all_ok = self.nodes.iter().all(|node| {
                matches!(node.command(&["CLUSTER", "INFO"]), Ok(Reply::Bulk(info))
                    if info.contains("cluster_state:ok")
                        && info.contains("cluster_slots_ok:16384")
                        && info.contains(&format!("cluster_known_nodes:{masters}")))
            });
            if all_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {CLUSTER_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Which Redis deployment a test runs on, for test bodies written once and
/// run on both (`conformance_on(Topology::Cluster)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// [`RedisServer::shared`].
    SingleNode,
    /// [`RedisCluster::shared`]: three masters.
    Cluster,
}

impl Topology {
    /// How to connect to this test binary's shared server or cluster of
    /// this topology (started on first use); `None` when Redis is missing
    /// (a notice is printed; under `CI=true` it panics instead).
    pub fn shared_config(self) -> Option<RedisConfig> {
        match self {
            Self::SingleNode => RedisServer::shared().map(RedisServer::config),
            Self::Cluster => RedisCluster::shared().map(RedisCluster::config),
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SingleNode => "single node",
            Self::Cluster => "three-master cluster",
        })
    }
}

/// Declares one `#[tokio::test]` per [`Topology`], named `$single_node` and
/// `$cluster`, each running `$body(topology).await`: a test body written
/// once for both deployments.
///
/// ```ignore
/// warble_testkit::test_each_topology!(conformance_on => conformance_on_a_single_node, conformance_on_a_three_master_cluster);
/// ```
#[macro_export]
macro_rules! test_each_topology {
    ($body:path => $single_node:ident, $cluster:ident) => {
        #[::tokio::test]
        async fn $single_node() {
            $body($crate::Topology::SingleNode).await;
        }

        #[::tokio::test]
        async fn $cluster() {
            $body($crate::Topology::Cluster).await;
        }
    };
}

/// Runs `suite` on the shared Redis of `topology` and prints how long it
/// took, as `<name>, <topology>: <elapsed>`; does nothing (after the notice
/// of [`Topology::shared_config`]) when Redis is missing.
pub async fn run_suite_on<F, Fut>(topology: Topology, name: &str, suite: F)
where
    F: FnOnce(RedisConfig) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(config) = topology.shared_config() else {
        return;
    };
    let started = Instant::now();
    suite(config).await;
    eprintln!("{name}, {topology}: {:?}", started.elapsed());
}

/// Runs `command` (stdin closed) and panics with what it printed unless it
/// succeeds within [`CLI_TIMEOUT`]. `redis-cli --cluster` waits without a
/// limit of its own (for a cluster to join, say): past the deadline it is
/// killed, so the test fails with its output instead of hanging.
fn run_to_success(mut command: Command, what: &str) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("running {what}: {error}"));
    // Read both pipes while it runs, so a chatty child never blocks on a full one.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|pipe| Box::new(pipe) as _));
    let stderr = drain(child.stderr.take().map(|pipe| Box::new(pipe) as _));
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let printed = format!(
        "{}{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("{what} failed ({status}):\n{printed}"),
        None => panic!("{what} did not finish within {CLI_TIMEOUT:?}:\n{printed}"),
    }
}

/// A node's view of which node serves which slots: `<node id> <ranges>`
/// per master, sorted (from `CLUSTER NODES`, migration markers dropped).
fn slot_layout(node: &RedisServer) -> Vec<String> {
    let Ok(Reply::Bulk(nodes)) = node.command(&["CLUSTER", "NODES"]) else {
        return Vec::new();
    };
    let mut layout: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let slots: Vec<&str> = fields
                .get(8..)?
                .iter()
                .copied()
                .filter(|slot| !slot.starts_with('['))
                .collect();
            Some(format!("{} {}", fields[0], slots.join(" ")))
        })
        .collect();
    layout.sort();
    layout
}

/// A key prefix unique in this machine's current test runs (process id plus
/// a counter), e.g. `t4242-7:`, so tests sharing a server stay apart.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A reply to [`RedisServer::command`], reduced to what tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status.
    Status(String),
    /// `-ERR ...`: the whole error line.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// A bulk string (lossily UTF-8).
    Bulk(String),
    /// A nil bulk string or array.
    Nil,
    /// An array.
    Array(Vec<Reply>),
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl std::io::BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| std::io::Error::other(format!("bad RESP line `{line}`")))
    };
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()?),
        "$" => match number()? {
            length if length < 0 => Reply::Nil,
            length => {
                let mut bytes = vec![0; length as usize + 2];
                reader.read_exact(&mut bytes)?;
                bytes.truncate(length as usize);
                Reply::Bulk(String::from_utf8_lossy(&bytes).into_owned())
            }
        },
        "*" => match number()? {
            length if length < 0 => Reply::Nil,
            length => Reply::Array(
                (0..length)
                    .map(|_| read_reply(reader))
                    .collect::<Result<_, _>>()?,
            ),
        },
        _ => return Err(std::io::Error::other(format!("bad RESP line `{line}`"))),
    })
}

/// Whether every binary runs; prints a notice (or panics under `CI=true`) when not.
fn binaries_available(binaries: &[&str]) -> bool {
    let missing: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|binary| {
            !Command::new(binary)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!(
            "{} not found on PATH and CI=true: the Redis suites must run in CI",
            missing.join(" and ")
        );
    }
    eprintln!(
        "notice: {} not found on PATH; skipping this Redis test (install redis-server / redis-tools to run it)",
        missing.join(" and ")
    );
    false
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    unused_port()
}

/// Ports [`unused_port`] picks from: below Linux's ephemeral range
/// (32768 and up), so the kernel never hands one of them to a `bind(0)` or
/// an outgoing connection of another test meanwhile.
const QUIET_PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Ports of [`QUIET_PORTS`] each test process takes its ports from.
const PORTS_PER_PROCESS: u16 = 100;

/// A port on 127.0.0.1 nothing listens on right now, for a server that is
/// started as a separate process and must be told its port.
///
/// Such a port is probed and released before the server binds it, so two
/// pickers must never hold the same port between probe and bind:
/// - not an ephemeral port (`bind(0)`): the kernel hands those out again at
///   once to other tests' `bind(0)` calls and outgoing connections;
/// - not a random one: two test processes (or two calls of one) can draw
///   the same port within that window.
///
/// Instead each test process (nextest runs one per test) walks its own
/// block of [`PORTS_PER_PROCESS`] ports below the ephemeral range, chosen
/// by its pid, and never hands out a port twice before wrapping around (by
/// then the earlier ones are bound, and the probe skips them). Processes
/// running side by side have nearby pids, hence different blocks.
pub fn unused_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let blocks = u64::from((QUIET_PORTS.end - QUIET_PORTS.start) / PORTS_PER_PROCESS);
    let block_start =
        QUIET_PORTS.start + (u64::from(std::process::id()) % blocks) as u16 * PORTS_PER_PROCESS;
    for _ in 0..PORTS_PER_PROCESS {
        let offset = (NEXT.fetch_add(1, Ordering::Relaxed) % u64::from(PORTS_PER_PROCESS)) as u16;
        let port = block_start + offset;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// A new empty directory under the system temp dir.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "warble-redis-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("creating the server's temp dir");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_and_its_process_ends_with_it() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        assert_eq!(
            server.command(&["SET", "k", "v"]).unwrap(),
            Reply::Status("OK".into())
        );
        assert_eq!(
            server.command(&["GET", "k"]).unwrap(),
            Reply::Bulk("v".into())
        );
        let (port, dir) = (server.port(), server.dir().to_owned());
        drop(server);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        assert!(!dir.exists(), "the temp dir is removed");
    }

    #[test]
    fn appendonly_data_survives_kill_9_and_restart() {
        let Some(mut server) = RedisServer::start_with(ServerOptions {
            appendonly: true,
            ..ServerOptions::default()
        }) else {
            return;
        };
        for i in 0..100 {
            let value = i.to_string();
            server.command(&["RPUSH", "list", &value]).unwrap();
        }
        let before = server.pid();
        server.kill();
        server.restart();
        assert_ne!(server.pid(), before);
        assert_eq!(
            server.command(&["LLEN", "list"]).unwrap(),
            Reply::Integer(100)
        );
    }

    #[test]
    fn a_server_whose_port_was_taken_does_not_pass_for_the_one_there() {
        let Some(first) = RedisServer::start() else {
            return;
        };
        // What losing the race for a free port looks like: another server
        // answers PING on the port ours failed to bind.
        let mut second = RedisServer {
            port: first.port(),
            cluster_port: free_port(),
            dir: fresh_dir(),
            options: ServerOptions::default(),
            guardians: Vec::new(),
            pid: 0,
        };
        assert!(matches!(second.launch(), Err(LaunchError::PortTaken)));
    }

    #[test]
    fn password_protected_servers_accept_the_password() {
        let Some(server) = RedisServer::start_with(ServerOptions {
            password: Some("s3cret".into()),
            ..ServerOptions::default()
        }) else {
            return;
        };
        assert_eq!(
            server.command(&["PING"]).unwrap(),
            Reply::Status("PONG".into())
        );
    }

    #[test]
    fn a_cluster_serves_every_slot() {
        let Some(cluster) = RedisCluster::start(3) else {
            return;
        };
        assert_eq!(cluster.nodes().len(), 3);
        assert_eq!(cluster.seed_urls().split(',').count(), 3);
        let Reply::Bulk(info) = cluster.nodes()[0].command(&["CLUSTER", "INFO"]).unwrap() else {
            panic!("CLUSTER INFO is a bulk string");
        };
        assert!(info.contains("cluster_size:3"), "{info}");
    }

    #[test]
    fn prefixes_are_unique() {
        assert_ne!(unique_prefix(), unique_prefix());
    }
}
