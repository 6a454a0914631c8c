//! The GraphQL types. 64-bit ids travel as `ID` strings: they exceed
//! JavaScript's safe integers.
//!
//! Nodes carry whatever hydration fetched up front (`Slot::Ready`); a field
//! whose data was not prefetched falls back to the request's DataLoaders, and
//! a field whose batch failed reports that error on itself only (the field
//! is nullable), so a failing downstream degrades the smallest possible part
//! of the response.
//!
//! Resolvers that call downstream or wait on a DataLoader `.boxed()` that
//! work. async-graphql resolves each field of an object through one future
//! as large as the type's largest resolver, and allocates and copies one
//! per field per object of the response: a page of 20 tweets resolves some
//! 300 of them. Boxing the rare heavy paths keeps that future the size of
//! the common fields (`id`, `text`, a prefetched count), which a profile of
//! the gateway showed were mostly spent copying it.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, ID, Interface, Object, Result, SimpleObject};
use futures::FutureExt as _;
use warble_proto::graph::v1 as graph;
use warble_proto::tweet::v1 as tweet;

use crate::auth::Viewer;
use crate::error::{ErrorCode, StatusExt as _, gql_error};
use crate::joined::Joined;
use crate::loaders::Loaders;
use crate::media::MediaNode;
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

    /// How the viewer relates to this user; `None` when anonymous or for
    /// the viewer themself.
    async fn relation(&self, ctx: &Context<'_>) -> Result<Option<graph::Relation>> {
        let Some(viewer) = ctx.data_opt::<Viewer>() else {
            return Ok(None);
        };
        if viewer.user_id == self.user.id {
            return Ok(None);
        }
        match ctx.data::<Loaders>()?.relations() {
            Some(loader) => Ok(Some(
                loader
                    .load_one(self.user.id)
                    .boxed()
                    .await
                    .gql()?
                    .unwrap_or_default(),
            )),
            None => Ok(None),
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
                .boxed()
                .await
                .gql(),
        }
    }
}

/// A Warble account: its profile, follow counts and follow lists.
#[Object(name = "User")]
impl UserNode {
    /// The user's id: a 64-bit Snowflake id as a decimal string (too large
    /// for a JavaScript number). Unique among users and tweets alike, so
    /// `node(id:)` refetches this user.
    async fn id(&self) -> ID {
        ID(self.user.id.to_string())
    }

    /// Unique handle (1 to 15 of `[A-Za-z0-9_]`), as the user typed it.
    /// Unique ignoring case: `Alice` and `alice` are the same user.
    async fn username(&self) -> &str {
        &self.user.username
    }

    /// Display name, 1 to 50 characters.
    async fn display_name(&self) -> &str {
        &self.user.display_name
    }

    /// Profile text, at most 160 characters; empty when the user wrote none.
    async fn bio(&self) -> &str {
        &self.user.bio
    }

    /// Sign-up time, ISO 8601 UTC with milliseconds
    /// (`2024-01-01T12:34:56.789Z`).
    async fn created_at(&self) -> String {
        iso8601(self.user.created_at_ms)
    }

    /// Where the user says they are, at most 30 characters; empty when
    /// they gave none.
    async fn location(&self) -> &str {
        &self.user.location
    }

    /// The user's website, an http or https URL of at most 100 characters;
    /// null when they gave none.
    async fn website(&self) -> Option<&str> {
        Some(self.user.website.as_str()).filter(|website| !website.is_empty())
    }

    /// Whether the operator verified this account. Users cannot set it.
    async fn verified(&self) -> bool {
        self.user.verified
    }

    /// URL of the user's avatar image, sized for display (its preview,
    /// at most 400 pixels on its longest side); null when they have none or
    /// it was deleted (and, with an error in `errors`, if media are
    /// unavailable). A page's avatars load in one batch with its tweets'
    /// media.
    async fn avatar_url(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let media_id = self.user.avatar_media_id;
        if media_id == 0 {
            return Ok(None);
        }
        let avatar = ctx
            .data::<Loaders>()?
            .media()
            .load_one(media_id)
            .boxed()
            .await
            .gql()?;
        Ok(avatar.map(|media| {
            if media.preview_url.is_empty() {
                media.url
            } else {
                media.preview_url
            }
        }))
    }

