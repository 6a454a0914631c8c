//! The loader puts a workload's graph into the stack exactly: every user
//! at its index, every follow edge and no other, every tweet at its index
//! and no other. It loads in batches, so this is what would catch ids
//! matched to the wrong index or a partial last batch dropped.

use warble_bench::client::Grpc;
use warble_bench::stack::{BenchStack, StackOptions};
use warble_bench::workload::{LoadOptions, Workload, WorkloadSpec, load};
use warble_proto::graph::v1::{
    FollowPair, GetFollowCountsRequest, GetUsersRequest, IsFollowingRequest,
};
use warble_proto::limits;
use warble_proto::tweet::v1::{GetTweetsRequest, ListAuthorsTweetsRequest, TweetLookupStatus};

/// The most ids or pairs graph-svc's batch reads take.
/// Ids per read call, within both contracts' read batches (GetUsers,
/// IsFollowing, GetTweets).
const READ_BATCH: usize = limits::graph::MAX_BATCH;
const _: () = assert!(READ_BATCH <= limits::tweet::MAX_BATCH);

#[tokio::test]
async fn load_creates_every_user_follow_edge_and_tweet_at_its_index() {
    warble_mesh::telemetry::init_for_tests();
    // Several batches of users, of follows and of tweets, the last ones partial.
    let spec = WorkloadSpec {
        tweets_per_user: 2,
        ..WorkloadSpec::new(1_234, 2, 100)
    };
    let workload = Workload::generate(&spec).unwrap();
    let stack = BenchStack::start(StackOptions::default()).await.unwrap();
    let grpc = Grpc::connect(&stack).await.unwrap();
    let options = LoadOptions {
        concurrency: 32,
        progress: false,
    };
    let loaded = load(&workload, &grpc, options).await.unwrap();
    let mut graph = grpc.graph.clone();

    assert_eq!(loaded.user_ids.len(), workload.usernames.len());
    for (ids, usernames) in loaded
        .user_ids
        .chunks(READ_BATCH)
        .zip(workload.usernames.chunks(READ_BATCH))
    {
        let found: Vec<String> = graph
            .get_users(GetUsersRequest {
                user_ids: ids.to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .results
            .into_iter()
            .map(|lookup| lookup.user.expect("every loaded id is a user").username)
            .collect();
        assert_eq!(found, usernames, "user ids are in workload order");
    }

    let following = workload.following();
    let expected_counts: Vec<(u64, u64)> = (0..workload.usernames.len())
        .map(|user| {
            (
                workload.followers[user].len() as u64,
                following[user].len() as u64,
            )
        })
        .collect();
    let mut counts = Vec::new();
    for ids in loaded.user_ids.chunks(READ_BATCH) {
        let answered = graph
            .get_follow_counts(GetFollowCountsRequest {
                user_ids: ids.to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .counts;
        counts.extend(
            answered
                .into_iter()
                .map(|c| (c.followers_count, c.following_count)),
        );
    }
    assert_eq!(counts, expected_counts);

    // Every workload edge is a follow; with the counts exact, there is no other.
    let edges: Vec<FollowPair> = workload
        .followers
        .iter()
        .enumerate()
        .flat_map(|(followee, followers)| {
            followers
                .iter()
                .map(move |&follower| (follower as usize, followee))
        })
        .map(|(follower, followee)| FollowPair {
            follower_id: loaded.user_ids[follower],
            followee_id: loaded.user_ids[followee],
        })
        .collect();
    assert_eq!(edges.len(), workload.follow_count());
    assert!(edges.len() > 2 * READ_BATCH, "spans several follow batches");
    for pairs in edges.chunks(READ_BATCH) {
        let answers = graph
            .is_following(IsFollowingRequest {
                pairs: pairs.to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .following;
        assert!(
            answers.iter().all(|&follows| follows),
            "a workload edge is missing"
        );
    }

    // Every tweet id is the workload's tweet at that index.
    let mut tweets = grpc.tweets.clone();
    assert_eq!(loaded.tweet_ids.len(), workload.tweets.len());
    assert!(
        loaded.tweet_ids.len() > 2 * READ_BATCH,
        "spans several tweet batches"
    );
    for (ids, specs) in loaded
        .tweet_ids
        .chunks(READ_BATCH)
        .zip(workload.tweets.chunks(READ_BATCH))
    {
        let found = tweets
            .get_tweets(GetTweetsRequest {
                tweet_ids: ids.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        for (lookup, spec) in found.iter().zip(specs) {
            assert_eq!(lookup.status(), TweetLookupStatus::Found);
            let tweet = lookup.tweet.as_ref().expect("a found tweet");
            assert_eq!(
                (tweet.author_id, tweet.text.as_str()),
                (loaded.user_ids[spec.author as usize], spec.text.as_str()),
                "tweet ids are in workload order"
            );
        }
    }
    // Each author has exactly their workload tweets, newest (latest loaded) first.
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); workload.usernames.len()];
    for (spec, id) in workload.tweets.iter().zip(&loaded.tweet_ids) {
        expected[spec.author as usize].insert(0, *id);
    }
    for (authors, expected) in loaded
        .user_ids
        .chunks(limits::tweet::MAX_AUTHORS_PER_CALL)
        .zip(expected.chunks(limits::tweet::MAX_AUTHORS_PER_CALL))
    {
        let listed: Vec<Vec<u64>> = tweets
            .list_authors_tweets(ListAuthorsTweetsRequest {
                author_ids: authors.to_vec(),
                before_tweet_id: 0,
                limit_per_author: limits::tweet::MAX_TWEETS_PER_AUTHOR,
                include_retweets: false,
            })
            .await
            .unwrap()
            .into_inner()
            .authors
            .into_iter()
            .map(|author| author.tweet_ids)
            .collect();
        assert_eq!(listed, expected, "no tweet missing, none extra");
    }
    stack.stop().await.unwrap();
}
