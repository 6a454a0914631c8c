//! Notifications: the viewer's notification groups (main and filtered
//! lists), the unread count, the read marker, the notification settings and
//! the live `notificationAdded` subscription, all over notify-svc.
//!
//! A page of groups costs a constant number of downstream calls whatever
//! its size: one ListNotifications, then at once one GetRelations for every
//! actor of the page (to leave out those the viewer silenced since the
//! group was built) and the usual hydration: one GetTweets for the page's
//! tweets, then one GetUsers for their authors and the actors together
//! (graph-svc takes 500 ids a batch: a page of 100 groups of 8 distinct
//! actors needs two of each).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::{
    Context, Enum, ErrorExtensions as _, ID, Lookahead, Object, Result, SimpleObject,
};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1 as graph;
use warble_proto::limits::graph as graph_limits;
use warble_proto::limits::notify::{MAX_NEW_ACCOUNT_DAYS, MAX_PAGE_LIMIT, MAX_SAMPLE_ACTORS};
use warble_proto::notify::v1 as notify;

use crate::auth::Viewer;
use crate::downstream::Downstream;
use crate::error::{ErrorCode, StatusExt as _, bad_input, gql_error};
use crate::feed::NotificationEvent;
use crate::hydrate::{self, TweetWants, UserWants};
use crate::loaders::Loaders;
use crate::model::{PageInfo, TweetNode, UserNode, parse_id, require_viewer};
use crate::paging;
use crate::resolvers::{GatewayState, mutating_viewer, state};
use crate::time::iso8601;

// `first` is passed on as ListNotifications' page size.
const _: () = assert!(paging::MAX_FIRST as u32 <= MAX_PAGE_LIMIT);

/// What a notification is about.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "NotificationType")]
pub enum NotificationType {
    /// A tweet mentions the viewer (`tweet` is that tweet).
    Mention,
    /// A tweet replies to one of the viewer's tweets (`tweet` is the reply).
    Reply,
    /// A tweet quotes one of the viewer's tweets (`tweet` is the quote).
    Quote,
    /// Users liked one of the viewer's tweets (`tweet` is the liked tweet).
    Like,
    /// Users retweeted one of the viewer's tweets (`tweet` is the retweeted
    /// tweet).
    Retweet,
    /// Users followed the viewer (`tweet` is null).
    Follow,
}

impl NotificationType {
    /// The type of a contract value; `None` for one this gateway does not
    /// know (unspecified, or added to the contract since).
    fn of(number: i32) -> Option<Self> {
        match notify::NotificationType::try_from(number).ok()? {
            notify::NotificationType::Unspecified => None,
            notify::NotificationType::Mention => Some(Self::Mention),
            notify::NotificationType::Reply => Some(Self::Reply),
            notify::NotificationType::Quote => Some(Self::Quote),
            notify::NotificationType::Like => Some(Self::Like),
            notify::NotificationType::Retweet => Some(Self::Retweet),
            notify::NotificationType::Follow => Some(Self::Follow),
        }
    }

    /// The contract's value.
    fn number(self) -> i32 {
        let proto = match self {
            Self::Mention => notify::NotificationType::Mention,
            Self::Reply => notify::NotificationType::Reply,
            Self::Quote => notify::NotificationType::Quote,
            Self::Like => notify::NotificationType::Like,
            Self::Retweet => notify::NotificationType::Retweet,
            Self::Follow => notify::NotificationType::Follow,
        };
        proto as i32
    }

    /// Whether groups of this type are about a tweet (all but follows).
    fn has_tweet(self) -> bool {
        self != Self::Follow
    }
}

/// Whether mentions, replies and quotes from accounts the viewer does not
/// follow reach the main notification list.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "StrangerPolicy")]
pub enum StrangerPolicy {
    /// They reach the main list (the default).
    Accept,
    /// They go to the filtered list (`filteredNotifications`) instead.
    Filter,
}

impl StrangerPolicy {
    fn number(self) -> i32 {
        let proto = match self {
            Self::Accept => notify::StrangerPolicy::Accept,
            Self::Filter => notify::StrangerPolicy::Filter,
        };
        proto as i32
    }
}

