//! Frontend-level end-to-end cases: only HTTP GraphQL, WebSocket and
//! fan-out's status. Each runs against the single-process stack
//! (`tests/e2e/graphql.rs`) and against the services as separate processes
//! on Redis (`tests/e2e/processes.rs`): the same assertions, not a copy per mode.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

pub use crate::engagement::{
    a_block_hides_both_ways_and_refuses_interactions, a_mute_hides_and_lapses,
    a_muted_authors_tweets_skip_the_live_subscription,
    a_retweet_reaches_followers_and_undo_removes_it, a_thread_lists_replies_and_ancestors,
    bookmarks_stay_private,
};
use crate::frontend::{Frontend, StackSpec};
use crate::graphql::{Subscription, error_codes, node_ids};
pub use crate::media::{
    a_video_plays_from_range_requests, an_avatar_shows_on_the_author,
    an_image_posted_reaches_the_timeline_and_downloads_clean,
    bad_uploads_are_refused_with_their_reason,
};
pub use crate::notifications::{
    a_policy_filters_strangers_mentions, bad_notification_requests_are_refused,
    blocks_and_mutes_silence_notifications, notifications_group_count_and_clear_on_undo,
    the_notification_subscription_is_live,
};
pub use crate::search::{
    five_people_make_a_trend_and_one_spammer_does_not, search_pages_stay_put_while_tweets_arrive,
    tweets_are_found_by_every_kind_of_term_and_gone_once_deleted,
    users_are_found_by_prefix_exact_name_first,
};

