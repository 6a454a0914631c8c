//! Conversations, retweets, blocks and mutes, bookmarks, mentions and
//! profiles through the gateway's executor, over a real backend (see
//! `support`; no fan-out runs, so a home timeline holds what its first read
//! rebuilt from the stores).

mod support;

use serde_json::{Value, json};
use support::{Backend, error_codes, node_ids};

const HOME: &str = r#"query($first: Int) {
  homeTimeline(first: $first) {
    edges { cursor retweetedBy { id username } node { id text author { id } } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

const USER_TIMELINE: &str = r#"query($u: String!) {
  userTimeline(username: $u) {
    edges { retweetedBy { username } node { id author { username } } }
  }
}"#;

async fn home(backend: &Backend, viewer: u64) -> Value {
    backend
        .data(Some(viewer), HOME, json!({ "first": 50 }))
        .await["homeTimeline"]
        .clone()
}

/// `(tweet id, retweeter's username or null)` of each edge, in page order.
fn entries(connection: &Value) -> Vec<(String, Value)> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            (
                edge["node"]["id"].as_str().expect("id").to_owned(),
                edge["retweetedBy"]["username"].clone(),
            )
        })
        .collect()
}

/// Runs `query` as `viewer` and returns the first error's code.
async fn code_of(backend: &Backend, viewer: Option<u64>, query: &str, variables: Value) -> String {
    let response = backend.execute(viewer, query, variables).await;
    let codes = error_codes(&response);
    assert!(!codes.is_empty(), "expected an error: {response:#}");
    codes[0].0.clone()
}

