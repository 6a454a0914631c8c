//! The single-process Warble stack: every service in one process, on
//! loopback, sharing one embedded database (stores and event log) and one
//! in-memory timeline cache.
//!
//! The `warble dev` command and the end-to-end tests both start the stack
//! through [`DevStack::start`], so tests exercise exactly what developers run.

pub mod demo;

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
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_gateway::{Gateway, GatewayConfig, RpcCounts};
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::event_log::EmbeddedEventLog;
use warble_mesh::telemetry::TelemetryConfig;
use warble_timeline_cache::EmbeddedTimelineCache;
use warble_timeline_svc::{HomeTimelines, TimelineSvc, TimelineSvcConfig};

/// Configuration of `warble dev` (keys are read like every service's:
/// defaults < `--config` file < `WARBLE_*` env vars).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DevConfig {
    /// Directory holding the stack's embedded database; kept across restarts.
    pub data_dir: PathBuf,
    /// Interface every service binds. Loopback by default: the dev stack has no auth yet.
    pub host: IpAddr,
    /// tweet-svc's gRPC port; 0 picks a free port.
    pub tweet_port: u16,
    /// graph-svc's gRPC port; 0 picks a free port.
    pub graph_port: u16,
    /// timeline-svc's gRPC port; 0 picks a free port.
    pub timeline_port: u16,
    /// fanout-svc's gRPC port; 0 picks a free port.
    pub fanout_port: u16,
    /// The GraphQL gateway's HTTP port; 0 picks a free port.
    pub gateway_port: u16,
    /// HS256 secret the dev gateway signs and verifies tokens with (at least
    /// 32 bytes). The default is public: never expose the dev stack.
    pub jwt_secret: String,
    /// Gateway abuse limits (see the gateway's `limits.*` keys).
    pub limits: LimitsConfig,
    /// Seconds in-flight calls get to finish on Ctrl-C.
    pub drain_timeout_secs: u64,
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
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tweet_port: 50051,
            graph_port: 50052,
            timeline_port: 50053,
            fanout_port: 50054,
            gateway_port: 8080,
            jwt_secret: "warble-dev-only-insecure-jwt-secret-0123456789".into(),
            limits: LimitsConfig::default(),
            drain_timeout_secs: 5,
            fanout: FanoutPolicyConfig::default(),
            consumer: ConsumerConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl ServiceConfig for DevConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.drain_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "drain_timeout_secs",
                "must be at least 1",
            ));
        }
        let ports = [
            ("tweet_port", self.tweet_port),
            ("graph_port", self.graph_port),
            ("timeline_port", self.timeline_port),
            ("fanout_port", self.fanout_port),
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
        // The gateway section is validated as the gateway itself would (the
        // service addresses are only known once the listeners are bound).
        let any = "127.0.0.1:1";
        self.gateway_config(SocketAddr::new(self.host, self.gateway_port), any, any, any)
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

impl DevConfig {
    /// The gateway's config inside the dev stack: development sign-up and
    /// GraphiQL on, tokens signed with `jwt_secret`.
    fn gateway_config(
        &self,
        listen_addr: SocketAddr,
        tweet: &str,
        graph: &str,
        timeline: &str,
    ) -> GatewayConfig {
        GatewayConfig {
            listen_addr,
            drain_timeout_secs: self.drain_timeout_secs,
            tweet_service_addr: tweet.into(),
            graph_service_addr: graph.into(),
            timeline_service_addr: timeline.into(),
            auth: AuthConfig {
                hs256_secret: self.jwt_secret.clone(),
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
    /// Where the GraphQL gateway listens (HTTP).
    pub gateway_addr: SocketAddr,
    /// Downstream calls the gateway made, by method.
    pub gateway_rpc_counts: Arc<RpcCounts>,
    /// The event log every service shares (tests inject entries through it).
    pub event_log: EmbeddedEventLog,
    /// The timeline cache fanout-svc writes and timeline-svc reads.
    pub timeline_cache: Arc<EmbeddedTimelineCache>,
    /// timeline-svc's home timeline builder (exposes its rebuild count).
    pub home_timelines: Arc<HomeTimelines>,
    /// fanout-svc's live counters.
    pub fanout_stats: Arc<FanoutStats>,
    stop: watch::Sender<bool>,
    servers: JoinSet<anyhow::Result<()>>,
}

impl DevStack {
    /// Opens the embedded stores and starts every service.
    pub async fn start(config: &DevConfig) -> anyhow::Result<Self> {
        let drain = Duration::from_secs(config.drain_timeout_secs);
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };

        // One database and one event log handle: stores append in their own
        // transactions, and the fan-out consumer wakes on every commit.
        let database = warble_mesh::embedded::open_shared(&config.data_dir).with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
        let event_log = EmbeddedEventLog::open(database).context("cannot open the event log")?;
        let tweets = warble_tweet_svc::TweetSvc::open_embedded_with_log(
            &warble_tweet_svc::TweetSvcConfig {
                data_dir: config.data_dir.clone(),
                ..Default::default()
            },
            event_log.clone(),
        )
        .context("cannot open tweet-svc's embedded store")?;
        let graph = warble_graph_svc::GraphSvc::open_embedded_with_log(
            &warble_graph_svc::GraphSvcConfig {
                data_dir: config.data_dir.clone(),
                ..Default::default()
            },
            event_log.clone(),
        )
        .context("cannot open graph-svc's embedded store")?;

        let tweet_listener = bind(config.host, config.tweet_port, "tweet-svc").await?;
        let graph_listener = bind(config.host, config.graph_port, "graph-svc").await?;
        let timeline_listener = bind(config.host, config.timeline_port, "timeline-svc").await?;
        let fanout_listener = bind(config.host, config.fanout_port, "fanout-svc").await?;
        let gateway_listener = bind(config.host, config.gateway_port, "gateway").await?;
        let tweet_addr = tweet_listener.local_addr()?;
        let graph_addr = graph_listener.local_addr()?;

        let timeline_cache = Arc::new(EmbeddedTimelineCache::new());
        let timeline = TimelineSvc::new(
            &TimelineSvcConfig {
                tweet_service_addr: tweet_addr.to_string(),
                graph_service_addr: graph_addr.to_string(),
                backend: warble_timeline_svc::config::Backend::Embedded,
                celebrity_threshold: config.fanout.celebrity_threshold,
                ..Default::default()
            },
            timeline_cache.clone(),
        )
        .context("cannot configure timeline-svc")?;
        let fanout = FanoutSvc::new(
            &FanoutSvcConfig {
                tweet_service_addr: tweet_addr.to_string(),
                graph_service_addr: graph_addr.to_string(),
                backend: warble_fanout_svc::config::Backend::Embedded,
                fanout: config.fanout.clone(),
                consumer: config.consumer.clone(),
                ..Default::default()
            },
            Arc::new(event_log.clone()),
            timeline_cache.clone(),
        )
        .context("cannot configure fanout-svc")?;
        let home_timelines = timeline.home();
        let fanout_stats = fanout.stats();
        let timeline_addr = timeline_listener.local_addr()?;
        let gateway_addr = gateway_listener.local_addr()?;
        let gateway = Gateway::new(
            &config.gateway_config(
                gateway_addr,
                &tweet_addr.to_string(),
                &graph_addr.to_string(),
                &timeline_addr.to_string(),
            ),
            Some(Arc::new(event_log.clone())),
        )
        .context("cannot configure the gateway")?;
        let gateway_rpc_counts = gateway.rpc_counts();

        let mut stack = Self {
            tweet_addr,
            graph_addr,
            timeline_addr,
            fanout_addr: fanout_listener.local_addr()?,
            gateway_addr,
            gateway_rpc_counts,
            event_log,
            timeline_cache,
            home_timelines,
            fanout_stats,
            stop,
            servers: JoinSet::new(),
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

    /// The line `warble dev` prints once every service accepts connections.
    pub fn ready_line(&self) -> String {
        format!(
            "warble ready gateway=http://{}/graphql tweet={} graph={} timeline={} fanout={}",
            self.gateway_addr,
            self.tweet_addr,
            self.graph_addr,
            self.timeline_addr,
            self.fanout_addr
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
