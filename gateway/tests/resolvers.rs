//! The resolvers through the gateway's executor (`Schema::execute` behind
//! the document limits), without HTTP, over a real
//! backend (see `support`): what a page holds, how it pages, what every
//! error code means, and what a page costs downstream.

mod support;

use serde_json::{Value, json};
use support::{Backend, error_codes, id, node_ids};

const HOME: &str = r#"query($first: Int, $after: String) {
  homeTimeline(first: $first, after: $after) {
    edges { cursor node {
      id text createdAt hashtags mentions
      author { id username displayName followersCount followingCount viewerFollows }
      likeCount retweetCount replyCount quoteCount viewerHasLiked viewerHasRetweeted
    } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"#;

const LIKE: &str = "mutation($id: ID!) { likeTweet(id: $id) { id likeCount viewerHasLiked } }";
const UNLIKE: &str = "mutation($id: ID!) { unlikeTweet(id: $id) { id likeCount viewerHasLiked } }";

async fn home(backend: &Backend, viewer: u64, variables: Value) -> Value {
    backend.data(Some(viewer), HOME, variables).await["homeTimeline"].clone()
}

#[tokio::test]
async fn sign_up_follow_post_and_read_a_hydrated_home_timeline() {
    let backend = Backend::start();
    let signed_up = backend
        .data(
            None,
            r#"mutation { signUp(username: "Alice", displayName: "Alice A.", bio: "hi") {
                token user { id username displayName bio followersCount } } }"#,
            json!({}),
        )
        .await["signUp"]
        .clone();
    assert!(!signed_up["token"].as_str().unwrap().is_empty());
    assert_eq!(signed_up["user"]["username"], "Alice");
    assert_eq!(signed_up["user"]["displayName"], "Alice A.");
    assert_eq!(signed_up["user"]["bio"], "hi");
    assert_eq!(signed_up["user"]["followersCount"], 0);
    let alice = id(&signed_up["user"]["id"]);
    let bob = backend.sign_up("bob").await;

    let followed = backend
        .data(
            Some(bob),
            "mutation($id: ID!) { follow(userId: $id) { id username followersCount viewerFollows } }",
            json!({ "id": alice.to_string() }),
        )
        .await;
    assert_eq!(
        followed["follow"],
        json!({ "id": alice.to_string(), "username": "Alice", "followersCount": 1, "viewerFollows": true })
    );
    let mut posted = Vec::new();
    for n in 0..3 {
        posted.push(backend.post(alice, &format!("post {n} #Warble @bob")).await);
    }
    backend
        .data(Some(bob), LIKE, json!({ "id": posted[1] }))
        .await;

    let page = home(&backend, bob, json!({})).await;
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();
    assert_eq!(node_ids(&page), newest_first);
    for edge in page["edges"].as_array().unwrap() {
        let node = &edge["node"];
        let liked = node["id"] == posted[1].as_str();
        assert!(node["text"].as_str().unwrap().ends_with(" #Warble @bob"));
        assert!(node["createdAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(node["hashtags"], json!(["warble"]), "lower-cased");
        assert_eq!(node["mentions"], json!(["bob"]));
        assert_eq!(
            node["author"],
            json!({
                "id": alice.to_string(),
                "username": "Alice",
                "displayName": "Alice A.",
                "followersCount": 1,
                "followingCount": 0,
                "viewerFollows": true,
            })
        );
        assert_eq!(node["likeCount"], u64::from(liked));
        assert_eq!(node["viewerHasLiked"], liked);
        assert_eq!(node["retweetCount"], 0);
        assert_eq!(node["replyCount"], 0);
        assert_eq!(node["quoteCount"], 0);
        assert_eq!(node["viewerHasRetweeted"], false);
    }
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], false);

    // The author's own view of the same tweet: not liked by them, and
    // viewerFollows is null for themself.
    let own = backend
        .data(
            Some(alice),
            "query($id: ID!) { tweet(id: $id) { likeCount viewerHasLiked author { viewerFollows } } }",
            json!({ "id": posted[1] }),
        )
        .await;
    assert_eq!(
        own["tweet"],
        json!({ "likeCount": 1, "viewerHasLiked": false, "author": { "viewerFollows": null } })
    );
    // Signed out, the viewer's fields are null and the counts are the same.
    let anonymous = backend
        .data(
            None,
            "query($id: ID!) { tweet(id: $id) { likeCount viewerHasLiked } }",
            json!({ "id": posted[1] }),
        )
        .await;
    assert_eq!(
        anonymous["tweet"],
        json!({ "likeCount": 1, "viewerHasLiked": null })
    );
}

