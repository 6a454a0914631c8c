//! The SearchService gRPC surface: validation, the index, the trends.
//!
//! **Cursors** carry a fingerprint of the canonical query and the sort, so
//! a cursor replayed with another query is refused instead of paging
//! nonsense. LATEST pages by tweet id (newest first, below the previous
//! page's last), so new tweets never shift a page. TOP fixes, on the first
//! page, the newest tweet id it ranks among, and pages by offset through
//! the ranking under that ceiling.
//!
//! **TOP** ranks the [`TOP_CANDIDATES`] most relevant matches (BM25) by
//! `relevance × ln(e + likes + 2 × retweets + replies + quotes) × 0.5^(age / 24 h)`,
//! with the counts read from tweet-svc in one batch per page: engagement is
//! exact and current, and the index never rewrites a tweet for a like.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};
use warble_mesh::cursor;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog};
use warble_mesh::grpc::TracedChannel;
use warble_proto::common::v1::PageResponse;
use warble_proto::limits::search::{
    DEFAULT_PAGE_LIMIT, DEFAULT_TREND_LIMIT, DEFAULT_USER_LIMIT, MAX_COUNTED_LAG, MAX_PAGE_LIMIT,
    MAX_TREND_LIMIT, MAX_TREND_SAMPLES, MAX_USER_LIMIT,
};
use warble_proto::search::v1 as pb;
use warble_proto::search::v1::search_service_server::SearchService;
use warble_proto::tweet::v1 as tweet;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

use crate::error::SearchError;
use crate::index::{SearchIndex, TweetHit};
use crate::indexer::SearchStats;
use crate::query::{self, Clause, Query, Term};
use crate::trends::{self, TrendStore, TrendingTag};

/// Matches a TOP search ranks by engagement and recency: the most
/// relevant among the newest [`TOP_POOL`] or so.
pub const TOP_CANDIDATES: usize = 200;
/// How many of the newest matches a TOP search weighs by relevance, at
/// least (whole segments are read, newest first).
pub const TOP_POOL: usize = 10_000;

// One GetCounts call carries every candidate.
const _: () = assert!(TOP_CANDIDATES <= warble_proto::limits::tweet::MAX_BATCH);
/// Half-life of a tweet's recency in TOP ranking.
const TOP_RECENCY_HALF_LIFE_MS: f64 = 24.0 * 3_600_000.0;

const LATEST_CURSOR: u8 = 0x53;
const TOP_CURSOR: u8 = 0x54;

/// Trends as computed at an instant.
pub(crate) type CachedTrends = (Instant, Vec<TrendingTag>);

/// Serves SearchService.
#[derive(Clone)]
pub struct SearchApi {
    pub(crate) index: Arc<SearchIndex>,
    pub(crate) trends: Arc<dyn TrendStore>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) tweets: TweetServiceClient<TracedChannel>,
    pub(crate) stats: Arc<SearchStats>,
    /// Trends computed within `trends_ttl` are served again as they are.
    pub(crate) trends_cache: Arc<Mutex<Option<CachedTrends>>>,
    pub(crate) trends_ttl: Duration,
}

