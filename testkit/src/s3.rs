//! A real S3 API server for the object-store suites (feature `s3`):
//! [`S3Server`] serves [s3s-fs] through [s3s] on `127.0.0.1`, so a client
//! such as `object_store`'s `AmazonS3` speaks the real S3 protocol to it:
//! SigV4 signatures (headers and presigned query strings, both checked with
//! the fixed key pair below), path-style bucket addressing, ranged GETs,
//! multipart uploads, ListObjectsV2.
//!
//! Storage is a temporary directory in which each bucket is a subdirectory
//! and each object a file at `<bucket>/<key>`, so a test can look at what a
//! delete or an aborted upload left behind ([`S3Server::objects_on_disk`],
//! [`S3Server::pending_multipart_uploads`]). s3s-fs keeps its bookkeeping
//! (object metadata, unfinished uploads and their parts) as dot files in
//! the root, next to the buckets.
//!
//! The server runs on a thread of its own with its own tokio runtime, so it
//! serves any caller: a plain `#[test]`, a current-thread or a multi-thread
//! `#[tokio::test]`, and, for [`S3Server::shared`], every test of the binary
//! although each test's runtime ends with the test. Dropping a server stops
//! it and removes its directory; the directory of one that is never dropped
//! (the shared one) is removed by a guardian `sh` when the test process
//! exits, however it exits, as for [`crate::RedisServer`].
//!
//! Nothing needs installing: the server is Rust code linked into the test.
//!
//! [s3s]: https://docs.rs/s3s/0.12.0
//! [s3s-fs]: https://docs.rs/s3s-fs/0.12.0

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::Guardian;

/// The access key id every server accepts (and the only one).
const ACCESS_KEY_ID: &str = "warble-test-access-key";
/// Its secret key.
const SECRET_ACCESS_KEY: &str = "warble-test-secret-key";
/// The region clients sign for. s3s checks a signature with whatever region
/// its credential scope names, so any region works; this is the usual one.
const REGION: &str = "us-east-1";
/// The bucket every server starts with.
const BUCKET: &str = "warble-test";
/// Worker threads of a server's runtime: the machines running the suites
/// have two cores, and blob I/O goes to tokio's blocking pool anyway.
const WORKER_THREADS: usize = 2;
/// How long a stopping server waits for file operations in flight.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The guardian: waits for stdin to close, then removes the directory.
const GUARDIAN: &str = r#"
read -r _ignored
rm -rf "$1"
exit 0
"#;

/// One S3 API server on `127.0.0.1` (see the module docs).
#[derive(Debug)]
pub struct S3Server {
    addr: SocketAddr,
    dir: PathBuf,
    /// Numbers [`Self::fresh_bucket`]'s buckets.
    next_bucket: AtomicU64,
    /// Stops the accept loop; `None` once sent.
    stop: Option<oneshot::Sender<()>>,
    /// The server's thread, joined on drop so the port is closed by then.
    thread: Option<JoinHandle<()>>,
    /// Removes `dir` when closed: on drop (after the thread has stopped,
    /// as the fields drop after `Drop::drop`), or at process exit.
    _guardian: Guardian,
}

impl S3Server {
    /// Starts a server with one empty bucket, [`Self::bucket`]. Panics when
    /// it cannot (no temp dir, no loopback port): tests never skip it.
    pub fn start() -> Self {
        let dir = fresh_dir().expect("creating the S3 server's temp dir");
        let guardian = guard(&dir);
        std::fs::create_dir(dir.join(BUCKET)).expect("creating the S3 server's bucket");
        let filesystem = s3s_fs::FileSystem::new(&dir)
            .unwrap_or_else(|error| panic!("s3s-fs on {}: {error:?}", dir.display()));
        let mut service = S3ServiceBuilder::new(filesystem);
        service.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        let service = service.build();

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("warble-s3")
            .enable_all()
            .build()
            .expect("building the S3 server's runtime");
        // Bound here, before the thread starts, so the port is known and
        // connections wait in the backlog until the accept loop runs.
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .expect("binding 127.0.0.1:0 for the S3 server");
        let addr = listener.local_addr().expect("a bound listener's address");
        let listener = {
            let _runtime = runtime.enter();
            TcpListener::from_std(listener).expect("handing the listener to tokio")
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("warble-s3-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, service, stopped));
                // Ends the connections still open (keep-alive clients).
                runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            })
            .expect("spawning the S3 server's thread");
        Self {
            addr,
            dir,
            next_bucket: AtomicU64::new(0),
            stop: Some(stop),
            thread: Some(thread),
            _guardian: guardian,
        }
    }

