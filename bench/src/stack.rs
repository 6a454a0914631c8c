//! The stack under test: every Warble service in this process on loopback,
//! wired as `warble dev` wires them (one embedded database and event log
//! shared by tweet-svc and graph-svc, fanout-svc consuming it, timeline-svc
//! reading the cache, the GraphQL gateway in front), with the timeline cache
//! on either the embedded implementation or Redis.
//!
//! Why not `warble_launcher::DevStack`: the launcher depends on this crate
//! (for `warble bench`), so this crate cannot depend on the launcher, and
//! `DevStack` always uses the embedded cache, while the fan-out scenario
//! runs the same services on Redis too. The wiring below mirrors
//! `DevStack::start`; keep the two in step.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use warble_fanout_svc::config::{ConsumerConfig, FanoutPolicyConfig};
use warble_fanout_svc::{FanoutStats, FanoutSvc, FanoutSvcConfig};
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_gateway::{Gateway, GatewayConfig};
use warble_mesh::backends::RedisConfig;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog as _};
use warble_timeline_cache::{EmbeddedTimelineCache, RedisTimelineCache, TimelineCache};
use warble_timeline_svc::{HomeTimelines, TimelineSvc, TimelineSvcConfig};

use crate::observe::{DeliveryLog, ObservedCache};

/// The public development secret; the bench stack only listens on loopback.
const JWT_SECRET: &str = "warble-bench-only-insecure-jwt-secret-0123456789";
/// The consumer group fanout-svc reads the event log in.
const CONSUMER_GROUP: &str = "fanout";

/// Which timeline cache the stack's timeline-svc and fanout-svc share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheBackend {
    /// The in-memory cache `warble dev` uses.
    Embedded,
    /// Redis at `url`, keys under `key_prefix` (so runs sharing a server never collide).
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Prepended to every key.
        key_prefix: String,
    },
}

impl CacheBackend {
    /// `embedded` or `redis`, as reports name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Redis { .. } => "redis",
        }
    }
}

/// How to start a [`BenchStack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The embedded database's directory; `None` uses a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Followers from which an author is merged at read time instead of pushed.
    pub celebrity_threshold: u64,
    /// fanout-svc's parallel workers.
    pub consumer_workers: u32,
    /// The timeline cache.
    pub backend: CacheBackend,
    /// Wrap the cache so every push is timestamped ([`BenchStack::deliveries`]).
    pub observe_deliveries: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            celebrity_threshold: FanoutPolicyConfig::default().celebrity_threshold,
            consumer_workers: ConsumerConfig::default().workers,
            backend: CacheBackend::Embedded,
            observe_deliveries: false,
        }
    }
}

/// A running stack (see the module docs).
pub struct BenchStack {
    /// tweet-svc's gRPC address.
    pub tweet_addr: SocketAddr,
    /// graph-svc's gRPC address.
    pub graph_addr: SocketAddr,
    /// timeline-svc's gRPC address.
    pub timeline_addr: SocketAddr,
    /// fanout-svc's gRPC address (GetStatus).
    pub fanout_addr: SocketAddr,
    /// The GraphQL gateway's HTTP address.
    pub gateway_addr: SocketAddr,
    /// The cache timeline-svc reads and fanout-svc writes (unwrapped).
    pub cache: Arc<dyn TimelineCache>,
    /// The same cache when it is the embedded one (for `footprint()`).
    pub embedded_cache: Option<Arc<EmbeddedTimelineCache>>,
    /// The same cache when it is Redis (for its client).
    pub redis_cache: Option<RedisTimelineCache>,
    /// The event log every service shares.
    pub event_log: EmbeddedEventLog,
    /// fanout-svc's counters.
    pub fanout_stats: Arc<FanoutStats>,
    /// timeline-svc's home timeline builder (rebuild count).
    pub home_timelines: Arc<HomeTimelines>,
    /// Push timestamps, when [`StackOptions::observe_deliveries`] was set.
    pub deliveries: Option<Arc<DeliveryLog>>,
    /// The options the stack was started with.
    pub options: StackOptions,
    /// Issues tokens as the gateway would (same secret), without a sign-up round trip.
    token_issuer: Gateway,
    stop: watch::Sender<bool>,
    servers: JoinSet<anyhow::Result<()>>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl BenchStack {
    /// Opens a fresh embedded database and starts every service on free loopback ports.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let (temp_dir, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("warble-bench-")
                    .tempdir()
                    .context("cannot create a temporary data directory")?;
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let drain = Duration::from_secs(5);
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };

