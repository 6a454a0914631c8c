//! fanout-svc: hybrid fan-out of new tweets into followers' cached timelines.
//!
//! It consumes the domain event log in a consumer group (see [`consumer`])
//! and applies each event to the timeline cache (see [`engine`]): a normal
//! author's tweet is pushed into each active follower's timeline; a
//! celebrity's is only recorded in their recent-tweet set, which
//! timeline-svc merges at read time. GetStatus reports lag and counters.

#![forbid(unsafe_code)]

pub mod active;
pub mod config;
pub mod engine;
pub mod error;
pub mod service;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use warble_mesh::event_log::EventLog;
use warble_mesh::event_log::RedisEventLog;
use warble_mesh::grpc::{GrpcServer, TracedChannel, traced_channel};
use warble_mesh::scaffold::{Serve, Shutdown};
use warble_proto::fanout::v1::fanout_service_server::FanoutServiceServer;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_timeline_cache::{RedisTimelineCache, TimelineCache};

pub use config::FanoutSvcConfig;
pub use error::FanoutError;
pub use stats::FanoutStats;

use crate::engine::{FanoutEngine, FanoutPolicy};
use crate::service::FanoutApi;
use warble_mesh::consumer::{self, Consumer, ConsumerSettings};

/// A fan-out service ready to run: consumer plus gRPC status endpoint.
pub struct FanoutSvc {
    log: Arc<dyn EventLog>,
    engine: Arc<FanoutEngine>,
    stats: Arc<FanoutStats>,
    settings: ConsumerSettings,
}

impl FanoutSvc {
    /// Wires the service to its event log, timeline cache and downstream services.
    pub fn new(
        config: &FanoutSvcConfig,
        log: Arc<dyn EventLog>,
        cache: Arc<dyn TimelineCache>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let tls = config.server.mesh_tls()?;
        Ok(Self::with_channels(
            config,
            log,
            cache,
            traced_channel(&config.tweet_service_addr, timeout, tls.as_ref())
                .context("invalid tweet_service_addr")?,
            traced_channel(&config.graph_service_addr, timeout, tls.as_ref())
                .context("invalid graph_service_addr")?,
        ))
    }

    /// Like [`FanoutSvc::new`], calling tweet-svc and graph-svc through the
    /// given channels instead of the configured addresses (the
    /// single-process stack passes in-process channels).
    pub fn with_channels(
        config: &FanoutSvcConfig,
        log: Arc<dyn EventLog>,
        cache: Arc<dyn TimelineCache>,
        tweets: TracedChannel,
        graph: TracedChannel,
    ) -> Self {
        let tweets = TweetServiceClient::new(tweets);
        let graph = GraphServiceClient::new(graph);
        let stats = Arc::new(FanoutStats::default());
        let engine = FanoutEngine::new(
            cache,
            tweets,
            graph,
            FanoutPolicy::from(&config.fanout),
            stats.clone(),
        );
        Self {
            log,
            engine: Arc::new(engine),
            stats,
            settings: ConsumerSettings::from(&config.consumer),
        }
    }

    /// The live counters (also served by GetStatus).
    pub fn stats(&self) -> Arc<FanoutStats> {
        self.stats.clone()
    }

    /// The server (not yet serving): consumes events and serves GetStatus;
    /// on shutdown it stops reading, finishes in-flight events and drains,
    /// each within `drain_timeout`.
    pub fn into_server(self, drain_timeout: Duration) -> FanoutServer {
        FanoutServer {
            service: self,
            drain_timeout,
            server_config: None,
        }
    }
}

/// A built fanout-svc ([`FanoutSvc::into_server`]).
pub struct FanoutServer {
    service: FanoutSvc,
    drain_timeout: Duration,
    /// The `server.*` section of a standalone process (reflection, mutual
    /// TLS); `None` in the single-process stack.
    server_config: Option<warble_mesh::grpc::ServerConfig>,
}

impl FanoutServer {
    /// Applies the `server.*` section: reflection, and mutual TLS with its
    /// peer rules when `server.tls.enabled` (checked here, applied when serving).
    pub fn with_server_config(
        mut self,
        config: &warble_mesh::grpc::ServerConfig,
    ) -> Result<Self, warble_mesh::config::ConfigError> {
        GrpcServer::new(self.drain_timeout).with_server_config(config)?;
        self.server_config = Some(config.clone());
        Ok(self)
    }
}

impl Serve for FanoutServer {
    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            service,
            drain_timeout,
            server_config,
        } = self;
        let api = FanoutApi {
            log: service.log.clone(),
            stats: service.stats.clone(),
            group: service.settings.group.clone(),
            partitions: service.settings.partitions,
            workers: service.settings.workers as u32,
        };
        let mut grpc = GrpcServer::new(drain_timeout);
        if let Some(config) = &server_config {
            grpc = grpc.with_server_config(config)?;
        }
        let grpc = grpc.add_service(FanoutServiceServer::new(api));
        let consumer = Consumer {
            log: service.log,
            handler: service.engine,
            counters: service.stats.consumer.clone(),
            settings: service.settings,
        };
        consumer::serve_while_consuming(grpc, listener, shutdown, drain_timeout, consumer).await
    }
}

/// Runs fanout-svc as its own process until `shutdown` resolves: connects
/// the Redis timeline cache and event stream (checking they answer), binds,
/// consumes and serves GetStatus. The embedded cache lives in one process's
/// memory, so a standalone process refuses it.
pub async fn run(config: FanoutSvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let (log, cache): (Arc<dyn EventLog>, Arc<dyn TimelineCache>) = match config.backend {
        config::Backend::Embedded => {
            return Err(warble_mesh::config::refuse_embedded_timeline_cache("timeline-svc").into());
        }
        config::Backend::Redis => (
            Arc::new(
                RedisEventLog::connect(&config.redis)
                    .await
                    .context("event stream (redis.*)")?,
            ),
            Arc::new(
                RedisTimelineCache::connect(if config.timeline_cache.separate {
                    &config.timeline_cache.redis
                } else {
                    &config.redis
                })
                .await
                .context(if config.timeline_cache.separate {
                    "timeline cache (timeline_cache.redis.*)"
                } else {
                    "timeline cache (redis.*)"
                })?
                .with_idle_expiry(Duration::from_secs(
                    config.fanout.inactive_after_days * 86_400,
                )),
            ),
        ),
    };
    let service = FanoutSvc::new(&config, log, cache)?;
    let server = service
        .into_server(config.server.drain_timeout())
        .with_server_config(&config.server)?;
    warble_mesh::scaffold::serve_on(config.server.listen_addr, server, shutdown).await
}
