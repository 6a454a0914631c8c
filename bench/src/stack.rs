//! The stack under test, in one of two shapes ([`StackShape`]):
//!
//! - `warble dev`'s single-process stack ([`warble_stack::DevStack`]: one
//!   embedded database and event log shared by tweet-svc and graph-svc,
//!   fanout-svc consuming it, timeline-svc reading the cache, the GraphQL
//!   gateway in front, services calling each other in process), on a fresh
//!   data directory and free loopback ports, with the timeline cache on either
//!   the embedded implementation or Redis;
//! - the five services as separate processes on Redis
//!   ([`crate::processes`]), as production runs them.
//!
//! Scenarios reach either through the same addresses, tokens, fan-out
//! counters and cache handle; what only the single process has (its event
//! log, in-memory cache, live counters of other services) is behind
//! [`BenchStack::dev`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use warble_fanout_svc::FanoutStats;
use warble_fanout_svc::config::{ConsumerConfig, FanoutPolicyConfig};
use warble_gateway::auth::Authenticator;
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_mesh::backends::RedisConfig;
use warble_mesh::secret::redact_url;
use warble_stack::{CacheWrapper, DevConfig, DevStack, StackOptions as DevStackOptions};
use warble_timeline_cache::{RedisTimelineCache, TimelineCache};

use crate::observe::{DeliveryLog, ObservedCache};
use crate::processes::{ProcessOptions, ServiceProcesses};

/// The public development secret; the bench stack only listens on loopback.
const JWT_SECRET: &str = "warble-bench-only-insecure-jwt-secret-0123456789";

/// Which timeline cache the stack's timeline-svc and fanout-svc share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheBackend {
    /// The in-memory cache `warble dev` uses.
    Embedded,
    /// Redis at `url`, keys under `key_prefix` (so runs sharing a server never collide).
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Prepended to every key.
        key_prefix: String,
    },
}

impl CacheBackend {
    /// `embedded` or `redis`, as reports name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Redis { .. } => "redis",
        }
    }
}

/// Which shape of the system a [`BenchStack`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StackShape {
    /// `warble dev`'s single process (`--stack dev`).
    #[default]
    Dev,
    /// tweet-svc, graph-svc, timeline-svc, fanout-svc and the gateway as
    /// separate processes, event log and timeline cache on two Redis
    /// servers (`--stack processes`).
    Processes,
}

impl StackShape {
    /// `dev` or `processes`, as reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Processes => "processes",
        }
    }
}

/// How to start a [`BenchStack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The embedded database's directory; `None` uses a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Followers from which an author is merged at read time instead of pushed.
    pub celebrity_threshold: u64,
    /// fanout-svc's parallel workers.
    pub consumer_workers: u32,
    /// The shape of the system.
    pub shape: StackShape,
    /// The timeline cache (the single process only: separate processes
    /// always share their own Redis).
    pub backend: CacheBackend,
    /// Services call each other in process (as `warble dev` does) rather
    /// than over loopback gRPC.
    pub in_process_calls: bool,
    /// Wrap the cache so every push is timestamped ([`BenchStack::deliveries`]).
    pub observe_deliveries: bool,
    /// The gateway's adaptive in-flight bound (`limits.adaptive_in_flight`).
    /// Off by default: a capacity measurement drives the stack at a fixed
    /// concurrency on purpose, so shedding would turn it into a measurement
    /// of refusals; `overload` turns it on, since shedding is what it measures.
    pub adaptive_in_flight: bool,
    /// Where the service binaries are, for [`StackShape::Processes`]
    /// (`None`: next to `warble-bench`).
    pub binaries: Option<PathBuf>,
    /// The single process's `data_cache_mb` (`None`: its default).
    pub data_cache_mb: Option<u64>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            celebrity_threshold: FanoutPolicyConfig::default().celebrity_threshold,
            consumer_workers: ConsumerConfig::for_group("fanout").workers,
            shape: StackShape::Dev,
            backend: CacheBackend::Embedded,
            in_process_calls: true,
            observe_deliveries: false,
            adaptive_in_flight: false,
            binaries: None,
            data_cache_mb: None,
        }
    }
}

/// How long the event stream must stay the same length before the outbox
/// relays count as drained (see [`BenchStack::wait_fanout_idle`]).
const RELAYS_SETTLED: Duration = Duration::from_millis(500);

/// The event stream's length over time: settled once unchanged for [`RELAYS_SETTLED`].
#[derive(Default)]
struct StreamGrowth {
    last: Option<(u64, tokio::time::Instant)>,
}

