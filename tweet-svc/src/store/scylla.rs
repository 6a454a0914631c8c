//! [`TweetStore`] on ScyllaDB, with a transactional outbox ([`Outbox`]) for
//! the events.
//!
//! The CQL and the schema's reasoning live in [`cql`]. In short:
//!
//! - **No write without its event.** A create or delete writes the change
//!   and its outbox entry in one LOGGED batch: ScyllaDB's batchlog applies
//!   every statement of it or, after a coordinator failure, replays it until
//!   all are applied. A relay (`warble_mesh::outbox::run_relay`) publishes
//!   the outbox to the stream; a republished entry is dropped by event id.
//! - **Exactly once where it matters, by LWT.** An idempotency key, a
//!   deletion, each like/retweet and each reply/quote count are claimed
//!   with a lightweight transaction before anything is counted; the batch
//!   that follows is deterministic (its timestamps come from the ids), so a
//!   later caller that finds a claim without its batch simply repeats it.
//! - **Routing and consistency.** Token-aware, DC-aware load balancing in
//!   `local_datacenter` (no failover to remote DCs, as LOCAL_QUORUM
//!   requires); LOCAL_QUORUM for every read and write, LOCAL_SERIAL for
//!   LWTs; a request timeout; the driver's default retry policy, which
//!   retries a write after a timeout or a broken connection only when the
//!   statement is marked idempotent (reads and the deterministic batches
//!   are; counter increments and LWTs are not, and LWTs are never retried).
//! - **Paging.** Lists page by keyset: the service's opaque cursor carries
//!   the last tweet id and the next page is `tweet_id < ?` on a partition
//!   clustered by id descending. Unlike a driver paging state, that cursor
//!   never expires, survives node and schema changes, and new tweets cannot
//!   shift it; every query here is bounded by `LIMIT`, so none needs the
//!   driver's paging. The scan of every tweet (the search index's backfill)
//!   pages the same way over the whole `tweets` table: `token(tweet_id) > ?`
//!   slices in token order, the cursor carrying the last token and id.
//! - **Engagement events.** A like, unlike, retweet or undo flips its
//!   per-user row by LWT, moves the counter, then writes the per-tweet
//!   index, the user's retweet list and the event in one LOGGED batch. The
//!   LWT cannot join that batch (other partitions), so a process dying
//!   between the LWT and the batch leaves the change without its event (the
//!   counter has the same window and stays one short); a repeated call finds
//!   nothing to change and publishes nothing.
//! - **Lists that outlive their tweets.** A user's retweets and bookmarks
//!   are not cleaned when a tweet is deleted (that would be a write per
//!   retweeter, unbounded and not atomic with the delete): reads check each
//!   tweet and skip deleted ones. Replies and an author's tweets are
//!   removed in the delete's own batch, so their lists hold live tweets only.
//! - **Batch creates** (`create_tweets`) are not batched here: they use the
//!   trait's default, up-front target checks then one `create_tweet` per
//!   tweet, so a batch is not atomic (see [`TweetStore::create_tweets`]).
//!
//! Not run against a live ScyllaDB in this repository's CI; the conformance
//! suite runs against it when `SCYLLA_URI` is set.

mod cql;
mod outbox;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::errors::{
    DbError, DeserializationError, ExecutionError, IntoRowsResultError, MaybeFirstRowError,
    NewSessionError, PrepareError, RequestAttemptError, RowsError,
};
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::policies::retry::DefaultRetryPolicy;
use ::scylla::response::query_result::QueryResult;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{Counter, CqlValue, MaybeUnset, Row};
use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::Mutex;
use warble_mesh::backends::ScyllaConfig;
use warble_mesh::snowflake::{self, WARBLE_EPOCH_MS};
use warble_proto::events::v1::{Event, TweetCreated, TweetDeleted, event};

use super::{
    Ancestors, AuthorEntries, AuthorEntry, Bookmark, BookmarkPage, CreateOutcome, Engagement,
    EngagementChange, EngagementWrite, EntryRef, MAX_SKIPPED_BOOKMARKS, MAX_SKIPPED_SCAN_TWEETS,
    NewTweet, ScanPosition, ScannedTweet, Tweet, TweetCounts, TweetLookup, TweetScanPage,
    TweetStore, ViewerState, engagement_event,
};
use crate::error::TweetError;
use outbox::{OutboxRecord, PositionClock, RelayState};

/// Requests in flight at once for one batch call (per-id reads are
/// single-partition and token-aware, so they beat a multi-partition `IN`).
const READ_CONCURRENCY: usize = 64;
/// Rows of the id watermark; spreading writes keeps each row cool.
const WATERMARK_SHARDS: i32 = 16;
/// Longest TTL ScyllaDB accepts (20 years).
const MAX_TTL_SECS: u64 = 630_720_000;

macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for TweetError {
            fn from(error: $error) -> Self {
                Self::storage(error)
            }
        }
    )*};
}
storage_errors!(
    ExecutionError,
    PrepareError,
    NewSessionError,
    IntoRowsResultError,
    MaybeFirstRowError,
    RowsError,
    DeserializationError
);

/// The tweet store on ScyllaDB. Cheap to clone.
#[derive(Clone)]
pub struct ScyllaTweetStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScyllaTweetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaTweetStore")
            .field("nodes", &self.inner.nodes)
            .field("keyspace", &self.inner.keyspace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    session: Session,
    statements: Statements,
    idempotency_ttl_ms: u64,
    idempotency_ttl_secs: i32,
    nodes: String,
    keyspace: String,
    relay: Mutex<RelayState>,
    /// Outbox entries this process wrote; lets an idle relay skip scans.
    local_outbox_writes: AtomicU64,
    /// Mints the outbox positions of this process's writes.
    positions: PositionClock,
}

/// Every statement, prepared once at start-up (preparing also checks that
/// the schema has every table and column the store uses).
struct Statements {
    select_tweet: PreparedStatement,
    select_author_page: PreparedStatement,
    select_author_ids: PreparedStatement,
    select_counts: PreparedStatement,
    select_retweet_id: PreparedStatement,
    select_user_retweets: PreparedStatement,
    select_bookmarked: PreparedStatement,
    select_bookmark_id: PreparedStatement,
    select_bookmarks_page: PreparedStatement,
    select_replies: PreparedStatement,
    select_author_count: PreparedStatement,
    select_scan_slice: PreparedStatement,
    select_scan_token: PreparedStatement,
    select_watermarks: PreparedStatement,
    select_outbox: PreparedStatement,
    select_progress: PreparedStatement,
    claim_key: PreparedStatement,
    replace_expired_key: PreparedStatement,
    release_key: PreparedStatement,
    create_batch: Batch,
    /// `create_batch` plus the reply's place in its parent's list.
    create_reply_batch: Batch,
    claim_delete: PreparedStatement,
    delete_batch: Batch,
    /// `delete_batch` plus the reply's removal from its parent's list.
    delete_reply_batch: Batch,
    count_targets: PreparedStatement,
    release_targets: PreparedStatement,
    add_replies: PreparedStatement,
    add_quotes: PreparedStatement,
    add_author_tweets: PreparedStatement,
    claim_retweet: PreparedStatement,
    claim_bookmark: PreparedStatement,
    release_bookmark: PreparedStatement,
    insert_bookmark_by_time: PreparedStatement,
    delete_bookmark_by_time: PreparedStatement,
    likes: EngagementStatements,
    retweets: EngagementStatements,
    advance_progress: PreparedStatement,
    drop_outbox_partition: PreparedStatement,
}

/// The statements of one engagement kind (their tables differ by name).
struct EngagementStatements {
    select_engaged: PreparedStatement,
    claim: PreparedStatement,
    release: PreparedStatement,
    /// After a set changed something: the per-tweet index (and for a
    /// retweet the user's list), the event, the watermark.
    set_batch: Batch,
    /// After a clear changed something: the same, removed.
    clear_batch: Batch,
    count: PreparedStatement,
}

/// What a read of a `tweets` row holds, in `cql::select_tweet` column order.
type TweetRow = (
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<i64>>,
    Option<bool>,
    Option<i64>,
);

/// A tweet of an author's list, in `cql::select_author_page` column order.
type AuthorTweetRow = (
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<i64>>,
);

/// A `tweets` row as a scan reads it, in `cql::select_scan_slice` column
/// order: the partition token, the id, the content, the deletion flag.
type ScanRow = (
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<i64>>,
    Option<bool>,
);

