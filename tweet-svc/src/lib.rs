//! tweet-svc: tweets, likes, retweets, bookmarks, threads and their counts,
//! behind `warble.tweet.v1.TweetService`.
//!
//! - [`config`]: the service's settings.
//! - [`text`]: tweet text rules, hashtag and mention extraction.
//! - [`store`]: the [`store::TweetStore`] trait, its embedded implementation
//!   (which publishes `TweetCreated`, `TweetDeleted`, `Liked`, `Unliked`,
//!   `Retweeted` and `RetweetUndone` in the same transaction as the write),
//!   its ScyllaDB implementation (which writes them to a transactional
//!   outbox in a batch with the write), and the conformance suite both pass.
//! - [`service`]: request validation and the gRPC handlers.
//! - [`error`]: the service's error type and its gRPC status mapping.
//!
//! [`TweetSvc`] ties them together; the `tweet-svc` binary is a thin wrapper
//! around it, and tests serve it on a port-0 listener.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod service;
pub mod store;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use warble_mesh::event_log::EmbeddedEventLog;
use warble_mesh::grpc::GrpcServer;
use warble_mesh::outbox::Outbox;
use warble_mesh::scaffold::Shutdown;
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_proto::tweet::v1::tweet_service_server::TweetServiceServer;

pub use config::TweetSvcConfig;
pub use error::TweetError;
pub use service::TweetApi;
use store::{EmbeddedTweetStore, ScyllaTweetStore, TweetStore};

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.tweet.v1.TweetService";

/// A ready-to-serve tweet service: a store plus an id generator.
#[derive(Debug, Clone)]
pub struct TweetSvc {
    api: TweetApi,
}

impl TweetSvc {
    /// Opens the embedded store in `config.data_dir` with its own handle on
    /// the event log there. Blocks briefly on disk I/O; call it at start-up.
    pub fn open_embedded(config: &TweetSvcConfig) -> anyhow::Result<Self> {
        let database = warble_mesh::embedded::open_shared(&config.data_dir)?;
        let log = EmbeddedEventLog::open(database).context("cannot open the event log")?;
        Self::open_embedded_with_log(config, log)
    }

    /// Opens the embedded store on an event log the caller already has (a
    /// single-process stack can pass the handle its consumers wait on, so
    /// they wake as soon as a tweet commits). `log` must be the one in
    /// `config.data_dir`'s database.
    pub fn open_embedded_with_log(
        config: &TweetSvcConfig,
        log: EmbeddedEventLog,
    ) -> anyhow::Result<Self> {
        let ttl = Duration::from_secs(config.idempotency_ttl_secs);
        let store = EmbeddedTweetStore::open(log, ttl).context("cannot open the tweet store")?;
        let ids = SnowflakeGenerator::new(config.worker_id).context("invalid worker_id")?;
        // Resume above every stored id: a clock that went back while the
        // process was down must not make the generator repeat one.
        if let Some(max_id) = store
            .max_issued_id_blocking()
            .context("cannot read the largest stored id")?
        {
            ids.resume_after(max_id);
        }
        Ok(Self::from_parts(Arc::new(store), Arc::new(ids)))
    }

    /// Connects to ScyllaDB as `config.store.scylla` says: checks that the
    /// cluster answers, creates the keyspace and tables if missing, prepares
    /// every statement (a schema check) and resumes the id generator above
    /// the largest stored id. Fails with a message naming the store and its
    /// address.
    ///
    /// Also returns the store's outbox, where its events wait until a relay
    /// (`warble_mesh::outbox::run_relay`) publishes them.
    pub async fn open_scylla(config: &TweetSvcConfig) -> anyhow::Result<(Self, Arc<dyn Outbox>)> {
        let scylla = &config.store.scylla;
        let describe = || {
            format!(
                "tweet store unavailable: ScyllaDB at {} (keyspace `{}`, datacenter `{}`)",
                scylla.node_list().join(","),
                scylla.keyspace,
                scylla.local_datacenter
            )
        };
        let ttl = Duration::from_secs(config.idempotency_ttl_secs);
        let store = ScyllaTweetStore::connect(scylla, ttl)
            .await
            .with_context(describe)?;
        let ids = SnowflakeGenerator::new(config.worker_id).context("invalid worker_id")?;
        if let Some(max_id) = store.max_issued_id().await.with_context(describe)? {
            ids.resume_after(max_id);
        }
        let outbox: Arc<dyn Outbox> = Arc::new(store.clone());
        Ok((Self::from_parts(Arc::new(store), Arc::new(ids)), outbox))
    }

    /// A service over any store and id generator.
    pub fn from_parts(store: Arc<dyn TweetStore>, ids: Arc<SnowflakeGenerator>) -> Self {
        Self {
            api: TweetApi::new(store, ids),
        }
    }

    /// The gRPC service, for callers composing their own server.
    pub fn grpc_service(&self) -> TweetServiceServer<TweetApi> {
        TweetServiceServer::new(self.api.clone())
    }

    /// The gRPC server (not yet serving), for callers that also call it in
    /// process ([`GrpcServer::local_channel`]).
    pub fn into_grpc_server(self, drain_timeout: Duration) -> GrpcServer {
        GrpcServer::new(drain_timeout).add_service(self.grpc_service())
    }
}

/// Runs tweet-svc as its own process until `shutdown` resolves: opens the
/// configured store, relays its outbox to Redis Streams when
/// `events.backend = "redis"`, binds and serves.
pub async fn run(config: TweetSvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    use config::TweetStoreBackend;
    use warble_mesh::outbox::{embedded_outbox, serve_relaying};

    let (service, outbox): (TweetSvc, Arc<dyn Outbox>) = match config.store.backend {
        TweetStoreBackend::Embedded => {
            let database = warble_mesh::embedded::open_shared(&config.data_dir)?;
            let log = EmbeddedEventLog::open(database).context("cannot open the event log")?;
            let service = TweetSvc::open_embedded_with_log(&config, log.clone())?;
            (service, embedded_outbox(log))
        }
        TweetStoreBackend::Scylla => TweetSvc::open_scylla(&config).await?,
    };
    let production_store =
        (config.store.backend == TweetStoreBackend::Scylla).then_some("store.backend = \"scylla\"");
    let server = service
        .into_grpc_server(config.server.drain_timeout())
        .with_server_config(&config.server)?;
    serve_relaying(
        server,
        outbox,
        &config.events,
        &config.server,
        production_store,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::server::NamedService as _;

    #[test]
    fn service_name_matches_the_contract() {
        assert_eq!(SERVICE_NAME, TweetServiceServer::<TweetApi>::NAME);
        assert!(warble_proto::SERVICE_NAMES.contains(&SERVICE_NAME));
    }
}
