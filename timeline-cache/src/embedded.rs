//! The in-memory timeline cache for the single-process stack.
//!
//! Timelines are sorted `Vec`s (16 bytes an entry, no per-node overhead)
//! spread over mutex-guarded shards so fan-out to many users and concurrent
//! reads rarely contend on one lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{CELEBRITY_CAPACITY, CacheError, CachedPage, Entry, TIMELINE_CAPACITY, TimelineCache};

const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Timeline {
    /// Newest first; unique tweet ids.
    entries: Vec<Entry>,
    built: bool,
}

#[derive(Debug, Default)]
struct CelebritySet {
    /// Newest first; unique.
    tweet_ids: Vec<u64>,
    filled: bool,
}

impl CelebritySet {
    fn insert(&mut self, tweet_id: u64) {
        if let Err(index) = self.tweet_ids.binary_search_by(|probe| tweet_id.cmp(probe))
            && index < CELEBRITY_CAPACITY
        {
            self.tweet_ids.insert(index, tweet_id);
            self.tweet_ids.truncate(CELEBRITY_CAPACITY);
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    timelines: HashMap<u64, Timeline>,
    celebrity_sets: HashMap<u64, CelebritySet>,
    last_active: HashMap<u64, u64>,
}

/// In-memory [`TimelineCache`]. Clones share the same data.
#[derive(Debug, Clone)]
pub struct EmbeddedTimelineCache {
    shards: Arc<[Mutex<Shard>]>,
    capacity: usize,
}

impl Default for EmbeddedTimelineCache {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedTimelineCache {
    /// An empty cache with the standard capacity.
    pub fn new() -> Self {
        Self::with_capacity(TIMELINE_CAPACITY)
    }

    /// An empty cache keeping `capacity` entries per timeline.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            capacity: capacity.max(1),
        }
    }

    /// Number of timelines held and entries across them (for memory reports).
    pub fn footprint(&self) -> (usize, usize) {
        self.shards
            .iter()
            .fold((0, 0), |(timelines, entries), shard| {
                let shard = lock(shard);
                (
                    timelines + shard.timelines.len(),
                    entries
                        + shard
                            .timelines
                            .values()
                            .map(|t| t.entries.len())
                            .sum::<usize>(),
                )
            })
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        // Snowflake ids' low bits are the sequence, often zero: mix before picking.
        let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        lock(&self.shards[mixed as usize % SHARDS])
    }

    /// Applies `apply` to each user under that user's shard lock, taken per
    /// user so a fan-out to thousands never holds one lock for long.
    fn each_timeline(&self, users: &[u64], mut apply: impl FnMut(&mut Shard, u64)) {
        for &user in users {
            apply(&mut self.shard(user), user);
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Position of `tweet_id` in a newest-first list: Ok(index) if present, Err(insert index) if not.
fn position(entries: &[Entry], tweet_id: u64) -> Result<usize, usize> {
    entries.binary_search_by(|probe| tweet_id.cmp(&probe.tweet_id))
}

fn insert_capped(entries: &mut Vec<Entry>, entry: Entry, capacity: usize) {
    if let Err(index) = position(entries, entry.tweet_id)
        && index < capacity
    {
        entries.insert(index, entry);
        entries.truncate(capacity);
    }
}

#[async_trait]
impl TimelineCache for EmbeddedTimelineCache {
    async fn push(&self, users: &[u64], entry: Entry) -> Result<(), CacheError> {
        let capacity = self.capacity;
        self.each_timeline(users, |shard, user| {
            insert_capped(
                &mut shard.timelines.entry(user).or_default().entries,
                entry,
                capacity,
            );
        });
        Ok(())
    }

    async fn remove(&self, users: &[u64], tweet_id: u64) -> Result<(), CacheError> {
        self.each_timeline(users, |shard, user| {
            if let Some(timeline) = shard.timelines.get_mut(&user)
                && let Ok(index) = position(&timeline.entries, tweet_id)
            {
                timeline.entries.remove(index);
            }
        });
        Ok(())
    }

    async fn insert(
        &self,
        user: u64,
        entries: &[Entry],
        mark_built: bool,
    ) -> Result<(), CacheError> {
        let mut shard = self.shard(user);
        let timeline = shard.timelines.entry(user).or_default();
        for entry in entries {
            insert_capped(&mut timeline.entries, *entry, self.capacity);
        }
        timeline.built |= mark_built;
        Ok(())
    }

    async fn remove_author(&self, user: u64, author_id: u64) -> Result<(), CacheError> {
        if let Some(timeline) = self.shard(user).timelines.get_mut(&user) {
            timeline
                .entries
                .retain(|entry| entry.author_id != author_id);
        }
        Ok(())
    }

    async fn evict(&self, user: u64) -> Result<(), CacheError> {
        self.shard(user).timelines.remove(&user);
        Ok(())
    }

    async fn read(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<CachedPage>, CacheError> {
        let shard = self.shard(user);
        let Some(timeline) = shard.timelines.get(&user).filter(|timeline| timeline.built) else {
            return Ok(None);
        };
        let start = match before {
            None => 0,
            Some(before) => match position(&timeline.entries, before) {
                Ok(index) => index + 1,
                Err(index) => index,
            },
        };
        let end = (start + limit).min(timeline.entries.len());
        Ok(Some(CachedPage {
            entries: timeline.entries[start.min(end)..end].to_vec(),
            has_more: end < timeline.entries.len(),
            len: timeline.entries.len(),
        }))
    }

    async fn celebrity_add(&self, author_id: u64, tweet_id: u64) -> Result<(), CacheError> {
        self.shard(author_id)
            .celebrity_sets
            .entry(author_id)
            .or_default()
            .insert(tweet_id);
        Ok(())
    }

    async fn celebrity_remove(&self, author_id: u64, tweet_id: u64) -> Result<(), CacheError> {
        if let Some(set) = self.shard(author_id).celebrity_sets.get_mut(&author_id) {
            set.tweet_ids.retain(|id| *id != tweet_id);
        }
        Ok(())
    }

    async fn celebrity_fill(&self, author_id: u64, tweet_ids: &[u64]) -> Result<(), CacheError> {
        let mut shard = self.shard(author_id);
        let set = shard.celebrity_sets.entry(author_id).or_default();
        for tweet_id in tweet_ids {
            set.insert(*tweet_id);
        }
        set.filled = true;
        Ok(())
    }

    async fn celebrity_recent(
        &self,
        author_ids: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Option<Vec<u64>>>, CacheError> {
        Ok(author_ids
            .iter()
            .map(|author| {
                let shard = self.shard(*author);
                shard
                    .celebrity_sets
                    .get(author)
                    .filter(|set| set.filled)
                    .map(|set| {
                        set.tweet_ids
                            .iter()
                            .copied()
                            .filter(|id| before.is_none_or(|before| *id < before))
                            .take(limit)
                            .collect()
                    })
            })
            .collect())
    }

    async fn mark_active(&self, user: u64, at_ms: u64) -> Result<(), CacheError> {
        let mut shard = self.shard(user);
        let mark = shard.last_active.entry(user).or_insert(at_ms);
        *mark = (*mark).max(at_ms);
        Ok(())
    }

    async fn last_active(&self, users: &[u64]) -> Result<Vec<Option<u64>>, CacheError> {
        Ok(users
            .iter()
            .map(|user| self.shard(*user).last_active.get(user).copied())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_suite() {
        crate::conformance::run_all(|| async { ((), EmbeddedTimelineCache::new()) }).await;
    }
}
