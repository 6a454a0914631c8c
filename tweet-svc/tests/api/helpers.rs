//! Spawning the service and typed request helpers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog as _};
use warble_mesh::grpc::ServeError;
use warble_proto::events::v1::Event;
use warble_proto::tweet::v1 as pb;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_tweet_svc::{TweetSvc, TweetSvcConfig};

/// A running tweet-svc and a client connected to it.
pub struct TestApp {
    pub client: TweetServiceClient<Channel>,
    /// A handle on the event log in the service's database, to read what it published.
    pub log: EmbeddedEventLog,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServeError>>,
    /// Deletes the data directory when the app is dropped (None when the test owns it).
    _temp_dir: Option<TempDir>,
}

/// Starts tweet-svc on a fresh data directory.
pub async fn spawn_app() -> TestApp {
    let temp_dir = tempfile::tempdir().expect("temp dir");
    let mut app = spawn_app_in(temp_dir.path()).await;
    app._temp_dir = Some(temp_dir);
    app
}

/// Starts tweet-svc on `data_dir`, which may hold data from an earlier run.
pub async fn spawn_app_in(data_dir: &Path) -> TestApp {
    warble_mesh::telemetry::init_for_tests();
    let config = TweetSvcConfig {
        data_dir: data_dir.to_owned(),
        ..TweetSvcConfig::default()
    };
    let service = TweetSvc::open_embedded(&config).expect("open tweet-svc");
    // The same process gets the same database handle, so this log sees the
    // service's appends.
    let database = warble_mesh::embedded::open_shared(data_dir).expect("open database");
    let log = EmbeddedEventLog::open(database).expect("open event log");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(service.into_grpc_server(Duration::from_secs(5)).serve(
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let client = TweetServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    TestApp {
        client,
        log,
        shutdown,
        server,
        _temp_dir: None,
    }
}

/// Distinct user ids across the tests of this binary (they share nothing,
/// but distinct ids make failures easier to read).
pub fn next_user_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A create request with only author and text set.
pub fn new_tweet(author_id: u64, text: &str) -> pb::CreateTweetRequest {
    pb::CreateTweetRequest {
        author_id,
        text: text.to_owned(),
        ..pb::CreateTweetRequest::default()
    }
}

/// Asserts an INVALID_ARGUMENT naming `field`.
pub fn assert_invalid(result: Result<impl std::fmt::Debug, Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        warble_mesh::status::violated_field(&status).as_deref(),
        Some(field),
        "{status:?}"
    );
}

/// Asserts a failure with `code`, returning the status for further checks.
pub fn assert_code(result: Result<impl std::fmt::Debug, Status>, code: Code) -> Status {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

impl TestApp {
    /// Stops the server the way SIGTERM would and waits until it has drained.
    pub async fn stop(self) {
        drop(self.client);
        let _ = self.shutdown.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }

    pub async fn try_create(
        &self,
        request: pb::CreateTweetRequest,
    ) -> Result<pb::CreateTweetResponse, Status> {
        Ok(self
            .client
            .clone()
            .create_tweet(request)
            .await?
            .into_inner())
    }

    /// Creates a tweet that must succeed as a new one.
    pub async fn create(&self, request: pb::CreateTweetRequest) -> pb::Tweet {
        let response = self.try_create(request).await.expect("create tweet");
        assert!(!response.replayed);
        response.tweet.expect("tweet")
    }

    /// CreateTweets: one result per request, in order.
    pub async fn try_create_many(
        &self,
        tweets: Vec<pb::CreateTweetRequest>,
    ) -> Result<Vec<pb::CreateTweetResponse>, Status> {
        Ok(self
            .client
            .clone()
            .create_tweets(pb::CreateTweetsRequest { tweets })
            .await?
            .into_inner()
            .results)
    }

    pub async fn post(&self, author_id: u64, text: &str) -> pb::Tweet {
        self.create(new_tweet(author_id, text)).await
    }

    pub async fn try_delete(
        &self,
        tweet_id: u64,
        requester_id: u64,
    ) -> Result<pb::DeleteTweetResponse, Status> {
        Ok(self
            .client
            .clone()
            .delete_tweet(pb::DeleteTweetRequest {
                tweet_id,
                requester_id,
            })
            .await?
            .into_inner())
    }

    pub async fn try_get(&self, tweet_ids: Vec<u64>) -> Result<Vec<pb::TweetLookup>, Status> {
        Ok(self
            .client
            .clone()
            .get_tweets(pb::GetTweetsRequest {
                tweet_ids,
                ..Default::default()
            })
            .await?
            .into_inner()
            .results)
    }

    pub async fn try_authors_tweets(
        &self,
        author_ids: Vec<u64>,
        before_tweet_id: u64,
        limit_per_author: u32,
    ) -> Result<Vec<pb::AuthorTweets>, Status> {
        Ok(self
            .client
            .clone()
            .list_authors_tweets(pb::ListAuthorsTweetsRequest {
                author_ids,
                before_tweet_id,
                limit_per_author,
                include_retweets: false,
            })
            .await?
            .into_inner()
            .authors)
    }

    pub async fn get(&self, tweet_id: u64) -> pb::TweetLookup {
        self.try_get(vec![tweet_id])
            .await
            .expect("get tweets")
            .remove(0)
    }

    pub async fn try_counts(&self, tweet_ids: Vec<u64>) -> Result<Vec<pb::TweetCounts>, Status> {
        Ok(self
            .client
            .clone()
            .get_counts(pb::GetCountsRequest { tweet_ids })
            .await?
            .into_inner()
            .counts)
    }

    pub async fn counts(&self, tweet_id: u64) -> pb::TweetCounts {
        self.try_counts(vec![tweet_id])
            .await
            .expect("get counts")
            .remove(0)
    }

    pub async fn try_viewer_state(
        &self,
        viewer_id: u64,
        tweet_ids: Vec<u64>,
    ) -> Result<Vec<pb::ViewerTweetState>, Status> {
        Ok(self
            .client
            .clone()
            .get_viewer_state(pb::GetViewerStateRequest {
                viewer_id,
                tweet_ids,
            })
            .await?
            .into_inner()
            .states)
    }

    pub async fn try_list(
        &self,
        author_id: u64,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ListUserTweetsResponse, Status> {
        Ok(self
            .client
            .clone()
            .list_user_tweets(pb::ListUserTweetsRequest {
                author_id,
                page: Some(warble_proto::common::v1::PageRequest {
                    cursor: cursor.to_owned(),
                    limit,
                }),
                include_retweets: false,
            })
            .await?
            .into_inner())
    }

    /// Every page of the author's tweets, as ids, following cursors.
    pub async fn list_all_ids(&self, author_id: u64, limit: u32) -> Vec<u64> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .try_list(author_id, &cursor, limit)
                .await
                .expect("list user tweets");
            ids.extend(page.tweets.iter().map(|tweet| tweet.id));
            cursor = page.page.expect("page").next_cursor;
            if cursor.is_empty() {
                return ids;
            }
        }
    }

    pub async fn like(&self, user_id: u64, tweet_id: u64) -> Result<pb::LikeTweetResponse, Status> {
        Ok(self
            .client
            .clone()
            .like_tweet(pb::LikeTweetRequest { user_id, tweet_id })
            .await?
            .into_inner())
    }

    pub async fn unlike(
        &self,
        user_id: u64,
        tweet_id: u64,
    ) -> Result<pb::UnlikeTweetResponse, Status> {
        Ok(self
            .client
            .clone()
            .unlike_tweet(pb::UnlikeTweetRequest { user_id, tweet_id })
            .await?
            .into_inner())
    }

    pub async fn retweet(
        &self,
        user_id: u64,
        tweet_id: u64,
    ) -> Result<pb::RetweetResponse, Status> {
        Ok(self
            .client
            .clone()
            .retweet(pb::RetweetRequest { user_id, tweet_id })
            .await?
            .into_inner())
    }

    pub async fn undo_retweet(
        &self,
        user_id: u64,
        tweet_id: u64,
    ) -> Result<pb::UndoRetweetResponse, Status> {
        Ok(self
            .client
            .clone()
            .undo_retweet(pb::UndoRetweetRequest { user_id, tweet_id })
            .await?
            .into_inner())
    }

    /// Every event published so far, in append order. Reads through a new
    /// consumer group each time; groups start at the beginning of the stream.
    pub async fn events(&self) -> Vec<Event> {
        static GROUP: AtomicU64 = AtomicU64::new(0);
        let group = format!("test-{}", GROUP.fetch_add(1, Ordering::Relaxed));
        self.log
            .read_group(
                DOMAIN_EVENTS_STREAM,
                &group,
                "test",
                usize::MAX,
                Duration::ZERO,
            )
            .await
            .expect("read events")
            .into_iter()
            .map(|delivery| Event::decode(delivery.payload.as_slice()).expect("decode event"))
            .collect()
    }
}