async fn reply(backend: &Backend, author: u64, to: &str, text: &str) -> String {
    backend
        .data(
            Some(author),
            "mutation($t: String!, $r: ID) { postTweet(text: $t, replyTo: $r) { id } }",
            json!({ "t": text, "r": to }),
        )
        .await["postTweet"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn retweet(backend: &Backend, user: u64, tweet: &str) {
    backend
        .data(
            Some(user),
            "mutation($id: ID!) { retweet(id: $id) { id } }",
            json!({ "id": tweet }),
        )
        .await;
}

const LIKE: &str = "mutation($id: ID!) { likeTweet(id: $id) { id } }";
const RETWEET: &str = "mutation($id: ID!) { retweet(id: $id) { id } }";
const REPLY: &str = r#"mutation($id: ID!) { postTweet(text: "hey", replyTo: $id) { id } }"#;
const QUOTE: &str = r#"mutation($id: ID!) { postTweet(text: "look", quoteOf: $id) { id } }"#;
const FOLLOW: &str = "mutation($id: ID!) { follow(userId: $id) { id } }";
const BLOCK: &str = "mutation($id: ID!) { block(userId: $id) { id viewerBlocks } }";
const UNBLOCK: &str = "mutation($id: ID!) { unblock(userId: $id) { id viewerBlocks } }";

#[tokio::test]
async fn a_retweet_enters_home_and_user_timelines_marked_with_its_retweeter() {
    let backend = Backend::start();
    let (ana, ben, cy) = (
        backend.sign_up("ana").await,
        backend.sign_up("ben").await,
        backend.sign_up("cy").await,
    );
    let by_cy = backend.post(cy, "cy writes").await;
    let by_ana = backend.post(ana, "ana writes").await;
    backend.follow(ben, ana).await;
    retweet(&backend, ana, &by_cy).await;
    // Ana's own tweet, retweeted by Cy, does not come back to Ana.
    retweet(&backend, cy, &by_ana).await;

    // Ben follows Ana: her tweet, and her retweet of Cy's at the retweet's time.
    let page = home(&backend, ben).await;
    assert_eq!(
        entries(&page),
        vec![(by_cy.clone(), json!("ana")), (by_ana.clone(), Value::Null),]
    );
    assert_eq!(page["edges"][0]["retweetedBy"]["id"], ana.to_string());
    assert_eq!(page["edges"][0]["node"]["author"]["id"], cy.to_string());

    let profile = backend
        .data(None, USER_TIMELINE, json!({ "u": "ana" }))
        .await["userTimeline"]
        .clone();
    assert_eq!(
        profile["edges"],
        json!([
            { "retweetedBy": { "username": "ana" }, "node": { "id": by_cy, "author": { "username": "cy" } } },
            { "retweetedBy": null, "node": { "id": by_ana, "author": { "username": "ana" } } },
        ])
    );

    // Undoing the retweet takes it out of the user timeline.
    backend
        .data(
            Some(ana),
            "mutation($id: ID!) { undoRetweet(id: $id) { id viewerHasRetweeted } }",
            json!({ "id": by_cy }),
        )
        .await;
    let profile = backend
        .data(None, USER_TIMELINE, json!({ "u": "ana" }))
        .await["userTimeline"]
        .clone();
    assert_eq!(node_ids(&profile), vec![by_ana]);
}

#[tokio::test]
async fn a_block_hides_both_ways_and_refuses_interactions_until_unblocked() {
    let backend = Backend::start();
    let (ana, ben, cy) = (
        backend.sign_up("ana").await,
        backend.sign_up("ben").await,
        backend.sign_up("cy").await,
    );
    backend.follow(ana, ben).await;
    backend.follow(ben, ana).await;
    let by_ana = backend.post(ana, "ana writes").await;
    let by_ben = backend.post(ben, "ben writes").await;
    let root = backend.post(cy, "a thread by cy").await;
    let ben_reply = reply(&backend, ben, &root, "ben answers").await;
    let cy_reply = reply(&backend, cy, &root, "cy answers").await;

    let blocked = backend
        .data(Some(ana), BLOCK, json!({ "id": ben.to_string() }))
        .await;
    assert_eq!(blocked["block"]["viewerBlocks"], true);
    // Idempotent.
    backend
        .data(Some(ana), BLOCK, json!({ "id": ben.to_string() }))
        .await;

    // Follows are gone both ways.
    let counts = backend
        .data(
            Some(ana),
            "query($a: ID!, $b: ID!) { a: user(id: $a) { followersCount followingCount } b: user(id: $b) { viewerBlocks blocksViewer viewerFollows } }",
            json!({ "a": ana.to_string(), "b": ben.to_string() }),
        )
        .await;
    assert_eq!(
        counts,
        json!({
            "a": { "followersCount": 0, "followingCount": 0 },
            "b": { "viewerBlocks": true, "blocksViewer": false, "viewerFollows": false },
        })
    );
    let seen_by_ben = backend
        .data(
            Some(ben),
            "query($a: ID!) { user(id: $a) { viewerBlocks blocksViewer } }",
            json!({ "a": ana.to_string() }),
        )
        .await;
    assert_eq!(
        seen_by_ben["user"],
        json!({ "viewerBlocks": false, "blocksViewer": true })
    );

    // Neither can interact with the other's tweets, nor follow again.
    for (viewer, query, target) in [
        (ben, LIKE, by_ana.clone()),
        (ben, RETWEET, by_ana.clone()),
        (ben, REPLY, by_ana.clone()),
        (ben, QUOTE, by_ana.clone()),
        (ana, LIKE, by_ben.clone()),
        (ana, REPLY, by_ben.clone()),
        (ben, FOLLOW, ana.to_string()),
        (ana, FOLLOW, ben.to_string()),
    ] {
        assert_eq!(
            code_of(&backend, Some(viewer), query, json!({ "id": target })).await,
            "FORBIDDEN",
            "{query} by {viewer}"
        );
    }
    let counts = backend
        .data(
            None,
            "query($t: ID!) { tweet(id: $t) { likeCount retweetCount replyCount quoteCount } }",
            json!({ "t": by_ana }),
        )
        .await;
    assert_eq!(
        counts["tweet"],
        json!({ "likeCount": 0, "retweetCount": 0, "replyCount": 0, "quoteCount": 0 }),
        "a refused interaction changes nothing"
    );

    // Each disappears from the other's timelines and conversations.
    let ana_home = home(&backend, ana).await;
    assert_eq!(node_ids(&ana_home), vec![by_ana.clone()], "{ana_home:#}");
    assert_eq!(
        node_ids(&home(&backend, ben).await),
        vec![ben_reply.clone(), by_ben.clone()]
    );
    let profile = backend
        .data(Some(ben), USER_TIMELINE, json!({ "u": "ana" }))
        .await;
    assert_eq!(profile["userTimeline"]["edges"], json!([]));
    let replies = backend
        .data(
            Some(ana),
            "query($t: ID!) { tweet(id: $t) { replies { edges { node { id } } } } }",
            json!({ "t": root }),
        )
        .await;
    assert_eq!(
        node_ids(&replies["tweet"]["replies"]),
        vec![cy_reply.clone()]
    );
    let replies = backend
        .data(
            None,
            "query($t: ID!) { tweet(id: $t) { replies { edges { node { id } } } } }",
            json!({ "t": root }),
        )
        .await;
    assert_eq!(
        node_ids(&replies["tweet"]["replies"]),
        vec![ben_reply, cy_reply],
        "others still see both"
    );

    // The block list is the blocker's alone.
    let list = "query { viewer { blockedUsers { edges { node { id } since expiresAt } } } }";
    let listed = backend.data(Some(ana), list, json!({})).await;
    let edges = listed["viewer"]["blockedUsers"]["edges"].clone();
    assert_eq!(edges[0]["node"]["id"], ben.to_string());
    assert_eq!(edges[0]["expiresAt"], Value::Null);
    assert_eq!(edges.as_array().unwrap().len(), 1);
    assert_eq!(
        code_of(
            &backend,
            Some(ben),
            "query($a: ID!) { user(id: $a) { blockedUsers { edges { node { id } } } } }",
            json!({ "a": ana.to_string() }),
        )
        .await,
        "FORBIDDEN"
    );

    // Unblocked: interactions work again (follows stay removed).
    let unblocked = backend
        .data(Some(ana), UNBLOCK, json!({ "id": ben.to_string() }))
        .await;
    assert_eq!(unblocked["unblock"]["viewerBlocks"], false);
    backend.data(Some(ben), LIKE, json!({ "id": by_ana })).await;
    backend.follow(ben, ana).await;
}

#[tokio::test]
async fn a_mute_hides_from_home_and_replies_until_unmuted() {
    let backend = Backend::start();
    let (ana, ben, cy) = (
        backend.sign_up("ana").await,
        backend.sign_up("ben").await,
        backend.sign_up("cy").await,
    );
    backend.follow(ana, ben).await;
    backend.follow(ana, cy).await;
    let by_ben = backend.post(ben, "ben writes").await;
    let by_cy = backend.post(cy, "cy writes").await;
    // Cy retweets Ben: muting Ben hides that too.
    retweet(&backend, cy, &by_ben).await;
    let ben_reply = reply(&backend, ben, &by_cy, "ben answers").await;

    let muted = backend
        .data(
            Some(ana),
            "mutation($id: ID!) { mute(userId: $id, durationSecs: 3600, hideNotifications: true) { viewerMutes viewerBlocks } }",
            json!({ "id": ben.to_string() }),
        )
        .await;
    assert_eq!(
        muted["mute"],
        json!({ "viewerMutes": true, "viewerBlocks": false })
    );
    assert_eq!(node_ids(&home(&backend, ana).await), vec![by_cy.clone()]);
    let replies = backend
        .data(
            Some(ana),
            "query($t: ID!) { tweet(id: $t) { replies { edges { node { id } } } } }",
            json!({ "t": by_cy }),
        )
        .await;
    assert_eq!(node_ids(&replies["tweet"]["replies"]), Vec::<String>::new());
    let listed = backend
        .data(
            Some(ana),
            "query { viewer { mutedUsers { edges { node { username } expiresAt hideNotifications } } } }",
            json!({}),
        )
        .await;
    let edge = &listed["viewer"]["mutedUsers"]["edges"][0];
    assert_eq!(edge["node"]["username"], "ben");
    assert_eq!(edge["hideNotifications"], true);
    assert!(edge["expiresAt"].is_string(), "{edge}");

    backend
        .data(
            Some(ana),
            "mutation($id: ID!) { unmute(userId: $id) { viewerMutes } }",
            json!({ "id": ben.to_string() }),
        )
        .await;
    let page = home(&backend, ana).await;
    assert!(node_ids(&page).contains(&by_ben), "{page:#}");
    let replies = backend
        .data(
            Some(ana),
            "query($t: ID!) { tweet(id: $t) { replies { edges { node { id } } } } }",
            json!({ "t": by_cy }),
        )
        .await;
    assert_eq!(node_ids(&replies["tweet"]["replies"]), vec![ben_reply]);
}

#[tokio::test]
async fn a_thread_lists_replies_oldest_first_and_ancestors_root_first() {
    let backend = Backend::start();
    let ana = backend.sign_up("ana").await;
    let root = backend.post(ana, "root").await;
    let first = reply(&backend, ana, &root, "first").await;
    let second = reply(&backend, ana, &root, "second").await;
    let deep = reply(&backend, ana, &first, "deeper").await;
    let deepest = reply(&backend, ana, &deep, "deepest").await;

    let replies = backend
        .data(
            None,
            r#"query($t: ID!, $after: String) { tweet(id: $t) { replies(first: 1, after: $after) {
                edges { node { id text } } pageInfo { hasNextPage endCursor } } } }"#,
            json!({ "t": root }),
        )
        .await["tweet"]["replies"]
        .clone();
    assert_eq!(node_ids(&replies), vec![first.clone()]);
    assert_eq!(replies["pageInfo"]["hasNextPage"], true);
    let rest = backend
        .data(
            None,
            r#"query($t: ID!, $after: String) { tweet(id: $t) { replies(first: 5, after: $after) {
                edges { node { id } } pageInfo { hasNextPage } } } }"#,
            json!({ "t": root, "after": replies["pageInfo"]["endCursor"] }),
        )
        .await["tweet"]["replies"]
        .clone();
    assert_eq!(node_ids(&rest), vec![second]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);

    let chain = backend
        .data(
            None,
            "query($t: ID!) { tweet(id: $t) { ancestors { id } short: ancestors(last: 2) { id } } }",
            json!({ "t": deepest }),
        )
        .await["tweet"]
        .clone();
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|tweet| tweet["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&chain["ancestors"]),
        vec![root.clone(), first.clone(), deep.clone()]
    );
    assert_eq!(ids(&chain["short"]), vec![first.clone(), deep.clone()]);

    // A deleted tweet leaves the chain but the chain goes on through it.
    backend
        .data(
            Some(ana),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": first }),
        )
        .await;
    let chain = backend
        .data(
            None,
            "query($t: ID!) { tweet(id: $t) { ancestors { id } } }",
            json!({ "t": deepest }),
        )
        .await["tweet"]
        .clone();
    assert_eq!(ids(&chain["ancestors"]), vec![root, deep]);

    assert_eq!(
        code_of(
            &backend,
            None,
            "query($t: ID!) { tweet(id: $t) { ancestors(last: 81) { id } } }",
            json!({ "t": deepest }),
        )
        .await,
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn bookmarks_are_idempotent_private_and_lose_deleted_tweets() {
    let backend = Backend::start();
    let (ana, ben) = (backend.sign_up("ana").await, backend.sign_up("ben").await);
    let older = backend.post(ben, "older").await;
    let newer = backend.post(ben, "newer").await;
    let bookmark = "mutation($id: ID!) { bookmark(id: $id) { id viewerHasBookmarked } }";
    // Bookmarked newest-first by bookmark time, not tweet time.
    backend
        .data(Some(ana), bookmark, json!({ "id": newer }))
        .await;
    let twice = backend
        .data(Some(ana), bookmark, json!({ "id": older }))
        .await;
    assert_eq!(twice["bookmark"]["viewerHasBookmarked"], true);
    backend
        .data(Some(ana), bookmark, json!({ "id": older }))
        .await;

    let list = "query { viewer { bookmarks { edges { node { id viewerHasBookmarked } } } } }";
    let listed = backend.data(Some(ana), list, json!({})).await;
    assert_eq!(
        node_ids(&listed["viewer"]["bookmarks"]),
        vec![older.clone(), newer.clone()]
    );
    assert_eq!(
        code_of(
            &backend,
            Some(ben),
            "query($a: ID!) { user(id: $a) { bookmarks { edges { node { id } } } } }",
            json!({ "a": ana.to_string() }),
        )
        .await,
        "FORBIDDEN"
    );
    let as_ben = backend
        .data(
            Some(ben),
            "query($t: ID!) { tweet(id: $t) { viewerHasBookmarked } }",
            json!({ "t": older }),
        )
        .await;
    assert_eq!(as_ben["tweet"]["viewerHasBookmarked"], false);

    backend
        .data(
            Some(ben),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": older }),
        )
        .await;
    let listed = backend.data(Some(ana), list, json!({})).await;
    assert_eq!(
        node_ids(&listed["viewer"]["bookmarks"]),
        vec![newer.clone()]
    );
    // A deleted tweet cannot be bookmarked: a clear error, nothing stored.
    let response = backend
        .execute(Some(ana), bookmark, json!({ "id": older }))
        .await;
    assert_eq!(
        error_codes(&response),
        vec![("BAD_USER_INPUT".to_owned(), "id".to_owned())]
    );
    backend
        .data(
            Some(ana),
            "mutation($id: ID!) { unbookmark(id: $id) { viewerHasBookmarked } }",
            json!({ "id": newer }),
        )
        .await;
    let listed = backend.data(Some(ana), list, json!({})).await;
    assert_eq!(listed["viewer"]["bookmarks"]["edges"], json!([]));
}

#[tokio::test]
async fn mentioned_users_resolve_for_a_whole_page_in_one_batch() {
    let backend = Backend::start();
    let (ana, ben) = (backend.sign_up("ana").await, backend.sign_up("Ben").await);
    let cy = backend.sign_up("cy").await;
    for n in 0..5 {
        backend
            .post(ana, &format!("hi @ben and @nobody and @CY #{n}"))
            .await;
    }
    let before = backend.rpc_counts();
    let page = backend
        .data(
            None,
            r#"{ userTimeline(username: "ana") { edges { node { mentions mentionedUsers { id username } } } } }"#,
            json!({}),
        )
        .await;
    let after = backend.rpc_counts();
    let edges = page["userTimeline"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 5);
    for edge in edges {
        assert_eq!(edge["node"]["mentions"], json!(["ben", "nobody", "cy"]));
        assert_eq!(
            edge["node"]["mentionedUsers"],
            json!([
                { "id": ben.to_string(), "username": "Ben" },
                { "id": cy.to_string(), "username": "cy" },
            ])
        );
    }
    let lookups = after.get("GetUsersByUsernames").copied().unwrap_or(0)
        - before.get("GetUsersByUsernames").copied().unwrap_or(0);
    assert_eq!(lookups, 1, "one lookup for the whole page");
}

#[tokio::test]
async fn profiles_follow_the_sign_up_rules_and_bad_input_changes_nothing() {
    let backend = Backend::start();
    let ana = backend.sign_up("ana").await;
    let update = r#"mutation($d: String, $b: String, $l: String, $w: String) {
        updateProfile(displayName: $d, bio: $b, location: $l, website: $w) {
            displayName bio location website verified tweetsCount } }"#;
    let updated = backend
        .data(
            Some(ana),
            update,
            json!({ "d": "  Ana Banana ", "b": "I write.", "l": "Lisbon", "w": "https://ana.example/" }),
        )
        .await;
    assert_eq!(
        updated["updateProfile"],
        json!({
            "displayName": "Ana Banana", "bio": "I write.", "location": "Lisbon",
            "website": "https://ana.example/", "verified": false, "tweetsCount": 0,
        })
    );
    backend.post(ana, "one").await;
    let only_bio = backend.data(Some(ana), update, json!({ "b": "" })).await;
    assert_eq!(only_bio["updateProfile"]["bio"], "");
    assert_eq!(only_bio["updateProfile"]["location"], "Lisbon");
    assert_eq!(only_bio["updateProfile"]["tweetsCount"], 1);

    for (variables, field) in [
        (json!({ "b": "x".repeat(161), "l": "Porto" }), "bio"),
        (json!({ "l": "x".repeat(31) }), "location"),
        (json!({ "w": "ftp://ana.example" }), "website"),
        (
            json!({ "w": format!("https://{}.example", "a".repeat(100)) }),
            "website",
        ),
        (json!({ "d": "   " }), "displayName"),
    ] {
        let response = backend.execute(Some(ana), update, variables.clone()).await;
        let codes = error_codes(&response);
        assert_eq!(codes.len(), 1, "{response:#}");
        assert_eq!(codes[0].0, "BAD_USER_INPUT", "{variables}");
        assert!(
            response["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{response:#}"
        );
    }
    let profile = backend
        .data(
            None,
            "query($id: ID!) { user(id: $id) { displayName bio location website } }",
            json!({ "id": ana.to_string() }),
        )
        .await;
    assert_eq!(
        profile["user"],
        json!({ "displayName": "Ana Banana", "bio": "", "location": "Lisbon", "website": "https://ana.example/" }),
        "refused edits change nothing"
    );
}

#[tokio::test]
async fn acting_on_yourself_is_bad_input_and_changes_nothing() {
    let backend = Backend::start();
    let ana = backend.sign_up("ana").await;
    for mutation in [
        "mutation($id: ID!) { block(userId: $id) { id } }",
        "mutation($id: ID!) { mute(userId: $id) { id } }",
    ] {
        let response = backend
            .execute(Some(ana), mutation, json!({ "id": ana.to_string() }))
            .await;
        assert_eq!(
            error_codes(&response),
            vec![("BAD_USER_INPUT".to_owned(), "userId".to_owned())],
            "{mutation}"
        );
    }
    let response = backend
        .execute(
            Some(ana),
            "mutation($id: ID!) { mute(userId: $id, durationSecs: -1) { id } }",
            json!({ "id": "12345" }),
        )
        .await;
    assert_eq!(
        error_codes(&response),
        vec![("BAD_USER_INPUT".to_owned(), "durationSecs".to_owned())]
    );
    let lists = backend
        .data(
            Some(ana),
            "query { viewer { blockedUsers { edges { cursor } } mutedUsers { edges { cursor } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        lists["viewer"],
        json!({ "blockedUsers": { "edges": [] }, "mutedUsers": { "edges": [] } })
    );
    assert_eq!(
        code_of(
            &backend,
            None,
            "query { user(username: \"ana\") { blockedUsers { edges { cursor } } } }",
            json!({}),
        )
        .await,
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn a_home_page_with_retweets_and_a_long_block_list_costs_a_constant_number_of_calls() {
    let backend = Backend::start();
    let viewer = backend.sign_up("viewer").await;
    let mut authors = Vec::new();
    for n in 0..4 {
        let author = backend.sign_up(&format!("author{n}")).await;
        backend.follow(viewer, author).await;
        authors.push(author);
    }
    let stranger = backend.sign_up("stranger").await;
    for n in 0..6 {
        let tweet = backend.post(stranger, &format!("stranger {n}")).await;
        retweet(&backend, authors[n % 4], &tweet).await;
        backend.post(authors[n % 4], &format!("own {n}")).await;
    }
    let query = r#"{ homeTimeline(first: 20) { edges { retweetedBy { username followersCount }
        node { id author { username followersCount } likeCount viewerHasLiked viewerHasBookmarked } } } }"#;
    // The first read rebuilds the timeline from the stores; measure the next.
    page_and_calls(&backend, viewer, query).await;
    let (page, plain_calls) = page_and_calls(&backend, viewer, query).await;
    assert_eq!(page["homeTimeline"]["edges"].as_array().unwrap().len(), 12);
    for n in 0..40 {
        let other = backend.sign_up(&format!("blocked{n}")).await;
        backend
            .data(Some(viewer), BLOCK, json!({ "id": other.to_string() }))
            .await;
    }
    let (page, blocked_calls) = page_and_calls(&backend, viewer, query).await;
    assert_eq!(page["homeTimeline"]["edges"].as_array().unwrap().len(), 12);
    assert_eq!(
        plain_calls, blocked_calls,
        "a block list costs no call per entry"
    );
}

/// Reads `query` as `viewer`; returns the data and the downstream calls it made.
async fn page_and_calls(backend: &Backend, viewer: u64, query: &str) -> (Value, u64) {
    let before = backend.rpc_counts();
    let page = backend.data(Some(viewer), query, json!({})).await;
    let after = backend.rpc_counts();
    let calls = after
        .iter()
        .map(|(method, count)| count - before.get(method).copied().unwrap_or(0))
        .sum();
    (page, calls)
}