/// The viewer's notification policy. It applies to notifications created
/// after it changes; those already listed stay where they are.
#[derive(SimpleObject, Debug, Clone, Copy)]
pub struct NotificationSettings {
    /// Where mentions, replies and quotes from accounts the viewer does not
    /// follow go.
    pub mentions_from_strangers: StrangerPolicy,
    /// Mentions, replies and quotes from accounts younger than this many
    /// days go to the filtered list; 0 (the default) turns this off. 0 to 365.
    pub new_accounts_days: u32,
}

impl NotificationSettings {
    fn of(settings: Option<notify::NotificationSettings>) -> Result<Self> {
        let settings = settings.unwrap_or_default();
        let mentions_from_strangers =
            match notify::StrangerPolicy::try_from(settings.mentions_from_strangers) {
                Ok(notify::StrangerPolicy::Accept) => StrangerPolicy::Accept,
                Ok(notify::StrangerPolicy::Filter) => StrangerPolicy::Filter,
                Err(unknown) => return Err(crate::error::internal(&unknown)),
            };
        Ok(Self {
            mentions_from_strangers,
            new_accounts_days: settings.new_accounts_days,
        })
    }
}

/// One notification group, hydrated and filtered for the viewer.
#[derive(Clone)]
pub struct NotificationGroupNode {
    group_id: u64,
    kind: NotificationType,
    count: u64,
    actors: Vec<UserNode>,
    tweet: Option<TweetNode>,
    latest_at_ms: i64,
    unread: bool,
    /// The position just after this group (empty outside a page).
    cursor: String,
}

/// The query complexity of `actors`: a group shows up to
/// `MAX_SAMPLE_ACTORS` of them, so what is selected of an actor costs that
/// many times over (a page nested under each actor is that many pages).
fn actors_cost(child_complexity: usize) -> usize {
    child_complexity
        .saturating_mul(MAX_SAMPLE_ACTORS)
        .saturating_add(1)
}

/// What happened to the viewer or their tweets: a single mention, reply or
/// quote, or every like or retweet of one tweet (every follow) that arrived
/// within 12 hours of the group's newest one, counted, with the newest
/// actors. Actors the viewer blocks, or mutes with notifications hidden,
/// are left out.
#[Object(name = "NotificationGroup")]
impl NotificationGroupNode {
    /// The group's id: a 64-bit id as a decimal string. Stable while the
    /// group absorbs new actors (a live update of the group carries the
    /// same id); pass it to `markNotificationsRead(upTo:)`. Not a `Node`
    /// id: `node(id:)` does not fetch groups.
    async fn id(&self) -> ID {
        ID(self.group_id.to_string())
    }

    /// What happened.
    #[graphql(name = "type")]
    async fn kind(&self) -> NotificationType {
        self.kind
    }

    /// How many users the group holds (at least as many as `actors`),
    /// less those shown as actors that the viewer has since blocked or
    /// muted with notifications hidden.
    async fn count(&self) -> u64 {
        self.count
    }

    /// The newest actors, newest first, at most 8: who mentioned, replied,
    /// quoted, liked, retweeted or followed. Never empty: a group whose
    /// actors are all hidden from the viewer is not listed.
    #[graphql(complexity = "actors_cost(child_complexity)")]
    async fn actors(&self) -> &[UserNode] {
        &self.actors
    }

    /// The tweet concerned: the liked or retweeted tweet (the viewer's), or
    /// the tweet that mentions, replies or quotes. Null for follows. A
    /// group whose tweet was deleted is not listed.
    async fn tweet(&self) -> Option<&TweetNode> {
        self.tweet.as_ref()
    }

    /// When the group's newest item happened, ISO 8601 UTC with
    /// milliseconds (`2024-01-01T12:34:56.789Z`).
    async fn latest_at(&self) -> String {
        iso8601(self.latest_at_ms)
    }

    /// Whether the group is newer than the viewer's read marker
    /// (`markNotificationsRead`). Groups of the filtered list are never
    /// counted in `unreadNotificationsCount`, whatever this says.
    async fn unread(&self) -> bool {
        self.unread
    }
}

