//! Where users, the follow graph, blocks and mutes live.
//!
//! [`GraphStore`] is the one storage role of this service. Its methods are
//! batch-shaped and use plain domain types, so the embedded
//! [`EmbeddedGraphStore`] and Neo4j ([`Neo4jGraphStore`]) both implement it,
//! and `conformance` (behind the `conformance` feature) checks both against the same contract. Stores
//! enforce what only they can check atomically (username uniqueness, that
//! both users of a follow exist, idempotent follows, no follow across a
//! block, one user per identity-provider account) and publish the matching
//! domain event in the same durable step as the change; request validation
//! happens before, in the service.
//!
//! Mutes may lapse. Stores never read the clock for that: every call that
//! judges a mute takes the caller's `now_ms`, and a mute whose expiry is not
//! after it counts as no mute at all (so tests can make one lapse without
//! waiting).
//!
//! Batch writes (`create_users`, `follow_many`) are all or nothing for
//! every check the store makes. Their default implementations check up
//! front and then loop over the single-item methods; a store that can
//! commit a batch in one transaction (the embedded one) overrides them.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod events;
mod neo4j;

use std::collections::HashSet;

use async_trait::async_trait;
use warble_proto::limits::graph::MAX_WRITE_BATCH;

use crate::error::GraphError;

pub use embedded::EmbeddedGraphStore;
pub use neo4j::Neo4jGraphStore;

/// A user profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Snowflake id, issued at creation.
    pub id: u64,
    /// The username as typed; unique ignoring ASCII case.
    pub username: String,
    /// Display name, already trimmed.
    pub display_name: String,
    /// Profile text.
    pub bio: String,
    /// Sign-up time in Unix milliseconds (the id's timestamp).
    pub created_at_ms: i64,
    /// Where the user says they are, trimmed; may be empty.
    pub location: String,
    /// Empty, or an http(s) URL.
    pub website: String,
    /// Verified by an operator ([`GraphStore::set_verified`]).
    pub verified: bool,
    /// The avatar: a media-svc image id, 0 for none. Only the id is kept
    /// here; the gateway checks the caller owns the image before setting it.
    pub avatar_media_id: u64,
}

/// A validated profile edit: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// Trimmed, 1 to 50 characters.
    pub display_name: Option<String>,
    /// At most 160 characters.
    pub bio: Option<String>,
    /// Trimmed, at most 30 characters; empty clears it.
    pub location: Option<String>,
    /// An http(s) URL of at most 100 characters; empty clears it.
    pub website: Option<String>,
    /// A media-svc image id the caller was checked to own; 0 clears it.
    pub avatar_media_id: Option<u64>,
}

impl ProfileUpdate {
    /// Applies the edit to `user`; whether anything changed.
    pub fn apply(self, user: &mut User) -> bool {
        let mut changed = false;
        for (field, value) in [
            (&mut user.display_name, self.display_name),
            (&mut user.bio, self.bio),
            (&mut user.location, self.location),
            (&mut user.website, self.website),
        ] {
            if let Some(value) = value
                && *field != value
            {
                *field = value;
                changed = true;
            }
        }
        if let Some(avatar) = self.avatar_media_id
            && user.avatar_media_id != avatar
        {
            user.avatar_media_id = avatar;
            changed = true;
        }
        changed
    }
}

/// What a profile edit or a change of the verified mark did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    /// The profile after the call.
    pub user: User,
    /// False when it already was as requested (nothing written, no event).
    pub changed: bool,
}

/// A validated request to create a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// 1 to 15 of `[A-Za-z0-9_]`.
    pub username: String,
    /// Trimmed, 1 to 50 characters.
    pub display_name: String,
    /// At most 160 characters.
    pub bio: String,
}

