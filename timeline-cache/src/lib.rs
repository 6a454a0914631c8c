//! The timeline cache: what fan-out writes and timeline reads share.
//!
//! Per user, a home timeline: a set of [`Entry`]s (a tweet, or a retweet of
//! one) ordered by position, newest first (Snowflake ids sort by time), capped at
//! [`TIMELINE_CAPACITY`] entries with the oldest dropped. A timeline is
//! *built* once it holds everything its owner should see down to its oldest
//! entry; fan-out may add entries to an unbuilt timeline (so a push racing a
//! rebuild is never lost), but readers treat an unbuilt timeline as a miss
//! and rebuild it. Per celebrity, a capped set of recent tweet ids merged into
//! followers' timelines at read time. Per user, a last-active mark that
//! decides whether fan-out still writes to them, and the set of celebrities
//! they follow, so a page finds what to merge without asking the graph.
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
/// Entries kept per celebrity recent set.
pub const CELEBRITY_CAPACITY: usize = 800;
/// How long a recorded followed-celebrity set lasts before the next read
/// asks the graph again. Fan-out keeps recorded sets current as follows
/// come and go; this bounds what a recording racing a follow can miss.
pub const FOLLOWED_CELEBRITIES_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// A retweet is not pushed into a timeline whose newest this-many entries
/// hold its tweet already (the contract's number).
pub const RETWEET_DEDUP_WINDOW: usize = warble_proto::limits::timeline::RETWEET_DEDUP_WINDOW;

/// One entry of a timeline: a tweet, or someone's retweet of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The tweet's Snowflake id.
    pub tweet_id: u64,
    /// Its author, so timelines can drop an unfollowed author's tweets.
    pub author_id: u64,
    /// The retweet's Snowflake id when this entry is a retweet, else 0.
    pub retweet_id: u64,
    /// Who retweeted, when this entry is a retweet, else 0.
    pub retweeted_by: u64,
}

impl Entry {
    /// A tweet's own entry.
    pub fn tweet(tweet_id: u64, author_id: u64) -> Self {
        Self {
            tweet_id,
            author_id,
            retweet_id: 0,
            retweeted_by: 0,
        }
    }

    /// `retweeted_by`'s retweet `retweet_id` of `author_id`'s tweet `tweet_id`.
    pub fn retweet(retweet_id: u64, retweeted_by: u64, tweet_id: u64, author_id: u64) -> Self {
        Self {
            tweet_id,
            author_id,
            retweet_id,
            retweeted_by,
        }
    }

    /// Whether this entry is a retweet.
    pub fn is_retweet(&self) -> bool {
        self.retweet_id != 0
    }

    /// Where the entry sits in a timeline, and its identity there: the
    /// retweet's id for a retweet, the tweet's id otherwise. Both are
    /// Snowflake ids, so positions order entries by time and never collide.
    pub fn position(&self) -> u64 {
        if self.is_retweet() {
            self.retweet_id
        } else {
            self.tweet_id
        }
    }

    /// Whether `user` wrote the tweet or retweeted it here.
    pub fn involves(&self, user: u64) -> bool {
        self.author_id == user || self.retweeted_by == user
    }

    /// Whether this entry reached a timeline through `user`: their own
    /// tweet, or their retweet. Unfollowing `user` removes exactly these.
    pub fn comes_from(&self, user: u64) -> bool {
        if self.is_retweet() {
            self.retweeted_by == user
        } else {
            self.author_id == user
        }
    }
}

/// Which entries [`TimelineCache::remove_user`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The ones that came through the user ([`Entry::comes_from`]): after
    /// an unfollow. Retweets of their tweets by others stay.
    ComingFrom,
    /// Every one the user is part of ([`Entry::involves`]): after a block.
    Involving,
}

impl Removal {
    /// Whether `entry` goes when removing `user` this way.
    pub fn matches(self, entry: &Entry, user: u64) -> bool {
        match self {
            Self::ComingFrom => entry.comes_from(user),
            Self::Involving => entry.involves(user),
        }
    }
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

/// A celebrity's recent entries, read from their set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecentEntries {
    /// Up to the number asked, strictly older than the position asked,
    /// newest first.
    pub entries: Vec<Entry>,
    /// The set holds every entry the celebrity has: it holds fewer than
    /// [`CELEBRITY_CAPACITY`], so nothing was ever trimmed from it (see
    /// [`TimelineCache::celebrity_fill`] and
    /// [`TimelineCache::celebrity_remove`]). Fewer entries than asked then
    /// means there are no more, and the tweet store need not be asked.
    pub complete: bool,
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
    /// within capacity. Idempotent. A retweet is not added to a timeline
    /// whose newest [`RETWEET_DEDUP_WINDOW`] entries already hold its tweet
    /// (the tweet's own entry or another retweet of it).
    async fn push(&self, users: &[u64], entry: Entry) -> Result<(), CacheError>;

