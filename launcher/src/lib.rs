//! The single-process Warble stack: every service in one process, on
//! loopback, sharing one embedded database (stores and event log) and one
//! in-memory timeline cache.
//!
//! The `warble dev` command and the end-to-end tests both start the stack
//! through [`DevStack::start`], so tests exercise exactly what developers run.

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
        self.telemetry.validate("telemetry")
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

        let mut stack = Self {
            tweet_addr,
            graph_addr,
            timeline_addr: timeline_listener.local_addr()?,
            fanout_addr: fanout_listener.local_addr()?,
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
        Ok(stack)
    }

    /// The line `warble dev` prints once every service accepts connections.
    pub fn ready_line(&self) -> String {
        format!(
            "warble ready tweet={} graph={} timeline={} fanout={}",
            self.tweet_addr, self.graph_addr, self.timeline_addr, self.fanout_addr
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
