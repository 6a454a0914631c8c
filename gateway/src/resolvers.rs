//! Query, mutation and subscription roots.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::{Context, ID, MergedObject, Object, Result, Subscription};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use warble_proto::common::v1::{PageRequest, TimelineEntry};
use warble_proto::graph::v1 as graph;
use warble_proto::timeline::v1 as timeline;
use warble_proto::tweet::v1 as tweet;

use crate::auth::{Authenticator, Viewer};
use crate::downstream::{Downstream, DownstreamChannel};
use crate::error::{ErrorCode, StatusExt as _, bad_input, gql_error};
use crate::feed::{FeedEvent, LiveFeed};
use crate::hydrate::{self, TweetWants, UserWants};
use crate::joined::Joined;
use crate::model::{
    AuthPayload, Node, PageInfo, TweetConnection, TweetEdge, TweetNode, UserConnection, UserEdge,
    UserNode, parse_id, require_viewer,
};
use crate::paging;
use crate::rate_limit::{Decision, Rate, RateLimiter};
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

/// Everything resolvers share (schema-level data).
pub struct GatewayState {
    /// Downstream clients.
    pub downstream: Downstream,
    /// Token verification and dev-mode issuance.
    pub auth: Authenticator,
    /// Rate-limit buckets (in memory, or shared through Redis).
    pub limiter: RateLimiter,
    /// Mutations per user (sign-ups and tokens per client address).
    pub mutation_rate: Rate,
    /// The live feed, when the gateway tails an event log.
    pub feed: Option<LiveFeed>,
}

/// The caller's network address, for rate-limiting anonymous mutations.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

pub(crate) fn state<'a>(ctx: &'a Context<'_>) -> Result<&'a Arc<GatewayState>> {
    ctx.data::<Arc<GatewayState>>()
}

pub(crate) fn viewer(ctx: &Context<'_>) -> Option<Viewer> {
    ctx.data_opt::<Viewer>().copied()
}

/// The viewer, after taking a mutation from their bucket.
pub(crate) async fn mutating_viewer(ctx: &Context<'_>) -> Result<Viewer> {
    let viewer = require_viewer(ctx)?;
    rate_limit(ctx, &format!("mutation:user:{}", viewer.user_id)).await?;
    Ok(viewer)
}

/// Takes one mutation from `key`'s bucket, or refuses with `RATE_LIMITED`
/// and `retryAfter` (seconds).
async fn rate_limit(ctx: &Context<'_>, key: &str) -> Result<()> {
    let state = state(ctx)?;
    match state.limiter.acquire(key, state.mutation_rate).await {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after } => Err(crate::error::rate_limited(
            "too many changes; slow down and retry shortly",
            retry_after,
        )),
    }
}

/// [`rate_limit`] for a mutation made before anyone is signed in
/// (`signUp`, `issueToken`, `register`): one bucket per client address.
async fn rate_limit_by_address(ctx: &Context<'_>) -> Result<()> {
    let client = ctx
        .data_opt::<ClientAddr>()
        .map_or("unknown", |addr| addr.0.as_str());
    rate_limit(ctx, &format!("mutation:addr:{client}")).await
}

pub(crate) async fn user_node(ctx: &Context<'_>, user_id: u64) -> Result<Option<UserNode>> {
    let state = state(ctx)?;
    let wants = UserWants::of(ctx.look_ahead());
    let mut users = hydrate::users(&state.downstream, viewer(ctx), &[user_id], wants).await?;
    Ok(users.remove(&user_id))
}

pub(crate) async fn tweet_node(
    ctx: &Context<'_>,
    tweet_id: u64,
    wants: TweetWants,
) -> Result<Option<TweetNode>> {
    let state = state(ctx)?;
    let mut nodes = hydrate::tweets(&state.downstream, viewer(ctx), &[tweet_id], wants).await?;
    Ok(nodes.pop().flatten())
}

/// Objects by id alone (Relay's `node` and `nodes`), in order, hydrated in
/// one batch per service whatever their number: see [`hydrate::nodes`].
async fn nodes_by_id(ctx: &Context<'_>, ids: &[u64]) -> Result<Vec<Option<Result<Node>>>> {
    let state = state(ctx)?;
    // The selection's `... on Tweet` and `... on User` parts, read together.
    hydrate::nodes(
        &state.downstream,
        viewer(ctx),
        ids,
        TweetWants::of(ctx.look_ahead()),
        UserWants::of(ctx.look_ahead()),
    )
    .await
}

