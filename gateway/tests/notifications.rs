//! The notification fields through the gateway's executor over a real
//! tweet-svc and graph-svc (see `support`). notify-svc itself is not here:
//! refusals are checked against graph-svc standing in for it (so any call
//! that reached it would be counted), and what the gateway does with
//! notify-svc's answers against `FakeNotify`, an in-memory stand-in that
//! answers as the contract says. End-to-end runs against the real
//! notify-svc live in the workspace's `tests` crate.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::Executor as _;
use futures::StreamExt as _;
use prost::Message as _;
use serde_json::{Value, json};
use support::{Backend, error_codes, id};
use tonic::{Request, Response, Status};
use warble_mesh::event_log::{EventLog as _, NOTIFICATIONS_STREAM};
use warble_mesh::grpc::GrpcServer;
use warble_proto::common::v1::PageResponse;
use warble_proto::notify::v1 as notify;
use warble_proto::notify::v1::notify_service_server::{NotifyService, NotifyServiceServer};

const NOTIFY_SERVICE: &str = "/warble.notify.v1.NotifyService/";

/// Calls made to notify-svc so far, by method path.
fn notify_calls(backend: &Backend) -> BTreeMap<String, u64> {
    backend
        .gateway
        .rpc_counts()
        .by_path()
        .into_iter()
        .filter(|(path, _)| path.starts_with(NOTIFY_SERVICE))
        .collect()
}

/// Downstream calls made since `before`, by method (only those made).
fn calls_since(backend: &Backend, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    backend
        .rpc_counts()
        .into_iter()
        .filter_map(|(method, count)| {
            let made = count - before.get(&method).copied().unwrap_or(0);
            (made > 0).then_some((method, made))
        })
        .collect()
}

fn calls(expected: &[(&str, u64)]) -> BTreeMap<String, u64> {
    expected
        .iter()
        .map(|(method, count)| ((*method).to_owned(), *count))
        .collect()
}

fn code(code: &str) -> Vec<(String, String)> {
    vec![(code.to_owned(), String::new())]
}

fn on_field(code: &str, field: &str) -> Vec<(String, String)> {
    vec![(code.to_owned(), field.to_owned())]
}

