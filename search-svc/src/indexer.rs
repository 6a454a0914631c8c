//! The indexer: domain events in, index commits out, exactly once.
//!
//! Every replica reads the whole stream with plain tail reads
//! ([`EventLog::read_after`]) from the position its index last committed
//! ([`Checkpoint`]), not in a consumer group: each replica needs every
//! event, and its position lives with its index, so a restart resumes
//! exactly where the committed index ends. A batch is applied as one
//! commit; tag uses go to the trend store first (recording is idempotent,
//! so a batch replayed after a crash counts nothing twice).
//!
//! **Backfill.** An index that is new, or whose last backfill did not
//! finish, or that fell behind the stream's retention (entries after its
//! position were trimmed), is rebuilt from tweet-svc and graph-svc through
//! their paged scans (`ScanUsers`, `ScanTweets`), then follows the stream
//! from the last entry that existed when the backfill began. Events after
//! that entry are applied again on top; every write is an idempotent
//! upsert or delete, so the overlap is harmless.
//!
//! **Retention.** The replica pins its position in the stream
//! ([`EventLog::pin`]) after commits, so trimming never removes an entry it
//! has not applied; a replica that is gone for good is unpinned by its
//! peers ([`crate::replicas`]) after a timeout, and rebuilds by backfill if
//! it ever returns.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use prost::Message as _;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, Delivery, EventId, EventLog};
use warble_mesh::grpc::TracedChannel;
use warble_proto::common::v1::PageRequest;
use warble_proto::events::v1::{Event, event};
use warble_proto::graph::v1 as graph;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::limits::graph::MAX_SCAN_LIMIT as MAX_USER_SCAN;
use warble_proto::limits::tweet::{MAX_BATCH as MAX_TWEET_BATCH, MAX_SCAN_LIMIT as MAX_TWEET_SCAN};
use warble_proto::tweet::v1 as tweet;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

use crate::error::SearchError;
use crate::index::{Checkpoint, IndexOp, SearchIndex, TweetDoc, UserDoc};
use crate::trends::{BUCKET_MS, RETENTION_BUCKETS, TagUse, TrendStore, bucket_of};

/// How far behind the stream GetStatus counts, at most.
pub use warble_proto::limits::search::MAX_COUNTED_LAG;

/// How the indexer reads and commits.
#[derive(Debug, Clone)]
pub struct IndexerSettings {
    /// Most events applied in one commit.
    pub batch_events: usize,
    /// How long one read waits for new events.
    pub block: Duration,
    /// This replica's name: its pin in the stream.
    pub replica: String,
    /// Wait after a failure before trying again.
    pub retry_backoff: Duration,
}