/// A notification group in a page of groups.
#[derive(SimpleObject, Clone)]
pub struct NotificationGroupEdge {
    /// The group.
    pub node: NotificationGroupNode,
    /// Opaque position just after this group, to pass as `after`.
    pub cursor: String,
}

/// A page of notification groups (a Relay connection), newest first.
/// Every edge carries its cursor; page on with `pageInfo.endCursor` (null
/// on the last page).
#[derive(SimpleObject, Clone)]
pub struct NotificationGroupConnection {
    /// The groups, newest first: a group moves to the top when it absorbs
    /// an actor. Groups whose actors are all hidden from the viewer, and
    /// groups whose tweet was deleted, are left out, so a page may hold
    /// fewer than `first` even when more follow.
    pub edges: Vec<NotificationGroupEdge>,
    /// Where this page ends and whether more follow.
    pub page_info: PageInfo,
}

impl NotificationGroupConnection {
    fn empty() -> Self {
        Self {
            edges: Vec::new(),
            page_info: PageInfo::default(),
        }
    }
}

/// Which of a group's parts a selection asks for.
#[derive(Debug, Clone, Copy, Default)]
struct GroupWants {
    /// What of the tweet. The tweet itself is always fetched: a group whose
    /// tweet was deleted is left out.
    tweet: TweetWants,
    /// The actors' profiles (and what of them), when `actors` is selected.
    actors: Option<UserWants>,
}

impl GroupWants {
    /// Reads a `NotificationGroup` selection.
    fn of(group: Lookahead<'_>) -> Self {
        let actors = group.field("actors");
        Self {
            tweet: TweetWants::of(group.field("tweet")),
            actors: actors.exists().then(|| UserWants::of(actors)),
        }
    }
}

/// Whether the viewer silenced this user's notifications: a block, or a
/// mute that hides notifications (the rule notify-svc applies when it
/// removes their items; this catches what it has not removed yet).
fn silences(relation: &graph::Relation) -> bool {
    relation.viewer_blocks || (relation.viewer_mutes && relation.mute_hides_notifications)
}

/// The users among `users` whose notifications the viewer silenced: one
/// GetRelations per 500 users, sent at once.
async fn silenced(downstream: &Downstream, viewer: Viewer, users: &[u64]) -> Result<HashSet<u64>> {
    let others: Vec<u64> = users
        .iter()
        .copied()
        .filter(|&user| user != viewer.user_id)
        .collect();
    if others.is_empty() {
        return Ok(HashSet::new());
    }
    let batches =
        futures::future::try_join_all(others.chunks(graph_limits::MAX_BATCH).map(|batch| {
            let mut graph = downstream.graph.clone();
            async move {
                graph
                    .get_relations(graph::GetRelationsRequest {
                        viewer_id: viewer.user_id,
                        user_ids: batch.to_vec(),
                    })
                    .await
                    .gql()
            }
        }))
        .await?;
    Ok(batches
        .into_iter()
        .flat_map(|response| response.into_inner().relations)
        .filter(silences)
        .map(|relation| relation.user_id)
        .collect())
}