/// A row a scan read: where it sits, and its tweet if it is a live one.
struct ScannedRow {
    position: ScanPosition,
    live: Option<Tweet>,
}

impl ScannedRow {
    fn of(row: ScanRow) -> Self {
        let (token, id, author, body, reply, quote, hashtags, mentions, media, deleted) = row;
        let tweet_id = from_db(id);
        // A row without an author holds only LWT columns: not a tweet.
        let live = author
            .filter(|_| !deleted.unwrap_or(false))
            .map(|author| Tweet {
                id: tweet_id,
                author_id: from_db(author),
                text: body.unwrap_or_default(),
                reply_to_tweet_id: reply.map(from_db),
                quote_of_tweet_id: quote.map(from_db),
                hashtags: hashtags.unwrap_or_default(),
                mentions: mentions.unwrap_or_default(),
                media_ids: media.unwrap_or_default().into_iter().map(from_db).collect(),
            });
        Self {
            position: ScanPosition { token, tweet_id },
            live,
        }
    }
}

/// An outbox row, in `cql::select_outbox` column order.
type OutboxRow = (i64, i64, String, i64, Vec<u8>);

/// A stored tweet with the state reads need.
struct StoredTweet {
    tweet: Tweet,
    deleted: bool,
    delete_event_id: Option<u64>,
}

/// The answer of a conditional statement: whether it applied, and the row
/// as it was (ScyllaDB returns the old row either way; Cassandra when not
/// applied), read by column name because the two servers differ in which
/// columns they send.
struct LwtOutcome {
    applied: bool,
    columns: Vec<String>,
    row: Option<Row>,
}

impl LwtOutcome {
    fn from_result(result: QueryResult) -> Result<Self, TweetError> {
        let rows = result.into_rows_result()?;
        let columns: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|spec| spec.name().to_owned())
            .collect();
        let row = rows.maybe_first_row::<Row>()?;
        let mut outcome = Self {
            applied: false,
            columns,
            row,
        };
        outcome.applied = outcome
            .value("[applied]")
            .and_then(CqlValue::as_boolean)
            .ok_or_else(|| TweetError::storage("conditional statement without [applied]"))?;
        Ok(outcome)
    }

    fn value(&self, column: &str) -> Option<&CqlValue> {
        let index = self.columns.iter().position(|name| name == column)?;
        self.row.as_ref()?.columns.get(index)?.as_ref()
    }

    fn bigint(&self, column: &str) -> Option<i64> {
        self.value(column).and_then(CqlValue::as_bigint)
    }
}

/// An idempotency key's earlier claim.
struct EarlierClaim {
    tweet_id: u64,
    event_id: u64,
    fingerprint: Vec<u8>,
    created_at_ms: u64,
}

/// What claiming an idempotency key decided.
enum KeyClaim {
    /// The key is this request's: create the tweet.
    Claimed,
    /// An earlier request with the same content created this tweet.
    Replay(Tweet),
    /// An earlier request claimed the key but its tweet is not there yet
    /// (it is in flight, or its process died): write that tweet, under the
    /// ids the claim recorded, on its behalf.
    Complete { tweet_id: u64, event_id: u64 },
}

impl ScyllaTweetStore {
    /// Connects to the cluster in `config`, creates the keyspace and tables
    /// if missing, prepares every statement (which fails if the schema lacks
    /// anything the store uses) and readies the outbox. Idempotency keys
    /// return their tweet for `idempotency_ttl`.
    pub async fn connect(
        config: &ScyllaConfig,
        idempotency_ttl: Duration,
    ) -> Result<Self, TweetError> {
        let nodes = config.node_list();
        let keyspace = config.keyspace.clone();
        let session = build_session(config).await?;
        create_schema(&session, config).await?;
        let statements = Statements::prepare(&session, &keyspace).await?;
        let store = Self {
            inner: Arc::new(Inner {
                session,
                statements,
                idempotency_ttl_ms: u64::try_from(idempotency_ttl.as_millis()).unwrap_or(u64::MAX),
                idempotency_ttl_secs: i32::try_from(
                    idempotency_ttl.as_secs().clamp(1, MAX_TTL_SECS),
                )
                .unwrap_or(i32::MAX),
                nodes: nodes.join(","),
                keyspace,
                relay: Mutex::new(RelayState::new()),
                local_outbox_writes: AtomicU64::new(0),
                positions: PositionClock::default(),
            }),
        };
        store.init_outbox_progress().await?;
        Ok(store)
    }

    /// The keyspace this store uses.
    pub fn keyspace(&self) -> &str {
        &self.inner.keyspace
    }

    fn statements(&self) -> &Statements {
        &self.inner.statements
    }

    fn session(&self) -> &Session {
        &self.inner.session
    }

    async fn load_tweet(&self, tweet_id: u64) -> Result<Option<StoredTweet>, TweetError> {
        let row = self
            .session()
            .execute_unpaged(&self.statements().select_tweet, (to_db(tweet_id),))
            .await?
            .into_rows_result()?
            .maybe_first_row::<TweetRow>()?;
        let Some((author, body, reply, quote, hashtags, mentions, media, deleted, delete_event)) =
            row
        else {
            return Ok(None);
        };
        // A row without an author holds only LWT columns: not a tweet.
        let Some(author) = author else {
            return Ok(None);
        };
        Ok(Some(StoredTweet {
            tweet: Tweet {
                id: tweet_id,
                author_id: from_db(author),
                text: body.unwrap_or_default(),
                reply_to_tweet_id: reply.map(from_db),
                quote_of_tweet_id: quote.map(from_db),
                hashtags: hashtags.unwrap_or_default(),
                mentions: mentions.unwrap_or_default(),
                media_ids: media.unwrap_or_default().into_iter().map(from_db).collect(),
            },
            deleted: deleted.unwrap_or(false),
            delete_event_id: delete_event.map(from_db),
        }))
    }

    async fn is_live(&self, tweet_id: u64) -> Result<bool, TweetError> {
        Ok(self
            .load_tweet(tweet_id)
            .await?
            .is_some_and(|stored| !stored.deleted))
    }

    /// The author of a live reply/quote target. Checked before the write,
    /// not atomically with it: a target deleted in between still gets the
    /// reply (the embedded store, with one transaction, refuses it).
    async fn live_author(
        &self,
        target: Option<u64>,
        field: &'static str,
    ) -> Result<Option<u64>, TweetError> {
        let Some(tweet_id) = target else {
            return Ok(None);
        };
        match self.load_tweet(tweet_id).await? {
            Some(stored) if !stored.deleted => Ok(Some(stored.tweet.author_id)),
            _ => Err(TweetError::TargetNotFound { field, tweet_id }),
        }
    }

    async fn create(&self, new: NewTweet) -> Result<CreateOutcome, TweetError> {
        let NewTweet {
            mut tweet,
            idempotency_key,
            mut event_id,
        } = new;
        // The key first, as the embedded store does: a retry replays its
        // tweet even if a target was deleted since.
        let mut replayed = false;
        let mut claimed_key = None;
        if let Some(key) = idempotency_key.as_deref() {
            match self.claim_key(&tweet, key, event_id).await? {
                KeyClaim::Claimed => claimed_key = Some(key),
                KeyClaim::Replay(original) => return Ok(CreateOutcome::Replayed(original)),
                KeyClaim::Complete {
                    tweet_id,
                    event_id: claimed_event_id,
                } => {
                    tweet.id = tweet_id;
                    event_id = claimed_event_id;
                    replayed = true;
                }
            }
        }
        let targets = async {
            Ok::<_, TweetError>((
                self.live_author(tweet.reply_to_tweet_id, "reply_to_tweet_id")
                    .await?,
                self.live_author(tweet.quote_of_tweet_id, "quote_of_tweet_id")
                    .await?,
            ))
        };
        let (reply_to_author_id, quote_of_author_id) = match targets.await {
            Ok(authors) => authors,
            Err(refused) => {
                // Nothing was written for this key: free it, as the embedded
                // store's aborted transaction does.
                if let Some(key) = claimed_key {
                    self.release_key(tweet.author_id, key, tweet.id).await?;
                }
                return Err(refused);
            }
        };

        self.write_new_tweet(&tweet, event_id, reply_to_author_id, quote_of_author_id)
            .await?;
        self.move_counts(&tweet, 1).await?;
        Ok(if replayed {
            CreateOutcome::Replayed(tweet)
        } else {
            CreateOutcome::Created(tweet)
        })
    }