/// Most ids one `nodes` takes: a page's worth, [`paging::MAX_FIRST`].
pub const MAX_NODE_IDS: usize = paging::MAX_FIRST as usize;
// `nodes` sends every id to GetTweets at once, then the ids that are not
// tweets and the tweets' authors (up to twice as many) to GetUsers,
// GetFollowCounts and IsFollowing at once.
const _: () = assert!(MAX_NODE_IDS <= warble_proto::limits::tweet::MAX_BATCH);
const _: () = assert!(2 * MAX_NODE_IDS <= warble_proto::limits::graph::MAX_BATCH);

/// The complexity of `nodes`: priced like a page ([`paging::list_cost`])
/// of as many items as `ids` has, so more ids than [`MAX_NODE_IDS`] (which
/// execution refuses) cost as much as the largest page.
fn nodes_cost(ids: &[ID], child_complexity: usize) -> usize {
    let count = i32::try_from(ids.len()).unwrap_or(i32::MAX);
    paging::list_cost(Some(count), child_complexity)
}

/// A connection over timeline entries, hydrated in one batch: the tweets,
/// then their authors and, when the selection asks for `retweetedBy`, the
/// page's retweeters, in one GetUsers.
pub(crate) async fn tweet_connection(
    ctx: &Context<'_>,
    entries: Vec<TimelineEntry>,
    next_cursor: String,
) -> Result<TweetConnection> {
    let state = state(ctx)?;
    let edges_selection = ctx.look_ahead().field("edges");
    let wants = TweetWants::of(edges_selection.field("node"));
    let retweeter_selection = edges_selection.field("retweetedBy");
    let mut retweeters: Vec<u64> = entries
        .iter()
        .map(|entry| entry.retweeted_by)
        .filter(|&user| user != 0)
        .collect();
    retweeters.sort_unstable();
    retweeters.dedup();
    let ids: Vec<u64> = entries.iter().map(|entry| entry.tweet_id).collect();
    let authors: Vec<u64> = entries.iter().map(|entry| entry.author_id).collect();
    let retweeter_wants = retweeter_selection
        .exists()
        .then(|| UserWants::of(retweeter_selection));
    // The retweeters ride in the authors' GetUsers call.
    let (nodes, retweeters) = hydrate::tweets_and_users(
        &state.downstream,
        viewer(ctx),
        &ids,
        &authors,
        wants,
        &retweeters,
        retweeter_wants,
    )
    .await?;
    let retweeters = retweeters.transpose()?.unwrap_or_default();
    // A tweet deleted after the timeline was read drops out of the page.
    let edges: Vec<Joined<TweetEdge>> = entries
        .into_iter()
        .zip(nodes)
        .filter_map(|(entry, node)| {
            node.map(|node| {
                Joined(TweetEdge {
                    node: Joined(node),
                    cursor: entry.cursor,
                    retweeted_by: retweeters.get(&entry.retweeted_by).cloned().map(Joined),
                })
            })
        })
        .collect();
    Ok(TweetConnection {
        page_info: PageInfo::of_page(
            edges.first().map(|edge| edge.0.cursor.clone()),
            edges.last().map(|edge| edge.0.cursor.clone()),
            next_cursor,
        ),
        edges,
    })
}

pub(crate) fn empty_tweet_connection() -> TweetConnection {
    TweetConnection {
        edges: Vec::new(),
        page_info: PageInfo::default(),
    }
}

/// Which follow list to page.
#[derive(Debug, Clone, Copy)]
pub enum FollowList {
    /// Who follows the user.
    Followers,
    /// Whom the user follows.
    Following,
}

/// One page of a follow list, hydrated in one batch.
pub async fn follow_list(
    ctx: &Context<'_>,
    user_id: u64,
    list: FollowList,
    first: Option<i32>,
    after: Option<String>,
) -> Result<UserConnection> {
    let first = paging::first(first)?;
    let cursor = paging::after(after)?;
    if first == 0 {
        return Ok(UserConnection {
            edges: Vec::new(),
            page_info: PageInfo::default(),
        });
    }
    let state = state(ctx)?;
    let page = Some(PageRequest {
        cursor,
        limit: first,
    });
    let (edges, next_cursor) = match list {
        FollowList::Followers => {
            let response = state
                .downstream
                .graph
                .clone()
                .list_followers(graph::ListFollowersRequest { user_id, page })
                .await
                .gql()?
                .into_inner();
            (
                response.followers,
                response.page.unwrap_or_default().next_cursor,
            )
        }
        FollowList::Following => {
            let response = state
                .downstream
                .graph
                .clone()
                .list_following(graph::ListFollowingRequest {
                    user_id,
                    page,
                    min_followers: 0,
                })
                .await
                .gql()?
                .into_inner();
            (
                response.following,
                response.page.unwrap_or_default().next_cursor,
            )
        }
    };
    let ids: Vec<u64> = edges.iter().map(|edge| edge.user_id).collect();
    let wants = UserWants::of(ctx.look_ahead().field("edges").field("node"));
    let users = hydrate::users(&state.downstream, viewer(ctx), &ids, wants).await?;
    let edges: Vec<UserEdge> = edges
        .into_iter()
        .filter_map(|edge| {
            users.get(&edge.user_id).map(|node| UserEdge {
                node: node.clone(),
                cursor: edge.cursor,
                followed_at_ms: edge.followed_at_ms,
            })
        })
        .collect();
    Ok(UserConnection {
        page_info: PageInfo::of_page(
            edges.first().map(|edge| edge.cursor.clone()),
            edges.last().map(|edge| edge.cursor.clone()),
            next_cursor,
        ),
        edges,
    })
}

