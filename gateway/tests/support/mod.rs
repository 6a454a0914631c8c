//! A gateway over a real backend, with no network between the gateway and
//! its services: tweet-svc and graph-svc on embedded stores in a temp dir,
//! timeline-svc on an in-memory timeline cache, notify-svc on the same
//! embedded database and event log, all reached through in-process
//! channels (protobuf encoding, handlers and status codes as over gRPC).
//! No fan-out runs: a home timeline holds what its first read rebuilt from
//! the stores. notify-svc does run: it consumes the events tweet-svc and
//! graph-svc append, as in `warble dev` (see `stack/src/lib.rs`). So does
//! media-svc, on the same database and event log, its files in the temp
//! dir, its URLs pointing at [`Backend::serve_http`]'s address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Executor as _;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warble_gateway::auth::Viewer;
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_gateway::downstream::Downstream;
use warble_gateway::loaders::Loaders;
use warble_gateway::resolvers::ClientAddr;
use warble_gateway::{Gateway, GatewayConfig};
use warble_media_svc::store::EmbeddedMediaStore;
use warble_media_svc::{Blobs, MediaSvc, MediaSvcConfig};
use warble_mesh::event_log::{EmbeddedEventLog, EventLog};
use warble_mesh::grpc::{MeshChannel, remote_channel, traced};
use warble_notify_svc::store::{EmbeddedNotificationStore, NotificationStore};
use warble_notify_svc::{NotifySvc, NotifySvcConfig};
use warble_proto::notify::v1 as notify;
use warble_proto::notify::v1::notify_service_client::NotifyServiceClient;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_timeline_cache::EmbeddedTimelineCache;

/// Deadline of every downstream call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Drain deadline of the servers that are never served (any value will do).
const DRAIN: Duration = Duration::from_secs(1);
/// How long notify-svc's consumer gets to finish its in-flight events when
/// it stops: an upper bound (it returns as soon as they are done), long
/// enough that a paused consumer has really stopped on a loaded machine.
const NOTIFY_DRAIN: Duration = Duration::from_secs(30);
/// How long notify-svc gets to apply the events appended so far.
#[allow(dead_code, reason = "only the notification tests use it")]
const NOTIFY_CATCH_UP: Duration = Duration::from_secs(60);

/// Where the gateway's notify-svc client sends its calls.
#[allow(dead_code, reason = "only the notification tests use it")]
pub enum NotifyAt {
    /// The real notify-svc of the backend, in process.
    Service,
    /// A network address, with this deadline on every call: a closed port,
    /// or a server that never answers.
    Address(SocketAddr, Duration),
    /// graph-svc, a real gRPC server that does not serve NotifyService: a
    /// gateway configured with the wrong address.
    GraphSvc,
}

/// The gateway, the backend behind it, and what a request needs.
pub struct Backend {
    /// The gateway under test.
    pub gateway: Gateway,
    /// The gateway's downstream clients (sharing its call counters), for
    /// the per-request loaders the HTTP layer would build.
    downstream: Downstream,
    /// Into tweet-svc's routes, for scenes built through its gRPC API (not
    /// counted among the gateway's calls).
    #[allow(dead_code, reason = "only the notification tests use it")]
    tweets: MeshChannel,
    /// notify-svc, consuming the event log (held so that it keeps running).
    #[allow(dead_code, reason = "only the notification tests read it")]
    notify: Notify,
    /// media-svc, consuming the event log; dropping it stops it.
    _media: Running,
    /// Where [`Backend::serve_http`] serves the gateway (media URLs point
    /// here), until it does.
    #[allow(dead_code, reason = "only the media and registration tests serve HTTP")]
    http: Option<std::net::TcpListener>,
    /// The gateway's configuration, for a gateway served over HTTP.
    #[allow(dead_code, reason = "only the media and registration tests serve HTTP")]
    config: GatewayConfig,
    _data: tempfile::TempDir,
}

/// The backend's notify-svc. Its consumer only runs while the server
/// serves, so it is served on a loopback port nobody calls; the gateway
/// and the tests reach it through in-process channels.
#[allow(dead_code, reason = "only the notification tests read it")]
struct Notify {
    parts: NotifyParts,
    /// notify-svc's own routes, for GetStatus (not the gateway's counted
    /// client: waiting for notify-svc is no call of the gateway's).
    status: NotifyServiceClient<MeshChannel>,
    /// The serving consumer and what stops it; `None` while paused.
    running: Option<Running>,
}