    /// The create's LOGGED batch: the tweet, its place in the author's
    /// list, its `TweetCreated` in the outbox and the id watermark. Every
    /// value derives from the tweet and its ids, so repeating it (a driver
    /// retry, or a later call completing a crashed one) writes the same rows.
    async fn write_new_tweet(
        &self,
        tweet: &Tweet,
        event_id: u64,
        reply_to_author_id: Option<u64>,
        quote_of_author_id: Option<u64>,
    ) -> Result<(), TweetError> {
        let created_ms = tweet.created_at_ms();
        let event = Event {
            event_id,
            occurred_at_ms: millis(created_ms),
            trace_context: Default::default(),
            payload: Some(event::Payload::TweetCreated(TweetCreated {
                tweet_id: tweet.id,
                author_id: tweet.author_id,
                created_at_ms: millis(created_ms),
                text: tweet.text.clone(),
                reply_to_tweet_id: tweet.reply_to_tweet_id,
                reply_to_author_id,
                quote_of_tweet_id: tweet.quote_of_tweet_id,
                quote_of_author_id,
                hashtags: tweet.hashtags.clone(),
                mentions: tweet.mentions.clone(),
                media_ids: tweet.media_ids.clone(),
            })),
        };
        let write_ts = write_timestamp(tweet.id, 0);
        let outbox = OutboxRecord::new(tweet.author_id, &event, self.inner.positions.next());
        let watermark = WatermarkRecord::new(tweet.id.max(event_id));
        let content = ContentValues::of(tweet);
        let tweet_row = (
            to_db(tweet.id),
            to_db(tweet.author_id),
            content.body,
            content.reply,
            content.quote,
            content.hashtags.clone(),
            content.mentions.clone(),
            content.media.clone(),
            write_ts,
        );
        let author_row = (
            to_db(tweet.author_id),
            to_db(tweet.id),
            content.body,
            content.reply,
            content.quote,
            content.hashtags,
            content.mentions,
            content.media,
            write_ts,
        );
        let statements = self.statements();
        match tweet.reply_to_tweet_id {
            Some(parent) => {
                let reply_row = (to_db(parent), to_db(tweet.id), write_ts);
                let values = (
                    tweet_row,
                    author_row,
                    reply_row,
                    outbox.values(),
                    watermark.values(),
                );
                self.session()
                    .batch(&statements.create_reply_batch, values)
                    .await?;
            }
            None => {
                let values = (tweet_row, author_row, outbox.values(), watermark.values());
                self.session()
                    .batch(&statements.create_batch, values)
                    .await?;
            }
        }
        self.inner
            .local_outbox_writes
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Claims `key` for `tweet`, or tells what an earlier claim means.
    async fn claim_key(
        &self,
        tweet: &Tweet,
        key: &str,
        event_id: u64,
    ) -> Result<KeyClaim, TweetError> {
        let fingerprint = tweet.content_fingerprint().to_be_bytes().to_vec();
        let created_ms = tweet.created_at_ms();
        // A claim can expire or be taken over between two reads; a few
        // rounds settle it, more mean something is wrong.
        for _ in 0..3 {
            let outcome = LwtOutcome::from_result(
                self.session()
                    .execute_unpaged(
                        &self.statements().claim_key,
                        (
                            to_db(tweet.author_id),
                            key,
                            to_db(tweet.id),
                            to_db(event_id),
                            fingerprint.as_slice(),
                            to_db(created_ms),
                            self.inner.idempotency_ttl_secs,
                        ),
                    )
                    .await?,
            )?;
            if outcome.applied {
                return Ok(KeyClaim::Claimed);
            }
            let Some(earlier) = earlier_claim(&outcome) else {
                // The row expired between the condition and the answer.
                continue;
            };
            if created_ms.saturating_sub(earlier.created_at_ms) >= self.inner.idempotency_ttl_ms {
                // Expired by the ids' clocks (the same rule as the embedded
                // store) though the row's TTL has not run out: take it over.
                let replaced = LwtOutcome::from_result(
                    self.session()
                        .execute_unpaged(
                            &self.statements().replace_expired_key,
                            (
                                self.inner.idempotency_ttl_secs,
                                to_db(tweet.id),
                                to_db(event_id),
                                fingerprint.as_slice(),
                                to_db(created_ms),
                                to_db(tweet.author_id),
                                key,
                                to_db(earlier.tweet_id),
                            ),
                        )
                        .await?,
                )?;
                if replaced.applied {
                    return Ok(KeyClaim::Claimed);
                }
                continue;
            }
            if earlier.fingerprint != fingerprint {
                return Err(TweetError::IdempotencyKeyReused);
            }
            return match self.load_tweet(earlier.tweet_id).await? {
                Some(stored) if stored.deleted => Err(TweetError::IdempotentTweetDeleted {
                    tweet_id: earlier.tweet_id,
                }),
                Some(stored) => Ok(KeyClaim::Replay(stored.tweet)),
                None => Ok(KeyClaim::Complete {
                    tweet_id: earlier.tweet_id,
                    event_id: earlier.event_id,
                }),
            };
        }
        Err(TweetError::storage(format!(
            "idempotency key of author {} kept changing while being claimed",
            tweet.author_id
        )))
    }

    /// Frees a key this call claimed (conditional on the claim still
    /// naming `tweet_id`, so a later claim is never removed).
    async fn release_key(
        &self,
        author_id: u64,
        key: &str,
        tweet_id: u64,
    ) -> Result<(), TweetError> {
        self.session()
            .execute_unpaged(
                &self.statements().release_key,
                (to_db(author_id), key, to_db(tweet_id)),
            )
            .await?;
        Ok(())
    }

    async fn delete(
        &self,
        tweet_id: u64,
        requester_id: u64,
        event_id: u64,
    ) -> Result<bool, TweetError> {
        let stored = self
            .load_tweet(tweet_id)
            .await?
            .ok_or(TweetError::TweetNotFound(tweet_id))?;
        if stored.tweet.author_id != requester_id {
            return Err(TweetError::NotAuthor { tweet_id });
        }
        if stored.deleted {
            return Ok(false);
        }
        // Claim the deletion for this event id. Losing means another call
        // claimed it first; its batch may not have landed (a crash), so this
        // call writes the same deterministic batch under the winner's id.
        let (owned, winner) = match stored.delete_event_id {
            Some(claimed) => (false, claimed),
            None => {
                let outcome = LwtOutcome::from_result(
                    self.session()
                        .execute_unpaged(
                            &self.statements().claim_delete,
                            (to_db(event_id), to_db(tweet_id)),
                        )
                        .await?,
                )?;
                if outcome.applied {
                    (true, event_id)
                } else {
                    let claimed = outcome.bigint("delete_event_id").ok_or_else(|| {
                        TweetError::storage("deletion claim lost without a winning event id")
                    })?;
                    (false, from_db(claimed))
                }
            }
        };

        let tweet = &stored.tweet;
        let deleted_at_ms = millis(snowflake::decode(winner).unix_ms);
        let event = Event {
            event_id: winner,
            occurred_at_ms: deleted_at_ms,
            trace_context: Default::default(),
            payload: Some(event::Payload::TweetDeleted(TweetDeleted {
                tweet_id,
                author_id: tweet.author_id,
                created_at_ms: millis(tweet.created_at_ms()),
                deleted_at_ms,
                reply_to_tweet_id: tweet.reply_to_tweet_id,
                quote_of_tweet_id: tweet.quote_of_tweet_id,
                media_ids: tweet.media_ids.clone(),
            })),
        };
        // Above the create's timestamp even within one millisecond, so the
        // delete wins over any repeat of the create's batch.
        let delete_ts = write_timestamp(winner, 500);
        let outbox = OutboxRecord::new(tweet.author_id, &event, self.inner.positions.next());
        let watermark = WatermarkRecord::new(winner);
        let tweet_row = (delete_ts, to_db(tweet_id));
        let author_row = (delete_ts, to_db(tweet.author_id), to_db(tweet_id));
        let statements = self.statements();
        match tweet.reply_to_tweet_id {
            Some(parent) => {
                let reply_row = (delete_ts, to_db(parent), to_db(tweet_id));
                let values = (
                    tweet_row,
                    author_row,
                    reply_row,
                    outbox.values(),
                    watermark.values(),
                );
                self.session()
                    .batch(&statements.delete_reply_batch, values)
                    .await?;
            }
            None => {
                let values = (tweet_row, author_row, outbox.values(), watermark.values());
                self.session()
                    .batch(&statements.delete_batch, values)
                    .await?;
            }
        }
        self.inner
            .local_outbox_writes
            .fetch_add(1, Ordering::Relaxed);

        self.move_counts(tweet, -1).await?;
        Ok(owned)
    }

    /// Raises (`delta = 1`) or lowers (`-1`) the counts `tweet` adds to:
    /// its author's tweet count and its targets' reply/quote counts, once
    /// per tweet in each direction: the LWT flag lets one caller through,
    /// the counter writes are never retried. (Tweets created before author
    /// counts existed were only flagged when they had targets; a flag never
    /// raised is never released, so their authors' counts stay consistent.)
    async fn move_counts(&self, tweet: &Tweet, delta: i64) -> Result<(), TweetError> {
        let gate = if delta > 0 {
            &self.statements().count_targets
        } else {
            &self.statements().release_targets
        };
        let gate = LwtOutcome::from_result(
            self.session()
                .execute_unpaged(gate, (to_db(tweet.id),))
                .await?,
        )?;
        if !gate.applied {
            return Ok(());
        }
        self.session()
            .execute_unpaged(
                &self.statements().add_author_tweets,
                (Counter(delta), to_db(tweet.author_id)),
            )
            .await?;
        if let Some(parent) = tweet.reply_to_tweet_id {
            self.session()
                .execute_unpaged(
                    &self.statements().add_replies,
                    (Counter(delta), to_db(parent)),
                )
                .await?;
        }
        if let Some(quoted) = tweet.quote_of_tweet_id {
            self.session()
                .execute_unpaged(
                    &self.statements().add_quotes,
                    (Counter(delta), to_db(quoted)),
                )
                .await?;
        }
        Ok(())
    }

    async fn counts_of(&self, tweet_id: u64) -> Result<TweetCounts, TweetError> {
        let row = self
            .session()
            .execute_unpaged(&self.statements().select_counts, (to_db(tweet_id),))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(
                Option<Counter>,
                Option<Counter>,
                Option<Counter>,
                Option<Counter>,
            )>()?;
        // A count one short after a crash can reach -1 on the way down;
        // never report below zero.
        let count =
            |counter: Option<Counter>| u64::try_from(counter.map_or(0, |c| c.0)).unwrap_or(0);
        Ok(row.map_or_else(
            TweetCounts::default,
            |(likes, retweets, replies, quotes)| TweetCounts {
                likes: count(likes),
                retweets: count(retweets),
                replies: count(replies),
                quotes: count(quotes),
            },
        ))
    }

    async fn engage(&self, write: EngagementWrite) -> Result<EngagementChange, TweetError> {
        let EngagementWrite {
            kind,
            user_id,
            tweet_id,
            engaged,
            ..
        } = write;
        let tweet_author_id = match self.load_tweet(tweet_id).await? {
            Some(stored) if !stored.deleted => stored.tweet.author_id,
            _ => return Err(TweetError::TweetNotFound(tweet_id)),
        };
        let statements = match kind {
            Engagement::Like => &self.statements().likes,
            Engagement::Retweet => &self.statements().retweets,
        };
        let keys = (to_db(user_id), to_db(tweet_id));
        // The per-user row is the truth and its LWT the gate: concurrent
        // calls for one user serialise on that user's partition (never on a
        // viral tweet's), and only the call that flipped it counts.
        let (changed, retweet_id) = match (kind, engaged) {
            (Engagement::Retweet, true) => {
                let claim = LwtOutcome::from_result(
                    self.session()
                        .execute_unpaged(
                            &self.statements().claim_retweet,
                            (keys.0, keys.1, to_db(write.retweet_id)),
                        )
                        .await?,
                )?;
                if claim.applied {
                    (true, Some(write.retweet_id))
                } else {
                    // The existing retweet's row came back with the answer.
                    (false, claim.bigint("retweet_id").map(from_db))
                }
            }
            (Engagement::Retweet, false) => {
                // Read the id first: not every server returns the removed
                // row with a conditional delete's answer.
                let existing = self.retweet_id_of(user_id, tweet_id).await?;
                let released = LwtOutcome::from_result(
                    self.session()
                        .execute_unpaged(&statements.release, keys)
                        .await?,
                )?;
                (released.applied, existing.filter(|_| released.applied))
            }
            (Engagement::Like, _) => {
                let gate = if engaged {
                    &statements.claim
                } else {
                    &statements.release
                };
                let flipped =
                    LwtOutcome::from_result(self.session().execute_unpaged(gate, keys).await?)?;
                (flipped.applied, None)
            }
        };
        if changed {
            let delta = if engaged { 1 } else { -1 };
            self.session()
                .execute_unpaged(&statements.count, (Counter(delta), to_db(tweet_id)))
                .await?;
        }
        let counts = self.counts_of(tweet_id).await?;
        let change = EngagementChange {
            changed,
            count: match kind {
                Engagement::Like => counts.likes,
                Engagement::Retweet => counts.retweets,
            },
            retweet_id,
        };
        if changed {
            self.publish_engagement(&write, tweet_author_id, &change)
                .await?;
        }
        Ok(change)
    }

    /// The LOGGED batch after an engagement changed: the per-tweet index
    /// (and for a retweet the user's list), the event, the id watermark.
    async fn publish_engagement(
        &self,
        write: &EngagementWrite,
        tweet_author_id: u64,
        change: &EngagementChange,
    ) -> Result<(), TweetError> {
        let event = engagement_event(write, tweet_author_id, change);
        let outbox = OutboxRecord::new(write.user_id, &event, self.inner.positions.next());
        let retweet_id = change.retweet_id.unwrap_or(0);
        let watermark = WatermarkRecord::new(write.event_id.max(retweet_id));
        let (user, tweet) = (to_db(write.user_id), to_db(write.tweet_id));
        let statements = self.statements();
        let session = self.session();
        match (write.kind, write.engaged) {
            (Engagement::Like, true) => {
                let values = ((tweet, user), outbox.values(), watermark.values());
                session.batch(&statements.likes.set_batch, values).await?;
            }
            (Engagement::Like, false) => {
                let values = ((tweet, user), outbox.values(), watermark.values());
                session.batch(&statements.likes.clear_batch, values).await?;
            }
            (Engagement::Retweet, true) => {
                let values = (
                    (tweet, user),
                    (user, to_db(retweet_id), tweet),
                    outbox.values(),
                    watermark.values(),
                );
                session
                    .batch(&statements.retweets.set_batch, values)
                    .await?;
            }
            (Engagement::Retweet, false) => {
                // A retweet made before retweets had ids (0) has no list row.
                let values = (
                    (tweet, user),
                    (user, to_db(retweet_id)),
                    outbox.values(),
                    watermark.values(),
                );
                session
                    .batch(&statements.retweets.clear_batch, values)
                    .await?;
            }
        }
        self.inner
            .local_outbox_writes
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn retweet_id_of(&self, user_id: u64, tweet_id: u64) -> Result<Option<u64>, TweetError> {
        let row = self
            .session()
            .execute_unpaged(
                &self.statements().select_retweet_id,
                (to_db(user_id), to_db(tweet_id)),
            )
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?;
        Ok(row.and_then(|(id,)| id).map(from_db))
    }

    /// Up to `want` of the user's retweets of live tweets with retweet ids
    /// below `below`, newest first, with those tweets. Retweets of tweets
    /// deleted later stay in the user's list, so this reads slices until it
    /// has `want` live ones or the list ends (each slice bounded).
    async fn live_retweets(
        &self,
        user_id: u64,
        mut below: i64,
        want: usize,
    ) -> Result<Vec<(u64, Tweet)>, TweetError> {
        let mut found = Vec::new();
        if want == 0 {
            return Ok(found);
        }
        let slice = want.saturating_add(1);
        loop {
            let result = self
                .session()
                .execute_unpaged(
                    &self.statements().select_user_retweets,
                    (to_db(user_id), below, cql_limit(slice)),
                )
                .await?
                .into_rows_result()?;
            let rows = result
                .rows::<(i64, i64)>()?
                .collect::<Result<Vec<_>, _>>()?;
            let ended = rows.len() < slice;
            let Some(&(last, _)) = rows.last() else {
                return Ok(found);
            };
            below = last;
            let tweet_ids: Vec<u64> = rows.iter().map(|&(_, id)| from_db(id)).collect();
            let tweets: Vec<Option<StoredTweet>> = futures::stream::iter(tweet_ids)
                .map(|tweet_id| self.load_tweet(tweet_id))
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
            for (&(retweet_id, _), stored) in rows.iter().zip(tweets) {
                if let Some(stored) = stored.filter(|stored| !stored.deleted) {
                    found.push((from_db(retweet_id), stored.tweet));
                    if found.len() == want {
                        return Ok(found);
                    }
                }
            }
            if ended {
                return Ok(found);
            }
        }
    }

    /// One page of an author's own live tweets (the denormalised list).
    async fn author_page(
        &self,
        author_id: u64,
        below: i64,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError> {
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().select_author_page,
                (to_db(author_id), below, cql_limit(limit)),
            )
            .await?
            .into_rows_result()?;
        result
            .rows::<AuthorTweetRow>()?
            .map(|row| Ok(tweet_from_author_row(author_id, row?)))
            .collect()
    }

    /// One author's answer of `list_authors_entries`.
    async fn author_entries(
        &self,
        author_id: u64,
        below: i64,
        limit: usize,
        include_retweets: bool,
    ) -> Result<AuthorEntries, TweetError> {
        let (own_ids, own_more) = self.author_ids(author_id, below, limit).await?;
        let own = own_ids.into_iter().map(|tweet_id| EntryRef {
            tweet_id,
            author_id,
            retweet_id: None,
        });
        if !include_retweets {
            return Ok(AuthorEntries {
                entries: own.collect(),
                has_more: own_more,
            });
        }
        // One retweet beyond `limit` tells whether more follow.
        let retweets = self
            .live_retweets(author_id, below, limit.saturating_add(1))
            .await?
            .into_iter()
            .map(|(retweet_id, tweet)| EntryRef {
                tweet_id: tweet.id,
                author_id: tweet.author_id,
                retweet_id: Some(retweet_id),
            });
        let mut entries: Vec<EntryRef> = own.chain(retweets).collect();
        entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.sort_id()));
        let has_more = own_more || entries.len() > limit;
        entries.truncate(limit);
        Ok(AuthorEntries { entries, has_more })
    }

