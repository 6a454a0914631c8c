//! Conversations, blocks and mutes, bookmarks and profiles: the resolvers
//! and mutations around the timeline core.
//!
//! Whatever the viewer must not see (tweets by users they block, mute or
//! are blocked by) is left out with one GetRelations per page, never a
//! scan of the viewer's lists.

use std::collections::HashSet;

use async_graphql::{Context, ID, Object, Result};
use warble_proto::common::v1::{PageRequest, TimelineEntry};
use warble_proto::graph::v1 as graph;
use warble_proto::limits::tweet::MAX_ANCESTORS;
use warble_proto::tweet::v1 as tweet;

use crate::auth::Viewer;
use crate::error::{ErrorCode, StatusExt as _, bad_input, gql_error};
use crate::hydrate::{self, TweetWants, UserWants};
use crate::model::{
    PageInfo, RelatedUserConnection, RelatedUserEdge, TweetConnection, TweetNode, UserNode,
    parse_id, require_viewer,
};
use crate::paging;
use crate::resolvers::{
    empty_tweet_connection, mutating_viewer, state, tweet_connection, tweet_node, user_node, viewer,
};

/// Which of `users` the viewer must not see in conversations and lists:
/// those they block, mute, or are blocked by. Nothing for an anonymous
/// viewer. One GetRelations for the lot.
pub(crate) async fn hidden_users(
    ctx: &Context<'_>,
    viewer: Option<Viewer>,
    users: impl IntoIterator<Item = u64>,
) -> Result<HashSet<u64>> {
    let Some(viewer) = viewer else {
        return Ok(HashSet::new());
    };
    let mut others: Vec<u64> = users
        .into_iter()
        .filter(|&user| user != 0 && user != viewer.user_id)
        .collect();
    others.sort_unstable();
    others.dedup();
    if others.is_empty() {
        return Ok(HashSet::new());
    }
    let relations = state(ctx)?
        .downstream
        .graph
        .clone()
        .get_relations(graph::GetRelationsRequest {
            viewer_id: viewer.user_id,
            user_ids: others,
        })
        .await
        .gql()?
        .into_inner()
        .relations;
    Ok(relations
        .into_iter()
        .filter(|relation| {
            relation.viewer_blocks || relation.blocks_viewer || relation.viewer_mutes
        })
        .map(|relation| relation.user_id)
        .collect())
}

/// Refuses with FORBIDDEN when the viewer and the author of any of
/// `tweet_ids` block each other (either way): a blocked user cannot like,
/// retweet, reply to or quote the blocker's tweets, nor the blocker theirs.
/// Tweets that do not exist are left to the write itself to report.
pub(crate) async fn ensure_can_interact(
    ctx: &Context<'_>,
    viewer: Viewer,
    tweet_ids: &[u64],
) -> Result<()> {
    if tweet_ids.is_empty() {
        return Ok(());
    }
    let downstream = &state(ctx)?.downstream;
    let authors: Vec<u64> = downstream
        .tweets
        .clone()
        .get_tweets(tweet::GetTweetsRequest {
            tweet_ids: tweet_ids.to_vec(),
            ..Default::default()
        })
        .await
        .gql()?
        .into_inner()
        .results
        .into_iter()
        .filter_map(|lookup| lookup.tweet.map(|tweet| tweet.author_id))
        .filter(|&author| author != viewer.user_id)
        .collect();
    if authors.is_empty() {
        return Ok(());
    }
    let relations = downstream
        .graph
        .clone()
        .get_relations(graph::GetRelationsRequest {
            viewer_id: viewer.user_id,
            user_ids: authors,
        })
        .await
        .gql()?
        .into_inner()
        .relations;
    if relations
        .iter()
        .any(|relation| relation.viewer_blocks || relation.blocks_viewer)
    {
        return Err(gql_error(
            ErrorCode::Forbidden,
            "you cannot interact with this tweet: you and its author block each other, or one of you blocks the other",
        ));
    }
    Ok(())
}

