//! The notification fields through the gateway's executor over the real
//! services (see `support`): tweet-svc and graph-svc, and notify-svc
//! consuming the events they append to the shared event log. Every scene
//! is built by doing what users do (posting, liking, following, blocking,
//! muting, deleting) and waiting until notify-svc has applied it; the
//! failures notify-svc can have are real ones too (a closed port, a server
//! that never answers, an address that serves another service).

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_graphql::Executor as _;
use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{Backend, NotifyAt, error_codes};
use warble_proto::limits::notify::MAX_UNREAD_COUNT;
use warble_proto::tweet::v1::CreateTweetRequest;

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
// Scenes built by users' actions
// ---------------------------------------------------------------------------

const FOLLOW: &str = "mutation($id: ID!) { follow(userId: $id) { id } }";
const LIKE: &str = "mutation($id: ID!) { likeTweet(id: $id) { id } }";
const UNLIKE: &str = "mutation($id: ID!) { unlikeTweet(id: $id) { id } }";
const BLOCK: &str = "mutation($id: ID!) { block(userId: $id) { id } }";
const MUTE: &str =
    "mutation($id: ID!, $hide: Boolean) { mute(userId: $id, hideNotifications: $hide) { id } }";
const DELETE: &str = "mutation($id: ID!) { deleteTweet(id: $id) }";
const REPLY: &str = "mutation($t: String!, $id: ID!) { postTweet(text: $t, replyTo: $id) { id } }";
const MARK_ALL_READ: &str = "mutation { markNotificationsRead }";
const MARK_READ: &str = "mutation($upTo: ID) { markNotificationsRead(upTo: $upTo) }";
const FILTER_STRANGERS: &str = "mutation { updateNotificationSettings(mentionsFromStrangers: FILTER) { mentionsFromStrangers } }";

/// A backend with users signed up; their notifications come from what
/// they do.
struct Scene {
    backend: Backend,
    users: BTreeMap<&'static str, u64>,
}

