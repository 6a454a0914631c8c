//! [`TweetStore`] on the embedded redb database, sharing the database (and so
//! the write transaction) with the embedded event log: a tweet and its event
//! commit together or not at all.
//!
//! A write transaction is one fsync, which bounds a caller creating one
//! tweet per call to about a thousand tweets a second. `create_tweets` runs
//! a whole batch in one transaction through the same per-tweet code as
//! `create_tweet`, so a batch costs about one fsync and commits, or not, as
//! a whole.

use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use redb::{Database, ReadableDatabase as _, ReadableTable, TableDefinition, WriteTransaction};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog};
use warble_mesh::snowflake;
use warble_proto::events::v1::{Event, TweetCreated, TweetDeleted, event};

use super::{
    Ancestors, AuthorEntries, AuthorEntry, Bookmark, BookmarkPage, CreateOutcome, Engagement,
    EngagementChange, EngagementWrite, EntryRef, HydratedTweet, MAX_SKIPPED_BOOKMARKS,
    MAX_SKIPPED_SCAN_TWEETS, NewTweet, ScanPosition, ScannedTweet, Tweet, TweetCounts, TweetLookup,
    TweetScanPage, TweetStore, ViewerState, check_write_batch, engagement_event,
};
use crate::error::TweetError;

// Table names carry the service prefix: in the single-process stack every
// service shares one database file.

/// tweet id -> [`StoredTweet`] (prost). Deleted tweets stay, flagged.
const TWEETS: TableDefinition<u64, &[u8]> = TableDefinition::new("tweet_svc.tweets");
/// (author id, tweet id) -> (). Live tweets only, so listing never skips over deletions.
const BY_AUTHOR: TableDefinition<(u64, u64), ()> = TableDefinition::new("tweet_svc.by_author");
/// (tweet id, user id) -> ().
const LIKES: TableDefinition<(u64, u64), ()> = TableDefinition::new("tweet_svc.likes");
/// (tweet id, user id) -> (): who retweeted, the truth of retweet counts and viewer state.
const RETWEETS: TableDefinition<(u64, u64), ()> = TableDefinition::new("tweet_svc.retweets");
/// (tweet id, user id) -> retweet id, written with the retweet.
const RETWEET_IDS: TableDefinition<(u64, u64), u64> = TableDefinition::new("tweet_svc.retweet_ids");
/// (user id, retweet id) -> tweet id: a user's retweets in timeline order.
/// Retweets of live tweets only: a delete removes its tweet's retweets here
/// in its transaction, so listing never skips over them.
const USER_RETWEETS: TableDefinition<(u64, u64), u64> =
    TableDefinition::new("tweet_svc.user_retweets");
/// (user id, tweet id) -> bookmark id.
const BOOKMARKS: TableDefinition<(u64, u64), u64> = TableDefinition::new("tweet_svc.bookmarks");
/// (user id, bookmark id) -> tweet id: a user's bookmarks in order. Kept
/// when the tweet is deleted (a delete does not know who bookmarked it);
/// listing skips those.
const USER_BOOKMARKS: TableDefinition<(u64, u64), u64> =
    TableDefinition::new("tweet_svc.user_bookmarks");
/// (parent tweet id, reply id) -> (). Live replies only, like [`BY_AUTHOR`].
const REPLIES: TableDefinition<(u64, u64), ()> = TableDefinition::new("tweet_svc.replies");
/// author id -> live tweets, kept in step by creates and deletes.
const AUTHOR_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("tweet_svc.author_counts");
/// tweet id -> (likes, retweets, replies, quotes), kept in step by every write.
const COUNTS: TableDefinition<u64, (u64, u64, u64, u64)> = TableDefinition::new("tweet_svc.counts");
/// (author id, key) -> (tweet id, created at ms, content fingerprint).
const IDEMPOTENCY: TableDefinition<(u64, &str), (u64, u64, u128)> =
    TableDefinition::new("tweet_svc.idempotency");
/// (created at ms, author id, key) -> (): finds expired keys oldest first.
const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, u64, &str), ()> =
    TableDefinition::new("tweet_svc.idempotency_expiry");
/// name -> value, for [`MAX_ISSUED_ID`].
const META: TableDefinition<&str, u64> = TableDefinition::new("tweet_svc.meta");
/// The largest Snowflake id persisted (tweet ids and event ids).
const MAX_ISSUED_ID: &str = "max_issued_id";
/// Set once [`REPLIES`] and [`AUTHOR_COUNTS`] cover every tweet: a
/// database written before they existed is indexed on first open.
const THREAD_INDEXES_BUILT: &str = "thread_indexes_built";

/// Expired idempotency keys removed per created tweet. Purging a few on each
/// write keeps the table bounded without a background task, and costs little
/// because the write transaction is open anyway.
const EXPIRED_KEYS_PURGED_PER_WRITE: usize = 16;

/// A tweet's record; its id is the key.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredTweet {
    #[prost(uint64, tag = "1")]
    author_id: u64,
    #[prost(string, tag = "2")]
    text: String,
    #[prost(uint64, optional, tag = "3")]
    reply_to_tweet_id: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    quote_of_tweet_id: Option<u64>,
    #[prost(string, repeated, tag = "5")]
    hashtags: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    mentions: Vec<String>,
    #[prost(uint64, repeated, tag = "7")]
    media_ids: Vec<u64>,
    #[prost(bool, tag = "8")]
    deleted: bool,
}

impl StoredTweet {
    fn new(tweet: &Tweet) -> Self {
        Self {
            author_id: tweet.author_id,
            text: tweet.text.clone(),
            reply_to_tweet_id: tweet.reply_to_tweet_id,
            quote_of_tweet_id: tweet.quote_of_tweet_id,
            hashtags: tweet.hashtags.clone(),
            mentions: tweet.mentions.clone(),
            media_ids: tweet.media_ids.clone(),
            deleted: false,
        }
    }

    fn into_tweet(self, id: u64) -> Tweet {
        Tweet {
            id,
            author_id: self.author_id,
            text: self.text,
            reply_to_tweet_id: self.reply_to_tweet_id,
            quote_of_tweet_id: self.quote_of_tweet_id,
            hashtags: self.hashtags,
            mentions: self.mentions,
            media_ids: self.media_ids,
        }
    }
}

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
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    prost::DecodeError,
    tokio::task::JoinError
);

/// The embedded tweet store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedTweetStore {
    log: EmbeddedEventLog,
    idempotency_ttl_ms: u64,
}