/// Reads. Everything can be read without signing in except `homeTimeline`
/// and the viewer's notifications (`notifications`,
/// `filteredNotifications`, `unreadNotificationsCount`,
/// `unreadNotificationsCapped`, `notificationSettings`); fields about the
/// viewer (`viewer`, `viewerFollows`, `viewerHasLiked`,
/// `viewerHasRetweeted`) are null then. Send the token as
/// `Authorization: Bearer <token>`.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    CoreQueries,
    crate::notifications::NotificationQueries,
    crate::search::SearchQueries,
);

/// Users, tweets and timelines. Part of the `Query` type.
#[derive(Default)]
pub struct CoreQueries;

#[Object]
impl CoreQueries {
    /// The signed-in user; null when not signed in.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Option<UserNode>> {
        match viewer(ctx) {
            Some(viewer) => user_node(ctx, viewer.user_id).await,
            None => Ok(None),
        }
    }

    /// A user by id or by username: give exactly one (BAD_USER_INPUT
    /// otherwise). NOT_FOUND when there is no such user.
    #[graphql(complexity = "paging::CALL_COST.saturating_add(child_complexity)")]
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The user's id (a `User.id`); give this or `username`, not both. A malformed id is BAD_USER_INPUT."
        )]
        id: Option<ID>,
        #[graphql(desc = "The user's handle, matched ignoring case; give this or `id`, not both.")]
        username: Option<String>,
    ) -> Result<Option<UserNode>> {
        let user_id = match (id, username) {
            (Some(id), None) => parse_id("id", &id)?,
            (None, Some(username)) => {
                let state = state(ctx)?;
                state
                    .downstream
                    .graph
                    .clone()
                    .get_user_by_username(graph::GetUserByUsernameRequest { username })
                    .await
                    .gql()?
                    .into_inner()
                    .user
                    .map(|user| user.id)
                    .unwrap_or_default()
            }
            _ => return Err(bad_input("id", "give exactly one of `id` and `username`")),
        };
        match user_node(ctx, user_id).await? {
            Some(user) => Ok(Some(user)),
            None => Err(gql_error(
                ErrorCode::NotFound,
                format!("no user with id {user_id}"),
            )),
        }
    }

    /// A tweet by id. NOT_FOUND when it does not exist or was deleted.
    async fn tweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to fetch (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<Option<TweetNode>> {
        let tweet_id = parse_id("id", &id)?;
        match tweet_node(ctx, tweet_id, TweetWants::of(ctx.look_ahead())).await? {
            Some(tweet) => Ok(Some(tweet)),
            None => Err(gql_error(
                ErrorCode::NotFound,
                format!("no tweet with id {tweet_id}"),
            )),
        }
    }

    /// Any object by its id, whatever its type (Relay Global Object
    /// Identification): a `Tweet` or a `User`, refetched with the fields
    /// asked for under `... on Tweet` / `... on User`. NOT_FOUND when no
    /// tweet or user has that id (or the tweet was deleted).
    #[graphql(complexity = "paging::CALL_COST.saturating_add(child_complexity)")]
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the object to fetch: any `Node.id` (a `Tweet.id` or a `User.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<Option<Node>> {
        let node_id = parse_id("id", &id)?;
        match nodes_by_id(ctx, &[node_id]).await?.pop().flatten() {
            Some(node) => node.map(Some),
            None => Err(gql_error(
                ErrorCode::NotFound,
                format!("no tweet or user with id {node_id}"),
            )),
        }
    }

    /// Objects by their ids, whatever their types, in the order of `ids`
    /// (an id given twice is listed twice): the batch form of `node`,
    /// costing the same downstream calls however many ids it is given. An
    /// id that names no tweet or user (or a deleted tweet) is null there;
    /// so is one the user service could not look up, with an error in
    /// `errors` at its index.
    #[graphql(complexity = "nodes_cost(&ids, child_complexity)")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Ids of the objects to fetch, 0 to 100 of them: any `Node.id`s (`Tweet.id`s and `User.id`s, mixed). More than 100, or a malformed one, is BAD_USER_INPUT."
        )]
        ids: Vec<ID>,
    ) -> Result<Vec<Option<Result<Node>>>> {
        if ids.len() > MAX_NODE_IDS {
            return Err(bad_input(
                "ids",
                format!("at most {MAX_NODE_IDS} ids, got {}", ids.len()),
            ));
        }
        let node_ids = ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                parse_id("ids", id).map_err(|_| {
                    bad_input(
                        "ids",
                        format!("ids[{index}]: `{}` is not a valid id", id.as_str()),
                    )
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        nodes_by_id(ctx, &node_ids).await
    }

    /// The signed-in user's home timeline, newest first: their own tweets,
    /// and the tweets and retweets of everyone they follow (a retweet sits
    /// at its retweet's time, its edge's `retweetedBy` says who). A tweet
    /// appears at most once per page, and a retweet of a tweet shown just
    /// before is left out. Nothing by a user the viewer blocks, mutes or is
    /// blocked by appears, so a page may hold fewer than `first` even when
    /// more follow. Paging never repeats or skips an entry, even while new
    /// ones arrive. UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn home_timeline(
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
        let viewer = require_viewer(ctx)?;
        let first = paging::first(first)?;
        let cursor = paging::after(after)?;
        if first == 0 {
            return Ok(empty_tweet_connection());
        }
        let response = state(ctx)?
            .downstream
            .timeline
            .clone()
            .get_home_timeline(timeline::GetHomeTimelineRequest {
                user_id: viewer.user_id,
                page: Some(PageRequest {
                    cursor,
                    limit: first,
                }),
            })
            .await
            .gql()?
            .into_inner();
        tweet_connection(
            ctx,
            response.entries,
            response.page.unwrap_or_default().next_cursor,
        )
        .await
    }

    /// One user's tweets and retweets, newest first (a retweet at its
    /// retweet's time, its edge's `retweetedBy` set). Empty when the user
    /// and the viewer block each other; retweets of users the viewer blocks
    /// or is blocked by are left out. NOT_FOUND when no user has that
    /// username.
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn user_timeline(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Whose tweets: a username (`User.username`), matched ignoring case. NOT_FOUND when no user has it."
        )]
        username: String,
        #[graphql(
            desc = "Tweets in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor` (or an edge's `cursor`). Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
    ) -> Result<TweetConnection> {
        let first = paging::first(first)?;
        let cursor = paging::after(after)?;
        // An empty page needs nothing from downstream, not even the user.
        if first == 0 {
            return Ok(empty_tweet_connection());
        }
        let state = state(ctx)?;
        let user = state
            .downstream
            .graph
            .clone()
            .get_user_by_username(graph::GetUserByUsernameRequest { username })
            .await
            .gql()?
            .into_inner()
            .user
            .unwrap_or_default();
        let response = state
            .downstream
            .timeline
            .clone()
            .get_user_timeline(timeline::GetUserTimelineRequest {
                user_id: user.id,
                page: Some(PageRequest {
                    cursor,
                    limit: first,
                }),
                viewer_id: viewer(ctx).map_or(0, |viewer| viewer.user_id),
            })
            .await
            .gql()?
            .into_inner();
        tweet_connection(
            ctx,
            response.entries,
            response.page.unwrap_or_default().next_cursor,
        )
        .await
    }
}

/// Writes. Every mutation acts as the signed-in viewer (UNAUTHENTICATED
/// when not signed in), except the development-only `signUp` and
/// `issueToken`, and `register`, which acts as the identity provider's
/// account the token names. Each counts against a per-user rate limit (per
/// client address for `signUp`, `issueToken` and `register`): RATE_LIMITED
/// when it is used up; retry after a short wait.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    TweetAndFollowMutations,
    crate::social::SocialMutations,
    crate::notifications::NotificationMutations,
    crate::media::MediaMutations,
);

