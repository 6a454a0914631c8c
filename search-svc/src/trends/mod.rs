//! Trending hashtags: who used which tag when, kept where every replica
//! sees it, and the score that says a tag is trending.
//!
//! **What is counted.** Each use of a tag is recorded in a ten-minute
//! bucket ([`BUCKET_MS`]) as the author and the tweet. Counting *distinct*
//! authors is what stops one account posting a tag a thousand times from
//! making it trend; counting distinct tweet ids makes recording idempotent,
//! so replicas that all read the stream, and a replay after a crash, count
//! each tweet once. On Redis both are HyperLogLogs per tag and bucket
//! (`PFADD`, and `PFCOUNT` over several keys for the union across buckets:
//! about 0.8% error); the embedded store keeps exact sets.
//!
//! **The score** ([`score`]) compares the distinct authors of the last 60
//! minutes with the tag's own baseline, the mean of the 24 hours before
//! that: `(observed − expected)² / expected` (Mastodon's formula) when at
//! least [`MIN_TREND_AUTHORS`] authors used it and more than expected. The
//! score of each of the last [`DECAY_WINDOWS`] hours is decayed with a
//! [`HALF_LIFE_HOURS`] half-life and the best is kept, so a trend fades over
//! hours instead of vanishing the minute it cools. All of it is computed
//! from the stored counts: replicas agree without coordinating.
//!
//! Deleting a tweet does not uncount its tag use (HyperLogLogs cannot
//! remove); the counts of a bucket expire after [`RETENTION_BUCKETS`].

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod redis;

use async_trait::async_trait;

pub use embedded::EmbeddedTrendStore;
pub use redis::RedisTrendStore;
pub use warble_proto::limits::search::{MIN_TREND_AUTHORS, TREND_HOURS};

use crate::error::SearchError;

/// Width of a counting bucket: ten minutes, so "the last hour" is six
/// whole buckets and slides every ten minutes.
pub const BUCKET_MS: i64 = 600_000;
/// Buckets per hour.
pub const BUCKETS_PER_HOUR: i64 = 3_600_000 / BUCKET_MS;
/// Hours of baseline an hour is compared with.
pub const BASELINE_HOURS: usize = 24;
/// Hourly windows whose decayed score can still carry a trend.
pub const DECAY_WINDOWS: usize = 6;
/// Half-life of a trend's score, in hours (Mastodon's is 4).
pub const HALF_LIFE_HOURS: f64 = 4.0;
/// Hourly windows read per candidate tag: the decay windows, each with its
/// baseline before it.
pub const WINDOWS: usize = BASELINE_HOURS + DECAY_WINDOWS;
/// Buckets kept: every window read, plus one for the bucket in progress.
pub const RETENTION_BUCKETS: i64 = (WINDOWS as i64 + 1) * BUCKETS_PER_HOUR;

const _: () = assert!(TREND_HOURS <= WINDOWS);

/// The bucket a time falls in.
pub fn bucket_of(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS)
}

/// One use of a tag by one tweet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagUse {
    /// Lower-cased, without `#`.
    pub tag: String,
    /// [`bucket_of`] the tweet's creation time.
    pub bucket: i64,
    pub author_id: u64,
    pub tweet_id: u64,
}

/// Distinct authors and tweets over a span of buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCount {
    pub authors: u64,
    pub tweets: u64,
}

/// A range of buckets, both ends included.
pub type Span = (i64, i64);

/// Where tag uses are kept (see the module docs).
#[async_trait]
pub trait TrendStore: Send + Sync + 'static {
    /// Records uses; recording one again changes nothing.
    async fn record(&self, uses: &[TagUse]) -> Result<(), SearchError>;

    /// Every tag used in a bucket of `span`.
    async fn tags_in(&self, span: Span) -> Result<Vec<String>, SearchError>;

    /// For each of `tags`, its distinct authors and tweets over each span of
    /// `spans` (in order).
    async fn counts(
        &self,
        tags: &[String],
        spans: &[Span],
    ) -> Result<Vec<Vec<SpanCount>>, SearchError>;
}

/// The hourly windows ending at the bucket `now` is in, newest last: window
/// `i` of [`WINDOWS`] covers the six buckets ending `WINDOWS - 1 - i` hours
/// before the current bucket.
pub fn hourly_spans(now_ms: i64, hours: usize) -> Vec<Span> {
    let current = bucket_of(now_ms);
    (0..hours as i64)
        .rev()
        .map(|hours_ago| {
            let end = current - hours_ago * BUCKETS_PER_HOUR;
            (end - BUCKETS_PER_HOUR + 1, end)
        })
        .collect()
}