impl EmbeddedTweetStore {
    /// Opens the store in the event log's database, creating its tables.
    /// Idempotency keys return their tweet for `idempotency_ttl`.
    pub fn open(log: EmbeddedEventLog, idempotency_ttl: Duration) -> Result<Self, TweetError> {
        let txn = log.database().begin_write()?;
        txn.open_table(TWEETS)?;
        txn.open_table(BY_AUTHOR)?;
        txn.open_table(LIKES)?;
        txn.open_table(RETWEETS)?;
        txn.open_table(RETWEET_IDS)?;
        txn.open_table(USER_RETWEETS)?;
        txn.open_table(BOOKMARKS)?;
        txn.open_table(USER_BOOKMARKS)?;
        txn.open_table(REPLIES)?;
        txn.open_table(AUTHOR_COUNTS)?;
        txn.open_table(COUNTS)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(IDEMPOTENCY_EXPIRY)?;
        txn.open_table(META)?;
        build_thread_indexes(&txn)?;
        txn.commit()?;
        Ok(Self {
            log,
            idempotency_ttl_ms: u64::try_from(idempotency_ttl.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// [`TweetStore::max_issued_id`] without a runtime, for start-up code.
    pub fn max_issued_id_blocking(&self) -> Result<Option<u64>, TweetError> {
        let read = self.log.database().begin_read()?;
        let recorded = read
            .open_table(META)?
            .get(MAX_ISSUED_ID)?
            .map(|v| v.value());
        let last_tweet = read.open_table(TWEETS)?.last()?.map(|(id, _)| id.value());
        Ok(recorded.max(last_tweet))
    }

    /// Runs a redb read on the calling task. Read transactions are MVCC
    /// snapshots that never wait for a writer, and a batch of point reads is
    /// served from redb's page cache in microseconds: handing it to the
    /// blocking pool costs more (a thread wake-up and two context switches
    /// per call) than the read. Writes, which fsync, use [`Self::blocking`].
    fn reading<T>(
        &self,
        work: impl FnOnce(&Self, &Database) -> Result<T, TweetError>,
    ) -> Result<T, TweetError> {
        work(self, self.log.database())
    }

    /// Runs redb work, which blocks on disk I/O, off the async workers.
    async fn blocking<T, F>(&self, work: F) -> Result<T, TweetError>
    where
        T: Send + 'static,
        F: FnOnce(&Self, &Database) -> Result<T, TweetError> + Send + 'static,
    {
        let store = self.clone();
        warble_mesh::telemetry::spawn_blocking_in_span(move || work(&store, store.log.database()))
            .await?
    }

    fn create(&self, database: &Database, new: NewTweet) -> Result<CreateOutcome, TweetError> {
        let txn = database.begin_write()?;
        match self.create_in(&txn, &new)? {
            Some(original) => {
                txn.abort()?;
                Ok(CreateOutcome::Replayed(original))
            }
            None => {
                txn.commit()?;
                self.log.notify_appended();
                Ok(CreateOutcome::Created(new.tweet))
            }
        }
    }

    /// Creates `batch` in one transaction, entry after entry through
    /// [`Self::create_in`], so each entry sees what the entries before it
    /// wrote (a reply to an earlier entry finds it, a repeated key replays
    /// it). A failing entry fails the batch and nothing is kept; a batch of
    /// replays only is aborted rather than committed, like a single replay.
    fn create_batch(
        &self,
        database: &Database,
        batch: Vec<NewTweet>,
    ) -> Result<Vec<CreateOutcome>, TweetError> {
        let txn = database.begin_write()?;
        let mut created_any = false;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, new) in batch.into_iter().enumerate() {
            let replayed = self
                .create_in(&txn, &new)
                .map_err(|error| error.in_batch("tweets", index))?;
            outcomes.push(match replayed {
                Some(original) => CreateOutcome::Replayed(original),
                None => {
                    created_any = true;
                    CreateOutcome::Created(new.tweet)
                }
            });
        }
        if created_any {
            txn.commit()?;
            self.log.notify_appended();
        } else {
            txn.abort()?;
        }
        Ok(outcomes)
    }

    /// Writes the tweet and its event into `txn`, or returns the original
    /// tweet of a replayed idempotency key (writing nothing).
    fn create_in(
        &self,
        txn: &WriteTransaction,
        new: &NewTweet,
    ) -> Result<Option<Tweet>, TweetError> {
        if let Some(original) = self.replayed(txn, new)? {
            return Ok(Some(original));
        }
        let tweet = &new.tweet;
        let now_ms = tweet.created_at_ms();
        let mut tweets = txn.open_table(TWEETS)?;
        let reply_to_author_id =
            live_author(&tweets, tweet.reply_to_tweet_id, "reply_to_tweet_id")?;
        let quote_of_author_id =
            live_author(&tweets, tweet.quote_of_tweet_id, "quote_of_tweet_id")?;

        let record = StoredTweet::new(tweet).encode_to_vec();
        if tweets.insert(tweet.id, record.as_slice())?.is_some() {
            return Err(TweetError::storage(format!(
                "tweet id {} issued twice",
                tweet.id
            )));
        }
        txn.open_table(BY_AUTHOR)?
            .insert((tweet.author_id, tweet.id), ())?;
        adjust_author_count(txn, tweet.author_id, 1)?;
        let mut counts = txn.open_table(COUNTS)?;
        counts.insert(tweet.id, (0, 0, 0, 0))?;
        if let Some(parent) = tweet.reply_to_tweet_id {
            adjust_counts(&mut counts, parent, |c| c.replies += 1)?;
            txn.open_table(REPLIES)?.insert((parent, tweet.id), ())?;
        }
        if let Some(quoted) = tweet.quote_of_tweet_id {
            adjust_counts(&mut counts, quoted, |c| c.quotes += 1)?;
        }

        if let Some(key) = new.idempotency_key.as_deref() {
            remember_key(txn, tweet, key)?;
        }

        let event = Event {
            event_id: new.event_id,
            occurred_at_ms: millis(now_ms),
            trace_context: Default::default(),
            payload: Some(event::Payload::TweetCreated(TweetCreated {
                tweet_id: tweet.id,
                author_id: tweet.author_id,
                created_at_ms: millis(now_ms),
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
        EmbeddedEventLog::append_in(
            txn,
            DOMAIN_EVENTS_STREAM,
            tweet.author_id,
            &warble_mesh::telemetry::encode_event(&event),
        )?;
        record_issued(txn, tweet.id.max(new.event_id))?;
        self.purge_expired_keys(txn, now_ms)?;
        Ok(None)
    }

    /// The original tweet when `new` retries a live idempotency key; an
    /// error when the key was used for other content or its tweet is gone.
    fn replayed(
        &self,
        txn: &WriteTransaction,
        new: &NewTweet,
    ) -> Result<Option<Tweet>, TweetError> {
        let Some(key) = new.idempotency_key.as_deref() else {
            return Ok(None);
        };
        let earlier = txn
            .open_table(IDEMPOTENCY)?
            .get((new.tweet.author_id, key))?
            .map(|entry| entry.value());
        let Some((original_id, created_ms, fingerprint)) = earlier else {
            return Ok(None);
        };
        if new.tweet.created_at_ms().saturating_sub(created_ms) >= self.idempotency_ttl_ms {
            return Ok(None);
        }
        if fingerprint != new.tweet.content_fingerprint() {
            return Err(TweetError::IdempotencyKeyReused);
        }
        match load(&txn.open_table(TWEETS)?, original_id)? {
            Some(original) if !original.deleted => Ok(Some(original.into_tweet(original_id))),
            _ => Err(TweetError::IdempotentTweetDeleted {
                tweet_id: original_id,
            }),
        }
    }

    fn purge_expired_keys(&self, txn: &WriteTransaction, now_ms: u64) -> Result<(), TweetError> {
        // A key created at or before `cutoff` has lived a full TTL.
        let Some(cutoff) = now_ms.checked_sub(self.idempotency_ttl_ms) else {
            return Ok(());
        };
        let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
        let expired = expiry
            .range(..(cutoff.saturating_add(1), 0, ""))?
            .take(EXPIRED_KEYS_PURGED_PER_WRITE)
            .map(|entry| {
                let (position, _) = entry?;
                let (created_ms, author_id, key) = position.value();
                Ok((created_ms, author_id, key.to_owned()))
            })
            .collect::<Result<Vec<_>, redb::StorageError>>()?;
        let mut keys = txn.open_table(IDEMPOTENCY)?;
        for (created_ms, author_id, key) in expired {
            expiry.remove((created_ms, author_id, key.as_str()))?;
            keys.remove((author_id, key.as_str()))?;
        }
        Ok(())
    }

    fn delete(
        &self,
        database: &Database,
        tweet_id: u64,
        requester_id: u64,
        event_id: u64,
    ) -> Result<bool, TweetError> {
        let txn = database.begin_write()?;
        {
            let mut tweets = txn.open_table(TWEETS)?;
            let mut stored = load(&tweets, tweet_id)?.ok_or(TweetError::TweetNotFound(tweet_id))?;
            if stored.author_id != requester_id {
                return Err(TweetError::NotAuthor { tweet_id });
            }
            if stored.deleted {
                return Ok(false);
            }
            stored.deleted = true;
            tweets.insert(tweet_id, stored.encode_to_vec().as_slice())?;
            txn.open_table(BY_AUTHOR)?
                .remove((stored.author_id, tweet_id))?;
            adjust_author_count(&txn, stored.author_id, -1)?;
            unlist_retweets(&txn, tweet_id)?;
            let mut counts = txn.open_table(COUNTS)?;
            if let Some(parent) = stored.reply_to_tweet_id {
                adjust_counts(&mut counts, parent, |c| {
                    c.replies = c.replies.saturating_sub(1);
                })?;
                txn.open_table(REPLIES)?.remove((parent, tweet_id))?;
            }
            if let Some(quoted) = stored.quote_of_tweet_id {
                adjust_counts(&mut counts, quoted, |c| {
                    c.quotes = c.quotes.saturating_sub(1)
                })?;
            }

            let deleted_at_ms = millis(snowflake::decode(event_id).unix_ms);
            let event = Event {
                event_id,
                occurred_at_ms: deleted_at_ms,
                trace_context: Default::default(),
                payload: Some(event::Payload::TweetDeleted(TweetDeleted {
                    tweet_id,
                    author_id: stored.author_id,
                    created_at_ms: millis(snowflake::decode(tweet_id).unix_ms),
                    deleted_at_ms,
                    reply_to_tweet_id: stored.reply_to_tweet_id,
                    quote_of_tweet_id: stored.quote_of_tweet_id,
                    media_ids: stored.media_ids.clone(),
                })),
            };
            EmbeddedEventLog::append_in(
                &txn,
                DOMAIN_EVENTS_STREAM,
                stored.author_id,
                &warble_mesh::telemetry::encode_event(&event),
            )?;
            record_issued(&txn, event_id)?;
        }
        txn.commit()?;
        self.log.notify_appended();
        Ok(true)
    }

    /// Sets or clears a like or retweet and, when that changed something,
    /// publishes its event, in one transaction.
    fn engage(database: &Database, write: EngagementWrite) -> Result<EngagementChange, TweetError> {
        let EngagementWrite {
            kind,
            user_id,
            tweet_id,
            engaged,
            ..
        } = write;
        let txn = database.begin_write()?;
        let (change, tweet_author_id) = {
            let tweet_author_id = match load(&txn.open_table(TWEETS)?, tweet_id)? {
                Some(stored) if !stored.deleted => stored.author_id,
                _ => return Err(TweetError::TweetNotFound(tweet_id)),
            };
            let mut engagements = txn.open_table(match kind {
                Engagement::Like => LIKES,
                Engagement::Retweet => RETWEETS,
            })?;
            let changed = if engaged {
                engagements.insert((tweet_id, user_id), ())?.is_none()
            } else {
                engagements.remove((tweet_id, user_id))?.is_some()
            };
            let retweet_id = match kind {
                Engagement::Like => None,
                Engagement::Retweet => retweet_id_after(&txn, &write, changed)?,
            };
            let mut counts = txn.open_table(COUNTS)?;
            let after = if changed {
                adjust_counts(&mut counts, tweet_id, |c| {
                    let count = match kind {
                        Engagement::Like => &mut c.likes,
                        Engagement::Retweet => &mut c.retweets,
                    };
                    *count = if engaged {
                        *count + 1
                    } else {
                        count.saturating_sub(1)
                    };
                })?
            } else {
                read_counts(&counts, tweet_id)?
            };
            let change = EngagementChange {
                changed,
                count: match kind {
                    Engagement::Like => after.likes,
                    Engagement::Retweet => after.retweets,
                },
                retweet_id,
            };
            (change, tweet_author_id)
        };
        if !change.changed {
            txn.abort()?;
            return Ok(change);
        }
        let event = engagement_event(&write, tweet_author_id, &change);
        EmbeddedEventLog::append_in(
            &txn,
            DOMAIN_EVENTS_STREAM,
            user_id,
            &warble_mesh::telemetry::encode_event(&event),
        )?;
        record_issued(&txn, write.event_id.max(change.retweet_id.unwrap_or(0)))?;
        txn.commit()?;
        Ok(change)
    }

    fn bookmark_in(
        database: &Database,
        user_id: u64,
        tweet_id: u64,
        bookmark_id: u64,
    ) -> Result<bool, TweetError> {
        let txn = database.begin_write()?;
        {
            if !is_live(&txn.open_table(TWEETS)?, tweet_id)? {
                return Err(TweetError::TweetNotFound(tweet_id));
            }
            let mut bookmarks = txn.open_table(BOOKMARKS)?;
            if bookmarks.get((user_id, tweet_id))?.is_some() {
                return Ok(false);
            }
            bookmarks.insert((user_id, tweet_id), bookmark_id)?;
            txn.open_table(USER_BOOKMARKS)?
                .insert((user_id, bookmark_id), tweet_id)?;
            record_issued(&txn, bookmark_id)?;
        }
        txn.commit()?;
        Ok(true)
    }

    fn unbookmark_in(database: &Database, user_id: u64, tweet_id: u64) -> Result<bool, TweetError> {
        let txn = database.begin_write()?;
        let removed = txn
            .open_table(BOOKMARKS)?
            .remove((user_id, tweet_id))?
            .map(|bookmark_id| bookmark_id.value());
        let Some(bookmark_id) = removed else {
            txn.abort()?;
            return Ok(false);
        };
        txn.open_table(USER_BOOKMARKS)?
            .remove((user_id, bookmark_id))?;
        txn.commit()?;
        Ok(true)
    }
}

/// Fills [`REPLIES`] and [`AUTHOR_COUNTS`] from the tweets, once: a
/// database from before they existed has tweets they do not know. (Its
/// retweets have no ids, so they are not listed; a new retweet is.)
fn build_thread_indexes(txn: &WriteTransaction) -> Result<(), TweetError> {
    let mut meta = txn.open_table(META)?;
    if meta.get(THREAD_INDEXES_BUILT)?.is_some() {
        return Ok(());
    }
    let tweets = txn.open_table(TWEETS)?;
    let mut replies = txn.open_table(REPLIES)?;
    let mut counts = std::collections::BTreeMap::<u64, u64>::new();
    for entry in tweets.iter()? {
        let (id, bytes) = entry?;
        let stored = StoredTweet::decode(bytes.value())?;
        if stored.deleted {
            continue;
        }
        *counts.entry(stored.author_id).or_default() += 1;
        if let Some(parent) = stored.reply_to_tweet_id {
            replies.insert((parent, id.value()), ())?;
        }
    }
    let mut author_counts = txn.open_table(AUTHOR_COUNTS)?;
    for (author_id, count) in counts {
        author_counts.insert(author_id, count)?;
    }
    meta.insert(THREAD_INDEXES_BUILT, 1)?;
    Ok(())
}

/// The retweet id after a retweet write whose membership change was
/// `changed`: a new retweet takes the issued id (and joins the user's
/// list), a repeated one keeps its own, an undo removes its id (and its
/// list entry) and answers it. `None` for a retweet made before retweets
/// had ids, and for an undo that changed nothing.
fn retweet_id_after(
    txn: &WriteTransaction,
    write: &EngagementWrite,
    changed: bool,
) -> Result<Option<u64>, TweetError> {
    let key = (write.tweet_id, write.user_id);
    let mut ids = txn.open_table(RETWEET_IDS)?;
    match (write.engaged, changed) {
        (true, true) => {
            ids.insert(key, write.retweet_id)?;
            txn.open_table(USER_RETWEETS)?
                .insert((write.user_id, write.retweet_id), write.tweet_id)?;
            Ok(Some(write.retweet_id))
        }
        (true, false) => Ok(ids.get(key)?.map(|id| id.value())),
        (false, true) => {
            let removed = ids.remove(key)?.map(|id| id.value());
            if let Some(retweet_id) = removed {
                txn.open_table(USER_RETWEETS)?
                    .remove((write.user_id, retweet_id))?;
            }
            Ok(removed)
        }
        (false, false) => Ok(None),
    }
}

/// Takes a deleted tweet's retweets out of their users' lists (they stay in
/// [`RETWEETS`], which only live tweets' reads consult).
fn unlist_retweets(txn: &WriteTransaction, tweet_id: u64) -> Result<(), TweetError> {
    let retweeters = txn
        .open_table(RETWEETS)?
        .range((tweet_id, 0)..=(tweet_id, u64::MAX))?
        .map(|entry| Ok(entry?.0.value().1))
        .collect::<Result<Vec<u64>, redb::StorageError>>()?;
    let ids = txn.open_table(RETWEET_IDS)?;
    let mut listed = txn.open_table(USER_RETWEETS)?;
    for user_id in retweeters {
        if let Some(retweet_id) = ids.get((tweet_id, user_id))?.map(|id| id.value()) {
            listed.remove((user_id, retweet_id))?;
        }
    }
    Ok(())
}

fn adjust_author_count(
    txn: &WriteTransaction,
    author_id: u64,
    delta: i64,
) -> Result<(), TweetError> {
    let mut counts = txn.open_table(AUTHOR_COUNTS)?;
    let current = counts
        .get(author_id)?
        .map(|count| count.value())
        .unwrap_or(0);
    let after = current.saturating_add_signed(delta);
    if after == 0 {
        counts.remove(author_id)?;
    } else {
        counts.insert(author_id, after)?;
    }
    Ok(())
}

/// An author's list position: (sort id, tweet id, retweet id).
type Position = (u64, u64, Option<u64>);

type Positions<'t> = Box<dyn Iterator<Item = Result<Position, TweetError>> + 't>;

/// An author's entries newest first by sort id: their live tweets merged
/// with their retweets, two index scans walked side by side.
struct MergedEntries<'t> {
    own: Positions<'t>,
    retweets: Positions<'t>,
    own_head: Option<Position>,
    retweet_head: Option<Position>,
}

impl<'t> MergedEntries<'t> {
    /// Entries of `author_id` with sort ids below `below`; retweets only
    /// when `retweets` is given.
    fn new(
        by_author: &'t redb::ReadOnlyTable<(u64, u64), ()>,
        retweets: Option<&'t redb::ReadOnlyTable<(u64, u64), u64>>,
        author_id: u64,
        below: u64,
    ) -> Result<Self, TweetError> {
        let own: Positions<'t> = Box::new(
            by_author
                .range((author_id, 0)..(author_id, below))?
                .rev()
                .map(|entry| {
                    let tweet_id = entry?.0.value().1;
                    Ok((tweet_id, tweet_id, None))
                }),
        );
        let retweets: Positions<'t> = match retweets {
            Some(table) => Box::new(table.range((author_id, 0)..(author_id, below))?.rev().map(
                |entry| {
                    let (key, tweet_id) = entry?;
                    let retweet_id = key.value().1;
                    Ok((retweet_id, tweet_id.value(), Some(retweet_id)))
                },
            )),
            None => Box::new(std::iter::empty()),
        };
        let mut merged = Self {
            own,
            retweets,
            own_head: None,
            retweet_head: None,
        };
        merged.own_head = merged.own.next().transpose()?;
        merged.retweet_head = merged.retweets.next().transpose()?;
        Ok(merged)
    }

    fn advance(&mut self) -> Result<Option<Position>, TweetError> {
        let take_own = match (self.own_head, self.retweet_head) {
            (None, None) => return Ok(None),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(own), Some(retweet)) => own.0 > retweet.0,
        };
        Ok(if take_own {
            let head = self.own_head.take();
            self.own_head = self.own.next().transpose()?;
            head
        } else {
            let head = self.retweet_head.take();
            self.retweet_head = self.retweets.next().transpose()?;
            head
        })
    }
}

impl Iterator for MergedEntries<'_> {
    type Item = Result<Position, TweetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().transpose()
    }
}

#[async_trait]
impl TweetStore for EmbeddedTweetStore {
    async fn create_tweet(&self, new: NewTweet) -> Result<CreateOutcome, TweetError> {
        self.blocking(move |store, database| store.create(database, new))
            .await
    }

