//! The trend store on Redis, shared by every search-svc replica:
//! HyperLogLogs per tag and bucket (see the module docs).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>{<tag>}:a:<bucket>` | HyperLogLog | authors who used the tag in the bucket |
//! | `<prefix>{<tag>}:t:<bucket>` | HyperLogLog | tweets that used it |
//! | `<prefix>tags:<bucket>` | set | tags used in the bucket |
//!
//! The tag is the hash tag, so one `PFCOUNT` over a tag's six buckets (the
//! union: distinct authors over the hour) works on a cluster. Every key
//! expires after the retention, so nothing is ever swept.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use redis::Value;
use warble_mesh::redis_client::{RedisClient, Request};

use super::{BUCKET_MS, RETENTION_BUCKETS, Span, SpanCount, TagUse, TrendStore};
use crate::error::SearchError;

/// [`TrendStore`] on Redis (see the module docs).
#[derive(Debug, Clone)]
pub struct RedisTrendStore {
    client: RedisClient,
    prefix: String,
}

impl RedisTrendStore {
    /// Keys start with `prefix` (e.g. `warble:trends:`).
    pub fn new(client: RedisClient, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    fn key(&self, tag: &str, what: char, bucket: i64) -> String {
        format!("{}{{{tag}}}:{what}:{bucket}", self.prefix)
    }

    fn tags_key(&self, bucket: i64) -> String {
        format!("{}tags:{bucket}", self.prefix)
    }
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> SearchError {
    SearchError::storage(error)
}

/// Keys live one bucket longer than the retention, so a window read at the
/// edge never finds its oldest bucket gone early.
const TTL_MS: i64 = (RETENTION_BUCKETS + 1) * BUCKET_MS;

#[async_trait]
impl TrendStore for RedisTrendStore {
    async fn record(&self, uses: &[TagUse]) -> Result<(), SearchError> {
        let mut requests = Vec::with_capacity(uses.len() * 2);
        let mut expiring: HashSet<(String, i64)> = HashSet::new();
        for tag_use in uses {
            let authors = self.key(&tag_use.tag, 'a', tag_use.bucket);
            let tweets = self.key(&tag_use.tag, 't', tag_use.bucket);
            requests.push(Request::new("PFADD", &authors).arg(tag_use.author_id));
            requests.push(Request::new("PFADD", &tweets).arg(tag_use.tweet_id));
            if expiring.insert((tag_use.tag.clone(), tag_use.bucket)) {
                let tags = self.tags_key(tag_use.bucket);
                requests.push(Request::new("SADD", &tags).arg(&tag_use.tag));
                for key in [authors, tweets, tags] {
                    requests.push(Request::new("PEXPIRE", key).arg(TTL_MS));
                }
            }
        }
        if requests.is_empty() {
            return Ok(());
        }
        // Every command is idempotent, as batches must be.
        self.client.batch(&requests).await.map_err(failed)?;
        Ok(())
    }

    async fn tags_in(&self, (first, last): Span) -> Result<Vec<String>, SearchError> {
        let requests: Vec<Request> = (first..=last)
            .map(|bucket| Request::new("SMEMBERS", self.tags_key(bucket)))
            .collect();
        let replies = self.client.batch(&requests).await.map_err(failed)?;
        let mut tags = BTreeSet::new();
        for reply in replies {
            let members: Vec<String> = redis::from_redis_value(reply).map_err(failed)?;
            tags.extend(members);
        }
        Ok(tags.into_iter().collect())
    }

    async fn counts(
        &self,
        tags: &[String],
        spans: &[Span],
    ) -> Result<Vec<Vec<SpanCount>>, SearchError> {
        let mut requests = Vec::with_capacity(tags.len() * spans.len() * 2);
        for tag in tags {
            for &(first, last) in spans {
                for what in ['a', 't'] {
                    let mut request = Request::new("PFCOUNT", self.key(tag, what, first));
                    for bucket in first + 1..=last {
                        request = request.arg(self.key(tag, what, bucket));
                    }
                    requests.push(request);
                }
            }
        }
        if requests.is_empty() {
            return Ok(tags.iter().map(|_| Vec::new()).collect());
        }
        let replies = self.client.batch(&requests).await.map_err(failed)?;
        let numbers: Vec<u64> = replies
            .into_iter()
            .map(|reply: Value| redis::from_redis_value::<u64>(reply).map_err(failed))
            .collect::<Result<_, _>>()?;
        Ok(numbers
            .chunks(spans.len() * 2)
            .map(|per_tag| {
                per_tag
                    .chunks(2)
                    .map(|pair| SpanCount {
                        authors: pair[0],
                        tweets: pair[1],
                    })
                    .collect()
            })
            .collect())
    }
}