/// A stable fingerprint (FNV-1a) of the canonical query and the sort:
/// stable across processes and versions, unlike the std hasher.
fn fingerprint(parsed: &Query, sort: pb::SearchSort) -> u64 {
    let text = format!("{parsed}\u{0}{}", sort as i32);
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn page_limit(page: Option<&warble_proto::common::v1::PageRequest>) -> Result<usize, SearchError> {
    let limit = page.map_or(0, |page| page.limit);
    match limit {
        0 => Ok(DEFAULT_PAGE_LIMIT as usize),
        limit if limit > MAX_PAGE_LIMIT => Err(SearchError::invalid(
            "page.limit",
            format!("at most {MAX_PAGE_LIMIT}"),
        )),
        limit => Ok(limit as usize),
    }
}

fn bad_cursor() -> SearchError {
    SearchError::invalid(
        "page.cursor",
        "not a cursor of this query and sort (pass it back unchanged, with the same query)",
    )
}

fn hit_to_proto(hit: &TweetHit, cursor: String) -> pb::SearchHit {
    pb::SearchHit {
        tweet_id: hit.tweet_id,
        author_id: hit.author_id,
        cursor,
    }
}

impl SearchApi {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&SearchIndex) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, SearchError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || work(&index))
            .await
            .map_err(SearchError::storage)?
    }

    async fn search_tweets(
        &self,
        request: pb::SearchTweetsRequest,
    ) -> Result<pb::SearchTweetsResponse, SearchError> {
        let parsed = query::parse(&request.query)?;
        let sort = match pb::SearchSort::try_from(request.sort) {
            Ok(pb::SearchSort::Unspecified | pb::SearchSort::Latest) => pb::SearchSort::Latest,
            Ok(pb::SearchSort::Top) => pb::SearchSort::Top,
            Err(_) => return Err(SearchError::invalid("sort", "unknown sort")),
        };
        let limit = page_limit(request.page.as_ref())?;
        let cursor_text = request.page.map(|page| page.cursor).unwrap_or_default();
        let print = fingerprint(&parsed, sort);
        match sort {
            pb::SearchSort::Top => self.top(parsed, print, &cursor_text, limit).await,
            _ => {
                let below = match cursor::decode::<2>(LATEST_CURSOR, &cursor_text)
                    .map_err(|_| bad_cursor())?
                {
                    None => None,
                    Some([seen, _]) if seen != print => return Err(bad_cursor()),
                    Some([_, below]) => Some(below),
                };
                let mut hits = self
                    .blocking(move |index| {
                        let compiled = index.compile(&parsed)?;
                        index.latest(&compiled, below, limit + 1)
                    })
                    .await?;
                let more = hits.len() > limit;
                hits.truncate(limit);
                let next_cursor = match hits.last() {
                    Some(last) if more => cursor::encode(LATEST_CURSOR, &[print, last.tweet_id]),
                    _ => String::new(),
                };
                Ok(pb::SearchTweetsResponse {
                    hits: hits
                        .iter()
                        .map(|hit| {
                            hit_to_proto(hit, cursor::encode(LATEST_CURSOR, &[print, hit.tweet_id]))
                        })
                        .collect(),
                    page: Some(PageResponse { next_cursor }),
                })
            }
        }
    }

    async fn top(
        &self,
        parsed: Query,
        print: u64,
        cursor_text: &str,
        limit: usize,
    ) -> Result<pb::SearchTweetsResponse, SearchError> {
        let (ceiling, offset) =
            match cursor::decode::<3>(TOP_CURSOR, cursor_text).map_err(|_| bad_cursor())? {
                None => (None, 0),
                Some([seen, _, _]) if seen != print => return Err(bad_cursor()),
                Some([_, ceiling, offset]) => (Some(ceiling), offset as usize),
            };
        if offset > TOP_CANDIDATES {
            return Err(bad_cursor());
        }
        let (ceiling, candidates) = self
            .blocking(move |index| {
                let ceiling = match ceiling {
                    Some(ceiling) => Some(ceiling),
                    None => index.newest_tweet_id()?,
                };
                let compiled = index.compile(&parsed)?;
                let candidates =
                    index.most_relevant(&compiled, ceiling, TOP_CANDIDATES, TOP_POOL)?;
                Ok((ceiling, candidates))
            })
            .await?;
        let ranked = self.rank(candidates).await?;
        let ceiling_id = ceiling.unwrap_or(0);
        let page: Vec<pb::SearchHit> = ranked
            .iter()
            .enumerate()
            .skip(offset)
            .take(limit)
            .map(|(at, hit)| {
                let after = (at + 1) as u64;
                hit_to_proto(hit, cursor::encode(TOP_CURSOR, &[print, ceiling_id, after]))
            })
            .collect();
        let next_offset = offset + page.len();
        let next_cursor = if ceiling.is_some() && next_offset < ranked.len() {
            cursor::encode(TOP_CURSOR, &[print, ceiling_id, next_offset as u64])
        } else {
            String::new()
        };
        Ok(pb::SearchTweetsResponse {
            hits: page,
            page: Some(PageResponse { next_cursor }),
        })
    }

    /// Orders candidates by relevance × engagement × recency (see the module docs).
    async fn rank(&self, candidates: Vec<TweetHit>) -> Result<Vec<TweetHit>, SearchError> {
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let counts = self
            .tweets
            .clone()
            .get_counts(tweet::GetCountsRequest {
                tweet_ids: candidates.iter().map(|hit| hit.tweet_id).collect(),
            })
            .await
            .map_err(|status| SearchError::downstream("tweet-svc", status))?
            .into_inner()
            .counts;
        let now = warble_mesh::time::now_ms() as f64;
        let mut scored: Vec<(f64, TweetHit)> = candidates
            .into_iter()
            .zip(counts.into_iter().map(Some).chain(std::iter::repeat(None)))
            // A tweet deleted since it was indexed is left out now rather
            // than when its delete event arrives.
            .filter(|(_, counts)| counts.as_ref().is_none_or(|counts| counts.found))
            .map(|(hit, counts)| {
                let engagement = counts.map_or(0.0, |counts| {
                    (counts.like_count
                        + 2 * counts.retweet_count
                        + counts.reply_count
                        + counts.quote_count) as f64
                });
                let age_ms = (now - hit.created_at_ms as f64).max(0.0);
                let score = f64::from(hit.relevance)
                    * (std::f64::consts::E + engagement).ln()
                    * 0.5f64.powf(age_ms / TOP_RECENCY_HALF_LIFE_MS);
                (score, hit)
            })
            .collect();
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| b.1.tweet_id.cmp(&a.1.tweet_id))
        });
        Ok(scored.into_iter().map(|(_, hit)| hit).collect())
    }

    async fn trending(&self) -> Result<Vec<TrendingTag>, SearchError> {
        let mut cache = self.trends_cache.lock().await;
        if let Some((at, trends)) = cache.as_ref()
            && at.elapsed() < self.trends_ttl
        {
            return Ok(trends.clone());
        }
        let now = warble_mesh::time::now_ms() as i64;
        let trends = trends::trending(self.trends.as_ref(), now, MAX_TREND_LIMIT as usize).await?;
        *cache = Some((Instant::now(), trends.clone()));
        Ok(trends)
    }

    async fn get_trends(
        &self,
        request: pb::GetTrendsRequest,
    ) -> Result<pb::GetTrendsResponse, SearchError> {
        let limit = match request.limit {
            0 => DEFAULT_TREND_LIMIT,
            limit if limit > MAX_TREND_LIMIT => {
                return Err(SearchError::invalid(
                    "limit",
                    format!("at most {MAX_TREND_LIMIT}"),
                ));
            }
            limit => limit,
        } as usize;
        if request.samples > MAX_TREND_SAMPLES {
            return Err(SearchError::invalid(
                "samples",
                format!("at most {MAX_TREND_SAMPLES}"),
            ));
        }
        let samples = request.samples as usize;
        let mut trends = self.trending().await?;
        trends.truncate(limit);
        let tags: Vec<String> = trends.iter().map(|trend| trend.tag.clone()).collect();
        let sampled = if samples == 0 {
            vec![Vec::new(); tags.len()]
        } else {
            self.blocking(move |index| {
                tags.into_iter()
                    .map(|tag| {
                        let parsed = Query {
                            terms: vec![Clause {
                                term: Term::Hashtag(tag),
                                negated: false,
                            }],
                            ..Query::default()
                        };
                        let compiled = index.compile(&parsed)?;
                        index.latest(&compiled, None, samples)
                    })
                    .collect::<Result<Vec<_>, SearchError>>()
            })
            .await?
        };
        Ok(pb::GetTrendsResponse {
            trends: trends
                .into_iter()
                .zip(sampled)
                .map(|(trend, samples)| pb::Trend {
                    tag: trend.tag,
                    score: trend.score,
                    authors_last_hour: trend.authors_last_hour,
                    tweets_last_hour: trend.tweets_last_hour,
                    hourly_tweets: trend.hourly_tweets,
                    samples: samples
                        .iter()
                        .map(|hit| hit_to_proto(hit, String::new()))
                        .collect(),
                })
                .collect(),
        })
    }

    async fn status(&self) -> Result<pb::GetStatusResponse, SearchError> {
        let applied = self.stats.applied();
        let lag = self
            .log
            .count_after(DOMAIN_EVENTS_STREAM, applied, MAX_COUNTED_LAG)
            .await?;
        let (indexed_tweets, indexed_users) = self.blocking(SearchIndex::counts).await?;
        let counter =
            |value: &std::sync::atomic::AtomicU64| value.load(std::sync::atomic::Ordering::Relaxed);
        Ok(pb::GetStatusResponse {
            applied_event_id: applied.map(|id| id.to_string()).unwrap_or_default(),
            lag,
            caught_up: self
                .stats
                .caught_up
                .load(std::sync::atomic::Ordering::Relaxed),
            indexed_tweets,
            indexed_users,
            events_applied: counter(&self.stats.events_applied),
            commits: counter(&self.stats.commits),
            backfilled: counter(&self.stats.backfilled),
            queries: counter(&self.stats.queries),
            query_micros: counter(&self.stats.query_micros),
        })
    }
}