/// A tweet's direct replies, oldest first: one ListReplies, one
/// GetRelations for their authors, then the page's usual hydration.
pub(crate) async fn replies(
    ctx: &Context<'_>,
    tweet_id: u64,
    first: Option<i32>,
    after: Option<String>,
) -> Result<TweetConnection> {
    let first = paging::first(first)?;
    let cursor = paging::after(after)?;
    if first == 0 {
        return Ok(empty_tweet_connection());
    }
    let response = state(ctx)?
        .downstream
        .tweets
        .clone()
        .list_replies(tweet::ListRepliesRequest {
            tweet_id,
            page: Some(PageRequest {
                cursor,
                limit: first,
            }),
        })
        .await
        .gql()?
        .into_inner();
    let hidden = hidden_users(
        ctx,
        viewer(ctx),
        response.replies.iter().map(|reply| reply.author_id),
    )
    .await?;
    let entries: Vec<TimelineEntry> = response
        .replies
        .into_iter()
        .zip(response.cursors)
        .filter(|(reply, _)| !hidden.contains(&reply.author_id))
        .map(|(reply, cursor)| TimelineEntry {
            tweet_id: reply.id,
            author_id: reply.author_id,
            cursor,
            ..Default::default()
        })
        .collect();
    tweet_connection(ctx, entries, response.page.unwrap_or_default().next_cursor).await
}

/// The reply chain above a tweet, root first: one GetAncestors, one
/// GetRelations, one hydration batch.
pub(crate) async fn ancestors(
    ctx: &Context<'_>,
    tweet: &tweet::Tweet,
    last: Option<i32>,
) -> Result<Vec<TweetNode>> {
    let last = match last.unwrap_or(MAX_ANCESTORS as i32) {
        value if (0..=MAX_ANCESTORS as i32).contains(&value) => value as u32,
        value => {
            return Err(bad_input(
                "last",
                format!("last must be between 0 and {MAX_ANCESTORS}, got {value}"),
            ));
        }
    };
    if last == 0 || tweet.reply_to_tweet_id.is_none() {
        return Ok(Vec::new());
    }
    let state = state(ctx)?;
    let ancestors = state
        .downstream
        .tweets
        .clone()
        .get_ancestors(tweet::GetAncestorsRequest {
            tweet_id: tweet.id,
            limit: last,
        })
        .await
        .gql()?
        .into_inner()
        .ancestors;
    let hidden = hidden_users(
        ctx,
        viewer(ctx),
        ancestors.iter().map(|ancestor| ancestor.author_id),
    )
    .await?;
    let ids: Vec<u64> = ancestors
        .iter()
        .filter(|ancestor| !hidden.contains(&ancestor.author_id))
        .map(|ancestor| ancestor.id)
        .collect();
    let wants = TweetWants::of(ctx.look_ahead());
    let nodes = hydrate::tweets(&state.downstream, viewer(ctx), &ids, wants).await?;
    Ok(nodes.into_iter().flatten().collect())
}

/// The viewer, when `owner` is the viewer: private lists are the owner's
/// alone.
fn owner_only(ctx: &Context<'_>, owner: u64, what: &str) -> Result<Viewer> {
    let viewer = require_viewer(ctx)?;
    if viewer.user_id != owner {
        return Err(gql_error(
            ErrorCode::Forbidden,
            format!("{what} are private: read your own through `viewer`"),
        ));
    }
    Ok(viewer)
}

/// Which private relation list to page.
#[derive(Debug, Clone, Copy)]
pub enum RelationList {
    /// Whom the viewer blocks.
    Blocked,
    /// Whom the viewer mutes (lapsed mutes left out).
    Muted,
}