#[tokio::test]
async fn likes_and_unlikes_are_idempotent() {
    let backend = Backend::start();
    let author = backend.sign_up("author").await;
    let fan = backend.sign_up("fan").await;
    let tweet = backend.post(author, "like me once").await;
    let vars = json!({ "id": tweet });

    for attempt in 0..2 {
        let liked = backend.data(Some(fan), LIKE, vars.clone()).await;
        assert_eq!(
            liked["likeTweet"],
            json!({ "id": tweet, "likeCount": 1, "viewerHasLiked": true }),
            "like #{attempt}"
        );
    }
    let other = backend.sign_up("other").await;
    let both = backend.data(Some(other), LIKE, vars.clone()).await;
    assert_eq!(both["likeTweet"]["likeCount"], 2);
    for attempt in 0..2 {
        let unliked = backend.data(Some(fan), UNLIKE, vars.clone()).await;
        assert_eq!(
            unliked["unlikeTweet"],
            json!({ "id": tweet, "likeCount": 1, "viewerHasLiked": false }),
            "unlike #{attempt}: only the fan's own like goes"
        );
    }
    // Unliking what was never liked changes nothing and never goes negative.
    let never = backend.data(Some(author), UNLIKE, vars.clone()).await;
    assert_eq!(never["unlikeTweet"]["likeCount"], 1);
    backend.data(Some(other), UNLIKE, vars.clone()).await;
    let none = backend.data(Some(other), UNLIKE, vars).await;
    assert_eq!(
        none["unlikeTweet"],
        json!({ "id": tweet, "likeCount": 0, "viewerHasLiked": false })
    );
}

