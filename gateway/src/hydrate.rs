//! Batched hydration: a page of N tweets costs one GetTweets (which brings
//! the counts and the viewer's state along when the query asks for them),
//! then one GetUsers (plus one GetFollowCounts / IsFollowing in parallel when
//! the query asks for the authors' counts or follow state) — never N calls,
//! and no DataLoader batching delay.
//! What to fetch is read from the query's selection (look-ahead).

use std::collections::HashMap;

use async_graphql::Lookahead;
use warble_proto::graph::v1 as graph;
use warble_proto::tweet::v1 as tweet;

use crate::auth::Viewer;
use crate::downstream::Downstream;
use crate::error::{StatusExt as _, from_status};
use crate::model::{Slot, TweetNode, UserNode};

/// Which user fields a selection asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserWants {
    /// followersCount or followingCount.
    pub counts: bool,
    /// viewerFollows.
    pub viewer_follows: bool,
}

impl UserWants {
    /// Reads a `User` selection.
    pub fn of(user: Lookahead<'_>) -> Self {
        Self {
            counts: user.field("followersCount").exists() || user.field("followingCount").exists(),
            viewer_follows: user.field("viewerFollows").exists(),
        }
    }
}

/// Which tweet fields a selection asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct TweetWants {
    /// author (and what of it).
    pub author: Option<UserWants>,
    /// any of the four counts.
    pub counts: bool,
    /// viewerHasLiked or viewerHasRetweeted.
    pub viewer_state: bool,
}

impl TweetWants {
    /// Reads a `Tweet` selection.
    pub fn of(tweet: Lookahead<'_>) -> Self {
        let author = tweet.field("author");
        Self {
            author: author.exists().then(|| UserWants::of(author)),
            counts: ["likeCount", "retweetCount", "replyCount", "quoteCount"]
                .iter()
                .any(|field| tweet.field(field).exists()),
            viewer_state: tweet.field("viewerHasLiked").exists()
                || tweet.field("viewerHasRetweeted").exists(),
        }
    }
}

fn slot<T>(result: Option<Result<T, tonic::Status>>) -> Slot<T> {
    match result {
        None => Slot::Lazy,
        Some(Ok(value)) => Slot::Ready(value),
        Some(Err(status)) => Slot::Failed(from_status(status)),
    }
}

/// One id's share of a batch result: absent when the batch was not made,
/// the batch's error when it failed.
fn pick<T: Clone>(
    batch: &Option<Result<HashMap<u64, T>, tonic::Status>>,
    id: u64,
) -> Option<Result<T, tonic::Status>> {
    match batch {
        None => None,
        Some(Ok(by_id)) => by_id.get(&id).cloned().map(Ok),
        Some(Err(status)) => Some(Err(status.clone())),
    }
}

/// One id's share of what came with GetTweets: lazy when it was not asked
/// for (or, unexpectedly, missing), so the field falls back to its loader.
fn prefetched<T: Clone>(batch: &Option<HashMap<u64, T>>, id: u64) -> Slot<T> {
    match batch.as_ref().and_then(|by_id| by_id.get(&id)) {
        Some(value) => Slot::Ready(value.clone()),
        None => Slot::Lazy,
    }
}

/// Hydrates tweets by id, in order; missing and deleted tweets are `None`.
pub async fn tweets(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    wants: TweetWants,
) -> async_graphql::Result<Vec<Option<TweetNode>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One call brings the tweets with their counts and the viewer's state.
    let viewer_id = viewer
        .filter(|_| wants.viewer_state)
        .map_or(0, |viewer| viewer.user_id);
    let lookups = downstream
        .tweets
        .clone()
        .get_tweets(tweet::GetTweetsRequest {
            tweet_ids: ids.to_vec(),
            include_counts: wants.counts,
            viewer_id,
        })
        .await
        .gql()?
        .into_inner()
        .results;
    let mut counts = HashMap::new();
    let mut states = HashMap::new();
    let mut found = Vec::with_capacity(lookups.len());
    for lookup in lookups {
        let Some(tweet) = lookup.tweet else {
            continue;
        };
        if let Some(tweet_counts) = lookup.counts {
            counts.insert(tweet.id, tweet_counts);
        }
        if let Some(state) = lookup.viewer_state {
            states.insert(tweet.id, state);
        }
        found.push(tweet);
    }
    let counts = wants.counts.then_some(counts);
    let states = (viewer_id != 0).then_some(states);
    let mut author_ids: Vec<u64> = found.iter().map(|tweet| tweet.author_id).collect();
    author_ids.sort_unstable();
    author_ids.dedup();

    let authors = match wants.author {
        Some(user_wants) if !author_ids.is_empty() => {
            Some(users(downstream, viewer, &author_ids, user_wants).await)
        }
        _ => None,
    };

    let nodes: HashMap<u64, TweetNode> = found
        .into_iter()
        .map(|tweet| {
            let id = tweet.id;
            let author = match &authors {
                None => Slot::Lazy,
                Some(Ok(users)) => Slot::Ready(users.get(&tweet.author_id).cloned()),
                Some(Err(error)) => Slot::Failed(error.clone()),
            };
            let node = TweetNode {
                author,
                counts: prefetched(&counts, id),
                viewer_state: prefetched(&states, id),
                tweet: std::sync::Arc::new(tweet),
            };
            (id, node)
        })
        .collect();
    Ok(ids.iter().map(|id| nodes.get(id).cloned()).collect())
}

/// Hydrates users by id (one GetUsers, plus GetFollowCounts / IsFollowing in
/// parallel when wanted). Missing users are absent from the map.
pub async fn users(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    wants: UserWants,
) -> Result<HashMap<u64, UserNode>, async_graphql::Error> {
    let profiles = async {
        downstream
            .graph
            .clone()
            .get_users(graph::GetUsersRequest {
                user_ids: ids.to_vec(),
            })
            .await
    };
    let counts = async {
        if !wants.counts {
            return None;
        }
        Some(
            downstream
                .graph
                .clone()
                .get_follow_counts(graph::GetFollowCountsRequest {
                    user_ids: ids.to_vec(),
                })
                .await
                .map(|response| {
                    response
                        .into_inner()
                        .counts
                        .into_iter()
                        .map(|counts| (counts.user_id, counts))
                        .collect::<HashMap<_, _>>()
                }),
        )
    };
    let follows = async {
        let viewer = viewer.filter(|_| wants.viewer_follows)?;
        let pairs = ids
            .iter()
            .map(|followee_id| graph::FollowPair {
                follower_id: viewer.user_id,
                followee_id: *followee_id,
            })
            .collect();
        Some(
            downstream
                .graph
                .clone()
                .is_following(graph::IsFollowingRequest { pairs })
                .await
                .map(|response| {
                    ids.iter()
                        .copied()
                        .zip(response.into_inner().following)
                        .collect::<HashMap<_, _>>()
                }),
        )
    };
    let (profiles, counts, follows) = tokio::join!(profiles, counts, follows);
    let profiles = profiles.gql()?.into_inner().results;
    Ok(profiles
        .into_iter()
        .filter_map(|lookup| lookup.user)
        .map(|user| {
            let id = user.id;
            let node = UserNode {
                user: std::sync::Arc::new(user),
                follow_counts: slot(pick(&counts, id)),
                viewer_follows: slot(pick(&follows, id)),
            };
            (id, node)
        })
        .collect())
}
