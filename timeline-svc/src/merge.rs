//! Merging tweet lists newest first.

use warble_timeline_cache::Entry;

/// Sorts entries newest first, drops repeated tweet ids, keeps `limit`.
pub(crate) fn newest_first(mut entries: Vec<Entry>, limit: usize) -> Vec<Entry> {
    entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.tweet_id));
    entries.dedup_by_key(|entry| entry.tweet_id);
    entries.truncate(limit);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_dedups_and_truncates() {
        let entry = |tweet_id, author_id| Entry {
            tweet_id,
            author_id,
        };
        let merged = newest_first(
            vec![
                entry(1, 1),
                entry(5, 2),
                entry(3, 1),
                entry(5, 2),
                entry(4, 3),
            ],
            3,
        );
        assert_eq!(merged, vec![entry(5, 2), entry(4, 3), entry(3, 1)]);
    }
}