#[tokio::test]
async fn pages_follow_cursors_to_the_end() {
    let backend = Backend::start();
    let writer = backend.sign_up("writer").await;
    let reader = backend.sign_up("reader").await;
    backend.follow(reader, writer).await;
    let mut posted = Vec::new();
    for n in 0..5 {
        posted.push(backend.post(writer, &format!("tweet {n}")).await);
    }
    posted.reverse(); // newest first, as timelines list them

    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = home(&backend, reader, json!({ "first": 2, "after": after })).await;
        let info = &page["pageInfo"];
        let edges = page["edges"].as_array().unwrap();
        assert_eq!(info["startCursor"], edges[0]["cursor"]);
        assert_eq!(info["endCursor"], edges[edges.len() - 1]["cursor"]);
        pages.push(node_ids(&page));
        if info["hasNextPage"] == false {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(
        pages,
        [&posted[0..2], &posted[2..4], &posted[4..5]],
        "pages of two, then the rest, each tweet once"
    );

    // Any edge's cursor resumes right after that edge.
    let first = home(&backend, reader, json!({ "first": 2 })).await;
    let resumed = home(
        &backend,
        reader,
        json!({ "first": 10, "after": first["edges"][0]["cursor"] }),
    )
    .await;
    assert_eq!(node_ids(&resumed), posted[1..]);
    assert_eq!(resumed["pageInfo"]["hasNextPage"], false);

    // `first: 0` is an empty page without a downstream call; no `first` is 20.
    let calls = backend.rpc_counts();
    let empty = home(&backend, reader, json!({ "first": 0 })).await;
    assert_eq!(backend.rpc_counts(), calls);
    assert_eq!(
        empty,
        json!({ "edges": [], "pageInfo": {
            "hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null
        } })
    );
    assert_eq!(node_ids(&home(&backend, reader, json!({})).await), posted);
}

#[tokio::test]
async fn every_error_carries_a_stable_code() {
    let backend = Backend::start();
    let alice = backend.sign_up("alice").await;
    let bob = backend.sign_up("bob").await;
    let tweet = backend.post(alice, "mine").await;
    let code = |code: &str| vec![(code.to_owned(), String::new())];
    let on_field = |code: &str, field: &str| vec![(code.to_owned(), field.to_owned())];

    // Signed out: only what needs a viewer is refused, at its own path.
    let anonymous_home = backend
        .execute(None, "{ homeTimeline { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(error_codes(&anonymous_home), code("UNAUTHENTICATED"));
    assert_eq!(anonymous_home["errors"][0]["path"], json!(["homeTimeline"]));
    assert_eq!(anonymous_home["data"], Value::Null);
    for mutation in [
        r#"mutation { postTweet(text: "hi") { id } }"#.to_owned(),
        format!(r#"mutation {{ likeTweet(id: "{tweet}") {{ id }} }}"#),
        format!(r#"mutation {{ follow(userId: "{alice}") {{ id }} }}"#),
    ] {
        let refused = backend.execute(None, &mutation, json!({})).await;
        assert_eq!(error_codes(&refused), code("UNAUTHENTICATED"), "{mutation}");
    }
    let signed_out = backend.data(None, "{ viewer { id } }", json!({})).await;
    assert_eq!(signed_out["viewer"], Value::Null);

    // Bad arguments name the argument they are about.
    let huge_page = backend
        .execute(
            Some(bob),
            "{ homeTimeline(first: 101) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&huge_page), on_field("BAD_USER_INPUT", "first"));
    for bad_id in ["not-a-number", "0", "-5"] {
        let refused = backend
            .execute(
                Some(bob),
                "query($id: ID!) { tweet(id: $id) { id } }",
                json!({ "id": bad_id }),
            )
            .await;
        assert_eq!(
            error_codes(&refused),
            on_field("BAD_USER_INPUT", "id"),
            "{bad_id}"
        );
    }
    let bad_followee = backend
        .execute(
            Some(bob),
            r#"mutation { follow(userId: "x") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        error_codes(&bad_followee),
        on_field("BAD_USER_INPUT", "userId")
    );
    // Rules the services enforce come back with the service's field name.
    let too_long = backend
        .execute(
            Some(bob),
            "mutation($t: String!) { postTweet(text: $t) { id } }",
            json!({ "t": "x".repeat(281) }),
        )
        .await;
    assert_eq!(error_codes(&too_long), on_field("BAD_USER_INPUT", "text"));
    let bad_username = backend
        .execute(
            None,
            r#"mutation { signUp(username: "no spaces allowed", displayName: "x") { token } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        error_codes(&bad_username),
        on_field("BAD_USER_INPUT", "username")
    );
    let taken = backend
        .execute(
            None,
            r#"mutation { signUp(username: "ALICE", displayName: "x") { token } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&taken), code("BAD_USER_INPUT"), "{taken}");
    // Values that do not coerce to their input type, given as variables or
    // inline, are the client's: never INTERNAL.
    for (query, variables) in [
        (
            "query($first: Int) { homeTimeline(first: $first) { edges { cursor } } }",
            json!({ "first": "ten" }),
        ),
        (
            "query($first: Int) { homeTimeline(first: $first) { edges { cursor } } }",
            json!({ "first": 3_000_000_000u64 }),
        ),
        (
            "mutation($t: String!) { postTweet(text: $t) { id } }",
            json!({ "t": 5 }),
        ),
        (
            "query($id: ID!) { tweet(id: $id) { id } }",
            json!({ "id": { "nested": true } }),
        ),
        (
            "{ homeTimeline(first: 3000000000) { edges { cursor } } }",
            json!({}),
        ),
        (
            "query($s: SearchSort) { search(query: \"x\", sort: $s) { edges { cursor } } }",
            json!({ "s": "BEST" }),
        ),
        (
            "mutation($m: [ID!]) { postTweet(text: \"x\", mediaIds: $m) { id } }",
            json!({ "m": [1.5, null] }),
        ),
        (
            "mutation($m: [ID!]) { postTweet(text: \"x\", mediaIds: $m) { id } }",
            json!({ "m": "not-a-list" }),
        ),
        (
            "query($first: Int!) { homeTimeline(first: $first) { edges { cursor } } }",
            json!({}),
        ),
        (
            "query($a: String) { homeTimeline(first: 1, after: $a) { edges { cursor } } }",
            json!({ "a": ["x"] }),
        ),
    ] {
        let refused = backend.execute(Some(bob), query, variables.clone()).await;
        let codes: Vec<String> = error_codes(&refused)
            .into_iter()
            .map(|(code, _)| code)
            .collect();
        assert!(
            !codes.is_empty() && codes.iter().all(|code| code == "BAD_USER_INPUT"),
            "{query} {variables}: {refused}"
        );
    }
    // Errors before execution (syntax, validation) are the client's too.
    let unknown_field = backend
        .execute(Some(bob), "{ viewer { shoeSize } }", json!({}))
        .await;
    assert_eq!(error_codes(&unknown_field), code("BAD_USER_INPUT"));

    // What does not exist.
    let missing_tweet = backend
        .execute(None, r#"{ tweet(id: "123456789") { id } }"#, json!({}))
        .await;
    assert_eq!(error_codes(&missing_tweet), code("NOT_FOUND"));
    assert_eq!(missing_tweet["errors"][0]["path"], json!(["tweet"]));
    let missing_user = backend
        .execute(None, r#"{ user(username: "nobody") { id } }"#, json!({}))
        .await;
    assert_eq!(error_codes(&missing_user), code("NOT_FOUND"));
    let like_missing = backend
        .execute(
            Some(bob),
            r#"mutation { likeTweet(id: "123456789") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        error_codes(&like_missing),
        code("NOT_FOUND"),
        "{like_missing}"
    );

    // Someone else's tweet.
    let not_yours = backend
        .execute(
            Some(bob),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(error_codes(&not_yours), code("FORBIDDEN"), "{not_yours}");
}

#[tokio::test]
async fn a_home_page_costs_the_same_downstream_calls_at_any_size() {
    let backend = Backend::start();
    let writers = [
        backend.sign_up("writer0").await,
        backend.sign_up("writer1").await,
    ];
    let reader = backend.sign_up("reader").await;
    for writer in writers {
        backend.follow(reader, writer).await;
    }
    for n in 0..30 {
        backend.post(writers[n % 2], &format!("tweet {n}")).await;
    }
    home(&backend, reader, json!({ "first": 1 })).await; // the first read rebuilds

    // Counts and the viewer's likes ride on GetTweets; authors, their
    // follow counts and whether the viewer follows them take one batch each.
    let expected: std::collections::BTreeMap<String, u64> = [
        "GetHomeTimeline",
        "GetTweets",
        "GetUsers",
        "GetFollowCounts",
        "IsFollowing",
    ]
    .into_iter()
    .map(|method| (method.to_owned(), 1))
    .collect();
    for first in [5, 25] {
        let before = backend.rpc_counts();
        let page = home(&backend, reader, json!({ "first": first })).await;
        assert_eq!(node_ids(&page).len(), first);
        let after = backend.rpc_counts();
        let cost: std::collections::BTreeMap<String, u64> = after
            .into_iter()
            .map(|(method, count)| {
                let count = count - before.get(&method).copied().unwrap_or(0);
                (method, count)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        assert_eq!(cost, expected, "a page of {first}");
    }
}

/// `first: -1` is refused like any other bad page size, naming `first`.
/// Paged fields' complexity once computed `first as usize * ...`, which
/// wrapped for a negative `first` (a panic in debug builds, a tiny cost in
/// release); `paging::list_cost` now prices it as the largest page.
#[tokio::test]
async fn a_negative_page_size_is_bad_input() {
    let backend = Backend::start();
    let viewer = backend.sign_up("viewer").await;
    for query in [
        "{ homeTimeline(first: -1) { edges { cursor } } }",
        r#"{ userTimeline(username: "viewer", first: -1) { edges { cursor } } }"#,
        "{ viewer { followers(first: -1) { edges { cursor } } } }",
    ] {
        let refused = backend.execute(Some(viewer), query, json!({})).await;
        assert_eq!(
            error_codes(&refused),
            [("BAD_USER_INPUT".to_owned(), "first".to_owned())],
            "{query}"
        );
    }
}

/// The parsed-query cache holds only documents that ran: a syntax error,
/// a refused document and an invalid one are parsed anew each time, and a
/// document that ran is parsed once however often it is sent.
#[tokio::test]
async fn only_documents_that_ran_are_cached_and_a_repeat_is_parsed_once() {
    let backend = Backend::start();
    let cache = backend.gateway.executor().query_cache();
    let too_deep = format!(
        "{{ {} id {} }}",
        "viewer { followers { edges { node { ".repeat(4),
        "} } } }".repeat(4)
    );
    for query in ["{ viewer { ", "{ noSuchField }", too_deep.as_str()] {
        for _ in 0..2 {
            let refused = backend.execute(None, query, json!({})).await;
            assert_eq!(
                error_codes(&refused),
                [("BAD_USER_INPUT".to_owned(), String::new())],
                "{query}"
            );
        }
    }
    assert!(cache.is_empty());
    for _ in 0..3 {
        backend.data(None, "{ __typename }", json!({})).await;
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.hits(), 2);
}

/// graphql-js's own introspection query (what GraphiQL, Apollo, Relay and
/// graphql-codegen send) runs, and graphql-js builds a client schema from
/// the answer: run with Node.js and the `graphql` package that `.ci/run`
/// installs under `target/graphql-js` (skipped with a notice outside CI
/// when they are missing).
#[tokio::test]
async fn graphql_js_builds_a_client_schema_from_the_introspection_answer() {
    let backend = Backend::start();
    let query = include_str!("data/graphql-js-introspection.graphql");
    let answer = backend.data(None, query, json!({})).await;

    let graphql_js = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/graphql-js/node_modules/graphql");
    let node = std::process::Command::new("node").arg("--version").output();
    if !graphql_js.exists() || node.is_err() {
        let notice = "node or target/graphql-js/node_modules/graphql is missing \
                      (`.ci/run` installs them)";
        assert!(std::env::var("CI").is_err(), "{notice}");
        eprintln!("SKIPPED: {notice}");
        return;
    }
    let script = format!(
        "const {{ buildClientSchema, printSchema }} = require({path:?});\n\
         let input = '';\n\
         process.stdin.on('data', chunk => input += chunk);\n\
         process.stdin.on('end', () => {{\n\
           const schema = buildClientSchema(JSON.parse(input));\n\
           process.stdout.write(printSchema(schema));\n\
         }});",
        path = graphql_js.display().to_string()
    );
    let mut child = std::process::Command::new("node")
        .args(["-e", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in ["type Query", "homeTimeline(", "type Tweet", "type Mutation"] {
        assert!(printed.contains(expected), "{expected} in:\n{printed}");
    }
}

/// A Relay client's refetch query: any object by its id alone.
const REFETCH: &str = r#"query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Tweet { text author { username } likeCount }
    ... on User { username }
  }
}"#;

const NODES: &str = r#"query($ids: [ID!]!) {
  nodes(ids: $ids) { __typename id ... on Tweet { text } ... on User { username } }
}"#;

/// What `run` cost downstream, by method (methods it did not call left out).
async fn downstream_calls<F: std::future::Future>(
    backend: &Backend,
    run: F,
) -> (F::Output, std::collections::BTreeMap<String, u64>) {
    let before = backend.rpc_counts();
    let output = run.await;
    let cost = backend
        .rpc_counts()
        .into_iter()
        .map(|(method, count)| {
            let count = count - before.get(&method).copied().unwrap_or(0);
            (method, count)
        })
        .filter(|(_, count)| *count > 0)
        .collect();
    (output, cost)
}

fn calls(methods: &[&str]) -> std::collections::BTreeMap<String, u64> {
    methods
        .iter()
        .map(|method| ((*method).to_owned(), 1))
        .collect()
}

#[tokio::test]
async fn node_refetches_a_tweet_or_a_user_by_id_alone() {
    let backend = Backend::start();
    let alice = backend.sign_up("alice").await;
    let bob = backend.sign_up("bob").await;
    backend.follow(bob, alice).await;
    let tweet = backend.post(alice, "refetch me").await;
    backend.data(Some(bob), LIKE, json!({ "id": tweet })).await;
    // The premise of global ids: graph-svc and tweet-svc issue ids under
    // different Snowflake worker ids, so a user id is never a tweet id.
    let worker = |id: u64| warble_mesh::snowflake::decode(id).worker_id;
    assert_ne!(worker(alice), worker(tweet.parse().unwrap()));

    let refetched = backend
        .data(Some(bob), REFETCH, json!({ "id": tweet }))
        .await;
    assert_eq!(
        refetched["node"],
        json!({
            "__typename": "Tweet",
            "id": tweet,
            "text": "refetch me",
            "author": { "username": "alice" },
            "likeCount": 1,
        })
    );
    for viewer in [None, Some(bob)] {
        let user = backend
            .data(viewer, REFETCH, json!({ "id": alice.to_string() }))
            .await;
        assert_eq!(
            user["node"],
            json!({ "__typename": "User", "id": alice.to_string(), "username": "alice" })
        );
    }
    // The viewer's fields and the counts come along on both types.
    let viewer_fields = backend
        .data(
            Some(bob),
            r#"query($tweet: ID!, $user: ID!) {
              tweet: node(id: $tweet) { ... on Tweet { viewerHasLiked author { followersCount viewerFollows } } }
              user: node(id: $user) { ... on User { followersCount viewerFollows } }
            }"#,
            json!({ "tweet": tweet, "user": alice.to_string() }),
        )
        .await;
    assert_eq!(
        viewer_fields,
        json!({
            "tweet": { "viewerHasLiked": true, "author": { "followersCount": 1, "viewerFollows": true } },
            "user": { "followersCount": 1, "viewerFollows": true },
        })
    );
}

#[tokio::test]
async fn nodes_lists_tweets_and_users_in_the_order_asked_with_null_for_unknown_ids() {
    let backend = Backend::start();
    let alice = backend.sign_up("alice").await;
    let bob = backend.sign_up("bob").await;
    let first = backend.post(alice, "first").await;
    let second = backend.post(bob, "second").await;
    let deleted = backend.post(alice, "deleted").await;
    backend
        .data(
            Some(alice),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": deleted }),
        )
        .await;

    let ids = json!([
        second,
        alice.to_string(),
        "123456789",
        first,
        deleted,
        bob.to_string(),
        second,
    ]);
    let data = backend.data(None, NODES, json!({ "ids": ids })).await;
    assert_eq!(
        data["nodes"],
        json!([
            { "__typename": "Tweet", "id": second, "text": "second" },
            { "__typename": "User", "id": alice.to_string(), "username": "alice" },
            null,
            { "__typename": "Tweet", "id": first, "text": "first" },
            null,
            { "__typename": "User", "id": bob.to_string(), "username": "bob" },
            { "__typename": "Tweet", "id": second, "text": "second" },
        ])
    );

    // No ids: an empty list, without a downstream call.
    let (empty, cost) =
        downstream_calls(&backend, backend.data(None, NODES, json!({ "ids": [] }))).await;
    assert_eq!(empty["nodes"], json!([]));
    assert!(cost.is_empty(), "{cost:?}");
}

#[tokio::test]
async fn nodes_cost_the_same_downstream_calls_for_any_number_of_ids() {
    let backend = Backend::start();
    let writers = [
        backend.sign_up("writer0").await,
        backend.sign_up("writer1").await,
    ];
    let reader = backend.sign_up("reader").await;
    backend.follow(reader, writers[0]).await;
    let mut tweets = Vec::new();
    for n in 0..16 {
        tweets.push(backend.post(writers[n % 2], &format!("tweet {n}")).await);
    }
    backend
        .data(Some(reader), LIKE, json!({ "id": tweets[0] }))
        .await;
    let users: Vec<String> = [writers[0], writers[1], reader]
        .iter()
        .map(u64::to_string)
        .collect();
    let query = r#"query($ids: [ID!]!) {
      nodes(ids: $ids) {
        id
        ... on Tweet {
          text likeCount viewerHasLiked
          author { username followersCount viewerFollows }
        }
        ... on User { username followersCount viewerFollows }
      }
    }"#;

    // Tweets, users and an unknown id: one GetTweets for all of them, then
    // one GetUsers for the users, the unknown id and the tweets' authors
    // together, with their follow counts and the viewer's follows alongside.
    let expected = calls(&["GetTweets", "GetUsers", "GetFollowCounts", "IsFollowing"]);
    let mut twenty: Vec<String> = tweets.clone();
    twenty.extend(users.iter().cloned());
    twenty.push("123456789".to_owned());
    assert_eq!(twenty.len(), 20);
    for ids in [&twenty[14..17], &twenty[..]] {
        let (data, cost) = downstream_calls(
            &backend,
            backend.data(Some(reader), query, json!({ "ids": ids })),
        )
        .await;
        assert_eq!(cost, expected, "nodes of {} ids", ids.len());
        let nodes = data["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), ids.len());
        for (node, id) in nodes.iter().zip(ids) {
            if id == "123456789" {
                assert_eq!(node, &Value::Null);
            } else {
                assert_eq!(&node["id"], id);
            }
        }
    }
    let nodes = backend
        .data(Some(reader), query, json!({ "ids": twenty }))
        .await["nodes"]
        .clone();
    assert_eq!(
        nodes[0],
        json!({
            "id": tweets[0], "text": "tweet 0", "likeCount": 1, "viewerHasLiked": true,
            "author": { "username": "writer0", "followersCount": 1, "viewerFollows": true },
        })
    );
    assert_eq!(nodes[1]["author"]["viewerFollows"], false);
    assert_eq!(
        nodes[16],
        json!({ "id": users[0], "username": "writer0", "followersCount": 1, "viewerFollows": true })
    );
    assert_eq!(
        nodes[18]["viewerFollows"],
        Value::Null,
        "the viewer themself"
    );

    // `node` goes the same way: one batch per service.
    for id in [&tweets[3], &users[1]] {
        let (data, cost) = downstream_calls(
            &backend,
            backend.data(
                Some(reader),
                &query
                    .replace("[ID!]!", "ID!")
                    .replace("nodes(ids: $ids)", "node(id: $ids)"),
                json!({ "ids": id }),
            ),
        )
        .await;
        assert_eq!(&data["node"]["id"], id);
        assert_eq!(cost, expected, "node({id})");
    }
    // Selecting no author and no user fields skips what they would need.
    let (_, cost) = downstream_calls(
        &backend,
        backend.data(None, NODES, json!({ "ids": &tweets[..5] })),
    )
    .await;
    assert_eq!(cost, calls(&["GetTweets"]), "tweets only");
}

#[tokio::test]
async fn node_ids_are_checked_and_priced() {
    use warble_gateway::config::LimitsConfig;
    use warble_gateway::paging::{CALL_COST, MAX_FIRST};

    let backend = Backend::start();
    let user = backend.sign_up("someone").await;
    let on_field = |code: &str, field: &str| vec![(code.to_owned(), field.to_owned())];

    // Nothing is called downstream for a refused id.
    let before = backend.rpc_counts();
    for bad_id in ["not-a-number", "0", "-5", ""] {
        let refused = backend
            .execute(None, REFETCH, json!({ "id": bad_id }))
            .await;
        assert_eq!(
            error_codes(&refused),
            on_field("BAD_USER_INPUT", "id"),
            "{bad_id:?}"
        );
        assert_eq!(refused["data"]["node"], Value::Null);
        let refused = backend
            .execute(None, NODES, json!({ "ids": [user.to_string(), bad_id] }))
            .await;
        assert_eq!(
            error_codes(&refused),
            on_field("BAD_USER_INPUT", "ids"),
            "{bad_id:?}"
        );
        let message = refused["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("ids[1]"), "{message}");
    }
    let too_many: Vec<String> = (1..=MAX_FIRST + 1).map(|n| n.to_string()).collect();
    let refused = backend
        .execute(None, NODES, json!({ "ids": too_many }))
        .await;
    assert_eq!(error_codes(&refused), on_field("BAD_USER_INPUT", "ids"));
    assert_eq!(backend.rpc_counts(), before, "refused before any call");
    // The largest batch is taken.
    let largest = backend
        .data(None, NODES, json!({ "ids": &too_many[1..] }))
        .await;
    assert_eq!(
        largest["nodes"].as_array().unwrap().len(),
        MAX_FIRST as usize
    );

    // An id that names nothing: NOT_FOUND at `node`.
    let missing = backend
        .execute(None, REFETCH, json!({ "id": "123456789" }))
        .await;
    assert_eq!(
        error_codes(&missing),
        vec![("NOT_FOUND".to_owned(), String::new())]
    );
    assert_eq!(missing["errors"][0]["path"], json!(["node"]));
    assert_eq!(missing["data"]["node"], Value::Null);

    // Priced like the fields that make their own calls: `node` as one call,
    // `nodes` as a page of as many items as it has ids, so aliases cannot
    // multiply downstream calls past the complexity limit.
    let max = LimitsConfig::default().max_complexity;
    let node = "node(id: $id) { id }";
    let nodes = "nodes(ids: $ids) { id }";
    let aliased = |field: &str, count: usize| {
        let fields: String = (0..count).map(|n| format!(" a{n}: {field}")).collect();
        let variable = if field == node {
            "$id: ID!"
        } else {
            "$ids: [ID!]!"
        };
        format!("query({variable}) {{{fields} }}")
    };
    let node_cost = CALL_COST + 1;
    let nodes_cost = CALL_COST + MAX_FIRST as usize;
    for (field, cost, vars) in [
        (node, node_cost, json!({ "id": user.to_string() })),
        (nodes, nodes_cost, json!({ "ids": &too_many[1..] })),
    ] {
        let fits = max / cost;
        backend
            .data(None, &aliased(field, fits), vars.clone())
            .await;
        let refused = backend
            .execute(None, &aliased(field, fits + 1), vars.clone())
            .await;
        assert_eq!(
            error_codes(&refused),
            vec![("BAD_USER_INPUT".to_owned(), String::new())],
            "{field} x {}",
            fits + 1
        );
    }
    // More ids than are taken cost as much as the largest batch.
    let fits = max / nodes_cost;
    let refused = backend
        .execute(None, &aliased(nodes, fits + 1), json!({ "ids": too_many }))
        .await;
    assert_eq!(
        error_codes(&refused),
        vec![("BAD_USER_INPUT".to_owned(), String::new())]
    );
}

/// A feed page's objects resolve through the gateway's joined resolution
/// (`warble_gateway::joined`), a single tweet through async-graphql's own:
/// the same selection must answer the same through both. The selection
/// has what that resolution re-implements: aliases, `__typename`, a named
/// fragment, inline fragments on the type and on its interface, and one
/// field selected twice with different subfields (merged).
#[tokio::test]
async fn a_feed_page_answers_exactly_as_the_same_selection_on_one_tweet() {
    const SELECTION: &str = r#"
        __typename
        id
        words: text
        ...TweetParts
        ... on Node { id nodeId: id }
        ... on Tweet { likeCount hashtags }
        author { id username }
        author { displayName writer: __typename ... on User { viewerFollows } }
        viewerHasLiked
    "#;
    const FRAGMENT: &str = r#"fragment TweetParts on Tweet {
        createdAt mentions replyCount
        author { followersCount }
    }"#;
    let backend = Backend::start();
    let alice = backend.sign_up("alice").await;
    let bob = backend.sign_up("bob").await;
    backend.follow(bob, alice).await;
    let first = backend.post(alice, "first #Joined @bob").await;
    let second = backend.post(alice, "second").await;
    backend.data(Some(bob), LIKE, json!({ "id": first })).await;

    let feed = backend
        .data(
            Some(bob),
            &format!(
                "query {{ homeTimeline(first: 10) {{ edges {{ __typename cursor node {{ {SELECTION} }} }} }} }} {FRAGMENT}"
            ),
            json!({}),
        )
        .await;
    let edges = feed["homeTimeline"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{feed}");
    for (edge, tweet_id) in edges.iter().zip([&second, &first]) {
        assert_eq!(edge["__typename"], "TweetEdge", "{edge}");
        let alone = backend
            .data(
                Some(bob),
                &format!("query($id: ID!) {{ tweet(id: $id) {{ {SELECTION} }} }} {FRAGMENT}"),
                json!({ "id": tweet_id }),
            )
            .await;
        assert_eq!(edge["node"], alone["tweet"], "the same selection, two ways");
    }
    let newest = &edges[1]["node"];
    assert_eq!(newest["nodeId"], json!(first));
    assert_eq!(newest["words"], "first #Joined @bob");
    assert_eq!(newest["viewerHasLiked"], true);
    assert_eq!(
        newest["author"],
        json!({
            "id": alice.to_string(), "username": "alice", "displayName": "alice",
            "writer": "User", "viewerFollows": true, "followersCount": 1,
        }),
        "both author selections and the fragment's merged into one object"
    );
}
