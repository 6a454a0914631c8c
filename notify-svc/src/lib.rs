//! notify-svc: notifications of mentions, replies, quotes, likes, retweets
//! and follows, grouped, counted and live, behind `warble.notify.v1.NotifyService`.
//!
//! It consumes the domain events in its own consumer group
//! ([`warble_mesh::consumer`]), turns each into store changes
//! ([`engine`]), and announces every new or grown group on
//! [`NOTIFICATIONS_STREAM`](warble_mesh::event_log::NOTIFICATIONS_STREAM),
//! which gateways tail for live subscriptions.
//!
//! - [`store`]: the [`store::NotificationStore`] trait (grouping, versions,
//!   read markers), its embedded (redb) and ScyllaDB implementations, and the
//!   conformance suite both pass.
//! - [`engine`]: events to changes, and the policy checks.
//! - [`service`]: request validation and the gRPC handlers.
//! - [`config`], [`error`]: settings, and the error type with its gRPC mapping.

#![forbid(unsafe_code)]

pub mod config;
pub mod engine;
pub mod error;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use warble_mesh::consumer::{self, Consumer, ConsumerSettings};
use warble_mesh::event_log::{EventLog, RedisEventLog};
use warble_mesh::grpc::{GrpcServer, TracedChannel, traced_channel};
use warble_mesh::scaffold::{Serve, Shutdown};
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::notify::v1::notify_service_server::NotifyServiceServer;

pub use config::NotifySvcConfig;
pub use engine::NotifyStats;
pub use error::NotifyError;

use crate::config::NotifyStoreBackend;
use crate::engine::NotifyEngine;
use crate::service::NotifyApi;
use crate::store::{EmbeddedNotificationStore, NotificationStore, ScyllaNotificationStore};

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.notify.v1.NotifyService";

/// A notification service ready to run: the consumer plus the gRPC API.
pub struct NotifySvc {
    log: Arc<dyn EventLog>,
    engine: Arc<NotifyEngine>,
    api: NotifyApi,
    stats: Arc<NotifyStats>,
    settings: ConsumerSettings,
}

impl NotifySvc {
    /// Wires the service to its store, the event log and graph-svc at the
    /// configured address.
    pub fn new(
        config: &NotifySvcConfig,
        store: Arc<dyn NotificationStore>,
        log: Arc<dyn EventLog>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let tls = config.server.mesh_tls()?;
        Ok(Self::with_channel(
            config,
            store,
            log,
            traced_channel(&config.graph_service_addr, timeout, tls.as_ref())
                .context("invalid graph_service_addr")?,
        ))
    }

    /// Like [`NotifySvc::new`], calling graph-svc through `graph` (the
    /// single-process stack passes an in-process channel).
    pub fn with_channel(
        config: &NotifySvcConfig,
        store: Arc<dyn NotificationStore>,
        log: Arc<dyn EventLog>,
        graph: TracedChannel,
    ) -> Self {
        let stats = Arc::new(NotifyStats::default());
        let engine = NotifyEngine::new(
            store.clone(),
            GraphServiceClient::new(graph),
            log.clone(),
            stats.clone(),
        );
        let settings = ConsumerSettings::from(&config.consumer);
        let api = NotifyApi {
            store,
            log: log.clone(),
            stats: stats.clone(),
            group: settings.group.clone(),
            partitions: settings.partitions,
            workers: settings.workers as u32,
        };
        Self {
            log,
            engine: Arc::new(engine),
            api,
            stats,
            settings,
        }
    }

    /// The live counters (also served by GetStatus).
    pub fn stats(&self) -> Arc<NotifyStats> {
        self.stats.clone()
    }

    /// The server (not yet serving): consumes events and serves
    /// NotifyService; on shutdown it stops reading, finishes in-flight
    /// events and drains, each within `drain_timeout`.
    pub fn into_server(self, drain_timeout: Duration) -> NotifyServer {
        NotifyServer {
            grpc: GrpcServer::new(drain_timeout)
                .add_service(NotifyServiceServer::new(self.api.clone())),
            service: self,
            drain_timeout,
        }
    }
}

/// A built notify-svc ([`NotifySvc::into_server`]).
pub struct NotifyServer {
    service: NotifySvc,
    grpc: GrpcServer,
    drain_timeout: Duration,
}

impl NotifyServer {
    /// Applies the `server.*` section: reflection, and mutual TLS with
    /// its peer rules when `server.tls.enabled`.
    pub fn with_server_config(
        mut self,
        config: &warble_mesh::grpc::ServerConfig,
    ) -> Result<Self, warble_mesh::config::ConfigError> {
        self.grpc = self.grpc.with_server_config(config)?;
        Ok(self)
    }

    /// A channel into this server's routes without a network hop (the
    /// single-process stack's gateway calls it this way).
    pub fn local_channel(&self, request_timeout: Duration) -> warble_mesh::grpc::MeshChannel {
        self.grpc.local_channel(request_timeout)
    }
}

impl Serve for NotifyServer {
    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            service,
            grpc,
            drain_timeout,
        } = self;
        let consumer = Consumer {
            log: service.log,
            handler: service.engine,
            counters: service.stats.consumer.clone(),
            settings: service.settings,
        };
        consumer::serve_while_consuming(grpc, listener, shutdown, drain_timeout, consumer).await
    }
}

/// Opens the configured notification store: redb in `data_dir`, or
/// ScyllaDB (checking it answers and creating its tables).
pub async fn open_store(config: &NotifySvcConfig) -> anyhow::Result<Arc<dyn NotificationStore>> {
    Ok(match config.store.backend {
        NotifyStoreBackend::Embedded => {
            let database = warble_mesh::embedded::open_shared(&config.data_dir)?;
            Arc::new(
                EmbeddedNotificationStore::open(database)
                    .context("cannot open the notification store")?,
            )
        }
        NotifyStoreBackend::Scylla => {
            let scylla = &config.store.scylla;
            Arc::new(
                ScyllaNotificationStore::connect(scylla)
                    .await
                    .with_context(|| {
                        format!(
                            "notification store unavailable: ScyllaDB at {} (keyspace `{}`)",
                            scylla.node_list().join(","),
                            scylla.keyspace
                        )
                    })?,
            )
        }
    })
}

/// Runs notify-svc as its own process until `shutdown` resolves: opens the
/// store, connects the Redis event stream (checking it answers), binds,
/// consumes and serves.
pub async fn run(config: NotifySvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let log: Arc<dyn EventLog> = Arc::new(
        RedisEventLog::connect(&config.redis)
            .await
            .context("event stream (redis.*)")?,
    );
    let service = NotifySvc::new(&config, store, log)?;
    let server = service
        .into_server(config.server.drain_timeout())
        .with_server_config(&config.server)?;
    warble_mesh::scaffold::serve_on(config.server.listen_addr, server, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::server::NamedService as _;

    #[test]
    fn service_name_matches_the_contract() {
        assert_eq!(
            SERVICE_NAME,
            NotifyServiceServer::<service::NotifyApi>::NAME
        );
        assert!(warble_proto::SERVICE_NAMES.contains(&SERVICE_NAME));
    }
}
