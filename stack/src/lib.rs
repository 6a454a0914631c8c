//! The single-process Warble stack: every service in one process, on
//! loopback, sharing one embedded database (stores and event log) and one
//! timeline cache (in memory unless the caller passes another).
//!
//! `warble dev`, the end-to-end tests and `warble-bench` all start the stack
//! through [`DevStack::start`] / [`DevStack::start_with`], so tests and
//! benchmarks exercise exactly what developers run.
//!
//! Services that call each other do so in process by default
//! (`in_process_calls`): the same gRPC handlers, protobuf encoding, trace
//! context and deadlines, without a loopback TCP connection and HTTP/2 per
//! hop. Every service still listens on its port for outside callers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use warble_fanout_svc::config::{ConsumerConfig, FanoutPolicyConfig};
use warble_fanout_svc::{FanoutStats, FanoutSvc, FanoutSvcConfig};
use warble_gateway::auth::Authenticator;
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_gateway::downstream::Downstream;
use warble_gateway::{Gateway, GatewayConfig, RpcCounts};
use warble_media_svc::config::MediaLimits;
use warble_media_svc::store::EmbeddedMediaStore;
use warble_media_svc::{MediaStats, MediaSvc, MediaSvcConfig};
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog as _};
use warble_mesh::grpc::{MeshChannel, remote_channel, traced};
use warble_mesh::scaffold::{BinaryConfig, Serve, Shutdown};
use warble_mesh::secret::Secret;
use warble_mesh::telemetry::TelemetryConfig;
use warble_notify_svc::store::EmbeddedNotificationStore;
use warble_notify_svc::{NotifyStats, NotifySvc, NotifySvcConfig};
use warble_search_svc::config::{IndexConfig, TrendsBackend, TrendsConfig};
use warble_search_svc::trends::EmbeddedTrendStore;
use warble_search_svc::{SearchStats, SearchSvc, SearchSvcConfig};
use warble_timeline_cache::{EmbeddedTimelineCache, TimelineCache};
use warble_timeline_svc::{HomeTimelines, TimelineSvc, TimelineSvcConfig};

/// Bounds of `data_cache_mb`: below 16 MiB every read copies pages from
/// the operating system; 64 GiB is past any machine `warble dev` runs on.
const MIN_DATA_CACHE_MB: u64 = 16;
const MAX_DATA_CACHE_MB: u64 = 64 << 10;

/// Configuration of `warble dev` (keys are read like every service's:
/// defaults < `--config` file < `WARBLE_*` env vars).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DevConfig {
    /// Directory holding the stack's embedded database; kept across restarts.
    pub data_dir: PathBuf,
    /// MiB of database pages the embedded database keeps in memory (redb's
    /// cache; the operating system caches the file too). At a million users
    /// the default fills, a third of the stack's memory.
    pub data_cache_mb: u64,
    /// Interface every service binds. Loopback by default: the dev stack
    /// signs anyone up without a password. Any other address is refused
    /// unless `allow_remote` is on and `jwt_secret` is set.
    pub host: IpAddr,
    /// Let `host` be a non-loopback address (a container, a shared test
    /// machine). Requires a `jwt_secret` of your own: with the public
    /// default anyone could forge tokens for any user.
    pub allow_remote: bool,
    /// tweet-svc's gRPC port; 0 picks a free port.
    pub tweet_port: u16,
    /// graph-svc's gRPC port; 0 picks a free port.
    pub graph_port: u16,
    /// timeline-svc's gRPC port; 0 picks a free port.
    pub timeline_port: u16,
    /// fanout-svc's gRPC port; 0 picks a free port.
    pub fanout_port: u16,
    /// notify-svc's gRPC port; 0 picks a free port.
    pub notify_port: u16,
    /// search-svc's gRPC port; 0 picks a free port.
    pub search_port: u16,
    /// search-svc's index (see search-svc's `index.*` keys); it lives in
    /// `<data_dir>/search-index`.
    pub search_index: IndexConfig,
    /// media-svc's gRPC port; 0 picks a free port. Its files live in
    /// `<data_dir>/media`, served by the gateway's `/media` route.
    pub media_port: u16,
    /// What an upload may be (see media-svc's `limits.*` keys).
    pub media_limits: MediaLimits,
    /// The GraphQL gateway's HTTP port; 0 picks a free port.
    pub gateway_port: u16,
    /// HS256 secret the dev gateway signs and verifies tokens with (at least
    /// 32 bytes). Empty (the default) uses a public development secret:
    /// never expose the dev stack.
    pub jwt_secret: Secret,
    /// Gateway abuse limits (see the gateway's `limits.*` keys).
    pub limits: LimitsConfig,
    /// Seconds in-flight calls get to finish on Ctrl-C.
    pub drain_timeout_secs: u64,
    /// Services call each other inside the process (same handlers, encoding,
    /// trace context and deadlines, no loopback TCP/HTTP/2 per hop) instead
    /// of through their ports. Turn off to send every internal call over
    /// loopback gRPC, as separate processes would.
    pub in_process_calls: bool,
    /// Fan-out rules, shared by fanout-svc and timeline-svc (see fanout-svc's keys).
    pub fanout: FanoutPolicyConfig,
    /// How fanout-svc consumes the event log (see fanout-svc's keys).
    pub consumer: ConsumerConfig,
    /// Logging and tracing (see the telemetry keys of the services).
    pub telemetry: TelemetryConfig,
}