    /// One transaction for the whole batch (see [`Self::create_batch`]):
    /// one fsync, all or nothing.
    async fn create_tweets(&self, batch: Vec<NewTweet>) -> Result<Vec<CreateOutcome>, TweetError> {
        check_write_batch(batch.len())?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |store, database| store.create_batch(database, batch))
            .await
    }

    async fn get_tweets(&self, tweet_ids: Vec<u64>) -> Result<Vec<TweetLookup>, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            tweet_ids
                .into_iter()
                .map(|id| {
                    Ok(match load(&tweets, id)? {
                        None => TweetLookup::NotFound,
                        Some(stored) if stored.deleted => TweetLookup::Deleted,
                        Some(stored) => TweetLookup::Found(stored.into_tweet(id)),
                    })
                })
                .collect()
        })
    }

    async fn delete_tweet(
        &self,
        tweet_id: u64,
        requester_id: u64,
        event_id: u64,
    ) -> Result<bool, TweetError> {
        self.blocking(move |store, database| {
            store.delete(database, tweet_id, requester_id, event_id)
        })
        .await
    }

    async fn list_user_entries(
        &self,
        author_id: u64,
        before: Option<u64>,
        limit: usize,
        include_retweets: bool,
    ) -> Result<Vec<AuthorEntry>, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let by_author = read.open_table(BY_AUTHOR)?;
            let retweets = read.open_table(USER_RETWEETS)?;
            let tweets = read.open_table(TWEETS)?;
            let below = before.unwrap_or(u64::MAX);
            let listed = include_retweets.then_some(&retweets);
            let mut page = Vec::with_capacity(limit.min(256));
            for position in MergedEntries::new(&by_author, listed, author_id, below)? {
                if page.len() >= limit {
                    break;
                }
                let (_, tweet_id, retweet_id) = position?;
                // Both indexes hold live tweets only, and every table is
                // read from one snapshot, so the record is there and live;
                // checking costs nothing, as the record is read anyway.
                if let Some(stored) = load(&tweets, tweet_id)?.filter(|s| !s.deleted) {
                    page.push(AuthorEntry {
                        tweet: stored.into_tweet(tweet_id),
                        retweet_id,
                    });
                }
            }
            Ok(page)
        })
    }

    async fn list_authors_entries(
        &self,
        author_ids: Vec<u64>,
        before: Option<u64>,
        limit: usize,
        include_retweets: bool,
    ) -> Result<Vec<AuthorEntries>, TweetError> {
        self.reading(move |_, database| {
            // One snapshot for every author: the merged result is consistent.
            let read = database.begin_read()?;
            let by_author = read.open_table(BY_AUTHOR)?;
            let retweets = read.open_table(USER_RETWEETS)?;
            let tweets = read.open_table(TWEETS)?;
            let below = before.unwrap_or(u64::MAX);
            let listed = include_retweets.then_some(&retweets);
            let mut answers = Vec::with_capacity(author_ids.len());
            for author_id in author_ids {
                let mut answer = AuthorEntries {
                    entries: Vec::with_capacity(limit.min(64)),
                    has_more: false,
                };
                for position in MergedEntries::new(&by_author, listed, author_id, below)? {
                    let (_, tweet_id, retweet_id) = position?;
                    // Own tweets need no record lookup (the index holds live
                    // ones only); a retweet's names the tweet's author.
                    let tweet_author = match retweet_id {
                        None => Some(author_id),
                        Some(_) => load(&tweets, tweet_id)?
                            .filter(|stored| !stored.deleted)
                            .map(|stored| stored.author_id),
                    };
                    let Some(tweet_author) = tweet_author else {
                        continue;
                    };
                    if answer.entries.len() == limit {
                        answer.has_more = true;
                        break;
                    }
                    answer.entries.push(EntryRef {
                        tweet_id,
                        author_id: tweet_author,
                        retweet_id,
                    });
                }
                answers.push(answer);
            }
            Ok(answers)
        })
    }

    async fn set_engagement(&self, write: EngagementWrite) -> Result<EngagementChange, TweetError> {
        let change = self
            .blocking(move |_, database| Self::engage(database, write))
            .await?;
        if change.changed {
            self.log.notify_appended();
        }
        Ok(change)
    }

    async fn get_counts(
        &self,
        tweet_ids: Vec<u64>,
    ) -> Result<Vec<Option<TweetCounts>>, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            let counts = read.open_table(COUNTS)?;
            tweet_ids
                .into_iter()
                .map(|id| {
                    if is_live(&tweets, id)? {
                        Ok(Some(read_counts(&counts, id)?))
                    } else {
                        Ok(None)
                    }
                })
                .collect()
        })
    }

    async fn get_viewer_state(
        &self,
        viewer_id: u64,
        tweet_ids: Vec<u64>,
    ) -> Result<Vec<ViewerState>, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            let engagement = ViewerTables::open(&read, viewer_id)?;
            tweet_ids
                .into_iter()
                .map(|id| {
                    if !is_live(&tweets, id)? {
                        return Ok(ViewerState::default());
                    }
                    engagement.state_of(id)
                })
                .collect()
        })
    }

    async fn hydrate_tweets(
        &self,
        tweet_ids: Vec<u64>,
        with_counts: bool,
        viewer: Option<u64>,
    ) -> Result<Vec<HydratedTweet>, TweetError> {
        // One read transaction: the page is a consistent snapshot and each
        // tweet row is read once, not once per kind of data.
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            let counts = if with_counts {
                Some(read.open_table(COUNTS)?)
            } else {
                None
            };
            let engagement = match viewer {
                Some(viewer) => Some(ViewerTables::open(&read, viewer)?),
                None => None,
            };
            tweet_ids
                .into_iter()
                .map(|id| {
                    let stored = match load(&tweets, id)? {
                        None => return Ok(HydratedTweet::absent(TweetLookup::NotFound)),
                        Some(stored) if stored.deleted => {
                            return Ok(HydratedTweet::absent(TweetLookup::Deleted));
                        }
                        Some(stored) => stored,
                    };
                    let counts = match &counts {
                        Some(table) => Some(read_counts(table, id)?),
                        None => None,
                    };
                    let viewer_state = match &engagement {
                        Some(tables) => Some(tables.state_of(id)?),
                        None => None,
                    };
                    Ok(HydratedTweet {
                        lookup: TweetLookup::Found(stored.into_tweet(id)),
                        counts,
                        viewer_state,
                    })
                })
                .collect()
        })
    }

    async fn bookmark(
        &self,
        user_id: u64,
        tweet_id: u64,
        bookmark_id: u64,
    ) -> Result<bool, TweetError> {
        self.blocking(move |_, database| {
            Self::bookmark_in(database, user_id, tweet_id, bookmark_id)
        })
        .await
    }

    async fn unbookmark(&self, user_id: u64, tweet_id: u64) -> Result<bool, TweetError> {
        self.blocking(move |_, database| Self::unbookmark_in(database, user_id, tweet_id))
            .await
    }

    async fn list_bookmarks(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<BookmarkPage, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let listed = read.open_table(USER_BOOKMARKS)?;
            let tweets = read.open_table(TWEETS)?;
            let below = before.unwrap_or(u64::MAX);
            let mut page = BookmarkPage::default();
            let mut skipped = 0;
            let mut rows = listed.range((user_id, 0)..(user_id, below))?.rev();
            while let Some(row) = rows.next() {
                let (key, tweet_id) = row?;
                let (bookmark_id, tweet_id) = (key.value().1, tweet_id.value());
                match load(&tweets, tweet_id)? {
                    Some(stored) if !stored.deleted => page.bookmarks.push(Bookmark {
                        tweet_id,
                        author_id: stored.author_id,
                        bookmark_id,
                    }),
                    _ => skipped += 1,
                }
                if page.bookmarks.len() == limit || skipped == MAX_SKIPPED_BOOKMARKS {
                    // Continue below this row, if any row is left.
                    if rows.next().is_some() {
                        page.next_before = Some(bookmark_id);
                    }
                    break;
                }
            }
            Ok(page)
        })
    }

    async fn list_replies(
        &self,
        tweet_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Tweet>, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            if tweets.get(tweet_id)?.is_none() {
                return Err(TweetError::TweetNotFound(tweet_id));
            }
            let start = match after {
                Some(after) => Bound::Excluded((tweet_id, after)),
                None => Bound::Included((tweet_id, 0)),
            };
            let replies = read.open_table(REPLIES)?;
            let mut page = Vec::with_capacity(limit.min(256));
            for entry in replies.range((start, Bound::Included((tweet_id, u64::MAX))))? {
                if page.len() >= limit {
                    break;
                }
                let (_, reply_id) = entry?.0.value();
                // The index holds live replies only (one snapshot).
                if let Some(stored) = load(&tweets, reply_id)?.filter(|s| !s.deleted) {
                    page.push(stored.into_tweet(reply_id));
                }
            }
            Ok(page)
        })
    }

    /// The whole walk reads one snapshot.
    async fn get_ancestors(&self, tweet_id: u64, limit: usize) -> Result<Ancestors, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            let stored = load(&tweets, tweet_id)?.ok_or(TweetError::TweetNotFound(tweet_id))?;
            let mut ancestors = Ancestors::default();
            // Ids only go down the chain (a reply is newer than its
            // parent), so the walk ends.
            let mut next = stored.reply_to_tweet_id;
            while let Some(id) = next {
                let Some(parent) = load(&tweets, id)? else {
                    break;
                };
                next = parent.reply_to_tweet_id;
                if parent.deleted {
                    continue;
                }
                if ancestors.tweets.len() == limit {
                    ancestors.truncated = true;
                    break;
                }
                ancestors.tweets.push(parent.into_tweet(id));
            }
            ancestors.tweets.reverse();
            Ok(ancestors)
        })
    }

    async fn get_author_counts(&self, author_ids: Vec<u64>) -> Result<Vec<u64>, TweetError> {
        self.reading(move |_, database| {
            let read = database.begin_read()?;
            let counts = read.open_table(AUTHOR_COUNTS)?;
            author_ids
                .into_iter()
                .map(|id| Ok(counts.get(id)?.map(|count| count.value()).unwrap_or(0)))
                .collect()
        })
    }

    /// In ascending id order (the position's token is always 0), from one
    /// snapshot, so each tweet comes with the counts it had. A page is up to
    /// a thousand tweets and as many skipped, read back to back by a bulk
    /// job: big enough to run on the blocking pool, not an async worker.
    async fn scan_tweets(
        &self,
        after: Option<ScanPosition>,
        limit: usize,
    ) -> Result<TweetScanPage, TweetError> {
        let limit = limit.max(1);
        self.blocking(move |_, database| {
            let read = database.begin_read()?;
            let tweets = read.open_table(TWEETS)?;
            let counts = read.open_table(COUNTS)?;
            let start = match after {
                Some(after) => Bound::Excluded(after.tweet_id),
                None => Bound::Unbounded,
            };
            let mut page = TweetScanPage::default();
            let mut skipped = 0;
            let mut rows = tweets.range::<u64>((start, Bound::Unbounded))?;
            while let Some(row) = rows.next() {
                let (id, bytes) = row?;
                let id = id.value();
                // The table holds every tweet ever created (retweets live
                // elsewhere); deleted ones are flagged.
                let stored = StoredTweet::decode(bytes.value())?;
                if stored.deleted {
                    skipped += 1;
                } else {
                    page.tweets.push(ScannedTweet {
                        counts: read_counts(&counts, id)?,
                        tweet: stored.into_tweet(id),
                    });
                }
                if page.tweets.len() == limit || skipped == MAX_SKIPPED_SCAN_TWEETS {
                    // Continue after this row, if any row is left.
                    if rows.next().is_some() {
                        page.next = Some(ScanPosition {
                            token: 0,
                            tweet_id: id,
                        });
                    }
                    break;
                }
            }
            Ok(page)
        })
        .await
    }

    async fn max_issued_id(&self) -> Result<Option<u64>, TweetError> {
        self.blocking(|store, _| store.max_issued_id_blocking())
            .await
    }
}

