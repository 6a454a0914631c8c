//! media-svc: images and videos for tweets and avatars, behind
//! `warble.media.v1.MediaService`.
//!
//! Files go to object storage through `object_store` ([`blobs`]): a
//! directory under the data dir in `warble dev`, an S3-compatible bucket in
//! production. Metadata goes to its own store ([`store`]): redb by default,
//! Redis in production. Uploads stream in over gRPC; images are decoded and
//! re-encoded without their metadata, with a preview and a blurhash
//! ([`process`]); videos are stored as uploaded.
//!
//! The domain events attach media to tweets and schedule a deleted tweet's
//! media for deletion ([`events`]); a sweeper deletes what nobody attached
//! in time and what is past its grace period ([`lifecycle`]).
//!
//! - [`service`]: request validation and the gRPC handlers.
//! - [`config`], [`error`]: settings, and the error type with its gRPC mapping.

#![forbid(unsafe_code)]

pub mod blobs;
pub mod config;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod process;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use warble_mesh::consumer::{self, Consumer, ConsumerSettings};
use warble_mesh::event_log::{EventLog, RedisEventLog};
use warble_mesh::grpc::GrpcServer;
use warble_mesh::redis_client::RedisClient;
use warble_mesh::scaffold::{Serve, Shutdown};
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_proto::media::v1::media_service_server::MediaServiceServer;

pub use blobs::Blobs;
pub use config::MediaSvcConfig;
pub use error::MediaError;
pub use service::MediaStats;

use crate::config::MediaStoreBackend;
use crate::events::MediaEvents;
use crate::lifecycle::Sweeper;
use crate::service::MediaApi;
use crate::store::{EmbeddedMediaStore, MediaStore, RedisMediaStore};

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.media.v1.MediaService";

/// Largest gRPC message media-svc accepts or sends: a chunk plus framing.
const MAX_MESSAGE_BYTES: usize = warble_proto::limits::media::MAX_CHUNK_BYTES + 64 * 1024;

/// A media service ready to run: the API, the event consumer and the sweeper.
pub struct MediaSvc {
    api: MediaApi,
    log: Arc<dyn EventLog>,
    events: Arc<MediaEvents>,
    sweeper: Sweeper,
    sweep_interval: Duration,
    settings: ConsumerSettings,
}

impl MediaSvc {
    /// Wires the service to its metadata store, object store and event log.
    pub fn new(
        config: &MediaSvcConfig,
        store: Arc<dyn MediaStore>,
        blobs: Blobs,
        log: Arc<dyn EventLog>,
    ) -> anyhow::Result<Self> {
        let ids = SnowflakeGenerator::new(config.worker_id).context("invalid worker_id")?;
        let stats = Arc::new(MediaStats::default());
        let lifecycle = &config.lifecycle;
        let secs_to_ms = |secs: u64| i64::try_from(secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
        let api = MediaApi {
            store: store.clone(),
            blobs: blobs.clone(),
            ids: Arc::new(ids),
            stats: stats.clone(),
            limits: config.limits.clone(),
            urls: config.urls.clone(),
            unattached_ttl_ms: secs_to_ms(lifecycle.unattached_ttl_secs),
            claim_ttl_ms: secs_to_ms(lifecycle.claim_ttl_secs),
        };
        let events = MediaEvents {
            store: store.clone(),
            deleted_grace_ms: secs_to_ms(lifecycle.deleted_grace_secs),
        };
        let sweeper = Sweeper {
            store,
            blobs,
            stats,
            batch: lifecycle.sweep_batch as usize,
        };
        Ok(Self {
            api,
            log,
            events: Arc::new(events),
            sweeper,
            sweep_interval: Duration::from_millis(lifecycle.sweep_interval_ms),
            settings: ConsumerSettings::from(&config.consumer),
        })
    }

    /// The live counters (also served by GetStatus).
    pub fn stats(&self) -> Arc<MediaStats> {
        self.api.stats.clone()
    }

    /// The sweeper, to run a sweep by hand (tests, an operator's command).
    pub fn sweeper(&self) -> Sweeper {
        self.sweeper.clone()
    }

    /// The server (not yet serving): serves MediaService, consumes events
    /// and sweeps; on shutdown it stops reading and sweeping, finishes
    /// in-flight work and drains, each within `drain_timeout`.
    pub fn into_server(self, drain_timeout: Duration) -> MediaServer {
        let service = MediaServiceServer::new(self.api.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        MediaServer {
            grpc: GrpcServer::new(drain_timeout).add_service(service),
            service: self,
            drain_timeout,
        }
    }
}

/// A built media-svc ([`MediaSvc::into_server`]).
pub struct MediaServer {
    service: MediaSvc,
    grpc: GrpcServer,
    drain_timeout: Duration,
}

impl MediaServer {
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

impl Serve for MediaServer {
    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            service,
            grpc,
            drain_timeout,
        } = self;
        let (stop_sweeping, sweeping_stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(service.sweeper.run(service.sweep_interval, async move {
            let _ = sweeping_stopped.await;
        }));
        let consumer = Consumer {
            log: service.log,
            handler: service.events,
            counters: service.api.stats.consumer.clone(),
            settings: service.settings,
        };
        let served =
            consumer::serve_while_consuming(grpc, listener, shutdown, drain_timeout, consumer)
                .await;
        let _ = stop_sweeping.send(());
        if tokio::time::timeout(drain_timeout, sweeper).await.is_err() {
            tracing::warn!("the media sweeper did not stop within the drain deadline");
        }
        served
    }
}

/// Opens the configured metadata store: redb in `data_dir`, or Redis
/// (checking it answers).
pub async fn open_store(config: &MediaSvcConfig) -> anyhow::Result<Arc<dyn MediaStore>> {
    Ok(match config.store.backend {
        MediaStoreBackend::Embedded => {
            let database = warble_mesh::embedded::open_shared(&config.data_dir)?;
            Arc::new(EmbeddedMediaStore::open(database).context("cannot open the media store")?)
        }
        MediaStoreBackend::Redis => {
            let client = RedisClient::connect(&config.store.redis)
                .await
                .context("media store unavailable (store.redis.*)")?;
            client
                .check_durability(
                    config.store.redis.durability_check,
                    "media-svc's metadata",
                    "store.redis.durability_check",
                )
                .await?;
            Arc::new(RedisMediaStore::new(
                client,
                config.store.key_prefix.clone(),
            ))
        }
    })
}

/// Opens the configured object store (`blobs.*`).
pub fn open_blobs(config: &MediaSvcConfig) -> anyhow::Result<Blobs> {
    Blobs::open(&config.blobs, &config.data_dir.join("blobs")).context("object store (blobs.*)")
}

/// Runs media-svc as its own process until `shutdown` resolves: opens the
/// stores, connects the Redis event stream (checking it answers), binds,
/// consumes, sweeps and serves.
pub async fn run(config: MediaSvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let blobs = open_blobs(&config)?;
    let log: Arc<dyn EventLog> = Arc::new(
        RedisEventLog::connect(&config.redis)
            .await
            .context("event stream (redis.*)")?,
    );
    let server = MediaSvc::new(&config, store, blobs, log)?
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
        assert_eq!(SERVICE_NAME, MediaServiceServer::<service::MediaApi>::NAME);
        assert!(warble_proto::SERVICE_NAMES.contains(&SERVICE_NAME));
    }
}