/// Tweets, engagement, follows and sign-up. Part of the `Mutation` type.
#[derive(Default)]
pub struct TweetAndFollowMutations;

/// Whether an engagement needs the viewer and the tweet's author not to
/// block each other: adding one does, removing one never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engagement {
    Add,
    Remove,
}

/// A like/retweet-style mutation: the viewer (rate-limited) acts on the
/// tweet `id` through `call`, then the tweet comes back with fresh counts.
async fn engage<F, Fut>(
    ctx: &Context<'_>,
    id: &ID,
    engagement: Engagement,
    call: F,
) -> Result<TweetNode>
where
    F: FnOnce(TweetServiceClient<DownstreamChannel>, u64, u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let viewer = mutating_viewer(ctx).await?;
    let tweet_id = parse_id("id", id)?;
    if engagement == Engagement::Add {
        crate::social::ensure_can_interact(ctx, viewer, &[tweet_id]).await?;
    }
    call(
        state(ctx)?.downstream.tweets.clone(),
        viewer.user_id,
        tweet_id,
    )
    .await
    .gql()?;
    tweet_node(ctx, tweet_id, TweetWants::of(ctx.look_ahead()))
        .await?
        .ok_or_else(|| gql_error(ErrorCode::NotFound, format!("no tweet with id {tweet_id}")))
}

