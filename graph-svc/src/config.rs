//! The graph service's configuration: defaults here < TOML file < `WARBLE_*`
//! env vars (see [`warble_mesh::config`]). Every field below is a config key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use warble_mesh::backends::{EventsConfig, Neo4jConfig};
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::grpc::ServerConfig;
use warble_mesh::snowflake::MAX_WORKER_ID;
use warble_mesh::telemetry::TelemetryConfig;

/// Default gRPC port; each Warble service has its own so the dev stack can
/// run them side by side.
pub const DEFAULT_PORT: u16 = 50052;

/// Configuration of the `graph-svc` process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphSvcConfig {
    /// The gRPC listener and its drain deadline (`server.listen_addr`,
    /// `server.drain_timeout_secs`). Listens on `0.0.0.0:50052` by default.
    pub server: ServerConfig,
    /// Directory of the embedded database holding users, follows and the
    /// events they publish. Created when missing. Must not be shared with
    /// another process: the database file is locked while open.
    pub data_dir: PathBuf,
    /// Snowflake worker id (0 to 1023) stamped into every id this process
    /// issues. Must be unique among processes issuing ids at the same time,
    /// otherwise two of them can issue the same id.
    pub worker_id: u32,
    /// Where users and follows are stored (`store.backend`: `embedded` or `neo4j`).
    pub store: GraphStoreConfig,
    /// Where domain events are published (`events.backend`: `embedded` or `redis`).
    pub events: EventsConfig,
    /// Logging and trace export (`telemetry.log_format`, `telemetry.log_level`,
    /// `telemetry.otlp_endpoint`, `telemetry.service_name`).
    pub telemetry: TelemetryConfig,
}

/// Which graph store implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GraphStoreBackend {
    /// redb in `data_dir` (the default; single process).
    #[default]
    Embedded,
    /// Neo4j over Bolt (`store.neo4j.*`).
    Neo4j,
}

/// The `store.*` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GraphStoreConfig {
    /// `embedded` or `neo4j`.
    pub backend: GraphStoreBackend,
    /// Neo4j connection, used when `backend = "neo4j"`.
    pub neo4j: Neo4jConfig,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`): the
/// user-facing writes and the private block and mute lists only through
/// the gateway, which has checked the user's token; bulk loads and
/// verification only by an operator's `admin` certificate; reads by any
/// mesh peer.
pub const DEFAULT_ALLOW_PEERS: &str = concat!(
    "warble.graph.v1.GraphService/CreateUser=gateway; ",
    "warble.graph.v1.GraphService/RegisterUser=gateway; ",
    "warble.graph.v1.GraphService/Follow=gateway; ",
    "warble.graph.v1.GraphService/Unfollow=gateway; ",
    "warble.graph.v1.GraphService/UpdateProfile=gateway; ",
    "warble.graph.v1.GraphService/Block=gateway; ",
    "warble.graph.v1.GraphService/Unblock=gateway; ",
    "warble.graph.v1.GraphService/Mute=gateway; ",
    "warble.graph.v1.GraphService/Unmute=gateway; ",
    "warble.graph.v1.GraphService/ListBlocked=gateway; ",
    "warble.graph.v1.GraphService/ListMuted=gateway; ",
    "warble.graph.v1.GraphService/CreateUsers=admin; ",
    "warble.graph.v1.GraphService/FollowMany=admin; ",
    "warble.graph.v1.GraphService/SetVerified=admin; ",
    "*=*"
);

impl Default for GraphSvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT).allowing(DEFAULT_ALLOW_PEERS),
            data_dir: PathBuf::from("./data/graph-svc"),
            worker_id: 2,
            store: GraphStoreConfig::default(),
            events: EventsConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for GraphSvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for GraphSvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.events.validate("events")?;
        if self.store.backend == GraphStoreBackend::Neo4j {
            self.store.neo4j.validate("store.neo4j")?;
        }
        if self.worker_id > u32::from(MAX_WORKER_ID) {
            return Err(ConfigError::invalid(
                "worker_id",
                format!("must be at most {MAX_WORKER_ID}"),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        GraphSvcConfig::default().validate().unwrap();
    }

    #[test]
    fn worker_id_out_of_range_names_the_key() {
        let config = GraphSvcConfig {
            worker_id: 1024,
            ..GraphSvcConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("`worker_id`"), "{error}");
    }
}