impl NewUser {
    /// The record this sign-up creates under `id`: created when its id
    /// was issued, with no location, website, avatar or badge yet.
    pub(crate) fn into_user(self, id: u64) -> User {
        User {
            id,
            username: self.username,
            display_name: self.display_name,
            bio: self.bio,
            created_at_ms: events::ms_of(id),
            location: String::new(),
            website: String::new(),
            verified: false,
            avatar_media_id: 0,
        }
    }
}

/// An identity provider's name for a person: who issues their tokens (a
/// token's `iss`) and whom those tokens name (its `sub`). Both are compared
/// exactly, as OpenID Connect says to; the pair is unique per person.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The issuer, 1 to 255 bytes.
    pub issuer: String,
    /// The subject, 1 to 255 bytes.
    pub subject: String,
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The user the identity is registered as.
    pub user: User,
    /// False when the identity had registered this user before (nothing
    /// written, no event).
    pub created: bool,
}

/// A user's follow counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowCounts {
    /// How many users follow this user.
    pub followers: u64,
    /// How many users this user follows.
    pub following: u64,
}

/// What a follow or unfollow did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowChange {
    /// False when the graph already was as requested (nothing written, no event).
    pub changed: bool,
    /// The followee's follower count after the call.
    pub followee_followers: u64,
    /// The follower's following count after the call.
    pub follower_following: u64,
}

/// A position in a follow, block or mute list: lists are ordered by
/// `follow_seq` descending, then `user_id` descending.
///
/// `follow_seq` is a Snowflake id drawn when the follow (block, mute) was
/// written, in commit order, so one made while someone pages always sorts
/// before their cursor and an existing one never moves: paging neither
/// repeats nor skips anyone who stays in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgePosition {
    /// The follow's sequence id (its timestamp is the follow time).
    pub follow_seq: u64,
    /// The other user of the edge.
    pub user_id: u64,
}

/// One entry of a follow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowEdge {
    /// The other user: the follower in a followers list, the followee in a following list.
    pub user_id: u64,
    /// When the follow happened, in Unix milliseconds.
    pub followed_at_ms: i64,
    /// Where this edge sits in the list.
    pub position: EdgePosition,
}

/// Which page of a follow list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    /// Start strictly after this position; `None` for the first page.
    pub after: Option<EdgePosition>,
    /// Most edges to return (at least one is always asked for).
    pub limit: usize,
}

/// One page of a follow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowPage {
    /// Edges, most recent follow first.
    pub edges: Vec<FollowEdge>,
    /// Where the next page starts; `None` when the list is exhausted. A
    /// filtered list may return fewer than `limit` edges (even none) and
    /// still have a next page, because a page bounds how far it scans.
    pub next: Option<EdgePosition>,
}

/// What a mute did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuteChange {
    /// False when an identical active mute (same expiry, same setting)
    /// already existed (nothing written, no event).
    pub changed: bool,
    /// When the mute lapses, in Unix milliseconds; `None` for never.
    pub expires_at_ms: Option<i64>,
}

/// One entry of a block or mute list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationEdge {
    /// The blocked or muted user.
    pub user_id: u64,
    /// When the block or mute was made, in Unix milliseconds (the seq's time).
    pub since_ms: i64,
    /// For a mute, when it lapses (`None` for never); `None` for a block.
    pub expires_at_ms: Option<i64>,
    /// For a mute, whether notifications are hidden too; false for a block.
    pub hide_notifications: bool,
    /// Where this edge sits in the list.
    pub position: EdgePosition,
}

/// One page of a block or mute list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationPage {
    /// Edges, most recent first.
    pub edges: Vec<RelationEdge>,
    /// Where the next page starts; `None` when the list is exhausted. The
    /// mute list skips lapsed mutes, so a page may be short (even empty)
    /// and still have a next one, as a filtered follow list.
    pub next: Option<EdgePosition>,
}

