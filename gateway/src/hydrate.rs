//! Batched hydration: a page of N tweets costs one GetTweets (which brings
//! the counts and the viewer's state along when the query asks for them),
//! then one GetUsers (plus one GetFollowCounts / IsFollowing in parallel when
//! the query asks for the authors' counts or follow state) — never N calls,
//! and no DataLoader batching delay. Relay's `nodes` likewise: one
//! GetTweets for every id, then one GetUsers for the rest and the authors.
//! What to fetch is read from the query's selection (look-ahead).

use std::collections::{HashMap, HashSet};

use async_graphql::Lookahead;
use warble_proto::graph::v1 as graph;
use warble_proto::limits::graph as graph_limits;
use warble_proto::tweet::v1 as tweet;

use crate::auth::Viewer;
use crate::downstream::Downstream;
use crate::error::{StatusExt as _, from_status};
use crate::model::{Node, Slot, TweetNode, UserNode};

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
    /// viewerHasLiked, viewerHasRetweeted or viewerHasBookmarked.
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
                || tweet.field("viewerHasRetweeted").exists()
                || tweet.field("viewerHasBookmarked").exists(),
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

/// What one GetTweets brought: the tweets found, with their counts and the
/// viewer's state when those were asked for.
struct Fetched {
    /// The tweets found; missing and deleted ones are absent.
    found: Vec<tweet::Tweet>,
    /// Counts by tweet id, when asked for.
    counts: Option<HashMap<u64, tweet::TweetCounts>>,
    /// The viewer's like/retweet state by tweet id, when asked for (and
    /// there is a viewer).
    states: Option<HashMap<u64, tweet::ViewerTweetState>>,
}

impl Fetched {
    /// The authors of the tweets found, each once.
    fn author_ids(&self) -> Vec<u64> {
        let mut author_ids: Vec<u64> = self.found.iter().map(|tweet| tweet.author_id).collect();
        author_ids.sort_unstable();
        author_ids.dedup();
        author_ids
    }