    /// One server shared by every test of this test binary (started on
    /// first use, gone when the process exits). Pair it with
    /// [`Self::fresh_bucket`] so tests never see each other's objects.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// `http://127.0.0.1:<port>`, for `AmazonS3Builder::with_endpoint`
    /// (with `with_allow_http(true)`; path-style, the builder's default).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bucket it started with (shared by every user of the server).
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// Creates a new empty bucket, named uniquely on this server, and
    /// returns its name.
    pub fn fresh_bucket(&self) -> String {
        let name = format!(
            "{BUCKET}-{}",
            self.next_bucket.fetch_add(1, Ordering::Relaxed)
        );
        // s3s-fs's CreateBucket does exactly this.
        std::fs::create_dir(self.dir.join(&name))
            .unwrap_or_else(|error| panic!("creating bucket {name}: {error}"));
        name
    }

    /// The access key id it accepts.
    pub fn access_key_id(&self) -> &'static str {
        ACCESS_KEY_ID
    }

    /// The secret key of [`Self::access_key_id`].
    pub fn secret_access_key(&self) -> &'static str {
        SECRET_ACCESS_KEY
    }

    /// The region to sign for: `us-east-1`.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// The storage root: one subdirectory per bucket, s3s-fs's bookkeeping
    /// in dot files beside them.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `bucket`'s objects live: `<bucket>/<key>` is a file.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.join(bucket)
    }

    /// The keys of the objects stored in `bucket`, read from the disk
    /// (sorted, `/`-separated): what a delete must have removed. Empty
    /// directories a deleted nested key leaves behind are not objects.
    pub fn objects_on_disk(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pending = vec![self.bucket_dir(bucket)];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()));
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(relative) = path.strip_prefix(self.bucket_dir(bucket)) {
                    let parts: Vec<_> = relative
                        .components()
                        .map(|part| part.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    keys.push(parts.join("/"));
                }
            }
        }
        keys.sort();
        keys
    }

    /// How many multipart uploads (of any bucket) were created and neither
    /// completed nor aborted: an upload that failed half-way must be
    /// aborted, or its parts stay on the disk (and, on real S3, on the bill).
    pub fn pending_multipart_uploads(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .unwrap_or_else(|error| panic!("listing {}: {error}", self.dir.display()))
            .filter_map(Result::ok)
            .filter(|entry| {
                // s3s-fs's record of an upload: `.upload-<uuid>.json`.
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with(".upload-") && name.ends_with(".json")
            })
            .count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // `_guardian` drops next and removes the directory.
    }
}

/// Accepts connections until `stopped` resolves (or its sender is gone),
/// serving each with HTTP/1.1 or HTTP/2 as the client speaks.
async fn serve(listener: TcpListener, service: S3Service, mut stopped: oneshot::Receiver<()>) {
    let http = ConnectionBuilder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors, say: let connections close.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let connection = http
            .serve_connection(TokioIo::new(stream), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// Starts the guardian that removes `dir` once its stdin closes.
fn guard(dir: &Path) -> Guardian {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(GUARDIAN)
        .arg("warble-testkit")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("spawning sh to guard {}: {error}", dir.display()));
    let stdin = child.stdin.take();
    Guardian { child, stdin }
}

/// A new empty directory under the system temp dir.
fn fresh_dir() -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "warble-s3-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