#[tonic::async_trait]
impl SearchService for SearchApi {
    async fn search_tweets(
        &self,
        request: Request<pb::SearchTweetsRequest>,
    ) -> Result<Response<pb::SearchTweetsResponse>, Status> {
        let started = Instant::now();
        let response = SearchApi::search_tweets(self, request.into_inner()).await?;
        self.stats.record_query(started);
        Ok(Response::new(response))
    }

    async fn search_users(
        &self,
        request: Request<pb::SearchUsersRequest>,
    ) -> Result<Response<pb::SearchUsersResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_USER_LIMIT,
            limit if limit > MAX_USER_LIMIT => {
                return Err(
                    SearchError::invalid("limit", format!("at most {MAX_USER_LIMIT}")).into(),
                );
            }
            limit => limit,
        } as usize;
        if request.query.len() > query::MAX_QUERY_BYTES {
            return Err(SearchError::invalid(
                "query",
                format!("at most {} bytes", query::MAX_QUERY_BYTES),
            )
            .into());
        }
        let typed = request.query;
        let user_ids = self
            .blocking(move |index| index.search_users(&typed, limit))
            .await?;
        self.stats.record_query(started);
        Ok(Response::new(pb::SearchUsersResponse { user_ids }))
    }

    async fn get_trends(
        &self,
        request: Request<pb::GetTrendsRequest>,
    ) -> Result<Response<pb::GetTrendsResponse>, Status> {
        let started = Instant::now();
        let response = SearchApi::get_trends(self, request.into_inner()).await?;
        self.stats.record_query(started);
        Ok(Response::new(response))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(self.status().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_queries_and_sorts_apart_and_ignore_spelling() {
        let a = query::parse("Rust  #tantivy").unwrap();
        let b = query::parse("rust #TANTIVY").unwrap();
        let c = query::parse("rust").unwrap();
        assert_eq!(
            fingerprint(&a, pb::SearchSort::Latest),
            fingerprint(&b, pb::SearchSort::Latest)
        );
        assert_ne!(
            fingerprint(&a, pb::SearchSort::Latest),
            fingerprint(&c, pb::SearchSort::Latest)
        );
        assert_ne!(
            fingerprint(&a, pb::SearchSort::Latest),
            fingerprint(&a, pb::SearchSort::Top)
        );
    }
}