impl Default for DevConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data/dev"),
            data_cache_mb: (warble_mesh::embedded::DEFAULT_CACHE_BYTES >> 20) as u64,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            allow_remote: false,
            tweet_port: 50051,
            graph_port: 50052,
            timeline_port: 50053,
            fanout_port: 50054,
            notify_port: 50055,
            search_port: 50056,
            search_index: IndexConfig {
                // Small: the dev stack indexes a developer's data, and
                // tests start many stacks at once.
                writer_heap_mb: 16,
                ..IndexConfig::default()
            },
            media_port: 50057,
            media_limits: MediaLimits::default(),
            gateway_port: 8080,
            jwt_secret: Secret::default(),
            limits: LimitsConfig::default(),
            drain_timeout_secs: 5,
            in_process_calls: true,
            fanout: FanoutPolicyConfig::default(),
            consumer: ConsumerConfig::for_group("fanout"),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl ServiceConfig for DevConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.host.is_loopback() {
            if !self.allow_remote {
                return Err(ConfigError::invalid(
                    "host",
                    format!(
                        "{} is not a loopback address, and the dev stack lets anyone sign up \
                         without a password: keep 127.0.0.1, or set allow_remote = true \
                         (WARBLE_ALLOW_REMOTE=true) with a jwt_secret of your own",
                        self.host
                    ),
                ));
            }
            if self.jwt_secret.is_empty() || self.jwt_secret.expose() == PUBLIC_DEV_JWT_SECRET {
                return Err(ConfigError::invalid(
                    "jwt_secret",
                    "a non-loopback host needs a secret of your own (at least 32 bytes): the \
                     default one is public, so anyone could forge tokens",
                ));
            }
        }
        if self.drain_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "drain_timeout_secs",
                "must be at least 1",
            ));
        }
        if !(MIN_DATA_CACHE_MB..=MAX_DATA_CACHE_MB).contains(&self.data_cache_mb) {
            return Err(ConfigError::invalid(
                "data_cache_mb",
                format!("must be between {MIN_DATA_CACHE_MB} and {MAX_DATA_CACHE_MB} (MiB)"),
            ));
        }
        let ports = [
            ("tweet_port", self.tweet_port),
            ("graph_port", self.graph_port),
            ("timeline_port", self.timeline_port),
            ("fanout_port", self.fanout_port),
            ("notify_port", self.notify_port),
            ("search_port", self.search_port),
            ("media_port", self.media_port),
            ("gateway_port", self.gateway_port),
        ];
        for (index, (key, port)) in ports.iter().enumerate() {
            if *port != 0 && ports[..index].iter().any(|(_, other)| other == port) {
                return Err(ConfigError::invalid(
                    key,
                    "must differ from the other services' ports",
                ));
            }
        }
        // The services validate these sections the same way on their own.
        let fanout = FanoutSvcConfig {
            fanout: self.fanout.clone(),
            consumer: self.consumer.clone(),
            ..FanoutSvcConfig::default()
        };
        fanout.validate()?;
        let search = SearchSvcConfig {
            index: self.search_index.clone(),
            ..SearchSvcConfig::default()
        };
        search.validate().map_err(|error| match error {
            ConfigError::Invalid { key, reason } if key.starts_with("index.") => {
                ConfigError::invalid(&format!("search_{key}"), reason)
            }
            other => other,
        })?;
        let media = MediaSvcConfig {
            limits: self.media_limits.clone(),
            ..MediaSvcConfig::default()
        };
        media.validate().map_err(|error| match error {
            ConfigError::Invalid { key, reason } if key.starts_with("limits.") => {
                ConfigError::invalid(&format!("media_{key}"), reason)
            }
            other => other,
        })?;
        // The gateway section is validated as the gateway itself would (the
        // service addresses are only known once the listeners are bound).
        let any = "127.0.0.1:1";
        let addrs = ServiceAddrs {
            tweet: any,
            graph: any,
            timeline: any,
            notify: any,
            search: any,
            media: any,
        };
        self.gateway_config(SocketAddr::new(self.host, self.gateway_port), &addrs)
            .validate()
            .map_err(|error| match error {
                ConfigError::Invalid { key, reason } if key == "auth.hs256_secret" => {
                    ConfigError::invalid("jwt_secret", reason)
                }
                other => other,
            })?;
        self.telemetry.validate("telemetry")
    }
}