/// One page of the viewer's block or mute list, hydrated in one batch.
pub(crate) async fn relation_list(
    ctx: &Context<'_>,
    owner: u64,
    list: RelationList,
    first: Option<i32>,
    after: Option<String>,
) -> Result<RelatedUserConnection> {
    let what = match list {
        RelationList::Blocked => "block lists",
        RelationList::Muted => "mute lists",
    };
    let viewer = owner_only(ctx, owner, what)?;
    let first = paging::first(first)?;
    let cursor = paging::after(after)?;
    if first == 0 {
        return Ok(RelatedUserConnection {
            edges: Vec::new(),
            page_info: PageInfo::default(),
        });
    }
    let downstream = &state(ctx)?.downstream;
    let page = Some(PageRequest {
        cursor,
        limit: first,
    });
    let (edges, next_cursor) = match list {
        RelationList::Blocked => {
            let response = downstream
                .graph
                .clone()
                .list_blocked(graph::ListBlockedRequest {
                    user_id: viewer.user_id,
                    page,
                })
                .await
                .gql()?
                .into_inner();
            (
                response.blocked,
                response.page.unwrap_or_default().next_cursor,
            )
        }
        RelationList::Muted => {
            let response = downstream
                .graph
                .clone()
                .list_muted(graph::ListMutedRequest {
                    user_id: viewer.user_id,
                    page,
                })
                .await
                .gql()?
                .into_inner();
            (
                response.muted,
                response.page.unwrap_or_default().next_cursor,
            )
        }
    };
    let ids: Vec<u64> = edges.iter().map(|edge| edge.user_id).collect();
    let wants = UserWants::of(ctx.look_ahead().field("edges").field("node"));
    let users = hydrate::users(downstream, Some(viewer), &ids, wants).await?;
    let edges: Vec<RelatedUserEdge> = edges
        .into_iter()
        .filter_map(|edge| {
            users.get(&edge.user_id).map(|node| RelatedUserEdge {
                node: node.clone(),
                cursor: edge.cursor,
                since_ms: edge.since_ms,
                expires_at_ms: edge.expires_at_ms,
                hide_notifications: edge.hide_notifications,
            })
        })
        .collect();
    Ok(RelatedUserConnection {
        page_info: PageInfo::of_page(
            edges.first().map(|edge| edge.cursor.clone()),
            edges.last().map(|edge| edge.cursor.clone()),
            next_cursor,
        ),
        edges,
    })
}

/// One page of the viewer's bookmarks: one ListBookmarks, then the page's
/// usual hydration.
pub(crate) async fn bookmarks(
    ctx: &Context<'_>,
    owner: u64,
    first: Option<i32>,
    after: Option<String>,
) -> Result<TweetConnection> {
    let viewer = owner_only(ctx, owner, "bookmarks")?;
    let first = paging::first(first)?;
    let cursor = paging::after(after)?;
    if first == 0 {
        return Ok(empty_tweet_connection());
    }
    let response = state(ctx)?
        .downstream
        .tweets
        .clone()
        .list_bookmarks(tweet::ListBookmarksRequest {
            user_id: viewer.user_id,
            page: Some(PageRequest {
                cursor,
                limit: first,
            }),
        })
        .await
        .gql()?
        .into_inner();
    let entries = response
        .bookmarks
        .into_iter()
        .map(|bookmark| TimelineEntry {
            tweet_id: bookmark.tweet_id,
            author_id: bookmark.author_id,
            cursor: bookmark.cursor,
            ..Default::default()
        })
        .collect();
    tweet_connection(ctx, entries, response.page.unwrap_or_default().next_cursor).await
}

/// The user `user_id` after a block or mute change, with what the
/// selection asks of them.
async fn user_after(ctx: &Context<'_>, user_id: u64) -> Result<UserNode> {
    user_node(ctx, user_id)
        .await?
        .ok_or_else(|| gql_error(ErrorCode::NotFound, format!("no user with id {user_id}")))
}

/// The tweet `tweet_id` after a bookmark change.
async fn tweet_after(ctx: &Context<'_>, tweet_id: u64) -> Result<TweetNode> {
    tweet_node(ctx, tweet_id, TweetWants::of(ctx.look_ahead()))
        .await?
        .ok_or_else(|| {
            bad_input(
                "id",
                format!("tweet {tweet_id} does not exist or was deleted"),
            )
        })
}

/// Refuses acting on oneself with BAD_USER_INPUT naming `argument`.
fn someone_else(viewer: Viewer, user_id: u64, argument: &str, action: &str) -> Result<()> {
    if viewer.user_id == user_id {
        return Err(bad_input(argument, format!("you cannot {action} yourself")));
    }
    Ok(())
}

/// Blocks, mutes, bookmarks and profile edits. Part of the `Mutation` type.
#[derive(Default)]
pub struct SocialMutations;

