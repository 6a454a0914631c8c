//! Per-request DataLoaders for the lazy paths (a reply's parent, a user
//! looked up by a mutation). The hot path, timeline hydration, does not
//! wait on loader delays: [`crate::hydrate`] fetches whole batches up front.

use std::collections::HashMap;
use std::sync::OnceLock;

use async_graphql::dataloader::{DataLoader, Loader};
use tonic::Status;
use warble_proto::graph::v1 as graph;
use warble_proto::limits::{graph as graph_limits, media as media_limits, tweet as tweet_limits};
use warble_proto::media::v1 as media;
use warble_proto::notify::v1 as notify;
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
/// How the viewer relates to each user id (blocks, mutes).
pub struct RelationsToUser(pub Downstream, pub Viewer);
/// Users by lower-cased username (resolving mentions).
pub struct UsersByUsername(pub Downstream);
/// Live tweets written, by author id.
pub struct TweetsCountByAuthor(pub Downstream);
/// Unread notifications by recipient id. Only ever asked for the viewer:
/// it lets `unreadNotificationsCount` and `unreadNotificationsCapped`
/// share one GetUnreadCount.
pub struct UnreadNotifications(pub Downstream);
/// Media by id (found ones only): the media of a page's tweets and the
/// avatars of its users, in one GetMedia.
pub struct MediaById(pub Downstream);

impl Loader<u64> for MediaById {
    type Value = media::Media;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .media
            .clone()
            .get_media(media::GetMediaRequest {
                media_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .zip(ids)
            .filter_map(|(result, &id)| {
                result
                    .media
                    .filter(|_| result.found)
                    .map(|media| (id, media))
            })
            .collect())
    }
}

impl Loader<u64> for UnreadNotifications {
    type Value = notify::GetUnreadCountResponse;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        // GetUnreadCount takes one recipient; a request has one viewer.
        let mut unread = HashMap::with_capacity(ids.len());
        for &recipient_id in ids {
            let response = self
                .0
                .notify
                .clone()
                .get_unread_count(notify::GetUnreadCountRequest { recipient_id })
                .await?;
            unread.insert(recipient_id, response.into_inner());
        }
        Ok(unread)
    }
}

impl Loader<u64> for RelationsToUser {
    type Value = graph::Relation;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .graph
            .clone()
            .get_relations(graph::GetRelationsRequest {
                viewer_id: self.1.user_id,
                user_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .relations
            .into_iter()
            .map(|relation| (relation.user_id, relation))
            .collect())
    }
}

impl Loader<String> for UsersByUsername {
    type Value = graph::User;
    type Error = Status;

    async fn load(
        &self,
        usernames: &[String],
    ) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let response = self
            .0
            .graph
            .clone()
            .get_users_by_usernames(graph::GetUsersByUsernamesRequest {
                usernames: usernames.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .filter_map(|lookup| {
                lookup
                    .user
                    .map(|user| (lookup.username.to_ascii_lowercase(), user))
            })
            .collect())
    }
}

impl Loader<u64> for TweetsCountByAuthor {
    type Value = u64;
    type Error = Status;

    async fn load(&self, ids: &[u64]) -> Result<HashMap<u64, Self::Value>, Self::Error> {
        let response = self
            .0
            .tweets
            .clone()
            .get_author_counts(tweet::GetAuthorCountsRequest {
                author_ids: ids.to_vec(),
            })
            .await?;
        Ok(response
            .into_inner()
            .counts
            .into_iter()
            .map(|counts| (counts.author_id, counts.tweets_count))
            .collect())
    }
}

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
                ..Default::default()
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

/// The loaders of one request, each built on first use: most requests
/// (timeline pages, which hydrate in batches) never touch one, and building
/// them all up front was a measurable share of a page's allocations.
pub struct Loaders {
    downstream: Downstream,
    viewer: Option<Viewer>,
    tweets: OnceLock<DataLoader<TweetsById>>,
    users: OnceLock<DataLoader<UsersById>>,
    counts: OnceLock<DataLoader<CountsByTweet>>,
    follow_counts: OnceLock<DataLoader<FollowCountsByUser>>,
    viewer_state: OnceLock<DataLoader<ViewerStateByTweet>>,
    viewer_follows: OnceLock<DataLoader<ViewerFollowsUser>>,
    relations: OnceLock<DataLoader<RelationsToUser>>,
    users_by_username: OnceLock<DataLoader<UsersByUsername>>,
    tweets_count: OnceLock<DataLoader<TweetsCountByAuthor>>,
    unread_notifications: OnceLock<DataLoader<UnreadNotifications>>,
    media: OnceLock<DataLoader<MediaById>>,
}