impl Scene {
    /// Signs up `names` on a fresh backend whose gateway, when `live`,
    /// serves subscriptions.
    async fn start(names: &[&'static str], live: bool) -> Self {
        let backend = Backend::start_with(NotifyAt::Service, live);
        let mut users = BTreeMap::new();
        for name in names {
            users.insert(*name, backend.sign_up(name).await);
        }
        Self { backend, users }
    }

    fn user(&self, name: &str) -> u64 {
        self.users[name]
    }

    /// Runs `mutation` as `who`, then waits until notify-svc has applied
    /// what it caused: actions of different users are applied in parallel,
    /// so waiting after each one fixes the order of groups and actors.
    async fn act_with(&self, who: u64, mutation: &str, variables: Value) -> Value {
        let data = self.backend.data(Some(who), mutation, variables).await;
        self.backend.notifications_applied().await;
        data
    }

    /// [`Scene::act_with`] for a mutation of one `$id`.
    async fn act(&self, who: u64, mutation: &str, id: impl std::fmt::Display) -> Value {
        self.act_with(who, mutation, json!({ "id": id.to_string() }))
            .await
    }

    /// Posts `text` as `author` and waits until its notifications are
    /// applied; returns the tweet's id.
    async fn post(&self, author: u64, text: &str) -> String {
        let tweet = self.backend.post(author, text).await;
        self.backend.notifications_applied().await;
        tweet
    }
}

const PAGE: &str = r#"query($first: Int, $after: String, $types: [NotificationType!]) {
  notifications(first: $first, after: $after, types: $types) {
    edges {
      cursor
      node {
        id type count latestAt unread
        actors { username followersCount }
        tweet { id text createdAt author { username } }
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

/// What a page shows of each group, bar its time and cursor.
fn summary(connection: &Value) -> Vec<Value> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            json!({
                "id": node["id"],
                "type": node["type"],
                "count": node["count"],
                "actors": usernames(node),
                "tweet": node["tweet"]["id"],
                "unread": node["unread"],
            })
        })
        .collect()
}

/// Whether `value` is a timestamp as `latestAt` promises:
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_iso8601_millis(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() == shape.len()
        && text.chars().zip(shape.chars()).all(|(char, expected)| {
            if expected == 'd' {
                char.is_ascii_digit()
            } else {
                char == expected
            }
        })
}

/// A page leaves out the actors the viewer silenced (a block, a mute that
/// hides notifications) that notify-svc has not caught up with yet, the
/// groups left without actors and the groups about deleted tweets; and
/// however many groups it holds it costs one ListNotifications, one
/// GetRelations, one GetTweets and one GetUsers (with GetFollowCounts,
/// asked for here). Once notify-svc applies the same block, mutes and
/// deletion it removes those items itself, and the page reads the same.
#[tokio::test]
async fn a_page_hides_silenced_actors_and_deleted_tweets_in_constant_calls() {
    let mut scene = Scene::start(&["alice", "bob", "carol", "dave", "erin", "frank"], false).await;
    let alice = scene.user("alice");
    let (bob, carol, dave, erin, frank) = (
        scene.user("bob"),
        scene.user("carol"),
        scene.user("dave"),
        scene.user("erin"),
        scene.user("frank"),
    );
    let liked = scene.post(alice, "liked").await;
    let doomed = scene.post(alice, "soon gone").await;
    // Oldest first: a follow group, a reply, a like of the doomed tweet and
    // a mention, all read; then five likes of `liked`, unread.
    for follower in [bob, carol, dave, erin] {
        scene.act(follower, FOLLOW, alice).await;
    }
    scene
        .act_with(erin, REPLY, json!({ "t": "a reply", "id": liked }))
        .await;
    scene.act(bob, LIKE, &doomed).await;
    let mention = scene.post(bob, "hi @alice").await;
    scene.act_with(alice, MARK_ALL_READ, json!({})).await;
    for liker in [frank, bob, carol, dave, erin] {
        scene.act(liker, LIKE, &liked).await;
    }
    // Someone else's notification.
    scene.act(carol, FOLLOW, bob).await;

    // notify-svc stops applying events, as a lagging consumer would: the
    // block, the mutes and the deletion reach graph-svc and tweet-svc only,
    // so hiding what they silence is up to the gateway.
    scene.backend.pause_notify().await;
    let backend = &scene.backend;
    backend
        .data(Some(alice), BLOCK, json!({ "id": dave.to_string() }))
        .await;
    for (muted, hide) in [(erin, true), (frank, false)] {
        backend
            .data(
                Some(alice),
                MUTE,
                json!({ "id": muted.to_string(), "hide": hide }),
            )
            .await;
    }
    backend
        .data(Some(alice), DELETE, json!({ "id": doomed }))
        .await;
    assert!(
        backend.notify_status().await.consumer_lag > 0,
        "notify-svc has not seen them"
    );

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
    let connection = &page["notifications"];
    let edges = connection["edges"].as_array().expect("edges");
    let nodes: Vec<&Value> = edges.iter().map(|edge| &edge["node"]).collect();
    let types: Vec<&str> = nodes
        .iter()
        .map(|node| node["type"].as_str().expect("type"))
        .collect();
    // Left out: the doomed tweet's like, erin's reply (erin is all it has)
    // and bob's own notification.
    assert_eq!(types, ["LIKE", "MENTION", "FOLLOW"], "{page:#}");

    // The blocked and the muted-with-notifications-hidden are left out,
    // and the count with them; a plain mute hides nothing.
    assert_eq!(usernames(nodes[0]), ["carol", "bob", "frank"]);
    assert_eq!(nodes[0]["count"], 3);
    assert_eq!(nodes[0]["tweet"]["id"], liked);
    assert_eq!(nodes[0]["tweet"]["author"]["username"], "alice");
    assert_eq!(nodes[0]["unread"], true);
    assert_eq!(nodes[0]["actors"][0]["followersCount"], 0);
    assert_eq!(nodes[1]["tweet"]["id"], mention);
    assert_eq!(nodes[1]["tweet"]["text"], "hi @alice");
    assert_eq!(nodes[1]["tweet"]["author"]["username"], "bob");
    assert_eq!(nodes[1]["actors"][0]["username"], "bob");
    assert_eq!(nodes[1]["unread"], false);
    assert_eq!(nodes[2]["tweet"], Value::Null);
    assert_eq!(usernames(nodes[2]), ["carol", "bob"]);
    assert_eq!(nodes[2]["count"], 2);
    assert_eq!(nodes[2]["unread"], false);
    // A mention's group is as old as its tweet; groups come newest first.
    assert_eq!(nodes[1]["latestAt"], nodes[1]["tweet"]["createdAt"]);
    for node in &nodes {
        assert!(is_iso8601_millis(&node["latestAt"]), "{node}");
    }
    let times: Vec<&str> = nodes
        .iter()
        .map(|node| node["latestAt"].as_str().expect("latestAt"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    for edge in edges {
        assert!(
            edge["cursor"]
                .as_str()
                .is_some_and(|cursor| !cursor.is_empty()),
            "{edge}"
        );
    }
    assert_eq!(
        connection["pageInfo"],
        json!({ "hasNextPage": false, "endCursor": null, "startCursor": edges[0]["cursor"] })
    );
    let shown = summary(connection);

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

    // A page of follows only makes no GetTweets, and holds alice's follow
    // group only.
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
        summary(&follows["notifications"]),
        [shown[2].clone()],
        "{follows}"
    );

    // notify-svc catches up: it removes the silenced actors' items and the
    // deleted tweet's groups itself, and the page shows the same.
    scene.backend.resume_notify();
    scene.backend.notifications_applied().await;
    let caught_up = scene.backend.data(Some(alice), PAGE, json!({})).await;
    assert_eq!(summary(&caught_up["notifications"]), shown, "{caught_up:#}");
}

/// The page of `first` groups after `after`, with each edge's cursor and
/// the id of the tweet each group is about.
const MENTIONS: &str = r#"query($first: Int, $after: String) {
  notifications(first: $first, after: $after) {
    edges { cursor node { id tweet { id } } }
    pageInfo { hasNextPage endCursor startCursor }
  }
}"#;

fn tweet_ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["tweet"]["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every edge carries its own cursor: the list continues right after any
/// edge from its cursor, and after a page from `pageInfo.endCursor` (the
/// last edge's cursor while more follow, null on the last page), each
/// group exactly once. The filtered list is its own list, with its own
/// cursors.
#[tokio::test]
async fn pages_continue_from_any_edge_and_from_the_end_cursor() {
    let scene = Scene::start(&["alice", "bob", "carol"], false).await;
    let backend = &scene.backend;
    let (alice, bob, carol) = (scene.user("alice"), scene.user("bob"), scene.user("carol"));
    // Five mentions, one group each; newest first.
    let mut mentions = Vec::new();
    for n in 1..=5 {
        mentions.push(scene.post(bob, &format!("@alice number {n}")).await);
    }
    mentions.reverse();
    // From now on a stranger's mention goes to the filtered list.
    backend.data(Some(alice), FILTER_STRANGERS, json!({})).await;
    let whisper = scene.post(carol, "psst @alice").await;

    let mut edges: Vec<Value> = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let before = backend.rpc_counts();
        let page = backend
            .data(Some(alice), MENTIONS, json!({ "first": 2, "after": after }))
            .await;
        assert_eq!(
            calls_since(backend, &before).get("ListNotifications"),
            Some(&1)
        );
        pages += 1;
        let connection = &page["notifications"];
        let page_edges = connection["edges"].as_array().expect("edges");
        for edge in page_edges {
            assert!(
                edge["cursor"]
                    .as_str()
                    .is_some_and(|cursor| !cursor.is_empty()),
                "{page}"
            );
        }
        let info = &connection["pageInfo"];
        assert_eq!(info["startCursor"], page_edges[0]["cursor"], "{page}");
        if info["hasNextPage"] == true {
            assert_eq!(
                info["endCursor"],
                page_edges[page_edges.len() - 1]["cursor"]
            );
        } else {
            assert_eq!(info["endCursor"], Value::Null, "{page}");
        }
        edges.extend(page_edges.iter().cloned());
        if info["hasNextPage"] == false {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    let seen = tweet_ids(&json!({ "edges": edges }));
    assert_eq!(seen, mentions, "each group once, newest first");
    let mut group_ids: Vec<&str> = edges
        .iter()
        .map(|edge| edge["node"]["id"].as_str().expect("id"))
        .collect();
    group_ids.sort_unstable();
    group_ids.dedup();
    assert_eq!(group_ids.len(), mentions.len());

    // From any edge's cursor (not only a page's last) the list goes on
    // right after that edge.
    for (index, edge) in edges.iter().enumerate() {
        let rest = backend
            .data(
                Some(alice),
                MENTIONS,
                json!({ "first": 10, "after": edge["cursor"] }),
            )
            .await;
        assert_eq!(
            tweet_ids(&rest["notifications"]),
            mentions[index + 1..],
            "after edge {index}"
        );
        assert_eq!(rest["notifications"]["pageInfo"]["hasNextPage"], false);
    }

    // The filtered list holds the stranger's mention, and nothing else.
    let filtered = backend
        .data(
            Some(alice),
            "{ filteredNotifications { edges { cursor node { type actors { username } tweet { id } } } } }",
            json!({}),
        )
        .await;
    let filtered_edges = filtered["filteredNotifications"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(filtered_edges.len(), 1, "{filtered}");
    assert_eq!(
        filtered_edges[0]["node"],
        json!({ "type": "MENTION", "actors": [{ "username": "carol" }], "tweet": { "id": whisper } })
    );
    // A cursor continues only the list that issued it.
    let main_cursor_on_filtered = backend
        .execute(
            Some(alice),
            "query($after: String) { filteredNotifications(after: $after) { edges { cursor } } }",
            json!({ "after": edges[0]["cursor"] }),
        )
        .await;
    assert_eq!(
        error_codes(&main_cursor_on_filtered)[0].0,
        "BAD_USER_INPUT",
        "{main_cursor_on_filtered}"
    );
    let filtered_cursor_on_main = backend
        .execute(
            Some(alice),
            MENTIONS,
            json!({ "after": filtered_edges[0]["cursor"] }),
        )
        .await;
    assert_eq!(
        error_codes(&filtered_cursor_on_main)[0].0,
        "BAD_USER_INPUT",
        "{filtered_cursor_on_main}"
    );
}

/// What notify-svc refuses comes back with the gateway's codes: a cursor
/// it did not issue, one of another recipient's list, a group that is not
/// the viewer's. Each was notify-svc's answer, not the gateway's check.
#[tokio::test]
async fn notify_svc_refusals_map_to_stable_codes() {
    let scene = Scene::start(&["alice", "bob"], false).await;
    let backend = &scene.backend;
    let (alice, bob) = (scene.user("alice"), scene.user("bob"));
    scene.act(bob, FOLLOW, alice).await;
    scene.act(alice, FOLLOW, bob).await;
    let first_edge = |viewer: u64| async move {
        let page = backend.data(Some(viewer), MENTIONS, json!({})).await;
        page["notifications"]["edges"][0].clone()
    };
    let bobs = first_edge(bob).await;

    for after in [json!("not-one-of-its-cursors"), bobs["cursor"].clone()] {
        let before = backend.rpc_counts();
        let refused = backend
            .execute(Some(alice), MENTIONS, json!({ "after": after }))
            .await;
        assert_eq!(
            error_codes(&refused)[0].0,
            "BAD_USER_INPUT",
            "{after}: {refused}"
        );
        assert_eq!(
            calls_since(backend, &before),
            calls(&[("ListNotifications", 1)])
        );
    }

    // A group that does not exist, and bob's group: neither is alice's.
    for up_to in [json!("77"), bobs["node"]["id"].clone()] {
        let before = backend.rpc_counts();
        let missing = backend
            .execute(Some(alice), MARK_READ, json!({ "upTo": up_to }))
            .await;
        assert_eq!(
            error_codes(&missing),
            on_field("NOT_FOUND", "upTo"),
            "{missing}"
        );
        assert_eq!(calls_since(backend, &before), calls(&[("MarkRead", 1)]));
    }
    // Nothing of alice's was marked read, nor of bob's.
    for viewer in [alice, bob] {
        let unread = backend
            .data(Some(viewer), "{ unreadNotificationsCount }", json!({}))
            .await;
        assert_eq!(unread["unreadNotificationsCount"], 1);
    }
}

/// The notification fields that reach notify-svc, each alone.
const NOTIFY_FIELDS: [&str; 5] = [
    "{ notifications { edges { cursor } } }",
    "{ unreadNotificationsCount }",
    "{ notificationSettings { newAccountsDays } }",
    "mutation { markNotificationsRead }",
    "mutation { updateNotificationSettings(newAccountsDays: 3) { newAccountsDays } }",
];

/// notify-svc down (nothing listens on its port) or not answering within
/// the deadline (a peer that accepts connections and never replies) is
/// UNAVAILABLE; an address that serves another service (graph-svc answers
/// UNIMPLEMENTED) is INTERNAL. No cause reaches the client: not the
/// address, not the transport's words, not the other service's.
#[tokio::test]
async fn notify_svc_failures_map_to_stable_codes_without_leaking() {
    // Bound but not listening: connections are refused, and the port
    // stays reserved while the socket lives.
    let closed = tokio::net::TcpSocket::new_v4().expect("a socket");
    closed
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("a loopback port");
    let closed_addr = closed.local_addr().expect("its address");

    // Accepts every connection and never sends a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let silent_addr = silent.local_addr().expect("its address");
    let silent_peer = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let deadline = Duration::from_millis(300);

    for (notify, expected, leaks) in [
        (
            NotifyAt::Address(closed_addr, Duration::from_secs(5)),
            "UNAVAILABLE",
            vec![
                closed_addr.to_string(),
                "refused".into(),
                "os error".into(),
                "connect".into(),
            ],
        ),
        (
            NotifyAt::Address(silent_addr, deadline),
            "UNAVAILABLE",
            vec![
                silent_addr.to_string(),
                "imeout".into(),
                "expired".into(),
                "deadline".into(),
            ],
        ),
        (
            NotifyAt::GraphSvc,
            "INTERNAL",
            vec![
                "nimplemented".into(),
                "NotifyService".into(),
                "graph".into(),
            ],
        ),
    ] {
        let at = match &notify {
            NotifyAt::Address(addr, _) => addr.to_string(),
            _ => "graph-svc".to_owned(),
        };
        let silent_case = matches!(&notify, NotifyAt::Address(addr, _) if *addr == silent_addr);
        let backend = Backend::start_with(notify, false);
        let alice = backend.sign_up("alice").await;
        for query in NOTIFY_FIELDS {
            let started = Instant::now();
            let failed = backend.execute(Some(alice), query, json!({})).await;
            assert_eq!(
                error_codes(&failed),
                code(expected),
                "{at}: {query}: {failed}"
            );
            let text = failed.to_string();
            for leak in &leaks {
                assert!(!text.contains(leak.as_str()), "{at}: {query}: {failed}");
            }
            if silent_case {
                assert!(
                    started.elapsed() >= deadline,
                    "failed before the deadline: {:?}",
                    started.elapsed()
                );
            }
            if expected == "INTERNAL" {
                let message = failed["errors"][0]["message"].as_str().unwrap_or("");
                assert!(
                    message.starts_with("internal error (reference "),
                    "{failed}"
                );
            }
        }
    }
    silent_peer.abort();
    drop(closed);
}

/// The unread count and whether it is capped cost one GetUnreadCount
/// together; marking read up to a group leaves the newer ones unread,
/// marking everything read leaves none, and the marker never moves back.
#[tokio::test]
async fn unread_counts_and_marking_read() {
    let scene = Scene::start(&["alice", "bob", "carol"], false).await;
    let backend = &scene.backend;
    let (alice, bob, carol) = (scene.user("alice"), scene.user("bob"), scene.user("carol"));
    // One more unread group than the count shows: bob mentions alice that
    // many times (through tweet-svc's API, past the gateway's mutation limit).
    let mut tweets = backend.tweet_svc();
    for n in 0..=MAX_UNREAD_COUNT {
        tweets
            .create_tweet(CreateTweetRequest {
                author_id: bob,
                text: format!("@alice {n}"),
                ..CreateTweetRequest::default()
            })
            .await
            .expect("a tweet");
    }
    backend.notifications_applied().await;

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
        json!({ "unreadNotificationsCount": MAX_UNREAD_COUNT, "unreadNotificationsCapped": true, "again": MAX_UNREAD_COUNT })
    );
    assert_eq!(
        calls_since(backend, &before),
        calls(&[("GetUnreadCount", 1)])
    );

    let newest = backend
        .data(
            Some(alice),
            "{ notifications(first: 3) { edges { node { id unread } } } }",
            json!({}),
        )
        .await;
    let newest: Vec<Value> = newest["notifications"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"].clone())
        .collect();
    assert!(
        newest.iter().all(|node| node["unread"] == true),
        "{newest:?}"
    );
    let marked = backend
        .data(Some(alice), MARK_READ, json!({ "upTo": newest[2]["id"] }))
        .await;
    assert_eq!(
        marked["markNotificationsRead"], 2,
        "the two newer groups stay unread"
    );
    let after_mark = backend
        .data(
            Some(alice),
            "{ notifications(first: 3) { edges { node { unread } } } unreadNotificationsCapped }",
            json!({}),
        )
        .await;
    assert_eq!(
        after_mark,
        json!({
            "notifications": { "edges": [
                { "node": { "unread": true } },
                { "node": { "unread": true } },
                { "node": { "unread": false } },
            ] },
            "unreadNotificationsCapped": false,
        })
    );

    let all = backend.data(Some(alice), MARK_ALL_READ, json!({})).await;
    assert_eq!(all["markNotificationsRead"], 0);
    let back = backend
        .data(Some(alice), MARK_READ, json!({ "upTo": newest[2]["id"] }))
        .await;
    assert_eq!(
        back["markNotificationsRead"], 0,
        "the marker never moves back"
    );

    // A new group is one unread again.
    scene.act(carol, FOLLOW, alice).await;
    let unread = backend
        .data(
            Some(alice),
            "{ unreadNotificationsCount unreadNotificationsCapped }",
            json!({}),
        )
        .await;
    assert_eq!(
        unread,
        json!({ "unreadNotificationsCount": 1, "unreadNotificationsCapped": false })
    );
}

/// Settings: what is not given keeps its value (as notify-svc stored it);
/// giving both needs no read; giving neither changes nothing.
#[tokio::test]
async fn settings_keep_what_is_not_given() {
    let scene = Scene::start(&["alice", "bob"], false).await;
    let backend = &scene.backend;
    let (alice, bob) = (scene.user("alice"), scene.user("bob"));
    const READ: &str = "{ notificationSettings { mentionsFromStrangers newAccountsDays } }";
    let stored = |viewer: u64| async move {
        backend.data(Some(viewer), READ, json!({})).await["notificationSettings"].clone()
    };
    assert_eq!(
        stored(alice).await,
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
    let expected = json!({ "mentionsFromStrangers": "FILTER", "newAccountsDays": 365 });
    assert_eq!(both["updateNotificationSettings"], expected);
    assert_eq!(
        calls_since(backend, &before),
        calls(&[("UpdateSettings", 1)])
    );
    assert_eq!(stored(alice).await, expected);

    for (variables, expected) in [
        (
            json!({ "days": 7 }),
            json!({ "mentionsFromStrangers": "FILTER", "newAccountsDays": 7 }),
        ),
        (
            json!({ "policy": "ACCEPT" }),
            json!({ "mentionsFromStrangers": "ACCEPT", "newAccountsDays": 7 }),
        ),
    ] {
        let before = backend.rpc_counts();
        let one = backend.data(Some(alice), update, variables).await;
        assert_eq!(one["updateNotificationSettings"], expected);
        assert_eq!(
            calls_since(backend, &before),
            calls(&[("GetSettings", 1), ("UpdateSettings", 1)])
        );
        assert_eq!(stored(alice).await, expected);
    }

    let before = backend.rpc_counts();
    let nothing = backend.data(Some(alice), update, json!({})).await;
    let expected = json!({ "mentionsFromStrangers": "ACCEPT", "newAccountsDays": 7 });
    assert_eq!(nothing["updateNotificationSettings"], expected);
    assert_eq!(calls_since(backend, &before), calls(&[("GetSettings", 1)]));
    assert_eq!(stored(alice).await, expected);
    assert_eq!(
        stored(bob).await,
        json!({ "mentionsFromStrangers": "ACCEPT", "newAccountsDays": 0 }),
        "each user's own"
    );
}

/// `notificationAdded` delivers the viewer's main-list groups as notify-svc
/// creates or grows them, hydrated like a page, within a second; not other
/// recipients' groups, filtered ones, or a muted (notifications hidden)
/// actor's like.
#[tokio::test]
async fn notification_added_delivers_the_viewers_groups_within_a_second() {
    let scene = Scene::start(&["alice", "bob", "carol", "dave", "erin"], true).await;
    let backend = &scene.backend;
    let alice = scene.user("alice");
    let (bob, carol, dave, erin) = (
        scene.user("bob"),
        scene.user("carol"),
        scene.user("dave"),
        scene.user("erin"),
    );
    let liked = scene.post(alice, "liked").await;
    let probe = scene.post(alice, "probe").await;
    backend.data(Some(alice), FILTER_STRANGERS, json!({})).await;
    scene
        .act_with(alice, MUTE, json!({ "id": erin.to_string(), "hide": true }))
        .await;
    scene.act(carol, LIKE, &liked).await;
    let like_group = backend
        .data(Some(alice), PAGE, json!({ "types": ["LIKE"] }))
        .await["notifications"]["edges"][0]["node"]["id"]
        .clone();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let feed = tokio::spawn(backend.gateway.live_feed(stopped));
    let mut updates = backend.gateway.executor().execute_stream(
        backend.request(
            Some(alice),
            "subscription { notificationAdded { id type count actors { username } tweet { text } } }",
        ),
        None,
    );

    // The feed and the subscription start on their own time: bob likes
    // the probe tweet (unliking it first on a retry) until an update comes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut liked_probe = false;
    let first = loop {
        assert!(Instant::now() < deadline, "no update within 30 s");
        if liked_probe {
            scene.act(bob, UNLIKE, &probe).await;
        }
        scene.act(bob, LIKE, &probe).await;
        liked_probe = true;
        if let Ok(update) = tokio::time::timeout(Duration::from_millis(200), updates.next()).await {
            break update.expect("an update");
        }
    };
    let first = serde_json::to_value(&first).expect("serializes");
    assert_eq!(
        first["data"]["notificationAdded"]["type"], "LIKE",
        "{first}"
    );
    assert_eq!(
        first["data"]["notificationAdded"]["actors"],
        json!([{ "username": "bob" }]),
        "{first}"
    );
    assert_eq!(
        first["data"]["notificationAdded"]["tweet"],
        json!({ "text": "probe" }),
        "{first}"
    );

    // Bob's notification, a stranger's mention (filtered) and the muted
    // erin's like are not delivered; bob's like, growing the group, is,
    // quickly (after any repeats of the probe still on their way).
    scene.act(carol, FOLLOW, bob).await;
    scene.post(dave, "hey @alice").await;
    scene.act(erin, LIKE, &liked).await;
    let published = Instant::now();
    backend.data(Some(bob), LIKE, json!({ "id": liked })).await;
    let next = loop {
        let update = tokio::time::timeout(Duration::from_secs(5), updates.next())
            .await
            .expect("an update within 5 s")
            .expect("an update");
        let update = serde_json::to_value(&update).expect("serializes");
        if update["data"]["notificationAdded"]["tweet"]["text"] != "probe" {
            break update;
        }
    };
    let latency = published.elapsed();
    assert_eq!(
        next["data"]["notificationAdded"],
        json!({
            "id": like_group,
            "type": "LIKE",
            "count": 2,
            "actors": [{ "username": "bob" }, { "username": "carol" }],
            "tweet": { "text": "liked" },
        }),
        "{next}"
    );
    // The target is 1 s (measured by `warble-bench notify`); a test on a
    // loaded CI machine allows slack and prints the figure.
    println!("notificationAdded delivered after {latency:?}");
    assert!(
        latency < Duration::from_secs(3),
        "delivered after {latency:?}"
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), feed)
        .await
        .expect("the feed stops")
        .expect("the feed task");
}