/// Snowflake milliseconds fit an `i64` until the year 292 million.
fn millis(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}

fn load(
    tweets: &impl ReadableTable<u64, &'static [u8]>,
    tweet_id: u64,
) -> Result<Option<StoredTweet>, TweetError> {
    match tweets.get(tweet_id)? {
        Some(bytes) => Ok(Some(StoredTweet::decode(bytes.value())?)),
        None => Ok(None),
    }
}

fn is_live(
    tweets: &impl ReadableTable<u64, &'static [u8]>,
    tweet_id: u64,
) -> Result<bool, TweetError> {
    Ok(load(tweets, tweet_id)?.is_some_and(|stored| !stored.deleted))
}

/// The author of a live reply/quote target, or `TargetNotFound` naming `field`.
fn live_author(
    tweets: &impl ReadableTable<u64, &'static [u8]>,
    target: Option<u64>,
    field: &'static str,
) -> Result<Option<u64>, TweetError> {
    let Some(tweet_id) = target else {
        return Ok(None);
    };
    match load(tweets, tweet_id)? {
        Some(stored) if !stored.deleted => Ok(Some(stored.author_id)),
        _ => Err(TweetError::TargetNotFound { field, tweet_id }),
    }
}

fn read_counts(
    counts: &impl ReadableTable<u64, (u64, u64, u64, u64)>,
    tweet_id: u64,
) -> Result<TweetCounts, TweetError> {
    let (likes, retweets, replies, quotes) = counts
        .get(tweet_id)?
        .map(|entry| entry.value())
        .unwrap_or_default();
    Ok(TweetCounts {
        likes,
        retweets,
        replies,
        quotes,
    })
}

