//! The production shape under test (`--stack processes`): the five
//! timeline services as separate processes, the real `tweet-svc`,
//! `graph-svc`, `timeline-svc`, `fanout-svc` and `gateway` binaries built
//! next to `warble-bench`, configured only through `WARBLE_*` environment
//! variables as the README's separate-process recipe does. Every internal
//! call crosses loopback gRPC; the event log (tweet-svc's and graph-svc's
//! outbox relays, fan-out's consumer group) and the timeline cache
//! (timeline-svc, fan-out's writes) are two throwaway `redis-server`s, the
//! two Redis roles of production. tweet-svc and graph-svc keep their
//! embedded stores, as in that recipe.
//!
//! What the single-process stack reads from memory (fan-out's lag, dead
//! letters and deliveries) comes from fanout-svc's GetStatus over gRPC.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use warble_mesh::backends::RedisConfig;
use warble_mesh::event_log::DOMAIN_EVENTS_STREAM;
use warble_mesh::redis_client::{RedisClient, Request};
use warble_proto::fanout::v1::GetStatusRequest;
use warble_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use warble_testkit::RedisServer;

/// The binaries started, in start order (the gateway last: it connects to the others).
pub const BINARIES: [&str; 5] = [
    "tweet-svc",
    "graph-svc",
    "timeline-svc",
    "fanout-svc",
    "gateway",
];

/// How long the processes get to answer after they are started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to configure the processes.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// fanout-svc's `fanout.celebrity_threshold` and timeline-svc's `celebrity_threshold`.
    pub celebrity_threshold: u64,
    /// fanout-svc's `consumer.workers`.
    pub consumer_workers: u32,
    /// The gateway's `auth.hs256_secret` (tokens are signed with it).
    pub jwt_secret: String,
    /// The processes' data directories go under this one.
    pub data_dir: PathBuf,
    /// The gateway's `limits.adaptive_in_flight`.
    pub adaptive_in_flight: bool,
    /// Where the service binaries are; `None`: next to `warble-bench`.
    pub binaries: Option<PathBuf>,
}

