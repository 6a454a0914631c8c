//! The stack's public APIs as a client sees them: gRPC (tonic) and GraphQL
//! over HTTP (reqwest), with the few calls the scenarios make.

use std::net::SocketAddr;

use anyhow::Context as _;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use tonic::transport::Channel;
use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::timeline::v1::GetHomeTimelineRequest;
use warble_proto::timeline::v1::timeline_service_client::TimelineServiceClient;
use warble_proto::tweet::v1::CreateTweetRequest;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

use crate::stack::BenchStack;

/// A hydrated home timeline page: what a frontend's feed screen asks for.
pub const HOME_QUERY: &str = "query Home($first: Int) { homeTimeline(first: $first) { \
    edges { cursor retweetedBy { id username } node { id text createdAt hashtags mentions likeCount retweetCount replyCount \
    viewerHasLiked viewerHasRetweeted author { id username displayName } } } \
    pageInfo { hasNextPage endCursor } } }";

/// A user's own tweets, hydrated the same way.
pub const USER_TIMELINE_QUERY: &str = "query User($username: String!, $first: Int) { \
    userTimeline(username: $username, first: $first) { edges { cursor node { id text createdAt \
    likeCount retweetCount viewerHasLiked author { id username displayName } } } \
    pageInfo { hasNextPage endCursor } } }";

/// The cheapest query the gateway answers: HTTP, parsing and auth only.
pub const TRIVIAL_QUERY: &str = "{ __typename }";

/// Posting a tweet.
pub const POST_MUTATION: &str = "mutation Post($text: String!) { postTweet(text: $text) { id } }";

/// gRPC clients of the stack's services (cheap to clone: one HTTP/2 connection each).
#[derive(Clone)]
pub struct Grpc {
    /// tweet-svc.
    pub tweets: TweetServiceClient<Channel>,
    /// graph-svc.
    pub graph: GraphServiceClient<Channel>,
    /// timeline-svc.
    pub timeline: TimelineServiceClient<Channel>,
}

impl Grpc {
    /// Connects to every service of `stack`.
    pub async fn connect(stack: &BenchStack) -> anyhow::Result<Self> {
        Ok(Self {
            tweets: TweetServiceClient::new(channel(stack.tweet_addr).await?)
                .max_decoding_message_size(64 << 20),
            graph: GraphServiceClient::new(channel(stack.graph_addr).await?)
                .max_decoding_message_size(64 << 20),
            timeline: TimelineServiceClient::new(channel(stack.timeline_addr).await?),
        })
    }

    /// Posts `text` as `author_id`; returns the tweet id.
    pub async fn post(&self, author_id: u64, text: &str) -> anyhow::Result<u64> {
        let tweet = self
            .tweets
            .clone()
            .create_tweet(CreateTweetRequest {
                author_id,
                text: text.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .tweet
            .context("CreateTweet returned no tweet")?;
        Ok(tweet.id)
    }

    /// The first `limit` tweet ids of `user_id`'s home timeline.
    pub async fn home(&self, user_id: u64, limit: u32) -> anyhow::Result<Vec<u64>> {
        let response = self
            .timeline
            .clone()
            .get_home_timeline(GetHomeTimelineRequest {
                user_id,
                page: Some(PageRequest {
                    cursor: String::new(),
                    limit,
                }),
            })
            .await?
            .into_inner();
        Ok(response
            .entries
            .iter()
            .map(|entry| entry.tweet_id)
            .collect())
    }
}

/// Opens an HTTP/2 channel to `addr`.
pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach {addr}"))
}

/// GraphQL over HTTP.
#[derive(Clone)]
pub struct Graphql {
    http: reqwest::Client,
    url: String,
}

impl Graphql {
    /// A client of the gateway at `addr` (keeps connections alive and reuses them).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .build()
                .expect("an HTTP client"),
            url: format!("http://{addr}/graphql"),
        }
    }

    /// Sends a request; fails on transport errors, non-200 answers and GraphQL errors.
    pub async fn request(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let mut body: Value = response.json().await?;
        if !status.is_success() {
            anyhow::bail!("gateway answered {status}: {body}");
        }
        if let Some(errors) = body.get("errors") {
            anyhow::bail!("GraphQL errors: {errors}");
        }
        Ok(body.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    /// Posts a tweet as the token's user; returns its id.
    pub async fn post(&self, token: &str, text: &str) -> anyhow::Result<u64> {
        let data = self
            .request(Some(token), POST_MUTATION, json!({ "text": text }))
            .await?;
        data["postTweet"]["id"]
            .as_str()
            .context("postTweet returned no id")?
            .parse()
            .context("postTweet returned a non-numeric id")
    }

    /// Sends a request and reads only what `D` names from its `data`. The
    /// load generator shares the machine with the stack: skipping the
    /// fields it does not look at (still parsed, never allocated) leaves
    /// more CPU to the server. Fails like [`Graphql::request`].
    async fn request_typed<D: DeserializeOwned>(
        &self,
        token: &str,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<D> {
        let response = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            anyhow::bail!(
                "gateway answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let envelope: Envelope<D> = serde_json::from_slice(&body)?;
        if let Some(errors) = envelope.errors {
            anyhow::bail!("GraphQL errors: {errors}");
        }
        envelope
            .data
            .context("a response with neither data nor errors")
    }

    /// The viewer's hydrated home timeline; returns the number of edges.
    pub async fn home(&self, token: &str, first: u32) -> anyhow::Result<usize> {
        let data: HomeData = self
            .request_typed(token, HOME_QUERY, json!({ "first": first }))
            .await?;
        Ok(data
            .home_timeline
            .context("homeTimeline is null")?
            .edges
            .len())
    }

    /// `username`'s hydrated user timeline, as the token's viewer; returns the number of edges.
    pub async fn user_timeline(
        &self,
        token: &str,
        username: &str,
        first: u32,
    ) -> anyhow::Result<usize> {
        let data: UserTimelineData = self
            .request_typed(
                token,
                USER_TIMELINE_QUERY,
                json!({ "username": username, "first": first }),
            )
            .await?;
        Ok(data
            .user_timeline
            .context("userTimeline is null")?
            .edges
            .len())
    }

    /// `{ __typename }`.
    pub async fn trivial(&self) -> anyhow::Result<()> {
        let data = self.request(None, TRIVIAL_QUERY, json!({})).await?;
        anyhow::ensure!(data["__typename"] == "Query", "unexpected answer {data}");
        Ok(())
    }
}

/// A GraphQL response: `data` as `D`, any `errors` kept whole to report them.
#[derive(Deserialize)]
struct Envelope<D> {
    data: Option<D>,
    errors: Option<Value>,
}

/// A connection's edges, counted, not kept.
#[derive(Deserialize)]
struct Connection {
    edges: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct HomeData {
    #[serde(rename = "homeTimeline")]
    home_timeline: Option<Connection>,
}

#[derive(Deserialize)]
struct UserTimelineData {
    #[serde(rename = "userTimeline")]
    user_timeline: Option<Connection>,
}