/// Hydrates `groups` for `viewer`, in order: actors the viewer silenced
/// are left out of each group, and a group is left out when none of its
/// actors remain, when it is about a tweet that no longer exists, or when
/// its type is unknown to this gateway. See the module docs for the calls
/// it makes.
async fn hydrate_groups(
    downstream: &Downstream,
    viewer: Viewer,
    groups: Vec<notify::NotificationGroup>,
    wants: GroupWants,
) -> Result<Vec<NotificationGroupNode>> {
    let groups: Vec<(NotificationType, notify::NotificationGroup)> = groups
        .into_iter()
        .filter_map(|mut group| {
            let Some(kind) = NotificationType::of(group.r#type) else {
                tracing::debug!(
                    group_id = group.group_id,
                    r#type = group.r#type,
                    "notification group of an unknown type left out"
                );
                return None;
            };
            group.actor_ids.retain(|&actor| actor != 0);
            group.actor_ids.truncate(MAX_SAMPLE_ACTORS);
            Some((kind, group))
        })
        .collect();
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut actor_ids: Vec<u64> = groups
        .iter()
        .flat_map(|(_, group)| group.actor_ids.iter().copied())
        .collect();
    actor_ids.sort_unstable();
    actor_ids.dedup();
    let mut tweet_ids: Vec<u64> = groups
        .iter()
        .filter(|(kind, group)| kind.has_tweet() && group.tweet_id != 0)
        .map(|(_, group)| group.tweet_id)
        .collect();
    tweet_ids.sort_unstable();
    tweet_ids.dedup();

    let actor_wants = wants.actors.filter(|_| !actor_ids.is_empty());
    let content = async {
        if tweet_ids.is_empty() {
            let actors = match actor_wants {
                Some(actor_wants) => {
                    Some(hydrate::users(downstream, Some(viewer), &actor_ids, actor_wants).await)
                }
                None => None,
            };
            return Ok((HashMap::new(), actors));
        }
        // The actors ride in the tweet authors' GetUsers.
        let (nodes, actors) = hydrate::tweets_and_users(
            downstream,
            Some(viewer),
            &tweet_ids,
            &[],
            wants.tweet,
            &actor_ids,
            actor_wants,
        )
        .await?;
        let tweets: HashMap<u64, TweetNode> = tweet_ids
            .iter()
            .copied()
            .zip(nodes)
            .filter_map(|(id, node)| node.map(|node| (id, node)))
            .collect();
        Ok::<_, async_graphql::Error>((tweets, actors))
    };
    let (silenced, content) = tokio::join!(silenced(downstream, viewer, &actor_ids), content);
    let silenced = silenced?;
    let (tweets, actors) = content?;
    let actors = actors.transpose()?.unwrap_or_default();

    Ok(groups
        .into_iter()
        .filter_map(|(kind, group)| {
            let shown: Vec<u64> = group
                .actor_ids
                .iter()
                .copied()
                .filter(|actor| !silenced.contains(actor))
                .collect();
            if shown.is_empty() {
                return None;
            }
            let tweet = if kind.has_tweet() {
                // Deleted (or never found): the group goes with it.
                Some(tweets.get(&group.tweet_id)?.clone())
            } else {
                None
            };
            let hidden = (group.actor_ids.len() - shown.len()) as u64;
            Some(NotificationGroupNode {
                group_id: group.group_id,
                kind,
                count: group.count.saturating_sub(hidden).max(shown.len() as u64),
                // A profile that could not be found (or was not asked for)
                // is left out.
                actors: shown
                    .iter()
                    .filter_map(|actor| actors.get(actor).cloned())
                    .collect(),
                tweet,
                latest_at_ms: group.latest_at_ms,
                unread: group.unread,
                cursor: group.cursor.clone(),
            })
        })
        .collect())
}

/// Which notification list to page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotificationList {
    /// The main list.
    Main,
    /// What the viewer's settings held back.
    Filtered,
}

/// One page of the viewer's notification groups: one ListNotifications,
/// then [`hydrate_groups`]. Arguments are checked before any call.
async fn page(
    ctx: &Context<'_>,
    list: NotificationList,
    first: Option<i32>,
    after: Option<String>,
    types: Option<Vec<NotificationType>>,
) -> Result<NotificationGroupConnection> {
    let viewer = require_viewer(ctx)?;
    let first = paging::first(first)?;
    let cursor = paging::after(after)?;
    if first == 0 {
        return Ok(NotificationGroupConnection::empty());
    }
    let downstream = &state(ctx)?.downstream;
    let response = downstream
        .notify
        .clone()
        .list_notifications(notify::ListNotificationsRequest {
            recipient_id: viewer.user_id,
            page: Some(PageRequest {
                cursor,
                limit: first,
            }),
            types: types
                .unwrap_or_default()
                .into_iter()
                .map(NotificationType::number)
                .collect(),
            filtered: list == NotificationList::Filtered,
        })
        .await
        .gql()?
        .into_inner();
    let wants = GroupWants::of(ctx.look_ahead().field("edges").field("node"));
    let nodes = hydrate_groups(downstream, viewer, response.groups, wants).await?;
    let next_cursor = response.page.unwrap_or_default().next_cursor;
    let start_cursor = nodes.first().map(|node| node.cursor.clone());
    let edges = nodes
        .into_iter()
        .map(|node| NotificationGroupEdge {
            cursor: node.cursor.clone(),
            node,
        })
        .collect();
    Ok(NotificationGroupConnection {
        edges,
        page_info: PageInfo::of_page(start_cursor, None, next_cursor),
    })
}

