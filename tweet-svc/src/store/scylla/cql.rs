//! Every CQL statement the ScyllaDB tweet store runs, in one place.
//!
//! Ids are Snowflake ids below 2^63, stored as `bigint`; ordering by a
//! `bigint` tweet id is ordering by time. Lists, text and ids are written
//! with unset (not null) bind values when absent, so a create never writes
//! tombstones.
//!
//! # Tables
//!
//! | table | partition | clustering | holds |
//! |---|---|---|---|
//! | `tweets` | tweet id | | every tweet ever created (retweets are not tweets: they live in the engagement tables); `deleted` marks a soft delete; three LWT-only columns guard one-time steps; scanned in token order to rebuild the search index |
//! | `tweets_by_author` | author id | tweet id DESC | the author's *live* tweets, content denormalised so a page is one slice |
//! | `likes_by_user`, `retweets_by_user` | user id | tweet id DESC | the source of truth of engagement (LWT set membership); a retweet's row holds its `retweet_id` |
//! | `likes_by_tweet`, `retweets_by_tweet` | tweet id | user id | who engaged with a tweet (a listing index) |
//! | `user_retweets` | user id | retweet id DESC | a user's retweets in timeline order (the tweet id); rows of tweets deleted later stay and reads skip them |
//! | `bookmarks` | user id | tweet id | the source of truth of bookmarks (LWT set membership), with the bookmark id |
//! | `bookmarks_by_time` | user id | bookmark id DESC | a user's bookmarks in order; reads skip deleted tweets |
//! | `replies_by_parent` | parent tweet id | reply id ASC | a tweet's *live* direct replies (written and removed with the reply) |
//! | `tweet_counts` | tweet id | | `counter` columns: likes, retweets, replies, quotes |
//! | `author_counts` | author id | | `counter` column: the author's live tweets |
//! | `idempotency_keys` | (author id, key) | | the tweet a key created; rows expire `USING TTL` |
//! | `outbox` | (minute bucket, shard) | position, event id ASC | events waiting for the relay (transactional outbox) |
//! | `outbox_progress` | name | | how far the relay has published (advanced by LWT) |
//! | `id_watermark` | shard | | the largest millisecond any persisted id was issued in |
//!
//! # CQL limits this design works around
//!
//! - **Counters cannot share a batch with non-counter writes**, cannot be
//!   written with LWT, and an increment is not idempotent (a retried
//!   increment may count twice). So every counter change is gated by a
//!   lightweight transaction that flips a membership row or a one-time flag
//!   first ("only the caller whose LWT applied moves the counter"), and
//!   counter statements are marked non-idempotent so the driver never
//!   retries them. What remains: if the process dies, or the counter write
//!   fails, between the LWT and the increment, that count stays one short;
//!   it never counts twice. Reads clamp at zero, so counts never go negative.
//! - **A conditional (LWT) batch must stay within one partition**, so the
//!   outbox cannot join an LWT. Creates and deletes therefore claim with an
//!   LWT first (the idempotency key, the deletion's event id), then write the
//!   change and its outbox entry in one deterministic LOGGED batch that any
//!   later caller can safely repeat.
//! - **Mixing LWT and plain writes on the same cells is unsafe** (their
//!   timestamps come from different clocks). LWTs here only touch the
//!   dedicated columns `delete_event_id`, `targets_counted` and
//!   `targets_released`, which plain writes never touch.
//! - **Tablets**: ScyllaDB keyspaces using tablets do not support counters
//!   or LWT (as of 2025.x), so the keyspace is created with tablets disabled
//!   where the server knows the option, and without it otherwise.
//! - **Queues are a tombstone anti-pattern**, so the outbox never deletes
//!   rows one by one: it is read from a persisted position onward and whole
//!   minute partitions are dropped once published (one partition tombstone).

/// `CREATE KEYSPACE` with NetworkTopologyStrategy in the local DC. With
/// `vnodes_only`, asks ScyllaDB for vnodes (no tablets), which counters and
/// LWT need; servers that do not know the option are asked without it.
pub(super) fn create_keyspace(
    keyspace: &str,
    datacenter: &str,
    replication_factor: u32,
    vnodes_only: bool,
) -> String {
    let datacenter = datacenter.replace('\'', "''");
    let tablets = if vnodes_only {
        " AND tablets = {'enabled': false}"
    } else {
        ""
    };
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', '{datacenter}': {replication_factor}}}{tablets}"
    )
}