impl StreamGrowth {
    fn settled(&mut self, len: u64) -> bool {
        let now = tokio::time::Instant::now();
        match self.last {
            Some((last, since)) if last == len => now.duration_since(since) >= RELAYS_SETTLED,
            _ => {
                self.last = Some((len, now));
                false
            }
        }
    }
}

/// The services of a [`BenchStack`].
enum Services {
    Dev(Box<DevStack>),
    Processes(Box<ServiceProcesses>),
}

impl StackOptions {
    /// How report rows name this stack: the cache backend of the single
    /// process (`embedded`, `redis`), or `processes` (always on Redis).
    pub fn label(&self) -> &'static str {
        match self.shape {
            StackShape::Dev => self.backend.name(),
            StackShape::Processes => "processes",
        }
    }
}

/// A running stack (see the module docs) and what only benchmarks need.
pub struct BenchStack {
    services: Services,
    /// Where the GraphQL gateway listens (HTTP).
    pub gateway_addr: SocketAddr,
    /// Where tweet-svc listens.
    pub tweet_addr: SocketAddr,
    /// Where graph-svc listens.
    pub graph_addr: SocketAddr,
    /// Where timeline-svc listens.
    pub timeline_addr: SocketAddr,
    /// The timeline cache fanout-svc writes and timeline-svc reads.
    pub timeline_cache: Arc<dyn TimelineCache>,
    /// Signs tokens as the gateway verifies them.
    tokens: Authenticator,
    /// The single process's cache when it is Redis (for its client).
    pub redis_cache: Option<RedisTimelineCache>,
    /// Push timestamps, when [`StackOptions::observe_deliveries`] was set
    /// (the single process only: fanout-svc's cache is wrapped in process).
    pub deliveries: Option<Arc<DeliveryLog>>,
    /// The options the stack was started with.
    pub options: StackOptions,
    /// The embedded database's directory.
    pub data_dir: PathBuf,
    _temp_dir: Option<tempfile::TempDir>,
}