/// The viewer's unread count, shared by the fields that read it.
async fn unread(ctx: &Context<'_>) -> Result<notify::GetUnreadCountResponse> {
    let viewer = require_viewer(ctx)?;
    Ok(ctx
        .data::<Loaders>()?
        .unread_notifications()
        .load_one(viewer.user_id)
        .await
        .gql()?
        .unwrap_or_default())
}

/// The notification reads. Part of the `Query` type.
#[derive(Default)]
pub struct NotificationQueries;

#[Object]
impl NotificationQueries {
    /// The viewer's notifications, newest first, grouped: each like or
    /// retweet of one of their tweets (each follow) joins the group of the
    /// same tweet (of follows) while that group's newest item is under 12
    /// hours old; each mention, reply and quote is a group of its own.
    /// Groups older than 180 days are not listed. Actors the viewer blocks,
    /// or mutes with notifications hidden, are left out, and so are groups
    /// left without actors and groups whose tweet was deleted.
    /// UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Groups in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor`. Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
        #[graphql(
            desc = "Only groups of these types; omit (or give an empty list) for every type."
        )]
        types: Option<Vec<NotificationType>>,
    ) -> Result<NotificationGroupConnection> {
        page(ctx, NotificationList::Main, first, after, types).await
    }

    /// The viewer's filtered notifications: mentions, replies and quotes
    /// the viewer's `notificationSettings` held back from `notifications`
    /// (from accounts they do not follow, or new accounts). Listed like
    /// `notifications`, newest first, with its own cursors; never counted
    /// in `unreadNotificationsCount`. UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "paging::list_cost(first, child_complexity)")]
    async fn filtered_notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Groups in the page, 0 to 100; default 20. 0 returns an empty page. Outside 0 to 100: BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Continue after this cursor: a previous page's `pageInfo.endCursor`. Omit for the first page. A cursor only continues the list that issued it; a malformed one is BAD_USER_INPUT."
        )]
        after: Option<String>,
        #[graphql(
            desc = "Only groups of these types; omit (or give an empty list) for every type."
        )]
        types: Option<Vec<NotificationType>>,
    ) -> Result<NotificationGroupConnection> {
        page(ctx, NotificationList::Filtered, first, after, types).await
    }

    /// How many groups of the viewer's main list are newer than their read
    /// marker, at most 1000: `unreadNotificationsCapped` says when there
    /// are more (show "1000+"). Asked together, the two cost one call.
    /// UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "paging::CALL_COST.saturating_add(child_complexity)")]
    async fn unread_notifications_count(&self, ctx: &Context<'_>) -> Result<u64> {
        Ok(unread(ctx).await?.unread)
    }

    /// Whether more groups are unread than `unreadNotificationsCount`
    /// (which stops at 1000). UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "paging::CALL_COST.saturating_add(child_complexity)")]
    async fn unread_notifications_capped(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(unread(ctx).await?.capped)
    }

    /// The viewer's notification policy. UNAUTHENTICATED when not signed in.
    #[graphql(complexity = "paging::CALL_COST.saturating_add(child_complexity)")]
    async fn notification_settings(&self, ctx: &Context<'_>) -> Result<NotificationSettings> {
        let viewer = require_viewer(ctx)?;
        current_settings(&state(ctx)?.downstream, viewer).await
    }
}

async fn current_settings(downstream: &Downstream, viewer: Viewer) -> Result<NotificationSettings> {
    let response = downstream
        .notify
        .clone()
        .get_settings(notify::GetSettingsRequest {
            recipient_id: viewer.user_id,
        })
        .await
        .gql()?
        .into_inner();
    NotificationSettings::of(response.settings)
}

/// The read marker and the notification policy. Part of the `Mutation` type.
#[derive(Default)]
pub struct NotificationMutations;