/// The tables, created idempotently in order.
pub(super) fn create_tables(ks: &str) -> Vec<String> {
    let engagement = |kind: &str| {
        [
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{kind}_by_user (\
                 user_id bigint, tweet_id bigint, PRIMARY KEY (user_id, tweet_id)) \
                 WITH CLUSTERING ORDER BY (tweet_id DESC)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.{kind}_by_tweet (\
                 tweet_id bigint, user_id bigint, PRIMARY KEY (tweet_id, user_id))"
            ),
        ]
    };
    let mut tables = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.tweets (\
             tweet_id bigint PRIMARY KEY, \
             author_id bigint, \
             body text, \
             reply_to_tweet_id bigint, \
             quote_of_tweet_id bigint, \
             hashtags list<text>, \
             mentions list<text>, \
             media_ids list<bigint>, \
             deleted boolean, \
             delete_event_id bigint, \
             targets_counted boolean, \
             targets_released boolean)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.tweets_by_author (\
             author_id bigint, \
             tweet_id bigint, \
             body text, \
             reply_to_tweet_id bigint, \
             quote_of_tweet_id bigint, \
             hashtags list<text>, \
             mentions list<text>, \
             media_ids list<bigint>, \
             PRIMARY KEY (author_id, tweet_id)) \
             WITH CLUSTERING ORDER BY (tweet_id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.tweet_counts (\
             tweet_id bigint PRIMARY KEY, \
             likes counter, retweets counter, replies counter, quotes counter)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.idempotency_keys (\
             author_id bigint, \
             idempotency_key text, \
             tweet_id bigint, \
             event_id bigint, \
             fingerprint blob, \
             created_at_ms bigint, \
             PRIMARY KEY ((author_id, idempotency_key)))"
        ),
        // Published partitions are dropped whole, and a resurrected entry is
        // harmless (the relay's sink drops a repeated event id), so the
        // tombstone grace period can be short.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.outbox (\
             bucket bigint, \
             shard int, \
             position bigint, \
             event_id bigint, \
             stream text, \
             event_key bigint, \
             payload blob, \
             PRIMARY KEY ((bucket, shard), position, event_id)) \
             WITH CLUSTERING ORDER BY (position ASC, event_id ASC) AND gc_grace_seconds = 3600"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.outbox_progress (\
             name text PRIMARY KEY, published_below bigint)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.id_watermark (\
             shard int PRIMARY KEY, max_ms bigint)"
        ),
    ];
    tables.extend(engagement("likes"));
    tables.extend(engagement("retweets"));
    tables.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.user_retweets (\
             user_id bigint, retweet_id bigint, tweet_id bigint, \
             PRIMARY KEY (user_id, retweet_id)) \
             WITH CLUSTERING ORDER BY (retweet_id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.bookmarks (\
             user_id bigint, tweet_id bigint, bookmark_id bigint, \
             PRIMARY KEY (user_id, tweet_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.bookmarks_by_time (\
             user_id bigint, bookmark_id bigint, tweet_id bigint, \
             PRIMARY KEY (user_id, bookmark_id)) \
             WITH CLUSTERING ORDER BY (bookmark_id DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.replies_by_parent (\
             parent_id bigint, reply_id bigint, \
             PRIMARY KEY (parent_id, reply_id)) \
             WITH CLUSTERING ORDER BY (reply_id ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.author_counts (\
             author_id bigint PRIMARY KEY, tweets counter)"
        ),
    ]);
    tables
}

/// Columns added to tables that existed before them, run after
/// [`create_tables`]. The server refuses a column that is already there;
/// the caller treats that refusal as done.
pub(super) fn add_columns(ks: &str) -> Vec<String> {
    vec![format!(
        "ALTER TABLE {ks}.retweets_by_user ADD retweet_id bigint"
    )]
}

/// A tweet's content and deletion state.
pub(super) fn select_tweet(ks: &str) -> String {
    format!(
        "SELECT author_id, body, reply_to_tweet_id, quote_of_tweet_id, hashtags, mentions, \
         media_ids, deleted, delete_event_id FROM {ks}.tweets WHERE tweet_id = ?"
    )
}

/// What a scan of every tweet reads of a `tweets` row: its partition token
/// first, then the id, the content and the deletion flag.
const SCAN_COLUMNS: &str = "token(tweet_id), tweet_id, author_id, body, reply_to_tweet_id, \
                            quote_of_tweet_id, hashtags, mentions, media_ids, deleted";

/// One slice of the scan of every tweet: the rows whose partition tokens
/// come after a token, in token order. A range scan, bounded by `LIMIT`;
/// the first slice starts after the smallest token, which no key has.
pub(super) fn select_scan_slice(ks: &str) -> String {
    format!("SELECT {SCAN_COLUMNS} FROM {ks}.tweets WHERE token(tweet_id) > ? LIMIT ?")
}

/// The rows of one partition token: where a scan resumes inside the token
/// it read last. Almost always one row; two tweet ids whose tokens collide
/// share one, and a slice may have ended between them.
pub(super) fn select_scan_token(ks: &str) -> String {
    format!("SELECT {SCAN_COLUMNS} FROM {ks}.tweets WHERE token(tweet_id) = ?")
}

/// One page of an author's live tweets below a tweet id, newest first.
pub(super) fn select_author_page(ks: &str) -> String {
    format!(
        "SELECT tweet_id, body, reply_to_tweet_id, quote_of_tweet_id, hashtags, mentions, \
         media_ids FROM {ks}.tweets_by_author WHERE author_id = ? AND tweet_id < ? LIMIT ?"
    )
}

/// Just the ids of an author's live tweets below a tweet id, newest first.
pub(super) fn select_author_ids(ks: &str) -> String {
    format!(
        "SELECT tweet_id FROM {ks}.tweets_by_author WHERE author_id = ? AND tweet_id < ? LIMIT ?"
    )
}

/// A tweet's counters (absent until the first change).
pub(super) fn select_counts(ks: &str) -> String {
    format!("SELECT likes, retweets, replies, quotes FROM {ks}.tweet_counts WHERE tweet_id = ?")
}

/// Which of some tweets a user engaged with (or bookmarked, with
/// `bookmarks`): one partition, clustering `IN`.
pub(super) fn select_engaged(ks: &str, table: &str) -> String {
    format!("SELECT tweet_id FROM {ks}.{table} WHERE user_id = ? AND tweet_id IN ?")
}

/// The id of a user's retweet of a tweet.
pub(super) fn select_retweet_id(ks: &str) -> String {
    format!("SELECT retweet_id FROM {ks}.retweets_by_user WHERE user_id = ? AND tweet_id = ?")
}

/// One slice of a user's retweets below a retweet id, newest first.
pub(super) fn select_user_retweets(ks: &str) -> String {
    format!(
        "SELECT retweet_id, tweet_id FROM {ks}.user_retweets \
         WHERE user_id = ? AND retweet_id < ? LIMIT ?"
    )
}

/// The bookmark id of a user's bookmark of a tweet.
pub(super) fn select_bookmark_id(ks: &str) -> String {
    format!("SELECT bookmark_id FROM {ks}.bookmarks WHERE user_id = ? AND tweet_id = ?")
}

/// One slice of a user's bookmarks below a bookmark id, most recent first.
pub(super) fn select_bookmarks_page(ks: &str) -> String {
    format!(
        "SELECT bookmark_id, tweet_id FROM {ks}.bookmarks_by_time \
         WHERE user_id = ? AND bookmark_id < ? LIMIT ?"
    )
}

/// One slice of a tweet's live replies above a reply id, oldest first.
pub(super) fn select_replies(ks: &str) -> String {
    format!(
        "SELECT reply_id FROM {ks}.replies_by_parent WHERE parent_id = ? AND reply_id > ? LIMIT ?"
    )
}

/// An author's live tweet count (absent until their first tweet).
pub(super) fn select_author_count(ks: &str) -> String {
    format!("SELECT tweets FROM {ks}.author_counts WHERE author_id = ?")
}

/// The watermark shards (a handful of rows, read once at start-up).
pub(super) fn select_watermarks(ks: &str) -> String {
    format!("SELECT max_ms FROM {ks}.id_watermark WHERE shard IN ?")
}

/// Outbox entries of one partition from a position on, oldest first.
pub(super) fn select_outbox(ks: &str) -> String {
    format!(
        "SELECT position, event_id, stream, event_key, payload FROM {ks}.outbox \
         WHERE bucket = ? AND shard = ? AND position >= ? LIMIT ?"
    )
}

/// How far the relay has published.
pub(super) fn select_progress(ks: &str) -> String {
    format!("SELECT published_below FROM {ks}.outbox_progress WHERE name = ?")
}

/// LWT: claims an idempotency key for a new tweet. The row expires after
/// the key's lifetime. Not applied: the result carries the existing claim.
pub(super) fn claim_key(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.idempotency_keys \
         (author_id, idempotency_key, tweet_id, event_id, fingerprint, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
    )
}

/// LWT: takes over a claim whose lifetime (by the tweets' own clocks) is
/// over but whose row has not expired yet; conditional on the old tweet id
/// so two takers cannot both win.
pub(super) fn replace_expired_key(ks: &str) -> String {
    format!(
        "UPDATE {ks}.idempotency_keys USING TTL ? \
         SET tweet_id = ?, event_id = ?, fingerprint = ?, created_at_ms = ? \
         WHERE author_id = ? AND idempotency_key = ? IF tweet_id = ?"
    )
}

/// LWT: frees a key whose create was refused, only if the claim is still
/// that create's.
pub(super) fn release_key(ks: &str) -> String {
    format!(
        "DELETE FROM {ks}.idempotency_keys WHERE author_id = ? AND idempotency_key = ? \
         IF tweet_id = ?"
    )
}

/// Batch part: the tweet itself, at a timestamp derived from its id so a
/// repeated create can never overwrite a later delete.
pub(super) fn insert_tweet(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.tweets (tweet_id, author_id, body, reply_to_tweet_id, \
         quote_of_tweet_id, hashtags, mentions, media_ids) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    )
}

