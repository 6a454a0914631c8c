//! Model-based check of home timelines: random sequences of posts, deletes,
//! follows, unfollows (which move authors across the celebrity threshold
//! both ways) and reads run against the stack as fast as it accepts them;
//! once fan-out settles, every user's whole home timeline, read page by
//! page, must equal the reference computed from the graph and tweet stores.

use std::collections::BTreeSet;

use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1 as graph;
use warble_proto::tweet::v1 as tweet;
use warble_tests::TestStack;

/// A small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// The reference: every live tweet by the user or anyone they follow, newest first.
async fn reference(stack: &TestStack, user: u64) -> Vec<u64> {
    let mut authors = vec![user];
    let mut cursor = String::new();
    loop {
        let page = stack
            .graph()
            .list_following(graph::ListFollowingRequest {
                user_id: user,
                page: Some(PageRequest {
                    cursor,
                    limit: 5_000,
                }),
                min_followers: 0,
            })
            .await
            .unwrap()
            .into_inner();
        authors.extend(page.following.iter().map(|edge| edge.user_id));
        cursor = page.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    let mut tweets = BTreeSet::new();
    for author in authors {
        let mut cursor = String::new();
        loop {
            let page = stack
                .tweets()
                .list_user_tweets(tweet::ListUserTweetsRequest {
                    author_id: author,
                    page: Some(PageRequest { cursor, limit: 100 }),
                })
                .await
                .unwrap()
                .into_inner();
            tweets.extend(page.tweets.iter().map(|tweet| tweet.id));
            cursor = page.page.unwrap_or_default().next_cursor;
            if cursor.is_empty() {
                break;
            }
        }
    }
    tweets.into_iter().rev().collect()
}

async fn run(seed: u64, operations: usize) {
    let stack = TestStack::start_with(|config| {
        config.fanout.celebrity_threshold = 3;
        config.fanout.follow_backfill_tweets = 50;
    })
    .await;
    let mut users = Vec::new();
    for n in 0..7 {
        users.push(stack.create_user(&format!("user{n}")).await);
    }
    let mut rng = Rng(seed);
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut follows: BTreeSet<(u64, u64)> = BTreeSet::new();
    for step in 0..operations {
        let user = users[rng.below(users.len())];
        match rng.below(10) {
            0..=3 => live.push((stack.post(user, &format!("step {step}")).await, user)),
            4 if !live.is_empty() => {
                let (tweet_id, author) = live.swap_remove(rng.below(live.len()));
                stack.delete(tweet_id, author).await;
            }
            5 | 6 => {
                let followee = users[rng.below(users.len())];
                if followee != user {
                    stack.follow(user, followee).await;
                    follows.insert((user, followee));
                }
            }
            7 if !follows.is_empty() => {
                let pair = *follows.iter().nth(rng.below(follows.len())).unwrap();
                stack.unfollow(pair.0, pair.1).await;
                follows.remove(&pair);
            }
            _ => {
                // Reading marks the user active (so fan-out pushes to them) and
                // may rebuild their timeline while fan-out is still running.
                stack.home_page(user, "", 5).await.unwrap();
            }
        }
    }
    stack.settle().await;
    for user in &users {
        let expected = reference(&stack, *user).await;
        for page_size in [4, 100] {
            let actual = stack.home_all(*user, page_size).await;
            assert_eq!(
                actual, expected,
                "seed {seed}: user {user}'s timeline (pages of {page_size})"
            );
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn timelines_match_the_stores_after_random_operations_seed_1() {
    run(0x9E37_79B9_7F4A_7C15, 250).await;
}

#[tokio::test]
async fn timelines_match_the_stores_after_random_operations_seed_2() {
    run(0xD1B5_4A32_D192_ED03, 250).await;
}

#[tokio::test]
async fn timelines_match_the_stores_after_random_operations_seed_3() {
    run(0x2545_F491_4F6C_DD1D, 250).await;
}
