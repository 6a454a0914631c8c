//! Frontend-level cases of search: tweets found by every kind of term and
//! gone once deleted, pages that stay put, users by prefix, trends that
//! count people rather than posts. Like every case in [`crate::cases`],
//! each runs on the single-process stack and on the separate processes on
//! Redis. `settle` waits until search-svc has applied every event, so the
//! cases assert what a search returns once indexing caught up; how soon
//! that is (post-to-searchable latency) is measured by `warble-bench search`.

use serde_json::{Value, json};

use crate::frontend::Frontend;
use crate::graphql::{GraphqlClient, error_codes, node_ids};

const SEARCH: &str = r#"query($query: String!, $sort: SearchSort, $first: Int, $after: String) {
  search(query: $query, sort: $sort, first: $first, after: $after) {
    edges { cursor node { id text author { username } } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

async fn search(gql: &GraphqlClient, token: Option<&str>, query: &str) -> Vec<String> {
    let data = gql
        .data(token, SEARCH, json!({ "query": query, "first": 50 }))
        .await;
    node_ids(&data["search"])
}

async fn usernames_for(gql: &GraphqlClient, typed: &str) -> Vec<String> {
    let data = gql
        .data(
            None,
            "query($q: String!) { searchUsers(query: $q, first: 10) { username } }",
            json!({ "q": typed }),
        )
        .await;
    data["searchUsers"]
        .as_array()
        .expect("users")
        .iter()
        .map(|user| user["username"].as_str().expect("username").to_owned())
        .collect()
}

/// A posted tweet is found by word, phrase, hashtag, `from:`, mention,
/// `to:` and exclusions; a deleted one is gone; blocked authors are left
/// out; a query that does not parse is BAD_USER_INPUT naming the position.
pub async fn tweets_are_found_by_every_kind_of_term_and_gone_once_deleted(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ada) = gql.sign_up("ada").await;
    let (bob_id, bob) = gql.sign_up("bob").await;
    let (_, cy) = gql.sign_up("cy").await;
    let first = gql
        .post(&ada, "Compilers are fun #RustLang with @bob")
        .await;
    let second = gql.post(&bob, "fun is not the word for compilers").await;
    let reply = gql
        .data(
            Some(&cy),
            "mutation($to: ID!) { postTweet(text: \"agreed, fun compilers\", replyTo: $to) { id } }",
            json!({ "to": first }),
        )
        .await["postTweet"]["id"]
        .as_str()
        .expect("reply id")
        .to_owned();
    stack.settle().await;

    assert_eq!(
        search(&gql, None, "compilers").await,
        [reply.as_str(), second.as_str(), first.as_str()]
    );
    assert_eq!(
        search(&gql, None, "\"compilers are fun\"").await,
        [first.as_str()]
    );
    assert_eq!(search(&gql, None, "#rustlang").await, [first.as_str()]);
    assert_eq!(search(&gql, None, "from:ada").await, [first.as_str()]);
    assert_eq!(search(&gql, None, "@bob").await, [first.as_str()]);
    assert_eq!(search(&gql, None, "to:ada").await, [reply.as_str()]);
    assert_eq!(
        search(&gql, None, "fun -from:bob -is:reply").await,
        [first.as_str()]
    );
    assert!(search(&gql, None, "from:nobody_here").await.is_empty());

    // Ada blocks Bob: his tweet leaves her results (and hers his).
    gql.data(
        Some(&ada),
        "mutation($id: ID!) { block(userId: $id) { id } }",
        json!({ "id": bob_id }),
    )
    .await;
    assert_eq!(
        search(&gql, Some(&ada), "compilers").await,
        [reply.as_str(), first.as_str()]
    );
    assert_eq!(
        search(&gql, Some(&bob), "compilers").await,
        [reply.as_str(), second.as_str()]
    );

    gql.data(
        Some(&ada),
        "mutation($id: ID!) { deleteTweet(id: $id) }",
        json!({ "id": first }),
    )
    .await;
    stack.settle().await;
    assert_eq!(
        search(&gql, None, "compilers").await,
        [reply.as_str(), second.as_str()]
    );
    assert!(search(&gql, None, "#rustlang").await.is_empty());

    let refused = gql
        .request(None, SEARCH, json!({ "query": "fun \"open" }))
        .await;
    assert_eq!(error_codes(&refused), ["BAD_USER_INPUT"], "{refused:#}");
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at byte 4"), "{message}");
    let refused = gql
        .request(None, SEARCH, json!({ "query": "x", "first": 1000 }))
        .await;
    assert_eq!(error_codes(&refused), ["BAD_USER_INPUT"], "{refused:#}");
}

/// Pages of a search neither repeat nor skip while new tweets arrive, in
/// both orders; a cursor used with another query is refused.
pub async fn search_pages_stay_put_while_tweets_arrive(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ada) = gql.sign_up("ada").await;
    let mut posted = Vec::new();
    for n in 0..7 {
        posted.push(gql.post(&ada, &format!("paging test number {n}")).await);
    }
    stack.settle().await;
    for sort in ["LATEST", "TOP"] {
        let mut late = None;
        let mut seen: Vec<String> = Vec::new();
        let mut after = Value::Null;
        for page in 0.. {
            let data = gql
                .data(
                    None,
                    SEARCH,
                    json!({ "query": "paging", "sort": sort, "first": 3, "after": after }),
                )
                .await;
            seen.extend(node_ids(&data["search"]));
            if page == 0 {
                // A tweet arriving between pages does not shift them.
                late = Some(gql.post(&ada, "paging test late arrival").await);
                stack.settle().await;
            }
            let info = &data["search"]["pageInfo"];
            if !info["hasNextPage"].as_bool().expect("hasNextPage") {
                break;
            }
            after = info["endCursor"].clone();
            assert!(page < 10, "{sort}: paging does not end");
        }
        let mut expected = posted.clone();
        if sort == "LATEST" {
            expected.reverse();
            assert_eq!(seen, expected, "{sort}");
        } else {
            let mut sorted = seen.clone();
            sorted.sort();
            expected.sort();
            assert_eq!(sorted, expected, "{sort}: every tweet once");
        }
        // The next search sees the late arrival.
        posted.extend(late);
    }
    let first_page = gql
        .data(None, SEARCH, json!({ "query": "paging", "first": 2 }))
        .await;
    let cursor = first_page["search"]["pageInfo"]["endCursor"].clone();
    let refused = gql
        .request(
            None,
            SEARCH,
            json!({ "query": "number", "first": 2, "after": cursor }),
        )
        .await;
    assert_eq!(error_codes(&refused), ["BAD_USER_INPUT"], "{refused:#}");
}