        let database = warble_mesh::embedded::open_shared(&data_dir)
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
        let event_log = EmbeddedEventLog::open(database).context("cannot open the event log")?;
        let tweets = warble_tweet_svc::TweetSvc::open_embedded_with_log(
            &warble_tweet_svc::TweetSvcConfig {
                data_dir: data_dir.clone(),
                ..Default::default()
            },
            event_log.clone(),
        )?;
        let graph = warble_graph_svc::GraphSvc::open_embedded_with_log(
            &warble_graph_svc::GraphSvcConfig {
                data_dir: data_dir.clone(),
                ..Default::default()
            },
            event_log.clone(),
        )?;

        let tweet_listener = bind().await?;
        let graph_listener = bind().await?;
        let timeline_listener = bind().await?;
        let fanout_listener = bind().await?;
        let gateway_listener = bind().await?;
        let tweet_addr = tweet_listener.local_addr()?;
        let graph_addr = graph_listener.local_addr()?;
        let timeline_addr = timeline_listener.local_addr()?;
        let fanout_addr = fanout_listener.local_addr()?;
        let gateway_addr = gateway_listener.local_addr()?;

        let (cache, embedded_cache, redis_cache): (Arc<dyn TimelineCache>, _, _) =
            match &options.backend {
                CacheBackend::Embedded => {
                    let cache = Arc::new(EmbeddedTimelineCache::new());
                    (cache.clone(), Some(cache), None)
                }
                CacheBackend::Redis { url, key_prefix } => {
                    let cache = RedisTimelineCache::connect(&RedisConfig {
                        url: url.clone(),
                        ..RedisConfig::default()
                    })
                    .await
                    .with_context(|| format!("cannot connect to Redis at {url}"))?
                    .with_key_prefix(key_prefix.clone());
                    (Arc::new(cache.clone()), None, Some(cache))
                }
            };
        let (fanout_cache, deliveries): (Arc<dyn TimelineCache>, _) = if options.observe_deliveries
        {
            let log = Arc::new(DeliveryLog::default());
            (
                Arc::new(ObservedCache::new(cache.clone(), log.clone())),
                Some(log),
            )
        } else {
            (cache.clone(), None)
        };

        let backend = |embedded| {
            if embedded {
                warble_timeline_svc::config::Backend::Embedded
            } else {
                warble_timeline_svc::config::Backend::Redis
            }
        };
        let is_embedded = options.backend == CacheBackend::Embedded;
        let timeline = TimelineSvc::new(
            &TimelineSvcConfig {
                tweet_service_addr: tweet_addr.to_string(),
                graph_service_addr: graph_addr.to_string(),
                backend: backend(is_embedded),
                celebrity_threshold: options.celebrity_threshold,
                ..Default::default()
            },
            cache.clone(),
        )?;
        let fanout = FanoutSvc::new(
            &FanoutSvcConfig {
                tweet_service_addr: tweet_addr.to_string(),
                graph_service_addr: graph_addr.to_string(),
                backend: if is_embedded {
                    warble_fanout_svc::config::Backend::Embedded
                } else {
                    warble_fanout_svc::config::Backend::Redis
                },
                fanout: FanoutPolicyConfig {
                    celebrity_threshold: options.celebrity_threshold,
                    ..FanoutPolicyConfig::default()
                },
                consumer: ConsumerConfig {
                    group: CONSUMER_GROUP.into(),
                    name: "bench".into(),
                    workers: options.consumer_workers,
                    ..ConsumerConfig::default()
                },
                ..Default::default()
            },
            Arc::new(event_log.clone()),
            fanout_cache,
        )?;
        let gateway_config = gateway_config(gateway_addr, tweet_addr, graph_addr, timeline_addr);
        let gateway = Gateway::new(&gateway_config, Some(Arc::new(event_log.clone())))?;
        let token_issuer = Gateway::new(&gateway_config, None)?;