    /// The nodes by tweet id; their authors come from `authors` (the batch
    /// that loaded them), or lazily when `None` (not asked for).
    fn into_nodes(
        self,
        authors: Option<&Result<HashMap<u64, UserNode>, async_graphql::Error>>,
    ) -> HashMap<u64, TweetNode> {
        let Self {
            found,
            counts,
            states,
        } = self;
        found
            .into_iter()
            .map(|tweet| {
                let id = tweet.id;
                let author = match authors {
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
            .collect()
    }
}

/// One GetTweets for `ids` (not empty), bringing the counts and the
/// viewer's state along when `wants` asks for them.
async fn fetch_tweets(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    wants: TweetWants,
) -> async_graphql::Result<Fetched> {
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
    Ok(Fetched {
        found,
        counts: wants.counts.then_some(counts),
        states: (viewer_id != 0).then_some(states),
    })
}

/// Hydrates tweets by id, in order; missing and deleted tweets are `None`.
pub async fn tweets(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    wants: TweetWants,
) -> async_graphql::Result<Vec<Option<TweetNode>>> {
    Ok(
        tweets_and_users(downstream, viewer, ids, &[], wants, &[], None)
            .await?
            .0,
    )
}

/// Hydrates tweets by id, in order (missing and deleted tweets are
/// `None`), and with their authors, in the same GetUsers call, the users
/// `others` (a page's retweeters) when `others_wants` asks for them: one
/// GetTweets and one GetUsers for the lot. The users come back by id,
/// `None` when not asked for, or the batch's error.
///
/// `authors`, when it names the author of every id (timeline entries carry
/// them), lets GetUsers go out together with GetTweets instead of after
/// it: a page waits for the slower of the two, not their sum. Otherwise
/// (empty, or a zero among them) the authors come from the tweets found.
pub async fn tweets_and_users(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    authors: &[u64],
    wants: TweetWants,
    others: &[u64],
    others_wants: Option<UserWants>,
) -> async_graphql::Result<(
    Vec<Option<TweetNode>>,
    Option<Result<HashMap<u64, UserNode>, async_graphql::Error>>,
)> {
    if ids.is_empty() {
        return Ok((Vec::new(), None));
    }
    let authors_known = authors.len() == ids.len() && !authors.contains(&0);
    let (fetched, loaded) = if wants.author.is_some() && authors_known {
        let (user_ids, user_wants) = user_batch(wants.author, authors, others, others_wants);
        let (fetched, loaded) = tokio::join!(
            fetch_tweets(downstream, viewer, ids, wants),
            load_users(downstream, viewer, &user_ids, user_wants)
        );
        (fetched?, loaded)
    } else {
        // One call brings the tweets with their counts and the viewer's state.
        let fetched = fetch_tweets(downstream, viewer, ids, wants).await?;
        let (user_ids, user_wants) =
            user_batch(wants.author, &fetched.author_ids(), others, others_wants);
        let loaded = load_users(downstream, viewer, &user_ids, user_wants).await;
        (fetched, loaded)
    };
    let nodes = fetched.into_nodes(loaded.as_ref().filter(|_| wants.author.is_some()));
    let ordered = ids.iter().map(|id| nodes.get(id).cloned()).collect();
    Ok((ordered, loaded.filter(|_| others_wants.is_some())))
}

/// The users one GetUsers loads for a page: `authors` when the selection
/// asks for them, and `others` when it asks for those, each once, with
/// what either selection asks of a user (`None`: nobody to load).
fn user_batch(
    author_wants: Option<UserWants>,
    authors: &[u64],
    others: &[u64],
    others_wants: Option<UserWants>,
) -> (Vec<u64>, Option<UserWants>) {
    let mut user_ids = Vec::new();
    let mut user_wants = None;
    if let Some(author_wants) = author_wants {
        user_ids.extend_from_slice(authors);
        user_wants = Some(author_wants);
    }
    if let Some(other_wants) = others_wants.filter(|_| !others.is_empty()) {
        user_ids.extend_from_slice(others);
        let merged = user_wants.get_or_insert_with(UserWants::default);
        merged.counts |= other_wants.counts;
        merged.viewer_follows |= other_wants.viewer_follows;
    }
    user_ids.sort_unstable();
    user_ids.dedup();
    let user_wants = user_wants.filter(|_| !user_ids.is_empty());
    (user_ids, user_wants)
}

/// [`users`] for a [`user_batch`]; `None` when it has nobody to load.
async fn load_users(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    user_ids: &[u64],
    wants: Option<UserWants>,
) -> Option<Result<HashMap<u64, UserNode>, async_graphql::Error>> {
    Some(users(downstream, viewer, user_ids, wants?).await)
}

/// Hydrates objects by id alone, in order, whatever their type (Relay's
/// `nodes`): one GetTweets for every id, then one GetUsers for the ids that
/// are not tweets together with the found tweets' authors (plus one
/// GetFollowCounts / IsFollowing when either asks for them) — never a call
/// per id. An id that names nothing is `None`; one that may be a user while
/// the user batch failed is that batch's error, so only its own entry
/// fails. Tweet and user ids never collide (tweet-svc and graph-svc issue
/// them under disjoint Snowflake worker ids); were one both, it would be
/// the tweet.
pub async fn nodes(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    tweet_wants: TweetWants,
    user_wants: UserWants,
) -> async_graphql::Result<Vec<Option<async_graphql::Result<Node>>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let fetched = fetch_tweets(downstream, viewer, &unique, tweet_wants).await?;
    let tweet_ids: HashSet<u64> = fetched.found.iter().map(|tweet| tweet.id).collect();
    let mut user_ids: Vec<u64> = unique
        .into_iter()
        .filter(|id| !tweet_ids.contains(id))
        .collect();
    // Authors ride in the same batch, with what either selection asks of a user.
    let mut wants = user_wants;
    if let Some(author_wants) = tweet_wants.author {
        user_ids.extend(fetched.author_ids());
        user_ids.sort_unstable();
        user_ids.dedup();
        wants.counts |= author_wants.counts;
        wants.viewer_follows |= author_wants.viewer_follows;
    }
    let users = if user_ids.is_empty() {
        None
    } else {
        Some(users(downstream, viewer, &user_ids, wants).await)
    };
    let tweets = fetched.into_nodes(users.as_ref().filter(|_| tweet_wants.author.is_some()));
    Ok(ids
        .iter()
        .map(|id| match (tweets.get(id), &users) {
            (Some(tweet), _) => Some(Ok(Node::Tweet(tweet.clone()))),
            (None, Some(Ok(users))) => users.get(id).cloned().map(|user| Ok(Node::User(user))),
            (None, Some(Err(error))) => Some(Err(error.clone())),
            (None, None) => None,
        })
        .collect())
}

/// Hydrates users by id (one GetUsers, plus GetFollowCounts / IsFollowing in
/// parallel when wanted). Missing users are absent from the map. More ids
/// than graph-svc takes in one batch (a page of notification groups can
/// name up to 800 actors) are split into batches sent at once.
pub async fn users(
    downstream: &Downstream,
    viewer: Option<Viewer>,
    ids: &[u64],
    wants: UserWants,
) -> Result<HashMap<u64, UserNode>, async_graphql::Error> {
    if ids.len() <= graph_limits::MAX_BATCH {
        return users_batch(downstream, viewer, ids, wants).await;
    }
    let batches = futures::future::try_join_all(
        ids.chunks(graph_limits::MAX_BATCH)
            .map(|batch| users_batch(downstream, viewer, batch, wants)),
    )
    .await?;
    Ok(batches.into_iter().flatten().collect())
}

/// [`users`] for at most one batch of ids.
async fn users_batch(
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
