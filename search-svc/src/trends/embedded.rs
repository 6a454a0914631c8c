//! The trend store in the embedded database (`warble dev`): exact sets of
//! authors and tweets per tag and bucket, in redb tables.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::{RETENTION_BUCKETS, Span, SpanCount, TagUse, TrendStore, bucket_of};
use crate::error::SearchError;

/// (tag, bucket, author) → ().
const AUTHORS: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("search_trend_authors");
/// (tag, bucket, tweet) → ().
const TWEETS: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("search_trend_tweets");
/// (bucket, tag) → (): the tags used in each bucket.
const TAGS: TableDefinition<(i64, &str), ()> = TableDefinition::new("search_trend_tags");

/// [`TrendStore`] on redb (see the module docs).
pub struct EmbeddedTrendStore {
    database: Arc<Database>,
    /// The newest bucket pruning ran for: buckets older than the retention
    /// are dropped at most once per bucket.
    pruned_for: AtomicI64,
    clock: fn() -> i64,
}

impl std::fmt::Debug for EmbeddedTrendStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTrendStore").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    warble_mesh::time::now_ms() as i64
}

impl EmbeddedTrendStore {
    /// Opens the trend tables in `database` (creating them).
    pub fn open(database: Arc<Database>) -> Result<Self, SearchError> {
        Self::with_clock(database, now_ms)
    }

    /// Like [`EmbeddedTrendStore::open`], reading the time from `clock` to
    /// decide what has expired (tests).
    pub fn with_clock(database: Arc<Database>, clock: fn() -> i64) -> Result<Self, SearchError> {
        let txn = database.begin_write().map_err(SearchError::storage)?;
        txn.open_table(AUTHORS).map_err(SearchError::storage)?;
        txn.open_table(TWEETS).map_err(SearchError::storage)?;
        txn.open_table(TAGS).map_err(SearchError::storage)?;
        txn.commit().map_err(SearchError::storage)?;
        Ok(Self {
            database,
            pruned_for: AtomicI64::new(i64::MIN),
            clock,
        })
    }

    fn record_blocking(&self, uses: &[TagUse]) -> Result<(), SearchError> {
        let current = bucket_of((self.clock)());
        let oldest_kept = current - RETENTION_BUCKETS;
        let txn = self.database.begin_write().map_err(SearchError::storage)?;
        {
            let mut authors = txn.open_table(AUTHORS).map_err(SearchError::storage)?;
            let mut tweets = txn.open_table(TWEETS).map_err(SearchError::storage)?;
            let mut tags = txn.open_table(TAGS).map_err(SearchError::storage)?;
            for tag_use in uses.iter().filter(|tag_use| tag_use.bucket >= oldest_kept) {
                let tag = tag_use.tag.as_str();
                authors
                    .insert((tag, tag_use.bucket, tag_use.author_id), ())
                    .map_err(SearchError::storage)?;
                tweets
                    .insert((tag, tag_use.bucket, tag_use.tweet_id), ())
                    .map_err(SearchError::storage)?;
                tags.insert((tag_use.bucket, tag), ())
                    .map_err(SearchError::storage)?;
            }
            if self.pruned_for.swap(current, Ordering::Relaxed) != current {
                let expired: Vec<(i64, String)> = tags
                    .range(..(oldest_kept, ""))
                    .map_err(SearchError::storage)?
                    .map(|entry| {
                        entry
                            .map(|(key, _)| {
                                let (bucket, tag) = key.value();
                                (bucket, tag.to_owned())
                            })
                            .map_err(SearchError::storage)
                    })
                    .collect::<Result<_, _>>()?;
                for (bucket, tag) in expired {
                    let range = (tag.as_str(), bucket, 0)..=(tag.as_str(), bucket, u64::MAX);
                    authors
                        .retain_in(range.clone(), |_, _| false)
                        .map_err(SearchError::storage)?;
                    tweets
                        .retain_in(range, |_, _| false)
                        .map_err(SearchError::storage)?;
                    tags.remove((bucket, tag.as_str()))
                        .map_err(SearchError::storage)?;
                }
            }
        }
        txn.commit().map_err(SearchError::storage)
    }

