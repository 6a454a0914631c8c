//! The GraphQL types. 64-bit ids travel as `ID` strings: they exceed
//! JavaScript's safe integers.
//!
//! Nodes carry whatever hydration fetched up front (`Slot::Ready`); a field
//! whose data was not prefetched falls back to the request's DataLoaders, and
//! a field whose batch failed reports that error on itself only (the field
//! is nullable), so a failing downstream degrades the smallest possible part
//! of the response.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, ID, Object, Result, SimpleObject};
use warble_proto::graph::v1 as graph;
use warble_proto::tweet::v1 as tweet;

use crate::auth::Viewer;
use crate::error::{ErrorCode, StatusExt as _, gql_error};
use crate::loaders::Loaders;
use crate::time::iso8601;

/// Data a node may have been given by hydration.
#[derive(Clone, Default)]
pub enum Slot<T> {
    /// Not prefetched: load lazily if asked for.
    #[default]
    Lazy,
    /// Prefetched.
    Ready(T),
    /// The batch that would have filled it failed.
    Failed(async_graphql::Error),
}

/// A user.
#[derive(Clone)]
pub struct UserNode {
    /// The profile.
    pub user: Arc<graph::User>,
    /// Follower/following counts, if prefetched.
    pub follow_counts: Slot<graph::FollowCounts>,
    /// Whether the viewer follows this user, if prefetched.
    pub viewer_follows: Slot<bool>,
}

impl UserNode {
    /// A node with nothing prefetched beyond the profile.
    pub fn lazy(user: graph::User) -> Self {
        Self {
            user: Arc::new(user),
            follow_counts: Slot::Lazy,
            viewer_follows: Slot::Lazy,
        }
    }

    async fn counts(&self, ctx: &Context<'_>) -> Result<Option<graph::FollowCounts>> {
        match &self.follow_counts {
            Slot::Ready(counts) => Ok(Some(*counts)),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Lazy => ctx
                .data::<Loaders>()?
                .follow_counts()
                .load_one(self.user.id)
                .await
                .gql(),
        }
    }
}

#[Object(name = "User")]
impl UserNode {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.user.id.to_string())
    }

    /// Unique handle (1 to 15 of `[A-Za-z0-9_]`), as the user typed it.
    async fn username(&self) -> &str {
        &self.user.username
    }

    /// Display name.
    async fn display_name(&self) -> &str {
        &self.user.display_name
    }

    /// Profile text.
    async fn bio(&self) -> &str {
        &self.user.bio
    }

    /// Sign-up time, ISO 8601 UTC.
    async fn created_at(&self) -> String {
        iso8601(self.user.created_at_ms)
    }

    /// How many users follow this user (null with an error if unavailable).
    async fn followers_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.followers_count))
    }

    /// How many users this user follows (null with an error if unavailable).
    async fn following_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.following_count))
    }

    /// Whether the viewer follows this user; null when not signed in or for the viewer themself.
    async fn viewer_follows(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        let Some(viewer) = ctx.data_opt::<Viewer>() else {
            return Ok(None);
        };
        if viewer.user_id == self.user.id {
            return Ok(None);
        }
        match &self.viewer_follows {
            Slot::Ready(follows) => Ok(Some(*follows)),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Lazy => match &ctx.data::<Loaders>()?.viewer_follows() {
                Some(loader) => loader.load_one(self.user.id).await.gql(),
                None => Ok(None),
            },
        }
    }

    /// Who follows this user, most recent first.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn followers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        crate::resolvers::follow_list(
            ctx,
            self.user.id,
            crate::resolvers::FollowList::Followers,
            first,
            after,
        )
        .await
    }

    /// Whom this user follows, most recent first.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn following(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        crate::resolvers::follow_list(
            ctx,
            self.user.id,
            crate::resolvers::FollowList::Following,
            first,
            after,
        )
        .await
    }
}

/// A tweet.
#[derive(Clone)]
pub struct TweetNode {
    /// The tweet.
    pub tweet: Arc<tweet::Tweet>,
    /// Its author, if prefetched (`None` inside when the author no longer exists).
    pub author: Slot<Option<UserNode>>,
    /// Engagement counts, if prefetched.
    pub counts: Slot<tweet::TweetCounts>,
    /// The viewer's like/retweet state, if prefetched.
    pub viewer_state: Slot<tweet::ViewerTweetState>,
}

impl TweetNode {
    /// A node with nothing prefetched beyond the tweet.
    pub fn lazy(tweet: tweet::Tweet) -> Self {
        Self {
            tweet: Arc::new(tweet),
            author: Slot::Lazy,
            counts: Slot::Lazy,
            viewer_state: Slot::Lazy,
        }
    }

    async fn counts(&self, ctx: &Context<'_>) -> Result<Option<tweet::TweetCounts>> {
        match &self.counts {
            Slot::Ready(counts) => Ok(Some(*counts)),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Lazy => ctx
                .data::<Loaders>()?
                .counts()
                .load_one(self.tweet.id)
                .await
                .gql(),
        }
    }

