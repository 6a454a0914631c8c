//! Frontend-level cases of the social layer around timelines: retweets
//! through fan-out, blocks, mutes, threads and bookmarks. Like every case
//! in [`crate::cases`], each runs on the single-process stack and on the
//! separate processes on Redis.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::frontend::Frontend;
use crate::graphql::{GraphqlClient, Subscription, error_codes, node_ids};

const HOME: &str = r#"query {
  homeTimeline(first: 50) {
    edges { retweetedBy { username } node { id author { username } } }
  }
}"#;

/// `(tweet id, retweeter's username or null)` of each edge of `token`'s
/// home timeline, in page order.
async fn home(gql: &GraphqlClient, token: &str) -> Vec<(String, Value)> {
    let page = gql.data(Some(token), HOME, json!({})).await["homeTimeline"].clone();
    page["edges"]
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

/// Runs a one-id mutation as `token` and returns the response.
async fn act(gql: &GraphqlClient, token: &str, mutation: &str, id: &str) -> Value {
    gql.request(Some(token), mutation, json!({ "id": id }))
        .await
}

const RETWEET: &str = "mutation($id: ID!) { retweet(id: $id) { id retweetCount } }";
const UNDO_RETWEET: &str = "mutation($id: ID!) { undoRetweet(id: $id) { id retweetCount } }";

/// A retweet reaches the retweeter's followers through fan-out, marked with
/// `retweetedBy`, but not the tweet's author; undoing it removes it.
pub async fn a_retweet_reaches_followers_and_undo_removes_it(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (ana_id, ana) = gql.sign_up("ana").await;
    let (_, ben) = gql.sign_up("ben").await;
    let (_, cy) = gql.sign_up("cy").await;
    gql.follow(&ben, &ana_id).await;
    gql.follow(&cy, &ana_id).await;
    // Reading marks them active: fan-out pushes to them from now on.
    assert!(home(&gql, &ben).await.is_empty());
    assert!(home(&gql, &cy).await.is_empty());
    let by_cy = gql.post(&cy, "cy writes").await;
    let by_ana = gql.post(&ana, "ana writes").await;
    stack.settle().await;

    let retweeted = act(&gql, &ana, RETWEET, &by_cy).await;
    assert_eq!(
        retweeted["data"]["retweet"]["retweetCount"], 1,
        "{retweeted:#}"
    );
    stack.settle().await;
    assert_eq!(
        home(&gql, &ben).await,
        vec![(by_cy.clone(), json!("ana")), (by_ana.clone(), Value::Null)]
    );
    assert_eq!(
        home(&gql, &cy).await,
        vec![(by_ana.clone(), Value::Null), (by_cy.clone(), Value::Null)],
        "Cy's own tweet, retweeted, does not come back to Cy"
    );

    act(&gql, &ana, UNDO_RETWEET, &by_cy).await;
    stack.settle().await;
    assert_eq!(home(&gql, &ben).await, vec![(by_ana, Value::Null)]);
}

/// A block removes follows both ways, hides each from the other's home
/// timeline and refuses interactions with a clear FORBIDDEN.
pub async fn a_block_hides_both_ways_and_refuses_interactions(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (ana_id, ana) = gql.sign_up("ana").await;
    let (ben_id, ben) = gql.sign_up("ben").await;
    gql.follow(&ana, &ben_id).await;
    gql.follow(&ben, &ana_id).await;
    home(&gql, &ana).await;
    home(&gql, &ben).await;
    let by_ana = gql.post(&ana, "ana writes").await;
    let by_ben = gql.post(&ben, "ben writes").await;
    stack.settle().await;
    assert_eq!(home(&gql, &ana).await.len(), 2);

    let blocked = act(
        &gql,
        &ana,
        "mutation($id: ID!) { block(userId: $id) { viewerBlocks followersCount } }",
        &ben_id,
    )
    .await;
    assert_eq!(
        blocked["data"]["block"],
        json!({ "viewerBlocks": true, "followersCount": 0 }),
        "{blocked:#}"
    );
    stack.settle().await;
    assert_eq!(home(&gql, &ana).await, vec![(by_ana.clone(), Value::Null)]);
    assert_eq!(home(&gql, &ben).await, vec![(by_ben.clone(), Value::Null)]);

    for (token, mutation, id) in [
        (
            &ben,
            "mutation($id: ID!) { likeTweet(id: $id) { id } }",
            &by_ana,
        ),
        (&ben, RETWEET, &by_ana),
        (
            &ben,
            r#"mutation($id: ID!) { postTweet(text: "hi", replyTo: $id) { id } }"#,
            &by_ana,
        ),
        (
            &ben,
            "mutation($id: ID!) { follow(userId: $id) { id } }",
            &ana_id,
        ),
        (
            &ana,
            "mutation($id: ID!) { likeTweet(id: $id) { id } }",
            &by_ben,
        ),
    ] {
        let response = act(&gql, token, mutation, id).await;
        assert_eq!(
            error_codes(&response),
            ["FORBIDDEN"],
            "{mutation}: {response:#}"
        );
    }
    let response = act(
        &gql,
        &ana,
        "mutation($id: ID!) { block(userId: $id) { id } }",
        &ana_id,
    )
    .await;
    assert_eq!(
        error_codes(&response),
        ["BAD_USER_INPUT"],
        "blocking yourself"
    );
}

/// A mute hides the muted user's tweets from the muter's home timeline, and
/// a mute with a duration lapses on time.
pub async fn a_mute_hides_and_lapses(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ana) = gql.sign_up("ana").await;
    let (ben_id, ben) = gql.sign_up("ben").await;
    gql.follow(&ana, &ben_id).await;
    home(&gql, &ana).await;
    let by_ben = gql.post(&ben, "ben writes").await;
    stack.settle().await;
    assert_eq!(home(&gql, &ana).await, vec![(by_ben.clone(), Value::Null)]);

    let muted_at = Instant::now();
    let muted = act(
        &gql,
        &ana,
        "mutation($id: ID!) { mute(userId: $id, durationSecs: 2) { viewerMutes } }",
        &ben_id,
    )
    .await;
    assert_eq!(muted["data"]["mute"]["viewerMutes"], true, "{muted:#}");
    // Read at once: inside the two seconds the mute lasts (checked, so a
    // stalled machine cannot turn a lapsed mute into a failure).
    let hidden = home(&gql, &ana).await;
    if muted_at.elapsed() < Duration::from_millis(1_900) {
        assert!(hidden.is_empty(), "muted: {hidden:?}");
    }
    // Lapsed: back without an unmute.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if home(&gql, &ana).await == vec![(by_ben.clone(), Value::Null)] {
            break;
        }
        assert!(Instant::now() < deadline, "the mute never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        muted_at.elapsed() >= Duration::from_secs(2),
        "back only once the mute lapsed"
    );
}

