//! Where users and the follow graph live.
//!
//! [`GraphStore`] is the one storage role of this service. Its methods are
//! batch-shaped and use plain domain types, so the embedded
//! [`EmbeddedGraphStore`] and Neo4j ([`Neo4jGraphStore`]) both implement it,
//! and [`conformance`] checks both against the same contract. Stores
//! enforce what only they can check atomically (username uniqueness, that
//! both users of a follow exist, idempotent follows) and publish the matching
//! domain event in the same durable step as the change; request validation
//! happens before, in the service.

pub mod conformance;
mod embedded;
mod neo4j;

use async_trait::async_trait;

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

    /// Looks users up by id: one answer per id, in order, `None` when missing.
    async fn get_users(&self, ids: &[u64]) -> Result<Vec<Option<User>>, GraphError>;

    /// Looks a user up by username, ignoring case.
    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, GraphError>;

    /// Makes `follower` follow `followee` and publishes `Followed`;
    /// `NotFound` when either is missing. Idempotent.
    async fn follow(&self, follower: u64, followee: u64) -> Result<FollowChange, GraphError>;

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