    async fn bookmark_tweet(
        &self,
        user_id: u64,
        tweet_id: u64,
        bookmark_id: u64,
    ) -> Result<bool, TweetError> {
        if !self.is_live(tweet_id).await? {
            return Err(TweetError::TweetNotFound(tweet_id));
        }
        let statements = self.statements();
        let claim = LwtOutcome::from_result(
            self.session()
                .execute_unpaged(
                    &statements.claim_bookmark,
                    (to_db(user_id), to_db(tweet_id), to_db(bookmark_id)),
                )
                .await?,
        )?;
        let listed_as = if claim.applied {
            bookmark_id
        } else {
            claim
                .bigint("bookmark_id")
                .map(from_db)
                .ok_or_else(|| TweetError::storage("bookmark claim lost without a bookmark id"))?
        };
        // Written after the claim, and again by a repeated call, which so
        // completes a call that died between the two (same values, same row).
        self.session()
            .execute_unpaged(
                &statements.insert_bookmark_by_time,
                (to_db(user_id), to_db(listed_as), to_db(tweet_id)),
            )
            .await?;
        Ok(claim.applied)
    }

    async fn unbookmark_tweet(&self, user_id: u64, tweet_id: u64) -> Result<bool, TweetError> {
        let statements = self.statements();
        let row = self
            .session()
            .execute_unpaged(
                &statements.select_bookmark_id,
                (to_db(user_id), to_db(tweet_id)),
            )
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?;
        let Some(bookmark_id) = row.and_then(|(id,)| id) else {
            return Ok(false);
        };
        // The list row first: a call dying in between leaves the bookmark
        // (still reported) without its list row, which a repeated
        // unbookmark or bookmark completes; never a listed ghost.
        self.session()
            .execute_unpaged(
                &statements.delete_bookmark_by_time,
                (to_db(user_id), bookmark_id),
            )
            .await?;
        let released = LwtOutcome::from_result(
            self.session()
                .execute_unpaged(
                    &statements.release_bookmark,
                    (to_db(user_id), to_db(tweet_id), bookmark_id),
                )
                .await?,
        )?;
        Ok(released.applied)
    }

