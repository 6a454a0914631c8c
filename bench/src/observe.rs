//! Timestamps fan-out writes as they land, so post-to-visible latency is
//! measured per follower without polling thousands of timelines (which
//! would itself load the two cores the stack runs on).
//!
//! [`ObservedCache`] wraps the cache fanout-svc writes: when a `push`
//! returns, its entry is in each of those users' cached timelines, so the
//! next read of any of them shows it. Reads and every other operation pass
//! straight through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use warble_timeline_cache::{CacheError, CachedPage, Entry, Removal, TimelineCache};

/// One completed `push`: when it returned and to how many timelines.
#[derive(Debug, Clone, Copy)]
pub struct Landing {
    /// When the push returned.
    pub at: Instant,
    /// Timelines written.
    pub users: usize,
}

/// Push completions by tweet id.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    landings: Mutex<HashMap<u64, Vec<Landing>>>,
}

impl DeliveryLog {
    fn record(&self, tweet_id: u64, users: usize) {
        let landing = Landing {
            at: Instant::now(),
            users,
        };
        self.landings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(tweet_id)
            .or_default()
            .push(landing);
    }

    /// Every push of `tweet_id` so far, in completion order.
    pub fn landings(&self, tweet_id: u64) -> Vec<Landing> {
        self.landings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&tweet_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Timelines `tweet_id` has been written to so far.
    pub fn delivered(&self, tweet_id: u64) -> usize {
        self.landings(tweet_id)
            .iter()
            .map(|landing| landing.users)
            .sum()
    }
}

/// A [`TimelineCache`] that records every push in a [`DeliveryLog`].
pub struct ObservedCache {
    inner: Arc<dyn TimelineCache>,
    log: Arc<DeliveryLog>,
}

impl ObservedCache {
    /// Wraps `inner`, recording into `log`.
    pub fn new(inner: Arc<dyn TimelineCache>, log: Arc<DeliveryLog>) -> Self {
        Self { inner, log }
    }
}

#[async_trait]
impl TimelineCache for ObservedCache {
    async fn push(&self, users: &[u64], entry: Entry) -> Result<(), CacheError> {
        self.inner.push(users, entry).await?;
        self.log.record(entry.position(), users.len());
        Ok(())
    }

    async fn remove(&self, users: &[u64], position: u64) -> Result<(), CacheError> {
        self.inner.remove(users, position).await
    }

    async fn insert(
        &self,
        user: u64,
        entries: &[Entry],
        mark_built: bool,
    ) -> Result<(), CacheError> {
        self.inner.insert(user, entries, mark_built).await
    }

    async fn remove_user(&self, user: u64, other: u64, removal: Removal) -> Result<(), CacheError> {
        self.inner.remove_user(user, other, removal).await
    }

    async fn evict(&self, user: u64) -> Result<(), CacheError> {
        self.inner.evict(user).await
    }

    async fn read(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<CachedPage>, CacheError> {
        self.inner.read(user, before, limit).await
    }

    async fn celebrity_add(&self, celebrity: u64, entry: Entry) -> Result<(), CacheError> {
        self.inner.celebrity_add(celebrity, entry).await
    }

    async fn celebrity_remove(&self, celebrity: u64, position: u64) -> Result<(), CacheError> {
        self.inner.celebrity_remove(celebrity, position).await
    }

    async fn celebrity_fill(&self, celebrity: u64, entries: &[Entry]) -> Result<(), CacheError> {
        self.inner.celebrity_fill(celebrity, entries).await
    }

    async fn celebrity_recent(
        &self,
        celebrities: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Option<warble_timeline_cache::RecentEntries>>, CacheError> {
        self.inner
            .celebrity_recent(celebrities, before, limit)
            .await
    }

    async fn mark_active(&self, user: u64, at_ms: u64) -> Result<(), CacheError> {
        self.inner.mark_active(user, at_ms).await
    }

    async fn last_active(&self, users: &[u64]) -> Result<Vec<Option<u64>>, CacheError> {
        self.inner.last_active(users).await
    }

    async fn followed_celebrities(&self, user: u64) -> Result<Option<Vec<u64>>, CacheError> {
        self.inner.followed_celebrities(user).await
    }

    async fn set_followed_celebrities(
        &self,
        user: u64,
        celebrities: &[u64],
    ) -> Result<(), CacheError> {
        self.inner.set_followed_celebrities(user, celebrities).await
    }

    async fn add_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError> {
        self.inner.add_followed_celebrity(users, celebrity).await
    }

    async fn remove_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError> {
        self.inner.remove_followed_celebrity(users, celebrity).await
    }
}