#[Object]
impl NotificationMutations {
    /// Marks the viewer's notifications read up to a group: that group and
    /// every group listed below it. The marker never moves back, so marking
    /// an older group read again changes nothing. Returns the unread count
    /// after the call (as `unreadNotificationsCount` reads it, at most
    /// 1000): groups newer than `upTo` stay unread. NOT_FOUND when the
    /// viewer has no group with that id (any more).
    async fn mark_notifications_read(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Id of the newest group to mark read (a `NotificationGroup.id`); omit to mark every notification read. A malformed id is BAD_USER_INPUT."
        )]
        up_to: Option<ID>,
    ) -> Result<u64> {
        let viewer = mutating_viewer(ctx).await?;
        let up_to_group_id = up_to
            .as_ref()
            .map(|id| parse_id("upTo", id))
            .transpose()?
            .unwrap_or(0);
        let mut notify = state(ctx)?.downstream.notify.clone();
        notify
            .mark_read(notify::MarkReadRequest {
                recipient_id: viewer.user_id,
                up_to_group_id,
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => gql_error(
                    ErrorCode::NotFound,
                    format!("no notification group with id {up_to_group_id}"),
                )
                .extend_with(|_, extensions| extensions.set("field", "upTo")),
                _ => crate::error::from_status(status),
            })?;
        Ok(notify
            .get_unread_count(notify::GetUnreadCountRequest {
                recipient_id: viewer.user_id,
            })
            .await
            .gql()?
            .into_inner()
            .unread)
    }

    /// Changes the viewer's notification policy; only the arguments given
    /// change. Applies to notifications created from then on. Returns the
    /// policy. BAD_USER_INPUT when an argument breaks its rule, and then
    /// nothing changes.
    async fn update_notification_settings(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Where mentions, replies and quotes from accounts the viewer does not follow go. Omit to keep it."
        )]
        mentions_from_strangers: Option<StrangerPolicy>,
        #[graphql(
            desc = "Send mentions, replies and quotes from accounts younger than this many days to the filtered list: 0 to 365, 0 turns it off. Outside 0 to 365: BAD_USER_INPUT. Omit to keep it."
        )]
        new_accounts_days: Option<i32>,
    ) -> Result<NotificationSettings> {
        let viewer = mutating_viewer(ctx).await?;
        let new_accounts_days = new_accounts_days
            .map(|days| {
                u32::try_from(days)
                    .ok()
                    .filter(|days| *days <= MAX_NEW_ACCOUNT_DAYS)
                    .ok_or_else(|| {
                        bad_input(
                            "newAccountsDays",
                            format!(
                                "newAccountsDays must be between 0 and {MAX_NEW_ACCOUNT_DAYS}, got {days}"
                            ),
                        )
                    })
            })
            .transpose()?;
        let downstream = &state(ctx)?.downstream;
        // What is not given keeps its value. Two updates at once may each
        // keep the other's old value of the setting it did not give.
        let current = match (mentions_from_strangers, new_accounts_days) {
            (Some(_), Some(_)) => None,
            _ => Some(current_settings(downstream, viewer).await?),
        };
        let (policy, days) = match (current, mentions_from_strangers, new_accounts_days) {
            (_, Some(policy), Some(days)) => (policy, days),
            // Nothing to change.
            (Some(current), None, None) => return Ok(current),
            (Some(current), policy, days) => (
                policy.unwrap_or(current.mentions_from_strangers),
                days.unwrap_or(current.new_accounts_days),
            ),
            (None, _, _) => unreachable!("the current settings are read unless both are given"),
        };
        let response = downstream
            .notify
            .clone()
            .update_settings(notify::UpdateSettingsRequest {
                recipient_id: viewer.user_id,
                settings: Some(notify::NotificationSettings {
                    mentions_from_strangers: policy.number(),
                    new_accounts_days: days,
                }),
            })
            .await
            .map_err(|status| {
                // notify-svc names its request fields (`settings.new_accounts_days`).
                let message = status
                    .message()
                    .replace("settings.new_accounts_days", "newAccountsDays")
                    .replace("settings.mentions_from_strangers", "mentionsFromStrangers");
                crate::error::from_status(tonic::Status::new(status.code(), message))
            })?
            .into_inner();
        NotificationSettings::of(response.settings)
    }
}