    async fn viewer_state(&self, ctx: &Context<'_>) -> Result<Option<tweet::ViewerTweetState>> {
        if ctx.data_opt::<Viewer>().is_none() {
            return Ok(None);
        }
        match &self.viewer_state {
            Slot::Ready(state) => Ok(Some(*state)),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Lazy => match &ctx.data::<Loaders>()?.viewer_state() {
                Some(loader) => loader.load_one(self.tweet.id).await.gql(),
                None => Ok(None),
            },
        }
    }

    async fn related(ctx: &Context<'_>, id: Option<u64>) -> Result<Option<TweetNode>> {
        let Some(id) = id else {
            return Ok(None);
        };
        Ok(ctx
            .data::<Loaders>()?
            .tweets()
            .load_one(id)
            .await
            .gql()?
            .map(TweetNode::lazy))
    }
}

#[Object(name = "Tweet")]
impl TweetNode {
    /// The tweet's id.
    async fn id(&self) -> ID {
        ID(self.tweet.id.to_string())
    }

    /// The text (NFC-normalised).
    async fn text(&self) -> &str {
        &self.tweet.text
    }

    /// Creation time, ISO 8601 UTC.
    async fn created_at(&self) -> String {
        iso8601(self.tweet.created_at_ms)
    }

    /// Who wrote it (null with an error if the user service is unavailable).
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<UserNode>> {
        match &self.author {
            Slot::Ready(author) => Ok(author.clone()),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Lazy => Ok(ctx
                .data::<Loaders>()?
                .users()
                .load_one(self.tweet.author_id)
                .await
                .gql()?
                .map(UserNode::lazy)),
        }
    }

    /// The tweet this one replies to; null when none or since deleted.
    async fn reply_to(&self, ctx: &Context<'_>) -> Result<Option<TweetNode>> {
        Self::related(ctx, self.tweet.reply_to_tweet_id).await
    }

    /// The tweet this one quotes; null when none or since deleted.
    async fn quote_of(&self, ctx: &Context<'_>) -> Result<Option<TweetNode>> {
        Self::related(ctx, self.tweet.quote_of_tweet_id).await
    }

    /// Hashtags, lower-cased, without `#`.
    async fn hashtags(&self) -> &[String] {
        &self.tweet.hashtags
    }

    /// Mentioned usernames, lower-cased, without `@`.
    async fn mentions(&self) -> &[String] {
        &self.tweet.mentions
    }

    /// Number of likes.
    async fn like_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.like_count))
    }

    /// Number of retweets.
    async fn retweet_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.retweet_count))
    }

    /// Number of live replies.
    async fn reply_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.reply_count))
    }

    /// Number of live quotes.
    async fn quote_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.quote_count))
    }

    /// Whether the viewer likes it; null when not signed in.
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self.viewer_state(ctx).await?.map(|state| state.liked))
    }

    /// Whether the viewer retweeted it; null when not signed in.
    async fn viewer_has_retweeted(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self.viewer_state(ctx).await?.map(|state| state.retweeted))
    }
}

/// Relay page information.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    /// More items follow `endCursor`.
    pub has_next_page: bool,
    /// Always false: lists page forward only.
    pub has_previous_page: bool,
    /// Cursor of the first edge.
    pub start_cursor: Option<String>,
    /// Cursor of the last edge: pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// A tweet in a connection.
#[derive(SimpleObject, Clone)]
pub struct TweetEdge {
    /// The tweet.
    pub node: TweetNode,
    /// Opaque position just after this edge.
    pub cursor: String,
}

/// A page of tweets.
#[derive(SimpleObject, Clone)]
pub struct TweetConnection {
    /// The tweets, newest first.
    pub edges: Vec<TweetEdge>,
    /// Paging.
    pub page_info: PageInfo,
}

/// A user in a follow list.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct UserEdge {
    /// The user.
    pub node: UserNode,
    /// Opaque position just after this edge.
    pub cursor: String,
    #[graphql(skip)]
    pub followed_at_ms: i64,
}

#[ComplexObject]
impl UserEdge {
    /// When the follow happened, ISO 8601 UTC.
    async fn followed_at(&self) -> String {
        iso8601(self.followed_at_ms)
    }
}

/// A page of users.
#[derive(SimpleObject, Clone)]
pub struct UserConnection {
    /// The users.
    pub edges: Vec<UserEdge>,
    /// Paging.
    pub page_info: PageInfo,
}

/// What `signUp` and `issueToken` return.
#[derive(SimpleObject, Clone)]
pub struct AuthPayload {
    /// A bearer token for the `Authorization` header.
    pub token: String,
    /// The signed-in user.
    pub user: UserNode,
}

/// Parses an `ID` argument into a 64-bit id.
pub fn parse_id(argument: &str, id: &ID) -> Result<u64> {
    id.parse::<u64>().ok().filter(|id| *id != 0).ok_or_else(|| {
        crate::error::bad_input(argument, format!("`{}` is not a valid id", id.as_str()))
    })
}

/// The signed-in viewer, or UNAUTHENTICATED.
pub fn require_viewer(ctx: &Context<'_>) -> Result<Viewer> {
    ctx.data_opt::<Viewer>().copied().ok_or_else(|| {
        gql_error(
            ErrorCode::Unauthenticated,
            "sign in: send `Authorization: Bearer <token>`",
        )
    })
}