/// Serves `server` on a loopback port nobody calls (a consumer runs only
/// while its server serves) until the returned sender says stop or is dropped.
fn serve_unseen<S: warble_mesh::scaffold::Serve + Send + 'static>(server: S) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let (stop, mut stopped) = watch::channel(false);
    let shutdown = Box::pin(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let task = tokio::spawn(server.serve(listener, shutdown));
    (stop, task)
}

/// What notify-svc is built from, every time it is (re)started.
struct NotifyParts {
    config: NotifySvcConfig,
    store: Arc<dyn NotificationStore>,
    log: Arc<dyn EventLog>,
    /// graph-svc, which notify-svc asks about mentions and policies.
    graph: MeshChannel,
}

/// A serving notify-svc: sending `true` (or dropping the sender) stops it.
type Running = (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>);

impl NotifyParts {
    /// Builds a notify-svc server (a new one each time: serving consumes
    /// it) on the shared store, log and consumer group, and serves it;
    /// returns a channel into its routes and the running server.
    fn serve(&self) -> (MeshChannel, Running) {
        let server = NotifySvc::with_channel(
            &self.config,
            self.store.clone(),
            self.log.clone(),
            traced(self.graph.clone()),
        )
        .into_server(NOTIFY_DRAIN);
        let channel = server.local_channel(CALL_TIMEOUT);
        // Stops when told, or when the backend (and with it `stop`) is dropped.
        (channel, serve_unseen(server))
    }
}

impl Backend {
    /// A fresh backend with empty stores.
    pub fn start() -> Self {
        Self::start_with(NotifyAt::Service, false)
    }

    /// A fresh backend whose gateway calls notify-svc at `notify`, and,
    /// when `live`, serves subscriptions from the event log (spawn
    /// [`Gateway::live_feed`] to run them). Must run inside a Tokio
    /// runtime: notify-svc's consumer is spawned on it.
    pub fn start_with(notify: NotifyAt, live: bool) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let database = warble_mesh::embedded::open_shared(data.path()).expect("database");
        let log = EmbeddedEventLog::open(database.clone()).expect("event log");
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
        let parts = NotifyParts {
            config: NotifySvcConfig::default(),
            store: Arc::new(
                EmbeddedNotificationStore::open(database.clone()).expect("notification store"),
            ),
            log: Arc::new(log.clone()),
            graph: graph.local_channel(CALL_TIMEOUT),
        };
        let (notify_channel, running) = parts.serve();
        let notify_svc = Notify {
            parts,
            status: NotifyServiceClient::new(notify_channel.clone()),
            running: Some(running),
        };
        // The gateway's HTTP address is known before media-svc is built,
        // so media URLs name it.
        let http = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let http_addr = http.local_addr().expect("an address");
        let media_config = MediaSvcConfig {
            data_dir: data.path().join("media"),
            urls: warble_media_svc::config::UrlsConfig {
                base_url: format!("http://{http_addr}/media"),
                ..Default::default()
            },
            ..Default::default()
        };
        let media = MediaSvc::new(
            &media_config,
            Arc::new(EmbeddedMediaStore::open(database.clone()).expect("media store")),
            Blobs::open(&media_config.blobs, &data.path().join("media-blobs")).expect("blobs"),
            Arc::new(log.clone()),
        )
        .expect("media-svc")
        .into_server(DRAIN);
        let media_channel = media.local_channel(CALL_TIMEOUT);
        let media_running = serve_unseen(media);
        let notify_channel = match notify {
            NotifyAt::Service => notify_channel,
            NotifyAt::Address(addr, timeout) => {
                remote_channel(&addr.to_string(), timeout, timeout, None).expect("an address")
            }
            NotifyAt::GraphSvc => graph.local_channel(CALL_TIMEOUT),
        };
        let downstream = Downstream::from_channels(
            tweets.local_channel(CALL_TIMEOUT),
            graph.local_channel(CALL_TIMEOUT),
            timeline.local_channel(CALL_TIMEOUT),
            notify_channel,
            // No search-svc here: its fields are tested end to end on the
            // whole stack (`tests/src/search.rs`), where it has an index to
            // fill. graph-svc answers search calls UNIMPLEMENTED.
            graph.local_channel(CALL_TIMEOUT),
            media_channel,
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
            tweets: tweets.local_channel(CALL_TIMEOUT),
            notify: notify_svc,
            _media: media_running,
            http: Some(http),
            config,
            _data: data,
        }
    }
}

