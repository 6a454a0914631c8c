//! The services as separate processes, as in production: the real
//! `tweet-svc`, `graph-svc`, `timeline-svc`, `fanout-svc`, `notify-svc`,
//! `search-svc`, `media-svc` and `gateway` binaries, configured only through `WARBLE_*` environment
//! variables, on two Redis servers in their production roles: the event log (each store
//! relaying its outbox to Redis Streams) and the timeline cache (fanout-svc's
//! `timeline_cache.redis.*`, timeline-svc's `redis.*`), and media-svc keeping its metadata in Redis and its files in an S3
//! bucket (a real S3 API server on loopback, [`warble_testkit::s3`]).
//! With [`StackSpec::mutual_tls`], every gRPC hop is mutual TLS: each
//! service has a certificate from a test CA naming it
//! (`spiffe://warble/<binary>`), and enforces its default peer rules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use warble_proto::fanout::v1::GetStatusRequest;
use warble_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use warble_proto::notify::v1::notify_service_client::NotifyServiceClient;
use warble_proto::search::v1::search_service_client::SearchServiceClient;
use warble_testkit::RedisServer;
use warble_testkit::s3::S3Server;
use warble_testkit::tls::MeshPki;

use crate::frontend::{Frontend, StackSpec};
use crate::graphql::GraphqlClient;
use crate::{EVENTUALLY, eventually};

const BINARIES: [&str; 8] = [
    "tweet-svc",
    "graph-svc",
    "timeline-svc",
    "fanout-svc",
    "notify-svc",
    "search-svc",
    "media-svc",
    "gateway",
];
const JWT_SECRET: &str = "separate-process-test-secret-0123456789abcdef";

/// A stack of service processes; killed when dropped.
pub struct ProcessStack {
    children: Vec<(String, Child)>,
    /// How each service was started, for [`ProcessStack::restart`].
    commands: Vec<(String, Vec<(String, String)>)>,
    gateway: SocketAddr,
    tweet: SocketAddr,
    fanout: SocketAddr,
    notify: SocketAddr,
    search: SocketAddr,
    redis: RedisServer,
    /// The timeline cache's own Redis.
    _cache_redis: RedisServer,
    /// Each gRPC service's `/metrics` address (`server.metrics_listen_addr`).
    metrics: HashMap<String, SocketAddr>,
    /// The bucket media-svc stores files in.
    _s3: S3Server,
    /// The mesh CA, with mutual TLS on.
    pki: Option<MeshPki>,
    /// The stack's own mesh certificate (`operator`), for its status calls.
    operator: Option<warble_mesh::tls::MeshTls>,
    _data: tempfile::TempDir,
}

fn free_port() -> SocketAddr {
    // Probed and released: see `unused_port` for why it is not an ephemeral port.
    SocketAddr::from(([127, 0, 0, 1], warble_testkit::unused_port()))
}

/// Where cargo put this workspace's binaries (next to the test executable's `deps`).
fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().unwrap_or(deps).to_owned()
}

/// The path of one of this workspace's binaries: a service's, or `warble`
/// (built first if missing).
pub fn binary_path(binary: &str) -> PathBuf {
    let dir = binary_dir();
    ensure_binaries(&dir);
    if !dir.join(binary).exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bins", "-p", package_of(binary)])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {binary} failed");
    }
    dir.join(binary)
}

/// Builds the service binaries unless this run already did (`cargo nextest
/// run --workspace` builds every binary first, so this is a no-op there).
fn ensure_binaries(dir: &Path) {
    if BINARIES.iter().all(|binary| dir.join(binary).exists()) {
        return;
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--bins"])
        .args(
            BINARIES
                .iter()
                .flat_map(|binary| ["-p", package_of(binary)]),
        )
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the service binaries failed");
}

fn package_of(binary: &str) -> &'static str {
    match binary {
        "tweet-svc" => "warble-tweet-svc",
        "graph-svc" => "warble-graph-svc",
        "timeline-svc" => "warble-timeline-svc",
        "fanout-svc" => "warble-fanout-svc",
        "notify-svc" => "warble-notify-svc",
        "search-svc" => "warble-search-svc",
        "media-svc" => "warble-media-svc",
        "warble" => "warble-launcher",
        _ => "warble-gateway",
    }
}