/// The secret an empty `jwt_secret` stands for. Public on purpose: the dev
/// stack signs throwaway tokens and listens on loopback.
const PUBLIC_DEV_JWT_SECRET: &str = "warble-dev-only-insecure-jwt-secret-0123456789";

impl BinaryConfig for DevConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl DevConfig {
    /// A throwaway stack's config: data in `data_dir`, every port 0 (free
    /// ports on loopback), everything else as `warble dev` has it. Tests
    /// and benchmarks start from this and change what they measure.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tweet_port: 0,
            graph_port: 0,
            timeline_port: 0,
            fanout_port: 0,
            notify_port: 0,
            search_port: 0,
            media_port: 0,
            gateway_port: 0,
            ..Self::default()
        }
    }

    /// The HS256 secret the gateway uses: `jwt_secret`, or the public
    /// development one when it is empty.
    pub fn effective_jwt_secret(&self) -> Secret {
        if self.jwt_secret.is_empty() {
            Secret::new(PUBLIC_DEV_JWT_SECRET)
        } else {
            self.jwt_secret.clone()
        }
    }

    /// The gateway's config inside the dev stack: development sign-up and
    /// GraphiQL on, tokens signed with `jwt_secret`.
    fn gateway_config(&self, listen_addr: SocketAddr, addrs: &ServiceAddrs<'_>) -> GatewayConfig {
        GatewayConfig {
            listen_addr,
            drain_timeout_secs: self.drain_timeout_secs,
            tweet_service_addr: addrs.tweet.into(),
            graph_service_addr: addrs.graph.into(),
            timeline_service_addr: addrs.timeline.into(),
            notify_service_addr: addrs.notify.into(),
            search_service_addr: addrs.search.into(),
            media_service_addr: addrs.media.into(),
            auth: AuthConfig {
                hs256_secret: self.effective_jwt_secret(),
                dev_mode: true,
                ..AuthConfig::default()
            },
            limits: self.limits.clone(),
            graphiql: true,
            introspection: true,
            telemetry: self.telemetry.clone(),
            ..GatewayConfig::default()
        }
    }
}

