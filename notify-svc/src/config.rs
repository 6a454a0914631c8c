//! notify-svc's configuration (see the README's config reference).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use warble_mesh::backends::{RedisConfig, ScyllaConfig};
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::grpc::ServerConfig;
use warble_mesh::telemetry::TelemetryConfig;

pub use warble_mesh::consumer::ConsumerConfig;

/// notify-svc's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifySvcConfig {
    /// gRPC server (NotifyService, health, reflection).
    pub server: ServerConfig,
    /// Where the embedded store keeps its database (`store.backend = "embedded"`).
    pub data_dir: PathBuf,
    /// graph-svc address (`host:port`): mentioned usernames, and the
    /// follow and account-age checks of notification policies.
    pub graph_service_addr: String,
    /// Deadline of each call to graph-svc, in milliseconds.
    pub request_timeout_ms: u64,
    /// Where notifications are kept.
    pub store: NotifyStoreConfig,
    /// The event stream notify-svc consumes, and publishes live
    /// notifications to: Redis Streams (a separate process reads the other
    /// services' events there; the single-process stack passes its own log).
    pub redis: RedisConfig,
    /// How events are consumed.
    pub consumer: ConsumerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// Which notification store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NotifyStoreBackend {
    /// redb in `data_dir` (the default).
    #[default]
    Embedded,
    /// ScyllaDB (`store.scylla.*`).
    Scylla,
}

/// `store.*`: the notification store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NotifyStoreConfig {
    /// `embedded` or `scylla`.
    pub backend: NotifyStoreBackend,
    /// ScyllaDB connection, used when `backend = "scylla"`.
    pub scylla: ScyllaConfig,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`): a
/// user's notifications and settings only through the gateway, which has
/// checked the user's token; status, health and reflection to any mesh peer.
pub const DEFAULT_ALLOW_PEERS: &str = concat!(
    "warble.notify.v1.NotifyService/*=gateway; ",
    "warble.notify.v1.NotifyService/GetStatus=*; ",
    "*=*"
);

impl Default for NotifySvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(50055).allowing(DEFAULT_ALLOW_PEERS),
            data_dir: PathBuf::from("./data/notify-svc"),
            graph_service_addr: "127.0.0.1:50052".into(),
            request_timeout_ms: 5_000,
            store: NotifyStoreConfig::default(),
            redis: RedisConfig::default(),
            consumer: ConsumerConfig::for_group("notify"),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for NotifySvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for NotifySvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.redis.validate("redis")?;
        if self.store.backend == NotifyStoreBackend::Scylla {
            self.store.scylla.validate("store.scylla")?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        warble_mesh::config::validate_downstreams(
            &[("graph_service_addr", self.graph_service_addr.as_str())],
            self.request_timeout_ms,
        )?;
        self.consumer.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        NotifySvcConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = NotifySvcConfig::default();
        config.consumer.workers = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("consumer.workers"), "{error}");
        let config = NotifySvcConfig {
            graph_service_addr: " ".into(),
            ..NotifySvcConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("graph_service_addr"), "{error}");
    }
}
