//! Per-request DataLoaders for the lazy paths (a reply's parent, a user
//! looked up by a mutation). The hot path, timeline hydration, does not
//! wait on loader delays: [`crate::hydrate`] fetches whole batches up front.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use tonic::Status;
use warble_proto::graph::v1 as graph;
use warble_proto::tweet::v1 as tweet;

use crate::auth::Viewer;
use crate::downstream::Downstream;

/// Tweets by id (found ones only).
pub struct TweetsById(pub Downstream);
/// Users by id.
pub struct UsersById(pub Downstream);
/// Engagement counts by tweet id.
pub struct CountsByTweet(pub Downstream);
/// The viewer's likes/retweets by tweet id.
pub struct ViewerStateByTweet(pub Downstream, pub Viewer);
/// Follow counts by user id.
pub struct FollowCountsByUser(pub Downstream);
/// Whether the viewer follows each user id.
pub struct ViewerFollowsUser(pub Downstream, pub Viewer);

impl Loader<u64> for TweetsById {
    type Value = tweet::Tweet;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .tweets
            .clone()
            .get_tweets(tweet::GetTweetsRequest {
                tweet_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .filter_map(|lookup| lookup.tweet.map(|tweet| (lookup.tweet_id, tweet)))
            .collect())
    }
}

impl Loader<u64> for UsersById {
    type Value = graph::User;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .graph
            .clone()
            .get_users(graph::GetUsersRequest {
                user_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .filter_map(|lookup| lookup.user.map(|user| (lookup.user_id, user)))
            .collect())
    }
}

impl Loader<u64> for CountsByTweet {
    type Value = tweet::TweetCounts;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .tweets
            .clone()
            .get_counts(tweet::GetCountsRequest {
                tweet_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .counts
            .into_iter()
            .map(|counts| (counts.tweet_id, counts))
            .collect())
    }
}

impl Loader<u64> for ViewerStateByTweet {
    type Value = tweet::ViewerTweetState;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .tweets
            .clone()
            .get_viewer_state(tweet::GetViewerStateRequest {
                viewer_id: self.1.user_id,
                tweet_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .states
            .into_iter()
            .map(|state| (state.tweet_id, state))
            .collect())
    }
}

impl Loader<u64> for FollowCountsByUser {
    type Value = graph::FollowCounts;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .graph
            .clone()
            .get_follow_counts(graph::GetFollowCountsRequest {
                user_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .counts
            .into_iter()
            .map(|counts| (counts.user_id, counts))
            .collect())
    }
}

impl Loader<u64> for ViewerFollowsUser {
    type Value = bool;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let pairs = ids
            .iter()
            .map(|followee_id| graph::FollowPair {
                follower_id: self.1.user_id,
                followee_id: *followee_id,
            })
            .collect();
        let response = self
            .0
            .graph
            .clone()
            .is_following(graph::IsFollowingRequest { pairs })
            .await?;
        Ok(ids
            .iter()
            .copied()
            .zip(response.into_inner().following)
            .collect())
    }
}

/// The loaders of one request.
pub struct Loaders {
    /// Tweets by id.
    pub tweets: DataLoader<TweetsById>,
    /// Users by id.
    pub users: DataLoader<UsersById>,
    /// Counts by tweet id.
    pub counts: DataLoader<CountsByTweet>,
    /// Follow counts by user id.
    pub follow_counts: DataLoader<FollowCountsByUser>,
    /// Viewer state by tweet id (when authenticated).
    pub viewer_state: Option<DataLoader<ViewerStateByTweet>>,
    /// Viewer follows by user id (when authenticated).
    pub viewer_follows: Option<DataLoader<ViewerFollowsUser>>,
}

impl Loaders {
    /// Fresh loaders for one request by `viewer`.
    pub fn new(downstream: &Downstream, viewer: Option<Viewer>) -> Self {
        let spawn = |future| {
            tokio::spawn(future);
        };
        Self {
            tweets: DataLoader::new(TweetsById(downstream.clone()), spawn),
            users: DataLoader::new(UsersById(downstream.clone()), spawn),
            counts: DataLoader::new(CountsByTweet(downstream.clone()), spawn),
            follow_counts: DataLoader::new(FollowCountsByUser(downstream.clone()), spawn),
            viewer_state: viewer.map(|viewer| {
                DataLoader::new(ViewerStateByTweet(downstream.clone(), viewer), spawn)
            }),
            viewer_follows: viewer.map(|viewer| {
                DataLoader::new(ViewerFollowsUser(downstream.clone(), viewer), spawn)
            }),
        }
    }
}