/// Where the gateway finds each service (`host:port`).
struct ServiceAddrs<'a> {
    tweet: &'a str,
    graph: &'a str,
    timeline: &'a str,
    notify: &'a str,
    search: &'a str,
    media: &'a str,
}

/// A running single-process stack.
pub struct DevStack {
    /// Where tweet-svc listens.
    pub tweet_addr: SocketAddr,
    /// Where graph-svc listens.
    pub graph_addr: SocketAddr,
    /// Where timeline-svc listens.
    pub timeline_addr: SocketAddr,
    /// Where fanout-svc listens.
    pub fanout_addr: SocketAddr,
    /// Where notify-svc listens.
    pub notify_addr: SocketAddr,
    /// Where search-svc listens.
    pub search_addr: SocketAddr,
    /// Where media-svc listens.
    pub media_addr: SocketAddr,
    /// Where the GraphQL gateway listens (HTTP).
    pub gateway_addr: SocketAddr,
    /// Downstream calls the gateway made, by method.
    pub gateway_rpc_counts: Arc<RpcCounts>,
    /// The event log every service shares (tests inject entries through it).
    pub event_log: EmbeddedEventLog,
    /// The timeline cache fanout-svc writes and timeline-svc reads.
    pub timeline_cache: Arc<dyn TimelineCache>,
    /// The same cache when it is the stack's own in-memory one.
    pub embedded_cache: Option<Arc<EmbeddedTimelineCache>>,
    /// timeline-svc's home timeline builder (exposes its rebuild count).
    pub home_timelines: Arc<HomeTimelines>,
    /// fanout-svc's live counters.
    pub fanout_stats: Arc<FanoutStats>,
    /// notify-svc's live counters.
    pub notify_stats: Arc<NotifyStats>,
    /// search-svc's live counters (indexing position, caught up).
    pub search_stats: Arc<SearchStats>,
    /// media-svc's live counters (bytes stored, uploads, refusals).
    pub media_stats: Arc<MediaStats>,
    /// media-svc's consumer group (it attaches media from TweetCreated).
    media_consumer_group: (String, u32),
    /// Issues tokens as the gateway does (same secret), without a sign-up round trip.
    token_issuer: Authenticator,
    /// Each consumer's group and its partitions.
    consumer_group: (String, u32),
    notify_consumer_group: (String, u32),
    stop: watch::Sender<bool>,
    servers: JoinSet<anyhow::Result<()>>,
    /// The embedded database (for its cache figure; the stores hold it open).
    database: std::sync::Weak<redb::Database>,
}

/// Wraps the cache fanout-svc writes through (see [`StackOptions`]).
pub type CacheWrapper = Box<dyn FnOnce(Arc<dyn TimelineCache>) -> Arc<dyn TimelineCache> + Send>;

/// What [`DevStack::start_with`] takes besides the config.
#[derive(Default)]
pub struct StackOptions {
    /// The timeline cache timeline-svc reads and fanout-svc writes; `None`
    /// creates the in-memory one `warble dev` uses.
    pub timeline_cache: Option<Arc<dyn TimelineCache>>,
    /// Wraps the cache for fanout-svc only (e.g. to timestamp deliveries);
    /// `None` writes to the cache itself.
    pub wrap_fanout_cache: Option<CacheWrapper>,
}

impl DevStack {
    /// Opens the embedded stores and starts every service.
    pub async fn start(config: &DevConfig) -> anyhow::Result<Self> {
        Self::start_with(config, StackOptions::default()).await
    }

