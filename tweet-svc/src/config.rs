//! tweet-svc's configuration: defaults here, then an optional TOML file, then
//! `WARBLE_*` environment variables (see [`warble_mesh::config`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use warble_mesh::backends::{EventsConfig, ScyllaConfig};
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::grpc::ServerConfig;
use warble_mesh::snowflake::MAX_WORKER_ID;
use warble_mesh::telemetry::TelemetryConfig;

/// Shortest accepted idempotency window: a client retry loop with back-off
/// needs at least this long to be safe.
const MIN_IDEMPOTENCY_TTL_SECS: u64 = 60;

/// Every setting tweet-svc reads. Keys are listed by `tweet-svc --print-config-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TweetSvcConfig {
    /// Where the gRPC server listens and how long it drains on shutdown
    /// (`server.listen_addr`, `server.drain_timeout_secs`). Default port 50051.
    pub server: ServerConfig,
    /// Directory of the embedded database holding tweets, engagement,
    /// idempotency keys and the event log. Must survive restarts (a
    /// persistent volume in Kubernetes), or tweets and keys are lost.
    pub data_dir: PathBuf,
    /// Snowflake worker id stamped into every id this process issues, 0 to
    /// 1023. Two processes issuing ids at the same time must never share
    /// one, or ids can collide.
    pub worker_id: u32,
    /// How long, in seconds, an idempotency key keeps returning the tweet it
    /// created; after that the key may be reused. At least 60.
    pub idempotency_ttl_secs: u64,
    /// Where tweets are stored (`store.backend`: `embedded` or `scylla`).
    pub store: TweetStoreConfig,
    /// Where domain events are published (`events.backend`: `embedded` or `redis`).
    pub events: EventsConfig,
    /// Log format and level, and optional OTLP span export (`telemetry.*`).
    pub telemetry: TelemetryConfig,
}

/// Which tweet store implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TweetStoreBackend {
    /// redb in `data_dir` (the default; single process).
    #[default]
    Embedded,
    /// ScyllaDB (`store.scylla.*`).
    Scylla,
}

/// The `store.*` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TweetStoreConfig {
    /// `embedded` or `scylla`.
    pub backend: TweetStoreBackend,
    /// ScyllaDB connection, used when `backend = "scylla"`.
    pub scylla: ScyllaConfig,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`): the
/// user-facing writes and the private bookmark list only through the
/// gateway, which has checked the user's token; bulk loads only by an
/// operator's `admin` certificate; reads by any mesh peer.
pub const DEFAULT_ALLOW_PEERS: &str = concat!(
    "warble.tweet.v1.TweetService/CreateTweet=gateway; ",
    "warble.tweet.v1.TweetService/DeleteTweet=gateway; ",
    "warble.tweet.v1.TweetService/LikeTweet=gateway; ",
    "warble.tweet.v1.TweetService/UnlikeTweet=gateway; ",
    "warble.tweet.v1.TweetService/Retweet=gateway; ",
    "warble.tweet.v1.TweetService/UndoRetweet=gateway; ",
    "warble.tweet.v1.TweetService/Bookmark=gateway; ",
    "warble.tweet.v1.TweetService/Unbookmark=gateway; ",
    "warble.tweet.v1.TweetService/ListBookmarks=gateway; ",
    "warble.tweet.v1.TweetService/CreateTweets=admin; ",
    "*=*"
);

impl Default for TweetSvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(50051).allowing(DEFAULT_ALLOW_PEERS),
            data_dir: PathBuf::from("./data/tweet-svc"),
            worker_id: 1,
            idempotency_ttl_secs: 86_400,
            store: TweetStoreConfig::default(),
            events: EventsConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for TweetSvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for TweetSvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.events.validate("events")?;
        if self.store.backend == TweetStoreBackend::Scylla {
            self.store.scylla.validate("store.scylla")?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        if self.worker_id > u32::from(MAX_WORKER_ID) {
            return Err(ConfigError::invalid(
                "worker_id",
                format!("must be at most {MAX_WORKER_ID}"),
            ));
        }
        if self.idempotency_ttl_secs < MIN_IDEMPOTENCY_TTL_SECS {
            return Err(ConfigError::invalid(
                "idempotency_ttl_secs",
                format!("must be at least {MIN_IDEMPOTENCY_TTL_SECS}"),
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
        TweetSvcConfig::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let config = TweetSvcConfig {
            worker_id: 1024,
            ..TweetSvcConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("`worker_id`")
        );
        let config = TweetSvcConfig {
            idempotency_ttl_secs: 59,
            ..TweetSvcConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("`idempotency_ttl_secs`"), "{error}");
    }
}