    async fn bookmarks_page(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<BookmarkPage, TweetError> {
        let mut page = BookmarkPage::default();
        if limit == 0 {
            return Ok(page);
        }
        // Enough rows for a full page past the most skips allowed, plus one
        // that tells whether any row is left.
        let budget = limit.saturating_add(MAX_SKIPPED_BOOKMARKS);
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().select_bookmarks_page,
                (
                    to_db(user_id),
                    below(before),
                    cql_limit(budget.saturating_add(1)),
                ),
            )
            .await?
            .into_rows_result()?;
        let rows = result
            .rows::<(i64, i64)>()?
            .collect::<Result<Vec<_>, _>>()?;
        let tweet_ids: Vec<u64> = rows.iter().map(|&(_, id)| from_db(id)).collect();
        let mut tweets = futures::stream::iter(tweet_ids)
            .map(|tweet_id| self.load_tweet(tweet_id))
            .buffered(READ_CONCURRENCY);
        let mut skipped = 0;
        let mut index = 0;
        while let Some(stored) = tweets.try_next().await? {
            let (bookmark_id, tweet_id) = rows[index];
            index += 1;
            match stored {
                Some(stored) if !stored.deleted => page.bookmarks.push(Bookmark {
                    tweet_id: from_db(tweet_id),
                    author_id: stored.tweet.author_id,
                    bookmark_id: from_db(bookmark_id),
                }),
                _ => skipped += 1,
            }
            if page.bookmarks.len() == limit || skipped == MAX_SKIPPED_BOOKMARKS {
                if index < rows.len() {
                    page.next_before = Some(from_db(bookmark_id));
                }
                break;
            }
        }
        Ok(page)
    }

    async fn replies_page(
        &self,
        tweet_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError> {
        if self.load_tweet(tweet_id).await?.is_none() {
            return Err(TweetError::TweetNotFound(tweet_id));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let above = after.map_or(i64::MIN, to_db);
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().select_replies,
                (to_db(tweet_id), above, cql_limit(limit)),
            )
            .await?
            .into_rows_result()?;
        let reply_ids = result
            .rows::<(i64,)>()?
            .map(|row| Ok(from_db(row?.0)))
            .collect::<Result<Vec<u64>, TweetError>>()?;
        // The list holds live replies only (the delete's batch removes
        // them); a reply deleted between the two reads is skipped.
        let replies: Vec<Option<StoredTweet>> = futures::stream::iter(reply_ids)
            .map(|id| self.load_tweet(id))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(replies
            .into_iter()
            .flatten()
            .filter(|stored| !stored.deleted)
            .map(|stored| stored.tweet)
            .collect())
    }

    /// One read per hop: a tweet names only its parent, and a chain is
    /// short in practice (a thread shown above a tweet, at most
    /// `MAX_ANCESTORS` of it kept); denormalising the chain into each reply
    /// would cost every reply a write of its whole ancestry.
    async fn walk_ancestors(&self, tweet_id: u64, limit: usize) -> Result<Ancestors, TweetError> {
        let stored = self
            .load_tweet(tweet_id)
            .await?
            .ok_or(TweetError::TweetNotFound(tweet_id))?;
        let mut ancestors = Ancestors::default();
        // A reply is newer than its parent, so the walk ends.
        let mut next = stored.tweet.reply_to_tweet_id;
        while let Some(id) = next {
            let Some(parent) = self.load_tweet(id).await? else {
                break;
            };
            next = parent.tweet.reply_to_tweet_id;
            if parent.deleted {
                continue;
            }
            if ancestors.tweets.len() == limit {
                ancestors.truncated = true;
                break;
            }
            ancestors.tweets.push(parent.tweet);
        }
        ancestors.tweets.reverse();
        Ok(ancestors)
    }

    async fn author_count(&self, author_id: u64) -> Result<u64, TweetError> {
        let row = self
            .session()
            .execute_unpaged(&self.statements().select_author_count, (to_db(author_id),))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<Counter>,)>()?;
        // Never below zero, as with tweet counts.
        Ok(row
            .and_then(|(count,)| count)
            .map_or(0, |count| u64::try_from(count.0).unwrap_or(0)))
    }

