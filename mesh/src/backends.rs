//! Config sections for the production backends, shared so every service
//! names them the same way (and the Helm chart can set them uniformly):
//! `redis.*` for the timeline cache and the event log on Streams,
//! `store.scylla.*` for tweets, `store.neo4j.*` for the graph.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::secret::Secret;

/// Where a service's domain events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EventsBackend {
    /// The embedded event log in the service's data directory (single process).
    #[default]
    Embedded,
    /// Redis Streams, fed from the store's transactional outbox.
    Redis,
}

/// Single Redis node or Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One node (optionally with replicas behind a proxy): `redis.url`.
    #[default]
    Single,
    /// Redis Cluster: `redis.cluster_nodes` are the seed nodes.
    Cluster,
}

/// The `redis.*` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `single` or `cluster`.
    pub mode: RedisMode,
    /// Single node: `redis://host:6379/0` (or `rediss://` for TLS).
    pub url: String,
    /// Cluster: comma-separated seed node URLs, e.g. `redis://a:6379,redis://b:6379`.
    pub cluster_nodes: String,
    /// Password (AUTH); empty for none. Overrides a password in the URLs.
    pub password: Secret,
    /// Milliseconds to wait for a connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds to wait for a reply before failing the call.
    pub response_timeout_ms: u64,
    /// At start, where this Redis holds durable data (the event log,
    /// media-svc's metadata; not the timeline cache, which can be rebuilt):
    /// what to do when the server would lose acknowledged writes, i.e.
    /// append-only persistence is off or `maxmemory-policy` evicts keys.
    /// `warn` logs an error naming the setting, `refuse` stops the start
    /// with it, `off` skips the check.
    pub durability_check: DurabilityCheck,
    /// Where this Redis holds the event streams: hours an entry is kept
    /// even when a consumer group has not acknowledged it, so a stopped or
    /// stuck consumer cannot fill the server (which refuses writes when
    /// full, with `noeviction`). Trimming past a group's unacknowledged
    /// entries is logged as an error; search-svc notices and rebuilds. 0
    /// keeps entries until every group has acknowledged them. Streams
    /// without consumer groups (dead letters) keep their own retention.
    pub stream_retention_hours: u32,
}

/// See [`RedisConfig::durability_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityCheck {
    /// Skip the check (a managed Redis whose settings are known good).
    Off,
    /// Log an error per setting that loses writes, and start anyway.
    #[default]
    Warn,
    /// Refuse to start, naming the settings.
    Refuse,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            mode: RedisMode::Single,
            url: "redis://127.0.0.1:6379/0".into(),
            cluster_nodes: String::new(),
            password: Secret::default(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 2_000,
            durability_check: DurabilityCheck::default(),
            stream_retention_hours: 168,
        }
    }
}

