//! timeline-svc: home timelines as ordered tweet ids, for the gateway to hydrate.
//!
//! A home timeline is the user's cached timeline (kept current by
//! fanout-svc) merged at read time with the recent tweets of the celebrities
//! they follow. A miss rebuilds the timeline from the following list and each
//! followee's recent tweets, once per user however many reads miss at the
//! same time; pages older than the cache holds are pulled from the stores.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod home;
mod merge;
pub mod service;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use warble_mesh::grpc::{GrpcServer, TracedChannel, traced_channel};
use warble_mesh::scaffold::Shutdown;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::timeline::v1::timeline_service_server::TimelineServiceServer;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_timeline_cache::{RedisTimelineCache, TimelineCache};

pub use config::TimelineSvcConfig;
pub use error::TimelineError;
pub use home::{HomePage, HomeTimelines};

use crate::service::TimelineApi;
use crate::sources::Sources;

/// A timeline service ready to serve.
pub struct TimelineSvc {
    home: Arc<HomeTimelines>,
    sources: Sources,
}

impl TimelineSvc {
    /// Wires the service to its timeline cache and downstream services.
    pub fn new(config: &TimelineSvcConfig, cache: Arc<dyn TimelineCache>) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let tls = config.server.mesh_tls()?;
        Ok(Self::with_channels(
            config,
            cache,
            traced_channel(&config.tweet_service_addr, timeout, tls.as_ref())
                .context("invalid tweet_service_addr")?,
            traced_channel(&config.graph_service_addr, timeout, tls.as_ref())
                .context("invalid graph_service_addr")?,
        ))
    }

    /// Like [`TimelineSvc::new`], calling tweet-svc and graph-svc through the
    /// given channels instead of the configured addresses (the
    /// single-process stack passes in-process channels).
    pub fn with_channels(
        config: &TimelineSvcConfig,
        cache: Arc<dyn TimelineCache>,
        tweets: TracedChannel,
        graph: TracedChannel,
    ) -> Self {
        let sources = Sources {
            tweets: TweetServiceClient::new(tweets),
            graph: GraphServiceClient::new(graph),
        };
        let home = HomeTimelines::new(cache, sources.clone(), config.celebrity_threshold);
        Self { home, sources }
    }

    /// The home timeline builder (exposes the rebuild count).
    pub fn home(&self) -> Arc<HomeTimelines> {
        self.home.clone()
    }

    /// The gRPC server (not yet serving), for callers that also call it in
    /// process ([`GrpcServer::local_channel`]).
    pub fn into_grpc_server(self, drain_timeout: Duration) -> GrpcServer {
        let api = TimelineApi {
            home: self.home,
            sources: self.sources,
        };
        GrpcServer::new(drain_timeout).add_service(TimelineServiceServer::new(api))
    }
}

/// Runs timeline-svc as its own process until `shutdown` resolves: connects
/// the Redis timeline cache (checking it answers), binds, serves. The
/// embedded cache lives in one process's memory, so a standalone process
/// refuses it.
pub async fn run(config: TimelineSvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let cache: Arc<dyn TimelineCache> = match config.backend {
        config::Backend::Embedded => {
            return Err(warble_mesh::config::refuse_embedded_timeline_cache("fanout-svc").into());
        }
        config::Backend::Redis => Arc::new(
            RedisTimelineCache::connect(&config.redis)
                .await
                .context("timeline cache (redis.*)")?
                .with_idle_expiry(Duration::from_secs(config.inactive_after_days * 86_400)),
        ),
    };
    let service = TimelineSvc::new(&config, cache)?;
    let server = service
        .into_grpc_server(config.server.drain_timeout())
        .with_server_config(&config.server)?;
    warble_mesh::scaffold::serve_on(config.server.listen_addr, server, shutdown).await
}