    /// One page of the scan of every tweet, in ascending `(token, id)`
    /// order: from `after`, reads the rest of its token, then slices of
    /// the tokens after it, until the page holds `limit` live tweets, the
    /// skip budget is spent or the table ends; then the live tweets' counts.
    async fn scan_page(
        &self,
        after: Option<ScanPosition>,
        limit: usize,
    ) -> Result<TweetScanPage, TweetError> {
        let limit = limit.max(1);
        let mut live = Vec::new();
        let mut skipped = 0;
        let mut position = after;
        let complete = loop {
            // Never more rows than could fill the page or spend the budget.
            let want = (limit - live.len()).min(MAX_SKIPPED_SCAN_TWEETS - skipped);
            // A slice may have ended inside a token (two ids whose tokens
            // collide): every read resumes with the rest of it.
            let mut rows = match position {
                Some(at) => self.rest_of_token(at).await?,
                None => Vec::new(),
            };
            rows.truncate(want);
            let mut ended = false;
            if rows.len() < want {
                let slice = want - rows.len();
                let from = position.map_or(i64::MIN, |at| at.token);
                let more = self.scan_slice(from, slice).await?;
                // Unpaged, so a short answer is the end of the table.
                ended = more.len() < slice;
                rows.extend(more);
            }
            for row in rows {
                position = Some(row.position);
                match row.live {
                    Some(tweet) => live.push(tweet),
                    None => skipped += 1,
                }
            }
            if ended {
                break true;
            }
            if live.len() == limit || skipped == MAX_SKIPPED_SCAN_TWEETS {
                break false;
            }
        };
        let tweets = futures::stream::iter(live)
            .map(|tweet| async move {
                let counts = self.counts_of(tweet.id).await?;
                Ok::<_, TweetError>(ScannedTweet { tweet, counts })
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(TweetScanPage {
            tweets,
            next: if complete { None } else { position },
        })
    }

    /// The rows of `at`'s partition token after it, in id order. Rows
    /// sharing a token come in id order in a slice too: ScyllaDB orders
    /// them by key bytes, and ids below 2^63 are non-negative bigints,
    /// whose big-endian bytes sort as the numbers do.
    async fn rest_of_token(&self, at: ScanPosition) -> Result<Vec<ScannedRow>, TweetError> {
        let mut rows = self
            .scan_rows(&self.statements().select_scan_token, (at.token,))
            .await?;
        rows.retain(|row| row.position.tweet_id > at.tweet_id);
        rows.sort_unstable_by_key(|row| row.position.tweet_id);
        Ok(rows)
    }

    /// Up to `limit` rows whose tokens come after `after_token`, in token order.
    async fn scan_slice(
        &self,
        after_token: i64,
        limit: usize,
    ) -> Result<Vec<ScannedRow>, TweetError> {
        self.scan_rows(
            &self.statements().select_scan_slice,
            (after_token, cql_limit(limit)),
        )
        .await
    }

    async fn scan_rows(
        &self,
        statement: &PreparedStatement,
        values: impl ::scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<ScannedRow>, TweetError> {
        let result = self
            .session()
            .execute_unpaged(statement, values)
            .await?
            .into_rows_result()?;
        result
            .rows::<ScanRow>()?
            .map(|row| Ok(ScannedRow::of(row?)))
            .collect()
    }

    /// Which of `tweet_ids` `viewer_id` engaged with (liked, retweeted or
    /// bookmarked, as `select` asks).
    async fn engaged_with(
        &self,
        select: &PreparedStatement,
        viewer_id: u64,
        tweet_ids: &[i64],
    ) -> Result<HashSet<u64>, TweetError> {
        let result = self
            .session()
            .execute_unpaged(select, (to_db(viewer_id), tweet_ids))
            .await?
            .into_rows_result()?;
        result
            .rows::<(i64,)>()?
            .map(|row| Ok(from_db(row?.0)))
            .collect()
    }

    async fn author_ids(
        &self,
        author_id: u64,
        below: i64,
        limit: usize,
    ) -> Result<(Vec<u64>, bool), TweetError> {
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().select_author_ids,
                (to_db(author_id), below, cql_limit(limit.saturating_add(1))),
            )
            .await?
            .into_rows_result()?;
        let mut ids = result
            .rows::<(i64,)>()?
            .map(|row| Ok(from_db(row?.0)))
            .collect::<Result<Vec<u64>, TweetError>>()?;
        let has_more = ids.len() > limit;
        ids.truncate(limit);
        Ok((ids, has_more))
    }
}

/// The earlier claim carried by a key claim that did not apply.
fn earlier_claim(outcome: &LwtOutcome) -> Option<EarlierClaim> {
    Some(EarlierClaim {
        tweet_id: from_db(outcome.bigint("tweet_id")?),
        event_id: from_db(outcome.bigint("event_id")?),
        fingerprint: outcome
            .value("fingerprint")
            .and_then(CqlValue::as_blob)?
            .clone(),
        created_at_ms: from_db(outcome.bigint("created_at_ms")?),
    })
}

async fn build_session(config: &ScyllaConfig) -> Result<Session, TweetError> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let load_balancing = DefaultPolicy::builder()
        .prefer_datacenter(config.local_datacenter.clone())
        .token_aware(true)
        .permit_dc_failover(false)
        .build();
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(timeout))
        .load_balancing_policy(load_balancing)
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(config.node_list())
        .prefer_datacenter(config.local_datacenter.clone())
        .connection_timeout(timeout)
        .default_execution_profile_handle(profile.into_handle());
    if !config.username.is_empty() {
        builder = builder.user(config.username.clone(), config.password.expose().to_owned());
    }
    Ok(builder.build().await?)
}

async fn create_schema(session: &Session, config: &ScyllaConfig) -> Result<(), TweetError> {
    let keyspace = &config.keyspace;
    let with_vnodes = cql::create_keyspace(
        keyspace,
        &config.local_datacenter,
        config.replication_factor,
        true,
    );
    if let Err(error) = session.query_unpaged(with_vnodes, ()).await {
        // Servers without tablets (older ScyllaDB, Cassandra) reject the
        // option: ask again without it. Any other failure is real.
        if !is_rejected_statement(&error) {
            return Err(error.into());
        }
        tracing::info!(%keyspace, "server does not know the tablets option; creating the keyspace without it");
        let plain = cql::create_keyspace(
            keyspace,
            &config.local_datacenter,
            config.replication_factor,
            false,
        );
        session.query_unpaged(plain, ()).await?;
    }
    for table in cql::create_tables(keyspace) {
        session.query_unpaged(table, ()).await?;
    }
    for column in cql::add_columns(keyspace) {
        // Refused when the column is already there (a keyspace made by this
        // version, or migrated before): nothing to do.
        if let Err(error) = session.query_unpaged(column, ()).await
            && !is_rejected_statement(&error)
        {
            return Err(error.into());
        }
    }
    session
        .await_schema_agreement()
        .await
        .map_err(TweetError::storage)?;
    Ok(())
}

/// Whether the server refused the statement itself (syntax, invalid or
/// unknown option), as opposed to failing to run it.
fn is_rejected_statement(error: &ExecutionError) -> bool {
    matches!(
        error,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::SyntaxError | DbError::Invalid | DbError::ConfigError,
            _
        ))
    )
}