impl ProcessStack {
    /// Starts Redis, an S3 API server and the eight services; `None` (after a printed notice)
    /// when redis-server is not installed outside CI.
    pub async fn start(spec: &StackSpec) -> Option<Self> {
        crate::telemetry_for_tests();
        let redis = RedisServer::start()?;
        let cache_redis = RedisServer::start()?;
        let dir = binary_dir();
        ensure_binaries(&dir);
        let data = tempfile::tempdir().unwrap();
        let s3 = S3Server::start();
        let [
            tweet,
            graph,
            timeline,
            fanout,
            notify,
            search,
            media,
            gateway,
        ] = [(); 8].map(|_| free_port());
        let mut common = vec![
            ("WARBLE_TELEMETRY__LOG_LEVEL", "warn".to_owned()),
            ("WARBLE_TELEMETRY__LOG_FORMAT", "compact".to_owned()),
            ("WARBLE_TWEET_SERVICE_ADDR", tweet.to_string()),
            ("WARBLE_GRAPH_SERVICE_ADDR", graph.to_string()),
            ("WARBLE_TIMELINE_SERVICE_ADDR", timeline.to_string()),
            ("WARBLE_NOTIFY_SERVICE_ADDR", notify.to_string()),
            ("WARBLE_SEARCH_SERVICE_ADDR", search.to_string()),
            ("WARBLE_MEDIA_SERVICE_ADDR", media.to_string()),
        ];
        if let Some(endpoint) = &spec.otlp_endpoint {
            common.push(("WARBLE_TELEMETRY__OTLP_ENDPOINT", endpoint.clone()));
            // The SDK's batch processor otherwise waits 5 s between exports.
            common.push(("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()));
        }
        let redis_url = redis.url();
        let threshold = spec.celebrity_threshold.to_string();
        let pki = spec.mutual_tls.then(|| MeshPki::new("warble test mesh CA"));
        let services: Vec<(&str, Vec<(&str, String)>)> = vec![
            (
                "tweet-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", tweet.to_string()),
                    (
                        "WARBLE_DATA_DIR",
                        data.path().join("tweet").display().to_string(),
                    ),
                    ("WARBLE_WORKER_ID", "1".into()),
                    ("WARBLE_EVENTS__BACKEND", "redis".into()),
                    ("WARBLE_EVENTS__REDIS__URL", redis_url.clone()),
                ],
            ),
            (
                "graph-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", graph.to_string()),
                    (
                        "WARBLE_DATA_DIR",
                        data.path().join("graph").display().to_string(),
                    ),
                    ("WARBLE_WORKER_ID", "2".into()),
                    ("WARBLE_EVENTS__BACKEND", "redis".into()),
                    ("WARBLE_EVENTS__REDIS__URL", redis_url.clone()),
                ],
            ),
            (
                "timeline-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", timeline.to_string()),
                    ("WARBLE_BACKEND", "redis".into()),
                    ("WARBLE_REDIS__URL", cache_redis.url()),
                    ("WARBLE_CELEBRITY_THRESHOLD", threshold.clone()),
                ],
            ),
            (
                "fanout-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", fanout.to_string()),
                    ("WARBLE_BACKEND", "redis".into()),
                    ("WARBLE_REDIS__URL", redis_url.clone()),
                    ("WARBLE_TIMELINE_CACHE__SEPARATE", "true".into()),
                    ("WARBLE_TIMELINE_CACHE__REDIS__URL", cache_redis.url()),
                    ("WARBLE_FANOUT__CELEBRITY_THRESHOLD", threshold.clone()),
                    // Partitioned like the chart's, so replicas can share it.
                    ("WARBLE_CONSUMER__PARTITIONS", "4".into()),
                    ("WARBLE_CONSUMER__LEASE_SECS", "3".into()),
                ],
            ),
            (
                "notify-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", notify.to_string()),
                    (
                        "WARBLE_DATA_DIR",
                        data.path().join("notify").display().to_string(),
                    ),
                    ("WARBLE_REDIS__URL", redis_url.clone()),
                    ("WARBLE_CONSUMER__LEASE_SECS", "3".into()),
                ],
            ),
            (
                "search-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", search.to_string()),
                    (
                        "WARBLE_DATA_DIR",
                        data.path().join("search").display().to_string(),
                    ),
                    ("WARBLE_REDIS__URL", redis_url.clone()),
                    ("WARBLE_INDEX__WRITER_HEAP_MB", "16".into()),
                ],
            ),
            (
                "media-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", media.to_string()),
                    (
                        "WARBLE_DATA_DIR",
                        data.path().join("media").display().to_string(),
                    ),
                    ("WARBLE_WORKER_ID", "3".into()),
                    ("WARBLE_REDIS__URL", redis_url.clone()),
                    ("WARBLE_STORE__BACKEND", "redis".into()),
                    ("WARBLE_STORE__REDIS__URL", redis_url.clone()),
                    ("WARBLE_BLOBS__BACKEND", "s3".into()),
                    ("WARBLE_BLOBS__S3__ENDPOINT", s3.endpoint()),
                    ("WARBLE_BLOBS__S3__REGION", s3.region().into()),
                    ("WARBLE_BLOBS__S3__BUCKET", s3.bucket().into()),
                    ("WARBLE_BLOBS__S3__ACCESS_KEY_ID", s3.access_key_id().into()),
                    (
                        "WARBLE_BLOBS__S3__SECRET_ACCESS_KEY",
                        s3.secret_access_key().into(),
                    ),
                    ("WARBLE_BLOBS__S3__ALLOW_HTTP", "true".into()),
                    ("WARBLE_URLS__BASE_URL", format!("http://{gateway}/media")),
                    ("WARBLE_CONSUMER__LEASE_SECS", "3".into()),
                ],
            ),
            (
                "gateway",
                vec![
                    ("WARBLE_LISTEN_ADDR", gateway.to_string()),
                    ("WARBLE_AUTH__HS256_SECRET", JWT_SECRET.into()),
                    ("WARBLE_AUTH__DEV_MODE", "true".into()),
                    ("WARBLE_EVENTS__BACKEND", "redis".into()),
                    ("WARBLE_EVENTS__REDIS__URL", redis_url.clone()),
                    (
                        "WARBLE_LIMITS__MUTATION_BURST",
                        spec.mutation_burst.to_string(),
                    ),
                    (
                        "WARBLE_LIMITS__MUTATIONS_PER_MINUTE",
                        spec.mutations_per_minute.to_string(),
                    ),
                    (
                        "WARBLE_LIMITS__WS_INIT_TIMEOUT_SECS",
                        spec.ws_init_timeout_secs.to_string(),
                    ),
                    ("WARBLE_LIMITS__QUERY_BURST", spec.query_burst.to_string()),
                    (
                        "WARBLE_LIMITS__QUERIES_PER_MINUTE",
                        spec.queries_per_minute.to_string(),
                    ),
                ],
            ),
        ];
        let mut metrics = HashMap::new();
        let commands: Vec<(String, Vec<(String, String)>)> = services
            .into_iter()
            .map(|(binary, env)| {
                let mut env: Vec<(String, String)> = common
                    .iter()
                    .chain(env.iter())
                    .map(|(key, value)| ((*key).to_owned(), value.clone()))
                    .collect();
                if let Some(pki) = &pki {
                    env.extend(mesh_tls_env(pki, binary));
                }
                if binary != "gateway" {
                    let addr = free_port();
                    metrics.insert(binary.to_owned(), addr);
                    env.push((
                        "WARBLE_SERVER__METRICS_LISTEN_ADDR".to_owned(),
                        addr.to_string(),
                    ));
                }
                (binary.to_owned(), env)
            })
            .collect();
        let children = commands
            .iter()
            .map(|(binary, env)| (binary.clone(), spawn_service(&dir, binary, env)))
            .collect();
        let stack = Self {
            children,
            commands,
            gateway,
            tweet,
            fanout,
            notify,
            search,
            redis,
            _cache_redis: cache_redis,
            metrics,
            _s3: s3,
            operator: pki.as_ref().map(|pki| mesh_client(pki, "operator")),
            pki,
            _data: data,
        };
        stack.wait_until_ready().await;
        Some(stack)
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        let readyz = format!("http://{}/readyz", self.gateway);
        let deadline = tokio::time::Instant::now() + EVENTUALLY;
        loop {
            let gateway_ready = client
                .get(&readyz)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if gateway_ready
                && self.fanout_lag().await.is_some()
                && self.notify_lag().await.is_some()
                && self.search_status().await.is_some()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "services did not become ready (see their stderr above)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A connected channel to one of the services, as the mesh peer
    /// `identity` when mutual TLS is on (`None`: the stack's own `operator`
    /// certificate); plaintext otherwise. `None` while it does not answer.
    pub async fn channel_as(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
    ) -> Option<tonic::transport::Channel> {
        let (Some(pki), Some(operator)) = (&self.pki, &self.operator) else {
            return tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
                .ok();
        };
        let tls = match identity {
            Some(name) => mesh_client(pki, name),
            None => operator.clone(),
        };
        tonic::transport::Channel::from_shared(format!("https://{addr}"))
            .ok()?
            .tls_config(tls.client_config())
            .ok()?
            .connect()
            .await
            .ok()
    }

    /// The mesh CA, with mutual TLS on.
    pub fn pki(&self) -> Option<&MeshPki> {
        self.pki.as_ref()
    }

    async fn fanout_lag(&self) -> Option<u64> {
        let channel = self.channel_as(self.fanout, None).await?;
        let status = FanoutServiceClient::new(channel)
            .get_status(GetStatusRequest {})
            .await
            .ok()?;
        Some(status.into_inner().consumer_lag)
    }

    async fn notify_lag(&self) -> Option<u64> {
        Some(self.notify_status().await?.consumer_lag)
    }

    /// notify-svc's GetStatus, `None` while it does not answer.
    pub async fn notify_status(&self) -> Option<warble_proto::notify::v1::GetStatusResponse> {
        let channel = self.channel_as(self.notify, None).await?;
        let status = NotifyServiceClient::new(channel)
            .get_status(warble_proto::notify::v1::GetStatusRequest {})
            .await
            .ok()?;
        Some(status.into_inner())
    }

    /// Waits until fan-out and notify-svc (the consumer groups) have
    /// acknowledged every event so far, whatever search-svc is doing.
    pub async fn settle_consumer_groups(&self) {
        eventually("fan-out and notifications to catch up", || async {
            self.fanout_lag().await == Some(0) && self.notify_lag().await == Some(0)
        })
        .await;
    }

    /// search-svc's GetStatus, `None` while it does not answer.
    pub async fn search_status(&self) -> Option<warble_proto::search::v1::GetStatusResponse> {
        let channel = self.channel_as(self.search, None).await?;
        let status = SearchServiceClient::new(channel)
            .get_status(warble_proto::search::v1::GetStatusRequest {})
            .await
            .ok()?;
        Some(status.into_inner())
    }

    /// Kills `binary` with SIGKILL (no drain, no acknowledgements: a crash)
    /// and waits until it is gone.
    pub fn kill(&mut self, binary: &str) {
        let (_, child) = self
            .children
            .iter_mut()
            .find(|(name, _)| name == binary)
            .unwrap_or_else(|| panic!("no {binary} in the stack"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts `binary` again with the environment it first had (its data
    /// directory included), after [`ProcessStack::kill`].
    pub fn restart(&mut self, binary: &str) {
        self.restart_with(binary, &[]);
    }

    /// The environment `binary` was first started with.
    fn environment_of(&self, binary: &str) -> Vec<(String, String)> {
        self.commands
            .iter()
            .find(|(name, _)| name == binary)
            .unwrap_or_else(|| panic!("no {binary} in the stack"))
            .1
            .clone()
    }

    /// Starts another replica of `binary` (its own gRPC and metrics ports,
    /// otherwise the same environment), named `<binary>#<n>` in the stack.
    pub fn start_replica(&mut self, binary: &str) -> String {
        let mut env = self.environment_of(binary);
        let metrics = free_port();
        for (key, value) in &mut env {
            match key.as_str() {
                "WARBLE_SERVER__LISTEN_ADDR" => *value = free_port().to_string(),
                "WARBLE_SERVER__METRICS_LISTEN_ADDR" => *value = metrics.to_string(),
                _ => {}
            }
        }
        let replicas = self
            .children
            .iter()
            .filter(|(name, _)| name.split('#').next() == Some(binary))
            .count();
        let name = format!("{binary}#{}", replicas + 1);
        let child = spawn_service(&binary_dir(), binary, &env);
        self.children.push((name.clone(), child));
        self.metrics.insert(name.clone(), metrics);
        name
    }

    /// [`ProcessStack::restart`] with `extra` variables on top of its
    /// environment, for this run of the process only (a failpoint, a
    /// smaller page).
    pub fn restart_with(&mut self, binary: &str, extra: &[(&str, &str)]) {
        let mut env = self.environment_of(binary);
        env.extend(
            extra
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let child = spawn_service(&binary_dir(), binary, &env);
        let slot = self
            .children
            .iter_mut()
            .find(|(name, _)| name == binary)
            .expect("a killed service keeps its slot");
        slot.1 = child;
    }

    /// Restarts `binary` with the failpoint `name` armed (and `extra`
    /// variables), then waits until the process reached it and stopped
    /// there (see `warble_mesh::failpoint`) while `trigger` runs, the thing
    /// that leads it there. Kill it next: that is the crash.
    pub async fn run_into_failpoint<Fut: std::future::Future<Output = ()>>(
        &mut self,
        binary: &str,
        name: &str,
        extra: &[(&str, &str)],
        trigger: impl FnOnce(&Self) -> Fut,
    ) {
        let announced = self._data.path().join(format!("failpoint-{binary}-{name}"));
        let _ = std::fs::remove_file(&announced);
        let announced_text = announced.display().to_string();
        let mut env = vec![
            ("WARBLE_FAILPOINT", name),
            ("WARBLE_FAILPOINT_FILE", announced_text.as_str()),
        ];
        env.extend_from_slice(extra);
        self.kill(binary);
        self.restart_with(binary, &env);
        trigger(self).await;
        eventually(&format!("{binary} to reach the failpoint {name}"), || {
            let announced = announced.clone();
            async move { announced.exists() }
        })
        .await;
    }

    /// Every entry of the domain event stream in Redis, decoded, oldest first.
    pub async fn domain_events(&self) -> Vec<warble_proto::events::v1::Event> {
        use prost::Message as _;
        use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog as _, RedisEventLog};
        // The test servers run without AOF on purpose: no need to say so.
        let config = warble_mesh::backends::RedisConfig {
            durability_check: warble_mesh::backends::DurabilityCheck::Off,
            ..self.redis.config()
        };
        let log = RedisEventLog::connect(&config)
            .await
            .expect("the stack's Redis answers");
        let mut events = Vec::new();
        let mut after = None;
        loop {
            let page = log
                .read_after(DOMAIN_EVENTS_STREAM, after, 1_000, Duration::ZERO)
                .await
                .expect("the domain stream reads");
            let Some(last) = page.last() else {
                return events;
            };
            after = Some(last.id);
            events.extend(page.iter().map(|entry| {
                warble_proto::events::v1::Event::decode(entry.payload.as_slice())
                    .expect("a domain event")
            }));
        }
    }

    /// notify-svc's gRPC address.
    pub fn notify_addr(&self) -> SocketAddr {
        self.notify
    }

    /// search-svc's gRPC address.
    pub fn search_addr(&self) -> SocketAddr {
        self.search
    }

    /// tweet-svc's gRPC address.
    pub fn tweet_addr(&self) -> SocketAddr {
        self.tweet
    }

    /// The URL of the stack's Redis.
    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// How the services reach Redis (event stream, caches, trends).
    pub fn redis_config(&self) -> warble_mesh::backends::RedisConfig {
        self.redis.config()
    }

    /// What `binary`'s `/metrics` says now (the gateway's on its HTTP port).
    pub async fn metrics_text(&self, binary: &str) -> String {
        let addr = match binary {
            "gateway" => self.gateway,
            _ => self.metrics[binary],
        };
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("the metrics listener answers")
            .text()
            .await
            .expect("metrics text")
    }

    /// fanout-svc's gRPC address.
    pub fn fanout_addr(&self) -> SocketAddr {
        self.fanout
    }

    /// Stops every service with SIGTERM, as Kubernetes would, and waits.
    pub async fn stop(mut self) {
        for (name, child) in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let exit = tokio::task::block_in_place(|| child.wait());
            assert!(
                exit.as_ref().is_ok_and(|status| status.success()),
                "{name} exited with {exit:?}"
            );
        }
        self.children.clear();
    }
}

/// A mesh certificate naming `identity`, loaded for a client.
fn mesh_client(pki: &MeshPki, identity: &str) -> warble_mesh::tls::MeshTls {
    let cert = pki.issue(identity);
    warble_mesh::tls::MeshTlsConfig {
        enabled: true,
        cert_file: cert.cert_file.display().to_string(),
        key_file: cert.key_file.display().to_string(),
        ca_file: cert.ca_file.display().to_string(),
    }
    .load("test")
    .expect("a usable test certificate")
    .expect("TLS on")
}

/// The environment turning on mutual TLS for `binary`, with a certificate
/// naming it: `server.tls.*` for a service, `mesh_tls.*` for the gateway.
fn mesh_tls_env(pki: &MeshPki, binary: &str) -> Vec<(String, String)> {
    let cert = pki.issue(binary);
    let prefix = if binary == "gateway" {
        "WARBLE_MESH_TLS"
    } else {
        "WARBLE_SERVER__TLS"
    };
    [
        ("ENABLED", "true".to_owned()),
        ("CERT_FILE", cert.cert_file.display().to_string()),
        ("KEY_FILE", cert.key_file.display().to_string()),
        ("CA_FILE", cert.ca_file.display().to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (format!("{prefix}__{key}"), value))
    .collect()
}

fn spawn_service(dir: &Path, binary: &str, env: &[(String, String)]) -> Child {
    Command::new(dir.join(binary))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(
            env.iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"))
}

impl Drop for ProcessStack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Frontend for ProcessStack {
    fn graphql(&self) -> GraphqlClient {
        GraphqlClient::new(self.gateway)
    }

    async fn settle(&self) {
        eventually("fan-out, notifications and search to catch up", || async {
            self.fanout_lag().await == Some(0)
                && self.notify_lag().await == Some(0)
                && self
                    .search_status()
                    .await
                    .is_some_and(|status| status.caught_up && status.lag == 0)
        })
        .await;
    }

    fn jwt_secret(&self) -> String {
        JWT_SECRET.to_owned()
    }
}

/// The `gateway` binary alone, configured by `env` (on top of a free
/// listen address), with no services behind it: for cases that never reach
/// downstream (start-up checks, refusals, `__typename`). Killed when dropped.
pub struct LoneGateway {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl LoneGateway {
    /// Starts it and waits until it answers `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let dir = binary_dir();
        ensure_binaries(&dir);
        let addr = free_port();
        let child = Command::new(dir.join("gateway"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WARBLE_LISTEN_ADDR", addr.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the gateway starts");
        let gateway = Self { child, addr };
        let client = reqwest::Client::new();
        let healthz = format!("http://{addr}/healthz");
        eventually("the gateway to answer /healthz", || async {
            client
                .get(&healthz)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        })
        .await;
        gateway
    }
}

impl Drop for LoneGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