/// The tables that say what one viewer did to tweets.
struct ViewerTables {
    viewer_id: u64,
    likes: redb::ReadOnlyTable<(u64, u64), ()>,
    retweets: redb::ReadOnlyTable<(u64, u64), ()>,
    bookmarks: redb::ReadOnlyTable<(u64, u64), u64>,
}

impl ViewerTables {
    fn open(read: &redb::ReadTransaction, viewer_id: u64) -> Result<Self, TweetError> {
        Ok(Self {
            viewer_id,
            likes: read.open_table(LIKES)?,
            retweets: read.open_table(RETWEETS)?,
            bookmarks: read.open_table(BOOKMARKS)?,
        })
    }

    /// The viewer's like, retweet and bookmark of a tweet (assumed live).
    fn state_of(&self, tweet_id: u64) -> Result<ViewerState, TweetError> {
        let viewer_id = self.viewer_id;
        Ok(ViewerState {
            liked: self.likes.get((tweet_id, viewer_id))?.is_some(),
            retweeted: self.retweets.get((tweet_id, viewer_id))?.is_some(),
            bookmarked: self.bookmarks.get((viewer_id, tweet_id))?.is_some(),
        })
    }
}

fn adjust_counts(
    counts: &mut redb::Table<'_, u64, (u64, u64, u64, u64)>,
    tweet_id: u64,
    change: impl FnOnce(&mut TweetCounts),
) -> Result<TweetCounts, TweetError> {
    let mut current = read_counts(counts, tweet_id)?;
    change(&mut current);
    counts.insert(
        tweet_id,
        (
            current.likes,
            current.retweets,
            current.replies,
            current.quotes,
        ),
    )?;
    Ok(current)
}