/// Batch part: the tweet in its author's list (same timestamp as the tweet).
pub(super) fn insert_by_author(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.tweets_by_author (author_id, tweet_id, body, reply_to_tweet_id, \
         quote_of_tweet_id, hashtags, mentions, media_ids) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    )
}

/// Batch part: a reply in its parent's reply list (same timestamp as the tweet).
pub(super) fn insert_reply(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.replies_by_parent (parent_id, reply_id) VALUES (?, ?) USING TIMESTAMP ?"
    )
}

/// Batch part: takes a deleted reply out of its parent's reply list.
pub(super) fn delete_reply(ks: &str) -> String {
    format!(
        "DELETE FROM {ks}.replies_by_parent USING TIMESTAMP ? WHERE parent_id = ? AND reply_id = ?"
    )
}

/// Batch part: the event, in the outbox.
pub(super) fn insert_outbox(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.outbox (bucket, shard, position, event_id, stream, event_key, payload) \
         VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
}

/// Batch part: raises a watermark shard. The write timestamp is the
/// millisecond written (in microseconds), so the largest value always wins
/// reconciliation: a max-register without a read or an LWT.
pub(super) fn raise_watermark(ks: &str) -> String {
    format!("UPDATE {ks}.id_watermark USING TIMESTAMP ? SET max_ms = ? WHERE shard = ?")
}

