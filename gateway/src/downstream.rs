//! Clients of the services behind the gateway, traced and counted.
//!
//! Every call carries the caller's trace context and a deadline, and is
//! counted per gRPC method so tests (and `/metrics`) can show that a page of
//! N tweets costs a constant number of downstream calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use warble_mesh::grpc::{MeshChannel, remote_channel};
use warble_mesh::telemetry::TraceContextInterceptor;
use warble_mesh::tls::MeshTls;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::media::v1::media_service_client::MediaServiceClient;
use warble_proto::notify::v1::notify_service_client::NotifyServiceClient;
use warble_proto::search::v1::search_service_client::SearchServiceClient;
use warble_proto::timeline::v1::timeline_service_client::TimelineServiceClient;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

/// Calls made per gRPC method (`/warble.tweet.v1.TweetService/GetTweets` ...).
#[derive(Debug, Default)]
pub struct RpcCounts {
    by_method: Mutex<BTreeMap<String, u64>>,
}

impl RpcCounts {
    fn record(&self, method: &str) {
        let mut by_method = self
            .by_method
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Look up before inserting: the key is allocated once per method,
        // not once per call.
        match by_method.get_mut(method) {
            Some(count) => *count += 1,
            None => {
                by_method.insert(method.to_owned(), 1);
            }
        }
    }

    /// A copy of the counters, keyed by the method's short name (`GetTweets`).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let by_method = self
            .by_method
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        by_method
            .iter()
            .map(|(path, count)| (path.rsplit('/').next().unwrap_or(path).to_owned(), *count))
            .collect()
    }

    /// The full counters, keyed by path, for `/metrics`.
    pub fn by_path(&self) -> BTreeMap<String, u64> {
        self.by_method
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A channel that counts each call by method before sending it.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    counts: Arc<RpcCounts>,
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.counts.record(request.uri().path());
        self.inner.call(request)
    }
}

/// The channel type every downstream client uses.
pub type DownstreamChannel = InterceptedService<Counted<MeshChannel>, TraceContextInterceptor>;

/// The gateway's downstream clients (cheap to clone).
#[derive(Debug, Clone)]
pub struct Downstream {
    /// tweet-svc.
    pub tweets: TweetServiceClient<DownstreamChannel>,
    /// graph-svc.
    pub graph: GraphServiceClient<DownstreamChannel>,
    /// timeline-svc.
    pub timeline: TimelineServiceClient<DownstreamChannel>,
    /// notify-svc.
    pub notify: NotifyServiceClient<DownstreamChannel>,
    /// search-svc.
    pub search: SearchServiceClient<DownstreamChannel>,
    /// media-svc, for every call but uploads.
    pub media: MediaServiceClient<DownstreamChannel>,
    /// media-svc, for uploads: an upload's deadline covers streaming the
    /// whole file and media-svc storing it, far longer than a lookup's, and a
    /// channel's deadline is fixed when it is built. The same channel as
    /// `media` unless [`Downstream::with_upload_channel`] gives another.
    pub media_uploads: MediaServiceClient<DownstreamChannel>,
    /// The raw channels by service name, for health checks.
    pub channels: Vec<(&'static str, DownstreamChannel)>,
    /// Calls made so far.
    pub counts: Arc<RpcCounts>,
}

fn counted(channel: MeshChannel, counts: &Arc<RpcCounts>) -> DownstreamChannel {
    InterceptedService::new(
        Counted {
            inner: channel,
            counts: counts.clone(),
        },
        TraceContextInterceptor,
    )
}

impl Downstream {
    /// Lazily connecting clients to the six services; every call has
    /// `timeout`, except uploads to media-svc, which have `upload_timeout`.
    /// With `tls`, every channel speaks mutual TLS.
    #[allow(clippy::too_many_arguments, reason = "one address per service")]
    pub fn connect(
        tweet_addr: &str,
        graph_addr: &str,
        timeline_addr: &str,
        notify_addr: &str,
        search_addr: &str,
        media_addr: &str,
        timeout: Duration,
        upload_timeout: Duration,
        tls: Option<&MeshTls>,
    ) -> Result<Self, tonic::transport::Error> {
        let connect_timeout = Duration::from_secs(3);
        let channel =
            |addr: &str, timeout: Duration| remote_channel(addr, connect_timeout, timeout, tls);
        Ok(Self::from_channels(
            channel(tweet_addr, timeout)?,
            channel(graph_addr, timeout)?,
            channel(timeline_addr, timeout)?,
            channel(notify_addr, timeout)?,
            channel(search_addr, timeout)?,
            channel(media_addr, timeout)?,
        )
        .with_upload_channel(channel(media_addr, upload_timeout)?))
    }

    /// Clients over given channels (in-process ones, in the single-process
    /// stack). Uploads go through `media` too, with its deadline: give them
    /// a longer one with [`Downstream::with_upload_channel`].
    pub fn from_channels(
        tweets: MeshChannel,
        graph: MeshChannel,
        timeline: MeshChannel,
        notify: MeshChannel,
        search: MeshChannel,
        media: MeshChannel,
    ) -> Self {
        let counts = Arc::new(RpcCounts::default());
        let tweets = counted(tweets, &counts);
        let graph = counted(graph, &counts);
        let timeline = counted(timeline, &counts);
        let notify = counted(notify, &counts);
        let search = counted(search, &counts);
        let media = counted(media, &counts);
        Self {
            tweets: TweetServiceClient::new(tweets.clone()),
            graph: GraphServiceClient::new(graph.clone()),
            timeline: TimelineServiceClient::new(timeline.clone()),
            notify: NotifyServiceClient::new(notify.clone()),
            search: SearchServiceClient::new(search.clone()),
            media: MediaServiceClient::new(media.clone()),
            media_uploads: MediaServiceClient::new(media.clone()),
            channels: vec![
                ("tweet-svc", tweets),
                ("graph-svc", graph),
                ("timeline-svc", timeline),
                ("notify-svc", notify),
                ("search-svc", search),
                ("media-svc", media),
            ],
            counts,
        }
    }

    /// Sends uploads to media-svc through `channel` (to the same media-svc
    /// as the other media calls, with the upload deadline), counted with
    /// the other calls.
    #[must_use]
    pub fn with_upload_channel(mut self, channel: MeshChannel) -> Self {
        self.media_uploads = MediaServiceClient::new(counted(channel, &self.counts));
        self
    }
}