    /// How many tweets the user has posted and not deleted (replies and
    /// quotes included, retweets not); null (with an error in `errors`) if
    /// the count is unavailable.
    async fn tweets_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        ctx.data::<Loaders>()?
            .tweets_count()
            .load_one(self.user.id)
            .boxed()
            .await
            .gql()
            .map(|count| Some(count.unwrap_or(0)))
    }

    /// Whether the viewer blocks this user; null when not signed in or for
    /// the viewer themself (and, with an error in `errors`, if unavailable).
    async fn viewer_blocks(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self
            .relation(ctx)
            .await?
            .map(|relation| relation.viewer_blocks))
    }

    /// Whether the viewer mutes this user now (a mute that lapsed is no
    /// mute); null when not signed in or for the viewer themself.
    async fn viewer_mutes(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self
            .relation(ctx)
            .await?
            .map(|relation| relation.viewer_mutes))
    }

    /// Whether this user blocks the viewer; null when not signed in or for
    /// the viewer themself.
    async fn blocks_viewer(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self
            .relation(ctx)
            .await?
            .map(|relation| relation.blocks_viewer))
    }

    /// Whom this user blocks, most recent block first. Only the viewer's
    /// own list can be read (`viewer { blockedUsers }`): FORBIDDEN for
    /// anyone else's, UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn blocked_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Users in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<RelatedUserConnection> {
        crate::social::relation_list(
            ctx,
            self.user.id,
            crate::social::RelationList::Blocked,
            first,
            after,
        )
        .boxed()
        .await
    }

    /// Whom this user mutes now (lapsed mutes left out), most recent mute
    /// first. Only the viewer's own list can be read (`viewer { mutedUsers
    /// }`): FORBIDDEN for anyone else's, UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn muted_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Users in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<RelatedUserConnection> {
        crate::social::relation_list(
            ctx,
            self.user.id,
            crate::social::RelationList::Muted,
            first,
            after,
        )
        .boxed()
        .await
    }

    /// The tweets this user bookmarked, most recent bookmark first; deleted
    /// tweets are left out. Private: only the viewer's own bookmarks can be
    /// read (`viewer { bookmarks }`), FORBIDDEN for anyone else's,
    /// UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn bookmarks(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Tweets in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<TweetConnection> {
        crate::social::bookmarks(ctx, self.user.id, first, after)
            .boxed()
            .await
    }

    /// How many users follow this user; null (with an error in `errors`)
    /// if the count is unavailable.
    async fn followers_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.followers_count))
    }

    /// How many users this user follows; null (with an error in `errors`)
    /// if the count is unavailable.
    async fn following_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.following_count))
    }

    /// Whether the viewer follows this user; null when not signed in or for
    /// the viewer themself (and, with an error in `errors`, if unavailable).
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
                Some(loader) => loader.load_one(self.user.id).boxed().await.gql(),
                None => Ok(None),
            },
        }
    }

    /// Who follows this user, most recent follow first, a page at a time.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn followers(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Users in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<UserConnection> {
        crate::resolvers::follow_list(
            ctx,
            self.user.id,
            crate::resolvers::FollowList::Followers,
            first,
            after,
        )
        .boxed()
        .await
    }

    /// Whom this user follows, most recent follow first, a page at a time.
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn following(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Users in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<UserConnection> {
        crate::resolvers::follow_list(
            ctx,
            self.user.id,
            crate::resolvers::FollowList::Following,
            first,
            after,
        )
        .boxed()
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
                .boxed()
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
                Some(loader) => loader.load_one(self.tweet.id).boxed().await.gql(),
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
            .boxed()
            .await
            .gql()?
            .map(TweetNode::lazy))
    }
}

/// A tweet: its text, author, the tweets it replies to or quotes, and
/// engagement counts. Deleted tweets are never returned.
#[Object(name = "Tweet")]
impl TweetNode {
    /// The tweet's id: a 64-bit Snowflake id as a decimal string (too large
    /// for a JavaScript number). Newer tweets have larger ids. Unique among
    /// tweets and users alike, so `node(id:)` refetches this tweet.
    async fn id(&self) -> ID {
        ID(self.tweet.id.to_string())
    }

