//! search-svc: full-text search of tweets, typeahead search of users, and
//! trending hashtags, behind `warble.search.v1.SearchService`.
//!
//! Every replica reads the whole domain event stream into its own tantivy
//! index on disk and serves queries from it; replicas scale query
//! throughput. Trend counts live in a store all replicas share.
//!
//! - [`query`]: the query language, parsed into a typed [`query::Query`].
//! - [`index`]: the tantivy index (tweets and users) and its checkpoint.
//! - [`indexer`]: events to index commits, exactly once; backfill; pins.
//! - [`trends`]: the trend store (embedded and Redis) and the score.
//! - [`replicas`]: unpinning replicas that are gone for good.
//! - [`service`]: request validation and the gRPC handlers.
//! - [`config`], [`error`]: settings, and the error type with its gRPC mapping.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod index;
pub mod indexer;
pub mod query;
pub mod replicas;
pub mod service;
pub mod trends;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService as _;
use tonic_health::ServingStatus;
use warble_mesh::event_log::{EventLog, RedisEventLog};
use warble_mesh::grpc::{GrpcServer, TracedChannel, traced_channel};
use warble_mesh::redis_client::RedisClient;
use warble_mesh::scaffold::{Serve, Shutdown};
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::search::v1::search_service_server::SearchServiceServer;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

pub use config::SearchSvcConfig;
pub use error::SearchError;
pub use index::SearchIndex;
pub use indexer::SearchStats;

use crate::config::TrendsBackend;
use crate::indexer::{Indexer, IndexerSettings};
use crate::replicas::ReplicaRegistry;
use crate::service::SearchApi;
use crate::trends::{EmbeddedTrendStore, RedisTrendStore, TrendStore};

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.search.v1.SearchService";

/// Opens the index under `data_dir` as `config` says.
pub fn open_index(config: &SearchSvcConfig) -> anyhow::Result<Arc<SearchIndex>> {
    let dir = config.data_dir.join("index");
    Ok(Arc::new(
        SearchIndex::open(
            &dir,
            config.index.writer_threads as usize,
            (config.index.writer_heap_mb as usize) << 20,
        )
        .with_context(|| format!("cannot open the search index in {}", dir.display()))?,
    ))
}

/// A search service ready to run: the indexer plus the gRPC API.
pub struct SearchSvc {
    api: SearchApi,
    indexer: Arc<Indexer>,
    stats: Arc<SearchStats>,
    registry: Option<ReplicaRegistry>,
    log: Arc<dyn EventLog>,
}

impl SearchSvc {
    /// Wires the service to its index, trend store and event log, calling
    /// tweet-svc and graph-svc through `tweets` and `graph` (the
    /// single-process stack passes in-process channels). `registry` is the
    /// replica registry (Redis deployments only).
    pub fn with_channels(
        config: &SearchSvcConfig,
        index: Arc<SearchIndex>,
        trends: Arc<dyn TrendStore>,
        log: Arc<dyn EventLog>,
        tweets: TracedChannel,
        graph: TracedChannel,
        registry: Option<ReplicaRegistry>,
    ) -> Self {
        let stats = Arc::new(SearchStats::default());
        let tweets = TweetServiceClient::new(tweets);
        let indexer = Indexer {
            index: index.clone(),
            trends: trends.clone(),
            log: log.clone(),
            tweets: tweets.clone(),
            graph: GraphServiceClient::new(graph),
            stats: stats.clone(),
            settings: IndexerSettings {
                batch_events: config.index.batch_events as usize,
                replica: config.index.replica_name(),
                ..IndexerSettings::default()
            },
        };
        let api = SearchApi {
            index,
            trends,
            log: log.clone(),
            tweets,
            stats: stats.clone(),
            trends_cache: Arc::default(),
            trends_ttl: Duration::from_millis(config.trends.cache_ms),
        };
        Self {
            api,
            indexer: Arc::new(indexer),
            stats,
            registry,
            log,
        }
    }

    /// The live counters (also served by GetStatus).
    pub fn stats(&self) -> Arc<SearchStats> {
        self.stats.clone()
    }

    /// The server (not yet serving): indexes and serves SearchService; its
    /// health turns SERVING once the index has caught up with the stream.
    pub fn into_server(self, drain_timeout: Duration) -> SearchServer {
        SearchServer {
            grpc: GrpcServer::new(drain_timeout)
                .add_service_not_ready(SearchServiceServer::new(self.api.clone())),
            service: self,
            drain_timeout,
        }
    }
}

/// A built search-svc ([`SearchSvc::into_server`]).
pub struct SearchServer {
    service: SearchSvc,
    grpc: GrpcServer,
    drain_timeout: Duration,
}

impl SearchServer {
    /// Applies the `server.*` section: reflection, and mutual TLS with
    /// its peer rules when `server.tls.enabled`.
    pub fn with_server_config(
        mut self,
        config: &warble_mesh::grpc::ServerConfig,
    ) -> Result<Self, warble_mesh::config::ConfigError> {
        self.grpc = self.grpc.with_server_config(config)?;
        Ok(self)
    }

