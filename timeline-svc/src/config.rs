//! timeline-svc's configuration (see the README's config reference).

use serde::{Deserialize, Serialize};
use warble_mesh::backends::RedisConfig;
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::grpc::ServerConfig;
use warble_mesh::telemetry::TelemetryConfig;

/// Which timeline cache implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-process; only usable when every service runs in one process (`warble dev`).
    Embedded,
    /// Redis sorted sets: required for separate processes.
    Redis,
}

/// timeline-svc's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimelineSvcConfig {
    /// gRPC server.
    pub server: ServerConfig,
    /// tweet-svc address (`host:port`), for rebuilds and the pull path.
    pub tweet_service_addr: String,
    /// graph-svc address (`host:port`), for following lists.
    pub graph_service_addr: String,
    /// Deadline of each call to tweet-svc or graph-svc, in milliseconds.
    pub request_timeout_ms: u64,
    /// Timeline cache backend: `embedded` or `redis`.
    pub backend: Backend,
    /// Redis connection, used when `backend = "redis"`.
    pub redis: RedisConfig,
    /// Authors with at least this many followers are merged at read time
    /// instead of pushed; must equal fanout-svc's `fanout.celebrity_threshold`.
    pub celebrity_threshold: u64,
    /// Days after its last read that a cached home timeline expires (the
    /// next read rebuilds it); must equal fanout-svc's
    /// `fanout.inactive_after_days`, after which fan-out stops pushing.
    pub inactive_after_days: u64,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`): home
/// timelines are private, so only the gateway, which has checked the
/// user's token, reads them; health and reflection stay open to mesh peers.
pub const DEFAULT_ALLOW_PEERS: &str = "warble.timeline.v1.TimelineService/*=gateway; *=*";

impl Default for TimelineSvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(50053).allowing(DEFAULT_ALLOW_PEERS),
            tweet_service_addr: "127.0.0.1:50051".into(),
            graph_service_addr: "127.0.0.1:50052".into(),
            request_timeout_ms: 5_000,
            backend: Backend::Redis,
            redis: RedisConfig::default(),
            celebrity_threshold: 10_000,
            inactive_after_days: 30,
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for TimelineSvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for TimelineSvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        match self.backend {
            // A standalone process cannot share an in-memory cache.
            Backend::Embedded => {
                return Err(warble_mesh::config::refuse_embedded_timeline_cache(
                    "fanout-svc",
                ));
            }
            Backend::Redis => self.redis.validate("redis")?,
        }
        warble_mesh::config::validate_downstreams(
            &[
                ("tweet_service_addr", self.tweet_service_addr.as_str()),
                ("graph_service_addr", self.graph_service_addr.as_str()),
            ],
            self.request_timeout_ms,
        )?;
        if self.celebrity_threshold == 0 {
            return Err(ConfigError::invalid(
                "celebrity_threshold",
                "must be at least 1",
            ));
        }
        if !(1..=3650).contains(&self.inactive_after_days) {
            return Err(ConfigError::invalid(
                "inactive_after_days",
                "must be between 1 and 3650",
            ));
        }
        Ok(())
    }
}