    /// The text, NFC-normalised: 1 to 280 Unicode scalar values (code
    /// points, not UTF-16 units).
    async fn text(&self) -> &str {
        &self.tweet.text
    }

    /// Creation time, ISO 8601 UTC with milliseconds
    /// (`2024-01-01T12:34:56.789Z`).
    async fn created_at(&self) -> String {
        iso8601(self.tweet.created_at_ms)
    }

    /// Who wrote it; null when the account no longer exists, or (with an
    /// error in `errors`) if the user service is unavailable.
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<Joined<UserNode>>> {
        let author = match &self.author {
            Slot::Ready(author) => Ok(author.clone()),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Lazy => Ok(ctx
                .data::<Loaders>()?
                .users()
                .load_one(self.tweet.author_id)
                .boxed()
                .await
                .gql()?
                .map(UserNode::lazy)),
        };
        Ok(author?.map(Joined))
    }

    /// The tweet this one replies to; null when none or since deleted.
    async fn reply_to(&self, ctx: &Context<'_>) -> Result<Option<TweetNode>> {
        Self::related(ctx, self.tweet.reply_to_tweet_id)
            .boxed()
            .await
    }

    /// The tweet this one quotes; null when none or since deleted.
    async fn quote_of(&self, ctx: &Context<'_>) -> Result<Option<TweetNode>> {
        Self::related(ctx, self.tweet.quote_of_tweet_id)
            .boxed()
            .await
    }

    /// Hashtags in the text, lower-cased, without `#`, in order of first
    /// appearance, each once; empty when there are none.
    async fn hashtags(&self) -> &[String] {
        &self.tweet.hashtags
    }

    /// Usernames mentioned in the text, lower-cased, without `@`, in order
    /// of first appearance, each once; empty when there are none.
    async fn mentions(&self) -> &[String] {
        &self.tweet.mentions
    }

    /// The images (up to 4) or the video attached, in the order they were
    /// given; empty when none. An item since deleted is left out. Null
    /// (with an error in `errors`) if media are unavailable, so the rest of
    /// the tweet still shows. A page's media load in one batch with its
    /// users' avatars; a tweet without media costs nothing.
    async fn media(&self, ctx: &Context<'_>) -> Result<Option<Vec<MediaNode>>> {
        let ids = &self.tweet.media_ids;
        if ids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut found = ctx
            .data::<Loaders>()?
            .media()
            .load_many(ids.iter().copied())
            .await
            .gql()?;
        Ok(Some(
            ids.iter()
                .filter_map(|id| found.remove(id))
                .map(MediaNode::new)
                .collect(),
        ))
    }

    /// The mentioned users that exist, in the order of `mentions` (a
    /// mention of a username nobody has is left out). Loaded for a whole
    /// page in one batch.
    async fn mentioned_users(&self, ctx: &Context<'_>) -> Result<Vec<UserNode>> {
        if self.tweet.mentions.is_empty() {
            return Ok(Vec::new());
        }
        let usernames: Vec<String> = self
            .tweet
            .mentions
            .iter()
            .map(|mention| mention.to_ascii_lowercase())
            .collect();
        let mut found = ctx
            .data::<Loaders>()?
            .users_by_username()
            .load_many(usernames.iter().cloned())
            .await
            .gql()?;
        Ok(usernames
            .iter()
            .filter_map(|username| found.remove(username))
            .map(UserNode::lazy)
            .collect())
    }

