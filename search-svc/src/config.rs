//! search-svc's configuration (see the README's config reference).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use warble_mesh::backends::RedisConfig;
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::grpc::ServerConfig;
use warble_mesh::telemetry::TelemetryConfig;

/// search-svc's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchSvcConfig {
    /// gRPC server (SearchService, health, reflection).
    pub server: ServerConfig,
    /// Where the index lives (`<data_dir>/index`), and the embedded trend
    /// store when `trends.backend = "embedded"`. One per replica: a
    /// persistent volume in Kubernetes.
    pub data_dir: PathBuf,
    /// tweet-svc address (`host:port`): backfill scans, and the engagement
    /// counts TOP ranking reads.
    pub tweet_service_addr: String,
    /// graph-svc address (`host:port`): the users' backfill scan.
    pub graph_service_addr: String,
    /// Deadline of each call to tweet-svc and graph-svc, in milliseconds.
    pub request_timeout_ms: u64,
    /// The domain event stream (Redis Streams), and the trend store when
    /// `trends.backend = "redis"`.
    pub redis: RedisConfig,
    /// The index.
    pub index: IndexConfig,
    /// Trending hashtags.
    pub trends: TrendsConfig,
    /// How the stream's history is kept for replicas.
    pub retention: RetentionConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// `index.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexConfig {
    /// Memory tantivy may buffer before writing a segment, in MiB (at
    /// least 15 per writer thread).
    pub writer_heap_mb: u64,
    /// Indexing threads.
    pub writer_threads: u64,
    /// Most events applied per commit.
    pub batch_events: u64,
    /// This replica's name, unique among replicas: its pin in the stream.
    /// Empty takes `HOSTNAME` (a StatefulSet pod's name), else `search-0`.
    pub replica: String,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`):
/// search reads public data, so any mesh peer.
pub const DEFAULT_ALLOW_PEERS: &str = "*=*";

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            writer_heap_mb: 64,
            writer_threads: 1,
            batch_events: 2_048,
            replica: String::new(),
        }
    }
}

impl IndexConfig {
    /// The replica name in effect (see [`IndexConfig::replica`]).
    pub fn replica_name(&self) -> String {
        if !self.replica.trim().is_empty() {
            return self.replica.trim().to_owned();
        }
        std::env::var("HOSTNAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| "search-0".to_owned())
    }
}

/// Where tag uses are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrendsBackend {
    /// Redis HyperLogLogs (`redis.*`), shared by every replica (the default).
    #[default]
    Redis,
    /// redb in `data_dir`: one replica only (`warble dev` uses it).
    Embedded,
}

/// `trends.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrendsConfig {
    /// `redis` or `embedded`.
    pub backend: TrendsBackend,
    /// Prefix of the trend keys in Redis.
    pub key_prefix: String,
    /// How long a computed list of trends is served again, in milliseconds.
    pub cache_ms: u64,
}

impl Default for TrendsConfig {
    fn default() -> Self {
        Self {
            backend: TrendsBackend::Redis,
            key_prefix: "warble:trends:".into(),
            cache_ms: 5_000,
        }
    }
}

/// `retention.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// A replica not heard from for this many seconds is unpinned: the
    /// stream may be trimmed past it, and it rebuilds by backfill if it
    /// ever returns.
    pub replica_timeout_secs: u64,
    /// Redis hash where replicas record when they were last alive.
    pub registry_key: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            replica_timeout_secs: 86_400,
            registry_key: "warble:search:replicas".into(),
        }
    }
}

impl Default for SearchSvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(50056).allowing(DEFAULT_ALLOW_PEERS),
            data_dir: PathBuf::from("./data/search-svc"),
            tweet_service_addr: "127.0.0.1:50051".into(),
            graph_service_addr: "127.0.0.1:50052".into(),
            request_timeout_ms: 5_000,
            redis: RedisConfig::default(),
            index: IndexConfig::default(),
            trends: TrendsConfig::default(),
            retention: RetentionConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for SearchSvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for SearchSvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.redis.validate("redis")?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        warble_mesh::config::validate_downstreams(
            &[
                ("tweet_service_addr", self.tweet_service_addr.as_str()),
                ("graph_service_addr", self.graph_service_addr.as_str()),
            ],
            self.request_timeout_ms,
        )?;
        if !(1..=16).contains(&self.index.writer_threads) {
            return Err(ConfigError::invalid(
                "index.writer_threads",
                "must be between 1 and 16",
            ));
        }
        if self.index.writer_heap_mb < 15 * self.index.writer_threads
            || self.index.writer_heap_mb > 16_384
        {
            return Err(ConfigError::invalid(
                "index.writer_heap_mb",
                "must be at least 15 per writer thread, and at most 16384",
            ));
        }
        if !(1..=100_000).contains(&self.index.batch_events) {
            return Err(ConfigError::invalid(
                "index.batch_events",
                "must be between 1 and 100000",
            ));
        }
        if self.index.replica.len() > 200 || self.index.replica.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "index.replica",
                "at most 200 characters, no whitespace",
            ));
        }
        if self.trends.key_prefix.is_empty() {
            return Err(ConfigError::invalid(
                "trends.key_prefix",
                "must not be empty",
            ));
        }
        if self.trends.cache_ms > 3_600_000 {
            return Err(ConfigError::invalid(
                "trends.cache_ms",
                "at most 3600000 (an hour)",
            ));
        }
        if self.retention.replica_timeout_secs < 60 {
            return Err(ConfigError::invalid(
                "retention.replica_timeout_secs",
                "must be at least 60",
            ));
        }
        if self.retention.registry_key.is_empty() {
            return Err(ConfigError::invalid(
                "retention.registry_key",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        SearchSvcConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = SearchSvcConfig::default();
        config.index.writer_heap_mb = 10;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("index.writer_heap_mb"), "{error}");
        let config = SearchSvcConfig {
            tweet_service_addr: " ".into(),
            ..SearchSvcConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("tweet_service_addr"), "{error}");
        let mut config = SearchSvcConfig::default();
        config.retention.replica_timeout_secs = 1;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("retention.replica_timeout_secs"), "{error}");
    }

    #[test]
    fn an_explicit_replica_name_wins() {
        let index = IndexConfig {
            replica: " search-7 ".into(),
            ..IndexConfig::default()
        };
        assert_eq!(index.replica_name(), "search-7");
    }
}
