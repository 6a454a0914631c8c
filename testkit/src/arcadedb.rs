//! A real Bolt server for the Neo4j adapter's tests: [`ArcadeDb`] runs
//! ArcadeDB with its Bolt plugin on free local ports.
//!
//! ArcadeDB is not Neo4j. A suite that passes on it proves the Cypher, the
//! parameter types, the decoding, the transactions and the error mapping
//! over real Bolt; it does not prove Neo4j's locking or planner.
//!
//! The server comes from `scripts/arcadedb.sh fetch` (the PyPI wheel
//! `arcadedb-embedded`, which bundles the jars, the Bolt plugin and a Java
//! runtime), unpacked to `$ARCADEDB_HOME` or else `target/arcadedb` in the
//! workspace. Like [`crate::RedisServer`], each server lives in its own
//! temporary directory under a guardian that kills it (and removes the
//! directory) when the test process goes away, however it goes.
//!
//! When ArcadeDB is not unpacked, [`ArcadeDb::start`] prints a notice and
//! returns `None` so the caller can skip; with `CI=true` it panics instead,
//! because CI must run the Neo4j suite.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warble_mesh::backends::Neo4jConfig;

use crate::{Guardian, free_port};

/// How long a server gets to start: about 2 s on an idle machine, far more
/// next to a parallel test run and its builds.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts at finding free ports before giving up.
const PORT_ATTEMPTS: usize = 5;
/// The root password (ArcadeDB wants 8 characters or more).
const PASSWORD: &str = "warble-test-password";
/// The database the server creates at start and Bolt sessions use.
const DATABASE: &str = "neo4j";
/// Heap of the server's JVM: the suites use far less; without a cap the
/// JVM sizes its heap by the machine's memory.
const MAX_HEAP: &str = "-Xmx512m";
/// The log line that follows both the Bolt listener and the default database.
const STARTED: &str = "ArcadeDB Server started";

/// The guardian: starts the command in `$2...` in the background with its
/// output in `$1/server.log`, reports its pid, then waits for stdin to
/// close, kills it and removes `$1`.
const GUARDIAN: &str = r#"
dir="$1"; shift
"$@" </dev/null >>"$dir/server.log" 2>&1 &
pid=$!
echo "$pid"
read -r _ignored
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
exit 0
"#;

/// One ArcadeDB server with Bolt on `127.0.0.1` (see the module docs).
#[derive(Debug)]
pub struct ArcadeDb {
    bolt_port: u16,
    dir: PathBuf,
    pid: u32,
    /// Closing it kills the server.
    _guardian: Guardian,
}

/// Why a launch failed.
enum LaunchError {
    /// A port was taken between the probe and the bind: try other ports.
    PortTaken,
    /// Anything else: give up with this explanation.
    Fatal(String),
}