/// The running processes and their two Redis servers; every process is
/// killed when this is dropped.
pub struct ServiceProcesses {
    /// Locked so readiness checks can `try_wait` through `&self`.
    children: Mutex<Vec<(&'static str, Child)>>,
    /// Where tweet-svc listens.
    pub tweet_addr: SocketAddr,
    /// Where graph-svc listens.
    pub graph_addr: SocketAddr,
    /// Where timeline-svc listens.
    pub timeline_addr: SocketAddr,
    /// Where fanout-svc listens.
    pub fanout_addr: SocketAddr,
    /// Where the gateway listens (HTTP).
    pub gateway_addr: SocketAddr,
    /// The event log's Redis.
    pub event_log_redis: RedisServer,
    /// The timeline cache's Redis.
    pub cache_redis: RedisServer,
    fanout: FanoutServiceClient<tonic::transport::Channel>,
    /// A client of the event log's Redis, connected on first use.
    event_log_client: tokio::sync::OnceCell<RedisClient>,
}

impl ServiceProcesses {
    /// Starts both Redis servers and the five processes, and waits until
    /// each answers.
    pub async fn start(options: &ProcessOptions) -> anyhow::Result<Self> {
        let dir = match &options.binaries {
            Some(dir) => dir.clone(),
            None => binary_dir()?,
        };
        let missing: Vec<&str> = BINARIES
            .into_iter()
            .filter(|binary| !dir.join(binary).exists())
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "--stack processes runs the service binaries next to warble-bench ({}), and {} \
             missing there: build them first (`cargo build --release --bins`)",
            dir.display(),
            missing.join(", ")
        );
        let (Some(event_log_redis), Some(cache_redis)) =
            (RedisServer::start(), RedisServer::start())
        else {
            anyhow::bail!(
                "--stack processes needs redis-server (it starts two), which is not installed"
            );
        };
        let [tweet, graph, timeline, fanout, gateway] =
            [(); 5].map(|_| SocketAddr::from(([127, 0, 0, 1], warble_testkit::unused_port())));
        let events = event_log_redis.url();
        let cache = cache_redis.url();
        let threshold = options.celebrity_threshold.to_string();
        let data = |name: &str| options.data_dir.join(name).display().to_string();
        let common = [
            ("WARBLE_TELEMETRY__LOG_LEVEL", "warn".to_owned()),
            ("WARBLE_TWEET_SERVICE_ADDR", tweet.to_string()),
            ("WARBLE_GRAPH_SERVICE_ADDR", graph.to_string()),
            ("WARBLE_TIMELINE_SERVICE_ADDR", timeline.to_string()),
        ];
        let unlimited = 1_000_000.to_string();
        let services: [(&'static str, Vec<(&str, String)>); 5] = [
            (
                "tweet-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", tweet.to_string()),
                    ("WARBLE_DATA_DIR", data("tweet")),
                    ("WARBLE_WORKER_ID", "1".into()),
                    ("WARBLE_EVENTS__BACKEND", "redis".into()),
                    ("WARBLE_EVENTS__REDIS__URL", events.clone()),
                ],
            ),
            (
                "graph-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", graph.to_string()),
                    ("WARBLE_DATA_DIR", data("graph")),
                    ("WARBLE_WORKER_ID", "2".into()),
                    ("WARBLE_EVENTS__BACKEND", "redis".into()),
                    ("WARBLE_EVENTS__REDIS__URL", events.clone()),
                ],
            ),
            (
                "timeline-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", timeline.to_string()),
                    ("WARBLE_BACKEND", "redis".into()),
                    ("WARBLE_REDIS__URL", cache.clone()),
                    ("WARBLE_CELEBRITY_THRESHOLD", threshold.clone()),
                ],
            ),
            (
                "fanout-svc",
                vec![
                    ("WARBLE_SERVER__LISTEN_ADDR", fanout.to_string()),
                    ("WARBLE_BACKEND", "redis".into()),
                    ("WARBLE_REDIS__URL", events.clone()),
                    ("WARBLE_TIMELINE_CACHE__SEPARATE", "true".into()),
                    ("WARBLE_TIMELINE_CACHE__REDIS__URL", cache.clone()),
                    ("WARBLE_FANOUT__CELEBRITY_THRESHOLD", threshold.clone()),
                    (
                        "WARBLE_CONSUMER__WORKERS",
                        options.consumer_workers.to_string(),
                    ),
                ],
            ),
            (
                "gateway",
                vec![
                    ("WARBLE_LISTEN_ADDR", gateway.to_string()),
                    ("WARBLE_AUTH__HS256_SECRET", options.jwt_secret.clone()),
                    ("WARBLE_AUTH__DEV_MODE", "true".into()),
                    ("WARBLE_EVENTS__BACKEND", "redis".into()),
                    ("WARBLE_EVENTS__REDIS__URL", events.clone()),
                    // As on the single-process stack (see `stack.rs`): load
                    // tests outrun the per-user buckets, which still run.
                    ("WARBLE_LIMITS__MUTATION_BURST", unlimited.clone()),
                    ("WARBLE_LIMITS__MUTATIONS_PER_MINUTE", unlimited.clone()),
                    ("WARBLE_LIMITS__QUERY_BURST", unlimited.clone()),
                    ("WARBLE_LIMITS__QUERIES_PER_MINUTE", unlimited.clone()),
                    (
                        "WARBLE_LIMITS__ADAPTIVE_IN_FLIGHT",
                        options.adaptive_in_flight.to_string(),
                    ),
                ],
            ),
        ];
        let mut children = Vec::new();
        for (binary, env) in services {
            let child = Command::new(dir.join(binary))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(
                    common
                        .iter()
                        .chain(env.iter())
                        .map(|(k, v)| (*k, v.as_str())),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start {}", dir.join(binary).display()))?;
            children.push((binary, child));
        }
        let fanout_client = FanoutServiceClient::new(
            tonic::transport::Channel::from_shared(format!("http://{fanout}"))?.connect_lazy(),
        );
        let processes = Self {
            children: Mutex::new(children),
            tweet_addr: tweet,
            graph_addr: graph,
            timeline_addr: timeline,
            fanout_addr: fanout,
            gateway_addr: gateway,
            event_log_redis,
            cache_redis,
            fanout: fanout_client,
            event_log_client: tokio::sync::OnceCell::new(),
        };
        processes.wait_until_ready().await?;
        Ok(processes)
    }

    /// Waits until every gRPC service accepts connections, fanout-svc
    /// answers GetStatus and the gateway answers `{ __typename }`.
    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let mut ready = self.fanout_status().await.is_ok();
            for addr in [self.tweet_addr, self.graph_addr, self.timeline_addr] {
                ready &= tokio::net::TcpStream::connect(addr).await.is_ok();
            }
            ready &= http
                .post(format!("http://{}/graphql", self.gateway_addr))
                .json(&serde_json::json!({ "query": "{ __typename }" }))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            if let Some(binary) = self.exited() {
                anyhow::bail!("{binary} exited during start-up (see its stderr above)");
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the service processes did not answer within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first process found to have exited, if any.
    fn exited(&self) -> Option<&'static str> {
        self.children()
            .iter_mut()
            .find_map(|(binary, child)| child.try_wait().ok().flatten().map(|_| *binary))
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Child)>> {
        self.children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// fanout-svc's counters (lag, deliveries, dead letters).
    pub async fn fanout_status(
        &self,
    ) -> anyhow::Result<warble_proto::fanout::v1::GetStatusResponse> {
        Ok(self
            .fanout
            .clone()
            .get_status(GetStatusRequest {})
            .await
            .context("fanout-svc GetStatus")?
            .into_inner())
    }

    /// Entries in the domain event stream (`XLEN` on the event log's Redis).
    pub async fn event_stream_len(&self) -> anyhow::Result<u64> {
        let client = self
            .event_log_client
            .get_or_try_init(|| async {
                RedisClient::connect(&RedisConfig {
                    url: self.event_log_redis.url(),
                    ..RedisConfig::default()
                })
                .await
                .context("cannot connect to the event log's Redis")
            })
            .await?;
        client
            .query(Request::new("XLEN", DOMAIN_EVENTS_STREAM))
            .await
            .context("XLEN of the event stream")
    }

    /// A client of fanout-svc (for polling its counters from other tasks).
    pub fn fanout_client(&self) -> FanoutServiceClient<tonic::transport::Channel> {
        self.fanout.clone()
    }

    /// Each process's pid, by binary (for profiling and memory figures).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.children()
            .iter()
            .map(|(binary, child)| (*binary, child.id()))
            .collect()
    }

    /// Stops the processes with SIGTERM (they drain), waiting up to 10 s
    /// each before killing.
    pub async fn stop(self) -> anyhow::Result<()> {
        for (_, pid) in self.pids().into_iter().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let running = self
                .children()
                .iter_mut()
                .map(|(_, child)| matches!(child.try_wait(), Ok(None)))
                .filter(|running| *running)
                .count();
            if running == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for ServiceProcesses {
    fn drop(&mut self) {
        for (_, child) in self.children().iter_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The directory `warble-bench` runs from, where cargo put the service binaries too.
fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find warble-bench's own path")?;
    Ok(exe
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf))
}