    /// [`DevStack::start`] with a chosen timeline cache.
    pub async fn start_with(config: &DevConfig, options: StackOptions) -> anyhow::Result<Self> {
        let drain = Duration::from_secs(config.drain_timeout_secs);
        let (stop, _) = watch::channel(false);

        // One database and one event log handle: stores append in their own
        // transactions, and the fan-out consumer wakes on every commit.
        let database = warble_mesh::embedded::open_shared_with_cache(
            &config.data_dir,
            (config.data_cache_mb as usize) << 20,
        )
        .with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
        let cache_database = Arc::downgrade(&database);
        let event_log = EmbeddedEventLog::open(database).context("cannot open the event log")?;
        let tweets = warble_tweet_svc::TweetSvc::open_embedded_with_log(
            &warble_tweet_svc::TweetSvcConfig {
                data_dir: config.data_dir.clone(),
                ..Default::default()
            },
            event_log.clone(),
        )
        .context("cannot open tweet-svc's embedded store")?
        .into_grpc_server(drain);
        let graph = warble_graph_svc::GraphSvc::open_embedded_with_log(
            &warble_graph_svc::GraphSvcConfig {
                data_dir: config.data_dir.clone(),
                ..Default::default()
            },
            event_log.clone(),
        )
        .context("cannot open graph-svc's embedded store")?
        .into_grpc_server(drain);

        let tweet_listener = bind(config.host, config.tweet_port, "tweet-svc").await?;
        let graph_listener = bind(config.host, config.graph_port, "graph-svc").await?;
        let timeline_listener = bind(config.host, config.timeline_port, "timeline-svc").await?;
        let fanout_listener = bind(config.host, config.fanout_port, "fanout-svc").await?;
        let notify_listener = bind(config.host, config.notify_port, "notify-svc").await?;
        let search_listener = bind(config.host, config.search_port, "search-svc").await?;
        let media_listener = bind(config.host, config.media_port, "media-svc").await?;
        let gateway_listener = bind(config.host, config.gateway_port, "gateway").await?;
        let tweet_addr = tweet_listener.local_addr()?;
        let graph_addr = graph_listener.local_addr()?;
        let timeline_addr = timeline_listener.local_addr()?;
        let fanout_addr = fanout_listener.local_addr()?;
        let notify_addr = notify_listener.local_addr()?;
        let search_addr = search_listener.local_addr()?;
        let media_addr = media_listener.local_addr()?;
        let gateway_addr = gateway_listener.local_addr()?;

        // How a caller with `timeout` reaches a server: into its routes, or
        // to its address.
        let dial = |server: &warble_mesh::grpc::GrpcServer,
                    addr: SocketAddr,
                    timeout: Duration|
         -> anyhow::Result<MeshChannel> {
            if config.in_process_calls {
                Ok(server.local_channel(timeout))
            } else {
                Ok(remote_channel(
                    &addr.to_string(),
                    Duration::from_secs(3),
                    timeout,
                    None,
                )?)
            }
        };

        let (timeline_cache, embedded_cache): (Arc<dyn TimelineCache>, _) =
            match options.timeline_cache {
                Some(cache) => (cache, None),
                None => {
                    let cache = Arc::new(EmbeddedTimelineCache::new());
                    (cache.clone() as Arc<dyn TimelineCache>, Some(cache))
                }
            };
        let timeline_config = TimelineSvcConfig {
            tweet_service_addr: tweet_addr.to_string(),
            graph_service_addr: graph_addr.to_string(),
            celebrity_threshold: config.fanout.celebrity_threshold,
            ..Default::default()
        };
        let timeline_timeout = Duration::from_millis(timeline_config.request_timeout_ms);
        let timeline = TimelineSvc::with_channels(
            &timeline_config,
            timeline_cache.clone(),
            traced(dial(&tweets, tweet_addr, timeline_timeout)?),
            traced(dial(&graph, graph_addr, timeline_timeout)?),
        );
        let home_timelines = timeline.home();
        let timeline = timeline.into_grpc_server(drain);

        let fanout_config = FanoutSvcConfig {
            tweet_service_addr: tweet_addr.to_string(),
            graph_service_addr: graph_addr.to_string(),
            fanout: config.fanout.clone(),
            consumer: config.consumer.clone(),
            ..Default::default()
        };
        let fanout_timeout = Duration::from_millis(fanout_config.request_timeout_ms);
        let fanout = FanoutSvc::with_channels(
            &fanout_config,
            Arc::new(event_log.clone()),
            match options.wrap_fanout_cache {
                Some(wrap) => wrap(timeline_cache.clone()),
                None => timeline_cache.clone(),
            },
            traced(dial(&tweets, tweet_addr, fanout_timeout)?),
            traced(dial(&graph, graph_addr, fanout_timeout)?),
        );
        let fanout_stats = fanout.stats();
        let fanout = fanout.into_server(drain);

        let notify_config = NotifySvcConfig {
            graph_service_addr: graph_addr.to_string(),
            consumer: ConsumerConfig {
                group: NotifySvcConfig::default().consumer.group,
                ..config.consumer.clone()
            },
            ..Default::default()
        };
        let notify_store = EmbeddedNotificationStore::open(event_log.database().clone())
            .context("cannot open notify-svc's embedded store")?;
        let notify_timeout = Duration::from_millis(notify_config.request_timeout_ms);
        let notify = NotifySvc::with_channel(
            &notify_config,
            Arc::new(notify_store),
            Arc::new(event_log.clone()),
            traced(dial(&graph, graph_addr, notify_timeout)?),
        );
        let notify_stats = notify.stats();
        let notify = notify.into_server(drain);

        // search-svc: its index in its own directory, trends in the shared
        // database (one replica), following the shared event log.
        let search_config = SearchSvcConfig {
            data_dir: config.data_dir.join("search-index"),
            tweet_service_addr: tweet_addr.to_string(),
            graph_service_addr: graph_addr.to_string(),
            index: IndexConfig {
                replica: "dev".into(),
                ..config.search_index.clone()
            },
            trends: TrendsConfig {
                backend: TrendsBackend::Embedded,
                ..TrendsConfig::default()
            },
            ..Default::default()
        };
        let search_index = warble_search_svc::open_index(&search_config)?;
        let search_trends = Arc::new(
            EmbeddedTrendStore::open(event_log.database().clone())
                .context("cannot open search-svc's trend store")?,
        );
        let search_timeout = Duration::from_millis(search_config.request_timeout_ms);
        let search = SearchSvc::with_channels(
            &search_config,
            search_index,
            Arc::new(search_trends),
            Arc::new(event_log.clone()),
            traced(dial(&tweets, tweet_addr, search_timeout)?),
            traced(dial(&graph, graph_addr, search_timeout)?),
            None,
        );
        let search_stats = search.stats();
        let search = search.into_server(drain);

        // media-svc: metadata in the shared database, files in a directory,
        // URLs through the gateway's `/media` route.
        let public_host = if gateway_addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            gateway_addr.ip()
        };
        let mut media_config = MediaSvcConfig {
            data_dir: config.data_dir.clone(),
            limits: config.media_limits.clone(),
            consumer: ConsumerConfig {
                group: MediaSvcConfig::default().consumer.group,
                ..config.consumer.clone()
            },
            ..MediaSvcConfig::default()
        };
        media_config.blobs.dir = config.data_dir.join("media");
        media_config.urls.base_url = format!(
            "http://{}/media",
            SocketAddr::new(public_host, gateway_addr.port())
        );
        let media_store = EmbeddedMediaStore::open(event_log.database().clone())
            .context("cannot open media-svc's embedded store")?;
        let media = MediaSvc::new(
            &media_config,
            Arc::new(media_store),
            warble_media_svc::open_blobs(&media_config)?,
            Arc::new(event_log.clone()),
        )?;
        let media_stats = media.stats();
        let media = media.into_server(drain);