impl Statements {
    async fn prepare(session: &Session, ks: &str) -> Result<Self, TweetError> {
        // Reads and deterministic writes may be retried by the driver;
        // LWTs and counter increments must not be (not idempotent).
        let idempotent = |mut statement: PreparedStatement| {
            statement.set_is_idempotent(true);
            statement
        };
        let once = |mut statement: PreparedStatement| {
            statement.set_is_idempotent(false);
            statement
        };
        let prepare = |cql: String| async move { session.prepare(cql).await };

        let create_batch = logged_batch([
            prepare(cql::insert_tweet(ks)).await?,
            prepare(cql::insert_by_author(ks)).await?,
            prepare(cql::insert_outbox(ks)).await?,
            prepare(cql::raise_watermark(ks)).await?,
        ]);
        let create_reply_batch = logged_batch([
            prepare(cql::insert_tweet(ks)).await?,
            prepare(cql::insert_by_author(ks)).await?,
            prepare(cql::insert_reply(ks)).await?,
            prepare(cql::insert_outbox(ks)).await?,
            prepare(cql::raise_watermark(ks)).await?,
        ]);
        let delete_batch = logged_batch([
            prepare(cql::mark_deleted(ks)).await?,
            prepare(cql::delete_by_author(ks)).await?,
            prepare(cql::insert_outbox(ks)).await?,
            prepare(cql::raise_watermark(ks)).await?,
        ]);
        let delete_reply_batch = logged_batch([
            prepare(cql::mark_deleted(ks)).await?,
            prepare(cql::delete_by_author(ks)).await?,
            prepare(cql::delete_reply(ks)).await?,
            prepare(cql::insert_outbox(ks)).await?,
            prepare(cql::raise_watermark(ks)).await?,
        ]);
        let likes = EngagementStatements {
            select_engaged: idempotent(prepare(cql::select_engaged(ks, "likes_by_user")).await?),
            claim: once(prepare(cql::claim_engagement(ks, "likes")).await?),
            release: once(prepare(cql::release_engagement(ks, "likes")).await?),
            set_batch: logged_batch([
                prepare(cql::index_engagement(ks, "likes")).await?,
                prepare(cql::insert_outbox(ks)).await?,
                prepare(cql::raise_watermark(ks)).await?,
            ]),
            clear_batch: logged_batch([
                prepare(cql::unindex_engagement(ks, "likes")).await?,
                prepare(cql::insert_outbox(ks)).await?,
                prepare(cql::raise_watermark(ks)).await?,
            ]),
            count: once(prepare(cql::add_to_count(ks, "likes")).await?),
        };
        let retweets = EngagementStatements {
            select_engaged: idempotent(prepare(cql::select_engaged(ks, "retweets_by_user")).await?),
            // Retweets claim with `claim_retweet` (the row holds the id).
            claim: once(prepare(cql::claim_engagement(ks, "retweets")).await?),
            release: once(prepare(cql::release_engagement(ks, "retweets")).await?),
            set_batch: logged_batch([
                prepare(cql::index_engagement(ks, "retweets")).await?,
                prepare(cql::insert_user_retweet(ks)).await?,
                prepare(cql::insert_outbox(ks)).await?,
                prepare(cql::raise_watermark(ks)).await?,
            ]),
            clear_batch: logged_batch([
                prepare(cql::unindex_engagement(ks, "retweets")).await?,
                prepare(cql::delete_user_retweet(ks)).await?,
                prepare(cql::insert_outbox(ks)).await?,
                prepare(cql::raise_watermark(ks)).await?,
            ]),
            count: once(prepare(cql::add_to_count(ks, "retweets")).await?),
        };
        Ok(Self {
            select_tweet: idempotent(prepare(cql::select_tweet(ks)).await?),
            select_author_page: idempotent(prepare(cql::select_author_page(ks)).await?),
            select_author_ids: idempotent(prepare(cql::select_author_ids(ks)).await?),
            select_counts: idempotent(prepare(cql::select_counts(ks)).await?),
            select_retweet_id: idempotent(prepare(cql::select_retweet_id(ks)).await?),
            select_user_retweets: idempotent(prepare(cql::select_user_retweets(ks)).await?),
            select_bookmarked: idempotent(prepare(cql::select_engaged(ks, "bookmarks")).await?),
            select_bookmark_id: idempotent(prepare(cql::select_bookmark_id(ks)).await?),
            select_bookmarks_page: idempotent(prepare(cql::select_bookmarks_page(ks)).await?),
            select_replies: idempotent(prepare(cql::select_replies(ks)).await?),
            select_author_count: idempotent(prepare(cql::select_author_count(ks)).await?),
            select_scan_slice: idempotent(prepare(cql::select_scan_slice(ks)).await?),
            select_scan_token: idempotent(prepare(cql::select_scan_token(ks)).await?),
            select_watermarks: idempotent(prepare(cql::select_watermarks(ks)).await?),
            select_outbox: idempotent(prepare(cql::select_outbox(ks)).await?),
            select_progress: idempotent(prepare(cql::select_progress(ks)).await?),
            claim_key: once(prepare(cql::claim_key(ks)).await?),
            replace_expired_key: once(prepare(cql::replace_expired_key(ks)).await?),
            release_key: once(prepare(cql::release_key(ks)).await?),
            create_batch,
            create_reply_batch,
            claim_delete: once(prepare(cql::claim_delete(ks)).await?),
            delete_batch,
            delete_reply_batch,
            count_targets: once(prepare(cql::count_targets(ks)).await?),
            release_targets: once(prepare(cql::release_targets(ks)).await?),
            add_replies: once(prepare(cql::add_to_count(ks, "replies")).await?),
            add_quotes: once(prepare(cql::add_to_count(ks, "quotes")).await?),
            add_author_tweets: once(prepare(cql::add_to_author_count(ks)).await?),
            claim_retweet: once(prepare(cql::claim_retweet(ks)).await?),
            claim_bookmark: once(prepare(cql::claim_bookmark(ks)).await?),
            release_bookmark: once(prepare(cql::release_bookmark(ks)).await?),
            insert_bookmark_by_time: idempotent(prepare(cql::insert_bookmark_by_time(ks)).await?),
            delete_bookmark_by_time: idempotent(prepare(cql::delete_bookmark_by_time(ks)).await?),
            likes,
            retweets,
            advance_progress: once(prepare(cql::advance_progress(ks)).await?),
            drop_outbox_partition: idempotent(prepare(cql::drop_outbox_partition(ks)).await?),
        })
    }
}

/// A LOGGED batch of `statements`: all of them are applied or, after a
/// coordinator failure, replayed from the batchlog until they are. Every
/// value in our batches is fixed before the call (timestamps included), so
/// the driver may retry it.
fn logged_batch<const N: usize>(statements: [PreparedStatement; N]) -> Batch {
    let mut batch = Batch::new(BatchType::Logged);
    for statement in statements {
        batch.append_statement(statement);
    }
    batch.set_is_idempotent(true);
    batch.set_consistency(Consistency::LocalQuorum);
    batch
}

/// The bind values of a tweet's content, shared by `tweets` and
/// `tweets_by_author`. Absent values are *unset*, not null: no tombstones.
struct ContentValues<'a> {
    body: &'a str,
    reply: MaybeUnset<i64>,
    quote: MaybeUnset<i64>,
    hashtags: MaybeUnset<Vec<String>>,
    mentions: MaybeUnset<Vec<String>>,
    media: MaybeUnset<Vec<i64>>,
}

impl<'a> ContentValues<'a> {
    fn of(tweet: &'a Tweet) -> Self {
        let list = |values: &[String]| {
            if values.is_empty() {
                MaybeUnset::Unset
            } else {
                MaybeUnset::Set(values.to_vec())
            }
        };
        Self {
            body: &tweet.text,
            reply: tweet
                .reply_to_tweet_id
                .map_or(MaybeUnset::Unset, |id| MaybeUnset::Set(to_db(id))),
            quote: tweet
                .quote_of_tweet_id
                .map_or(MaybeUnset::Unset, |id| MaybeUnset::Set(to_db(id))),
            hashtags: list(&tweet.hashtags),
            mentions: list(&tweet.mentions),
            media: if tweet.media_ids.is_empty() {
                MaybeUnset::Unset
            } else {
                MaybeUnset::Set(tweet.media_ids.iter().copied().map(to_db).collect())
            },
        }
    }
}

/// A watermark row about to be raised to the millisecond of `id`.
struct WatermarkRecord {
    unix_ms: i64,
    shard: i32,
}

impl WatermarkRecord {
    fn new(id: u64) -> Self {
        Self {
            unix_ms: millis(snowflake::decode(id).unix_ms),
            shard: i32::try_from(mix(id) % WATERMARK_SHARDS as u64).unwrap_or(0),
        }
    }

    /// `USING TIMESTAMP` is the millisecond in microseconds: a plausible
    /// write time (ScyllaDB refuses timestamps far in the future), and the
    /// largest value has the largest timestamp, so it wins reconciliation.
    fn values(&self) -> (i64, i64, i32) {
        (self.unix_ms.saturating_mul(1_000), self.unix_ms, self.shard)
    }
}

/// A write timestamp (microseconds) derived from an id's millisecond, plus
/// `offset_us` (below 1000) to order two writes within one millisecond.
fn write_timestamp(id: u64, offset_us: i64) -> i64 {
    millis(snowflake::decode(id).unix_ms)
        .saturating_mul(1_000)
        .saturating_add(offset_us)
}

/// Spreads ids over shards: a Snowflake id's low bits are mostly zero at
/// low rates, so they are mixed first (the splitmix64 finaliser).
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ids are Snowflake ids below 2^63 (41-bit time, worker, sequence), and
/// user ids are opaque: both are stored bit for bit as `bigint`, so every
/// value round-trips and tweet ids keep their order.
fn to_db(id: u64) -> i64 {
    id as i64
}

fn from_db(value: i64) -> u64 {
    value as u64
}