    /// Removes the entry at `position` (a tweet's own entry, or a retweet)
    /// from each of `users`' timelines. Idempotent.
    async fn remove(&self, users: &[u64], position: u64) -> Result<(), CacheError>;

    /// Adds many entries to one timeline (follow backfill, rebuild write-back),
    /// keeping it within capacity. With `mark_built`, the timeline counts as
    /// built afterwards. Idempotent. No retweet window applies: callers
    /// choose what they write.
    async fn insert(
        &self,
        user: u64,
        entries: &[Entry],
        mark_built: bool,
    ) -> Result<(), CacheError>;

    /// Removes the entries of `other` from `user`'s timeline, as `removal`
    /// says (unfollow, block).
    async fn remove_user(&self, user: u64, other: u64, removal: Removal) -> Result<(), CacheError>;

    /// Drops `user`'s timeline entirely, so the next read rebuilds it.
    async fn evict(&self, user: u64) -> Result<(), CacheError>;

    /// Up to `limit` entries of `user`'s timeline strictly older than
    /// position `before` (all when `None`), newest first; `None` when the timeline is
    /// not built (a miss).
    async fn read(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<CachedPage>, CacheError>;

    /// Records a celebrity's new tweet, or retweet, in their recent set
    /// (`entry` is their own tweet or has `retweeted_by == celebrity`). Kept
    /// even when the set is not filled yet, so a fill racing this add loses
    /// nothing.
    async fn celebrity_add(&self, celebrity: u64, entry: Entry) -> Result<(), CacheError>;

    /// Removes the entry at `position` from a celebrity's recent set. A set
    /// that was full loses its *filled* mark with it (the next read fills it
    /// again): it may now hold fewer than [`CELEBRITY_CAPACITY`] while older
    /// entries, trimmed before, exist, so its size would no longer say it is
    /// complete ([`RecentEntries::complete`]).
    async fn celebrity_remove(&self, celebrity: u64, position: u64) -> Result<(), CacheError>;

    /// Adds the tweet store's view of a celebrity's recent entries to their
    /// set (a union with anything added meanwhile) and marks the set filled.
    /// `entries` are the celebrity's newest [`CELEBRITY_CAPACITY`] entries,
    /// or all of them when they have fewer: a filled set smaller than that
    /// is the celebrity's whole history.
    async fn celebrity_fill(&self, celebrity: u64, entries: &[Entry]) -> Result<(), CacheError>;

    /// For each celebrity, up to `limit` recent entries strictly older than
    /// position `before`, newest first, and whether their set is complete;
    /// `None` for one whose set is not filled (a miss).
    async fn celebrity_recent(
        &self,
        celebrities: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Option<RecentEntries>>, CacheError>;

    /// Records that `user` was active at `at_ms` (Unix milliseconds). A mark
    /// only moves forward: an `at_ms` older than the one held changes nothing.
    async fn mark_active(&self, user: u64, at_ms: u64) -> Result<(), CacheError>;

    /// The last-active mark of each user, in order; `None` when never seen.
    async fn last_active(&self, users: &[u64]) -> Result<Vec<Option<u64>>, CacheError>;

    /// The celebrities `user` follows, as recorded; `None` when nothing is
    /// recorded (never, or longer ago than [`FOLLOWED_CELEBRITIES_TTL`]):
    /// the caller asks the graph and records the answer.
    async fn followed_celebrities(&self, user: u64) -> Result<Option<Vec<u64>>, CacheError>;

    /// Records the celebrities `user` follows (an empty set included),
    /// replacing what was recorded, for [`FOLLOWED_CELEBRITIES_TTL`].
    async fn set_followed_celebrities(
        &self,
        user: u64,
        celebrities: &[u64],
    ) -> Result<(), CacheError>;

    /// Adds `celebrity` to each of `users`' recorded sets (a follow, or an
    /// author reaching the threshold); users with nothing recorded stay so.
    async fn add_followed_celebrity(&self, users: &[u64], celebrity: u64)
    -> Result<(), CacheError>;

    /// Removes `celebrity` from each of `users`' recorded sets (an unfollow,
    /// or an author falling below the threshold).
    async fn remove_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError>;
}
