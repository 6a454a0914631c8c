//! Model-based check of home timelines: random sequences of posts, deletes,
//! follows, unfollows (which move authors across the celebrity threshold
//! both ways), retweets and their undoing, blocks, unblocks, mutes (some
//! lapsing) and unmutes, and reads, run against the stack as fast as it
//! accepts them. Once fan-out settles, every user's whole home timeline,
//! read page by page, is checked against what the graph and tweet stores
//! say the user should see:
//!
//! - every entry shown is one the stores justify: a live tweet of the user
//!   or someone they follow, or a live retweet by one of them of a live
//!   tweet not the user's own; nothing involving a user the viewer blocks,
//!   is blocked by, or mutes (mutes that lapsed no longer count);
//! - entries come newest first and never repeat, and a page shows a tweet
//!   at most once;
//! - every tweet of the user or someone they follow is shown;
//! - a retweet is shown whenever nothing can excuse its absence: its tweet
//!   had no other retweet, its author was never followed by the viewer and
//!   never in a block with the viewer, nor was the retweeter. (Fan-out's
//!   retweet window drops a retweet of a tweet shown just before, and a
//!   block clears entries that an unblock does not bring back: both
//!   depend on history, so the check leaves those retweets out.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use warble_proto::common::v1::{PageRequest, TimelineEntry};
use warble_proto::graph::v1 as graph;
use warble_proto::timeline::v1 as timeline;
use warble_proto::tweet::v1 as tweet;
use warble_tests::{TestStack, eventually};

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

/// One entry as the checks compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Shown {
    position: u64,
    tweet_id: u64,
    author_id: u64,
    retweeted_by: u64,
}

impl Shown {
    fn of(entry: &TimelineEntry) -> Self {
        Self {
            position: if entry.retweet_id != 0 {
                entry.retweet_id
            } else {
                entry.tweet_id
            },
            tweet_id: entry.tweet_id,
            author_id: entry.author_id,
            retweeted_by: entry.retweeted_by,
        }
    }
}

/// What happened during the run that can excuse a missing retweet.
#[derive(Default)]
struct History {
    /// (follower, followee) pairs that ever followed.
    followed: BTreeSet<(u64, u64)>,
    /// Unordered pairs that were ever in a block.
    blocked: BTreeSet<(u64, u64)>,
    /// Tweets retweeted by more than one user over the run.
    retweeted_twice: BTreeSet<u64>,
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

async fn following(stack: &TestStack, user: u64) -> Vec<u64> {
    let mut followees = Vec::new();
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
        followees.extend(page.following.iter().map(|edge| edge.user_id));
        cursor = page.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            return followees;
        }
    }
}

/// What the stores say `user` should see: the candidate entries (the own
/// tweets of the user and everyone they follow, their retweets of others'
/// live tweets), without anything involving a hidden user.
async fn candidates(stack: &TestStack, user: u64, everyone: &[u64]) -> BTreeMap<u64, Shown> {
    let others: Vec<u64> = everyone.iter().copied().filter(|&u| u != user).collect();
    let hidden: HashSet<u64> = stack
        .graph()
        .get_relations(graph::GetRelationsRequest {
            viewer_id: user,
            user_ids: others,
        })
        .await
        .unwrap()
        .into_inner()
        .relations
        .into_iter()
        .filter(|relation| {
            relation.viewer_blocks || relation.blocks_viewer || relation.viewer_mutes
        })
        .map(|relation| relation.user_id)
        .collect();
    let mut authors = following(stack, user).await;
    authors.push(user);
    let mut entries = BTreeMap::new();
    for author in authors {
        let mut cursor = String::new();
        loop {
            let page = stack
                .tweets()
                .list_user_tweets(tweet::ListUserTweetsRequest {
                    author_id: author,
                    page: Some(PageRequest { cursor, limit: 100 }),
                    include_retweets: true,
                })
                .await
                .unwrap()
                .into_inner();
            for (index, listed) in page.tweets.iter().enumerate() {
                let retweet_id = page.retweet_ids.get(index).copied().unwrap_or(0);
                let shown = Shown {
                    position: if retweet_id != 0 {
                        retweet_id
                    } else {
                        listed.id
                    },
                    tweet_id: listed.id,
                    author_id: listed.author_id,
                    retweeted_by: if retweet_id != 0 { author } else { 0 },
                };
                let own_tweet_retweeted = retweet_id != 0 && listed.author_id == user;
                let involves_hidden =
                    hidden.contains(&shown.author_id) || hidden.contains(&shown.retweeted_by);
                if !own_tweet_retweeted && !involves_hidden {
                    entries.insert(shown.position, shown);
                }
            }
            cursor = page.page.unwrap_or_default().next_cursor;
            if cursor.is_empty() {
                break;
            }
        }
    }
    entries
}