/// A muted author's new tweets are not pushed to the muter's live
/// subscription; a followed author's still are.
pub async fn a_muted_authors_tweets_skip_the_live_subscription(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ana) = gql.sign_up("ana").await;
    let (ben_id, ben) = gql.sign_up("ben").await;
    let (cy_id, cy) = gql.sign_up("cy").await;
    gql.follow(&ana, &ben_id).await;
    gql.follow(&ana, &cy_id).await;
    act(
        &gql,
        &ana,
        "mutation($id: ID!) { mute(userId: $id) { viewerMutes } }",
        &ben_id,
    )
    .await;
    stack.settle().await;
    let mut subscription = Subscription::start(
        gql.addr(),
        &ana,
        "subscription { homeTimelineUpdates { id author { username } } }",
    )
    .await;
    // Ben's tweet comes first in the feed; were it delivered, it would be
    // the first update.
    gql.post(&ben, "muted").await;
    let heard = gql.post(&cy, "heard").await;
    let update = subscription
        .next_data(Duration::from_secs(10))
        .await
        .expect("the followed author's tweet is delivered");
    assert_eq!(update["homeTimelineUpdates"]["id"], heard.as_str());
    assert_eq!(update["homeTimelineUpdates"]["author"]["username"], "cy");
}

/// A thread lists direct replies oldest first and a reply's ancestors root
/// first.
pub async fn a_thread_lists_replies_and_ancestors(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ana) = gql.sign_up("ana").await;
    let (_, ben) = gql.sign_up("ben").await;
    let root = gql.post(&ana, "root").await;
    let reply = |token: String, to: String, text: &'static str| {
        let gql = gql.clone();
        async move {
            gql.data(
                Some(&token),
                "mutation($t: String!, $r: ID!) { postTweet(text: $t, replyTo: $r) { id } }",
                json!({ "t": text, "r": to }),
            )
            .await["postTweet"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        }
    };
    let first = reply(ben.clone(), root.clone(), "first").await;
    let second = reply(ana.clone(), root.clone(), "second").await;
    let nested = reply(ana.clone(), first.clone(), "nested").await;
    let thread = gql
        .data(
            None,
            r#"query($root: ID!, $leaf: ID!) {
                root: tweet(id: $root) { replyCount replies { edges { node { id } } } }
                leaf: tweet(id: $leaf) { ancestors { id author { username } } }
            }"#,
            json!({ "root": root, "leaf": nested }),
        )
        .await;
    assert_eq!(thread["root"]["replyCount"], 2);
    assert_eq!(
        node_ids(&thread["root"]["replies"]),
        vec![first.clone(), second]
    );
    assert_eq!(
        thread["leaf"]["ancestors"],
        json!([
            { "id": root, "author": { "username": "ana" } },
            { "id": first, "author": { "username": "ben" } },
        ])
    );
}

/// Bookmarks are idempotent and the owner's alone.
pub async fn bookmarks_stay_private(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (ana_id, ana) = gql.sign_up("ana").await;
    let (_, ben) = gql.sign_up("ben").await;
    let tweet = gql.post(&ben, "worth keeping").await;
    for _ in 0..2 {
        let response = act(
            &gql,
            &ana,
            "mutation($id: ID!) { bookmark(id: $id) { viewerHasBookmarked } }",
            &tweet,
        )
        .await;
        assert_eq!(
            response["data"]["bookmark"]["viewerHasBookmarked"], true,
            "{response:#}"
        );
    }
    let own = gql
        .data(
            Some(&ana),
            "query { viewer { bookmarks { edges { node { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(node_ids(&own["viewer"]["bookmarks"]), vec![tweet.clone()]);
    let snooped = gql
        .request(
            Some(&ben),
            "query($id: ID!) { user(id: $id) { bookmarks { edges { node { id } } } } }",
            json!({ "id": ana_id }),
        )
        .await;
    assert_eq!(error_codes(&snooped), ["FORBIDDEN"], "{snooped:#}");
    let anonymous = gql
        .request(
            None,
            "query($id: ID!) { user(id: $id) { bookmarks { edges { node { id } } } } }",
            json!({ "id": ana_id }),
        )
        .await;
    assert_eq!(error_codes(&anonymous), ["UNAUTHENTICATED"]);
    let seen_by_ben = gql
        .data(
            Some(&ben),
            "query($id: ID!) { tweet(id: $id) { viewerHasBookmarked } }",
            json!({ "id": tweet }),
        )
        .await;
    assert_eq!(seen_by_ben["tweet"]["viewerHasBookmarked"], false);
}