/// A gateway over the backend, served over HTTP by the real router
/// ([`Backend::serve_http`]); stops when dropped.
#[allow(dead_code, reason = "only the media and registration tests serve HTTP")]
pub struct Served {
    /// Where it listens: `http://{addr}/graphql`, `/media/...`.
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[allow(dead_code, reason = "only the media and registration tests serve HTTP")]
impl Backend {
    /// Serves a gateway over this backend (the same downstream clients,
    /// so its calls are counted with the others) over HTTP on the address
    /// media URLs name, with `limits` changed as `adjust` says. Once per
    /// backend.
    pub fn serve_http(&mut self, adjust: impl FnOnce(&mut LimitsConfig)) -> Served {
        let listener = self.http.take().expect("served once per backend");
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let mut config = self.config.clone();
        adjust(&mut config.limits);
        self.serve_on(listener, &config)
    }

    /// Serves another gateway over this backend (the same downstream
    /// clients) over HTTP on a fresh loopback port, configured by `config`
    /// (e.g. production auth): one more replica. As often as wanted.
    pub fn serve_replica(&self, config: &GatewayConfig) -> Served {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        self.serve_on(listener, config)
    }

    /// The gateway's configuration as this backend serves it (dev mode),
    /// to adjust for [`Backend::serve_replica`].
    pub fn config(&self) -> GatewayConfig {
        self.config.clone()
    }

    fn serve_on(&self, listener: tokio::net::TcpListener, config: &GatewayConfig) -> Served {
        let addr = listener.local_addr().expect("an address");
        let gateway =
            Gateway::with_downstream(config, None, self.downstream.clone()).expect("gateway");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gateway.serve(listener, async move {
            let _ = stopped.await;
        }));
        Served { addr, _stop: stop }
    }

    /// A token for `user_id`, as `Authorization` sends it.
    pub fn bearer(&self, user_id: u64) -> String {
        let token = self
            .gateway
            .issue_token(user_id)
            .expect("dev mode issues tokens");
        format!("Bearer {token}")
    }
}

/// What only the notification tests need.
#[allow(dead_code, reason = "only the notification tests use it")]
impl Backend {
    /// A tweet-svc client (its calls are not counted as the gateway's).
    pub fn tweet_svc(&self) -> TweetServiceClient<MeshChannel> {
        TweetServiceClient::new(self.tweets.clone())
    }

    /// notify-svc's GetStatus (not counted among the gateway's calls).
    pub async fn notify_status(&self) -> notify::GetStatusResponse {
        self.notify
            .status
            .clone()
            .get_status(notify::GetStatusRequest {})
            .await
            .expect("notify-svc status")
            .into_inner()
    }

    /// Waits until notify-svc has applied every event appended so far
    /// (its consumer lag is 0), failing the test after a deadline.
    pub async fn notifications_applied(&self) {
        assert!(
            self.notify.running.is_some(),
            "notify-svc is paused: it applies nothing"
        );
        let deadline = tokio::time::Instant::now() + NOTIFY_CATCH_UP;
        loop {
            let status = self.notify_status().await;
            if status.consumer_lag == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "notify-svc still {} events behind after {NOTIFY_CATCH_UP:?}: {status:?}",
                status.consumer_lag
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops notify-svc's consumer and waits until it has: from now on the
    /// events the other services append wait unapplied (as behind a
    /// lagging consumer) until [`Backend::resume_notify`]. notify-svc still
    /// answers calls.
    pub async fn pause_notify(&mut self) {
        let (stop, task) = self.notify.running.take().expect("notify-svc runs");
        let _ = stop.send(true);
        task.await
            .expect("the notify-svc task")
            .expect("notify-svc stops cleanly");
    }

    /// Starts notify-svc's consumer again, in the same consumer group: it
    /// applies what arrived while it was paused.
    pub fn resume_notify(&mut self) {
        assert!(self.notify.running.is_none(), "notify-svc already runs");
        let (_, running) = self.notify.parts.serve();
        self.notify.running = Some(running);
    }
}

impl Backend {
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
    #[allow(dead_code, reason = "the media tests do not use it")]
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
#[allow(dead_code, reason = "the media tests do not use it")]
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
