//! Test support: the single-process stack (exactly what `warble dev` runs)
//! on free loopback ports in a fresh temporary data directory, with typed
//! helpers over real gRPC clients.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;
use warble_proto::common::v1::PageRequest;
use warble_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use warble_proto::fanout::v1::{GetStatusRequest, GetStatusResponse};
use warble_proto::graph::v1 as graph;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::timeline::v1 as timeline;
use warble_proto::timeline::v1::timeline_service_client::TimelineServiceClient;
use warble_proto::tweet::v1 as tweet;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_stack::{DevConfig, DevStack};

pub mod cases;
pub mod engagement;
pub mod frontend;
pub mod graphql;
pub mod media;
pub mod notifications;
pub mod processes;
pub mod search;

/// How long asynchronous effects (fan-out) may take before a test fails.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// A running stack plus the temp dir holding its data.
pub struct TestStack {
    /// The stack; stop it with [`TestStack::stop`].
    pub stack: DevStack,
    /// Keeps the data directory alive for the test's duration.
    pub data_dir: tempfile::TempDir,
    config: DevConfig,
    tweets: TweetServiceClient<Channel>,
    graph: GraphServiceClient<Channel>,
    timeline: TimelineServiceClient<Channel>,
    fanout: FanoutServiceClient<Channel>,
}

impl TestStack {
    /// Starts every service on port 0 in a new temp dir with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts every service after `customize` adjusts the config.
    pub async fn start_with(customize: impl FnOnce(&mut DevConfig)) -> Self {
        warble_mesh::telemetry::init_for_tests();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = DevConfig::ephemeral(data_dir.path());
        customize(&mut config);
        Self::launch(config, data_dir).await
    }

    async fn launch(config: DevConfig, data_dir: tempfile::TempDir) -> Self {
        let stack = DevStack::start(&config).await.expect("stack starts");
        Self {
            tweets: TweetServiceClient::new(channel(stack.tweet_addr).await),
            graph: GraphServiceClient::new(channel(stack.graph_addr).await),
            timeline: TimelineServiceClient::new(channel(stack.timeline_addr).await),
            fanout: FanoutServiceClient::new(channel(stack.fanout_addr).await),
            stack,
            data_dir,
            config,
        }
    }

    /// Stops the stack gracefully and starts it again on the same data (new ports).
    pub async fn restart(self) -> Self {
        let Self {
            stack,
            data_dir,
            config,
            ..
        } = self;
        stack.stop().await.expect("stack stops cleanly");
        Self::launch(config, data_dir).await
    }

    /// Stops the stack gracefully.
    pub async fn stop(self) {
        self.stack.stop().await.expect("stack stops cleanly");
    }

    /// Every gRPC endpoint of the stack with the service it hosts.
    pub fn endpoints(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![
            (
                tweet::tweet_service_server::SERVICE_NAME,
                self.stack.tweet_addr,
            ),
            (
                graph::graph_service_server::SERVICE_NAME,
                self.stack.graph_addr,
            ),
            (
                timeline::timeline_service_server::SERVICE_NAME,
                self.stack.timeline_addr,
            ),
            (
                warble_proto::fanout::v1::fanout_service_server::SERVICE_NAME,
                self.stack.fanout_addr,
            ),
        ]
    }

    /// A tweet-svc client.
    pub fn tweets(&self) -> TweetServiceClient<Channel> {
        self.tweets.clone()
    }

    /// A graph-svc client.
    pub fn graph(&self) -> GraphServiceClient<Channel> {
        self.graph.clone()
    }

    /// A timeline-svc client.
    pub fn timeline(&self) -> TimelineServiceClient<Channel> {
        self.timeline.clone()
    }

    /// Creates a user and returns their id.
    pub async fn create_user(&self, username: &str) -> u64 {
        self.graph()
            .create_user(graph::CreateUserRequest {
                username: username.into(),
                display_name: username.to_uppercase(),
                bio: String::new(),
            })
            .await
            .expect("create user")
            .into_inner()
            .user
            .expect("user")
            .id
    }

