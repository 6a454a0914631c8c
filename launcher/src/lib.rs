//! The single-process Warble stack: every service in one process, on
//! loopback, sharing one embedded database in one data directory.
//!
//! The `warble dev` command and the end-to-end tests both start the stack
//! through [`DevStack::start`], so tests exercise exactly what developers run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::telemetry::TelemetryConfig;

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
    /// Seconds in-flight calls get to finish on Ctrl-C.
    pub drain_timeout_secs: u64,
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
            drain_timeout_secs: 5,
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
        if self.tweet_port != 0 && self.tweet_port == self.graph_port {
            return Err(ConfigError::invalid(
                "graph_port",
                "must differ from tweet_port",
            ));
        }
        self.telemetry.validate("telemetry")
    }
}

/// A running single-process stack.
pub struct DevStack {
    /// Where tweet-svc listens.
    pub tweet_addr: SocketAddr,
    /// Where graph-svc listens.
    pub graph_addr: SocketAddr,
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

        let tweet_config = warble_tweet_svc::TweetSvcConfig {
            data_dir: config.data_dir.clone(),
            ..Default::default()
        };
        let graph_config = warble_graph_svc::GraphSvcConfig {
            data_dir: config.data_dir.clone(),
            ..Default::default()
        };
        let tweets = warble_tweet_svc::TweetSvc::open_embedded(&tweet_config)
            .context("cannot open tweet-svc's embedded store")?;
        let graph = warble_graph_svc::GraphSvc::open_embedded(&graph_config)
            .context("cannot open graph-svc's embedded store")?;

        let tweet_listener = bind(config.host, config.tweet_port, "tweet-svc").await?;
        let graph_listener = bind(config.host, config.graph_port, "graph-svc").await?;
        let tweet_addr = tweet_listener.local_addr()?;
        let graph_addr = graph_listener.local_addr()?;

        let mut servers = JoinSet::new();
        servers.spawn({
            let shutdown = shutdown();
            async move {
                tweets
                    .serve(tweet_listener, drain, shutdown)
                    .await
                    .context("tweet-svc failed")
            }
        });
        servers.spawn({
            let shutdown = shutdown();
            async move {
                graph
                    .serve(graph_listener, drain, shutdown)
                    .await
                    .context("graph-svc failed")
            }
        });
        Ok(Self {
            tweet_addr,
            graph_addr,
            stop,
            servers,
        })
    }

    /// The line `warble dev` prints once every service accepts connections.
    pub fn ready_line(&self) -> String {
        format!(
            "warble ready tweet={} graph={}",
            self.tweet_addr, self.graph_addr
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
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{service}: cannot listen on {addr} (is another stack running? set the port to 0 for any free port)"))
}