const HOME: &str = r#"query($first: Int, $after: String) {
  homeTimeline(first: $first, after: $after) {
    edges { cursor node {
      id text createdAt hashtags mentions
      author { id username displayName followersCount followingCount viewerFollows }
      likeCount retweetCount replyCount quoteCount viewerHasLiked viewerHasRetweeted
    } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

/// The spec the error-code case needs: a tiny mutation bucket.
pub fn rate_limited_spec() -> StackSpec {
    StackSpec {
        mutation_burst: 5,
        mutations_per_minute: 1,
        ..StackSpec::default()
    }
}

/// Sign up, follow, post, like, then page a hydrated home timeline with cursors.
pub async fn sign_up_follow_post_and_page_a_hydrated_home_timeline(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (alice_id, alice) = gql.sign_up("alice").await;
    let (_, bob) = gql.sign_up("bob").await;
    gql.follow(&bob, &alice_id).await;
    // Bob reads once: he is active, so fan-out pushes to him.
    gql.data(Some(&bob), HOME, json!({})).await;
    let mut posted = Vec::new();
    for n in 0..3 {
        posted.push(gql.post(&alice, &format!("post {n} #warble @bob")).await);
    }
    gql.data(
        Some(&bob),
        "mutation($id: ID!) { likeTweet(id: $id) { id } }",
        json!({ "id": posted[1] }),
    )
    .await;
    stack.settle().await;

    let first = gql.data(Some(&bob), HOME, json!({ "first": 2 })).await["homeTimeline"].clone();
    assert_eq!(node_ids(&first), [posted[2].clone(), posted[1].clone()]);
    let node = &first["edges"][1]["node"];
    assert_eq!(node["text"], "post 1 #warble @bob");
    assert_eq!(node["hashtags"], json!(["warble"]));
    assert_eq!(node["mentions"], json!(["bob"]));
    assert_eq!(node["author"]["username"], "alice");
    assert_eq!(node["author"]["id"], alice_id.as_str());
    assert_eq!(node["author"]["followersCount"], 1);
    assert_eq!(node["author"]["viewerFollows"], true);
    assert_eq!(node["likeCount"], 1);
    assert_eq!(node["viewerHasLiked"], true);
    assert_eq!(node["viewerHasRetweeted"], false);
    assert_eq!(first["edges"][0]["node"]["viewerHasLiked"], false);
    assert!(node["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["pageInfo"]["hasNextPage"], true);

    let after = first["pageInfo"]["endCursor"].clone();
    let second = gql
        .data(Some(&bob), HOME, json!({ "first": 2, "after": after }))
        .await["homeTimeline"]
        .clone();
    assert_eq!(node_ids(&second), [posted[0].clone()]);
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
    // Any edge's cursor continues right after that edge.
    let from_edge = first["edges"][0]["cursor"].clone();
    let resumed = gql
        .data(Some(&bob), HOME, json!({ "first": 5, "after": from_edge }))
        .await["homeTimeline"]
        .clone();
    assert_eq!(node_ids(&resumed), [posted[1].clone(), posted[0].clone()]);
}

/// A page of 5 and a page of 25 cost the same downstream calls, one of each,
/// and the page's counts and viewer state ride on GetTweets.
pub async fn a_timeline_page_costs_a_constant_number_of_downstream_calls(stack: &impl Frontend) {
    let gql = stack.graphql();
    let mut authors = Vec::new();
    for n in 0..2 {
        authors.push(gql.sign_up(&format!("writer{n}")).await);
    }
    let (_, reader) = gql.sign_up("reader").await;
    for (id, _) in &authors {
        gql.follow(&reader, id).await;
    }
    for n in 0..30 {
        gql.post(&authors[n % 2].1, &format!("tweet {n}")).await;
    }
    stack.settle().await;
    gql.data(Some(&reader), HOME, json!({ "first": 1 })).await; // warm: rebuild on first read

    let mut costs = Vec::new();
    for first in [5, 25] {
        let before = gql.downstream_calls().await;
        let page = gql
            .data(Some(&reader), HOME, json!({ "first": first }))
            .await;
        assert_eq!(node_ids(&page["homeTimeline"]).len(), first);
        let after = gql.downstream_calls().await;
        let delta: BTreeMap<String, u64> = after
            .iter()
            .map(|(method, count)| {
                (
                    method.clone(),
                    count - before.get(method).copied().unwrap_or(0),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        costs.push(delta);
    }
    // Counts and the viewer's state come with GetTweets: no GetCounts or
    // GetViewerState call on a page.
    let expected: BTreeMap<String, u64> = [
        "GetHomeTimeline",
        "GetTweets",
        "GetUsers",
        "GetFollowCounts",
        "IsFollowing",
    ]
    .into_iter()
    .map(|method| (method.to_owned(), 1))
    .collect();
    assert_eq!(costs[0], expected, "a page of 5");
    assert_eq!(costs[1], expected, "a page of 25 costs the same calls");
}

/// Likes, retweets, replies and deletes, with counts updating and never negative.
pub async fn likes_retweets_and_deletes_update_counts(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, author) = gql.sign_up("author").await;
    let (_, fan) = gql.sign_up("fan").await;
    let tweet = gql.post(&author, "count me").await;
    let engage = |mutation: &'static str| {
        let gql = gql.clone();
        let fan = fan.clone();
        let tweet = tweet.clone();
        async move {
            let query = format!(
                "mutation($id: ID!) {{ {mutation}(id: $id) {{ likeCount retweetCount viewerHasLiked viewerHasRetweeted }} }}"
            );
            gql.data(Some(&fan), &query, json!({ "id": tweet })).await[mutation].clone()
        }
    };
    let liked = engage("likeTweet").await;
    assert_eq!(
        (liked["likeCount"].clone(), liked["viewerHasLiked"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(
        engage("likeTweet").await["likeCount"],
        1,
        "liking twice counts once"
    );
    let retweeted = engage("retweet").await;
    assert_eq!(
        (
            retweeted["retweetCount"].clone(),
            retweeted["viewerHasRetweeted"].clone()
        ),
        (json!(1), json!(true))
    );
    assert_eq!(engage("undoRetweet").await["retweetCount"], 0);
    assert_eq!(engage("unlikeTweet").await["likeCount"], 0);
    assert_eq!(
        engage("unlikeTweet").await["likeCount"],
        0,
        "never negative"
    );

    let reply = gql
        .data(
            Some(&fan),
            "mutation($id: ID!) { postTweet(text: \"a reply\", replyTo: $id) { id replyTo { id text } } }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(reply["postTweet"]["replyTo"]["text"], "count me");
    let counts = gql
        .data(
            None,
            "query($id: ID!) { tweet(id: $id) { replyCount quoteCount } }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(counts["tweet"]["replyCount"], 1);

    let deleted = gql
        .data(
            Some(&author),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(deleted["deleteTweet"], true);
    let gone = gql
        .request(
            None,
            "query($id: ID!) { tweet(id: $id) { id } }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(error_codes(&gone), ["NOT_FOUND"]);
}

/// A celebrity's tweet reaches followers by the read-time merge and subscribers live.
pub async fn a_celebrity_tweet_reaches_followers_and_subscribers(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (celebrity_id, celebrity) = gql.sign_up("celebrity").await;
    let mut fans = Vec::new();
    for n in 0..3 {
        let (_, token) = gql.sign_up(&format!("fan{n}")).await;
        gql.follow(&token, &celebrity_id).await;
        fans.push(token);
    }
    stack.settle().await;
    let mut subscription = Subscription::start(
        gql.addr(),
        &fans[0],
        "subscription { homeTimelineUpdates { id text author { username } } }",
    )
    .await;
    let posted_at = Instant::now();
    let tweet = gql.post(&celebrity, "hello from the top").await;
    let update = subscription
        .next_data(Duration::from_secs(10))
        .await
        .expect("the subscription delivers the celebrity's tweet");
    println!("subscription latency: {:?}", posted_at.elapsed());
    assert_eq!(update["homeTimelineUpdates"]["id"], tweet.as_str());
    assert_eq!(
        update["homeTimelineUpdates"]["author"]["username"],
        "celebrity"
    );

    // The fans' timelines show it through the read-time merge.
    stack.settle().await;
    for fan in &fans {
        let page = gql.data(Some(fan), HOME, json!({ "first": 5 })).await;
        assert_eq!(
            node_ids(&page["homeTimeline"]),
            std::slice::from_ref(&tweet)
        );
    }
    // A tweet from someone the subscriber does not follow is not delivered; their own is.
    let (_, stranger) = gql.sign_up("stranger").await;
    gql.post(&stranger, "not for you").await;
    let own = gql.post(&fans[0], "my own").await;
    let update = subscription
        .next_data(Duration::from_secs(10))
        .await
        .expect("own tweet delivered");
    assert_eq!(update["homeTimelineUpdates"]["id"], own.as_str());
}

/// Every error code from a real bad request (start the stack with [`rate_limited_spec`]).
pub async fn every_error_code_comes_from_a_real_bad_request(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, alice) = gql.sign_up("alice").await;
    let (_, bob) = gql.sign_up("bob").await;
    let tweet = gql.post(&alice, "mine").await;

    let bad_token = gql
        .request(Some("not.a.token"), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(error_codes(&bad_token), ["UNAUTHENTICATED"]);
    let anonymous = gql
        .request(
            None,
            "mutation { postTweet(text: \"hi\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&anonymous), ["UNAUTHENTICATED"]);
    let anonymous_home = gql
        .request(None, "{ homeTimeline { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(error_codes(&anonymous_home), ["UNAUTHENTICATED"]);

    let not_yours = gql
        .request(
            Some(&bob),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(error_codes(&not_yours), ["FORBIDDEN"]);

    let too_long = gql
        .request(
            Some(&bob),
            "mutation($t: String!) { postTweet(text: $t) { id } }",
            json!({ "t": "x".repeat(281) }),
        )
        .await;
    assert_eq!(error_codes(&too_long), ["BAD_USER_INPUT"]);
    assert_eq!(too_long["errors"][0]["extensions"]["field"], "text");

    let deep = "{ viewer { followers { edges { node { followers { edges { node { followers { edges { node { \
                followers { edges { node { username } } } } } } } } } } } } } }";
    assert_eq!(
        error_codes(&gql.request(Some(&bob), deep, json!({})).await),
        ["BAD_USER_INPUT"]
    );

    let huge_page = gql
        .request(
            Some(&bob),
            "{ homeTimeline(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&huge_page), ["BAD_USER_INPUT"]);

    let unknown = gql
        .request(None, "{ tweet(id: \"123456789\") { id } }", json!({}))
        .await;
    assert_eq!(error_codes(&unknown), ["NOT_FOUND"]);
    let unknown_user = gql
        .request(None, "{ user(username: \"nobody\") { id } }", json!({}))
        .await;
    assert_eq!(error_codes(&unknown_user), ["NOT_FOUND"]);

    // Bob has spent 1 of 5 mutation tokens on the rejected delete and post... keep going until refused.
    let mut codes = Vec::new();
    for n in 0..10 {
        let response = gql
            .request(
                Some(&bob),
                "mutation($t: String!) { postTweet(text: $t) { id } }",
                json!({ "t": format!("spam {n}") }),
            )
            .await;
        codes.extend(error_codes(&response));
    }
    assert!(codes.iter().any(|code| code == "RATE_LIMITED"), "{codes:?}");
    // Alice's bucket is her own.
    gql.post(&alice, "still allowed").await;

    // Internal details never leak: every error message is free of addresses and file paths.
    for response in [bad_token, not_yours, too_long, huge_page, unknown] {
        let text = response["errors"].to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains(".rs"),
            "{text}"
        );
    }
}

/// A body over the limit is refused before parsing.
pub async fn oversized_requests_are_refused_before_parsing(stack: &impl Frontend) {
    let gql = stack.graphql();
    let padding = "x".repeat(warble_gateway::config::LimitsConfig::default().max_body_bytes + 1);
    let body = json!({ "query": format!("{{ viewer {{ id }} }} # {padding}") });
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", gql.addr()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
}

/// Posts a raw body to `/graphql`; returns the status, headers and JSON body.
async fn post_raw(
    addr: std::net::SocketAddr,
    body: String,
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let json = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

/// The first error's message, for assertions that name the refusal.
fn first_message(response: &serde_json::Value) -> String {
    response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The attacks of the edge-hardening issue, each refused with its code and
/// a 4xx status, and none of them reaching downstream.
pub async fn abusive_queries_are_refused_with_stable_codes(stack: &impl Frontend) {
    let gql = stack.graphql();
    let addr = gql.addr();
    let (_, author) = gql.sign_up("author1").await;
    gql.post(&author, "hello").await;
    let page = r#"userTimeline(username: "author1", first: 100) { edges { node { id text createdAt hashtags mentions likeCount retweetCount } } }"#;
    let aliases = |n: usize| -> String {
        (0..n)
            .map(|i| format!("a{i}: {page}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let refused_before_running = |response: &(reqwest::StatusCode, _, serde_json::Value),
                                  what: &str| {
        assert_eq!(
            response.0,
            reqwest::StatusCode::BAD_REQUEST,
            "{what}: {:#}",
            response.2
        );
        assert_eq!(error_codes(&response.2), ["BAD_USER_INPUT"], "{what}");
        assert!(response.2["data"].is_null(), "{what}: nothing ran");
    };
    let before = gql.downstream_calls().await;

    // Alias amplification, and the negative-`first` alias that once wrapped
    // the whole query's cost to almost nothing.
    let amplified = post_raw(
        addr,
        json!({ "query": format!("{{ {} }}", aliases(10)) }).to_string(),
    )
    .await;
    refused_before_running(&amplified, "ten full pages");
    assert!(first_message(&amplified.2).contains("too complex"));
    let bypass = format!(
        "{{ {} z: userTimeline(username: \"author1\", first: -2000) {{ pageInfo {{ hasNextPage }} }} }}",
        aliases(10)
    );
    refused_before_running(
        &post_raw(addr, json!({ "query": bypass }).to_string()).await,
        "negative first",
    );

    // `first: 0` pages make no calls, and still cost a page each.
    let empty_pages = (0..60)
        .map(|i| format!("e{i}: userTimeline(username: \"author1\", first: 0) {{ pageInfo {{ hasNextPage }} }}"))
        .collect::<Vec<_>>()
        .join(" ");
    refused_before_running(
        &post_raw(
            addr,
            json!({ "query": format!("{{ {empty_pages} }}") }).to_string(),
        )
        .await,
        "sixty empty pages",
    );

    // Fragments: nested too deep, or expanding exponentially.
    let deep = "{ viewer { ...A } } fragment A on User { followers { edges { node { followers { edges { node { followers { edges { node { followers { edges { node { id } } } } } } } } } } } } }";
    let deep = post_raw(addr, json!({ "query": deep }).to_string()).await;
    refused_before_running(&deep, "deep fragments");
    assert!(first_message(&deep.2).contains("nested too deep"));
    let mut exponential = String::from("{ viewer { ...F0 } }\n");
    for level in 0..30 {
        exponential.push_str(&format!(
            "fragment F{level} on User {{ a: followers {{ edges {{ node {{ ...F{next} }} }} }} b: following {{ edges {{ node {{ ...F{next} }} }} }} }}\n",
            next = level + 1
        ));
    }
    exponential.push_str("fragment F30 on User { id }\n");
    let exponential = post_raw(addr, json!({ "query": exponential }).to_string()).await;
    refused_before_running(&exponential, "exponential fragments");
    assert!(first_message(&exponential.2).contains("too large"));

    // A JSON batch array.
    let batch = json!([{ "query": "{ __typename }" }, { "query": "{ __typename }" }]);
    let batch = post_raw(addr, batch.to_string()).await;
    refused_before_running(&batch, "batch array");
    assert!(first_message(&batch.2).contains("batch"));

    // A 70 KB body.
    let padding = "x".repeat(70 * 1024);
    let huge = post_raw(
        addr,
        json!({ "query": format!("{{ __typename }} # {padding}") }).to_string(),
    )
    .await;
    assert_eq!(huge.0, reqwest::StatusCode::PAYLOAD_TOO_LARGE);

    // Tokens: `alg: none`, and one that expired.
    let (_, rest) = author.split_once('.').expect("a JWT");
    let (payload, _) = rest.split_once('.').expect("a JWT");
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let expired_claims = json!({ "sub": "1", "iat": 1_000_000_000u64, "exp": 1_000_000_600u64 });
    let expired = format!(
        "{}.{}.{}",
        author.split('.').next().unwrap(),
        base64url(expired_claims.to_string().as_bytes()),
        author.rsplit('.').next().unwrap()
    );
    for token in [unsigned, expired] {
        let response = gql
            .request(Some(&token), "{ viewer { id } }", json!({}))
            .await;
        assert_eq!(error_codes(&response), ["UNAUTHENTICATED"], "{token}");
    }

    assert_eq!(
        gql.downstream_calls().await,
        before,
        "no refused request reached a service"
    );
}

/// RFC 4648 base64url without padding, for hand-made JWT parts.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What standard clients rely on: the introspection query graphql-js sends,
/// GET for queries (and not for mutations), the response media type and
/// security headers, and Relay's refetch of an object by its id alone.
pub async fn standard_clients_and_http_conventions_work(stack: &impl Frontend) {
    let gql = stack.graphql();
    let addr = gql.addr();
    let introspection = include_str!("../../gateway/tests/data/graphql-js-introspection.graphql");
    let (status, headers, response) =
        post_raw(addr, json!({ "query": introspection }).to_string()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{response:#}");
    assert!(response.get("errors").is_none(), "{response:#}");
    let types = response["data"]["__schema"]["types"]
        .as_array()
        .expect("types");
    assert!(
        types.iter().any(|t| t["name"] == "Tweet") && types.iter().any(|t| t["name"] == "User"),
        "the schema's own types are listed"
    );
    assert_eq!(headers["content-type"], "application/graphql-response+json");
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(headers[name], value, "{name}");
    }

    let http = reqwest::Client::new();
    let get = |query: &str| {
        http.get(format!("http://{addr}/graphql"))
            .query(&[("query", query)])
            .send()
    };
    let by_get = get("{ __typename }").await.unwrap();
    assert_eq!(by_get.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = by_get.json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query");
    let mutation = get(r#"mutation { signUp(username: "viaget", displayName: "x") { token } }"#)
        .await
        .unwrap();
    assert_eq!(mutation.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(mutation.headers()["allow"], "POST");
    let body: serde_json::Value = mutation.json().await.unwrap();
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"]);
    // Nothing was created by the refused GET.
    let user = gql
        .request(None, r#"{ user(username: "viaget") { id } }"#, json!({}))
        .await;
    assert_eq!(error_codes(&user), ["NOT_FOUND"], "{user:#}");

    // Relay's refetch query: a posted tweet, and its author, by id alone.
    let (author_id, token) = gql.sign_up("relay").await;
    let tweet = gql.post(&token, "refetch me").await;
    let refetch = r#"query($id: ID!) { node(id: $id) { __typename id
        ... on Tweet { text author { username } likeCount } ... on User { username } } }"#;
    let refetched = gql.data(None, refetch, json!({ "id": tweet })).await;
    assert_eq!(
        refetched["node"],
        json!({ "__typename": "Tweet", "id": tweet, "text": "refetch me",
                "author": { "username": "relay" }, "likeCount": 0 })
    );
    let author = gql.data(None, refetch, json!({ "id": author_id })).await;
    assert_eq!(
        author["node"],
        json!({ "__typename": "User", "id": author_id, "username": "relay" })
    );
}

/// The spec of the WebSocket case: a one-second `connection_init` window.
pub fn short_ws_init_spec() -> StackSpec {
    StackSpec {
        ws_init_timeout_secs: 1,
        ..StackSpec::default()
    }
}

/// A socket open to the internet is bounded: a client that never says
/// `connection_init` is closed (4408), a 10 MB message closes the socket,
/// 10,000 subscriptions on one socket run 100 and refuse the rest
/// (`RATE_LIMITED`), a user's ninth socket is refused, and a subscription
/// ends with `UNAUTHENTICATED` when its token expires.
pub async fn websockets_are_bounded(stack: &impl Frontend) {
    use crate::graphql::{close_code, init_socket, next_message, raw_socket, send_json};
    use tokio_tungstenite::tungstenite::Message;

    let gql = stack.graphql();
    let addr = gql.addr();
    let (user_id, token) = gql.sign_up("socketeer").await;
    let subscription = "subscription { homeTimelineUpdates { id } }";

    // Never initialised: closed with 4408 once the (one-second) window passes.
    let mut silent = raw_socket(addr).await;
    assert_eq!(
        close_code(&mut silent, Duration::from_secs(10)).await,
        Some(4408)
    );

    // A 10 MB message.
    let mut flooded = raw_socket(addr).await;
    let ack = init_socket(&mut flooded, &token).await.expect("ack");
    assert_eq!(ack["type"], "connection_ack");
    let huge = json!({ "id": "big", "type": "subscribe", "payload": { "query": format!("{subscription} # {}", "x".repeat(10 * 1024 * 1024)) } });
    let _ = futures::SinkExt::send(&mut flooded, Message::text(huge.to_string())).await;
    assert!(
        next_message(&mut flooded, Duration::from_secs(10))
            .await
            .is_none(),
        "the socket closes instead of answering"
    );

    // 10,000 subscriptions on one socket.
    let mut busy = raw_socket(addr).await;
    init_socket(&mut busy, &token).await.expect("ack");
    let attempts = 10_000;
    for id in 0..attempts {
        send_json(
            &mut busy,
            &json!({ "id": id.to_string(), "type": "subscribe", "payload": { "query": subscription } }),
        )
        .await;
    }
    // Messages are handled in order: ids 0 to 99 run (and, with no events,
    // say nothing), every later one is refused (an error, then maybe its
    // `complete`).
    let mut refused = std::collections::BTreeSet::new();
    let mut others = Vec::new();
    let quiet_after_all_refusals = loop {
        let wait = if refused.len() < attempts - 100 {
            Duration::from_secs(20)
        } else {
            Duration::from_millis(500)
        };
        let Some(message) = next_message(&mut busy, wait).await else {
            break refused.len() == attempts - 100;
        };
        if message.to_string().contains("RATE_LIMITED") {
            refused.insert(message["id"].as_str().unwrap_or_default().to_owned());
        } else if message["type"] != "complete" {
            others.push(message);
        }
    };
    assert!(
        quiet_after_all_refusals,
        "only {} refusals arrived",
        refused.len()
    );
    let expected: std::collections::BTreeSet<String> =
        (100..attempts).map(|id| id.to_string()).collect();
    assert_eq!(
        refused, expected,
        "exactly the subscriptions past the 100th are refused"
    );
    assert!(others.is_empty(), "the first 100 run quietly: {others:?}");

    // Connections per user: the default allows 8 at once; `busy` and
    // `flooded`'s slot (closed) leave room for 7 more, then the next is refused.
    let mut open = Vec::new();
    for _ in 0..7 {
        let mut socket = raw_socket(addr).await;
        let ack = init_socket(&mut socket, &token).await.expect("ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        open.push(socket);
    }
    let mut one_too_many = raw_socket(addr).await;
    let refusal = init_socket(&mut one_too_many, &token).await;
    assert_ne!(
        refusal.as_ref().map(|message| message["type"].clone()),
        Some(json!("connection_ack")),
        "{refusal:?}"
    );
    drop(open);
    drop(busy);

    // A token that expires in two seconds ends its subscription.
    let short_lived =
        warble_gateway::auth::Authenticator::new(&warble_gateway::config::AuthConfig {
            hs256_secret: stack.jwt_secret().into(),
            dev_mode: true,
            dev_token_ttl_secs: 2,
            ..Default::default()
        })
        .expect("authenticator")
        .issue(user_id.parse().expect("id"))
        .expect("token");
    // The per-user slots of the sockets dropped above come back as the
    // server notices the closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut expiring = loop {
        let mut socket = raw_socket(addr).await;
        let ack = init_socket(&mut socket, &short_lived).await;
        if ack.is_some_and(|ack| ack["type"] == "connection_ack") {
            break socket;
        }
        assert!(Instant::now() < deadline, "no socket slot came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    send_json(
        &mut expiring,
        &json!({ "id": "live", "type": "subscribe", "payload": { "query": subscription } }),
    )
    .await;
    let ended = next_message(&mut expiring, Duration::from_secs(15))
        .await
        .expect("the subscription ends");
    assert!(ended.to_string().contains("UNAUTHENTICATED"), "{ended}");
}

/// Automatic Persisted Queries, as Apollo Client's persisted-query link
/// speaks them: the hash alone is unknown at first, the query with its hash
/// runs and is kept, then the hash alone runs it, by POST and by GET; a
/// hash that does not match its text is refused; a mutation cannot run by
/// GET under its hash.
pub async fn persisted_queries_round_trip(stack: &impl Frontend) {
    let gql = stack.graphql();
    let addr = gql.addr();
    let (_, token) = gql.sign_up("persisted").await;
    let query = "query Me { viewer { username } }";
    let hash = warble_gateway::persisted::sha256_hex(query);
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(format!("http://{addr}/graphql"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let unknown: serde_json::Value = post(json!({ "extensions": extensions }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_codes(&unknown), ["PERSISTED_QUERY_NOT_FOUND"]);
    let mismatched: serde_json::Value =
        post(json!({ "query": "{ __typename }", "extensions": extensions }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(error_codes(&mismatched), ["BAD_USER_INPUT"]);
    let registered: serde_json::Value = post(json!({ "query": query, "extensions": extensions }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        registered["data"]["viewer"]["username"], "persisted",
        "{registered}"
    );
    let by_hash: serde_json::Value = post(json!({ "extensions": extensions }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        by_hash["data"]["viewer"]["username"], "persisted",
        "{by_hash}"
    );
    let by_get: serde_json::Value = http
        .get(format!("http://{addr}/graphql"))
        .bearer_auth(&token)
        .query(&[("extensions", extensions.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        by_get["data"]["viewer"]["username"], "persisted",
        "{by_get}"
    );

    // A mutation kept under its hash still cannot run by GET.
    let mutation = r#"mutation { postTweet(text: "by GET?") { id } }"#;
    let mutation_extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": warble_gateway::persisted::sha256_hex(mutation) } });
    post(json!({ "query": mutation, "extensions": mutation_extensions }))
        .await
        .unwrap();
    let refused = http
        .get(format!("http://{addr}/graphql"))
        .bearer_auth(&token)
        .query(&[("extensions", mutation_extensions.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
}

/// The spec of the request-rate case: five requests per client at once.
pub fn tight_request_rate_spec() -> StackSpec {
    StackSpec {
        query_burst: 5,
        queries_per_minute: 1,
        ..StackSpec::default()
    }
}

/// Requests past a client's rate are answered 429 with `Retry-After` and
/// `RATE_LIMITED` (with `retryAfter`), per user when signed in and per
/// address otherwise; a forged `X-Forwarded-For` does not buy a new bucket
/// (no trusted proxies are configured). With Redis (the separate-process
/// stack) the buckets live in Redis.
pub async fn requests_over_the_rate_are_refused_with_retry_after(stack: &impl Frontend) {
    let gql = stack.graphql();
    let addr = gql.addr();
    // One anonymous request from this address.
    let (_, token) = gql.sign_up("eager").await;
    let http = reqwest::Client::new();
    let send = |token: Option<&str>, forwarded: Option<&str>| {
        let mut request = http
            .post(format!("http://{addr}/graphql"))
            .json(&json!({ "query": "{ __typename }" }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        request.send()
    };
    for n in 0..5 {
        let response = send(Some(&token), None).await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "request {n}");
    }
    let refused = send(Some(&token), None).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error_codes(&body), ["RATE_LIMITED"]);
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], retry_after);

    // The address's own bucket (one sign-up spent) is separate from the user's.
    for n in 0..4 {
        let response = send(None, Some(&format!("198.51.100.{n}"))).await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "anonymous {n}");
    }
    let spoofed = send(None, Some("203.0.113.77")).await.unwrap();
    assert_eq!(
        spoofed.status(),
        reqwest::StatusCode::TOO_MANY_REQUESTS,
        "X-Forwarded-For from an untrusted peer buys no new bucket"
    );
}
