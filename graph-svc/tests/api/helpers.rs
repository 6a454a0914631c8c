//! Spawning a graph service for a test and typed shortcuts for its RPCs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use warble_graph_svc::{GraphSvc, GraphSvcConfig};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog as _};
use warble_mesh::grpc::ServeError;
use warble_proto::common::v1::PageRequest;
use warble_proto::events::v1::Event;
use warble_proto::events::v1::event::Payload;
use warble_proto::graph::v1 as pb;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;

/// A running graph service and a client connected to it.
pub struct TestApp {
    /// The service's data directory.
    pub data_dir: PathBuf,
    client: GraphServiceClient<Channel>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServeError>>,
    /// Removes the directory when a test that did not choose its own ends.
    _owned_dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// A service on a fresh, empty data directory.
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let mut app = Self::spawn_in(dir.path()).await;
        app._owned_dir = Some(dir);
        app
    }

    /// A service on `data_dir`, which may hold data from an earlier run.
    pub async fn spawn_in(data_dir: &Path) -> Self {
        warble_mesh::telemetry::init_for_tests();
        let config = GraphSvcConfig {
            data_dir: data_dir.to_owned(),
            ..GraphSvcConfig::default()
        };
        let service = GraphSvc::open_embedded(&config).expect("open the graph service");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(service.into_grpc_server(Duration::from_secs(5)).serve(
            listener,
            async {
                let _ = stop.await;
            },
        ));
        // The listener is already bound, so connecting needs no retry.
        let client = GraphServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to the graph service");
        Self {
            data_dir: data_dir.to_owned(),
            client,
            shutdown,
            server,
            _owned_dir: None,
        }
    }

    /// Shuts the server down and waits until it has stopped.
    pub async fn stop(self) {
        drop(self.client);
        let _ = self.shutdown.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }

    /// A client for calls the shortcuts do not cover.
    pub fn client(&self) -> GraphServiceClient<Channel> {
        self.client.clone()
    }

    /// The event log in the service's database (the same handle the service uses).
    pub fn event_log(&self) -> EmbeddedEventLog {
        let database = warble_mesh::embedded::open_shared(&self.data_dir).expect("open database");
        EmbeddedEventLog::open(database).expect("open event log")
    }

    /// Every event not yet read by `group`, decoded, with its ordering key,
    /// leaving out `UserCreated` (every test's set-up publishes those).
    pub async fn read_events(&self, group: &str) -> Vec<(u64, Payload, Event)> {
        let mut events = self.read_all_events(group).await;
        events.retain(|(_, payload, _)| !matches!(payload, Payload::UserCreated(_)));
        events
    }

    /// Every event not yet read by `group`, decoded, with its ordering key.
    pub async fn read_all_events(&self, group: &str) -> Vec<(u64, Payload, Event)> {
        let deliveries = self
            .event_log()
            .read_group(DOMAIN_EVENTS_STREAM, group, "test", 10_000, Duration::ZERO)
            .await
            .expect("read events");
        deliveries
            .into_iter()
            .map(|delivery| {
                let event: Event =
                    prost::Message::decode(delivery.payload.as_slice()).expect("decode event");
                let payload = event.payload.clone().expect("event has a payload");
                (delivery.key, payload, event)
            })
            .collect()
    }

    pub async fn try_create_user(
        &self,
        username: &str,
        display_name: &str,
        bio: &str,
    ) -> Result<pb::User, Status> {
        let response = self
            .client()
            .create_user(pb::CreateUserRequest {
                username: username.into(),
                display_name: display_name.into(),
                bio: bio.into(),
            })
            .await?;
        Ok(response
            .into_inner()
            .user
            .expect("response carries the user"))
    }

    /// Creates `username` and returns its id.
    pub async fn user(&self, username: &str) -> u64 {
        self.try_create_user(username, &format!("{username} display"), "")
            .await
            .expect("create user")
            .id
    }

    /// Creates `count` users named `{prefix}{i}` and returns their ids.
    pub async fn users(&self, prefix: &str, count: usize) -> Vec<u64> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            ids.push(self.user(&format!("{prefix}{i}")).await);
        }
        ids
    }

    pub async fn try_follow(
        &self,
        follower: u64,
        followee: u64,
    ) -> Result<pb::FollowResponse, Status> {
        Ok(self
            .client()
            .follow(pb::FollowRequest {
                follower_id: follower,
                followee_id: followee,
            })
            .await?
            .into_inner())
    }

    pub async fn follow(&self, follower: u64, followee: u64) -> pb::FollowResponse {
        self.try_follow(follower, followee).await.expect("follow")
    }

    /// CreateUsers with `(username, display_name, bio)` entries.
    pub async fn try_create_users(
        &self,
        users: &[(&str, &str, &str)],
    ) -> Result<Vec<pb::User>, Status> {
        let users = users
            .iter()
            .map(|&(username, display_name, bio)| pb::CreateUserRequest {
                username: username.into(),
                display_name: display_name.into(),
                bio: bio.into(),
            })
            .collect();
        Ok(self
            .client()
            .create_users(pb::CreateUsersRequest { users })
            .await?
            .into_inner()
            .users)
    }

    /// FollowMany with `(follower, followee)` pairs.
    pub async fn try_follow_many(
        &self,
        pairs: &[(u64, u64)],
    ) -> Result<Vec<pb::FollowOutcome>, Status> {
        let pairs = pairs
            .iter()
            .map(|&(follower_id, followee_id)| pb::FollowPair {
                follower_id,
                followee_id,
            })
            .collect();
        Ok(self
            .client()
            .follow_many(pb::FollowManyRequest { pairs })
            .await?
            .into_inner()
            .results)
    }

    pub async fn try_unfollow(
        &self,
        follower: u64,
        followee: u64,
    ) -> Result<pb::UnfollowResponse, Status> {
        Ok(self
            .client()
            .unfollow(pb::UnfollowRequest {
                follower_id: follower,
                followee_id: followee,
            })
            .await?
            .into_inner())
    }

    pub async fn unfollow(&self, follower: u64, followee: u64) -> pb::UnfollowResponse {
        self.try_unfollow(follower, followee)
            .await
            .expect("unfollow")
    }

    pub async fn try_followers_page(
        &self,
        user: u64,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ListFollowersResponse, Status> {
        Ok(self
            .client()
            .list_followers(pb::ListFollowersRequest {
                user_id: user,
                page: Some(page(cursor, limit)),
            })
            .await?
            .into_inner())
    }

    pub async fn try_following_page(
        &self,
        user: u64,
        cursor: &str,
        limit: u32,
        min_followers: u64,
    ) -> Result<pb::ListFollowingResponse, Status> {
        Ok(self
            .client()
            .list_following(pb::ListFollowingRequest {
                user_id: user,
                page: Some(page(cursor, limit)),
                min_followers,
            })
            .await?
            .into_inner())
    }

    /// Every follower of `user`, paging with `limit`.
    pub async fn all_followers(&self, user: u64, limit: u32) -> Vec<u64> {
        let mut cursor = String::new();
        let mut all = Vec::new();
        loop {
            let page = self
                .try_followers_page(user, &cursor, limit)
                .await
                .expect("list followers");
            all.extend(page.followers.iter().map(|edge| edge.user_id));
            cursor = next_cursor(page.page);
            if cursor.is_empty() {
                return all;
            }
        }
    }

    /// Every followee of `user` with at least `min_followers` followers, paging with `limit`.
    pub async fn all_following(&self, user: u64, limit: u32, min_followers: u64) -> Vec<u64> {
        let mut cursor = String::new();
        let mut all = Vec::new();
        loop {
            let page = self
                .try_following_page(user, &cursor, limit, min_followers)
                .await
                .expect("list following");
            all.extend(page.following.iter().map(|edge| edge.user_id));
            cursor = next_cursor(page.page);
            if cursor.is_empty() {
                return all;
            }
        }
    }

    /// `(followers, following)` of each user, `None` when not found.
    pub async fn counts(&self, users: &[u64]) -> Vec<Option<(u64, u64)>> {
        self.client()
            .get_follow_counts(pb::GetFollowCountsRequest {
                user_ids: users.to_vec(),
            })
            .await
            .expect("get follow counts")
            .into_inner()
            .counts
            .into_iter()
            .map(|c| c.found.then_some((c.followers_count, c.following_count)))
            .collect()
    }

    pub async fn is_following(&self, pairs: &[(u64, u64)]) -> Vec<bool> {
        self.client()
            .is_following(pb::IsFollowingRequest {
                pairs: pairs
                    .iter()
                    .map(|&(follower_id, followee_id)| pb::FollowPair {
                        follower_id,
                        followee_id,
                    })
                    .collect(),
            })
            .await
            .expect("is following")
            .into_inner()
            .following
    }
}

pub fn page(cursor: &str, limit: u32) -> PageRequest {
    PageRequest {
        cursor: cursor.into(),
        limit,
    }
}

pub fn next_cursor(page: Option<warble_proto::common::v1::PageResponse>) -> String {
    page.expect("response carries page info").next_cursor
}

/// Asserts `result` failed with INVALID_ARGUMENT naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        warble_mesh::status::violated_field(&status).as_deref(),
        Some(field),
        "{status:?}"
    );
}

/// Asserts `result` failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
}

/// An id no user has: Snowflake ids issued after 2024 are far larger.
pub const MISSING: u64 = 42;
