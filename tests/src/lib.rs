//! Test support: the single-process stack on free loopback ports in a fresh
//! temporary data directory, with typed clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tonic::transport::Channel;
use warble_launcher::{DevConfig, DevStack};
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

/// A running stack plus the temp dir holding its data.
pub struct TestStack {
    /// The stack; stop it with [`DevStack::stop`].
    pub stack: DevStack,
    /// Keeps the data directory alive for the test's duration.
    pub data_dir: tempfile::TempDir,
}

impl TestStack {
    /// Starts every service on port 0 in a new temp dir.
    pub async fn start() -> Self {
        warble_mesh::telemetry::init_for_tests();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let stack = DevStack::start(&Self::config(&data_dir))
            .await
            .expect("stack starts");
        Self { stack, data_dir }
    }

    /// Stops the stack gracefully and starts it again on the same data (new ports).
    pub async fn restart(self) -> Self {
        let Self { stack, data_dir } = self;
        stack.stop().await.expect("stack stops cleanly");
        let stack = DevStack::start(&Self::config(&data_dir))
            .await
            .expect("stack restarts");
        Self { stack, data_dir }
    }

    fn config(data_dir: &tempfile::TempDir) -> DevConfig {
        DevConfig {
            data_dir: data_dir.path().to_owned(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tweet_port: 0,
            graph_port: 0,
            ..DevConfig::default()
        }
    }

    /// Every gRPC endpoint of the stack with the service it hosts.
    pub fn endpoints(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![
            (
                warble_proto::tweet::v1::tweet_service_server::SERVICE_NAME,
                self.stack.tweet_addr,
            ),
            (
                warble_proto::graph::v1::graph_service_server::SERVICE_NAME,
                self.stack.graph_addr,
            ),
        ]
    }

    /// A tweet-svc client.
    pub async fn tweets(&self) -> TweetServiceClient<Channel> {
        TweetServiceClient::new(channel(self.stack.tweet_addr).await)
    }

    /// A graph-svc client.
    pub async fn graph(&self) -> GraphServiceClient<Channel> {
        GraphServiceClient::new(channel(self.stack.graph_addr).await)
    }
}

/// A connected channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects")
}