/// LWT: claims a tweet's deletion for one event id. Not applied: the
/// result carries the event id that won.
pub(super) fn claim_delete(ks: &str) -> String {
    format!(
        "UPDATE {ks}.tweets SET delete_event_id = ? WHERE tweet_id = ? IF delete_event_id = null"
    )
}

/// Batch part: the soft delete, at a timestamp above the create's.
pub(super) fn mark_deleted(ks: &str) -> String {
    format!("UPDATE {ks}.tweets USING TIMESTAMP ? SET deleted = true WHERE tweet_id = ?")
}

/// Batch part: removes a deleted tweet from its author's list.
pub(super) fn delete_by_author(ks: &str) -> String {
    format!(
        "DELETE FROM {ks}.tweets_by_author USING TIMESTAMP ? WHERE author_id = ? AND tweet_id = ?"
    )
}

/// LWT: lets exactly one caller raise the counts a live tweet adds to:
/// its author's tweet count and its reply/quote targets' counts.
pub(super) fn count_targets(ks: &str) -> String {
    format!(
        "UPDATE {ks}.tweets SET targets_counted = true WHERE tweet_id = ? \
         IF targets_counted = null AND deleted = null"
    )
}

/// LWT: lets exactly one caller lower them again, and only if they were raised.
pub(super) fn release_targets(ks: &str) -> String {
    format!(
        "UPDATE {ks}.tweets SET targets_released = true WHERE tweet_id = ? \
         IF targets_counted = true AND targets_released = null"
    )
}