/// A `LIMIT` bind value.
fn cql_limit(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

/// The exclusive upper bound of a keyset page: below `before`, or all.
fn below(before: Option<u64>) -> i64 {
    before.map_or(i64::MAX, |before| i64::try_from(before).unwrap_or(i64::MAX))
}

/// Snowflake milliseconds fit an `i64` until the year 292 million.
fn millis(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}

fn tweet_from_author_row(author_id: u64, row: AuthorTweetRow) -> Tweet {
    let (id, body, reply, quote, hashtags, mentions, media) = row;
    Tweet {
        id: from_db(id),
        author_id,
        text: body.unwrap_or_default(),
        reply_to_tweet_id: reply.map(from_db),
        quote_of_tweet_id: quote.map(from_db),
        hashtags: hashtags.unwrap_or_default(),
        mentions: mentions.unwrap_or_default(),
        media_ids: media.unwrap_or_default().into_iter().map(from_db).collect(),
    }
}

#[async_trait]
impl TweetStore for ScyllaTweetStore {
    async fn create_tweet(&self, new: NewTweet) -> Result<CreateOutcome, TweetError> {
        self.create(new).await
    }

    async fn get_tweets(&self, tweet_ids: Vec<u64>) -> Result<Vec<TweetLookup>, TweetError> {
        futures::stream::iter(tweet_ids)
            .map(|id| async move {
                Ok(match self.load_tweet(id).await? {
                    None => TweetLookup::NotFound,
                    Some(stored) if stored.deleted => TweetLookup::Deleted,
                    Some(stored) => TweetLookup::Found(stored.tweet),
                })
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn delete_tweet(
        &self,
        tweet_id: u64,
        requester_id: u64,
        event_id: u64,
    ) -> Result<bool, TweetError> {
        self.delete(tweet_id, requester_id, event_id).await
    }

    async fn list_user_entries(
        &self,
        author_id: u64,
        before: Option<u64>,
        limit: usize,
        include_retweets: bool,
    ) -> Result<Vec<AuthorEntry>, TweetError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let below = below(before);
        let own = self.author_page(author_id, below, limit);
        let retweets = async {
            if include_retweets {
                self.live_retweets(author_id, below, limit).await
            } else {
                Ok(Vec::new())
            }
        };
        let (own, retweets) = tokio::try_join!(own, retweets)?;
        let own = own.into_iter().map(|tweet| AuthorEntry {
            tweet,
            retweet_id: None,
        });
        let retweets = retweets.into_iter().map(|(retweet_id, tweet)| AuthorEntry {
            tweet,
            retweet_id: Some(retweet_id),
        });
        // Each side holds its `limit` newest, so the merged `limit` newest
        // are among them.
        let mut entries: Vec<AuthorEntry> = own.chain(retweets).collect();
        entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.sort_id()));
        entries.truncate(limit);
        Ok(entries)
    }

    async fn list_authors_entries(
        &self,
        author_ids: Vec<u64>,
        before: Option<u64>,
        limit: usize,
        include_retweets: bool,
    ) -> Result<Vec<AuthorEntries>, TweetError> {
        // Single-partition slices per author, many in flight: each goes
        // straight to a replica of that author's partition.
        let below = below(before);
        futures::stream::iter(author_ids)
            .map(|author_id| self.author_entries(author_id, below, limit, include_retweets))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn set_engagement(&self, write: EngagementWrite) -> Result<EngagementChange, TweetError> {
        self.engage(write).await
    }

    async fn get_counts(
        &self,
        tweet_ids: Vec<u64>,
    ) -> Result<Vec<Option<TweetCounts>>, TweetError> {
        futures::stream::iter(tweet_ids)
            .map(|id| async move {
                let (live, counts) = tokio::try_join!(self.is_live(id), self.counts_of(id))?;
                Ok(live.then_some(counts))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn get_viewer_state(
        &self,
        viewer_id: u64,
        tweet_ids: Vec<u64>,
    ) -> Result<Vec<ViewerState>, TweetError> {
        if tweet_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<i64> = tweet_ids.iter().copied().map(to_db).collect();
        let statements = self.statements();
        let (liked, retweeted, bookmarked) = tokio::try_join!(
            self.engaged_with(&statements.likes.select_engaged, viewer_id, &keys),
            self.engaged_with(&statements.retweets.select_engaged, viewer_id, &keys),
            self.engaged_with(&statements.select_bookmarked, viewer_id, &keys),
        )?;
        let live: Vec<bool> = futures::stream::iter(tweet_ids.iter().copied())
            .map(|id| self.is_live(id))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(tweet_ids
            .iter()
            .zip(live)
            .map(|(id, live)| {
                if live {
                    ViewerState {
                        liked: liked.contains(id),
                        retweeted: retweeted.contains(id),
                        bookmarked: bookmarked.contains(id),
                    }
                } else {
                    ViewerState::default()
                }
            })
            .collect())
    }

    async fn bookmark(
        &self,
        user_id: u64,
        tweet_id: u64,
        bookmark_id: u64,
    ) -> Result<bool, TweetError> {
        self.bookmark_tweet(user_id, tweet_id, bookmark_id).await
    }

    async fn unbookmark(&self, user_id: u64, tweet_id: u64) -> Result<bool, TweetError> {
        self.unbookmark_tweet(user_id, tweet_id).await
    }

    async fn list_bookmarks(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<BookmarkPage, TweetError> {
        self.bookmarks_page(user_id, before, limit).await
    }

    async fn list_replies(
        &self,
        tweet_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError> {
        self.replies_page(tweet_id, after, limit).await
    }

    async fn get_ancestors(&self, tweet_id: u64, limit: usize) -> Result<Ancestors, TweetError> {
        self.walk_ancestors(tweet_id, limit).await
    }

    async fn get_author_counts(&self, author_ids: Vec<u64>) -> Result<Vec<u64>, TweetError> {
        futures::stream::iter(author_ids)
            .map(|author_id| self.author_count(author_id))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn scan_tweets(
        &self,
        after: Option<ScanPosition>,
        limit: usize,
    ) -> Result<TweetScanPage, TweetError> {
        self.scan_page(after, limit).await
    }

    async fn max_issued_id(&self) -> Result<Option<u64>, TweetError> {
        let shards: Vec<i32> = (0..WATERMARK_SHARDS).collect();
        let result = self
            .session()
            .execute_unpaged(&self.statements().select_watermarks, (shards,))
            .await?
            .into_rows_result()?;
        let mut max_ms: Option<i64> = None;
        for row in result.rows::<(Option<i64>,)>()? {
            if let (Some(unix_ms),) = row? {
                max_ms = Some(max_ms.map_or(unix_ms, |max| max.max(unix_ms)));
            }
        }
        // The watermark keeps milliseconds: answer the largest id that
        // millisecond can hold, so a resumed generator starts past all of it.
        Ok(max_ms.map(|unix_ms| {
            let unix_ms = u64::try_from(unix_ms).unwrap_or(0).max(WARBLE_EPOCH_MS);
            snowflake::min_id_at(unix_ms) | ((1 << 22) - 1)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_bigint_and_keep_their_order() {
        let ids = [0, 1, 1 << 40, (1 << 63) - 1, u64::MAX];
        for id in ids {
            assert_eq!(from_db(to_db(id)), id);
        }
        let snowflakes = [1u64, 1 << 22, 1 << 50, (1 << 63) - 1];
        assert!(snowflakes.windows(2).all(|w| to_db(w[0]) < to_db(w[1])));
    }

    #[test]
    fn a_delete_timestamp_beats_the_create_timestamp_of_its_tweet() {
        let tweet_id = snowflake::min_id_at(WARBLE_EPOCH_MS + 5_000) | 7;
        let same_ms_event = tweet_id + 1;
        assert!(write_timestamp(same_ms_event, 500) > write_timestamp(tweet_id, 0));
    }

    #[test]
    fn the_scan_reads_the_same_columns_by_token() {
        let slice = cql::select_scan_slice("warble");
        let token = cql::select_scan_token("warble");
        assert!(slice.starts_with("SELECT token(tweet_id), tweet_id, author_id, "));
        assert!(slice.ends_with("FROM warble.tweets WHERE token(tweet_id) > ? LIMIT ?"));
        assert!(token.ends_with("FROM warble.tweets WHERE token(tweet_id) = ?"));
        assert_eq!(slice.split(" FROM ").next(), token.split(" FROM ").next());
    }

    #[test]
    fn the_keyspace_asks_for_vnodes_in_the_local_dc() {
        let cql = cql::create_keyspace("warble", "dc'1", 3, true);
        assert_eq!(
            cql,
            "CREATE KEYSPACE IF NOT EXISTS warble WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc''1': 3} AND tablets = {'enabled': false}"
        );
        assert!(!cql::create_keyspace("warble", "dc1", 3, false).contains("tablets"));
    }
}
