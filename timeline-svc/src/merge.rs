//! Merging timeline entries newest first, and the rules that keep a
//! timeline from repeating a tweet.

use std::collections::HashSet;

use warble_proto::graph::v1::Relation;
use warble_timeline_cache::{Entry, RETWEET_DEDUP_WINDOW};

/// Sorts entries newest first by position, drops repeated positions, keeps `limit`.
pub(crate) fn newest_first(mut entries: Vec<Entry>, limit: usize) -> Vec<Entry> {
    entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.position()));
    entries.dedup_by_key(|entry| entry.position());
    entries.truncate(limit);
    entries
}

/// What fan-out's retweet window does, applied to a whole newest-first
/// list (a rebuild): a retweet is dropped when its tweet, by its own entry
/// or another kept retweet, is among the [`RETWEET_DEDUP_WINDOW`] kept
/// entries just older than it, as if the list had been pushed oldest first.
pub(crate) fn apply_retweet_window(entries: Vec<Entry>) -> Vec<Entry> {
    let mut kept_oldest_first: Vec<Entry> = Vec::with_capacity(entries.len());
    for entry in entries.into_iter().rev() {
        let recently_shown = entry.is_retweet()
            && kept_oldest_first
                .iter()
                .rev()
                .take(RETWEET_DEDUP_WINDOW)
                .any(|kept| kept.tweet_id == entry.tweet_id);
        if !recently_shown {
            kept_oldest_first.push(entry);
        }
    }
    kept_oldest_first.reverse();
    kept_oldest_first
}

/// Whether a relation hides the other user's entries from the viewer's
/// home timeline: a block either way, or an active mute.
pub(crate) fn hides_from_home(relation: &Relation) -> bool {
    relation.viewer_blocks || relation.blocks_viewer || relation.viewer_mutes
}

/// The distinct users other than `viewer` that `entries` involve (authors
/// and retweeters): what one relations call asks about.
pub(crate) fn involved_users(viewer: u64, entries: &[Entry]) -> Vec<u64> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .flat_map(|entry| [entry.author_id, entry.retweeted_by])
        .filter(|&user| user != 0 && user != viewer && seen.insert(user))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tweet_id: u64, author_id: u64) -> Entry {
        Entry::tweet(tweet_id, author_id)
    }

    #[test]
    fn sorts_dedups_and_truncates() {
        let merged = newest_first(
            vec![
                entry(1, 1),
                entry(5, 2),
                entry(3, 1),
                entry(5, 2),
                entry(4, 3),
                Entry::retweet(6, 9, 1, 1),
            ],
            4,
        );
        assert_eq!(
            merged,
            vec![
                Entry::retweet(6, 9, 1, 1),
                entry(5, 2),
                entry(4, 3),
                entry(3, 1)
            ]
        );
    }

    #[test]
    fn the_retweet_window_drops_only_retweets_of_recently_kept_tweets() {
        let window = RETWEET_DEDUP_WINDOW as u64;
        let tweet = entry(1, 7);
        // Right above the tweet: dropped. Past a window of other entries: kept.
        let close = Entry::retweet(2, 8, 1, 7);
        let fillers: Vec<Entry> = (0..window).map(|n| entry(100 + n, 6)).collect();
        let far = Entry::retweet(1_000, 9, 1, 7);
        let mut newest_first_list = vec![far];
        newest_first_list.extend(fillers.iter().rev().copied());
        newest_first_list.push(close);
        newest_first_list.push(tweet);
        let kept = apply_retweet_window(newest_first_list);
        assert!(kept.contains(&far));
        assert!(!kept.contains(&close));
        assert_eq!(kept.len(), fillers.len() + 2);
        // A retweet of a tweet not in the list is kept.
        assert_eq!(apply_retweet_window(vec![close]), vec![close]);
    }

    #[test]
    fn involved_users_are_distinct_and_exclude_the_viewer() {
        let entries = [entry(1, 5), Entry::retweet(2, 6, 3, 5), entry(4, 9)];
        assert_eq!(involved_users(9, &entries), vec![5, 6]);
    }
}