/// Points `key` at `tweet`, replacing an expired use of the key.
fn remember_key(txn: &WriteTransaction, tweet: &Tweet, key: &str) -> Result<(), TweetError> {
    let created_ms = tweet.created_at_ms();
    let mut keys = txn.open_table(IDEMPOTENCY)?;
    let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
    let expired = keys
        .insert(
            (tweet.author_id, key),
            (tweet.id, created_ms, tweet.content_fingerprint()),
        )?
        .map(|entry| entry.value().1);
    if let Some(expired_ms) = expired {
        expiry.remove((expired_ms, tweet.author_id, key))?;
    }
    expiry.insert((created_ms, tweet.author_id, key), ())?;
    Ok(())
}

fn record_issued(txn: &WriteTransaction, id: u64) -> Result<(), TweetError> {
    let mut meta = txn.open_table(META)?;
    let recorded = meta.get(MAX_ISSUED_ID)?.map(|v| v.value()).unwrap_or(0);
    if id > recorded {
        meta.insert(MAX_ISSUED_ID, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata as _;
    use warble_mesh::snowflake::WARBLE_EPOCH_MS;

    const T0: u64 = WARBLE_EPOCH_MS + 1_000_000_000;
    const TTL: Duration = Duration::from_secs(60);

    fn open(ttl: Duration) -> (tempfile::TempDir, EmbeddedTweetStore) {
        let dir = tempfile::tempdir().unwrap();
        let database = warble_mesh::embedded::open_shared(dir.path()).unwrap();
        let log = EmbeddedEventLog::open(database).unwrap();
        (dir, EmbeddedTweetStore::open(log, ttl).unwrap())
    }

    /// A tweet id issued at `unix_ms`, so tests control the clock the TTL reads.
    fn id_at(unix_ms: u64, sequence: u64) -> u64 {
        ((unix_ms - WARBLE_EPOCH_MS) << 22) | sequence
    }

    fn keyed(id: u64, text: &str, key: &str) -> NewTweet {
        NewTweet {
            tweet: Tweet {
                id,
                author_id: 7,
                text: text.into(),
                reply_to_tweet_id: None,
                quote_of_tweet_id: None,
                hashtags: vec![],
                mentions: vec![],
                media_ids: vec![],
            },
            idempotency_key: Some(key.into()),
            event_id: id + 1,
        }
    }

    fn idempotency_rows(store: &EmbeddedTweetStore) -> (u64, u64) {
        let read = store.log.database().begin_read().unwrap();
        (
            read.open_table(IDEMPOTENCY).unwrap().len().unwrap(),
            read.open_table(IDEMPOTENCY_EXPIRY).unwrap().len().unwrap(),
        )
    }

    #[tokio::test]
    async fn conforms_to_the_tweet_store_contract() {
        use std::sync::Arc;
        use warble_mesh::outbox::{EventLogOutbox, Outbox};

        super::super::conformance::run_all(|| async {
            let dir = tempfile::tempdir().unwrap();
            let database = warble_mesh::embedded::open_shared(dir.path()).unwrap();
            let log = EmbeddedEventLog::open(database).unwrap();
            let store =
                EmbeddedTweetStore::open(log.clone(), super::super::conformance::IDEMPOTENCY_TTL)
                    .unwrap();
            // The embedded store's "outbox" is its event log, read by a group
            // the way the relay reads it when events go to Redis.
            let outbox: Arc<dyn Outbox> = Arc::new(EventLogOutbox::new(
                Arc::new(log),
                DOMAIN_EVENTS_STREAM,
                "conformance",
            ));
            (dir, store, outbox)
        })
        .await;
    }

    /// The embedded store with only the single-item methods: `create_tweets`
    /// and `hydrate_tweets` fall back to the trait's defaults, which the
    /// ScyllaDB store uses, so the conformance suite checks them without a
    /// ScyllaDB server.
    struct SingleTweetCreates(EmbeddedTweetStore);

    #[async_trait]
    impl TweetStore for SingleTweetCreates {
        async fn create_tweet(&self, new: NewTweet) -> Result<CreateOutcome, TweetError> {
            self.0.create_tweet(new).await
        }
        async fn get_tweets(&self, tweet_ids: Vec<u64>) -> Result<Vec<TweetLookup>, TweetError> {
            self.0.get_tweets(tweet_ids).await
        }
        async fn delete_tweet(
            &self,
            tweet_id: u64,
            requester_id: u64,
            event_id: u64,
        ) -> Result<bool, TweetError> {
            self.0.delete_tweet(tweet_id, requester_id, event_id).await
        }
        async fn list_user_entries(
            &self,
            author_id: u64,
            before: Option<u64>,
            limit: usize,
            include_retweets: bool,
        ) -> Result<Vec<AuthorEntry>, TweetError> {
            self.0
                .list_user_entries(author_id, before, limit, include_retweets)
                .await
        }
        async fn list_authors_entries(
            &self,
            author_ids: Vec<u64>,
            before: Option<u64>,
            limit: usize,
            include_retweets: bool,
        ) -> Result<Vec<AuthorEntries>, TweetError> {
            self.0
                .list_authors_entries(author_ids, before, limit, include_retweets)
                .await
        }
        async fn set_engagement(
            &self,
            write: EngagementWrite,
        ) -> Result<EngagementChange, TweetError> {
            self.0.set_engagement(write).await
        }
        async fn bookmark(
            &self,
            user_id: u64,
            tweet_id: u64,
            bookmark_id: u64,
        ) -> Result<bool, TweetError> {
            self.0.bookmark(user_id, tweet_id, bookmark_id).await
        }
        async fn unbookmark(&self, user_id: u64, tweet_id: u64) -> Result<bool, TweetError> {
            self.0.unbookmark(user_id, tweet_id).await
        }
        async fn list_bookmarks(
            &self,
            user_id: u64,
            before: Option<u64>,
            limit: usize,
        ) -> Result<BookmarkPage, TweetError> {
            self.0.list_bookmarks(user_id, before, limit).await
        }
        async fn list_replies(
            &self,
            tweet_id: u64,
            after: Option<u64>,
            limit: usize,
        ) -> Result<Vec<Tweet>, TweetError> {
            self.0.list_replies(tweet_id, after, limit).await
        }
        async fn get_ancestors(
            &self,
            tweet_id: u64,
            limit: usize,
        ) -> Result<Ancestors, TweetError> {
            self.0.get_ancestors(tweet_id, limit).await
        }
        async fn get_author_counts(&self, author_ids: Vec<u64>) -> Result<Vec<u64>, TweetError> {
            self.0.get_author_counts(author_ids).await
        }
        async fn get_counts(
            &self,
            tweet_ids: Vec<u64>,
        ) -> Result<Vec<Option<TweetCounts>>, TweetError> {
            self.0.get_counts(tweet_ids).await
        }
        async fn get_viewer_state(
            &self,
            viewer_id: u64,
            tweet_ids: Vec<u64>,
        ) -> Result<Vec<ViewerState>, TweetError> {
            self.0.get_viewer_state(viewer_id, tweet_ids).await
        }
        async fn scan_tweets(
            &self,
            after: Option<ScanPosition>,
            limit: usize,
        ) -> Result<TweetScanPage, TweetError> {
            self.0.scan_tweets(after, limit).await
        }
        async fn max_issued_id(&self) -> Result<Option<u64>, TweetError> {
            self.0.max_issued_id().await
        }
    }

    #[tokio::test]
    async fn the_default_batch_create_conforms_to_the_contract() {
        use std::sync::Arc;
        use warble_mesh::outbox::{EventLogOutbox, Outbox};

        super::super::conformance::run_all(|| async {
            let dir = tempfile::tempdir().unwrap();
            let database = warble_mesh::embedded::open_shared(dir.path()).unwrap();
            let log = EmbeddedEventLog::open(database).unwrap();
            let store = SingleTweetCreates(
                EmbeddedTweetStore::open(log.clone(), super::super::conformance::IDEMPOTENCY_TTL)
                    .unwrap(),
            );
            let outbox: Arc<dyn Outbox> = Arc::new(EventLogOutbox::new(
                Arc::new(log),
                DOMAIN_EVENTS_STREAM,
                "conformance",
            ));
            (dir, store, outbox)
        })
        .await;
    }

    fn unkeyed(id: u64, text: &str) -> NewTweet {
        NewTweet {
            idempotency_key: None,
            ..keyed(id, text, "")
        }
    }

    async fn last_event(store: &EmbeddedTweetStore) -> Option<warble_mesh::event_log::EventId> {
        use warble_mesh::event_log::EventLog as _;
        store.log.last_id(DOMAIN_EVENTS_STREAM).await.unwrap()
    }

    #[tokio::test]
    async fn a_batch_failing_anywhere_keeps_nothing_it_wrote() {
        let (_dir, store) = open(TTL);
        let kept = store
            .create_tweet(keyed(id_at(T0, 0), "kept", "taken"))
            .await
            .unwrap();
        let CreateOutcome::Created(kept) = kept else {
            panic!("expected a new tweet");
        };
        let before = (idempotency_rows(&store), last_event(&store).await);
        // Entries 0 and 1 are fine (1 replies to 0); entry 2 reuses a key
        // for other content, which only the transaction can find out.
        let reply = NewTweet {
            tweet: Tweet {
                reply_to_tweet_id: Some(id_at(T0 + 1, 0)),
                ..unkeyed(id_at(T0 + 1, 2), "reply").tweet
            },
            ..unkeyed(id_at(T0 + 1, 2), "reply")
        };
        let batch = vec![
            keyed(id_at(T0 + 1, 0), "fresh", "fresh-key"),
            reply,
            keyed(id_at(T0 + 1, 4), "other content", "taken"),
        ];
        match store.create_tweets(batch).await {
            Err(TweetError::InBatch {
                index: 2, error, ..
            }) if matches!(*error, TweetError::IdempotencyKeyReused) => {}
            other => panic!("expected tweets[2] to fail, got {other:?}"),
        }
        assert_eq!(
            store
                .get_tweets(vec![id_at(T0 + 1, 0), id_at(T0 + 1, 2)])
                .await
                .unwrap(),
            vec![TweetLookup::NotFound, TweetLookup::NotFound]
        );
        assert_eq!((idempotency_rows(&store), last_event(&store).await), before);
        assert_eq!(
            store.list_user_tweets(7, None, 10).await.unwrap(),
            vec![kept]
        );
        // The fresh key was rolled back with its tweet: it creates again.
        assert!(matches!(
            store
                .create_tweet(keyed(id_at(T0 + 2, 0), "fresh", "fresh-key"))
                .await
                .unwrap(),
            CreateOutcome::Created(_)
        ));
    }

    #[tokio::test]
    async fn keys_replay_within_the_ttl_and_start_over_after_it() {
        let (_dir, store) = open(TTL);
        let original = store
            .create_tweet(keyed(id_at(T0, 0), "first", "k"))
            .await
            .unwrap();
        let CreateOutcome::Created(original) = original else {
            panic!("expected a new tweet");
        };

        let last_moment = T0 + 59_999;
        let retry = store
            .create_tweet(keyed(id_at(last_moment, 0), "first", "k"))
            .await
            .unwrap();
        assert_eq!(retry, CreateOutcome::Replayed(original));
        assert!(matches!(
            store
                .create_tweet(keyed(id_at(last_moment, 2), "second", "k"))
                .await,
            Err(TweetError::IdempotencyKeyReused)
        ));

        // A full TTL later the key is free for new content.
        let reused = store
            .create_tweet(keyed(id_at(T0 + 60_000, 0), "second", "k"))
            .await
            .unwrap();
        assert!(matches!(reused, CreateOutcome::Created(_)));
        assert_eq!(idempotency_rows(&store), (1, 1));
    }

    #[tokio::test]
    async fn expired_keys_are_purged_by_later_writes() {
        let (_dir, store) = open(TTL);
        for n in 0..5 {
            store
                .create_tweet(keyed(id_at(T0, n * 2), "old", &format!("key-{n}")))
                .await
                .unwrap();
        }
        assert_eq!(idempotency_rows(&store), (5, 5));
        store
            .create_tweet(keyed(id_at(T0 + 60_000, 0), "new", "fresh"))
            .await
            .unwrap();
        assert_eq!(idempotency_rows(&store), (1, 1));
    }

    #[tokio::test]
    async fn a_database_from_before_thread_indexes_is_indexed_on_open() {
        let (_dir, store) = open(TTL);
        let root = unkeyed(id_at(T0, 0), "root");
        let mut reply = unkeyed(id_at(T0 + 1, 0), "reply");
        reply.tweet.reply_to_tweet_id = Some(root.tweet.id);
        let gone = unkeyed(id_at(T0 + 2, 0), "gone");
        store.create_tweets(vec![root, reply, gone]).await.unwrap();
        assert!(
            store
                .delete_tweet(id_at(T0 + 2, 0), 7, id_at(T0 + 3, 0))
                .await
                .unwrap()
        );
        // What a database written before the indexes existed looks like.
        let txn = store.log.database().begin_write().unwrap();
        txn.delete_table(REPLIES).unwrap();
        txn.delete_table(AUTHOR_COUNTS).unwrap();
        txn.open_table(META)
            .unwrap()
            .remove(THREAD_INDEXES_BUILT)
            .unwrap();
        txn.commit().unwrap();

        let reopened = EmbeddedTweetStore::open(store.log.clone(), TTL).unwrap();
        let replies = reopened.list_replies(id_at(T0, 0), None, 10).await.unwrap();
        assert_eq!(
            replies.iter().map(|tweet| tweet.id).collect::<Vec<_>>(),
            vec![id_at(T0 + 1, 0)]
        );
        assert_eq!(reopened.get_author_counts(vec![7]).await.unwrap(), vec![2]);
        // Once only: opening again changes nothing.
        let again = EmbeddedTweetStore::open(store.log.clone(), TTL).unwrap();
        assert_eq!(again.get_author_counts(vec![7]).await.unwrap(), vec![2]);
    }

    #[tokio::test]
    async fn a_long_run_of_deleted_tweets_pages_short_but_goes_on() {
        let (_dir, store) = open(TTL);
        // What a stretch of deletions leaves: flagged records, written
        // directly (a delete per tweet would cost an fsync each).
        let deleted = MAX_SKIPPED_SCAN_TWEETS * 2 + 3;
        let live: Vec<u64> = (0..3).map(|n| id_at(T0 + 10_000, n)).collect();
        let txn = store.log.database().begin_write().unwrap();
        {
            let mut tweets = txn.open_table(TWEETS).unwrap();
            for n in 0..deleted as u64 {
                let mut record = StoredTweet::new(&unkeyed(id_at(T0, n), "gone").tweet);
                record.deleted = true;
                tweets
                    .insert(id_at(T0, n), record.encode_to_vec().as_slice())
                    .unwrap();
            }
            for &id in &live {
                let record = StoredTweet::new(&unkeyed(id, "kept").tweet);
                tweets
                    .insert(id, record.encode_to_vec().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();

        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = store.scan_tweets(after, 2).await.unwrap();
            let ids: Vec<u64> = page.tweets.iter().map(|entry| entry.tweet.id).collect();
            pages.push(ids);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            pages,
            vec![vec![], vec![], vec![live[0], live[1]], vec![live[2]]],
            "the skip budget twice, then the live tweets"
        );
    }

    #[tokio::test]
    async fn max_issued_id_covers_event_ids() {
        let (_dir, store) = open(TTL);
        assert_eq!(store.max_issued_id().await.unwrap(), None);
        let tweet_id = id_at(T0, 0);
        store.create_tweet(keyed(tweet_id, "t", "k")).await.unwrap();
        let delete_event = id_at(T0 + 5, 0);
        assert!(store.delete_tweet(tweet_id, 7, delete_event).await.unwrap());
        assert_eq!(store.max_issued_id().await.unwrap(), Some(delete_event));
    }
}