        let gateway_config = config.gateway_config(
            gateway_addr,
            &ServiceAddrs {
                tweet: &tweet_addr.to_string(),
                graph: &graph_addr.to_string(),
                timeline: &timeline_addr.to_string(),
                notify: &notify_addr.to_string(),
                search: &search_addr.to_string(),
                media: &media_addr.to_string(),
            },
        );
        let upload_timeout = Duration::from_millis(gateway_config.media_upload_timeout_ms);
        let media_channel = |timeout: Duration| -> anyhow::Result<MeshChannel> {
            if config.in_process_calls {
                Ok(media.local_channel(timeout))
            } else {
                Ok(remote_channel(
                    &media_addr.to_string(),
                    Duration::from_secs(3),
                    timeout,
                    None,
                )?)
            }
        };
        let gateway_timeout = Duration::from_millis(gateway_config.request_timeout_ms);
        let gateway = Gateway::with_downstream(
            &gateway_config,
            Some(Arc::new(event_log.clone())),
            Downstream::from_channels(
                dial(&tweets, tweet_addr, gateway_timeout)?,
                dial(&graph, graph_addr, gateway_timeout)?,
                dial(&timeline, timeline_addr, gateway_timeout)?,
                if config.in_process_calls {
                    notify.local_channel(gateway_timeout)
                } else {
                    remote_channel(
                        &notify_addr.to_string(),
                        Duration::from_secs(3),
                        gateway_timeout,
                        None,
                    )?
                },
                if config.in_process_calls {
                    search.local_channel(gateway_timeout)
                } else {
                    remote_channel(
                        &search_addr.to_string(),
                        Duration::from_secs(3),
                        gateway_timeout,
                        None,
                    )?
                },
                media_channel(gateway_timeout)?,
            )
            .with_upload_channel(media_channel(upload_timeout)?),
        )
        .context("cannot configure the gateway")?;
        let gateway_rpc_counts = gateway.rpc_counts();
        let token_issuer =
            Authenticator::new(&gateway_config.auth).context("cannot configure the gateway")?;

