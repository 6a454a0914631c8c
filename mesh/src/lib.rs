//! The runtime every Warble service shares.
//!
//! - [`backends`]: config sections of the production backends (Redis, ScyllaDB, Neo4j).
//! - [`config`]: layered configuration (defaults < file < `WARBLE_*` env vars), validated at start.
//! - [`telemetry`]: tracing subscriber, optional OTLP export, W3C trace context across gRPC hops.
//! - [`grpc`]: server bootstrap on an already-bound listener with health, reflection and graceful drain.
//! - [`tls`]: mutual TLS between services and the per-RPC peer allow-list.
//! - [`scaffold`]: the one server shape ([`scaffold::Serve`]) and the one `main` every binary uses.
//! - [`secret`]: the [`secret::Secret`] type for passwords and keys, and credential redaction in URLs.
//! - [`shutdown`]: the SIGTERM/SIGINT future servers drain on.
//! - [`snowflake`]: time-ordered 64-bit ids.
//! - [`status`]: the error-to-`tonic::Status` convention.
//! - [`cursor`]: opaque, versioned page cursors.
//! - [`consumer`]: consuming the event log in a group: per-key order, retries, dead letters, reclaim.
//! - [`event_log`]: the durable event log trait, its embedded implementation and Redis Streams.
//! - [`overload`]: the in-flight call limit that sheds excess load early.
//! - [`failpoint`]: exact crash points for the kill -9 tests (inert unless armed by env).
//! - [`outbox`]: the transactional outbox and the relay that publishes it idempotently.
//! - [`redis_client`]: the Redis connection (single node or cluster) the Redis adapters share.
//! - [`embedded`]: the embedded database file the single-process stack keeps its data in.

#![forbid(unsafe_code)]

pub mod backends;
pub mod config;
pub mod consumer;
pub mod cursor;
pub mod embedded;
pub mod event_log;
pub mod failpoint;
pub mod grpc;
pub mod metrics;
pub mod outbox;
pub mod overload;
pub mod redis_client;
pub mod rpc_metrics;
pub mod scaffold;
pub mod secret;
pub mod shutdown;
pub mod snowflake;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod tls;
