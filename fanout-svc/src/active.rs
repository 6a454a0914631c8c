//! Followers fan-out has already found active, so it need not read their
//! last-active marks again for every tweet.
//!
//! A mark only moves forward ([`TimelineCache::mark_active`]), so a
//! follower whose mark was read as `m` passes every cutoff up to `m` (that
//! is, stays active until `m + inactive_after`) whatever they do meanwhile.
//! Remembering that answer changes no decision: the marks still read are
//! exactly those that can have changed one, of followers never seen, idle,
//! or remembered with a mark now behind the cutoff (they may have gone
//! idle, or come back, since).
//!
//! On Redis the marks are the activity filter's whole cost: about 1,000
//! `ZMSCORE` commands per 5,000-follower page, a fifth of the server's work
//! in a fan-out (the timeline cache's Redis module says why no cheaper
//! command exists), and an author's followers come back tweet after tweet.
//!
//! The one case where the answer differs: marks lost from the cache (a
//! Redis key evicted or flushed) read as never seen, while a remembered
//! follower keeps being pushed to until their remembered mark falls behind
//! the cutoff. Such a push is harmless: the cache takes pushes to timelines
//! nobody built, and a reader rebuilds those.
//!
//! [`TimelineCache::mark_active`]: warble_timeline_cache::TimelineCache::mark_active

use std::collections::HashMap;
use std::sync::Mutex;

/// Followers remembered at most; past this, memory starts over. A hash map
/// of two `u64` per follower: about 36 MB when full.
pub const REMEMBERED_MAX: usize = 1_000_000;

/// Last-active marks of followers read as active (see the module docs).
#[derive(Debug)]
pub struct ActiveFollowers {
    marks: Mutex<HashMap<u64, u64>>,
    capacity: usize,
}

impl Default for ActiveFollowers {
    fn default() -> Self {
        Self::with_capacity(REMEMBERED_MAX)
    }
}

impl ActiveFollowers {
    /// Remembers up to `capacity` followers (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            marks: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Each follower's remembered mark if it is at or after `cutoff`;
    /// `None` where their mark must be read. Marks behind the cutoff are
    /// forgotten.
    pub fn recall(&self, followers: &[u64], cutoff: u64) -> Vec<Option<u64>> {
        let mut marks = self.lock();
        followers
            .iter()
            .map(|follower| match marks.get(follower) {
                Some(&at) if at >= cutoff => Some(at),
                Some(_) => {
                    marks.remove(follower);
                    None
                }
                None => None,
            })
            .collect()
    }

    /// Remembers `(follower, mark)` pairs just read, each at or after the
    /// cutoff they were judged by. Idle and never-seen followers must not be
    /// given: either can become active at any moment.
    pub fn remember(&self, active: &[(u64, u64)]) {
        if active.is_empty() {
            return;
        }
        let mut marks = self.lock();
        if marks.len() + active.len() > self.capacity {
            // Cheaper than tracking which to drop; the next pages read their
            // marks again.
            marks.clear();
        }
        for &(follower, at) in active.iter().take(self.capacity) {
            let mark = marks.entry(follower).or_insert(at);
            *mark = (*mark).max(at);
        }
    }

    /// Followers remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no follower is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recalls_only_marks_still_at_or_after_the_cutoff() {
        let active = ActiveFollowers::default();
        active.remember(&[(1, 1_000), (2, 2_000)]);
        assert_eq!(
            active.recall(&[1, 2, 3], 1_000),
            vec![Some(1_000), Some(2_000), None]
        );
        assert_eq!(active.recall(&[2, 1], 1_500), vec![Some(2_000), None]);
        assert_eq!(active.len(), 1, "a mark behind the cutoff is forgotten");
        assert_eq!(active.recall(&[1], 0), vec![None], "and stays forgotten");
    }

    #[test]
    fn keeps_the_latest_mark_of_a_follower() {
        let active = ActiveFollowers::default();
        active.remember(&[(1, 5_000)]);
        active.remember(&[(1, 3_000)]);
        assert_eq!(active.recall(&[1], 4_000), vec![Some(5_000)]);
        active.remember(&[(1, 9_000)]);
        assert_eq!(active.recall(&[1], 8_000), vec![Some(9_000)]);
    }

    #[test]
    fn starts_over_rather_than_grow_past_its_capacity() {
        let active = ActiveFollowers::with_capacity(3);
        active.remember(&[(1, 10), (2, 10)]);
        active.remember(&[(3, 10)]);
        assert_eq!(active.len(), 3);
        active.remember(&[(4, 10), (5, 10)]);
        assert_eq!(active.len(), 2);
        assert_eq!(active.recall(&[1, 4, 5], 0), vec![None, Some(10), Some(10)]);
        let pages: Vec<(u64, u64)> = (10..20).map(|user| (user, 10)).collect();
        active.remember(&pages);
        assert!(active.len() <= 3);
    }
}
