//! The timeline cache: what fan-out writes and timeline reads share.
//!
//! Per user, a home timeline: a set of (tweet id, author id) ordered by tweet
//! id, newest first (Snowflake ids sort by time), capped at
//! [`TIMELINE_CAPACITY`] entries with the oldest dropped. A timeline is
//! *built* once it holds everything its owner should see down to its oldest
//! entry; fan-out may add entries to an unbuilt timeline (so a push racing a
//! rebuild is never lost), but readers treat an unbuilt timeline as a miss
//! and rebuild it. Per celebrity, a capped set of recent tweet ids merged into
//! followers' timelines at read time. Per user, a last-active mark that
//! decides whether fan-out still writes to them.
//!
//! It is a cache: everything here can be rebuilt from the tweet and graph
//! stores. The embedded implementation lives in memory and is shared by the
//! services of one process; the Redis one serves separate processes.
//! Writes are batch-shaped (one call reaches thousands of timelines) so the
//! Redis implementation can pipeline them.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod redis;

use async_trait::async_trait;

pub use embedded::EmbeddedTimelineCache;
pub use redis::RedisTimelineCache;

/// Entries kept per home timeline; older ones are dropped and served by the pull path.
pub const TIMELINE_CAPACITY: usize = 800;
/// Tweets kept per celebrity recent-tweet set.
pub const CELEBRITY_CAPACITY: usize = 800;

/// One tweet in a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The tweet's Snowflake id.
    pub tweet_id: u64,
    /// Its author, so timelines can drop an unfollowed author's tweets.
    pub author_id: u64,
}

/// A page read from a cached timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPage {
    /// Entries strictly older than the requested position, newest first.
    pub entries: Vec<Entry>,
    /// The timeline held more entries older than the last one returned.
    /// When false and the timeline is at capacity, older tweets may exist
    /// that only the pull path can find.
    pub has_more: bool,
    /// How many entries the timeline holds in all.
    pub len: usize,
}

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backing store is unreachable or failed; callers may retry.
    #[error("timeline cache unavailable: {0}")]
    Unavailable(String),
}

/// The timeline cache contract (see the crate docs).
#[async_trait]
pub trait TimelineCache: Send + Sync + 'static {
    /// Adds `entry` to each of `users`' timelines (built or not), keeping each
    /// within capacity. Idempotent.
    async fn push(&self, users: &[u64], entry: Entry) -> Result<(), CacheError>;

    /// Removes `tweet_id` from each of `users`' timelines. Idempotent.
    async fn remove(&self, users: &[u64], tweet_id: u64) -> Result<(), CacheError>;

    /// Adds many entries to one timeline (follow backfill, rebuild write-back),
    /// keeping it within capacity. With `mark_built`, the timeline counts as
    /// built afterwards. Idempotent.
    async fn insert(
        &self,
        user: u64,
        entries: &[Entry],
        mark_built: bool,
    ) -> Result<(), CacheError>;

    /// Removes every entry by `author_id` from `user`'s timeline (unfollow).
    async fn remove_author(&self, user: u64, author_id: u64) -> Result<(), CacheError>;

    /// Drops `user`'s timeline entirely, so the next read rebuilds it.
    async fn evict(&self, user: u64) -> Result<(), CacheError>;

    /// Up to `limit` entries of `user`'s timeline strictly older than
    /// `before` (all when `None`), newest first; `None` when the timeline is
    /// not built (a miss).
    async fn read(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<CachedPage>, CacheError>;

    /// Records a celebrity's new tweet in their recent-tweet set. Kept even
    /// when the set is not filled yet, so a fill racing this add loses nothing.
    async fn celebrity_add(&self, author_id: u64, tweet_id: u64) -> Result<(), CacheError>;

    /// Removes a tweet from a celebrity's recent-tweet set.
    async fn celebrity_remove(&self, author_id: u64, tweet_id: u64) -> Result<(), CacheError>;

    /// Adds the tweet store's view of a celebrity's recent tweets to their set
    /// (a union with anything added meanwhile) and marks the set filled.
    async fn celebrity_fill(&self, author_id: u64, tweet_ids: &[u64]) -> Result<(), CacheError>;

    /// For each author, up to `limit` recent tweet ids strictly older than
    /// `before`, newest first; `None` for an author whose set was never filled (a miss).
    async fn celebrity_recent(
        &self,
        author_ids: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Option<Vec<u64>>>, CacheError>;

    /// Records that `user` was active at `at_ms` (Unix milliseconds). A mark
    /// only moves forward: an `at_ms` older than the one held changes nothing.
    async fn mark_active(&self, user: u64, at_ms: u64) -> Result<(), CacheError>;

    /// The last-active mark of each user, in order; `None` when never seen.
    async fn last_active(&self, users: &[u64]) -> Result<Vec<Option<u64>>, CacheError>;
}