    /// The direct replies to this tweet, oldest first, a page at a time.
    /// Deleted replies, and replies by users the viewer blocks, mutes or is
    /// blocked by, are left out (so a page may hold fewer than `first`).
    #[graphql(complexity = "crate::paging::list_cost(first, child_complexity)")]
    async fn replies(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Replies in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<TweetConnection> {
        crate::social::replies(ctx, self.tweet.id, first, after)
            .boxed()
            .await
    }

    /// The chain of tweets this one replies to, up to the thread's root,
    /// root first, ending with the tweet replied to: at most `last` of
    /// them, the nearest kept. Deleted tweets, and tweets by users the
    /// viewer blocks, mutes or is blocked by, are left out. Empty for a
    /// tweet that replies to none.
    #[graphql(complexity = "crate::paging::list_cost(last, child_complexity)")]
    async fn ancestors(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Most ancestors to return, 0 to 80; default 80. Outside 0 to 80: BAD_USER_INPUT."
        )]
        last: Option<i32>,
    ) -> Result<Vec<TweetNode>> {
        crate::social::ancestors(ctx, &self.tweet, last)
            .boxed()
            .await
    }

    /// How many users like it; null (with an error in `errors`)
    /// if counts are unavailable.
    async fn like_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.like_count))
    }

    /// How many users retweeted it; null (with an error in `errors`)
    /// if counts are unavailable.
    async fn retweet_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.retweet_count))
    }

    /// How many replies to it are not deleted; null (with an error in `errors`)
    /// if counts are unavailable.
    async fn reply_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.reply_count))
    }

    /// How many quotes of it are not deleted; null (with an error in `errors`)
    /// if counts are unavailable.
    async fn quote_count(&self, ctx: &Context<'_>) -> Result<Option<u64>> {
        Ok(self.counts(ctx).await?.map(|counts| counts.quote_count))
    }

    /// Whether the viewer likes it; null when not signed in (and, with an
    /// error in `errors`, if unavailable).
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self.viewer_state(ctx).await?.map(|state| state.liked))
    }

    /// Whether the viewer retweeted it; null when not signed in (and, with
    /// an error in `errors`, if unavailable).
    async fn viewer_has_retweeted(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self.viewer_state(ctx).await?.map(|state| state.retweeted))
    }

    /// Whether the viewer bookmarked it; null when not signed in (and,
    /// with an error in `errors`, if unavailable).
    async fn viewer_has_bookmarked(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        Ok(self.viewer_state(ctx).await?.map(|state| state.bookmarked))
    }
}

/// An object a client can refetch by its id alone, with `node(id:)` or
/// `nodes(ids:)` (Relay Global Object Identification): a `Tweet` or a
/// `User`. Ids are unique across both types.
#[derive(Interface, Clone)]
#[graphql(
    name = "Node",
    field(
        name = "id",
        ty = "ID",
        desc = "The object's id: a 64-bit Snowflake id as a decimal string, unique among tweets and users alike. Pass it to `node(id:)` to refetch the object."
    )
)]
pub enum Node {
    /// A tweet.
    Tweet(TweetNode),
    /// A user.
    User(UserNode),
}

/// Relay page information: where a page starts and ends, and whether more
/// follow. Lists page forward only, with `first` and `after`.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    /// True when more items follow `endCursor`: pass it as `after` to get
    /// them. Always false for a `first: 0` page.
    pub has_next_page: bool,
    /// Always false: lists page forward only.
    pub has_previous_page: bool,
    /// Cursor of the first edge; null when the page is empty.
    pub start_cursor: Option<String>,
    /// Cursor of the last edge: pass it as `after` for the next page. Null
    /// only when the page is empty and nothing follows.
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// The page info of a page whose edges' cursors run from `start` to
    /// `end` (`None` for an empty page), given the list's next-page cursor
    /// (empty at the end). An empty page that is not the last ends at the
    /// next-page cursor, so a client can always continue from `endCursor`.
    pub fn of_page(start: Option<String>, end: Option<String>, next_cursor: String) -> Self {
        let has_next_page = !next_cursor.is_empty();
        Self {
            has_next_page,
            has_previous_page: false,
            start_cursor: start,
            end_cursor: end.or(has_next_page.then_some(next_cursor)),
        }
    }
}

/// A tweet in a page of tweets, with its cursor, and who retweeted it when
/// it is in the list as a retweet.
#[derive(SimpleObject, Clone)]
pub struct TweetEdge {
    /// The tweet.
    pub node: Joined<TweetNode>,
    /// Opaque position just after this tweet: pass it as `after` to
    /// continue from here.
    pub cursor: String,
    /// Who retweeted the tweet, when this edge is their retweet (it sits
    /// at the retweet's time); null for the tweet's own entry, or when the
    /// retweeter's account no longer exists.
    pub retweeted_by: Option<Joined<UserNode>>,
}