        let mut stack = Self {
            tweet_addr,
            graph_addr,
            timeline_addr,
            fanout_addr,
            gateway_addr,
            cache,
            embedded_cache,
            redis_cache,
            event_log,
            fanout_stats: fanout.stats(),
            home_timelines: timeline.home(),
            deliveries,
            options,
            token_issuer,
            stop,
            servers: JoinSet::new(),
            _temp_dir: temp_dir,
        };
        let servers = &mut stack.servers;
        let down = shutdown();
        servers.spawn(async move {
            tweets
                .serve(tweet_listener, drain, down)
                .await
                .context("tweet-svc failed")
        });
        let down = shutdown();
        servers.spawn(async move {
            graph
                .serve(graph_listener, drain, down)
                .await
                .context("graph-svc failed")
        });
        let down = shutdown();
        servers.spawn(async move {
            timeline
                .serve(timeline_listener, drain, down)
                .await
                .context("timeline-svc failed")
        });
        let down = shutdown();
        servers.spawn(async move {
            fanout
                .serve(fanout_listener, drain, down)
                .await
                .context("fanout-svc failed")
        });
        let down = shutdown();
        servers.spawn(async move {
            gateway
                .serve(gateway_listener, down)
                .await
                .context("gateway failed")
        });
        Ok(stack)
    }

    /// A bearer token for `user_id`, signed as the gateway expects.
    pub fn token(&self, user_id: u64) -> String {
        self.token_issuer
            .issue_token(user_id)
            .expect("the bench gateway runs in development mode")
    }

    /// Events fanout-svc has not acknowledged yet.
    pub async fn fanout_lag(&self) -> anyhow::Result<u64> {
        Ok(self
            .event_log
            .lag(DOMAIN_EVENTS_STREAM, CONSUMER_GROUP)
            .await?)
    }

    /// Waits until fanout-svc has applied every event appended so far.
    pub async fn wait_fanout_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.fanout_lag().await? == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "fanout-svc still has {} events to apply after {timeout:?}",
                    self.fanout_lag().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Fan-out events that failed every attempt (must stay 0).
    pub fn dead_letters(&self) -> u64 {
        FanoutStats::get(&self.fanout_stats.dead_letters)
    }

    /// Timeline insertions fanout-svc has written.
    pub fn deliveries_written(&self) -> u64 {
        FanoutStats::get(&self.fanout_stats.deliveries_written)
    }

    /// Stops every service, draining in-flight calls.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(result) = self.servers.join_next().await {
            result.context("a service task panicked")??;
        }
        Ok(())
    }
}

fn gateway_config(
    listen_addr: SocketAddr,
    tweet: SocketAddr,
    graph: SocketAddr,
    timeline: SocketAddr,
) -> GatewayConfig {
    GatewayConfig {
        listen_addr,
        drain_timeout_secs: 5,
        tweet_service_addr: tweet.to_string(),
        graph_service_addr: graph.to_string(),
        timeline_service_addr: timeline.to_string(),
        auth: AuthConfig {
            hs256_secret: JWT_SECRET.into(),
            dev_mode: true,
            ..AuthConfig::default()
        },
        // Load tests post far faster than a person: the per-user mutation
        // bucket would turn most posts into RATE_LIMITED errors.
        limits: LimitsConfig {
            mutation_burst: 1_000_000,
            mutations_per_minute: 1_000_000,
            ..LimitsConfig::default()
        },
        graphiql: false,
        introspection: true,
        ..GatewayConfig::default()
    }
}

async fn bind() -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("cannot bind a loopback port")
}