impl ArcadeDb {
    /// Starts a server; `None` when ArcadeDB is not unpacked (a notice is
    /// printed; under `CI=true` it panics instead).
    pub fn start() -> Option<Self> {
        let home = installed_home()?;
        let started = Instant::now();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::launch(&home) {
                Ok(server) => {
                    eprintln!(
                        "ArcadeDB (pid {}) serves {} after {:.1?}",
                        server.pid,
                        server.uri(),
                        started.elapsed()
                    );
                    return Some(server);
                }
                Err(LaunchError::PortTaken) => last = "its ports were taken".into(),
                Err(LaunchError::Fatal(message)) => panic!("ArcadeDB did not start: {message}"),
            }
        }
        panic!("ArcadeDB did not start after {PORT_ATTEMPTS} attempts: {last}")
    }

    /// One server shared by every test of this test process (started on
    /// first use, killed when the process exits); give each test its own
    /// label namespace. `None` when ArcadeDB is not unpacked.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<ArcadeDb>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// `bolt://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        format!("bolt://127.0.0.1:{}", self.bolt_port)
    }

    /// How the graph service connects to this server.
    pub fn config(&self) -> Neo4jConfig {
        Neo4jConfig {
            uri: self.uri(),
            user: "root".into(),
            password: PASSWORD.to_owned().into(),
            database: DATABASE.into(),
            max_connections: 16,
        }
    }

    /// The directory holding its databases and log (removed when it stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn launch(home: &Path) -> Result<Self, LaunchError> {
        let fatal =
            |what: &str, error: std::io::Error| LaunchError::Fatal(format!("{what}: {error}"));
        let dir = fresh_dir().map_err(|error| fatal("creating its directory", error))?;
        let (bolt_port, http_port) = (free_port(), free_port());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARDIAN)
            .arg("warble-testkit")
            .arg(&dir)
            .arg(home.join("jre/bin/java"))
            .args(["-Xms64m", MAX_HEAP, "-cp"])
            .arg(home.join("jars/*"))
            .arg(format!("-Darcadedb.server.rootPath={}", dir.display()))
            .arg(format!("-Darcadedb.server.rootPassword={PASSWORD}"))
            .arg(format!(
                "-Darcadedb.server.defaultDatabases={DATABASE}[root]"
            ))
            .arg("-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin")
            .arg("-Darcadedb.server.httpIncomingHost=127.0.0.1")
            .arg(format!("-Darcadedb.server.httpIncomingPort={http_port}"))
            .arg("-Darcadedb.bolt.host=127.0.0.1")
            .arg(format!("-Darcadedb.bolt.port={bolt_port}"))
            .arg(format!("-Darcadedb.bolt.defaultDatabase={DATABASE}"))
            .arg("com.arcadedb.server.ArcadeDBServer")
            // It writes `log/` into its working directory.
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| fatal("spawning sh", error))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("guardian stdout is piped");
        let guardian = Guardian { child, stdin };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|error| fatal("reading the server pid", error))?;
        let pid = line
            .trim()
            .parse()
            .map_err(|_| LaunchError::Fatal(format!("guardian printed `{line}`, not a pid")))?;
        let server = Self {
            bolt_port,
            dir,
            pid,
            _guardian: guardian,
        };
        let log_path = server.dir.join("server.log");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains(STARTED) && server.speaks_bolt() {
                return Ok(server);
            }
            // A failed start leaves the JVM running: the log tells.
            if log.contains("Unable to listen") || log.contains("Address already in use") {
                return Err(LaunchError::PortTaken);
            }
            if log.contains("Exception in thread \"main\"") || Instant::now() >= deadline {
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(LaunchError::Fatal(format!(
                    "not serving Bolt on port {bolt_port} within {START_TIMEOUT:?}; log tail:\n{}",
                    tail.join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server on our port answers a Bolt handshake offering
    /// the versions `neo4rs` 0.8 offers (4.1, 4.0).
    fn speaks_bolt(&self) -> bool {
        let handshake = || -> std::io::Result<[u8; 4]> {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.bolt_port));
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut hello = vec![0x60, 0x60, 0xB0, 0x17];
            hello.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
            stream.write_all(&hello)?;
            let mut agreed = [0; 4];
            stream.read_exact(&mut agreed)?;
            Ok(agreed)
        };
        handshake().is_ok_and(|agreed| agreed != [0; 4])
    }
}

/// Where `scripts/arcadedb.sh fetch` unpacked ArcadeDB: `$ARCADEDB_HOME`,
/// or `target/arcadedb` in the workspace.
pub fn home() -> PathBuf {
    match std::env::var_os("ARCADEDB_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/arcadedb"),
    }
}

/// [`home`] when ArcadeDB is unpacked there; otherwise prints a notice and
/// returns `None`, or panics under `CI=true`.
fn installed_home() -> Option<PathBuf> {
    let home = home();
    if home.join("jre/bin/java").is_file() && home.join("jars").is_dir() {
        return Some(home);
    }
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!(
            "ArcadeDB is not unpacked in {} and CI=true: the Neo4j suite must run in CI \
             (scripts/arcadedb.sh fetch)",
            home.display()
        );
    }
    eprintln!(
        "notice: ArcadeDB is not unpacked in {}; skipping this Bolt test (run \
         scripts/arcadedb.sh fetch, or set NEO4J_URI to a live Neo4j)",
        home.display()
    );
    None
}

/// A new empty directory under the system temp dir.
fn fresh_dir() -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "warble-arcadedb-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_speaks_bolt_and_ends_with_its_handle() {
        let Some(server) = ArcadeDb::start() else {
            return;
        };
        assert!(server.speaks_bolt());
        assert_eq!(server.config().uri, server.uri());
        let (port, dir) = (server.bolt_port, server.dir().to_owned());
        drop(server);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        assert!(!dir.exists(), "the temp dir is removed");
    }
}
