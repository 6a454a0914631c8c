//! The single-process stack as `warble dev` runs it: a user journey across
//! tweet-svc and graph-svc, and a restart that keeps every acknowledged write.

use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1 as graph;
use warble_proto::tweet::v1 as tweet;
use warble_tests::TestStack;

#[tokio::test]
async fn a_user_journey_survives_a_restart() {
    let stack = TestStack::start().await;
    let alice = stack.create_user("alice").await;
    let bob = stack.create_user("bob").await;
    stack
        .graph()
        .follow(graph::FollowRequest {
            follower_id: bob,
            followee_id: alice,
        })
        .await
        .unwrap();
    let post = tweet::CreateTweetRequest {
        author_id: alice,
        text: "hello #warble @bob".into(),
        idempotency_key: "first-post".into(),
        ..Default::default()
    };
    let created = stack
        .tweets()
        .create_tweet(post.clone())
        .await
        .unwrap()
        .into_inner();
    let tweet_id = created.tweet.unwrap().id;
    stack
        .tweets()
        .like_tweet(tweet::LikeTweetRequest {
            user_id: bob,
            tweet_id,
        })
        .await
        .unwrap();

    let stack = stack.restart().await;

    let users = stack
        .graph()
        .get_users(graph::GetUsersRequest {
            user_ids: vec![alice, bob],
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = users
        .results
        .iter()
        .map(|r| r.user.as_ref().unwrap().username.clone())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let counts = stack
        .graph()
        .get_follow_counts(graph::GetFollowCountsRequest {
            user_ids: vec![alice],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.counts[0].followers_count, 1);

    // The idempotency key outlived the restart: a retry returns the original tweet.
    let retried = stack
        .tweets()
        .create_tweet(post)
        .await
        .unwrap()
        .into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.tweet.unwrap().id, tweet_id);

    let listed = stack
        .tweets()
        .list_user_tweets(tweet::ListUserTweetsRequest {
            author_id: alice,
            page: Some(PageRequest::default()),
            include_retweets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tweets.len(), 1);
    assert_eq!(listed.tweets[0].hashtags, ["warble"]);
    let likes = stack
        .tweets()
        .get_counts(tweet::GetCountsRequest {
            tweet_ids: vec![tweet_id],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(likes.counts[0].like_count, 1);

    // New ids keep increasing after the restart.
    let newer = stack.create_user("carol").await;
    assert!(newer > bob);
    stack.stop().await;
}

/// In the single-process stack every service shares the process, so the
/// gateway's `/metrics` shows the services' RPCs (counted on the
/// in-process calls as a network server counts them) beside the GraphQL
/// operations and the consumers.
#[tokio::test]
async fn the_gateways_metrics_show_every_service_in_one_process() {
    let stack = TestStack::start().await;
    let gql = stack.graphql();
    let (_, token) = gql.sign_up("metered").await;
    gql.data(
        Some(&token),
        "mutation MeteredPost($t: String!) { postTweet(text: $t) { id } }",
        serde_json::json!({ "t": "counted" }),
    )
    .await;
    stack.settle().await;
    let text = reqwest::get(format!("http://{}/metrics", gql.addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    for series in [
        r#"warble_grpc_server_requests_total{service="tweet-svc",method="/warble.tweet.v1.TweetService/CreateTweet",code="OK"}"#,
        r#"warble_grpc_server_requests_total{service="graph-svc",method="/warble.graph.v1.GraphService/CreateUser",code="OK"}"#,
        r#"warble_graphql_requests_total{operation="MeteredPost",type="mutation",outcome="ok"}"#,
        r#"warble_consumer_events_processed_total{group="fanout"}"#,
    ] {
        assert!(
            value(series).is_some_and(|count| count >= 1.0),
            "{series} in {text}"
        );
    }
}