        let mut stack = Self {
            database: cache_database,
            tweet_addr,
            graph_addr,
            timeline_addr,
            fanout_addr,
            notify_addr,
            search_addr,
            media_addr,
            gateway_addr,
            gateway_rpc_counts,
            event_log,
            timeline_cache,
            embedded_cache,
            home_timelines,
            fanout_stats,
            notify_stats,
            search_stats,
            media_stats,
            media_consumer_group: (
                media_config.consumer.group.clone(),
                media_config.consumer.partitions,
            ),
            notify_consumer_group: (
                notify_config.consumer.group.clone(),
                notify_config.consumer.partitions,
            ),
            token_issuer,
            consumer_group: (config.consumer.group.clone(), config.consumer.partitions),
            stop,
            servers: JoinSet::new(),
        };
        stack.spawn("tweet-svc", tweets, tweet_listener);
        stack.spawn("graph-svc", graph, graph_listener);
        stack.spawn("timeline-svc", timeline, timeline_listener);
        stack.spawn("fanout-svc", fanout, fanout_listener);
        stack.spawn("notify-svc", notify, notify_listener);
        stack.spawn("search-svc", search, search_listener);
        stack.spawn("media-svc", media, media_listener);
        stack.spawn("gateway", gateway, gateway_listener);
        Ok(stack)
    }

    /// Starts `server` on `listener` until the stack stops: every service
    /// the same way.
    fn spawn(&mut self, name: &'static str, server: impl Serve, listener: TcpListener) {
        let mut stopped = self.stop.subscribe();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        self.servers.spawn(async move {
            server
                .serve(listener, shutdown)
                .await
                .with_context(|| format!("{name} failed"))
        });
    }

    /// A bearer token for `user_id`, signed as the gateway verifies them.
    pub fn issue_token(&self, user_id: u64) -> Option<String> {
        self.token_issuer.issue(user_id)
    }

    /// Bytes of pages the embedded database keeps in memory now (its cache).
    pub fn embedded_cache_bytes(&self) -> usize {
        self.database.upgrade().map_or(0, |database| {
            warble_mesh::embedded::cache_bytes_of(&database)
        })
    }

    /// Events fanout-svc has not acknowledged yet.
    pub async fn fanout_lag(&self) -> anyhow::Result<u64> {
        let (group, partitions) = &self.consumer_group;
        Ok(
            warble_mesh::consumer::backlog(&self.event_log, group, *partitions)
                .await?
                .0,
        )
    }

    /// Events notify-svc has not acknowledged yet.
    pub async fn notify_lag(&self) -> anyhow::Result<u64> {
        let (group, partitions) = &self.notify_consumer_group;
        Ok(
            warble_mesh::consumer::backlog(&self.event_log, group, *partitions)
                .await?
                .0,
        )
    }

    /// Events media-svc has not acknowledged yet.
    pub async fn media_lag(&self) -> anyhow::Result<u64> {
        let (group, partitions) = &self.media_consumer_group;
        Ok(
            warble_mesh::consumer::backlog(&self.event_log, group, *partitions)
                .await?
                .0,
        )
    }

    /// Events search-svc has not applied to its index yet; `None` until it
    /// has caught up with the stream once (its backfill is done).
    pub async fn search_lag(&self) -> anyhow::Result<Option<u64>> {
        if !self
            .search_stats
            .caught_up
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(None);
        }
        Ok(Some(
            self.event_log
                .count_after(
                    DOMAIN_EVENTS_STREAM,
                    self.search_stats.applied(),
                    warble_search_svc::indexer::MAX_COUNTED_LAG,
                )
                .await?,
        ))
    }

    /// The line `warble dev` prints once every service accepts connections.
    pub fn ready_line(&self) -> String {
        format!(
            "warble ready gateway=http://{}/graphql tweet={} graph={} timeline={} fanout={} notify={} search={} media={}",
            self.gateway_addr,
            self.tweet_addr,
            self.graph_addr,
            self.timeline_addr,
            self.fanout_addr,
            self.notify_addr,
            self.search_addr,
            self.media_addr
        )
    }

    /// Runs until `shutdown` resolves or a service fails, then stops every service.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            () = shutdown => {}
            Some(result) = self.servers.join_next() => {
                let _ = self.stop.send(true);
                result.context("a service task panicked")??;
                anyhow::bail!("a service stopped unexpectedly");
            }
        }
        self.stop().await
    }

    /// Stops every service (draining in-flight calls) and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(result) = self.servers.join_next().await {
            result.context("a service task panicked")??;
        }
        Ok(())
    }
}