/// Typeahead finds users by a prefix of their username or of a word of
/// their display name, the exact username first, then by followers; a
/// profile change is searchable.
pub async fn users_are_found_by_prefix_exact_name_first(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ann) = gql.sign_up("ann").await;
    let (annabel_id, _) = gql.sign_up("annabel").await;
    let (zed_id, zed) = gql.sign_up("zed").await;
    let (_, fan) = gql.sign_up("fan").await;
    gql.data(
        Some(&zed),
        "mutation { updateProfile(displayName: \"Annie Zed\") { id } }",
        json!({}),
    )
    .await;
    // Zed has two followers, Annabel one, Ann none.
    gql.follow(&ann, &zed_id).await;
    gql.follow(&fan, &zed_id).await;
    gql.follow(&zed, &annabel_id).await;
    stack.settle().await;
    assert_eq!(usernames_for(&gql, "ann").await, ["ann", "zed", "annabel"]);
    assert_eq!(usernames_for(&gql, "@AN").await, ["zed", "annabel", "ann"]);
    assert_eq!(usernames_for(&gql, "annie z").await, ["zed"]);
    assert!(usernames_for(&gql, "qqq").await.is_empty());
    let refused = gql
        .request(
            None,
            "{ searchUsers(query: \"a\", first: 500) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_codes(&refused), ["BAD_USER_INPUT"], "{refused:#}");
}

const TRENDS: &str = r#"{
  trends(first: 10) {
    tag score authorsLastHour tweetsLastHour hourlyTweets
    sampleTweets { id author { username } }
  }
}"#;

/// A tag five people used in the last hour trends; one account posting
/// a tag a hundred times does not. Sample tweets leave out authors the
/// viewer blocked.
pub async fn five_people_make_a_trend_and_one_spammer_does_not(stack: &impl Frontend) {
    let gql = stack.graphql();
    let mut people = Vec::new();
    for name in ["tia", "uma", "vic", "wes", "xan"] {
        people.push(gql.sign_up(name).await);
    }
    for (_, token) in &people {
        gql.post(token, "watching the #Eclipse tonight").await;
    }
    let (_, spammer) = gql.sign_up("spammer").await;
    for n in 0..100 {
        gql.post(&spammer, &format!("buy now #Deals {n}")).await;
    }
    let (_, viewer) = gql.sign_up("viewer").await;
    gql.data(
        Some(&viewer),
        "mutation($id: ID!) { block(userId: $id) { id } }",
        json!({ "id": people[4].0 }),
    )
    .await;
    stack.settle().await;

    let data = gql.data(Some(&viewer), TRENDS, json!({})).await;
    let trends = data["trends"].as_array().expect("trends");
    let tags: Vec<&str> = trends
        .iter()
        .map(|trend| trend["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(tags, ["eclipse"], "{data:#}");
    let eclipse = &trends[0];
    assert_eq!(eclipse["authorsLastHour"], 5);
    assert_eq!(eclipse["tweetsLastHour"], 5);
    let hourly = eclipse["hourlyTweets"].as_array().expect("hourly");
    assert_eq!(hourly.len(), 24);
    assert_eq!(hourly[23], 5);
    assert!(eclipse["score"].as_f64().expect("score") > 0.0);
    let samples: Vec<&str> = eclipse["sampleTweets"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|tweet| tweet["author"]["username"].as_str().expect("author"))
        .collect();
    assert_eq!(samples.len(), 3, "{samples:?}");
    assert!(
        !samples.contains(&"xan"),
        "a blocked author's sample: {samples:?}"
    );
}