#[Object]
impl TweetAndFollowMutations {
    /// Posts a tweet as the viewer and returns it. Retrying with the same
    /// `idempotencyKey` returns the original tweet instead of posting twice.
    /// BAD_USER_INPUT when the text breaks its rule or the key was used for
    /// different content (or for a tweet since deleted), or when a media id
    /// cannot be attached (naming it and why); NOT_FOUND when `replyTo` or
    /// `quoteOf` names a tweet that does not exist or was deleted;
    /// FORBIDDEN when the viewer and that tweet's author block each other
    /// (either way).
    async fn post_tweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The text: 1 to 280 Unicode scalar values (code points, not UTF-16 units) after NFC normalisation, not only whitespace. Its `#hashtags` and `@mentions` become the tweet's `hashtags` and `mentions`."
        )]
        text: String,
        #[graphql(
            desc = "Id of the tweet this one replies to (a `Tweet.id`); omit for a tweet that replies to none. A malformed id is BAD_USER_INPUT."
        )]
        reply_to: Option<ID>,
        #[graphql(
            desc = "Id of the tweet this one quotes (a `Tweet.id`); omit for a tweet that quotes none. A malformed id is BAD_USER_INPUT."
        )]
        quote_of: Option<ID>,
        #[graphql(
            desc = "A key the client chooses per tweet (e.g. a UUID), at most 128 bytes, scoped to the viewer: a retry with the same key and content returns the original tweet instead of posting again. Omit (or empty) to post without one."
        )]
        idempotency_key: Option<String>,
        #[graphql(
            desc = "Media to attach, in the order to show them: ids from `uploadMedia` (`Media.id`) of the viewer's own media not attached to another tweet, at most 4 images or 1 video. Omit (or empty) for none. More than 4, a malformed id or one given twice is BAD_USER_INPUT before anything is posted."
        )]
        media_ids: Option<Vec<ID>>,
    ) -> Result<TweetNode> {
        let media_ids = crate::media::parse_media_ids(media_ids.as_deref().unwrap_or_default())?;
        let viewer = mutating_viewer(ctx).await?;
        let request = tweet::CreateTweetRequest {
            author_id: viewer.user_id,
            text,
            reply_to_tweet_id: reply_to
                .as_ref()
                .map(|id| parse_id("replyTo", id))
                .transpose()?,
            quote_of_tweet_id: quote_of
                .as_ref()
                .map(|id| parse_id("quoteOf", id))
                .transpose()?,
            media_ids,
            idempotency_key: idempotency_key.unwrap_or_default(),
        };
        let targets: Vec<u64> = request
            .reply_to_tweet_id
            .into_iter()
            .chain(request.quote_of_tweet_id)
            .collect();
        crate::social::ensure_can_interact(ctx, viewer, &targets).await?;
        let downstream = &state(ctx)?.downstream;
        // The media are reserved first, so two posts cannot attach the
        // same media; the tweet's TweetCreated event then attaches them.
        let claim_key = if request.media_ids.is_empty() {
            None
        } else {
            let claim_key = crate::media::claim_key(&request.idempotency_key)?;
            crate::media::claim(downstream, viewer.user_id, &request.media_ids, &claim_key).await?;
            Some(claim_key)
        };
        let media_ids = request.media_ids.clone();
        let created = match downstream.tweets.clone().create_tweet(request).await {
            Ok(response) => response.into_inner().tweet,
            Err(status) => {
                if let Some(claim_key) = &claim_key {
                    crate::media::release_after(
                        downstream,
                        &status,
                        viewer.user_id,
                        &media_ids,
                        claim_key,
                    )
                    .await;
                }
                return Err(crate::error::from_status(status));
            }
        };
        let created =
            created.ok_or_else(|| gql_error(ErrorCode::Internal, "tweet-svc returned no tweet"))?;
        Ok(TweetNode::lazy(created))
    }

    /// Deletes one of the viewer's tweets (FORBIDDEN for anyone else's).
    /// True when it was deleted now, false when it already was. NOT_FOUND
    /// when no tweet has that id.
    async fn delete_tweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to delete (a `Tweet.id`); it must be the viewer's own. A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<bool> {
        let viewer = mutating_viewer(ctx).await?;
        let tweet_id = parse_id("id", &id)?;
        Ok(state(ctx)?
            .downstream
            .tweets
            .clone()
            .delete_tweet(tweet::DeleteTweetRequest {
                tweet_id,
                requester_id: viewer.user_id,
            })
            .await
            .gql()?
            .into_inner()
            .deleted)
    }

    /// Likes a tweet as the viewer (idempotent: liking twice changes
    /// nothing); returns it with fresh counts. NOT_FOUND when the tweet
    /// does not exist or was deleted; FORBIDDEN when the viewer and its
    /// author block each other (either way).
    async fn like_tweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to like (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<TweetNode> {
        engage(
            ctx,
            &id,
            Engagement::Add,
            |mut tweets, user_id, tweet_id| async move {
                tweets
                    .like_tweet(tweet::LikeTweetRequest { user_id, tweet_id })
                    .await
                    .map(drop)
            },
        )
        .await
    }

    /// Removes the viewer's like (idempotent: nothing changes when there
    /// is none); returns the tweet with fresh counts. NOT_FOUND when the
    /// tweet does not exist or was deleted.
    async fn unlike_tweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to unlike (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<TweetNode> {
        engage(
            ctx,
            &id,
            Engagement::Remove,
            |mut tweets, user_id, tweet_id| async move {
                tweets
                    .unlike_tweet(tweet::UnlikeTweetRequest { user_id, tweet_id })
                    .await
                    .map(drop)
            },
        )
        .await
    }

    /// Retweets a tweet as the viewer (idempotent: retweeting twice
    /// changes nothing); returns it with fresh counts. The retweet enters
    /// the home timelines of the viewer's followers at its own time, marked
    /// with `retweetedBy`. NOT_FOUND when the tweet does not exist or was
    /// deleted; FORBIDDEN when the viewer and its author block each other
    /// (either way).
    async fn retweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to retweet (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<TweetNode> {
        engage(
            ctx,
            &id,
            Engagement::Add,
            |mut tweets, user_id, tweet_id| async move {
                tweets
                    .retweet(tweet::RetweetRequest { user_id, tweet_id })
                    .await
                    .map(drop)
            },
        )
        .await
    }

    /// Removes the viewer's retweet (idempotent: nothing changes when
    /// there is none); returns the tweet with fresh counts. NOT_FOUND when
    /// the tweet does not exist or was deleted.
    async fn undo_retweet(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to undo the retweet of (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<TweetNode> {
        engage(
            ctx,
            &id,
            Engagement::Remove,
            |mut tweets, user_id, tweet_id| async move {
                tweets
                    .undo_retweet(tweet::UndoRetweetRequest { user_id, tweet_id })
                    .await
                    .map(drop)
            },
        )
        .await
    }

    /// Makes the viewer follow a user (idempotent: following twice
    /// changes nothing); returns that user with fresh counts. NOT_FOUND when
    /// no user has that id; FORBIDDEN when either of the two blocks the
    /// other.
    async fn follow(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the user to follow (a `User.id`). The viewer's own id, or a malformed one, is BAD_USER_INPUT."
        )]
        user_id: ID,
    ) -> Result<UserNode> {
        let viewer = mutating_viewer(ctx).await?;
        let followee_id = parse_id("userId", &user_id)?;
        let request = graph::FollowRequest {
            follower_id: viewer.user_id,
            followee_id,
        };
        state(ctx)?
            .downstream
            .graph
            .clone()
            .follow(request)
            .await
            .gql()?;
        user_node(ctx, followee_id).await?.ok_or_else(|| {
            gql_error(
                ErrorCode::NotFound,
                format!("no user with id {followee_id}"),
            )
        })
    }

    /// Makes the viewer stop following a user (idempotent: nothing changes
    /// when they did not follow them); returns that user with fresh counts.
    /// NOT_FOUND when no user has that id.
    async fn unfollow(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the user to unfollow (a `User.id`). The viewer's own id, or a malformed one, is BAD_USER_INPUT."
        )]
        user_id: ID,
    ) -> Result<UserNode> {
        let viewer = mutating_viewer(ctx).await?;
        let followee_id = parse_id("userId", &user_id)?;
        let request = graph::UnfollowRequest {
            follower_id: viewer.user_id,
            followee_id,
        };
        state(ctx)?
            .downstream
            .graph
            .clone()
            .unfollow(request)
            .await
            .gql()?;
        user_node(ctx, followee_id).await?.ok_or_else(|| {
            gql_error(
                ErrorCode::NotFound,
                format!("no user with id {followee_id}"),
            )
        })
    }

    /// Creates the Warble user of the identity provider's account the
    /// bearer token names (its `iss` and `sub`), and returns it: how a person
    /// signed in with the identity provider joins. From then on that token,
    /// and every later one naming the same account, acts as this user.
    /// Idempotent: registering again with the same username returns the
    /// same user. Needs a valid token (UNAUTHENTICATED without one);
    /// FORBIDDEN on a gateway that takes token subjects as user ids
    /// (`auth.subjects = "user_id"`, as in development, where `signUp`
    /// creates users). BAD_USER_INPUT when a field breaks its rule, the
    /// username is taken, or the account registered another username
    /// already (the message names it).
    async fn register(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The new user's handle: 1 to 15 of `[A-Za-z0-9_]`, unique ignoring case. Registering again must give the same one."
        )]
        username: String,
        #[graphql(
            desc = "The name shown: 1 to 50 characters after trimming, not only whitespace."
        )]
        display_name: String,
    ) -> Result<UserNode> {
        let state = state(ctx)?;
        let Some(cache) = state.auth.identities() else {
            return Err(gql_error(
                ErrorCode::Forbidden,
                "register is off: this gateway takes token subjects as Warble user ids \
                 (auth.subjects = \"user_id\")",
            ));
        };
        let identity = ctx
            .data_opt::<crate::auth::Identity>()
            .cloned()
            .ok_or_else(|| {
                gql_error(
                    ErrorCode::Unauthenticated,
                    "sign in with your identity provider, then register with its token: \
                     send `Authorization: Bearer <token>`",
                )
            })?;
        rate_limit_by_address(ctx).await?;
        let user = state
            .downstream
            .graph
            .clone()
            .register_user(graph::RegisterUserRequest {
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
                username,
                display_name,
            })
            .await
            .gql()?
            .into_inner()
            .user
            .ok_or_else(|| gql_error(ErrorCode::Internal, "graph-svc returned no user"))?;
        // This replica knows at once; the others look the identity up on
        // its next request there (unregistered identities are not cached).
        cache.remember(&identity, user.id);
        Ok(UserNode::lazy(user))
    }

    /// Development only (FORBIDDEN on a production gateway): creates a user
    /// and returns a token for them, without a password. Needs no sign-in.
    /// BAD_USER_INPUT when a field breaks its rule or the username is taken.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The new user's handle: 1 to 15 of `[A-Za-z0-9_]`, unique ignoring case."
        )]
        username: String,
        #[graphql(
            desc = "The name shown: 1 to 50 characters after trimming, not only whitespace."
        )]
        display_name: String,
        #[graphql(
            desc = "Profile text shown with the profile, at most 160 characters; omit (or give an empty string) for none."
        )]
        bio: Option<String>,
    ) -> Result<AuthPayload> {
        let state = state(ctx)?;
        dev_only(&state.auth)?;
        rate_limit_by_address(ctx).await?;
        let user = state
            .downstream
            .graph
            .clone()
            .create_user(graph::CreateUserRequest {
                username,
                display_name,
                bio: bio.unwrap_or_default(),
            })
            .await
            .gql()?
            .into_inner()
            .user
            .ok_or_else(|| gql_error(ErrorCode::Internal, "graph-svc returned no user"))?;
        issued(state, user)
    }

    /// Development only (FORBIDDEN on a production gateway): a token for an
    /// existing user, without a password. Needs no sign-in. NOT_FOUND when
    /// no user has that username.
    async fn issue_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Whom to sign in: an existing username (`User.username`), matched ignoring case."
        )]
        username: String,
    ) -> Result<AuthPayload> {
        let state = state(ctx)?;
        dev_only(&state.auth)?;
        rate_limit_by_address(ctx).await?;
        let user = state
            .downstream
            .graph
            .clone()
            .get_user_by_username(graph::GetUserByUsernameRequest { username })
            .await
            .gql()?
            .into_inner()
            .user
            .ok_or_else(|| gql_error(ErrorCode::Internal, "graph-svc returned no user"))?;
        issued(state, user)
    }
}