/// `user`'s whole home timeline, page by page.
async fn pages(stack: &TestStack, user: u64, limit: u32) -> Vec<Vec<Shown>> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let response = stack
            .timeline()
            .get_home_timeline(timeline::GetHomeTimelineRequest {
                user_id: user,
                page: Some(PageRequest { cursor, limit }),
            })
            .await
            .expect("home timeline page")
            .into_inner();
        pages.push(response.entries.iter().map(Shown::of).collect());
        cursor = response.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            return pages;
        }
        assert!(pages.len() < 10_000, "paging does not terminate");
    }
}

fn check(
    seed: u64,
    user: u64,
    limit: u32,
    pages: &[Vec<Shown>],
    candidates: &BTreeMap<u64, Shown>,
    history: &History,
) {
    let context = format!("seed {seed:#x}, user {user}, pages of {limit}");
    let walk: Vec<Shown> = pages.iter().flatten().copied().collect();
    for shown in &walk {
        assert_eq!(
            candidates.get(&shown.position),
            Some(shown),
            "{context}: shown but not justified by the stores"
        );
    }
    for pair in walk.windows(2) {
        assert!(
            pair[0].position > pair[1].position,
            "{context}: out of order or repeated: {pair:?}"
        );
    }
    for page in pages {
        let mut tweets = HashSet::new();
        for shown in page {
            assert!(
                tweets.insert(shown.tweet_id),
                "{context}: tweet {} twice in one page",
                shown.tweet_id
            );
        }
    }
    let shown_tweets: HashSet<u64> = walk.iter().map(|shown| shown.tweet_id).collect();
    for candidate in candidates.values() {
        if candidate.retweeted_by == 0 {
            assert!(
                shown_tweets.contains(&candidate.tweet_id),
                "{context}: a tweet of a followed user is missing: {candidate:?}"
            );
            continue;
        }
        let excused = history.retweeted_twice.contains(&candidate.tweet_id)
            || candidate.author_id == user
            || history.followed.contains(&(user, candidate.author_id))
            || history.blocked.contains(&pair(user, candidate.author_id))
            || history
                .blocked
                .contains(&pair(user, candidate.retweeted_by));
        if !excused {
            assert!(
                walk.contains(candidate),
                "{context}: a retweet nothing excuses is missing: {candidate:?}"
            );
        }
    }
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
    let mut retweets: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut retweeters: HashMap<u64, BTreeSet<u64>> = HashMap::new();
    let mut blocks: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut mutes: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut history = History::default();
    // Mutes made to lapse (a second long) and not replaced or removed since.
    let mut lapsing_mutes: BTreeSet<(u64, u64)> = BTreeSet::new();
    for step in 0..operations {
        let user = users[rng.below(users.len())];
        let other = users[rng.below(users.len())];
        match rng.below(20) {
            0..=5 => live.push((stack.post(user, &format!("step {step}")).await, user)),
            6 if !live.is_empty() => {
                let (tweet_id, author) = live.swap_remove(rng.below(live.len()));
                stack.delete(tweet_id, author).await;
            }
            7 | 8 if other != user => {
                // Refused while a block stands between the two.
                let followed = stack
                    .graph()
                    .follow(graph::FollowRequest {
                        follower_id: user,
                        followee_id: other,
                    })
                    .await;
                match followed {
                    Ok(_) => {
                        follows.insert((user, other));
                        history.followed.insert((user, other));
                    }
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
                        assert!(blocks.contains(&(user, other)) || blocks.contains(&(other, user)));
                    }
                }
            }
            9 if !follows.is_empty() => {
                let pair = *follows.iter().nth(rng.below(follows.len())).unwrap();
                stack.unfollow(pair.0, pair.1).await;
                follows.remove(&pair);
            }
            10 | 11 if !live.is_empty() => {
                let (tweet_id, _) = live[rng.below(live.len())];
                stack
                    .tweets()
                    .retweet(tweet::RetweetRequest {
                        user_id: user,
                        tweet_id,
                    })
                    .await
                    .expect("retweet");
                retweets.insert((user, tweet_id));
                let by = retweeters.entry(tweet_id).or_default();
                by.insert(user);
                if by.len() > 1 {
                    history.retweeted_twice.insert(tweet_id);
                }
            }
            12 if !retweets.is_empty() => {
                let (retweeter, tweet_id) =
                    *retweets.iter().nth(rng.below(retweets.len())).unwrap();
                // The tweet may have been deleted since: NOT_FOUND then.
                let _ = stack
                    .tweets()
                    .undo_retweet(tweet::UndoRetweetRequest {
                        user_id: retweeter,
                        tweet_id,
                    })
                    .await;
                retweets.remove(&(retweeter, tweet_id));
            }
            13 if other != user => {
                stack
                    .graph()
                    .block(graph::BlockRequest {
                        blocker_id: user,
                        blocked_id: other,
                    })
                    .await
                    .expect("block");
                blocks.insert((user, other));
                history.blocked.insert(pair(user, other));
                follows.remove(&(user, other));
                follows.remove(&(other, user));
            }
            14 if !blocks.is_empty() => {
                let (blocker, blocked) = *blocks.iter().nth(rng.below(blocks.len())).unwrap();
                stack
                    .graph()
                    .unblock(graph::UnblockRequest {
                        blocker_id: blocker,
                        blocked_id: blocked,
                    })
                    .await
                    .expect("unblock");
                blocks.remove(&(blocker, blocked));
            }
            15 if other != user => {
                // Half the mutes lapse a second later, before the check.
                let lapsing = rng.below(2) == 0;
                stack
                    .graph()
                    .mute(graph::MuteRequest {
                        muter_id: user,
                        muted_id: other,
                        duration_secs: u64::from(lapsing),
                        hide_notifications: false,
                    })
                    .await
                    .expect("mute");
                mutes.insert((user, other));
                if lapsing {
                    lapsing_mutes.insert((user, other));
                } else {
                    lapsing_mutes.remove(&(user, other));
                }
            }
            16 if !mutes.is_empty() => {
                let (muter, muted) = *mutes.iter().nth(rng.below(mutes.len())).unwrap();
                stack
                    .graph()
                    .unmute(graph::UnmuteRequest {
                        muter_id: muter,
                        muted_id: muted,
                    })
                    .await
                    .expect("unmute");
                mutes.remove(&(muter, muted));
                lapsing_mutes.remove(&(muter, muted));
            }
            _ => {
                // Reading marks the user active (so fan-out pushes to them) and
                // may rebuild their timeline while fan-out is still running.
                stack.home_page(user, "", 5).await.unwrap();
            }
        }
    }
    // Every mute made to lapse has lapsed by the check: the stores and the
    // timelines then agree it is gone, whatever the order they are read in.
    eventually("the lapsing mutes to lapse", || async {
        for &(muter, muted) in &lapsing_mutes {
            let relations = stack
                .graph()
                .get_relations(graph::GetRelationsRequest {
                    viewer_id: muter,
                    user_ids: vec![muted],
                })
                .await
                .unwrap()
                .into_inner()
                .relations;
            if relations.iter().any(|relation| relation.viewer_mutes) {
                return false;
            }
        }
        true
    })
    .await;
    stack.settle().await;
    for &user in &users {
        let candidates = candidates(&stack, user, &users).await;
        for limit in [4, 100] {
            let pages = pages(&stack, user, limit).await;
            check(seed, user, limit, &pages, &candidates, &history);
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn timelines_match_the_stores_after_random_operations_seed_1() {
    run(0x9E37_79B9_7F4A_7C15, 300).await;
}

#[tokio::test]
async fn timelines_match_the_stores_after_random_operations_seed_2() {
    run(0xD1B5_4A32_D192_ED03, 300).await;
}

#[tokio::test]
async fn timelines_match_the_stores_after_random_operations_seed_3() {
    run(0x2545_F491_4F6C_DD1D, 300).await;
}