impl RedisConfig {
    /// The cluster seed nodes, trimmed, empty entries dropped.
    pub fn cluster_node_list(&self) -> Vec<String> {
        self.cluster_nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Validates the section; `prefix` is where it sits in the service's config.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let redis_url = |url: &str| url.starts_with("redis://") || url.starts_with("rediss://");
        match self.mode {
            RedisMode::Single if !redis_url(&self.url) => Err(ConfigError::invalid(
                &format!("{prefix}.url"),
                "must be a redis:// or rediss:// URL",
            )),
            RedisMode::Cluster if self.cluster_node_list().is_empty() => Err(ConfigError::invalid(
                &format!("{prefix}.cluster_nodes"),
                "cluster mode needs at least one seed node URL",
            )),
            RedisMode::Cluster if !self.cluster_node_list().iter().all(|node| redis_url(node)) => {
                Err(ConfigError::invalid(
                    &format!("{prefix}.cluster_nodes"),
                    "every node must be a redis:// URL",
                ))
            }
            _ if self.stream_retention_hours > 87_600 => Err(ConfigError::invalid(
                &format!("{prefix}.stream_retention_hours"),
                "must be at most 87600 (ten years); 0 keeps entries until acknowledged",
            )),
            _ if self.connect_timeout_ms == 0 || self.response_timeout_ms == 0 => {
                Err(ConfigError::invalid(
                    &format!("{prefix}.response_timeout_ms"),
                    "timeouts must be at least 1 ms",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The `events.*` section of services that publish events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EventsConfig {
    /// `embedded` or `redis`.
    pub backend: EventsBackend,
    /// Redis connection, used when `backend = "redis"`.
    pub redis: RedisConfig,
}

impl EventsConfig {
    /// Validates the section; `prefix` is where it sits in the service's config.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        match self.backend {
            EventsBackend::Embedded => Ok(()),
            EventsBackend::Redis => self.redis.validate(&format!("{prefix}.redis")),
        }
    }
}

/// The `store.scylla.*` section (tweet-svc's production store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScyllaConfig {
    /// Comma-separated contact points, `host:port`.
    pub nodes: String,
    /// Keyspace holding Warble's tables (created if missing).
    pub keyspace: String,
    /// Replication factor used when creating the keyspace (NetworkTopologyStrategy).
    pub replication_factor: u32,
    /// The local datacenter, for token-aware, DC-aware routing and LOCAL_QUORUM.
    pub local_datacenter: String,
    /// Username; empty for none.
    pub username: String,
    /// Password; empty for none.
    pub password: Secret,
    /// Milliseconds before a request times out.
    pub request_timeout_ms: u64,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: "127.0.0.1:9042".into(),
            keyspace: "warble".into(),
            replication_factor: 3,
            local_datacenter: "datacenter1".into(),
            username: String::new(),
            password: Secret::default(),
            request_timeout_ms: 5_000,
        }
    }
}

impl ScyllaConfig {
    /// The contact points, trimmed, empty entries dropped.
    pub fn node_list(&self) -> Vec<String> {
        self.nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Validates the section; `prefix` is where it sits in the service's config.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.node_list().is_empty() {
            return Err(ConfigError::invalid(
                &format!("{prefix}.nodes"),
                "needs at least one host:port",
            ));
        }
        let valid_identifier = !self.keyspace.is_empty()
            && self.keyspace.len() <= 48
            && self
                .keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_identifier {
            return Err(ConfigError::invalid(
                &format!("{prefix}.keyspace"),
                "must be 1 to 48 of [A-Za-z0-9_]",
            ));
        }
        if self.replication_factor == 0 {
            return Err(ConfigError::invalid(
                &format!("{prefix}.replication_factor"),
                "must be at least 1",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                &format!("{prefix}.request_timeout_ms"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The `store.neo4j.*` section (graph-svc's production store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Neo4jConfig {
    /// Bolt URI, e.g. `bolt://neo4j:7687` (Bolt 4.4; Neo4j 4.4 and 5.x accept it).
    pub uri: String,
    /// Username.
    pub user: String,
    /// Password.
    pub password: Secret,
    /// Database name; empty for the server's default.
    pub database: String,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for Neo4jConfig {
    fn default() -> Self {
        Self {
            uri: "bolt://127.0.0.1:7687".into(),
            user: "neo4j".into(),
            password: Secret::default(),
            database: String::new(),
            max_connections: 16,
        }
    }
}

impl Neo4jConfig {
    /// Validates the section; `prefix` is where it sits in the service's config.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let schemes = [
            "bolt://",
            "bolt+s://",
            "bolt+ssc://",
            "neo4j://",
            "neo4j+s://",
            "neo4j+ssc://",
        ];
        if !schemes.iter().any(|scheme| self.uri.starts_with(scheme)) {
            return Err(ConfigError::invalid(
                &format!("{prefix}.uri"),
                "must be a bolt:// or neo4j:// URI",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                &format!("{prefix}.max_connections"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        RedisConfig::default().validate("redis").unwrap();
        ScyllaConfig::default().validate("store.scylla").unwrap();
        Neo4jConfig::default().validate("store.neo4j").unwrap();
        let cluster = RedisConfig {
            mode: RedisMode::Cluster,
            ..RedisConfig::default()
        };
        assert!(
            cluster
                .validate("redis")
                .unwrap_err()
                .to_string()
                .contains("`redis.cluster_nodes`")
        );
        let cluster = RedisConfig {
            mode: RedisMode::Cluster,
            cluster_nodes: " redis://a:1, ,redis://b:2".into(),
            ..RedisConfig::default()
        };
        assert_eq!(cluster.cluster_node_list(), ["redis://a:1", "redis://b:2"]);
        cluster.validate("redis").unwrap();
        let scylla = ScyllaConfig {
            keyspace: "bad-name".into(),
            ..ScyllaConfig::default()
        };
        assert!(
            scylla
                .validate("store.scylla")
                .unwrap_err()
                .to_string()
                .contains("keyspace")
        );
        let neo4j = Neo4jConfig {
            uri: "http://x".into(),
            ..Neo4jConfig::default()
        };
        assert!(
            neo4j
                .validate("store.neo4j")
                .unwrap_err()
                .to_string()
                .contains("`store.neo4j.uri`")
        );
    }
}
