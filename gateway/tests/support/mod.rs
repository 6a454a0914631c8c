//! A gateway over a real backend, with no network: tweet-svc and graph-svc
//! on embedded stores in a temp dir, timeline-svc on an in-memory timeline
//! cache, all reached through in-process channels (protobuf encoding,
//! handlers and status codes as over gRPC). No fan-out runs: a home timeline
//! holds what its first read rebuilt from the stores. No notify-svc runs
//! either: [`Backend::start`] points its client at graph-svc, and
//! [`Backend::start_with`] at a stand-in of the test's choosing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Executor as _;
use serde_json::{Value, json};
use warble_gateway::auth::Viewer;
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_gateway::downstream::Downstream;
use warble_gateway::loaders::Loaders;
use warble_gateway::resolvers::ClientAddr;
use warble_gateway::{Gateway, GatewayConfig};
use warble_mesh::event_log::{EmbeddedEventLog, EventLog};
use warble_mesh::grpc::{GrpcServer, traced};
use warble_timeline_cache::EmbeddedTimelineCache;

/// Deadline of every downstream call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The servers are never served, so never drained; any value will do.
pub const DRAIN: Duration = Duration::from_secs(1);

/// The gateway, the backend behind it, and what a request needs.
pub struct Backend {
    /// The gateway under test.
    pub gateway: Gateway,
    /// The gateway's downstream clients (sharing its call counters), for
    /// the per-request loaders the HTTP layer would build.
    downstream: Downstream,
    /// The event log the services append to (and, when started `live`,
    /// the gateway's live feed tails).
    #[allow(dead_code, reason = "only the notification tests append to it")]
    pub events: EmbeddedEventLog,
    _data: tempfile::TempDir,
}

impl Backend {
    /// A fresh backend with empty stores.
    pub fn start() -> Self {
        Self::start_with(None, false)
    }

    /// A fresh backend whose notify-svc is `notify` (graph-svc, which
    /// answers every notification call UNIMPLEMENTED, when `None`), and
    /// whose gateway, when `live`, serves subscriptions from the event log
    /// (spawn [`Gateway::live_feed`] to run them).
    pub fn start_with(notify: Option<GrpcServer>, live: bool) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let database = warble_mesh::embedded::open_shared(data.path()).expect("database");
        let log = EmbeddedEventLog::open(database).expect("event log");
        let tweets = warble_tweet_svc::TweetSvc::open_embedded_with_log(
            &warble_tweet_svc::TweetSvcConfig {
                data_dir: data.path().to_owned(),
                ..Default::default()
            },
            log.clone(),
        )
        .expect("tweet-svc")
        .into_grpc_server(DRAIN);
        let graph = warble_graph_svc::GraphSvc::open_embedded_with_log(
            &warble_graph_svc::GraphSvcConfig {
                data_dir: data.path().to_owned(),
                ..Default::default()
            },
            log.clone(),
        )
        .expect("graph-svc")
        .into_grpc_server(DRAIN);
        let timeline = warble_timeline_svc::TimelineSvc::with_channels(
            &warble_timeline_svc::TimelineSvcConfig::default(),
            Arc::new(EmbeddedTimelineCache::new()),
            traced(tweets.local_channel(CALL_TIMEOUT)),
            traced(graph.local_channel(CALL_TIMEOUT)),
        )
        .into_grpc_server(DRAIN);
        // Without a stand-in, notify-svc calls go to graph-svc, which
        // answers them UNIMPLEMENTED (counted all the same, so a test can
        // show a refusal made no notify-svc call).
        let downstream = Downstream::from_channels(
            tweets.local_channel(CALL_TIMEOUT),
            graph.local_channel(CALL_TIMEOUT),
            timeline.local_channel(CALL_TIMEOUT),
            notify
                .as_ref()
                .unwrap_or(&graph)
                .local_channel(CALL_TIMEOUT),
        );
        let config = GatewayConfig {
            auth: AuthConfig {
                hs256_secret: "resolver-tests-secret-0123456789abcdef".into(),
                dev_mode: true,
                ..AuthConfig::default()
            },
            limits: LimitsConfig {
                mutation_burst: 1_000,
                mutations_per_minute: 1_000,
                ..LimitsConfig::default()
            },
            ..GatewayConfig::default()
        };
        let feed_log = live.then(|| Arc::new(log.clone()) as Arc<dyn EventLog>);
        let gateway =
            Gateway::with_downstream(&config, feed_log, downstream.clone()).expect("gateway");
        Self {
            gateway,
            downstream,
            events: log,
            _data: data,
        }
    }

    /// Executes `query` as `viewer` (`None`: signed out) with the request
    /// data the HTTP layer adds, and returns the response as clients see
    /// it: `data`, and `errors` when there are any.
    pub async fn execute(&self, viewer: Option<u64>, query: &str, variables: Value) -> Value {
        let request = self
            .request(viewer, query)
            .variables(async_graphql::Variables::from_json(variables));
        let response = self.gateway.executor().execute(request).await;
        serde_json::to_value(&response).expect("a response serializes")
    }

    /// A request as `viewer` with the request data the HTTP layer (or, for
    /// a subscription, the WebSocket connection) adds.
    pub fn request(&self, viewer: Option<u64>, query: &str) -> async_graphql::Request {
        let viewer = viewer.map(|user_id| Viewer { user_id });
        let request = async_graphql::Request::new(query)
            .data(Loaders::new(&self.downstream, viewer))
            .data(ClientAddr("127.0.0.1".into()));
        match viewer {
            Some(viewer) => request.data(viewer),
            None => request,
        }
    }

    /// Like [`Backend::execute`], failing the test on any error; returns `data`.
    pub async fn data(&self, viewer: Option<u64>, query: &str, variables: Value) -> Value {
        let response = self.execute(viewer, query, variables).await;
        assert!(
            response.get("errors").is_none(),
            "unexpected errors: {response:#}"
        );
        response["data"].clone()
    }

    /// Signs up `username`; returns their id.
    pub async fn sign_up(&self, username: &str) -> u64 {
        let data = self
            .data(
                None,
                "mutation($u: String!) { signUp(username: $u, displayName: $u) { user { id } } }",
                json!({ "u": username }),
            )
            .await;
        id(&data["signUp"]["user"]["id"])
    }

    /// `follower` follows `followee`.
    pub async fn follow(&self, follower: u64, followee: u64) {
        self.data(
            Some(follower),
            "mutation($id: ID!) { follow(userId: $id) { id } }",
            json!({ "id": followee.to_string() }),
        )
        .await;
    }

    /// Posts `text` as `author`; returns the tweet's id.
    pub async fn post(&self, author: u64, text: &str) -> String {
        let data = self
            .data(
                Some(author),
                "mutation($t: String!) { postTweet(text: $t) { id } }",
                json!({ "t": text }),
            )
            .await;
        data["postTweet"]["id"].as_str().expect("id").to_owned()
    }

    /// Downstream calls the gateway has made so far, by method.
    pub fn rpc_counts(&self) -> BTreeMap<String, u64> {
        self.gateway.rpc_counts().snapshot()
    }
}

/// A GraphQL `ID` as a number.
pub fn id(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{value} is not an id"))
}

/// The node ids of a connection's edges, in page order.
pub fn node_ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `(extensions.code, extensions.field)` of each error, `field` empty when absent.
pub fn error_codes(response: &Value) -> Vec<(String, String)> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    (
                        text(&error["extensions"]["code"]),
                        text(&error["extensions"]["field"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