/// A user in a block or mute list, with since when, and for a mute until when.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct RelatedUserEdge {
    /// The blocked or muted user.
    pub node: UserNode,
    /// Opaque position just after this user: pass it as `after` to continue
    /// from here.
    pub cursor: String,
    #[graphql(skip)]
    pub since_ms: i64,
    #[graphql(skip)]
    pub expires_at_ms: i64,
    /// For a mute: their notifications are hidden too. Always false in a
    /// block list.
    pub hide_notifications: bool,
}

#[ComplexObject]
impl RelatedUserEdge {
    /// When the block or mute was made, ISO 8601 UTC with milliseconds
    /// (`2024-01-01T12:34:56.789Z`).
    async fn since(&self) -> String {
        iso8601(self.since_ms)
    }

    /// When the mute lapses, ISO 8601 UTC with milliseconds; null for a
    /// mute until unmuted, and in a block list.
    async fn expires_at(&self) -> Option<String> {
        (self.expires_at_ms != 0).then(|| iso8601(self.expires_at_ms))
    }
}

/// A page of blocked or muted users (a Relay connection), most recent first.
#[derive(SimpleObject, Clone)]
pub struct RelatedUserConnection {
    /// The users, most recent block or mute first. A user who could not be
    /// loaded is left out, so a page may hold fewer than `first` even when
    /// more follow.
    pub edges: Vec<RelatedUserEdge>,
    /// Where this page ends and whether more follow.
    pub page_info: PageInfo,
}

/// A page of tweets (a Relay connection), newest first.
#[derive(SimpleObject, Clone)]
pub struct TweetConnection {
    /// The tweets, newest first. A tweet deleted while the page was read is
    /// left out, so a page may hold fewer than `first` even when more follow.
    pub edges: Vec<Joined<TweetEdge>>,
    /// Where this page ends and whether more follow.
    pub page_info: PageInfo,
}

/// A user in a follow list, with when the follow happened and its cursor.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct UserEdge {
    /// The user: the follower in `followers`, the followed user in
    /// `following`.
    pub node: UserNode,
    /// Opaque position just after this user: pass it as `after` to continue
    /// from here.
    pub cursor: String,
    #[graphql(skip)]
    pub followed_at_ms: i64,
}

#[ComplexObject]
impl UserEdge {
    /// When the follow happened, ISO 8601 UTC with milliseconds
    /// (`2024-01-01T12:34:56.789Z`).
    async fn followed_at(&self) -> String {
        iso8601(self.followed_at_ms)
    }
}

/// A page of users (a Relay connection), most recent follow first.
#[derive(SimpleObject, Clone)]
pub struct UserConnection {
    /// The users, most recent follow first. A user who could not be loaded
    /// is left out, so a page may hold fewer than `first` even when more
    /// follow.
    pub edges: Vec<UserEdge>,
    /// Where this page ends and whether more follow.
    pub page_info: PageInfo,
}

/// What `signUp` and `issueToken` return: a token and the user it signs in.
#[derive(SimpleObject, Clone)]
pub struct AuthPayload {
    /// A bearer token (a JWT): send it as `Authorization: Bearer <token>`,
    /// or in the WebSocket `connection_init` payload. It expires (its `exp`
    /// claim); then issue a new one.
    pub token: String,
    /// The user the token signs in.
    pub user: UserNode,
}

/// Parses an `ID` argument into a 64-bit id.
pub fn parse_id(argument: &str, id: &ID) -> Result<u64> {
    id.parse::<u64>().ok().filter(|id| *id != 0).ok_or_else(|| {
        crate::error::bad_input(argument, format!("`{}` is not a valid id", id.as_str()))
    })
}

/// The signed-in viewer; UNAUTHENTICATED without a token, UNREGISTERED
/// for an identity that has not registered.
pub fn require_viewer(ctx: &Context<'_>) -> Result<Viewer> {
    ctx.data_opt::<Viewer>().copied().ok_or_else(|| {
        // A token naming an identity that has not registered yet.
        if ctx.data_opt::<crate::auth::Identity>().is_some() {
            return crate::auth::identities::register_first();
        }
        gql_error(
            ErrorCode::Unauthenticated,
            "sign in: send `Authorization: Bearer <token>`",
        )
    })
}
