//! gateway: the GraphQL edge frontend teams query.
//!
//! One async-graphql schema over the gRPC mesh. Timeline pages are hydrated
//! in a constant number of batched calls ([`hydrate`]); auth comes from a
//! verified bearer token ([`auth`]); errors carry stable codes ([`error`]);
//! abuse is bounded by depth/complexity/body limits and per-user mutation
//! rate limits. Media are uploaded through the schema and served by a
//! route of their own ([`media`], [`media_route`]). The schema is a library
//! ([`schema`]); [`http`] is a thin axum layer; [`Gateway`] runs both with
//! graceful shutdown.

#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod byte_range;
pub mod config;
pub mod downstream;
pub mod error;
pub mod executor;
pub mod feed;
pub mod http;
pub mod hydrate;
pub mod joined;
pub mod loaders;
pub mod media;
pub mod media_route;
pub mod model;
pub mod notifications;
pub mod operation;
pub mod overload;
pub mod paging;
pub mod persisted;
pub mod proxies;
pub mod query_cache;
pub mod rate_limit;
pub mod resolvers;
pub mod schema;
pub mod search;
pub mod social;
mod time;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use warble_mesh::backends::EventsBackend;
use warble_mesh::event_log::{EventLog, RedisEventLog};
use warble_mesh::scaffold::{Serve, Shutdown};

pub use config::GatewayConfig;
pub use downstream::RpcCounts;
pub use schema::WarbleSchema;

use crate::auth::Authenticator;
use crate::downstream::Downstream;
use crate::feed::LiveFeed;
use crate::rate_limit::{Rate, RateLimiter};
use crate::resolvers::GatewayState;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A downstream address is not a valid URI.
    #[error("invalid downstream address")]
    Downstream(#[from] tonic::transport::Error),
    /// The auth key cannot be used.
    #[error("invalid auth configuration")]
    Auth(#[from] auth::AuthError),
    /// The trusted-documents manifest cannot be used.
    #[error("trusted_documents_file: {0}")]
    TrustedDocuments(#[from] persisted::ManifestError),
    /// The mesh certificate cannot be used.
    #[error(transparent)]
    MeshTls(#[from] warble_mesh::config::ConfigError),
}

/// A gateway ready to serve.
pub struct Gateway {
    executor: executor::EdgeExecutor,
    state: Arc<GatewayState>,
    config: GatewayConfig,
    event_log: Option<Arc<dyn EventLog>>,
}

impl Gateway {
    /// Builds the gateway. With `event_log`, live subscriptions tail it.
    pub fn new(
        config: &GatewayConfig,
        event_log: Option<Arc<dyn EventLog>>,
    ) -> Result<Self, StartError> {
        let downstream = Downstream::connect(
            &config.tweet_service_addr,
            &config.graph_service_addr,
            &config.timeline_service_addr,
            &config.notify_service_addr,
            &config.search_service_addr,
            &config.media_service_addr,
            Duration::from_millis(config.request_timeout_ms),
            Duration::from_millis(config.media_upload_timeout_ms),
            config.mesh_tls.load("mesh_tls")?.as_ref(),
        )?;
        Self::with_downstream(config, event_log, downstream)
    }

    /// A gateway calling the services through `downstream` instead of the
    /// configured addresses (the single-process stack passes in-process channels).
    pub fn with_downstream(
        config: &GatewayConfig,
        event_log: Option<Arc<dyn EventLog>>,
        downstream: Downstream,
    ) -> Result<Self, StartError> {
        Self::with_parts(config, event_log, downstream, RateLimiter::in_memory())
    }

    /// A gateway over `downstream` whose rate limits live in `limiter`
    /// (Redis, to share them across replicas).
    pub fn with_parts(
        config: &GatewayConfig,
        event_log: Option<Arc<dyn EventLog>>,
        downstream: Downstream,
        limiter: RateLimiter,
    ) -> Result<Self, StartError> {
        let state = Arc::new(GatewayState {
            downstream,
            auth: Authenticator::new(&config.auth)?,
            limiter,
            mutation_rate: Rate {
                burst: config.limits.mutation_burst,
                per_minute: config.limits.mutations_per_minute,
            },
            feed: event_log.as_ref().map(|_| LiveFeed::new()),
        });
        let schema = schema::build(state.clone(), &config.limits, config.introspection);
        let documents = if config.trusted_documents_file.is_empty() {
            persisted::DocumentPolicy::Open {
                apq: config.persisted_queries,
                store: persisted::PersistedQueries::default(),
            }
        } else {
            let trusted = persisted::TrustedDocuments::load(std::path::Path::new(
                &config.trusted_documents_file,
            ))?;
            tracing::info!(
                documents = trusted.len(),
                "trusted-documents mode: only the manifest's documents run"
            );
            persisted::DocumentPolicy::Trusted(trusted)
        };
        Ok(Self {
            executor: executor::EdgeExecutor::with_documents(schema, &config.limits, documents),
            state,
            config: config.clone(),
            event_log,
        })
    }

    /// The schema underneath (its SDL, its registry). Run requests through
    /// [`Gateway::executor`], which applies the document limits.
    pub fn schema(&self) -> &WarbleSchema {
        self.executor.schema()
    }

    /// What runs every request (tests execute requests on it directly).
    pub fn executor(&self) -> &executor::EdgeExecutor {
        &self.executor
    }

    /// Downstream calls made so far, by method.
    pub fn rpc_counts(&self) -> Arc<RpcCounts> {
        self.state.downstream.counts.clone()
    }

    /// Issues a development token (dev mode only).
    pub fn issue_token(&self, user_id: u64) -> Option<String> {
        self.state.auth.issue(user_id)
    }

    /// Tails the event log for the live subscriptions until `stop` turns
    /// true ([`Gateway::serve`] runs it; a host that runs requests without
    /// serving, such as a test, spawns it itself). Ends at once when the
    /// gateway has no event log.
    pub fn live_feed(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let parts = self.state.feed.clone().zip(self.event_log.clone());
        async move {
            if let Some((feed, log)) = parts {
                feed.run(log, stop).await;
            }
        }
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then lets
    /// requests finish for up to `drain_timeout_secs` (open subscriptions are
    /// closed at the deadline).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let feed = self
            .event_log
            .is_some()
            .then(|| tokio::spawn(self.live_feed(stopped)));
        let limits = &self.config.limits;
        let app = http::AppState {
            executor: self.executor.clone(),
            state: self.state.clone(),
            graphiql: self.config.graphiql,
            query_rate: Rate {
                burst: limits.query_burst,
                per_minute: limits.queries_per_minute,
            },
            // Validated with the config.
            proxies: proxies::TrustedProxies::parse(&self.config.trusted_proxies)
                .unwrap_or_default(),
            ws: http::WsSettings {
                max_message_bytes: limits.max_body_bytes,
                limits: websocket::WsLimits {
                    init_timeout: Duration::from_secs(limits.ws_init_timeout_secs),
                    operations_per_connection: limits.ws_operations_per_connection as usize,
                    connections_per_user: limits.ws_connections_per_user as usize,
                },
                connections: websocket::ConnectionCounts::default(),
            },
            body_limits: http::BodyLimits {
                json_bytes: limits.max_body_bytes,
                upload_bytes: limits.max_upload_bytes,
            },
            in_flight: http::InFlight::new(
                limits.max_in_flight_requests as usize,
                limits.adaptive_in_flight,
            ),
        };
        let router = http::router(
            app,
            &http::HttpOptions {
                cors_allowed_origins: self.config.cors_origins(),
            },
        );
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "GraphQL gateway listening");
        let drain = Duration::from_secs(self.config.drain_timeout_secs);
        let (drain_started, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
            tracing::info!("gateway draining");
            let _ = drain_started.send(());
        });
        let deadline = async move {
            if drain_started_rx.await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = server => result?,
            () = deadline => tracing::warn!("gateway drain deadline passed; closing remaining connections"),
        }
        if let Some(feed) = feed {
            feed.abort();
        }
        Ok(())
    }
}

impl Serve for Gateway {
    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        Ok(Gateway::serve(self, listener, shutdown).await?)
    }
}