/// Everything notify-svc's contract lets a client get wrong, refused by
/// the gateway itself: nothing reaches notify-svc (nor any other service).
#[tokio::test]
async fn bad_input_and_signed_out_requests_never_reach_notify_svc() {
    let backend = Backend::start();
    let viewer = backend.sign_up("viewer").await;
    let before = backend.rpc_counts();
    let notify_before = notify_calls(&backend);

    for list in ["notifications", "filteredNotifications"] {
        for first in [101, -1, i32::MIN] {
            let refused = backend
                .execute(
                    Some(viewer),
                    &format!(
                        "query($first: Int) {{ {list}(first: $first) {{ edges {{ cursor }} }} }}"
                    ),
                    json!({ "first": first }),
                )
                .await;
            assert_eq!(
                error_codes(&refused),
                on_field("BAD_USER_INPUT", "first"),
                "{list}(first: {first}): {refused}"
            );
        }
        let bad_cursor = backend
            .execute(
                Some(viewer),
                &format!(
                    "query($after: String) {{ {list}(after: $after) {{ edges {{ cursor }} }} }}"
                ),
                json!({ "after": "x".repeat(300) }),
            )
            .await;
        assert_eq!(
            error_codes(&bad_cursor),
            on_field("BAD_USER_INPUT", "after"),
            "{bad_cursor}"
        );

        // A type the schema does not have fails validation, named.
        let unknown_type = backend
            .execute(
                Some(viewer),
                &format!("{{ {list}(types: [LIKE, SHOUT]) {{ edges {{ cursor }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(error_codes(&unknown_type), code("BAD_USER_INPUT"));
        let message = unknown_type["errors"][0]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("NotificationType") && message.contains("SHOUT"),
            "{message}"
        );
        let unknown_variable = backend
            .execute(
                Some(viewer),
                &format!(
                    "query($types: [NotificationType!]) {{ {list}(types: $types) {{ edges {{ cursor }} }} }}"
                ),
                json!({ "types": ["like"] }),
            )
            .await;
        assert_eq!(error_codes(&unknown_variable), code("BAD_USER_INPUT"));
        let message = unknown_variable["errors"][0]["message"]
            .as_str()
            .unwrap_or("");
        assert!(message.contains("like"), "{message}");

        // `first: 0` is an empty page without a call.
        let empty = backend
            .data(
                Some(viewer),
                &format!("{{ {list}(first: 0) {{ edges {{ cursor }} pageInfo {{ hasNextPage endCursor }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(
            empty[list],
            json!({ "edges": [], "pageInfo": { "hasNextPage": false, "endCursor": null } })
        );
    }

    // Signed out: every notification field needs a viewer.
    for query in [
        "{ notifications { edges { cursor } } }",
        "{ filteredNotifications { edges { cursor } } }",
        "{ unreadNotificationsCount }",
        "{ unreadNotificationsCapped }",
        "{ notificationSettings { newAccountsDays } }",
        "mutation { markNotificationsRead }",
        r#"mutation { markNotificationsRead(upTo: "12") }"#,
        "mutation { updateNotificationSettings(newAccountsDays: 3) { newAccountsDays } }",
    ] {
        let refused = backend.execute(None, query, json!({})).await;
        assert_eq!(error_codes(&refused), code("UNAUTHENTICATED"), "{query}");
    }

    // Settings out of range, and malformed ids.
    for days in [400, 366, -1] {
        let refused = backend
            .execute(
                Some(viewer),
                "mutation($days: Int) { updateNotificationSettings(newAccountsDays: $days) { newAccountsDays } }",
                json!({ "days": days }),
            )
            .await;
        assert_eq!(
            error_codes(&refused),
            on_field("BAD_USER_INPUT", "newAccountsDays"),
            "{days}: {refused}"
        );
    }
    let unknown_policy = backend
        .execute(
            Some(viewer),
            "mutation { updateNotificationSettings(mentionsFromStrangers: MAYBE) { newAccountsDays } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&unknown_policy), code("BAD_USER_INPUT"));
    for up_to in ["x", "0", "-3"] {
        let refused = backend
            .execute(
                Some(viewer),
                "mutation($upTo: ID) { markNotificationsRead(upTo: $upTo) }",
                json!({ "upTo": up_to }),
            )
            .await;
        assert_eq!(
            error_codes(&refused),
            on_field("BAD_USER_INPUT", "upTo"),
            "{up_to}"
        );
    }

    assert_eq!(notify_calls(&backend), notify_before, "no notify-svc call");
    assert_eq!(backend.rpc_counts(), before, "no downstream call at all");
}

/// Every actor of a page is priced: a page nested under each actor is up
/// to eight pages per group, so the complexity limit refuses what would
/// fan out, before any call.
#[tokio::test]
async fn pages_nested_under_actors_are_priced_per_actor() {
    let backend = Backend::start();
    let viewer = backend.sign_up("viewer").await;
    let before = backend.rpc_counts();
    // Each actor's page costs 100 + 10 × 3 = 130, eight actors 1,041, the
    // whole 100 + 20 × 1,043 = 20,960: over the limit of 5,000. Priced once
    // per group instead of per actor it would have been 2,760.
    let refused = backend
        .execute(
            Some(viewer),
            "{ notifications(first: 20) { edges { node { actors { followers(first: 10) { edges { node { id } } } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&refused), code("BAD_USER_INPUT"), "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("complex"),
        "{refused}"
    );
    assert_eq!(backend.rpc_counts(), before);
}

/// Without a live feed there is no `notificationAdded`; without a viewer,
/// none either.
#[tokio::test]
async fn notification_added_needs_a_viewer_and_a_live_feed() {
    let backend = Backend::start();
    let viewer = backend.sign_up("viewer").await;
    for (who, expected) in [(None, "UNAUTHENTICATED"), (Some(viewer), "UNAVAILABLE")] {
        let mut stream = backend.gateway.executor().execute_stream(
            backend.request(who, "subscription { notificationAdded { id } }"),
            None,
        );
        let response = stream.next().await.expect("a response");
        let response = serde_json::to_value(&response).expect("serializes");
        assert_eq!(error_codes(&response), code(expected), "{response}");
    }
}

// ---------------------------------------------------------------------------
// Against a stand-in notify-svc
// ---------------------------------------------------------------------------

/// What the stand-in holds and what it was asked.
#[derive(Default)]
struct Book {
    /// Every recipient's groups, main and filtered, newest first.
    groups: Vec<notify::NotificationGroup>,
    settings: notify::NotificationSettings,
    unread: notify::GetUnreadCountResponse,
    /// Each ListNotifications request.
    lists: Vec<notify::ListNotificationsRequest>,
    /// Each UpdateSettings request's settings.
    updates: Vec<notify::NotificationSettings>,
    /// When set, every call fails with this status.
    failure: Option<Status>,
}

/// An in-memory NotifyService answering as the contract says. Its cursors
/// are `fake-<offset>`; anything else is INVALID_ARGUMENT.
#[derive(Clone, Default)]
struct FakeNotify(Arc<Mutex<Book>>);

impl FakeNotify {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn server(&self) -> GrpcServer {
        GrpcServer::new(support::DRAIN).add_service(NotifyServiceServer::new(self.clone()))
    }

    fn check(&self) -> Result<(), Status> {
        match &self.book().failure {
            Some(status) => Err(status.clone()),
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl NotifyService for FakeNotify {
    async fn list_notifications(
        &self,
        request: Request<notify::ListNotificationsRequest>,
    ) -> Result<Response<notify::ListNotificationsResponse>, Status> {
        self.check()?;
        let request = request.into_inner();
        let mut book = self.book();
        book.lists.push(request.clone());
        let page = request.page.unwrap_or_default();
        let start = match page.cursor.as_str() {
            "" => 0,
            cursor => cursor
                .strip_prefix("fake-")
                .and_then(|offset| offset.parse::<usize>().ok())
                .ok_or_else(|| Status::invalid_argument("page.cursor: malformed"))?,
        };
        let limit = match page.limit {
            0 => 20,
            limit => limit as usize,
        };
        let matching: Vec<notify::NotificationGroup> = book
            .groups
            .iter()
            .filter(|group| {
                group.recipient_id == request.recipient_id
                    && group.filtered == request.filtered
                    && (request.types.is_empty() || request.types.contains(&group.r#type))
            })
            .cloned()
            .collect();
        let groups = matching.iter().skip(start).take(limit).cloned().collect();
        let next_cursor = if start + limit < matching.len() {
            format!("fake-{}", start + limit)
        } else {
            String::new()
        };
        Ok(Response::new(notify::ListNotificationsResponse {
            groups,
            page: Some(PageResponse { next_cursor }),
        }))
    }

    async fn get_notifications(
        &self,
        request: Request<notify::GetNotificationsRequest>,
    ) -> Result<Response<notify::GetNotificationsResponse>, Status> {
        self.check()?;
        let request = request.into_inner();
        let book = self.book();
        let groups = request
            .group_ids
            .iter()
            .filter_map(|id| {
                book.groups
                    .iter()
                    .find(|group| {
                        group.group_id == *id && group.recipient_id == request.recipient_id
                    })
                    .cloned()
            })
            .collect();
        Ok(Response::new(notify::GetNotificationsResponse { groups }))
    }

    async fn get_unread_count(
        &self,
        _request: Request<notify::GetUnreadCountRequest>,
    ) -> Result<Response<notify::GetUnreadCountResponse>, Status> {
        self.check()?;
        Ok(Response::new(self.book().unread))
    }

    async fn mark_read(
        &self,
        request: Request<notify::MarkReadRequest>,
    ) -> Result<Response<notify::MarkReadResponse>, Status> {
        self.check()?;
        let request = request.into_inner();
        let mut book = self.book();
        let main: Vec<u64> = book
            .groups
            .iter()
            .filter(|group| group.recipient_id == request.recipient_id && !group.filtered)
            .map(|group| group.group_id)
            .collect();
        // Groups above the one marked stay unread.
        let unread = match request.up_to_group_id {
            0 => 0,
            up_to => main
                .iter()
                .position(|&id| id == up_to)
                .ok_or_else(|| Status::not_found(format!("no group {up_to}")))?,
        };
        book.unread = notify::GetUnreadCountResponse {
            unread: unread as u64,
            capped: false,
            read_up_to: 1,
        };
        Ok(Response::new(notify::MarkReadResponse { read_up_to: 1 }))
    }

    async fn get_settings(
        &self,
        _request: Request<notify::GetSettingsRequest>,
    ) -> Result<Response<notify::GetSettingsResponse>, Status> {
        self.check()?;
        Ok(Response::new(notify::GetSettingsResponse {
            settings: Some(self.book().settings),
        }))
    }

    async fn update_settings(
        &self,
        request: Request<notify::UpdateSettingsRequest>,
    ) -> Result<Response<notify::UpdateSettingsResponse>, Status> {
        self.check()?;
        let settings = request.into_inner().settings.unwrap_or_default();
        let mut book = self.book();
        book.updates.push(settings);
        book.settings = settings;
        Ok(Response::new(notify::UpdateSettingsResponse {
            settings: Some(settings),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<notify::GetStatusRequest>,
    ) -> Result<Response<notify::GetStatusResponse>, Status> {
        Ok(Response::new(notify::GetStatusResponse::default()))
    }
}

/// A group of `recipient`'s main list.
fn group(
    group_id: u64,
    recipient_id: u64,
    kind: notify::NotificationType,
    actor_ids: &[u64],
    tweet_id: u64,
    count: u64,
) -> notify::NotificationGroup {
    notify::NotificationGroup {
        group_id,
        r#type: kind as i32,
        recipient_id,
        count,
        actor_ids: actor_ids.to_vec(),
        tweet_id,
        latest_at_ms: 1_704_067_200_000 + group_id as i64,
        position: 1_000 - group_id,
        unread: group_id % 2 == 1,
        filtered: false,
    }
}

/// A viewer, the users around them, and the stand-in notify-svc.
struct Scene {
    backend: Backend,
    notify: FakeNotify,
    viewer: u64,
    users: BTreeMap<&'static str, u64>,
}

impl Scene {
    /// `alice` blocks `dave`, mutes `erin` with notifications hidden and
    /// `frank` without; `bob` and `carol` are plain.
    async fn start(live: bool) -> Self {
        let notify = FakeNotify::default();
        let backend = Backend::start_with(Some(notify.server()), live);
        let viewer = backend.sign_up("alice").await;
        let mut users = BTreeMap::new();
        for name in ["bob", "carol", "dave", "erin", "frank"] {
            users.insert(name, backend.sign_up(name).await);
        }
        backend
            .data(
                Some(viewer),
                "mutation($id: ID!) { block(userId: $id) { id } }",
                json!({ "id": users["dave"].to_string() }),
            )
            .await;
        for (name, hide) in [("erin", true), ("frank", false)] {
            backend
                .data(
                    Some(viewer),
                    "mutation($id: ID!, $hide: Boolean) { mute(userId: $id, hideNotifications: $hide) { id } }",
                    json!({ "id": users[name].to_string(), "hide": hide }),
                )
                .await;
        }
        Self {
            backend,
            notify,
            viewer,
            users,
        }
    }

    fn user(&self, name: &str) -> u64 {
        self.users[name]
    }
}

const PAGE: &str = r#"query($first: Int, $after: String, $types: [NotificationType!]) {
  notifications(first: $first, after: $after, types: $types) {
    edges {
      cursor
      node {
        id type count latestAt unread
        actors { username followersCount }
        tweet { id text author { username } }
      }
    }
    pageInfo { hasNextPage endCursor startCursor }
  }
}"#;

fn usernames(node: &Value) -> Vec<&str> {
    node["actors"]
        .as_array()
        .expect("actors")
        .iter()
        .map(|actor| actor["username"].as_str().expect("username"))
        .collect()
}

/// A page leaves out the actors the viewer silenced (a block, a mute that
/// hides notifications), the groups left without actors, the groups about
/// deleted tweets and the types it does not know; and however many groups
/// it holds it costs one ListNotifications, one GetRelations, one
/// GetTweets and one GetUsers (with GetFollowCounts, asked for here).
#[tokio::test]
async fn a_page_hides_silenced_actors_and_deleted_tweets_in_constant_calls() {
    use notify::NotificationType as Kind;
    let scene = Scene::start(false).await;
    let backend = &scene.backend;
    let alice = scene.viewer;
    let (bob, carol, dave, erin, frank) = (
        scene.user("bob"),
        scene.user("carol"),
        scene.user("dave"),
        scene.user("erin"),
        scene.user("frank"),
    );
    let liked = id(&json!(backend.post(alice, "liked").await));
    let deleted = id(&json!(backend.post(alice, "soon gone").await));
    let mention = id(&json!(backend.post(bob, "hi @alice").await));
    let reply = id(&json!(backend.post(erin, "a reply").await));
    backend
        .data(
            Some(alice),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": deleted.to_string() }),
        )
        .await;
    {
        let mut book = scene.notify.book();
        book.groups = vec![
            group(
                1,
                alice,
                Kind::Like,
                &[erin, dave, carol, bob, frank],
                liked,
                7,
            ),
            group(2, alice, Kind::Like, &[bob], deleted, 1),
            group(3, alice, Kind::Follow, &[dave, erin], 0, 2),
            group(4, alice, Kind::Mention, &[bob], mention, 1),
            group(5, alice, Kind::Follow, &[carol, bob], 0, 2),
            group(6, alice, Kind::Unspecified, &[bob], 0, 1),
            group(7, alice, Kind::Reply, &[erin], reply, 1),
            // Someone else's.
            group(8, bob, Kind::Follow, &[carol], 0, 1),
        ];
    }

    let before = backend.rpc_counts();
    let page = backend.data(Some(alice), PAGE, json!({})).await;
    assert_eq!(
        calls_since(backend, &before),
        calls(&[
            ("ListNotifications", 1),
            ("GetRelations", 1),
            ("GetTweets", 1),
            ("GetUsers", 1),
            ("GetFollowCounts", 1),
        ]),
        "{page}"
    );
    let edges = page["notifications"]["edges"].as_array().expect("edges");
    let nodes: Vec<&Value> = edges.iter().map(|edge| &edge["node"]).collect();
    let ids: Vec<&str> = nodes
        .iter()
        .map(|node| node["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["1", "4", "5"], "{page:#}");

    // The blocked and the muted-with-notifications-hidden are left out,
    // and the count with them; a plain mute hides nothing here.
    assert_eq!(nodes[0]["type"], "LIKE");
    assert_eq!(usernames(nodes[0]), ["carol", "bob", "frank"]);
    assert_eq!(nodes[0]["count"], 5);
    assert_eq!(nodes[0]["tweet"]["id"], liked.to_string());
    assert_eq!(nodes[0]["tweet"]["author"]["username"], "alice");
    assert_eq!(nodes[0]["unread"], true);
    assert_eq!(nodes[0]["latestAt"], "2024-01-01T00:00:00.001Z");
    assert_eq!(nodes[0]["actors"][0]["followersCount"], 0);
    assert_eq!(nodes[1]["type"], "MENTION");
    assert_eq!(nodes[1]["tweet"]["text"], "hi @alice");
    assert_eq!(nodes[1]["tweet"]["author"]["username"], "bob");
    assert_eq!(nodes[1]["unread"], false);
    assert_eq!(nodes[2]["type"], "FOLLOW");
    assert_eq!(nodes[2]["tweet"], Value::Null);
    assert_eq!(usernames(nodes[2]), ["carol", "bob"]);
    assert_eq!(
        page["notifications"]["pageInfo"],
        json!({ "hasNextPage": false, "endCursor": null, "startCursor": null })
    );

    // Without `actors` in the selection no profile is fetched for them.
    let before = backend.rpc_counts();
    backend
        .data(
            Some(alice),
            "{ notifications { edges { node { id count } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        calls_since(backend, &before),
        calls(&[
            ("ListNotifications", 1),
            ("GetRelations", 1),
            ("GetTweets", 1),
        ])
    );

    // A page of follows only makes no GetTweets.
    let before = backend.rpc_counts();
    let follows = backend
        .data(Some(alice), PAGE, json!({ "types": ["FOLLOW"] }))
        .await;
    assert_eq!(
        calls_since(backend, &before),
        calls(&[
            ("ListNotifications", 1),
            ("GetRelations", 1),
            ("GetUsers", 1),
            ("GetFollowCounts", 1),
        ])
    );
    assert_eq!(
        follows["notifications"]["edges"][0]["node"]["id"], "5",
        "{follows}"
    );
    let asked = scene.notify.book().lists.last().cloned().expect("a list");
    assert_eq!(asked.types, [Kind::Follow as i32]);
    assert_eq!(asked.recipient_id, alice);
    assert!(!asked.filtered);
}

/// Pages continue from `endCursor`, which is the last edge's cursor; the
/// filtered list is its own list.
#[tokio::test]
async fn pages_continue_from_the_end_cursor() {
    use notify::NotificationType as Kind;
    let scene = Scene::start(false).await;
    let backend = &scene.backend;
    let alice = scene.viewer;
    let (bob, carol) = (scene.user("bob"), scene.user("carol"));
    {
        let mut book = scene.notify.book();
        book.groups = (1..=5)
            .map(|n| group(n, alice, Kind::Follow, &[bob], 0, 1))
            .collect();
        let mut filtered = group(9, alice, Kind::Follow, &[carol], 0, 1);
        filtered.filtered = true;
        book.groups.push(filtered);
    }
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = backend
            .data(Some(alice), PAGE, json!({ "first": 2, "after": after }))
            .await;
        let connection = &page["notifications"];
        let edges = connection["edges"].as_array().expect("edges");
        pages += 1;
        for (index, edge) in edges.iter().enumerate() {
            seen.push(edge["node"]["id"].as_str().expect("id").to_owned());
            if index + 1 < edges.len() || connection["pageInfo"]["hasNextPage"] == false {
                assert_eq!(edge["cursor"], Value::Null, "{page}");
            } else {
                assert_eq!(edge["cursor"], connection["pageInfo"]["endCursor"]);
            }
        }
        if connection["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["1", "2", "3", "4", "5"]);
    let asked: Vec<String> = scene
        .notify
        .book()
        .lists
        .iter()
        .map(|request| request.page.clone().unwrap_or_default().cursor)
        .collect();
    assert_eq!(asked, ["", "fake-2", "fake-4"]);

    let filtered = backend
        .data(
            Some(alice),
            "{ filteredNotifications { edges { node { id actors { username } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        filtered["filteredNotifications"]["edges"],
        json!([{ "node": { "id": "9", "actors": [{ "username": "carol" }] } }])
    );
    assert!(scene.notify.book().lists.last().expect("a list").filtered);
}

/// notify-svc's refusals and failures come back with the gateway's codes.
#[tokio::test]
async fn notify_svc_errors_map_to_stable_codes() {
    use notify::NotificationType as Kind;
    let scene = Scene::start(false).await;
    let backend = &scene.backend;
    let alice = scene.viewer;
    scene.notify.book().groups = vec![
        group(1, alice, Kind::Follow, &[scene.user("bob")], 0, 1),
        group(2, alice, Kind::Follow, &[scene.user("carol")], 0, 1),
    ];

    // A cursor notify-svc does not know.
    let bad_cursor = backend
        .execute(
            Some(alice),
            PAGE,
            json!({ "after": "not-one-of-its-cursors" }),
        )
        .await;
    assert_eq!(
        error_codes(&bad_cursor),
        code("BAD_USER_INPUT"),
        "{bad_cursor}"
    );

    // A group that is not the viewer's (or no longer exists).
    let missing = backend
        .execute(
            Some(alice),
            r#"mutation { markNotificationsRead(upTo: "77") }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        error_codes(&missing),
        on_field("NOT_FOUND", "upTo"),
        "{missing}"
    );

    for (status, expected) in [
        (Status::unavailable("connection refused"), "UNAVAILABLE"),
        (Status::deadline_exceeded("slow"), "UNAVAILABLE"),
        (
            Status::invalid_argument("page.limit: too big"),
            "BAD_USER_INPUT",
        ),
        (Status::internal("disk full at /var/lib"), "INTERNAL"),
    ] {
        scene.notify.book().failure = Some(status);
        for query in [
            "{ notifications { edges { cursor } } }",
            "{ unreadNotificationsCount }",
            "{ notificationSettings { newAccountsDays } }",
        ] {
            let failed = backend.execute(Some(alice), query, json!({})).await;
            assert_eq!(error_codes(&failed), code(expected), "{query}: {failed}");
            assert!(!failed.to_string().contains("/var/lib"), "{failed}");
        }
    }
}

/// The unread count and whether it is capped cost one GetUnreadCount
/// together; marking read returns the count after.
#[tokio::test]
async fn unread_counts_and_marking_read() {
    use notify::NotificationType as Kind;
    let scene = Scene::start(false).await;
    let backend = &scene.backend;
    let alice = scene.viewer;
    {
        let mut book = scene.notify.book();
        book.groups = (1..=4)
            .map(|n| group(n, alice, Kind::Follow, &[scene.user("bob")], 0, 1))
            .collect();
        book.unread = notify::GetUnreadCountResponse {
            unread: 1_000,
            capped: true,
            read_up_to: 0,
        };
    }
    let before = backend.rpc_counts();
    let unread = backend
        .data(
            Some(alice),
            "{ unreadNotificationsCount unreadNotificationsCapped again: unreadNotificationsCount }",
            json!({}),
        )
        .await;
    assert_eq!(
        unread,
        json!({ "unreadNotificationsCount": 1000, "unreadNotificationsCapped": true, "again": 1000 })
    );
    assert_eq!(
        calls_since(backend, &before),
        calls(&[("GetUnreadCount", 1)])
    );

    let marked = backend
        .data(
            Some(alice),
            r#"mutation { markNotificationsRead(upTo: "3") }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        marked["markNotificationsRead"], 2,
        "groups 1 and 2 stay unread"
    );
    let all = backend
        .data(Some(alice), "mutation { markNotificationsRead }", json!({}))
        .await;
    assert_eq!(all["markNotificationsRead"], 0);
}

/// Settings: what is not given keeps its value; giving both needs no read.
#[tokio::test]
async fn settings_keep_what_is_not_given() {
    let scene = Scene::start(false).await;
    let backend = &scene.backend;
    let alice = scene.viewer;
    let settings = backend
        .data(
            Some(alice),
            "{ notificationSettings { mentionsFromStrangers newAccountsDays } }",
            json!({}),
        )
        .await;
    assert_eq!(
        settings["notificationSettings"],
        json!({ "mentionsFromStrangers": "ACCEPT", "newAccountsDays": 0 })
    );

    let update = "mutation($policy: StrangerPolicy, $days: Int) {
      updateNotificationSettings(mentionsFromStrangers: $policy, newAccountsDays: $days) {
        mentionsFromStrangers newAccountsDays
      }
    }";
    let before = backend.rpc_counts();
    let both = backend
        .data(
            Some(alice),
            update,
            json!({ "policy": "FILTER", "days": 365 }),
        )
        .await;
    assert_eq!(
        both["updateNotificationSettings"],
        json!({ "mentionsFromStrangers": "FILTER", "newAccountsDays": 365 })
    );
    assert_eq!(
        calls_since(backend, &before),
        calls(&[("UpdateSettings", 1)])
    );

    let days_only = backend
        .data(Some(alice), update, json!({ "days": 7 }))
        .await;
    assert_eq!(
        days_only["updateNotificationSettings"],
        json!({ "mentionsFromStrangers": "FILTER", "newAccountsDays": 7 })
    );
    let policy_only = backend
        .data(Some(alice), update, json!({ "policy": "ACCEPT" }))
        .await;
    assert_eq!(
        policy_only["updateNotificationSettings"],
        json!({ "mentionsFromStrangers": "ACCEPT", "newAccountsDays": 7 })
    );
    let before = backend.rpc_counts();
    let nothing = backend.data(Some(alice), update, json!({})).await;
    assert_eq!(
        nothing["updateNotificationSettings"],
        json!({ "mentionsFromStrangers": "ACCEPT", "newAccountsDays": 7 })
    );
    assert_eq!(calls_since(backend, &before), calls(&[("GetSettings", 1)]));
    let updates: Vec<(i32, u32)> = scene
        .notify
        .book()
        .updates
        .iter()
        .map(|settings| (settings.mentions_from_strangers, settings.new_accounts_days))
        .collect();
    let (accept, filter) = (
        notify::StrangerPolicy::Accept as i32,
        notify::StrangerPolicy::Filter as i32,
    );
    assert_eq!(updates, [(filter, 365), (filter, 7), (accept, 7)]);
}

/// Appends what notify-svc publishes when a group is created or grows.
async fn publish(backend: &Backend, recipient_id: u64, group_id: u64, filtered: bool) {
    let record = notify::NotificationPublished {
        recipient_id,
        group_id,
        filtered,
    };
    backend
        .events
        .append(NOTIFICATIONS_STREAM, recipient_id, &record.encode_to_vec())
        .await
        .expect("append");
}

/// `notificationAdded` delivers the viewer's main-list groups, hydrated
/// and filtered like a page, within a second of their publication; not
/// other recipients' groups, filtered ones, or groups hidden from the
/// viewer.
#[tokio::test]
async fn notification_added_delivers_the_viewers_groups_within_a_second() {
    use notify::NotificationType as Kind;
    let scene = Scene::start(true).await;
    let backend = &scene.backend;
    let alice = scene.viewer;
    let (bob, carol, dave) = (scene.user("bob"), scene.user("carol"), scene.user("dave"));
    let liked = id(&json!(backend.post(alice, "liked").await));
    {
        let mut book = scene.notify.book();
        let mut filtered = group(3, alice, Kind::Follow, &[carol], 0, 1);
        filtered.filtered = true;
        book.groups = vec![
            group(1, alice, Kind::Follow, &[bob], 0, 1),
            group(2, alice, Kind::Like, &[carol, bob], liked, 2),
            filtered,
            group(4, alice, Kind::Follow, &[dave], 0, 1),
            group(5, bob, Kind::Follow, &[carol], 0, 1),
        ];
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let feed = tokio::spawn(backend.gateway.live_feed(stopped));
    let mut updates = backend.gateway.executor().execute_stream(
        backend.request(
            Some(alice),
            "subscription { notificationAdded { id type count actors { username } tweet { text } } }",
        ),
        None,
    );

    // The feed and the subscription start on their own time: publish until
    // the first update arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(Instant::now() < deadline, "no update within 10 s");
        publish(backend, alice, 1, false).await;
        if let Ok(update) = tokio::time::timeout(Duration::from_millis(200), updates.next()).await {
            break update.expect("an update");
        }
    };
    let first = serde_json::to_value(&first).expect("serializes");
    assert_eq!(
        first["data"]["notificationAdded"],
        json!({ "id": "1", "type": "FOLLOW", "count": 1, "actors": [{ "username": "bob" }], "tweet": null }),
        "{first}"
    );

    // Another recipient's group, a filtered group and a group whose only
    // actor the viewer blocks are not delivered; the next one is, quickly
    // (after any repeats of the first publication still on their way).
    publish(backend, bob, 5, false).await;
    publish(backend, alice, 3, true).await;
    publish(backend, alice, 4, false).await;
    let published = Instant::now();
    publish(backend, alice, 2, false).await;
    let next = loop {
        let update = tokio::time::timeout(Duration::from_secs(5), updates.next())
            .await
            .expect("an update within 5 s")
            .expect("an update");
        let update = serde_json::to_value(&update).expect("serializes");
        if update["data"]["notificationAdded"]["id"] != "1" {
            break update;
        }
    };
    let latency = published.elapsed();
    assert_eq!(
        next["data"]["notificationAdded"],
        json!({
            "id": "2",
            "type": "LIKE",
            "count": 2,
            "actors": [{ "username": "carol" }, { "username": "bob" }],
            "tweet": { "text": "liked" },
        }),
        "{next}"
    );
    assert!(
        latency < Duration::from_secs(1),
        "delivered after {latency:?}"
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), feed)
        .await
        .expect("the feed stops")
        .expect("the feed task");
}