impl BenchStack {
    /// Opens a fresh embedded database and starts every service on free loopback ports.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let (temp_dir, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("warble-bench-")
                    .tempdir()
                    .context("cannot create a temporary data directory")?;
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let tokens = Authenticator::new(&AuthConfig {
            hs256_secret: JWT_SECRET.into(),
            dev_mode: true,
            ..AuthConfig::default()
        })
        .context("cannot sign bench tokens")?;
        if options.shape == StackShape::Processes {
            let processes = ServiceProcesses::start(&ProcessOptions {
                celebrity_threshold: options.celebrity_threshold,
                consumer_workers: options.consumer_workers,
                jwt_secret: JWT_SECRET.into(),
                data_dir: data_dir.clone(),
                adaptive_in_flight: options.adaptive_in_flight,
                binaries: options.binaries.clone(),
            })
            .await?;
            let cache = RedisTimelineCache::connect(&RedisConfig {
                url: processes.cache_redis.url(),
                ..RedisConfig::default()
            })
            .await
            .context("cannot connect to the timeline cache's Redis")?;
            return Ok(Self {
                gateway_addr: processes.gateway_addr,
                tweet_addr: processes.tweet_addr,
                graph_addr: processes.graph_addr,
                timeline_addr: processes.timeline_addr,
                timeline_cache: Arc::new(cache),
                services: Services::Processes(Box::new(processes)),
                tokens,
                redis_cache: None,
                deliveries: None,
                options,
                data_dir,
                _temp_dir: temp_dir,
            });
        }
        let redis_cache = match &options.backend {
            CacheBackend::Embedded => None,
            CacheBackend::Redis { url, key_prefix } => Some(
                RedisTimelineCache::connect(&RedisConfig {
                    url: url.clone(),
                    ..RedisConfig::default()
                })
                .await
                .with_context(|| format!("cannot connect to Redis at {}", redact_url(url)))?
                .with_key_prefix(key_prefix.clone()),
            ),
        };
        let deliveries = options
            .observe_deliveries
            .then(|| Arc::new(DeliveryLog::default()));
        let wrap_fanout_cache = deliveries.clone().map(|log| {
            Box::new(move |cache: Arc<dyn TimelineCache>| {
                Arc::new(ObservedCache::new(cache, log)) as Arc<dyn TimelineCache>
            }) as CacheWrapper
        });
        let data_dir_used = data_dir.clone();
        let mut config = DevConfig::ephemeral(data_dir);
        config.jwt_secret = JWT_SECRET.into();
        config.in_process_calls = options.in_process_calls;
        if let Some(mb) = options.data_cache_mb {
            config.data_cache_mb = mb;
        }
        // Load tests post and read far faster than a person: the per-user
        // buckets would turn most requests into RATE_LIMITED errors (a
        // scenario reading as 50 users at 3,000 pages a second asks each
        // user's bucket for 60 a second). The limiter still runs on every
        // request, so its cost stays in the figures.
        config.limits = LimitsConfig {
            mutation_burst: 1_000_000,
            mutations_per_minute: 1_000_000,
            query_burst: 1_000_000,
            queries_per_minute: 1_000_000,
            adaptive_in_flight: options.adaptive_in_flight,
            ..LimitsConfig::default()
        };
        config.fanout.celebrity_threshold = options.celebrity_threshold;
        config.consumer.name = "bench".into();
        config.consumer.workers = options.consumer_workers;
        let stack = DevStack::start_with(
            &config,
            DevStackOptions {
                timeline_cache: redis_cache
                    .clone()
                    .map(|cache| Arc::new(cache) as Arc<dyn TimelineCache>),
                wrap_fanout_cache,
            },
        )
        .await?;
        Ok(Self {
            gateway_addr: stack.gateway_addr,
            tweet_addr: stack.tweet_addr,
            graph_addr: stack.graph_addr,
            timeline_addr: stack.timeline_addr,
            timeline_cache: stack.timeline_cache.clone(),
            services: Services::Dev(Box::new(stack)),
            tokens,
            redis_cache,
            deliveries,
            options,
            data_dir: data_dir_used,
            _temp_dir: temp_dir,
        })
    }

    /// A bearer token for `user_id`, signed as the gateway expects.
    pub fn token(&self, user_id: u64) -> String {
        self.tokens
            .issue(user_id)
            .expect("the bench signs in development mode")
    }

    /// The single-process stack, for what only it exposes; an error on
    /// separate processes, naming the scenario's shape.
    pub fn dev(&self) -> anyhow::Result<&DevStack> {
        match &self.services {
            Services::Dev(stack) => Ok(stack),
            Services::Processes(_) => {
                anyhow::bail!(
                    "this measurement runs on the single-process stack only (--stack dev)"
                )
            }
        }
    }

    /// The separate processes, when the stack is that shape.
    pub fn processes(&self) -> Option<&ServiceProcesses> {
        match &self.services {
            Services::Processes(processes) => Some(processes),
            Services::Dev(_) => None,
        }
    }

    /// Events fanout-svc has not acknowledged yet.
    pub async fn fanout_lag(&self) -> anyhow::Result<u64> {
        match &self.services {
            Services::Dev(stack) => stack.fanout_lag().await,
            Services::Processes(processes) => Ok(processes.fanout_status().await?.consumer_lag),
        }
    }

    /// Waits until fanout-svc has applied every event written so far. On
    /// separate processes, events reach the stream through tweet-svc's and
    /// graph-svc's outbox relays, so a lag of 0 can come while a relay still
    /// holds a backlog: there the stream must also have stopped growing for
    /// [`RELAYS_SETTLED`] (a relay with a backlog appends continuously).
    pub async fn wait_fanout_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stream = StreamGrowth::default();
        loop {
            let settled = match &self.services {
                Services::Dev(_) => true,
                Services::Processes(processes) => {
                    stream.settled(processes.event_stream_len().await?)
                }
            };
            if settled && self.fanout_lag().await? == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "fanout-svc still has {} events to apply after {timeout:?}",
                    self.fanout_lag().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Fan-out events that failed every attempt (must stay 0).
    pub async fn dead_letters(&self) -> anyhow::Result<u64> {
        match &self.services {
            Services::Dev(stack) => Ok(FanoutStats::get(&stack.fanout_stats.consumer.dead_letters)),
            Services::Processes(processes) => Ok(processes.fanout_status().await?.dead_letters),
        }
    }

    /// Timeline insertions fanout-svc has written.
    pub async fn deliveries_written(&self) -> anyhow::Result<u64> {
        match &self.services {
            Services::Dev(stack) => Ok(FanoutStats::get(&stack.fanout_stats.deliveries_written)),
            Services::Processes(processes) => {
                Ok(processes.fanout_status().await?.deliveries_written)
            }
        }
    }

    /// Stops every service, draining in-flight calls.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.services {
            Services::Dev(stack) => stack.stop().await,
            Services::Processes(processes) => processes.stop().await,
        }
    }
}