fn dev_only(auth: &Authenticator) -> Result<()> {
    if auth.dev_mode() {
        Ok(())
    } else {
        Err(gql_error(
            ErrorCode::Forbidden,
            "sign-up and token issuance are disabled outside development mode",
        ))
    }
}

fn issued(state: &GatewayState, user: graph::User) -> Result<AuthPayload> {
    let token = state
        .auth
        .issue(user.id)
        .ok_or_else(|| gql_error(ErrorCode::Internal, "cannot issue a token"))?;
    Ok(AuthPayload {
        token,
        user: UserNode::lazy(user),
    })
}

/// The subscription root.
pub struct SubscriptionRoot;

/// Live updates, over a WebSocket to `/graphql` (send the token in the
/// `connection_init` payload).
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Each new tweet that lands in the viewer's home timeline (their own,
    /// and those of everyone they follow, celebrities included, but not of
    /// anyone they mute or block), as it is posted. Retweets are not sent:
    /// they appear on the next `homeTimeline` read. UNAUTHENTICATED when
    /// not signed in; UNAVAILABLE when this gateway serves no live updates.
    async fn home_timeline_updates(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<TweetNode>> + use<>> {
        let viewer = require_viewer(ctx)?;
        let state = state(ctx)?.clone();
        let feed = state.feed.as_ref().ok_or_else(|| {
            gql_error(
                ErrorCode::Unavailable,
                "live updates are not available on this gateway",
            )
        })?;
        // Subscribe before reading the following list, so nothing posted
        // meanwhile is missed.
        let events = feed.subscribe();
        let following = following_all(&state.downstream, viewer.user_id).await?;
        let wants = TweetWants::of(ctx.look_ahead());
        let watch = Watch {
            viewer,
            following,
            events,
            state,
            wants,
        };
        Ok(futures::stream::unfold(watch, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        }))
    }

    /// Each notification group of the viewer's main list as it is created
    /// or absorbs an actor (the group comes again, with the same id, each
    /// time it grows), hydrated like a `notifications` page: actors the
    /// viewer blocks or mutes with notifications hidden are left out, and
    /// a group left without actors, or about a deleted tweet, is not sent.
    /// Filtered notifications are not sent. UNAUTHENTICATED when not signed
    /// in; UNAVAILABLE when this gateway serves no live updates.
    async fn notification_added(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<crate::notifications::NotificationGroupNode>> + use<>>
    {
        crate::notifications::added(ctx).await
    }
}