/// The trend score of a tag from its distinct authors per hourly window,
/// oldest first (the last is the last 60 minutes); see the module docs.
/// Zero when it is not trending.
pub fn score(hourly_authors: &[u64]) -> f64 {
    let len = hourly_authors.len();
    (0..DECAY_WINDOWS.min(len))
        .filter_map(|hours_ago| {
            let at = len - 1 - hours_ago;
            let observed = hourly_authors[at] as f64;
            if hourly_authors[at] < MIN_TREND_AUTHORS {
                return None;
            }
            let baseline = &hourly_authors[at.saturating_sub(BASELINE_HOURS)..at];
            let mean = if baseline.is_empty() {
                0.0
            } else {
                baseline.iter().sum::<u64>() as f64 / baseline.len() as f64
            };
            // A tag never seen before has an expectation of one author an
            // hour, so five new authors score (5 − 1)² = 16, not infinity.
            let expected = mean.max(1.0);
            (observed > expected).then(|| {
                let raw = (observed - expected).powi(2) / expected;
                raw * 0.5f64.powf(hours_ago as f64 / HALF_LIFE_HOURS)
            })
        })
        .fold(0.0, f64::max)
}

/// A tag that is trending, with its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendingTag {
    pub tag: String,
    pub score: f64,
    pub authors_last_hour: u64,
    pub tweets_last_hour: u64,
    /// Tweets per hourly window, the last [`TREND_HOURS`], oldest first.
    pub hourly_tweets: Vec<u64>,
}

/// The tags trending at `now_ms`, best first (ties by tag), at most `limit`.
/// Two passes: the last hour's distinct authors of every tag used in it
/// (one batch), then the full windows of the tags with enough authors.
pub async fn trending(
    store: &dyn TrendStore,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<TrendingTag>, SearchError> {
    let spans = hourly_spans(now_ms, WINDOWS);
    let last_hour = spans[WINDOWS - 1];
    let tags = store.tags_in(last_hour).await?;
    if tags.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let recent = store.counts(&tags, &[last_hour]).await?;
    // A tag below the author floor now may still carry a decaying trend
    // from an earlier hour only if it was used in the last hour at all;
    // those are few, so the floor filters the candidates first.
    let candidates: Vec<String> = tags
        .into_iter()
        .zip(recent)
        .filter(|(_, counts)| counts[0].authors >= MIN_TREND_AUTHORS)
        .map(|(tag, _)| tag)
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let counts = store.counts(&candidates, &spans).await?;
    let mut trends: Vec<TrendingTag> = candidates
        .into_iter()
        .zip(counts)
        .filter_map(|(tag, windows)| {
            let authors: Vec<u64> = windows.iter().map(|count| count.authors).collect();
            let score = score(&authors);
            let last = windows[WINDOWS - 1];
            (score > 0.0).then(|| TrendingTag {
                tag,
                score,
                authors_last_hour: last.authors,
                tweets_last_hour: last.tweets,
                hourly_tweets: windows[WINDOWS - TREND_HOURS..]
                    .iter()
                    .map(|count| count.tweets)
                    .collect(),
            })
        })
        .collect();
    trends.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.tag.cmp(&b.tag)));
    trends.truncate(limit);
    Ok(trends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(last: &[u64]) -> Vec<u64> {
        let mut hours = vec![0; WINDOWS - last.len()];
        hours.extend_from_slice(last);
        hours
    }

    #[test]
    fn five_new_authors_trend_and_four_do_not() {
        assert_eq!(score(&series(&[5])), 16.0);
        assert_eq!(score(&series(&[4])), 0.0);
    }

    #[test]
    fn a_tag_at_its_usual_rate_does_not_trend() {
        assert_eq!(score(&vec![20; WINDOWS]), 0.0);
        let mut busy = vec![20; WINDOWS];
        busy[WINDOWS - 1] = 40;
        assert_eq!(score(&busy), 20.0);
    }

    #[test]
    fn a_trend_decays_with_the_half_life() {
        let peak = score(&series(&[9]));
        let four_hours_later = score(&series(&[9, 0, 0, 0, 0]));
        assert!(
            (four_hours_later - peak / 2.0).abs() < 1e-9,
            "{peak} {four_hours_later}"
        );
        assert_eq!(score(&series(&[9, 0, 0, 0, 0, 0, 0])), 0.0);
    }

    #[test]
    fn spans_are_whole_hours_ending_now() {
        let now = 10 * 3_600_000 + 5 * 60_000;
        let spans = hourly_spans(now, 3);
        assert_eq!(spans.len(), 3);
        let current = bucket_of(now);
        assert_eq!(spans[2], (current - 5, current));
        assert_eq!(spans[1], (current - 11, current - 6));
        assert_eq!(bucket_of(-1), -1);
    }
}