/// Loader batches run on their own task, so a batch outlives the field
/// that happened to start it; the task stays in the operation's span, so
/// the batch's downstream call joins the operation's trace.
fn spawn_batch(future: futures::future::BoxFuture<'static, ()>) {
    tokio::spawn(tracing::Instrument::in_current_span(future));
}

impl Loaders {
    /// Loaders for one request by `viewer`; none is built yet.
    pub fn new(downstream: &Downstream, viewer: Option<Viewer>) -> Self {
        Self {
            downstream: downstream.clone(),
            viewer,
            tweets: OnceLock::new(),
            users: OnceLock::new(),
            counts: OnceLock::new(),
            follow_counts: OnceLock::new(),
            viewer_state: OnceLock::new(),
            viewer_follows: OnceLock::new(),
            relations: OnceLock::new(),
            users_by_username: OnceLock::new(),
            tweets_count: OnceLock::new(),
            unread_notifications: OnceLock::new(),
            media: OnceLock::new(),
        }
    }

    /// How the viewer relates to each user id; `None` when anonymous.
    pub fn relations(&self) -> Option<&DataLoader<RelationsToUser>> {
        let viewer = self.viewer?;
        Some(self.relations.get_or_init(|| {
            DataLoader::new(
                RelationsToUser(self.downstream.clone(), viewer),
                spawn_batch,
            )
            .max_batch_size(graph_limits::MAX_BATCH)
        }))
    }

    /// Users by lower-cased username: every mention of a page in one batch.
    pub fn users_by_username(&self) -> &DataLoader<UsersByUsername> {
        self.users_by_username.get_or_init(|| {
            DataLoader::new(UsersByUsername(self.downstream.clone()), spawn_batch)
                .max_batch_size(graph_limits::MAX_BATCH)
        })
    }

    /// Live tweets written, by author id.
    pub fn tweets_count(&self) -> &DataLoader<TweetsCountByAuthor> {
        self.tweets_count.get_or_init(|| {
            DataLoader::new(TweetsCountByAuthor(self.downstream.clone()), spawn_batch)
                .max_batch_size(tweet_limits::MAX_BATCH)
        })
    }

    /// Unread notifications by recipient id.
    pub fn unread_notifications(&self) -> &DataLoader<UnreadNotifications> {
        self.unread_notifications.get_or_init(|| {
            DataLoader::new(UnreadNotifications(self.downstream.clone()), spawn_batch)
        })
    }

    /// Media by id: tweets' media and users' avatars share it, so a page
    /// costs one GetMedia (up to `limits::media::MAX_BATCH` ids).
    pub fn media(&self) -> &DataLoader<MediaById> {
        self.media.get_or_init(|| {
            DataLoader::new(MediaById(self.downstream.clone()), spawn_batch)
                .max_batch_size(media_limits::MAX_BATCH)
        })
    }

    /// Tweets by id.
    pub fn tweets(&self) -> &DataLoader<TweetsById> {
        self.tweets
            .get_or_init(|| DataLoader::new(TweetsById(self.downstream.clone()), spawn_batch))
    }

    /// Users by id.
    pub fn users(&self) -> &DataLoader<UsersById> {
        self.users
            .get_or_init(|| DataLoader::new(UsersById(self.downstream.clone()), spawn_batch))
    }

    /// Counts by tweet id.
    pub fn counts(&self) -> &DataLoader<CountsByTweet> {
        self.counts
            .get_or_init(|| DataLoader::new(CountsByTweet(self.downstream.clone()), spawn_batch))
    }

    /// Follow counts by user id.
    pub fn follow_counts(&self) -> &DataLoader<FollowCountsByUser> {
        self.follow_counts.get_or_init(|| {
            DataLoader::new(FollowCountsByUser(self.downstream.clone()), spawn_batch)
        })
    }

    /// Viewer state by tweet id; `None` when the request is anonymous.
    pub fn viewer_state(&self) -> Option<&DataLoader<ViewerStateByTweet>> {
        let viewer = self.viewer?;
        Some(self.viewer_state.get_or_init(|| {
            DataLoader::new(
                ViewerStateByTweet(self.downstream.clone(), viewer),
                spawn_batch,
            )
        }))
    }

    /// Whether the viewer follows each user id; `None` when anonymous.
    pub fn viewer_follows(&self) -> Option<&DataLoader<ViewerFollowsUser>> {
        let viewer = self.viewer?;
        Some(self.viewer_follows.get_or_init(|| {
            DataLoader::new(
                ViewerFollowsUser(self.downstream.clone(), viewer),
                spawn_batch,
            )
        }))
    }
}
