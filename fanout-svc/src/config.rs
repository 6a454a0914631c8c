//! fanout-svc's configuration (see the README's config reference).

use serde::{Deserialize, Serialize};
use warble_mesh::backends::RedisConfig;
use warble_mesh::config::{ConfigError, ServiceConfig};
pub use warble_mesh::consumer::ConsumerConfig;
use warble_mesh::grpc::ServerConfig;
use warble_mesh::telemetry::TelemetryConfig;

/// Which timeline cache and event log implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-process; only usable when every service runs in one process (`warble dev`).
    Embedded,
    /// Redis (timelines in sorted sets, events on Streams): required for separate processes.
    Redis,
}

/// fanout-svc's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FanoutSvcConfig {
    /// gRPC server (GetStatus, health, reflection).
    pub server: ServerConfig,
    /// tweet-svc address (`host:port`), for follow backfills.
    pub tweet_service_addr: String,
    /// graph-svc address (`host:port`), for follower lists and counts.
    pub graph_service_addr: String,
    /// Deadline of each call to tweet-svc or graph-svc, in milliseconds.
    pub request_timeout_ms: u64,
    /// Timeline cache and event log backend: `embedded` or `redis`.
    pub backend: Backend,
    /// Redis connection, used when `backend = "redis"`: the event log, and
    /// the timeline cache unless `timeline_cache.separate`.
    pub redis: RedisConfig,
    /// The timeline cache's own Redis (`timeline_cache.*`), when it is kept
    /// apart from the event log's.
    pub timeline_cache: TimelineCacheConfig,
    /// The fan-out rules.
    pub fanout: FanoutPolicyConfig,
    /// How events are consumed.
    pub consumer: ConsumerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// `timeline_cache.*`: where the timeline cache lives.
///
/// The two Redis roles want different servers: the event log must persist
/// (AOF) and never evict, while the cache can be rebuilt from the stores,
/// so it may run without persistence and evict (`allkeys-lru`) under memory
/// pressure (an evicted timeline is a miss, rebuilt on the next read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TimelineCacheConfig {
    /// Keep the cache in `timeline_cache.redis.*` instead of the event
    /// log's Redis (`redis.*`). timeline-svc's `redis.*` must name the same
    /// server as the cache here.
    pub separate: bool,
    /// The cache's Redis, used with `separate`.
    pub redis: RedisConfig,
}

/// `fanout.*`: who gets pushed what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FanoutPolicyConfig {
    /// Authors with at least this many followers are celebrities: their tweets
    /// are not pushed but merged into followers' timelines at read time.
    /// timeline-svc must use the same value.
    pub celebrity_threshold: u64,
    /// Followers not seen for this many days are skipped (their cached
    /// timeline is dropped and rebuilt when they return).
    pub inactive_after_days: u64,
    /// How many of a followee's recent tweets a new follow copies into the follower's timeline.
    pub follow_backfill_tweets: u32,
    /// Followers fetched per graph-svc page while fanning out (at most 5000).
    pub follower_page_size: u32,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`):
/// fanout-svc serves only its status, so any mesh peer.
pub const DEFAULT_ALLOW_PEERS: &str = "*=*";

impl Default for FanoutSvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(50054).allowing(DEFAULT_ALLOW_PEERS),
            tweet_service_addr: "127.0.0.1:50051".into(),
            graph_service_addr: "127.0.0.1:50052".into(),
            request_timeout_ms: 5_000,
            backend: Backend::Redis,
            redis: RedisConfig::default(),
            timeline_cache: TimelineCacheConfig::default(),
            fanout: FanoutPolicyConfig::default(),
            consumer: ConsumerConfig::for_group("fanout"),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Default for FanoutPolicyConfig {
    fn default() -> Self {
        Self {
            celebrity_threshold: 10_000,
            inactive_after_days: 30,
            follow_backfill_tweets: 50,
            follower_page_size: warble_proto::limits::graph::MAX_PAGE_LIMIT,
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for FanoutSvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for FanoutSvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        match self.backend {
            // A standalone process cannot share an in-memory cache.
            Backend::Embedded => {
                return Err(warble_mesh::config::refuse_embedded_timeline_cache(
                    "timeline-svc",
                ));
            }
            Backend::Redis => self.redis.validate("redis")?,
        }
        if self.timeline_cache.separate {
            self.timeline_cache.redis.validate("timeline_cache.redis")?;
        }
        warble_mesh::config::validate_downstreams(
            &[
                ("tweet_service_addr", self.tweet_service_addr.as_str()),
                ("graph_service_addr", self.graph_service_addr.as_str()),
            ],
            self.request_timeout_ms,
        )?;
        self.fanout.validate()?;
        self.consumer.validate()
    }
}

impl FanoutPolicyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.celebrity_threshold == 0 {
            return Err(ConfigError::invalid(
                "fanout.celebrity_threshold",
                "must be at least 1",
            ));
        }
        if !(1..=3650).contains(&self.inactive_after_days) {
            return Err(ConfigError::invalid(
                "fanout.inactive_after_days",
                "must be between 1 and 3650",
            ));
        }
        let max_page = warble_proto::limits::graph::MAX_PAGE_LIMIT;
        if !(1..=max_page).contains(&self.follower_page_size) {
            return Err(ConfigError::invalid(
                "fanout.follower_page_size",
                format!("must be between 1 and {max_page} (graph-svc's largest page)"),
            ));
        }
        if self.follow_backfill_tweets > 100 {
            return Err(ConfigError::invalid(
                "fanout.follow_backfill_tweets",
                "must be at most 100",
            ));
        }
        Ok(())
    }
}
