//! Where users and the follow graph live.
//!
//! [`GraphStore`] is the one storage role of this service. Its methods are
//! batch-shaped and use plain domain types, so the embedded
//! [`EmbeddedGraphStore`] and Neo4j ([`Neo4jGraphStore`]) both implement it,
//! and `conformance` (behind the `conformance` feature) checks both against the same contract. Stores
//! enforce what only they can check atomically (username uniqueness, that
//! both users of a follow exist, idempotent follows) and publish the matching
//! domain event in the same durable step as the change; request validation
//! happens before, in the service.
//!
//! Batch writes (`create_users`, `follow_many`) are all or nothing for
//! every check the store makes. Their default implementations check up
//! front and then loop over the single-item methods; a store that can
//! commit a batch in one transaction (the embedded one) overrides them.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
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

/// A position in a follow list: lists are ordered by `follow_seq`
/// descending, then `user_id` descending.
///
/// `follow_seq` is a Snowflake id drawn when the follow was written, in
/// commit order, so a follow made while someone pages always sorts before
/// their cursor and an existing follow never moves: paging neither repeats
/// nor skips anyone who stays followed.
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

/// Storage of users and follows.
#[async_trait]
pub trait GraphStore: Send + Sync + 'static {
    /// Creates a user with a fresh id; `AlreadyExists` when the username is
    /// taken ignoring case.
    async fn create_user(&self, user: NewUser) -> Result<User, GraphError>;

    /// Creates `users` in order, all or none, returning them in the same
    /// order. Fails naming the first failing entry (see
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

    /// Looks users up by id: one answer per id, in order, `None` when missing.
    async fn get_users(&self, ids: &[u64]) -> Result<Vec<Option<User>>, GraphError>;

    /// Looks a user up by username, ignoring case.
    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, GraphError>;

    /// Makes `follower` follow `followee` and publishes `Followed`;
    /// `NotFound` when either is missing. Idempotent.
    async fn follow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError>;

    /// Makes each `(follower, followee)` pair a follow, in order, all or
    /// none: one [`FollowChange`] per pair, each as [`GraphStore::follow`]
    /// would answer right after the pairs before it (a pair already
    /// followed, or repeated, is unchanged), and one `Followed` per follow
    /// made. Fails naming the first failing pair: `NotFound` for a missing
    /// user, `InvalidArgument` for a self-follow or more than
    /// [`MAX_WRITE_BATCH`] pairs.
    ///
    /// This default is NOT one transaction: it checks every pair and that
    /// every user exists first, so a batch failing those checks follows
    /// nothing, then calls [`GraphStore::follow`] per pair. A backend
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
        if let Some(position) = counts.iter().position(Option::is_none) {
            return Err(user_not_found(ids[position]).in_batch("pairs", position / 2));
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
}

/// The failure of a call naming user `id` who does not exist.
pub(crate) fn user_not_found(id: u64) -> GraphError {
    GraphError::NotFound(format!("user {id} not found"))
}

/// The failure of creating a user whose username is taken.
pub(crate) fn username_taken(username: &str) -> GraphError {
    GraphError::AlreadyExists(format!("username `{username}` is taken"))
}

/// A follow or unfollow of oneself would count one user as two (and lock or
/// write one row twice). The service rejects it earlier; stores check it
/// too, so each is safe on its own.
pub(crate) fn distinct_users(follower: u64, followee: u64) -> Result<(), GraphError> {
    if follower == followee {
        return Err(GraphError::invalid(
            "followee_id",
            "must differ from follower_id",
        ));
    }
    Ok(())
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
