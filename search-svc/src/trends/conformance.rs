//! The trend store contract, run against every implementation (the
//! embedded store in this crate's tests, Redis single node and cluster in
//! `tests/redis_trends.rs`).

use super::{
    BUCKETS_PER_HOUR, MIN_TREND_AUTHORS, TREND_HOURS, TagUse, TrendStore, bucket_of, trending,
};

fn tag_use(tag: &str, bucket: i64, author_id: u64, tweet_id: u64) -> TagUse {
    TagUse {
        tag: tag.into(),
        bucket,
        author_id,
        tweet_id,
    }
}

/// Runs every case; `now_ms` is a time the store treats as the present
/// (recent enough that nothing recorded near it has expired).
pub async fn run(store: &dyn TrendStore, now_ms: i64) {
    counts_distinct_authors_and_tweets_across_buckets(store, now_ms).await;
    five_authors_trend_and_one_prolific_author_does_not(store, now_ms).await;
}

async fn counts_distinct_authors_and_tweets_across_buckets(store: &dyn TrendStore, now_ms: i64) {
    let now = bucket_of(now_ms);
    let uses = vec![
        tag_use("rust", now, 1, 100),
        tag_use("rust", now, 1, 100), // recorded twice: counted once
        tag_use("rust", now, 2, 101),
        tag_use("rust", now - 1, 1, 102),
        tag_use("rust", now - 7, 3, 103),
        tag_use("go", now - 1, 9, 104),
    ];
    store.record(&uses).await.unwrap();
    store.record(&uses[..2]).await.unwrap();
    let mut tags = store.tags_in((now - 5, now)).await.unwrap();
    tags.retain(|tag| tag == "rust" || tag == "go");
    assert_eq!(tags, ["go", "rust"]);
    let counts = store
        .counts(
            &["rust".to_owned(), "go".to_owned(), "absent".to_owned()],
            &[(now - 5, now), (now - 11, now - 6), (now, now)],
        )
        .await
        .unwrap();
    let pairs: Vec<Vec<(u64, u64)>> = counts
        .iter()
        .map(|spans| spans.iter().map(|c| (c.authors, c.tweets)).collect())
        .collect();
    assert_eq!(pairs[0], [(2, 3), (1, 1), (2, 2)], "rust");
    assert_eq!(pairs[1], [(1, 1), (0, 0), (0, 0)], "go");
    assert_eq!(pairs[2], [(0, 0), (0, 0), (0, 0)], "absent");
}

async fn five_authors_trend_and_one_prolific_author_does_not(store: &dyn TrendStore, now_ms: i64) {
    let now = bucket_of(now_ms);
    let mut uses = Vec::new();
    for author in 0..MIN_TREND_AUTHORS {
        uses.push(tag_use(
            "eclipse",
            now - (author as i64 % 3),
            1_000 + author,
            5_000 + author,
        ));
    }
    for tweet in 0..100 {
        uses.push(tag_use("spam", now, 77, 9_000 + tweet));
    }
    // Used a day ago too: part of the sparkline and the baseline.
    uses.push(tag_use("eclipse", now - 20 * BUCKETS_PER_HOUR, 1, 4_000));
    store.record(&uses).await.unwrap();
    let trends = trending(store, now_ms, 10).await.unwrap();
    let eclipse = trends
        .iter()
        .find(|trend| trend.tag == "eclipse")
        .expect("five distinct authors in the hour trend");
    assert!(
        !trends.iter().any(|trend| trend.tag == "spam"),
        "{trends:?}"
    );
    assert_eq!(eclipse.authors_last_hour, MIN_TREND_AUTHORS);
    assert_eq!(eclipse.tweets_last_hour, MIN_TREND_AUTHORS);
    assert_eq!(eclipse.hourly_tweets.len(), TREND_HOURS);
    assert_eq!(eclipse.hourly_tweets[TREND_HOURS - 1], MIN_TREND_AUTHORS);
    assert_eq!(eclipse.hourly_tweets[TREND_HOURS - 1 - 20], 1);
    assert!(eclipse.score > 0.0);
}