/// One subscription's view of the feed.
struct Watch {
    viewer: Viewer,
    following: HashSet<u64>,
    events: tokio::sync::broadcast::Receiver<FeedEvent>,
    state: Arc<GatewayState>,
    wants: TweetWants,
}

impl Watch {
    /// Whether the viewer must not see `author`'s tweets: a block either
    /// way, or an active mute. Asked per tweet delivered, so a mute made or
    /// lapsed during the subscription counts from the next tweet on.
    async fn hides(&self, author: u64) -> Result<bool> {
        let relations = self
            .state
            .downstream
            .graph
            .clone()
            .get_relations(graph::GetRelationsRequest {
                viewer_id: self.viewer.user_id,
                user_ids: vec![author],
            })
            .await
            .gql()?
            .into_inner()
            .relations;
        Ok(relations.first().is_some_and(|relation| {
            relation.viewer_blocks || relation.blocks_viewer || relation.viewer_mutes
        }))
    }

    async fn next(&mut self) -> Option<Result<TweetNode>> {
        loop {
            match self.events.recv().await {
                Ok(FeedEvent::TweetCreated {
                    tweet_id,
                    author_id,
                }) if author_id == self.viewer.user_id || self.following.contains(&author_id) => {
                    // A muted author's tweets stay out, as they do from the
                    // home timeline (a block removed the follow already).
                    if author_id != self.viewer.user_id {
                        match self.hides(author_id).await {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(error) => return Some(Err(error)),
                        }
                    }
                    let nodes = hydrate::tweets(
                        &self.state.downstream,
                        Some(self.viewer),
                        &[tweet_id],
                        self.wants,
                    )
                    .await;
                    match nodes {
                        Ok(mut nodes) => match nodes.pop().flatten() {
                            Some(node) => return Some(Ok(node)),
                            None => continue, // deleted already
                        },
                        Err(error) => return Some(Err(error)),
                    }
                }
                Ok(FeedEvent::Followed {
                    follower_id,
                    followee_id,
                }) if follower_id == self.viewer.user_id => {
                    self.following.insert(followee_id);
                }
                Ok(FeedEvent::Unfollowed {
                    follower_id,
                    followee_id,
                }) if follower_id == self.viewer.user_id => {
                    self.following.remove(&followee_id);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        viewer = self.viewer.user_id,
                        "subscriber fell behind the live feed"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

async fn following_all(downstream: &Downstream, user_id: u64) -> Result<HashSet<u64>> {
    let mut following = HashSet::new();
    let mut cursor = String::new();
    loop {
        let response = downstream
            .graph
            .clone()
            .list_following(graph::ListFollowingRequest {
                user_id,
                page: Some(PageRequest {
                    cursor,
                    limit: warble_proto::limits::graph::MAX_PAGE_LIMIT,
                }),
                min_followers: 0,
            })
            .await
            .gql()?
            .into_inner();
        following.extend(response.following.iter().map(|edge| edge.user_id));
        cursor = response.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            return Ok(following);
        }
    }
}