/// `notificationAdded`: from the live feed, each main-list group of the
/// viewer created or grown from now on, fetched and hydrated as a page's
/// groups are.
pub(crate) async fn added(
    ctx: &Context<'_>,
) -> Result<impl Stream<Item = Result<NotificationGroupNode>> + use<>> {
    let viewer = require_viewer(ctx)?;
    let state = state(ctx)?.clone();
    let feed = state.feed.as_ref().ok_or_else(|| {
        gql_error(
            ErrorCode::Unavailable,
            "live updates are not available on this gateway",
        )
    })?;
    let events = feed.subscribe_notifications();
    let watch = NotificationWatch {
        viewer,
        events,
        state,
        wants: GroupWants::of(ctx.look_ahead()),
    };
    Ok(futures::stream::unfold(watch, |mut watch| async move {
        let item = watch.next().await?;
        Some((item, watch))
    }))
}

/// One subscription's view of the notification feed.
struct NotificationWatch {
    viewer: Viewer,
    events: tokio::sync::broadcast::Receiver<NotificationEvent>,
    state: Arc<GatewayState>,
    wants: GroupWants,
}

impl NotificationWatch {
    async fn next(&mut self) -> Option<Result<NotificationGroupNode>> {
        loop {
            match self.events.recv().await {
                Ok(event) if event.recipient_id == self.viewer.user_id => {
                    match self.group(event.group_id).await {
                        Ok(Some(group)) => return Some(Ok(group)),
                        // Gone already, or hidden from the viewer.
                        Ok(None) => continue,
                        Err(error) => return Some(Err(error)),
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        viewer = self.viewer.user_id,
                        "subscriber fell behind the notification feed"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The group as it is now: one GetNotifications, then the hydration of
    /// a page. `None` when it is gone, filtered, or hidden from the viewer.
    async fn group(&self, group_id: u64) -> Result<Option<NotificationGroupNode>> {
        let downstream = &self.state.downstream;
        let groups: Vec<notify::NotificationGroup> = downstream
            .notify
            .clone()
            .get_notifications(notify::GetNotificationsRequest {
                recipient_id: self.viewer.user_id,
                group_ids: vec![group_id],
            })
            .await
            .gql()?
            .into_inner()
            .groups
            .into_iter()
            .filter(|group| group.group_id == group_id && !group.filtered)
            .collect();
        if groups.is_empty() {
            return Ok(None);
        }
        Ok(hydrate_groups(downstream, self.viewer, groups, self.wants)
            .await?
            .pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_type_maps_both_ways() {
        for kind in [
            NotificationType::Mention,
            NotificationType::Reply,
            NotificationType::Quote,
            NotificationType::Like,
            NotificationType::Retweet,
            NotificationType::Follow,
        ] {
            assert_eq!(NotificationType::of(kind.number()), Some(kind));
        }
        assert_eq!(
            NotificationType::of(notify::NotificationType::Unspecified as i32),
            None
        );
        assert_eq!(NotificationType::of(99), None);
    }

    #[test]
    fn silenced_means_blocked_or_muted_with_notifications_hidden() {
        let relation = |viewer_blocks, blocks_viewer, viewer_mutes, hides| graph::Relation {
            user_id: 7,
            viewer_blocks,
            blocks_viewer,
            viewer_mutes,
            mute_hides_notifications: hides,
            mute_expires_at_ms: 0,
        };
        assert!(silences(&relation(true, false, false, false)));
        assert!(silences(&relation(false, false, true, true)));
        assert!(
            !silences(&relation(false, false, true, false)),
            "a plain mute"
        );
        assert!(
            !silences(&relation(false, false, false, true)),
            "a lapsed mute"
        );
        assert!(
            !silences(&relation(false, true, false, false)),
            "notify-svc does not silence whoever blocks the recipient"
        );
    }

    #[test]
    fn actors_are_priced_as_many_times_as_a_group_shows_them() {
        assert_eq!(actors_cost(3), 3 * MAX_SAMPLE_ACTORS + 1);
        assert_eq!(actors_cost(usize::MAX), usize::MAX);
    }
}