impl Default for IndexerSettings {
    fn default() -> Self {
        Self {
            batch_events: 2_048,
            block: Duration::from_millis(500),
            replica: "search-0".into(),
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// The indexer's counters, served by GetStatus.
#[derive(Debug, Default)]
pub struct SearchStats {
    applied: std::sync::Mutex<Option<EventId>>,
    /// The index holds every event up to the stream's end as of some
    /// moment since the backfill: the replica is ready.
    pub caught_up: AtomicBool,
    /// Events applied since start.
    pub events_applied: AtomicU64,
    /// Commits since start.
    pub commits: AtomicU64,
    /// Users and tweets loaded by backfills since start.
    pub backfilled: AtomicU64,
    /// Queries answered since start.
    pub queries: AtomicU64,
    /// Microseconds spent answering them.
    pub query_micros: AtomicU64,
}

impl SearchStats {
    /// The last event applied and committed.
    pub fn applied(&self) -> Option<EventId> {
        *self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_applied(&self, id: Option<EventId>) {
        *self
            .applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = id;
    }

    /// Counts one answered query.
    pub fn record_query(&self, started: Instant) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.query_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// What a batch of events does to the index and to the trends.
#[derive(Debug, Default)]
pub struct Changes {
    pub ops: Vec<IndexOp>,
    pub tag_uses: Vec<TagUse>,
}

/// The tag uses of a tweet worth recording at `now_ms` (older ones have
/// expired from every trend window).
fn tag_uses(doc: &TweetDoc, now_ms: i64) -> Vec<TagUse> {
    let bucket = bucket_of(doc.created_at_ms);
    if bucket < bucket_of(now_ms) - RETENTION_BUCKETS {
        return Vec::new();
    }
    let tags: BTreeSet<String> = doc.hashtags.iter().map(|tag| tag.to_lowercase()).collect();
    tags.into_iter()
        .map(|tag| TagUse {
            tag,
            bucket,
            author_id: doc.author_id,
            tweet_id: doc.id,
        })
        .collect()
}

/// Turns events into index changes; events search does not use, and
/// payloads that do not decode, change nothing (the latter are logged:
/// the services that need them dead-letter them).
pub fn changes(deliveries: &[Delivery], now_ms: i64) -> Changes {
    let mut changes = Changes::default();
    for delivery in deliveries {
        let payload = match Event::decode(delivery.payload.as_slice()) {
            Ok(Event {
                payload: Some(payload),
                ..
            }) => payload,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(entry = %delivery.id, %error, "skipping an undecodable event");
                continue;
            }
        };
        match payload {
            event::Payload::TweetCreated(created) => {
                let doc = TweetDoc {
                    id: created.tweet_id,
                    author_id: created.author_id,
                    created_at_ms: created.created_at_ms,
                    text: created.text,
                    hashtags: created.hashtags,
                    mentions: created.mentions,
                    is_reply: created.reply_to_tweet_id.is_some(),
                    reply_to_author_id: created.reply_to_author_id,
                    has_media: !created.media_ids.is_empty(),
                };
                changes.tag_uses.extend(tag_uses(&doc, now_ms));
                changes.ops.push(IndexOp::UpsertTweet(doc));
            }
            event::Payload::TweetDeleted(deleted) => {
                changes.ops.push(IndexOp::DeleteTweet(deleted.tweet_id));
            }
            event::Payload::UserCreated(user) => {
                changes.ops.push(IndexOp::UpsertUser(UserDoc {
                    id: user.user_id,
                    username: user.username,
                    display_name: user.display_name,
                    followers: 0,
                }));
            }
            event::Payload::ProfileUpdated(profile) => {
                changes.ops.push(IndexOp::UpdateProfile {
                    user_id: profile.user_id,
                    username: profile.username,
                    display_name: profile.display_name,
                });
            }
            event::Payload::Followed(followed) => changes.ops.push(IndexOp::SetFollowers {
                user_id: followed.followee_id,
                followers: followed.followee_followers_count,
            }),
            event::Payload::Unfollowed(unfollowed) => changes.ops.push(IndexOp::SetFollowers {
                user_id: unfollowed.followee_id,
                followers: unfollowed.followee_followers_count,
            }),
            // Engagement is read from tweet-svc when ranking (always
            // current), and blocks and mutes are applied by the caller.
            _ => {}
        }
    }
    changes
}

/// Reads the stream into the index (see the module docs).
pub struct Indexer {
    pub(crate) index: Arc<SearchIndex>,
    pub(crate) trends: Arc<dyn TrendStore>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) tweets: TweetServiceClient<TracedChannel>,
    pub(crate) graph: GraphServiceClient<TracedChannel>,
    pub(crate) stats: Arc<SearchStats>,
    pub(crate) settings: IndexerSettings,
}

fn now_ms() -> i64 {
    warble_mesh::time::now_ms() as i64
}

impl Indexer {
    async fn apply(&self, changes: Changes, checkpoint: Checkpoint) -> Result<(), SearchError> {
        self.trends.record(&changes.tag_uses).await?;
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.apply(changes.ops, &checkpoint))
            .await
            .map_err(SearchError::storage)??;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The position to follow the stream from: the index's checkpoint, or
    /// after a backfill when the index cannot be trusted to continue.
    pub async fn prepare(&self) -> Result<Option<EventId>, SearchError> {
        let checkpoint = self.index.checkpoint()?;
        let resume = match &checkpoint {
            Some(checkpoint) if checkpoint.complete => {
                let applied = checkpoint.applied_id()?;
                let trimmed = self.log.max_trimmed_id(DOMAIN_EVENTS_STREAM).await?;
                match trimmed {
                    Some(trimmed) if applied.is_none_or(|applied| trimmed > applied) => {
                        tracing::warn!(
                            applied = ?applied.map(|id| id.to_string()),
                            trimmed = %trimmed,
                            "the stream was trimmed past this index's position; rebuilding it"
                        );
                        None
                    }
                    _ => Some(applied),
                }
            }
            Some(_) => {
                tracing::warn!("the last backfill did not finish; starting it over");
                None
            }
            None => {
                tracing::info!("new index; building it from tweet-svc and graph-svc");
                None
            }
        };
        let position = match resume {
            Some(applied) => applied,
            None => self.backfill().await?,
        };
        self.stats.set_applied(position);
        Ok(position)
    }

    /// Rebuilds the index from the services (see the module docs); returns
    /// the stream position to follow from.
    pub async fn backfill(&self) -> Result<Option<EventId>, SearchError> {
        let started = Instant::now();
        let follow_from = self.log.last_id(DOMAIN_EVENTS_STREAM).await?;
        // Pin before reading anything, so the events after `follow_from`
        // stay until they are applied, however long the backfill takes.
        self.log
            .pin(DOMAIN_EVENTS_STREAM, &self.settings.replica, follow_from)
            .await?;
        let in_progress = Checkpoint {
            applied: None,
            complete: false,
        };
        let index = self.index.clone();
        let cleared = in_progress.clone();
        tokio::task::spawn_blocking(move || index.clear(&cleared))
            .await
            .map_err(SearchError::storage)??;

        let mut users = 0u64;
        let mut cursor = String::new();
        loop {
            let page = self
                .graph
                .clone()
                .scan_users(graph::ScanUsersRequest {
                    page: Some(PageRequest {
                        cursor: cursor.clone(),
                        limit: MAX_USER_SCAN,
                    }),
                })
                .await
                .map_err(|status| SearchError::downstream("graph-svc", status))?
                .into_inner();
            let ops: Vec<IndexOp> = page
                .users
                .into_iter()
                .zip(
                    page.followers_counts
                        .into_iter()
                        .chain(std::iter::repeat(0)),
                )
                .map(|(user, followers)| {
                    IndexOp::UpsertUser(UserDoc {
                        id: user.id,
                        username: user.username,
                        display_name: user.display_name,
                        followers,
                    })
                })
                .collect();
            users += ops.len() as u64;
            self.stats
                .backfilled
                .fetch_add(ops.len() as u64, Ordering::Relaxed);
            self.apply(
                Changes {
                    ops,
                    tag_uses: Vec::new(),
                },
                in_progress.clone(),
            )
            .await?;
            cursor = page.page.map(|page| page.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                break;
            }
        }
        tracing::info!(users, "backfill: users loaded");

        let mut tweets = 0u64;
        let mut cursor = String::new();
        loop {
            let page = self
                .tweets
                .clone()
                .scan_tweets(tweet::ScanTweetsRequest {
                    page: Some(PageRequest {
                        cursor: cursor.clone(),
                        limit: MAX_TWEET_SCAN,
                    }),
                })
                .await
                .map_err(|status| SearchError::downstream("tweet-svc", status))?
                .into_inner();
            let parents = self.parent_authors(&page.tweets).await?;
            let now = now_ms();
            let mut changes = Changes::default();
            for scanned in page.tweets {
                let doc = TweetDoc {
                    id: scanned.id,
                    author_id: scanned.author_id,
                    created_at_ms: scanned.created_at_ms,
                    is_reply: scanned.reply_to_tweet_id.is_some(),
                    reply_to_author_id: scanned
                        .reply_to_tweet_id
                        .and_then(|parent| parents.get(&parent).copied()),
                    has_media: !scanned.media_ids.is_empty(),
                    text: scanned.text,
                    hashtags: scanned.hashtags,
                    mentions: scanned.mentions,
                };
                changes.tag_uses.extend(tag_uses(&doc, now));
                changes.ops.push(IndexOp::UpsertTweet(doc));
            }
            tweets += changes.ops.len() as u64;
            self.stats
                .backfilled
                .fetch_add(changes.ops.len() as u64, Ordering::Relaxed);
            self.apply(changes, in_progress.clone()).await?;
            tracing::info!(
                tweets,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "backfill: tweets so far"
            );
            cursor = page.page.map(|page| page.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                break;
            }
        }
        self.apply(Changes::default(), Checkpoint::at(follow_from))
            .await?;
        tracing::info!(
            users,
            tweets,
            elapsed_ms = started.elapsed().as_millis() as u64,
            follow_from = ?follow_from.map(|id| id.to_string()),
            "backfill done; following the stream"
        );
        Ok(follow_from)
    }

    /// The authors of the tweets `tweets` reply to (for `to:`), in batches.
    async fn parent_authors(
        &self,
        tweets: &[tweet::Tweet],
    ) -> Result<HashMap<u64, u64>, SearchError> {
        let parents: Vec<u64> = tweets
            .iter()
            .filter_map(|scanned| scanned.reply_to_tweet_id)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        let mut authors = HashMap::with_capacity(parents.len());
        for chunk in parents.chunks(MAX_TWEET_BATCH) {
            let found = self
                .tweets
                .clone()
                .get_tweets(tweet::GetTweetsRequest {
                    tweet_ids: chunk.to_vec(),
                    ..tweet::GetTweetsRequest::default()
                })
                .await
                .map_err(|status| SearchError::downstream("tweet-svc", status))?
                .into_inner();
            // A deleted parent's author is unknown: the reply still counts
            // for `is:reply`, not for `to:`.
            for parent in found.results.into_iter().filter_map(|lookup| lookup.tweet) {
                authors.insert(parent.id, parent.author_id);
            }
        }
        Ok(authors)
    }

    /// Follows the stream from `position` until `shutdown` resolves.
    pub async fn follow(&self, mut position: Option<EventId>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pinned = Instant::now();
        loop {
            let read = tokio::select! {
                () = &mut shutdown => break,
                read = self.log.read_after(
                    DOMAIN_EVENTS_STREAM,
                    position,
                    self.settings.batch_events,
                    self.settings.block,
                ) => read,
            };
            let outcome = match read {
                Ok(batch) if batch.is_empty() => self.check_caught_up(position).await,
                Ok(batch) => {
                    let last = batch.last().map(|delivery| delivery.id);
                    let count = batch.len() as u64;
                    let full = batch.len() >= self.settings.batch_events;
                    let changes = changes(&batch, now_ms());
                    let payloads: Vec<&[u8]> = batch
                        .iter()
                        .map(|delivery| delivery.payload.as_slice())
                        .collect();
                    let span = warble_mesh::telemetry::consumer_span("search-indexer", &payloads);
                    match self
                        .apply(changes, Checkpoint::at(last))
                        .instrument(span)
                        .await
                    {
                        Ok(()) => {
                            position = last;
                            self.stats.set_applied(position);
                            self.stats
                                .events_applied
                                .fetch_add(count, Ordering::Relaxed);
                            if pinned.elapsed() >= PIN_EVERY {
                                pinned = Instant::now();
                                self.pin(position).await;
                            }
                            if full {
                                Ok(())
                            } else {
                                self.check_caught_up(position).await
                            }
                        }
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error.into()),
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, "indexing failed; retrying from the last commit");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(self.settings.retry_backoff) => {}
                }
            }
        }
        self.pin(position).await;
    }

    async fn pin(&self, position: Option<EventId>) {
        if let Err(error) = self
            .log
            .pin(DOMAIN_EVENTS_STREAM, &self.settings.replica, position)
            .await
        {
            tracing::warn!(%error, "pinning the stream position failed; the next commit retries");
        }
    }

    async fn check_caught_up(&self, position: Option<EventId>) -> Result<(), SearchError> {
        if !self.stats.caught_up.load(Ordering::Relaxed)
            && self
                .log
                .count_after(DOMAIN_EVENTS_STREAM, position, 1)
                .await?
                == 0
        {
            tracing::info!(applied = ?position.map(|id| id.to_string()), "caught up with the stream");
            self.stats.caught_up.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// How often the stream position is pinned while indexing (and always at
/// shutdown): trimming runs far less often than this.
const PIN_EVERY: Duration = Duration::from_secs(1);

/// Buckets are ten minutes; assert the tag-use filter's arithmetic stays in range.
const _: () = assert!(BUCKET_MS > 0);

#[cfg(test)]
mod tests {
    use super::*;
    use warble_proto::events::v1::{TweetCreated, TweetDeleted};

    fn delivery(seq: u64, payload: event::Payload) -> Delivery {
        Delivery {
            id: EventId { ms: 1, seq },
            key: 0,
            payload: Event {
                event_id: seq,
                occurred_at_ms: 0,
                trace_context: Default::default(),
                payload: Some(payload),
            }
            .encode_to_vec(),
            delivery_count: 1,
        }
    }

    #[test]
    fn tweets_become_upserts_and_recent_tags_become_uses() {
        let now = 1_800_000_000_000;
        let created = |id: u64, created_at_ms: i64| {
            event::Payload::TweetCreated(TweetCreated {
                tweet_id: id,
                author_id: 7,
                created_at_ms,
                text: "hi #Rust #rust #go".into(),
                hashtags: vec!["rust".into(), "go".into()],
                reply_to_tweet_id: Some(3),
                reply_to_author_id: Some(9),
                ..TweetCreated::default()
            })
        };
        let batch = vec![
            delivery(1, created(1, now)),
            delivery(2, created(2, now - 40 * 3_600_000)),
            delivery(
                3,
                event::Payload::TweetDeleted(TweetDeleted {
                    tweet_id: 1,
                    ..TweetDeleted::default()
                }),
            ),
            Delivery {
                payload: b"not an event".to_vec(),
                ..delivery(4, created(4, now))
            },
        ];
        let changes = changes(&batch, now);
        assert_eq!(changes.ops.len(), 3);
        let IndexOp::UpsertTweet(doc) = &changes.ops[0] else {
            panic!("{:?}", changes.ops[0]);
        };
        assert!(doc.is_reply);
        assert_eq!(doc.reply_to_author_id, Some(9));
        assert_eq!(changes.ops[2], IndexOp::DeleteTweet(1));
        // Only the recent tweet's tags count, each once.
        let tags: Vec<&str> = changes
            .tag_uses
            .iter()
            .map(|tag_use| tag_use.tag.as_str())
            .collect();
        assert_eq!(tags, ["go", "rust"]);
    }
}