#[Object]
impl SocialMutations {
    /// Blocks a user as the viewer (idempotent: blocking twice changes
    /// nothing); returns that user. A block removes any follow between the
    /// two, both ways; while it stands neither can follow the other, and
    /// the blocked user cannot like, retweet, reply to or quote the
    /// viewer's tweets (FORBIDDEN). Each one's tweets and retweets leave
    /// the other's timelines and conversations. NOT_FOUND when no user has
    /// that id.
    async fn block(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the user to block (a `User.id`). The viewer's own id, or a malformed one, is BAD_USER_INPUT."
        )]
        user_id: ID,
    ) -> Result<UserNode> {
        let viewer = mutating_viewer(ctx).await?;
        let blocked_id = parse_id("userId", &user_id)?;
        someone_else(viewer, blocked_id, "userId", "block")?;
        state(ctx)?
            .downstream
            .graph
            .clone()
            .block(graph::BlockRequest {
                blocker_id: viewer.user_id,
                blocked_id,
            })
            .await
            .gql()?;
        user_after(ctx, blocked_id).await
    }

    /// Removes the viewer's block of a user (idempotent); returns that
    /// user. Follows the block removed stay removed. NOT_FOUND when no user
    /// has that id.
    async fn unblock(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the user to unblock (a `User.id`). The viewer's own id, or a malformed one, is BAD_USER_INPUT."
        )]
        user_id: ID,
    ) -> Result<UserNode> {
        let viewer = mutating_viewer(ctx).await?;
        let blocked_id = parse_id("userId", &user_id)?;
        someone_else(viewer, blocked_id, "userId", "unblock")?;
        state(ctx)?
            .downstream
            .graph
            .clone()
            .unblock(graph::UnblockRequest {
                blocker_id: viewer.user_id,
                blocked_id,
            })
            .await
            .gql()?;
        user_after(ctx, blocked_id).await
    }

    /// Mutes a user as the viewer, for `durationSecs` or until unmuted;
    /// returns that user. Their tweets and retweets, and retweets of their
    /// tweets, leave the viewer's home timeline and conversations; with
    /// `hideNotifications`, their notifications too. Muting again replaces
    /// the duration and the setting. NOT_FOUND when no user has that id.
    async fn mute(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the user to mute (a `User.id`). The viewer's own id, or a malformed one, is BAD_USER_INPUT."
        )]
        user_id: ID,
        #[graphql(
            desc = "How long the mute lasts, in seconds, 1 to 31536000 (a year); omit (or 0) to mute until unmuted. Outside that range: BAD_USER_INPUT."
        )]
        duration_secs: Option<i64>,
        #[graphql(
            desc = "Also hide the user's notifications (likes, mentions, follows...). Default false."
        )]
        hide_notifications: Option<bool>,
    ) -> Result<UserNode> {
        let viewer = mutating_viewer(ctx).await?;
        let muted_id = parse_id("userId", &user_id)?;
        someone_else(viewer, muted_id, "userId", "mute")?;
        let max = warble_proto::limits::graph::MAX_MUTE_DURATION_SECS;
        let duration_secs = match duration_secs.unwrap_or(0) {
            seconds if (0..=max as i64).contains(&seconds) => seconds as u64,
            seconds => {
                return Err(bad_input(
                    "durationSecs",
                    format!("durationSecs must be between 0 and {max}, got {seconds}"),
                ));
            }
        };
        state(ctx)?
            .downstream
            .graph
            .clone()
            .mute(graph::MuteRequest {
                muter_id: viewer.user_id,
                muted_id,
                duration_secs,
                hide_notifications: hide_notifications.unwrap_or(false),
            })
            .await
            .gql()?;
        user_after(ctx, muted_id).await
    }

    /// Removes the viewer's mute of a user (idempotent); returns that
    /// user. NOT_FOUND when no user has that id.
    async fn unmute(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the user to unmute (a `User.id`). The viewer's own id, or a malformed one, is BAD_USER_INPUT."
        )]
        user_id: ID,
    ) -> Result<UserNode> {
        let viewer = mutating_viewer(ctx).await?;
        let muted_id = parse_id("userId", &user_id)?;
        someone_else(viewer, muted_id, "userId", "unmute")?;
        state(ctx)?
            .downstream
            .graph
            .clone()
            .unmute(graph::UnmuteRequest {
                muter_id: viewer.user_id,
                muted_id,
            })
            .await
            .gql()?;
        user_after(ctx, muted_id).await
    }

    /// Bookmarks a tweet for the viewer (idempotent); returns it. Bookmarks
    /// are private. BAD_USER_INPUT when the tweet does not exist or was
    /// deleted.
    async fn bookmark(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to bookmark (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<TweetNode> {
        let viewer = mutating_viewer(ctx).await?;
        let tweet_id = parse_id("id", &id)?;
        state(ctx)?
            .downstream
            .tweets
            .clone()
            .bookmark(tweet::BookmarkRequest {
                user_id: viewer.user_id,
                tweet_id,
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => bad_input(
                    "id",
                    format!("tweet {tweet_id} does not exist or was deleted"),
                ),
                _ => crate::error::from_status(status),
            })?;
        tweet_after(ctx, tweet_id).await
    }

    /// Removes the viewer's bookmark of a tweet (idempotent); returns the
    /// tweet. BAD_USER_INPUT when the tweet does not exist or was deleted
    /// (its bookmark, if any, is removed all the same).
    async fn unbookmark(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the tweet to remove from the bookmarks (a `Tweet.id`). A malformed id is BAD_USER_INPUT."
        )]
        id: ID,
    ) -> Result<TweetNode> {
        let viewer = mutating_viewer(ctx).await?;
        let tweet_id = parse_id("id", &id)?;
        state(ctx)?
            .downstream
            .tweets
            .clone()
            .unbookmark(tweet::UnbookmarkRequest {
                user_id: viewer.user_id,
                tweet_id,
            })
            .await
            .gql()?;
        tweet_after(ctx, tweet_id).await
    }

    /// Edits the viewer's profile; only the arguments given change, and
    /// each follows the rule of sign-up. Returns the profile.
    /// BAD_USER_INPUT naming the first argument that breaks its rule, and
    /// then nothing changes; NOT_FOUND when `avatarMediaId` names no media.
    #[allow(clippy::too_many_arguments, reason = "one argument per profile field")]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The name shown: 1 to 50 characters after trimming, not only whitespace. Omit to keep it."
        )]
        display_name: Option<String>,
        #[graphql(
            desc = "Profile text, at most 160 characters; an empty string clears it. Omit to keep it."
        )]
        bio: Option<String>,
        #[graphql(
            desc = "Where the user is, at most 30 characters after trimming; an empty string clears it. Omit to keep it."
        )]
        location: Option<String>,
        #[graphql(
            desc = "An http or https URL with a host, at most 100 characters, no spaces; an empty string clears it. Omit to keep it."
        )]
        website: Option<String>,
        #[graphql(
            desc = "A new avatar: the id of one of the viewer's images from `uploadMedia` (`Media.id`); a video, or anyone else's media, is BAD_USER_INPUT. Omit to keep the avatar; clear it with `removeAvatar`."
        )]
        avatar_media_id: Option<ID>,
        #[graphql(
            desc = "True removes the avatar (`User.avatarUrl` becomes null); false or omitted keeps it. Not together with `avatarMediaId` (BAD_USER_INPUT)."
        )]
        remove_avatar: Option<bool>,
    ) -> Result<UserNode> {
        let remove_avatar = remove_avatar.unwrap_or(false);
        let avatar_media_id = match (avatar_media_id, remove_avatar) {
            (Some(_), true) => {
                return Err(bad_input(
                    "avatarMediaId",
                    "give `avatarMediaId` or `removeAvatar`, not both",
                ));
            }
            (Some(id), false) => Some(parse_id("avatarMediaId", &id)?),
            (None, true) => Some(0),
            (None, false) => None,
        };
        let viewer = mutating_viewer(ctx).await?;
        let downstream = &state(ctx)?.downstream;
        // media-svc checks the image is the viewer's and keeps it from
        // then on; graph-svc only stores the id.
        if let Some(media_id) = avatar_media_id.filter(|&id| id != 0) {
            crate::media::use_as_avatar(downstream, viewer.user_id, media_id).await?;
        }
        downstream
            .graph
            .clone()
            .update_profile(graph::UpdateProfileRequest {
                user_id: viewer.user_id,
                display_name,
                bio,
                location,
                website,
                avatar_media_id,
            })
            .await
            .map_err(|status| {
                // graph-svc names its request fields (`display_name`); the
                // client sent GraphQL arguments (`displayName`).
                let message = status.message().replace("display_name", "displayName");
                crate::error::from_status(tonic::Status::new(status.code(), message))
            })?;
        user_after(ctx, viewer.user_id).await
    }
}