    /// Makes `follower` follow `followee`.
    pub async fn follow(&self, follower_id: u64, followee_id: u64) {
        self.graph()
            .follow(graph::FollowRequest {
                follower_id,
                followee_id,
            })
            .await
            .expect("follow");
    }

    /// Makes `follower` unfollow `followee`.
    pub async fn unfollow(&self, follower_id: u64, followee_id: u64) {
        self.graph()
            .unfollow(graph::UnfollowRequest {
                follower_id,
                followee_id,
            })
            .await
            .expect("unfollow");
    }

    /// Posts a tweet and returns its id.
    pub async fn post(&self, author_id: u64, text: &str) -> u64 {
        self.tweets()
            .create_tweet(tweet::CreateTweetRequest {
                author_id,
                text: text.into(),
                ..Default::default()
            })
            .await
            .expect("create tweet")
            .into_inner()
            .tweet
            .expect("tweet")
            .id
    }

    /// Deletes a tweet as its author.
    pub async fn delete(&self, tweet_id: u64, author_id: u64) {
        self.tweets()
            .delete_tweet(tweet::DeleteTweetRequest {
                tweet_id,
                requester_id: author_id,
            })
            .await
            .expect("delete tweet");
    }

    /// One home timeline page: tweet ids and the next cursor.
    pub async fn home_page(
        &self,
        user_id: u64,
        cursor: &str,
        limit: u32,
    ) -> Result<(Vec<u64>, String), tonic::Status> {
        let response = self
            .timeline()
            .get_home_timeline(timeline::GetHomeTimelineRequest {
                user_id,
                page: Some(PageRequest {
                    cursor: cursor.into(),
                    limit,
                }),
            })
            .await?
            .into_inner();
        Ok((
            response
                .entries
                .iter()
                .map(|entry| entry.tweet_id)
                .collect(),
            response
                .page
                .map(|page| page.next_cursor)
                .unwrap_or_default(),
        ))
    }

    /// The whole home timeline, walking every page of `limit`.
    pub async fn home_all(&self, user_id: u64, limit: u32) -> Vec<u64> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let (ids, next) = self
                .home_page(user_id, &cursor, limit)
                .await
                .expect("home timeline page");
            all.extend(ids);
            if next.is_empty() {
                return all;
            }
            assert!(all.len() < 100_000, "paging does not terminate");
            cursor = next;
        }
    }

    /// fanout-svc's status.
    pub async fn fanout_status(&self) -> GetStatusResponse {
        self.fanout
            .clone()
            .get_status(GetStatusRequest {})
            .await
            .expect("fan-out status")
            .into_inner()
    }

    /// Waits until fan-out and notify-svc have applied and acknowledged
    /// every event so far.
    pub async fn settle(&self) {
        eventually("fan-out, notifications and search to catch up", || async {
            self.fanout_status().await.consumer_lag == 0
                && self.stack.notify_lag().await.is_ok_and(|lag| lag == 0)
                && self.stack.media_lag().await.is_ok_and(|lag| lag == 0)
                && self
                    .stack
                    .search_lag()
                    .await
                    .is_ok_and(|lag| lag == Some(0))
        })
        .await;
    }

    /// A GraphQL client of the stack's gateway.
    pub fn graphql(&self) -> graphql::GraphqlClient {
        graphql::GraphqlClient::new(self.stack.gateway_addr)
    }

    /// The config the stack runs with.
    pub fn config(&self) -> &DevConfig {
        &self.config
    }
}

/// Installs test telemetry once per test process.
pub fn telemetry_for_tests() {
    warble_mesh::telemetry::init_for_tests();
}

/// Polls `condition` until it holds, failing the test after [`EVENTUALLY`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    let mut pause = Duration::from_millis(2);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
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
