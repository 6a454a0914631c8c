//! Every CQL statement of the ScyllaDB notification store, in one place.
//!
//! # Tables
//!
//! | table | partition | clustering | holds |
//! |---|---|---|---|
//! | `notify_state` | recipient | `section, k1, k2, k3, k4` | everything mutable about one recipient (below), plus two static columns: `revision` (the CAS guard) and `meta` (positions, group count, read marker) |
//! | `notify_tweet_recipients` | tweet id | recipient | who may hold groups about a tweet (for `TweetDeleted`) |
//! | `notify_deleted_tweets` | tweet id | | tweets deleted, refused from then on |
//!
//! `notify_state` is one generic wide row because a conditional batch must
//! stay within one partition *of one table*; the sections
//! ([`super::Section`]) give it its shape:
//!
//! | section | k1 | k2 | k3 | k4 | value |
//! |---|---|---|---|---|---|
//! | `Group` | group id | 0 | 0 | 0 | the group (`GroupRecord`) |
//! | `List` | filtered (0/1) | kind | position DESC | group id | empty: the list, newest first |
//! | `Topic` | kind | tweet id | created position DESC | group id | empty: the newest group of a kind and tweet |
//! | `Actors` | group id | item position DESC | actor | 0 | when (`ActorRecord`): a group's actors, newest first |
//! | `Item` | actor | kind | tweet id | 0 | the item's version, presence, group (`ItemRecord`) |
//! | `Silence` | actor | source (1 block, 2 mute) | 0 | 0 | the pair's silence from that source (`SilenceRecord`) |
//! | `Deleted` | tweet id | 0 | 0 | 0 | empty: a deleted tweet, seen by this recipient's CAS |
//! | `Settings` | 0 | 0 | 0 | 0 | the policy (`SettingsRecord`) |
//!
//! Clustering is descending after `section`, so newest-first slices (a
//! list page, a group's newest actors, a tweet's newest group) are plain
//! `LIMIT` reads; the oldest end (eviction) is read with the whole order
//! reversed (`ORDER BY section DESC`, legal because every clustering
//! column before the slice is fixed by equality).

/// `CREATE KEYSPACE` with NetworkTopologyStrategy in the local DC. With
/// `vnodes_only`, asks ScyllaDB for vnodes (no tablets): LWT needs them on
/// the ScyllaDB versions this targets. Servers that do not know the option
/// are asked without it.
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

/// The tables, created idempotently in order. No table default TTL: every
/// write states its own (`USING TTL`, 0 for none), computed from the time
/// its data stops mattering.
pub(super) fn create_tables(ks: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.notify_state (\
             recipient bigint, \
             section int, \
             k1 bigint, \
             k2 bigint, \
             k3 bigint, \
             k4 bigint, \
             value blob, \
             revision bigint STATIC, \
             meta blob STATIC, \
             PRIMARY KEY (recipient, section, k1, k2, k3, k4)) \
             WITH CLUSTERING ORDER BY (section ASC, k1 DESC, k2 DESC, k3 DESC, k4 DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.notify_tweet_recipients (\
             tweet_id bigint, recipient bigint, PRIMARY KEY (tweet_id, recipient))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.notify_deleted_tweets (\
             tweet_id bigint PRIMARY KEY, deleted_at_ms bigint)"
        ),
    ]
}

/// The recipient's revision and meta. Run at LOCAL_SERIAL before a change
/// (so every commit up to that revision is on a quorum before the other
/// reads), at LOCAL_QUORUM for plain reads.
pub(super) fn select_meta(ks: &str) -> String {
    format!("SELECT revision, meta FROM {ks}.notify_state WHERE recipient = ? LIMIT 1")
}

/// One row's value.
pub(super) fn select_row(ks: &str) -> String {
    format!(
        "SELECT value FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? AND k2 = ? AND k3 = ? AND k4 = ?"
    )
}

/// The newest rows under one `k1` (a group's actors, an actor's items).
pub(super) fn select_under_k1(ks: &str) -> String {
    format!(
        "SELECT k2, k3, k4, value FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? LIMIT ?"
    )
}

/// The newest keys under one `(k1, k2)` (a tweet's groups of one kind).
pub(super) fn select_under_k2(ks: &str) -> String {
    format!(
        "SELECT k3, k4 FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? AND k2 = ? LIMIT ?"
    )
}

/// A list page of one kind: keys below a position, newest first.
pub(super) fn select_below(ks: &str) -> String {
    format!(
        "SELECT k3, k4 FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? AND k2 = ? AND k3 < ? LIMIT ?"
    )
}

/// Keys of one kind above a position (unread counting).
pub(super) fn select_above(ks: &str) -> String {
    format!(
        "SELECT k3 FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? AND k2 = ? AND k3 > ? LIMIT ?"
    )
}

/// The oldest keys of one kind (eviction): the clustering order reversed.
pub(super) fn select_oldest(ks: &str) -> String {
    format!(
        "SELECT k3, k4 FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? AND k2 = ? \
         ORDER BY section DESC LIMIT ?"
    )
}

/// Groups by id (one partition, clustering `IN`).
pub(super) fn select_groups(ks: &str) -> String {
    format!(
        "SELECT k1, value FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 IN ?"
    )
}

/// How many rows a section holds (the group count's recount).
pub(super) fn count_section(ks: &str) -> String {
    format!("SELECT COUNT(*) FROM {ks}.notify_state WHERE recipient = ? AND section = ?")
}

/// Batch part (or alone, for settings): a row, `USING TTL` (0: none).
pub(super) fn upsert_row(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.notify_state (recipient, section, k1, k2, k3, k4, value) \
         VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
    )
}

/// Batch part: removes one row.
pub(super) fn delete_row(ks: &str) -> String {
    format!(
        "DELETE FROM {ks}.notify_state \
         WHERE recipient = ? AND section = ? AND k1 = ? AND k2 = ? AND k3 = ? AND k4 = ?"
    )
}

/// Batch part: removes every row under one `k1` with a single range
/// tombstone (a dropped group's actors, however many).
pub(super) fn delete_under_k1(ks: &str) -> String {
    format!("DELETE FROM {ks}.notify_state WHERE recipient = ? AND section = ? AND k1 = ?")
}

/// The batch's condition and the recipient's new revision and meta: the
/// whole batch applies only if nobody committed since the revision read.
/// A recipient never written has a null revision (`= null` holds then).
pub(super) fn commit_revision(ks: &str) -> String {
    format!(
        "UPDATE {ks}.notify_state SET revision = ?, meta = ? WHERE recipient = ? \
         IF revision = ?"
    )
}

/// Remembers that a recipient may hold groups about a tweet.
pub(super) fn insert_tweet_recipient(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.notify_tweet_recipients (tweet_id, recipient) VALUES (?, ?) \
         USING TTL ?"
    )
}

/// Who may hold groups about a tweet.
pub(super) fn select_tweet_recipients(ks: &str) -> String {
    format!("SELECT recipient FROM {ks}.notify_tweet_recipients WHERE tweet_id = ?")
}

/// A tweet's deletion.
pub(super) fn insert_deleted_tweet(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.notify_deleted_tweets (tweet_id, deleted_at_ms) VALUES (?, ?) \
         USING TTL ?"
    )
}

/// Whether a tweet was deleted.
pub(super) fn select_deleted_tweet(ks: &str) -> String {
    format!("SELECT deleted_at_ms FROM {ks}.notify_deleted_tweets WHERE tweet_id = ?")
}
