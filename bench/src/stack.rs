//! The stack under test: `warble dev`'s single-process stack
//! ([`warble_stack::DevStack`]: one embedded database and event log shared by
//! tweet-svc and graph-svc, fanout-svc consuming it, timeline-svc reading the
//! cache, the GraphQL gateway in front, services calling each other in
//! process), on a fresh data directory and free loopback ports, with the
//! timeline cache on either the embedded implementation or Redis.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use warble_fanout_svc::FanoutStats;
use warble_fanout_svc::config::{ConsumerConfig, FanoutPolicyConfig};
use warble_gateway::config::LimitsConfig;
use warble_mesh::backends::RedisConfig;
use warble_mesh::secret::redact_url;
use warble_stack::{CacheWrapper, DevConfig, DevStack, StackOptions as DevStackOptions};
use warble_timeline_cache::{RedisTimelineCache, TimelineCache};

use crate::observe::{DeliveryLog, ObservedCache};

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

/// How to start a [`BenchStack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The embedded database's directory; `None` uses a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Followers from which an author is merged at read time instead of pushed.
    pub celebrity_threshold: u64,
    /// fanout-svc's parallel workers.
    pub consumer_workers: u32,
    /// The timeline cache.
    pub backend: CacheBackend,
    /// Services call each other in process (as `warble dev` does) rather
    /// than over loopback gRPC.
    pub in_process_calls: bool,
    /// Wrap the cache so every push is timestamped ([`BenchStack::deliveries`]).
    pub observe_deliveries: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            celebrity_threshold: FanoutPolicyConfig::default().celebrity_threshold,
            consumer_workers: ConsumerConfig::for_group("fanout").workers,
            backend: CacheBackend::Embedded,
            in_process_calls: true,
            observe_deliveries: false,
        }
    }
}

/// A running stack (see the module docs): `warble dev`'s [`DevStack`]
/// (every field of it reachable through `Deref`) plus what only benchmarks
/// need.
pub struct BenchStack {
    stack: DevStack,
    /// The cache when it is Redis (for its client).
    pub redis_cache: Option<RedisTimelineCache>,
    /// Push timestamps, when [`StackOptions::observe_deliveries`] was set.
    pub deliveries: Option<Arc<DeliveryLog>>,
    /// The options the stack was started with.
    pub options: StackOptions,
    /// The embedded database's directory.
    pub data_dir: PathBuf,
    _temp_dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for BenchStack {
    type Target = DevStack;

    fn deref(&self) -> &DevStack {
        &self.stack
    }
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
            stack,
            redis_cache,
            deliveries,
            options,
            data_dir: data_dir_used,
            _temp_dir: temp_dir,
        })
    }

    /// A bearer token for `user_id`, signed as the gateway expects.
    pub fn token(&self, user_id: u64) -> String {
        self.stack
            .issue_token(user_id)
            .expect("the bench gateway runs in development mode")
    }

    /// Waits until fanout-svc has applied every event appended so far.
    pub async fn wait_fanout_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.fanout_lag().await? == 0 {
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
    pub fn dead_letters(&self) -> u64 {
        FanoutStats::get(&self.fanout_stats.consumer.dead_letters)
    }

    /// Timeline insertions fanout-svc has written.
    pub fn deliveries_written(&self) -> u64 {
        FanoutStats::get(&self.fanout_stats.deliveries_written)
    }

    /// Stops every service, draining in-flight calls.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stack.stop().await
    }
}