/// Runs the gateway as its own process until `shutdown` resolves. With
/// `events.backend = "redis"` live subscriptions tail the shared event
/// stream; with `embedded` (nothing to share) they are disabled.
pub async fn run(config: GatewayConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let event_log: Option<Arc<dyn EventLog>> = match config.events.backend {
        EventsBackend::Redis => Some(Arc::new(
            RedisEventLog::connect(&config.events.redis)
                .await
                .context("event stream (events.redis.*)")?,
        )),
        EventsBackend::Embedded => {
            tracing::warn!(
                "events.backend = \"embedded\": no shared event stream, live subscriptions are disabled"
            );
            None
        }
    };
    // With Redis, rate limits are shared by every replica.
    let limiter = match config.events.backend {
        EventsBackend::Redis => RateLimiter::Redis(
            warble_mesh::redis_client::RedisClient::connect(&config.events.redis)
                .await
                .context("rate limits (events.redis.*)")?,
        ),
        EventsBackend::Embedded => RateLimiter::in_memory(),
    };
    let downstream = Downstream::connect(
        &config.tweet_service_addr,
        &config.graph_service_addr,
        &config.timeline_service_addr,
        &config.notify_service_addr,
        &config.search_service_addr,
        &config.media_service_addr,
        Duration::from_millis(config.request_timeout_ms),
        Duration::from_millis(config.media_upload_timeout_ms),
        config.mesh_tls.load("mesh_tls")?.as_ref(),
    )
    .context("invalid downstream address")?;
    let gateway = Gateway::with_parts(&config, event_log, downstream, limiter)
        .context("cannot configure the gateway")?;
    warble_mesh::scaffold::serve_on(config.listen_addr, gateway, shutdown).await
}