/// How a viewer relates to one user. The default is "no relation", the
/// answer for an anonymous viewer and for unknown users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relation {
    /// The viewer blocks the user.
    pub viewer_blocks: bool,
    /// The user blocks the viewer.
    pub blocks_viewer: bool,
    /// The viewer mutes the user, and the mute has not lapsed.
    pub viewer_mutes: bool,
    /// The active mute hides the user's notifications too.
    pub mute_hides_notifications: bool,
    /// When the active mute lapses; `None` for never or no mute.
    pub mute_expires_at_ms: Option<i64>,
}

/// A user as a scan lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedUser {
    /// The profile.
    pub user: User,
    /// Their follow counts, read with it.
    pub counts: FollowCounts,
}

/// One page of [`GraphStore::scan_users`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserScanPage {
    /// Users, ascending by id.
    pub users: Vec<ScannedUser>,
    /// The id the next page starts after; `None` when the scan is complete.
    pub next: Option<u64>,
}

/// Storage of users, follows, blocks and mutes.
#[async_trait]
pub trait GraphStore: Send + Sync + 'static {
    /// Creates a user with a fresh id and publishes `UserCreated`;
    /// `AlreadyExists` when the username is taken ignoring case.
    async fn create_user(&self, user: NewUser) -> Result<User, GraphError>;

    /// Creates `users` in order, all or none, returning them in the same
    /// order, with one `UserCreated` each. Fails naming the first failing entry (see
    /// [`GraphError::in_batch`]): `AlreadyExists` when its username is taken,
    /// ignoring case, by an existing user or an earlier entry;
    /// `InvalidArgument` for more than [`MAX_WRITE_BATCH`] users.
    ///
    /// This default is NOT one transaction: it checks every username first,
    /// so a batch failing those checks creates no one, then calls
    /// [`GraphStore::create_user`] per user. A username claimed concurrently,
    /// or a backend failure part-way, leaves the users before it created.
    /// Stores that can write a batch atomically override it.
    async fn create_users(&self, users: Vec<NewUser>) -> Result<Vec<User>, GraphError> {
        check_write_batch("users", users.len())?;
        let mut claimed = HashSet::with_capacity(users.len());
        for (index, user) in users.iter().enumerate() {
            let repeated = !claimed.insert(user.username.to_ascii_lowercase());
            if repeated || self.get_user_by_username(&user.username).await?.is_some() {
                return Err(username_taken(&user.username).in_batch("users", index));
            }
        }
        let mut created = Vec::with_capacity(users.len());
        for (index, user) in users.into_iter().enumerate() {
            let user = self
                .create_user(user)
                .await
                .map_err(|error| error.in_batch("users", index))?;
            created.push(user);
        }
        Ok(created)
    }

    /// Creates `user` bound to `identity`, in one atomic step with the
    /// binding and its `UserCreated`. Idempotent: when `identity` is bound
    /// already to a user with `user.username` (ignoring case), returns that
    /// user with `created` false, writing nothing. `AlreadyExists` when it
    /// is bound to a user with another username ([`identity_registered_as`]),
    /// or when the username is taken by another user, as
    /// [`GraphStore::create_user`]; a failed registration binds nothing.
    async fn register_user(
        &self,
        identity: Identity,
        user: NewUser,
    ) -> Result<Registration, GraphError>;

    /// The id of the user `identity` registered as; `None` when it has not.
    async fn resolve_identity(&self, identity: &Identity) -> Result<Option<u64>, GraphError>;

    /// Looks users up by id: one answer per id, in order, `None` when missing.
    async fn get_users(&self, ids: &[u64]) -> Result<Vec<Option<User>>, GraphError>;

    /// Looks a user up by username, ignoring case.
    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, GraphError>;

    /// Makes `follower` follow `followee` and publishes `Followed`;
    /// `NotFound` when either is missing, `PermissionDenied` when either
    /// blocks the other (checked in the follow's own transaction, so a
    /// block and a follow racing never leave both). Idempotent.
    async fn follow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError>;

    /// Makes each `(follower, followee)` pair a follow, in order, all or
    /// none: one [`FollowChange`] per pair, each as [`GraphStore::follow`]
    /// would answer right after the pairs before it (a pair already
    /// followed, or repeated, is unchanged), and one `Followed` per follow
    /// made. Fails naming the first failing pair: `NotFound` for a missing
    /// user, `PermissionDenied` for a pair across a block,
    /// `InvalidArgument` for a self-follow or more than [`MAX_WRITE_BATCH`]
    /// pairs.
    ///
    /// This default is NOT one transaction: it checks every pair, that
    /// every user exists and that no pair crosses a block first, so a batch
    /// failing those checks follows nothing, then calls
    /// [`GraphStore::follow`] per pair (which checks the block again). A backend
    /// failure part-way leaves the follows before it made (retrying the
    /// whole batch is safe: follows are idempotent).
    /// Stores that can write a batch atomically override it.
    async fn follow_many(&self, pairs: &[(u64, u64)]) -> Result<Vec<FollowChange>, GraphError> {
        check_follow_batch(pairs)?;
        let ids: Vec<u64> = pairs
            .iter()
            .flat_map(|&(follower, followee)| [follower, followee])
            .collect();
        let counts = self.follow_counts(&ids).await?;
        let blocked = self.blocks_between(pairs).await?;
        for (index, pair_counts) in counts.chunks(2).enumerate() {
            if let Some(missing) = pair_counts.iter().position(Option::is_none) {
                return Err(user_not_found(ids[2 * index + missing]).in_batch("pairs", index));
            }
            if blocked[index] {
                return Err(follow_refused().in_batch("pairs", index));
            }
        }
        let mut changes = Vec::with_capacity(pairs.len());
        for (index, &(follower, followee)) in pairs.iter().enumerate() {
            let change = self
                .follow(follower, followee)
                .await
                .map_err(|error| error.in_batch("pairs", index))?;
            changes.push(change);
        }
        Ok(changes)
    }

    /// Removes the follow and publishes `Unfollowed`; `NotFound` when either
    /// user is missing. Idempotent.
    async fn unfollow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError>;

    /// A page of `user`'s followers, most recent first; `NotFound` when `user` is missing.
    async fn list_followers(&self, user: u64, page: PageQuery) -> Result<FollowPage, GraphError>;

    /// A page of whom `user` follows, most recent first, keeping only
    /// followees with at least `min_followers` followers; `NotFound` when
    /// `user` is missing.
    async fn list_following(
        &self,
        user: u64,
        page: PageQuery,
        min_followers: u64,
    ) -> Result<FollowPage, GraphError>;

    /// Follow counts per id, in order, `None` when the user is missing.
    async fn follow_counts(&self, ids: &[u64]) -> Result<Vec<Option<FollowCounts>>, GraphError>;

    /// Whether each `(follower, followee)` pair is a follow, in order.
    async fn is_following(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError>;

    /// Looks users up by username, ignoring case: one answer per name, in
    /// order, `None` when no user has it.
    async fn get_users_by_usernames(
        &self,
        usernames: &[String],
    ) -> Result<Vec<Option<User>>, GraphError>;

    /// Applies `update` to `user`'s profile; `NotFound` when missing.
    /// Publishes `ProfileUpdated` (the whole profile after) when anything
    /// changed, in the same step.
    async fn update_profile(
        &self,
        user: u64,
        update: ProfileUpdate,
    ) -> Result<ProfileChange, GraphError>;

    /// Sets `user`'s verified mark; `NotFound` when missing. Publishes
    /// `ProfileUpdated` when the mark changed, in the same step.
    async fn set_verified(&self, user: u64, verified: bool) -> Result<ProfileChange, GraphError>;

    /// Makes `blocker` block `blocked`; whether that changed anything.
    /// `NotFound` when either is missing, `InvalidArgument` when they are
    /// the same. In one atomic step: removes the follows between the two,
    /// both ways, each with its `Unfollowed` carrying the counts after it,
    /// as [`GraphStore::unfollow`] would; records the block under a fresh
    /// seq (its list position); publishes `Blocked` after those
    /// `Unfollowed`. Idempotent: an existing block changes nothing.
    async fn block(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError>;

    /// Removes the block and publishes `Unblocked`; whether there was one.
    /// `NotFound` when either is missing, `InvalidArgument` when they are
    /// the same. Follows the block removed stay removed.
    async fn unblock(&self, blocker: u64, blocked: u64) -> Result<bool, GraphError>;

    /// Makes `muter` mute `muted` until `expires_at_ms` (`None`: until
    /// unmuted), hiding their notifications too when `hide_notifications`.
    /// `NotFound` when either is missing; `InvalidArgument` when they are
    /// the same or the expiry is not after `now_ms`. Replaces an active
    /// mute's expiry and setting (keeping its list position); a lapsed mute
    /// counts as none, so muting again makes a new one (a new position).
    /// Publishes `Muted` when anything changed.
    async fn mute(
        &self,
        muter: u64,
        muted: u64,
        expires_at_ms: Option<i64>,
        hide_notifications: bool,
        now_ms: i64,
    ) -> Result<MuteChange, GraphError>;

    /// Removes an active mute and publishes `Unmuted`; whether there was
    /// one (a lapsed mute is none). `NotFound` when either is missing,
    /// `InvalidArgument` when they are the same.
    async fn unmute(&self, muter: u64, muted: u64, now_ms: i64) -> Result<bool, GraphError>;

    /// A page of whom `user` blocks, most recent block first; `NotFound`
    /// when `user` is missing. Paging is stable as in the follow lists.
    async fn list_blocked(&self, user: u64, page: PageQuery) -> Result<RelationPage, GraphError>;

    /// A page of whom `user` mutes, most recent mute first, mutes lapsed at
    /// `now_ms` skipped (a page may be short and still have a next one);
    /// `NotFound` when `user` is missing. Paging is stable as in the follow
    /// lists.
    async fn list_muted(
        &self,
        user: u64,
        page: PageQuery,
        now_ms: i64,
    ) -> Result<RelationPage, GraphError>;

    /// How `viewer` relates to each of `ids`, in order, repeats answered in
    /// place, unknown users (and every user, for viewer 0) unrelated. Point
    /// lookups per id, never a scan of the viewer's lists: timelines call
    /// it for every page, whoever blocks thousands.
    async fn relations(
        &self,
        viewer: u64,
        ids: &[u64],
        now_ms: i64,
    ) -> Result<Vec<Relation>, GraphError>;

    /// Whether either user of each pair blocks the other, in order.
    async fn blocks_between(&self, pairs: &[(u64, u64)]) -> Result<Vec<bool>, GraphError>;

    /// Up to `limit` (at least one is always asked for) users with ids
    /// above `after` (from the first when `None`), ascending by id, each
    /// with their follow counts: a scan of every user, for rebuilding a
    /// search index. Following `next` from `None` lists every user exactly
    /// once (users are never deleted); one created meanwhile may or may not
    /// be listed.
    async fn scan_users(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<UserScanPage, GraphError>;
}

/// The failure of a call naming user `id` who does not exist.
pub(crate) fn user_not_found(id: u64) -> GraphError {
    GraphError::NotFound(format!("user {id} not found"))
}

/// The failure of creating a user whose username is taken.
pub(crate) fn username_taken(username: &str) -> GraphError {
    GraphError::AlreadyExists(format!("username `{username}` is taken"))
}

/// The refusal of registering an identity that registered another
/// username: the client learns which one it already has.
pub(crate) fn identity_registered_as(username: &str) -> GraphError {
    GraphError::AlreadyExists(format!(
        "this identity is already registered as @{username}"
    ))
}

/// A registration of an identity already bound to `existing`: the same
/// user again when `username` is theirs (ignoring case), else refused.
pub(crate) fn repeated_registration(
    existing: User,
    username: &str,
) -> Result<Registration, GraphError> {
    if existing.username.eq_ignore_ascii_case(username) {
        Ok(Registration {
            user: existing,
            created: false,
        })
    } else {
        Err(identity_registered_as(&existing.username))
    }
}

/// The failure of reading the user an identity is bound to when there is
/// no such user: the binding outlived its user, which stores never do.
pub(crate) fn dangling_identity(user_id: u64) -> GraphError {
    GraphError::backend(format!(
        "an identity is bound to user {user_id}, who does not exist"
    ))
}

/// The refusal of a follow across a block. It does not say who blocks
/// whom: the blocked user learns no more than that they cannot follow.
pub(crate) fn follow_refused() -> GraphError {
    GraphError::PermissionDenied("you cannot follow this user".into())
}

/// A follow or unfollow of oneself would count one user as two (and lock or
/// write one row twice). The service rejects it earlier; stores check it
/// too, so each is safe on its own.
pub(crate) fn distinct_users(follower: u64, followee: u64) -> Result<(), GraphError> {
    distinct_pair(follower, followee, "follower_id", "followee_id")
}

/// Blocks and mutes, like follows, relate two different users: `second`
/// (named `second_field`) must differ from `first` (named `first_field`).
pub(crate) fn distinct_pair(
    first: u64,
    second: u64,
    first_field: &str,
    second_field: &str,
) -> Result<(), GraphError> {
    if first == second {
        return Err(GraphError::invalid(
            second_field,
            format!("must differ from {first_field}"),
        ));
    }
    Ok(())
}

/// Whether a mute lapsing at `expires_at_ms` (`None`: never) still holds at `now_ms`.
pub(crate) fn mute_is_active(expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    expires_at_ms.is_none_or(|at| at > now_ms)
}

/// A mute must not lapse before it is made (the service computes expiries
/// from positive durations; the store checks too, so it is safe on its own).
pub(crate) fn check_mute_expiry(expires_at_ms: Option<i64>, now_ms: i64) -> Result<(), GraphError> {
    if !mute_is_active(expires_at_ms, now_ms) {
        return Err(GraphError::invalid("expires_at_ms", "must be after now"));
    }
    Ok(())
}

/// A mute's expiry as stored: 0 for never (ms since 1970 are never 0 for a
/// real expiry), as on the wire.
pub(crate) fn stored_expiry(expires_at_ms: Option<i64>) -> i64 {
    expires_at_ms.unwrap_or(0)
}

/// The inverse of [`stored_expiry`].
pub(crate) fn expiry_from_stored(stored: i64) -> Option<i64> {
    (stored != 0).then_some(stored)
}

/// At most [`MAX_WRITE_BATCH`] entries in the batch request field `field`;
/// an empty batch is fine (it does nothing). Every store checks it, and the
/// service checks it first, so an oversized batch costs no per-entry work.
pub(crate) fn check_write_batch(field: &str, len: usize) -> Result<(), GraphError> {
    check_batch_len(field, len, MAX_WRITE_BATCH)
}

/// At most `max` entries in the batch request field `field`.
pub(crate) fn check_batch_len(field: &str, len: usize, max: usize) -> Result<(), GraphError> {
    if len > max {
        return Err(GraphError::invalid(
            field,
            format!("at most {max} entries per call, got {len}"),
        ));
    }
    Ok(())
}

/// What every store checks of a follow batch before touching the graph: its
/// size, and that no pair is a self-follow.
pub(crate) fn check_follow_batch(pairs: &[(u64, u64)]) -> Result<(), GraphError> {
    check_write_batch("pairs", pairs.len())?;
    for (index, &(follower, followee)) in pairs.iter().enumerate() {
        distinct_users(follower, followee).map_err(|error| error.in_batch("pairs", index))?;
    }
    Ok(())
}