    /// A channel into this server's routes without a network hop.
    pub fn local_channel(&self, request_timeout: Duration) -> warble_mesh::grpc::MeshChannel {
        self.grpc.local_channel(request_timeout)
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Wait between attempts to prepare the index (a backfill whose sources
/// are not up yet, say).
const PREPARE_RETRY: Duration = Duration::from_secs(1);

impl Serve for SearchServer {
    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            service,
            grpc,
            drain_timeout,
        } = self;
        let (stop, stop_rx) = watch::channel(false);

        let indexer = service.indexer.clone();
        let indexer_stop = stop_rx.clone();
        let indexing = tokio::spawn(async move {
            let position = loop {
                tokio::select! {
                    () = stopped(indexer_stop.clone()) => return,
                    prepared = indexer.prepare() => match prepared {
                        Ok(position) => break position,
                        Err(error) => {
                            tracing::warn!(%error, "cannot prepare the search index yet; retrying");
                        }
                    },
                }
                tokio::select! {
                    () = stopped(indexer_stop.clone()) => return,
                    () = tokio::time::sleep(PREPARE_RETRY) => {}
                }
            };
            indexer.follow(position, stopped(indexer_stop)).await;
        });

        // Readiness follows the indexer: NOT_SERVING until caught up.
        let health = grpc.health_reporter();
        let stats = service.stats.clone();
        let readiness_stop = stop_rx.clone();
        tokio::spawn(async move {
            let name = SearchServiceServer::<SearchApi>::NAME;
            let mut reported = None;
            loop {
                let ready = stats.caught_up.load(Ordering::Relaxed);
                if reported != Some(ready) {
                    let status = if ready {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    health.set_service_status(name, status).await;
                    reported = Some(ready);
                }
                tokio::select! {
                    () = stopped(readiness_stop.clone()) => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });

        if let Some(registry) = service.registry.clone() {
            let log = service.log.clone();
            let beat_stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(error) = registry.beat(&log, warble_mesh::time::now_ms()).await {
                        tracing::warn!(%error, "recording this replica as alive failed; retrying");
                    }
                    tokio::select! {
                        () = stopped(beat_stop.clone()) => return,
                        () = tokio::time::sleep(replicas::BEAT) => {}
                    }
                }
            });
        }

        let served = grpc
            .serve(listener, async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        if tokio::time::timeout(drain_timeout, indexing).await.is_err() {
            tracing::warn!(
                "the indexer did not finish within the drain deadline; the next start resumes from the last commit"
            );
        }
        Ok(served?)
    }
}

/// Opens the trend store `config.trends` names.
pub async fn open_trends(config: &SearchSvcConfig) -> anyhow::Result<Arc<dyn TrendStore>> {
    Ok(match config.trends.backend {
        TrendsBackend::Embedded => {
            let database = warble_mesh::embedded::open_shared(&config.data_dir)?;
            Arc::new(Arc::new(
                EmbeddedTrendStore::open(database).context("cannot open the trend store")?,
            ))
        }
        TrendsBackend::Redis => {
            let client = RedisClient::connect(&config.redis)
                .await
                .context("trend store (redis.*)")?;
            Arc::new(RedisTrendStore::new(
                client,
                config.trends.key_prefix.clone(),
            ))
        }
    })
}

/// Runs search-svc as its own process until `shutdown` resolves: opens the
/// index and the trend store, connects the Redis event stream (checking it
/// answers), binds, indexes and serves.
pub async fn run(config: SearchSvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let index = open_index(&config)?;
    let trends = open_trends(&config).await?;
    let redis = RedisEventLog::connect(&config.redis)
        .await
        .context("event stream (redis.*)")?;
    let registry = ReplicaRegistry::new(
        redis.client().clone(),
        config.retention.registry_key.clone(),
        config.index.replica_name(),
        Duration::from_secs(config.retention.replica_timeout_secs),
    );
    let log: Arc<dyn EventLog> = Arc::new(redis);
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let tls = config.server.mesh_tls()?;
    let tweets = traced_channel(&config.tweet_service_addr, timeout, tls.as_ref())
        .context("invalid tweet_service_addr")?;
    let graph = traced_channel(&config.graph_service_addr, timeout, tls.as_ref())
        .context("invalid graph_service_addr")?;
    let service =
        SearchSvc::with_channels(&config, index, trends, log, tweets, graph, Some(registry));
    let server = service
        .into_server(config.server.drain_timeout())
        .with_server_config(&config.server)?;
    warble_mesh::scaffold::serve_on(config.server.listen_addr, server, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_matches_the_contract() {
        assert_eq!(SERVICE_NAME, SearchServiceServer::<SearchApi>::NAME);
        assert!(warble_proto::SERVICE_NAMES.contains(&SERVICE_NAME));
    }
}
