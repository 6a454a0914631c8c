//! The in-memory timeline cache for the single-process stack.
//!
//! Timelines are sorted `Vec`s (32 bytes an entry, no per-node overhead)
//! spread over mutex-guarded shards so fan-out to many users and concurrent
//! reads rarely contend on one lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{
    CELEBRITY_CAPACITY, CacheError, CachedPage, Entry, RETWEET_DEDUP_WINDOW, RecentEntries,
    Removal, TIMELINE_CAPACITY, TimelineCache,
};

const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Timeline {
    /// Newest first; unique positions.
    entries: Vec<Entry>,
    built: bool,
}

#[derive(Debug, Default)]
struct CelebritySet {
    /// Newest first; unique positions.
    entries: Vec<Entry>,
    filled: bool,
}

#[derive(Debug, Default)]
struct Shard {
    timelines: HashMap<u64, Timeline>,
    celebrity_sets: HashMap<u64, CelebritySet>,
    last_active: HashMap<u64, u64>,
    /// Per user, the celebrities they follow and when the record lapses.
    followed_celebrities: HashMap<u64, (Vec<u64>, std::time::Instant)>,
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

/// Index of `position` in a newest-first list: Ok(index) if present, Err(insert index) if not.
fn index_of(entries: &[Entry], position: u64) -> Result<usize, usize> {
    entries.binary_search_by(|probe| position.cmp(&probe.position()))
}

fn insert_capped(entries: &mut Vec<Entry>, entry: Entry, capacity: usize) {
    if let Err(index) = index_of(entries, entry.position())
        && index < capacity
    {
        entries.insert(index, entry);
        entries.truncate(capacity);
    }
}

/// Whether a retweet of `tweet_id` would repeat a tweet among the newest
/// entries of the timeline.
fn recently_shown(entries: &[Entry], tweet_id: u64) -> bool {
    entries
        .iter()
        .take(RETWEET_DEDUP_WINDOW)
        .any(|entry| entry.tweet_id == tweet_id)
}

/// The entries older than `before` (all when `None`), newest first.
fn below(entries: &[Entry], before: Option<u64>) -> &[Entry] {
    let start = match before {
        None => 0,
        Some(before) => match index_of(entries, before) {
            Ok(index) => index + 1,
            Err(index) => index,
        },
    };
    &entries[start.min(entries.len())..]
}

#[async_trait]
impl TimelineCache for EmbeddedTimelineCache {
    async fn push(&self, users: &[u64], entry: Entry) -> Result<(), CacheError> {
        let capacity = self.capacity;
        self.each_timeline(users, |shard, user| {
            let entries = &mut shard.timelines.entry(user).or_default().entries;
            if !(entry.is_retweet() && recently_shown(entries, entry.tweet_id)) {
                insert_capped(entries, entry, capacity);
            }
        });
        Ok(())
    }

    async fn remove(&self, users: &[u64], position: u64) -> Result<(), CacheError> {
        self.each_timeline(users, |shard, user| {
            if let Some(timeline) = shard.timelines.get_mut(&user)
                && let Ok(index) = index_of(&timeline.entries, position)
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

    async fn remove_user(&self, user: u64, other: u64, removal: Removal) -> Result<(), CacheError> {
        if let Some(timeline) = self.shard(user).timelines.get_mut(&user) {
            timeline
                .entries
                .retain(|entry| !removal.matches(entry, other));
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
        let older = below(&timeline.entries, before);
        let end = limit.min(older.len());
        Ok(Some(CachedPage {
            entries: older[..end].to_vec(),
            has_more: end < older.len(),
            len: timeline.entries.len(),
        }))
    }

    async fn celebrity_add(&self, celebrity: u64, entry: Entry) -> Result<(), CacheError> {
        let mut shard = self.shard(celebrity);
        let set = shard.celebrity_sets.entry(celebrity).or_default();
        insert_capped(&mut set.entries, entry, CELEBRITY_CAPACITY);
        Ok(())
    }

    async fn celebrity_remove(&self, celebrity: u64, position: u64) -> Result<(), CacheError> {
        if let Some(set) = self.shard(celebrity).celebrity_sets.get_mut(&celebrity)
            && let Ok(index) = index_of(&set.entries, position)
        {
            // A full set may have had older entries trimmed: once smaller,
            // its size would wrongly say it is complete.
            if set.entries.len() >= CELEBRITY_CAPACITY {
                set.filled = false;
            }
            set.entries.remove(index);
        }
        Ok(())
    }

    async fn celebrity_fill(&self, celebrity: u64, entries: &[Entry]) -> Result<(), CacheError> {
        let mut shard = self.shard(celebrity);
        let set = shard.celebrity_sets.entry(celebrity).or_default();
        for entry in entries {
            insert_capped(&mut set.entries, *entry, CELEBRITY_CAPACITY);
        }
        set.filled = true;
        Ok(())
    }

    async fn celebrity_recent(
        &self,
        celebrities: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Option<RecentEntries>>, CacheError> {
        Ok(celebrities
            .iter()
            .map(|celebrity| {
                let shard = self.shard(*celebrity);
                shard
                    .celebrity_sets
                    .get(celebrity)
                    .filter(|set| set.filled)
                    .map(|set| RecentEntries {
                        entries: below(&set.entries, before)
                            .iter()
                            .take(limit)
                            .copied()
                            .collect(),
                        complete: set.entries.len() < CELEBRITY_CAPACITY,
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

    async fn followed_celebrities(&self, user: u64) -> Result<Option<Vec<u64>>, CacheError> {
        let mut shard = self.shard(user);
        let lapsed = match shard.followed_celebrities.get(&user) {
            None => return Ok(None),
            Some((set, lapses_at)) if *lapses_at > std::time::Instant::now() => {
                return Ok(Some(set.clone()));
            }
            Some(_) => true,
        };
        if lapsed {
            shard.followed_celebrities.remove(&user);
        }
        Ok(None)
    }

    async fn set_followed_celebrities(
        &self,
        user: u64,
        celebrities: &[u64],
    ) -> Result<(), CacheError> {
        let mut set = celebrities.to_vec();
        set.sort_unstable();
        set.dedup();
        let lapses_at = std::time::Instant::now() + crate::FOLLOWED_CELEBRITIES_TTL;
        self.shard(user)
            .followed_celebrities
            .insert(user, (set, lapses_at));
        Ok(())
    }

    async fn add_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError> {
        for user in users {
            if let Some((set, _)) = self.shard(*user).followed_celebrities.get_mut(user)
                && let Err(at) = set.binary_search(&celebrity)
            {
                set.insert(at, celebrity);
            }
        }
        Ok(())
    }

    async fn remove_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError> {
        for user in users {
            if let Some((set, _)) = self.shard(*user).followed_celebrities.get_mut(user)
                && let Ok(at) = set.binary_search(&celebrity)
            {
                set.remove(at);
            }
        }
        Ok(())
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