async fn bind(host: IpAddr, port: u16, service: &str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.with_context(|| {
        format!("{service}: cannot listen on {addr} (is another stack running? set the port to 0 for any free port)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_key(config: &DevConfig) -> Option<String> {
        match config.validate() {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn the_dev_stack_stays_on_loopback_unless_told_otherwise_with_a_real_secret() {
        let local = DevConfig::ephemeral("unused");
        assert_eq!(refused_key(&local), None);
        let remote = DevConfig {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ..local.clone()
        };
        assert_eq!(refused_key(&remote).as_deref(), Some("host"));
        let opted_in = DevConfig {
            allow_remote: true,
            ..remote.clone()
        };
        assert_eq!(
            refused_key(&opted_in).as_deref(),
            Some("jwt_secret"),
            "the public default secret is not enough"
        );
        let public_secret_spelled_out = DevConfig {
            jwt_secret: Secret::new(PUBLIC_DEV_JWT_SECRET),
            ..opted_in.clone()
        };
        assert_eq!(
            refused_key(&public_secret_spelled_out).as_deref(),
            Some("jwt_secret")
        );
        let with_own_secret = DevConfig {
            jwt_secret: Secret::new("an-operator-chosen-secret-of-32-bytes!!"),
            ..opted_in
        };
        assert_eq!(refused_key(&with_own_secret), None);
    }
}