/// Counter change of one column (`likes`, `retweets`, `replies`, `quotes`).
pub(super) fn add_to_count(ks: &str, column: &str) -> String {
    format!("UPDATE {ks}.tweet_counts SET {column} = {column} + ? WHERE tweet_id = ?")
}

/// Counter change of an author's live tweet count.
pub(super) fn add_to_author_count(ks: &str) -> String {
    format!("UPDATE {ks}.author_counts SET tweets = tweets + ? WHERE author_id = ?")
}

/// LWT: adds a user to an engagement set. Applied only if they were not in it.
pub(super) fn claim_engagement(ks: &str, kind: &str) -> String {
    format!("INSERT INTO {ks}.{kind}_by_user (user_id, tweet_id) VALUES (?, ?) IF NOT EXISTS")
}

/// LWT: adds a user's retweet, with its id. Not applied: the result
/// carries the existing retweet's row (and so its id).
pub(super) fn claim_retweet(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.retweets_by_user (user_id, tweet_id, retweet_id) VALUES (?, ?, ?) \
         IF NOT EXISTS"
    )
}

/// Batch part: a retweet in its user's timeline-ordered list.
pub(super) fn insert_user_retweet(ks: &str) -> String {
    format!("INSERT INTO {ks}.user_retweets (user_id, retweet_id, tweet_id) VALUES (?, ?, ?)")
}

/// Batch part: an undone retweet out of its user's list.
pub(super) fn delete_user_retweet(ks: &str) -> String {
    format!("DELETE FROM {ks}.user_retweets WHERE user_id = ? AND retweet_id = ?")
}

/// LWT: adds a bookmark. Not applied: the result carries the existing one.
pub(super) fn claim_bookmark(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.bookmarks (user_id, tweet_id, bookmark_id) VALUES (?, ?, ?) \
         IF NOT EXISTS"
    )
}

/// LWT: removes a bookmark, only the one read before (a later bookmark of
/// the same tweet is not removed by a stale call).
pub(super) fn release_bookmark(ks: &str) -> String {
    format!("DELETE FROM {ks}.bookmarks WHERE user_id = ? AND tweet_id = ? IF bookmark_id = ?")
}

/// A bookmark in its user's ordered list (repeatable: same values, same row).
pub(super) fn insert_bookmark_by_time(ks: &str) -> String {
    format!("INSERT INTO {ks}.bookmarks_by_time (user_id, bookmark_id, tweet_id) VALUES (?, ?, ?)")
}

/// Takes a bookmark out of its user's ordered list.
pub(super) fn delete_bookmark_by_time(ks: &str) -> String {
    format!("DELETE FROM {ks}.bookmarks_by_time WHERE user_id = ? AND bookmark_id = ?")
}

/// LWT: removes a user from an engagement set. Applied only if they were in it.
pub(super) fn release_engagement(ks: &str, kind: &str) -> String {
    format!("DELETE FROM {ks}.{kind}_by_user WHERE user_id = ? AND tweet_id = ? IF EXISTS")
}

/// The per-tweet listing index of an engagement.
pub(super) fn index_engagement(ks: &str, kind: &str) -> String {
    format!("INSERT INTO {ks}.{kind}_by_tweet (tweet_id, user_id) VALUES (?, ?)")
}

/// Removes an entry of the per-tweet listing index.
pub(super) fn unindex_engagement(ks: &str, kind: &str) -> String {
    format!("DELETE FROM {ks}.{kind}_by_tweet WHERE tweet_id = ? AND user_id = ?")
}

/// LWT: creates the relay's progress row on a fresh keyspace.
pub(super) fn init_progress(ks: &str) -> String {
    format!("INSERT INTO {ks}.outbox_progress (name, published_below) VALUES (?, ?) IF NOT EXISTS")
}

/// LWT: moves the relay's progress forward only (several relays may run).
pub(super) fn advance_progress(ks: &str) -> String {
    format!(
        "UPDATE {ks}.outbox_progress SET published_below = ? WHERE name = ? \
         IF published_below < ?"
    )
}

/// Drops one published outbox partition with a single partition tombstone.
pub(super) fn drop_outbox_partition(ks: &str) -> String {
    format!("DELETE FROM {ks}.outbox WHERE bucket = ? AND shard = ?")
}