    fn tags_in_blocking(&self, (first, last): Span) -> Result<Vec<String>, SearchError> {
        let txn = self.database.begin_read().map_err(SearchError::storage)?;
        let tags = txn.open_table(TAGS).map_err(SearchError::storage)?;
        let mut found = BTreeSet::new();
        for entry in tags
            .range((first, "")..(last.saturating_add(1), ""))
            .map_err(SearchError::storage)?
        {
            let (key, _) = entry.map_err(SearchError::storage)?;
            found.insert(key.value().1.to_owned());
        }
        Ok(found.into_iter().collect())
    }

    fn counts_blocking(
        &self,
        tags: &[String],
        spans: &[Span],
    ) -> Result<Vec<Vec<SpanCount>>, SearchError> {
        let txn = self.database.begin_read().map_err(SearchError::storage)?;
        let authors = txn.open_table(AUTHORS).map_err(SearchError::storage)?;
        let tweets = txn.open_table(TWEETS).map_err(SearchError::storage)?;
        let distinct = |table: &redb::ReadOnlyTable<(&str, i64, u64), ()>,
                        tag: &str,
                        (first, last): Span|
         -> Result<u64, SearchError> {
            let mut ids = HashSet::new();
            for entry in table
                .range((tag, first, 0)..=(tag, last, u64::MAX))
                .map_err(SearchError::storage)?
            {
                let (key, _) = entry.map_err(SearchError::storage)?;
                ids.insert(key.value().2);
            }
            Ok(ids.len() as u64)
        };
        tags.iter()
            .map(|tag| {
                spans
                    .iter()
                    .map(|&span| {
                        Ok(SpanCount {
                            authors: distinct(&authors, tag, span)?,
                            tweets: distinct(&tweets, tag, span)?,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

fn blocking_failed(error: tokio::task::JoinError) -> SearchError {
    SearchError::storage(error)
}

#[async_trait]
impl TrendStore for Arc<EmbeddedTrendStore> {
    async fn record(&self, uses: &[TagUse]) -> Result<(), SearchError> {
        if uses.is_empty() {
            return Ok(());
        }
        let store = self.clone();
        let uses = uses.to_vec();
        tokio::task::spawn_blocking(move || store.record_blocking(&uses))
            .await
            .map_err(blocking_failed)?
    }

    async fn tags_in(&self, span: Span) -> Result<Vec<String>, SearchError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.tags_in_blocking(span))
            .await
            .map_err(blocking_failed)?
    }

    async fn counts(
        &self,
        tags: &[String],
        spans: &[Span],
    ) -> Result<Vec<Vec<SpanCount>>, SearchError> {
        let store = self.clone();
        let (tags, spans) = (tags.to_vec(), spans.to_vec());
        tokio::task::spawn_blocking(move || store.counts_blocking(&tags, &spans))
            .await
            .map_err(blocking_failed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trends::BUCKETS_PER_HOUR;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn store(dir: &tempfile::TempDir) -> Arc<EmbeddedTrendStore> {
        let database = warble_mesh::embedded::open_shared(dir.path()).unwrap();
        Arc::new(EmbeddedTrendStore::with_clock(database, || NOW_MS).unwrap())
    }

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::trends::conformance::run(&store(&dir), NOW_MS).await;
    }

    #[tokio::test]
    async fn uses_older_than_the_retention_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let now = bucket_of(NOW_MS);
        let old = now - RETENTION_BUCKETS - BUCKETS_PER_HOUR;
        let use_at = |bucket| TagUse {
            tag: "old".into(),
            bucket,
            author_id: 1,
            tweet_id: bucket as u64,
        };
        // Written straight to the tables as if recorded long ago.
        {
            let txn = store.database.begin_write().unwrap();
            txn.open_table(AUTHORS)
                .unwrap()
                .insert(("old", old, 1), ())
                .unwrap();
            txn.open_table(TAGS)
                .unwrap()
                .insert((old, "old"), ())
                .unwrap();
            txn.commit().unwrap();
        }
        // Recording now prunes the expired bucket, and refuses a use as old.
        store.record(&[use_at(old), use_at(now)]).await.unwrap();
        assert!(store.tags_in((old, old)).await.unwrap().is_empty());
        let counts = store
            .counts(&["old".into()], &[(old, old), (now, now)])
            .await
            .unwrap();
        assert_eq!(counts[0][0].authors, 0);
        assert_eq!(counts[0][1].authors, 1);
    }
}
