//! `warble dev --demo`'s loader against a real stack: it loads the demo
//! users, follows and tweets in batches, and loading again (a restart with
//! `--demo` on the same data) changes nothing.

use tonic::transport::Channel;
use warble_proto::graph::v1 as graph;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::tweet::v1 as tweet;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
use warble_stack::{DevConfig, DevStack};

const THRESHOLD: u64 = 25;

/// What the demo loaded, as a client sees it: per user (username order),
/// their follower and following counts and their tweet ids.
async fn snapshot(
    graph: &mut GraphServiceClient<Channel>,
    tweets: &mut TweetServiceClient<Channel>,
    usernames: &[String],
) -> Vec<(String, u64, u64, Vec<u64>)> {
    let mut seen = Vec::new();
    for username in usernames {
        let user = graph
            .get_user_by_username(graph::GetUserByUsernameRequest {
                username: username.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("{username}: {status:?}"))
            .into_inner()
            .user
            .expect("user");
        let counts = graph
            .get_follow_counts(graph::GetFollowCountsRequest {
                user_ids: vec![user.id],
            })
            .await
            .unwrap()
            .into_inner()
            .counts
            .remove(0);
        let tweet_ids = tweets
            .list_authors_tweets(tweet::ListAuthorsTweetsRequest {
                author_ids: vec![user.id],
                before_tweet_id: 0,
                limit_per_author: 100,
                include_retweets: false,
            })
            .await
            .unwrap()
            .into_inner()
            .authors
            .remove(0)
            .tweet_ids;
        seen.push((
            username.clone(),
            counts.followers_count,
            counts.following_count,
            tweet_ids,
        ));
    }
    seen
}

#[tokio::test]
async fn the_demo_loads_in_batches_and_loading_again_changes_nothing() {
    warble_mesh::telemetry::init_for_tests();
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = DevConfig::ephemeral(data_dir.path());
    config.fanout.celebrity_threshold = THRESHOLD;
    let stack = DevStack::start(&config).await.unwrap();
    warble_launcher::demo::load(stack.tweet_addr, stack.graph_addr, THRESHOLD)
        .await
        .unwrap();

    let mut graph = GraphServiceClient::connect(format!("http://{}", stack.graph_addr))
        .await
        .unwrap();
    let mut tweets = TweetServiceClient::connect(format!("http://{}", stack.tweet_addr))
        .await
        .unwrap();
    let people = ["alice", "bob", "carol", "dave", "erin"];
    // 5 people, so 25 - 5 + 1 fans take the celebrity just over the threshold.
    let fans = THRESHOLD - people.len() as u64 + 1;
    let mut usernames: Vec<String> = people.iter().map(|name| name.to_string()).collect();
    usernames.push("warblehq".into());
    usernames.extend((0..fans).map(|n| format!("fan{n}")));

    let loaded = snapshot(&mut graph, &mut tweets, &usernames).await;
    let summary: Vec<(&str, u64, u64, usize)> = loaded
        .iter()
        .map(|(name, followers, following, ids)| (name.as_str(), *followers, *following, ids.len()))
        .collect();
    let mut expected = vec![
        ("alice", 4, 5, 2),
        ("bob", 4, 5, 2),
        ("carol", 4, 5, 1),
        ("dave", 4, 5, 1),
        ("erin", 4, 5, 1),
        ("warblehq", THRESHOLD + 1, 0, 2),
    ];
    let fan_names: Vec<String> = (0..fans).map(|n| format!("fan{n}")).collect();
    expected.extend(fan_names.iter().map(|name| (name.as_str(), 0, 1, 0)));
    assert_eq!(summary, expected);

    warble_launcher::demo::load(stack.tweet_addr, stack.graph_addr, THRESHOLD)
        .await
        .unwrap();
    assert_eq!(
        snapshot(&mut graph, &mut tweets, &usernames).await,
        loaded,
        "a second load changes nothing"
    );
    stack.stop().await.unwrap();
}
