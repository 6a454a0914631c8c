//! [`NotificationStore`] on ScyllaDB: one partition per recipient, newest
//! first. The embedded store is the reference for the semantics; this one
//! keeps them with lightweight transactions.
//!
//! **Not run against a live ScyllaDB here**: no CQL server can be had on
//! the machine this was written on, so the statements have been checked
//! against ScyllaDB's sources and the driver's types, not executed. The
//! conformance suite is meant to run against it when `SCYLLA_URI` is set.
//!
//! The schema and every statement live in [`cql`]. In short:
//!
//! - **One partition holds all of a recipient's mutable state** (groups,
//!   their list and actor indexes, item versions, silences, deleted tweets
//!   seen, settings) in one generic wide row, plus two static columns:
//!   `revision` and `meta` (last position issued, group count, read marker).
//! - **A change is one conditional batch.** [`Tx`] reads the revision at
//!   LOCAL_SERIAL (which first completes any commit in flight, so the reads
//!   that follow at LOCAL_QUORUM see every commit up to that revision), reads
//!   what the change needs, computes, and commits every row it touches with
//!   `IF revision = ?` in one single-partition batch. ScyllaDB applies such
//!   a batch all or nothing; if another writer committed first, the batch
//!   does not apply and the change is read and computed again. So each
//!   item's version, the groups it changes, the positions and the group
//!   count move together, or not at all. Calls for one recipient are also
//!   serialised inside the process (striped locks) so they rarely race.
//! - **Exactly one effect.** The newest version applied per item is stored
//!   in the same batch as the change; an add or undo whose version is not
//!   newer is `Stale` and writes nothing. An undo before its action leaves a
//!   tombstone (the item's row, absent) the late action cannot pass.
//! - **One group to read.** A group's row holds its count and its newest
//!   actors; the actors themselves are rows clustered by position
//!   descending, read with `LIMIT` only when an undo touches the sample. A
//!   tweet liked 100,000 times is one list key and one group row to read.
//! - **Retention.** Every row's TTL is the time its data stops mattering
//!   (the group's newest item, the item's version, a deletion) plus
//!   180 days and a margin; reads also leave out groups past the retention
//!   floor. The newest 10,000 groups are kept: creating a group beyond that
//!   drops the oldest in the same batch.
//! - **Cross-recipient state** lives in its own partitions, written before
//!   any recipient's batch and idempotent: a tweet's deletion
//!   (`notify_deleted_tweets`) and the recipients that may hold groups about
//!   a tweet (`notify_tweet_recipients`). Once a tweet is deleted, adds and
//!   undos about it are `Stale`, as in the embedded store.
//!
//! # What is atomic, and what is not
//!
//! - Atomic: everything one `Add`, `Remove` or `Unsilence` does, and
//!   `mark_read` (one conditional batch each).
//! - `TweetDeleted` writes the tweet's deletion first, then clears each
//!   recipient in turn, each recipient's part atomic (in chunks of
//!   [`CHUNK`] groups, the recipient's deletion marker in the first). A
//!   crash part-way leaves some recipients' groups in place until the event
//!   is redelivered, which finishes the work (every step is repeatable).
//!   An add racing the deletion is caught either by the deletion (the add
//!   wrote the tweet's recipient before reading the deletion) or by the
//!   add's own read of the deletion (the deletion wrote itself before
//!   reading the recipients); a quorum write followed by a quorum read on
//!   each side makes sure one of them sees the other.
//! - `Silence` removes the actor's items in chunks of [`CHUNK`], each
//!   atomic, and stores its version with the last chunk; a crash part-way
//!   is finished by the redelivery (the version is not stored yet).
//! - `set_settings` is a plain write of its own row (never touched by a
//!   conditional write, so LWT and plain writes never share a cell).
//! - `apply_all` uses the trait's default: one change after the other.
//! - A conditional batch that times out may or may not have applied; the
//!   error goes to the caller, whose retry finds the version stored and is
//!   `Stale` if it had.
//!
//! # Known limits
//!
//! - Every change costs a Paxos round for the serial read and one for the
//!   batch: a recipient takes a few hundred changes a second at most. A
//!   burst for one recipient (a viral tweet's likes) queues on its
//!   partition, and contention beyond [`MAX_ATTEMPTS`] rounds is an error
//!   the caller retries later.
//! - A group that absorbs an actor moves to a new position: its old list
//!   row becomes a tombstone. A hot group leaves many of them in its
//!   recipient's list until compaction purges them (`gc_grace_seconds`),
//!   and list reads scan through them meanwhile.
//! - Item rows and actor rows expire 180 days (plus the margin) after
//!   their item, even inside a group that lives on: undoing such an item
//!   finds nothing (`Recorded`, the group's count stays one high).
//! - After an undo removes a group's newest item, the group's time becomes
//!   the newest time among its next [`MAX_SAMPLE_ACTORS`] + 1 actors.
//! - The group count does not see groups expired by TTL; it is recounted
//!   when it reaches the cap, at most once per [`RECOUNT_EVERY`] positions,
//!   so until then a drifted count can drop an old group early.
//! - Groups of a deleted tweet go, but their items' version rows stay (as
//!   items of a missing group, which count as absent) until they expire.
//! - Group ids are unique per recipient (a bijection of the position
//!   mixed with the recipient), not drawn from one global sequence.
//! - `unread` counts list keys above the marker without reading the groups,
//!   so a group past the retention still counts until its TTL (the
//!   retention plus [`TTL_MARGIN_SECS`]) removes it; `list` and `get` leave
//!   it out at once (`get` judges by the wall clock, as the embedded store).

mod cql;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::errors::{
    DbError, DeserializationError, ExecutionError, IntoRowsResultError, MaybeFirstRowError,
    NewSessionError, NextRowError, PagerExecutionError, PrepareError, RequestAttemptError,
    RowsError, SingleRowError, TypeCheckError,
};
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::policies::retry::DefaultRetryPolicy;
use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{CqlValue, Row};
use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use prost::Message as _;
use tokio::sync::Mutex;
use warble_mesh::backends::ScyllaConfig;
use warble_proto::limits::notify::{MAX_SAMPLE_ACTORS, RETAINED_GROUPS, RETENTION_DAYS};

use super::{
    Applied, Change, Group, GroupPage, Item, Kind, ListQuery, NotificationStore, Settings,
    SilenceSource, StrangerPolicy, Unread, Version, joins_group, retention_floor_ms,
};
use crate::error::NotifyError;

/// Most groups (or items) one conditional batch changes; larger deletions
/// and silences go in several batches.
const CHUNK: usize = 32;
/// Rounds of read, compute, commit before a contended change gives up.
const MAX_ATTEMPTS: u32 = 24;
/// Positions issued between two recounts of the group count at the cap.
const RECOUNT_EVERY: u64 = 1_000;
/// Oldest groups looked at when a new one needs room.
const EVICTION_SCAN: usize = 2;
/// TTLs run this long past the retention: reads apply the exact floor, the
/// TTL only clears what no read can see any more.
const TTL_MARGIN_SECS: i64 = 86_400;
/// Longest TTL ScyllaDB accepts (20 years).
const MAX_TTL_SECS: i64 = 630_720_000;
/// The retention, in milliseconds.
const RETENTION_MS: i64 = RETENTION_DAYS as i64 * 86_400_000;
/// Striped in-process locks: calls for one recipient take turns instead of
/// racing each other's conditional batches.
const LOCK_STRIPES: usize = 256;
/// Requests in flight at once for one call.
const READ_CONCURRENCY: usize = 16;
/// The kinds whose items are about a tweet (a follow's tweet is 0).
const TWEET_KINDS: [Kind; 5] = [
    Kind::Mention,
    Kind::Reply,
    Kind::Quote,
    Kind::Like,
    Kind::Retweet,
];

macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for NotifyError {
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
    SingleRowError,
    RowsError,
    DeserializationError,
    PagerExecutionError,
    NextRowError,
    TypeCheckError
);

/// The sections of `notify_state` (see [`cql`] for their keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Group = 1,
    List = 2,
    Topic = 3,
    Actors = 4,
    Item = 5,
    Silence = 6,
    Deleted = 7,
    Settings = 8,
}

impl Section {
    fn db(self) -> i32 {
        self as i32
    }
}

/// The static `meta` column.
#[derive(Clone, PartialEq, prost::Message)]
struct MetaRecord {
    /// The last position issued (0: none yet).
    #[prost(uint64, tag = "1")]
    last_position: u64,
    /// Groups held, as the batches counted them.
    #[prost(uint64, tag = "2")]
    group_count: u64,
    /// The read marker.
    #[prost(uint64, tag = "3")]
    read_up_to: u64,
    /// `last_position` when the group count was last recounted.
    #[prost(uint64, tag = "4")]
    counted_at: u64,
}

/// A group, in its `Group` row.
#[derive(Clone, PartialEq, prost::Message)]
struct GroupRecord {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int32, tag = "2")]
    kind: i32,
    #[prost(uint64, tag = "3")]
    tweet_id: u64,
    #[prost(uint64, tag = "4")]
    count: u64,
    /// The newest actors, newest first.
    #[prost(uint64, repeated, tag = "5")]
    actors: Vec<u64>,
    #[prost(int64, tag = "6")]
    latest_at_ms: i64,
    #[prost(uint64, tag = "7")]
    position: u64,
    #[prost(bool, tag = "8")]
    filtered: bool,
    /// The position it was created at (its `Topic` row's key).
    #[prost(uint64, tag = "9")]
    created_position: u64,
}

/// An item's state, in its `Item` row: the newest version applied, and
/// where the item is while present.
#[derive(Clone, PartialEq, prost::Message)]
struct ItemRecord {
    #[prost(int64, tag = "1")]
    version_at_ms: i64,
    #[prost(uint64, tag = "2")]
    version_event_id: u64,
    #[prost(bool, tag = "3")]
    present: bool,
    #[prost(uint64, tag = "4")]
    group_id: u64,
    #[prost(uint64, tag = "5")]
    position: u64,
    #[prost(int64, tag = "6")]
    at_ms: i64,
}

/// An actor row's value.
#[derive(Clone, PartialEq, prost::Message)]
struct ActorRecord {
    #[prost(int64, tag = "1")]
    at_ms: i64,
}

/// The clustering key of a pair's silence from `source` (section Silence).
fn silence_key(actor: u64, source: SilenceSource) -> [i64; 4] {
    [to_db(actor), source as i64, 0, 0]
}

/// A (recipient, actor) pair's last silence change from one source.
#[derive(Clone, PartialEq, prost::Message)]
struct SilenceRecord {
    #[prost(int64, tag = "1")]
    version_at_ms: i64,
    #[prost(uint64, tag = "2")]
    version_event_id: u64,
    #[prost(bool, tag = "3")]
    active: bool,
    #[prost(int64, optional, tag = "4")]
    until_ms: Option<i64>,
}

/// A recipient's policy.
#[derive(Clone, PartialEq, prost::Message)]
struct SettingsRecord {
    #[prost(bool, tag = "1")]
    filter_strangers: bool,
    #[prost(uint32, tag = "2")]
    new_accounts_days: u32,
}

impl ItemRecord {
    fn version(&self) -> Version {
        Version {
            at_ms: self.version_at_ms,
            event_id: self.version_event_id,
        }
    }

    fn set_version(&mut self, version: Version) {
        self.version_at_ms = version.at_ms;
        self.version_event_id = version.event_id;
    }

    /// Until when the row matters: as a version, and as a present item.
    fn ttl(&self, now_ms: i64) -> i32 {
        retention_ttl(self.version_at_ms.max(self.at_ms), now_ms)
    }
}

impl SilenceRecord {
    fn version(&self) -> Version {
        Version {
            at_ms: self.version_at_ms,
            event_id: self.version_event_id,
        }
    }

    fn silences_at(&self, now_ms: i64) -> bool {
        self.active && self.until_ms.is_none_or(|until| now_ms < until)
    }
}

impl GroupRecord {
    fn list_keys(&self) -> [i64; 4] {
        [
            i64::from(self.filtered),
            i64::from(self.kind),
            to_db(self.position),
            to_db(self.id),
        ]
    }

    fn topic_keys(&self) -> [i64; 4] {
        [
            i64::from(self.kind),
            to_db(self.tweet_id),
            to_db(self.created_position),
            to_db(self.id),
        ]
    }

    fn into_group(self, recipient: u64, read_up_to: u64) -> Result<Group, NotifyError> {
        let kind = Kind::from_number(self.kind)
            .ok_or_else(|| NotifyError::storage(format!("stored group kind {}", self.kind)))?;
        Ok(Group {
            id: self.id,
            recipient,
            kind,
            tweet_id: self.tweet_id,
            count: self.count,
            actors: self.actors,
            latest_at_ms: self.latest_at_ms,
            position: self.position,
            unread: self.position > read_up_to,
            filtered: self.filtered,
        })
    }
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, NotifyError> {
    M::decode(bytes).map_err(NotifyError::storage)
}

/// Notifications on ScyllaDB. Cheap to clone.
#[derive(Clone)]
pub struct ScyllaNotificationStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScyllaNotificationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaNotificationStore")
            .field("nodes", &self.inner.nodes)
            .field("keyspace", &self.inner.keyspace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    session: Session,
    statements: Statements,
    nodes: String,
    keyspace: String,
    stripes: Box<[Mutex<()>]>,
}

/// Every statement, prepared once at start-up (which also checks that the
/// schema has every table and column used).
struct Statements {
    select_meta_serial: PreparedStatement,
    select_meta: PreparedStatement,
    select_row: PreparedStatement,
    select_under_k1: PreparedStatement,
    select_under_k2: PreparedStatement,
    select_below: PreparedStatement,
    select_above: PreparedStatement,
    select_oldest: PreparedStatement,
    select_groups: PreparedStatement,
    count_section: PreparedStatement,
    upsert_row: PreparedStatement,
    delete_row: PreparedStatement,
    delete_under_k1: PreparedStatement,
    commit_revision: PreparedStatement,
    insert_tweet_recipient: PreparedStatement,
    select_tweet_recipients: PreparedStatement,
    insert_deleted_tweet: PreparedStatement,
    select_deleted_tweet: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session, ks: &str) -> Result<Self, NotifyError> {
        // Reads and plain writes may be retried by the driver; the
        // conditional batch must not be (it is built per call, below).
        let prepare = |cql: String| async move {
            let mut statement = session.prepare(cql).await?;
            statement.set_is_idempotent(true);
            Ok::<_, NotifyError>(statement)
        };
        let mut select_meta_serial = prepare(cql::select_meta(ks)).await?;
        select_meta_serial.set_consistency(Consistency::LocalSerial);
        let mut commit_revision = prepare(cql::commit_revision(ks)).await?;
        commit_revision.set_is_idempotent(false);
        Ok(Self {
            select_meta_serial,
            select_meta: prepare(cql::select_meta(ks)).await?,
            select_row: prepare(cql::select_row(ks)).await?,
            select_under_k1: prepare(cql::select_under_k1(ks)).await?,
            select_under_k2: prepare(cql::select_under_k2(ks)).await?,
            select_below: prepare(cql::select_below(ks)).await?,
            select_above: prepare(cql::select_above(ks)).await?,
            select_oldest: prepare(cql::select_oldest(ks)).await?,
            select_groups: prepare(cql::select_groups(ks)).await?,
            count_section: prepare(cql::count_section(ks)).await?,
            upsert_row: prepare(cql::upsert_row(ks)).await?,
            delete_row: prepare(cql::delete_row(ks)).await?,
            delete_under_k1: prepare(cql::delete_under_k1(ks)).await?,
            commit_revision,
            insert_tweet_recipient: prepare(cql::insert_tweet_recipient(ks)).await?,
            select_tweet_recipients: prepare(cql::select_tweet_recipients(ks)).await?,
            insert_deleted_tweet: prepare(cql::insert_deleted_tweet(ks)).await?,
            select_deleted_tweet: prepare(cql::select_deleted_tweet(ks)).await?,
        })
    }
}

impl ScyllaNotificationStore {
    /// Connects to the cluster in `config`, creates the keyspace and tables
    /// if missing, and prepares every statement.
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, NotifyError> {
        let session = build_session(config).await?;
        create_schema(&session, config).await?;
        let statements = Statements::prepare(&session, &config.keyspace).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                statements,
                nodes: config.node_list().join(","),
                keyspace: config.keyspace.clone(),
                stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        })
    }

    /// The keyspace this store uses.
    pub fn keyspace(&self) -> &str {
        &self.inner.keyspace
    }

    fn st(&self) -> &Statements {
        &self.inner.statements
    }

    fn session(&self) -> &Session {
        &self.inner.session
    }

    fn stripe(&self, recipient: u64) -> &Mutex<()> {
        &self.inner.stripes[(mix(recipient) % LOCK_STRIPES as u64) as usize]
    }

    // ---- reads --------------------------------------------------------

    async fn read_meta(
        &self,
        statement: &PreparedStatement,
        recipient: u64,
    ) -> Result<(Option<i64>, MetaRecord), NotifyError> {
        let row = self
            .session()
            .execute_unpaged(statement, (to_db(recipient),))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>, Option<Vec<u8>>)>()?;
        let Some((revision, meta)) = row else {
            return Ok((None, MetaRecord::default()));
        };
        let meta = match meta {
            Some(bytes) => decode(&bytes)?,
            None => MetaRecord::default(),
        };
        Ok((revision, meta))
    }

    async fn read_row(
        &self,
        recipient: u64,
        section: Section,
        keys: [i64; 4],
    ) -> Result<Option<Vec<u8>>, NotifyError> {
        let [k1, k2, k3, k4] = keys;
        let row = self
            .session()
            .execute_unpaged(
                &self.st().select_row,
                (to_db(recipient), section.db(), k1, k2, k3, k4),
            )
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<Vec<u8>>,)>()?;
        Ok(row.map(|(value,)| value.unwrap_or_default()))
    }

    async fn read_record<M: prost::Message + Default>(
        &self,
        recipient: u64,
        section: Section,
        keys: [i64; 4],
    ) -> Result<Option<M>, NotifyError> {
        self.read_row(recipient, section, keys)
            .await?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    async fn read_item(&self, item: &Item) -> Result<Option<ItemRecord>, NotifyError> {
        self.read_record(item.recipient, Section::Item, item_keys(item))
            .await
    }

    async fn read_silence(
        &self,
        recipient: u64,
        actor: u64,
        source: SilenceSource,
    ) -> Result<Option<SilenceRecord>, NotifyError> {
        self.read_record(recipient, Section::Silence, silence_key(actor, source))
            .await
    }

    /// Whether any source (a block, a mute) silences `actor` for
    /// `recipient` at `now_ms`.
    async fn silenced(&self, recipient: u64, actor: u64, now_ms: i64) -> Result<bool, NotifyError> {
        let (block, mute) = tokio::try_join!(
            self.read_silence(recipient, actor, SilenceSource::Block),
            self.read_silence(recipient, actor, SilenceSource::Mute),
        )?;
        Ok([block, mute]
            .into_iter()
            .flatten()
            .any(|silence| silence.silences_at(now_ms)))
    }

    /// The keys under `(k1, k2)`, newest first: `(k3, k4)`.
    async fn read_under_k2(
        &self,
        recipient: u64,
        section: Section,
        k1: i64,
        k2: i64,
        limit: usize,
    ) -> Result<Vec<(i64, i64)>, NotifyError> {
        let result = self
            .session()
            .execute_unpaged(
                &self.st().select_under_k2,
                (to_db(recipient), section.db(), k1, k2, cql_limit(limit)),
            )
            .await?
            .into_rows_result()?;
        Ok(result.rows::<(i64, i64)>()?.collect::<Result<_, _>>()?)
    }

    /// A group's newest actor rows: `(position, actor, at_ms)`.
    async fn read_actors(
        &self,
        recipient: u64,
        group_id: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u64, i64)>, NotifyError> {
        let result = self
            .session()
            .execute_unpaged(
                &self.st().select_under_k1,
                (
                    to_db(recipient),
                    Section::Actors.db(),
                    to_db(group_id),
                    cql_limit(limit),
                ),
            )
            .await?
            .into_rows_result()?;
        let mut actors = Vec::new();
        for row in result.rows::<(i64, i64, i64, Option<Vec<u8>>)>()? {
            let (position, actor, _, value) = row?;
            let at_ms = decode::<ActorRecord>(&value.unwrap_or_default())?.at_ms;
            actors.push((from_db(position), from_db(actor), at_ms));
        }
        Ok(actors)
    }

    /// Every item row of an actor (present or not), paged.
    async fn read_actor_items(
        &self,
        recipient: u64,
        actor: u64,
    ) -> Result<Vec<(Item, ItemRecord)>, NotifyError> {
        let pager = self
            .session()
            .execute_iter(
                self.st().select_under_k1.clone(),
                (to_db(recipient), Section::Item.db(), to_db(actor), i32::MAX),
            )
            .await?;
        let mut rows = pager.rows_stream::<(i64, i64, i64, Option<Vec<u8>>)>()?;
        let mut items = Vec::new();
        while let Some(row) = rows.next().await {
            let (kind, tweet_id, _, value) = row?;
            let kind = i32::try_from(kind)
                .ok()
                .and_then(Kind::from_number)
                .ok_or_else(|| NotifyError::storage(format!("stored item kind {kind}")))?;
            let item = Item {
                recipient,
                kind,
                tweet_id: from_db(tweet_id),
                actor,
            };
            items.push((item, decode(&value.unwrap_or_default())?));
        }
        Ok(items)
    }

    /// Groups by id, as stored.
    async fn read_groups(
        &self,
        recipient: u64,
        ids: &[u64],
    ) -> Result<HashMap<u64, GroupRecord>, NotifyError> {
        let mut groups = HashMap::with_capacity(ids.len());
        let mut unique: Vec<i64> = ids.iter().copied().map(to_db).collect();
        unique.sort_unstable();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let result = self
                .session()
                .execute_unpaged(
                    &self.st().select_groups,
                    (to_db(recipient), Section::Group.db(), chunk),
                )
                .await?
                .into_rows_result()?;
            for row in result.rows::<(i64, Option<Vec<u8>>)>()? {
                let (id, value) = row?;
                groups.insert(from_db(id), decode(&value.unwrap_or_default())?);
            }
        }
        Ok(groups)
    }

    /// One list (main or filtered) of one kind: list keys below `before`,
    /// newest first, `(position, group id)`.
    async fn read_list_below(
        &self,
        recipient: u64,
        filtered: bool,
        kind: Kind,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(u64, u64)>, NotifyError> {
        let result = self
            .session()
            .execute_unpaged(
                &self.st().select_below,
                (
                    to_db(recipient),
                    Section::List.db(),
                    i64::from(filtered),
                    kind as i64,
                    before,
                    cql_limit(limit),
                ),
            )
            .await?
            .into_rows_result()?;
        let rows = result.rows::<(i64, i64)>()?;
        rows.map(|row| {
            row.map(|(position, id)| (from_db(position), from_db(id)))
                .map_err(NotifyError::from)
        })
        .collect()
    }

    /// The oldest list keys of one list and kind, oldest first.
    async fn read_list_oldest(
        &self,
        recipient: u64,
        filtered: bool,
        kind: Kind,
        limit: usize,
    ) -> Result<Vec<(u64, u64)>, NotifyError> {
        let result = self
            .session()
            .execute_unpaged(
                &self.st().select_oldest,
                (
                    to_db(recipient),
                    Section::List.db(),
                    i64::from(filtered),
                    kind as i64,
                    cql_limit(limit),
                ),
            )
            .await?
            .into_rows_result()?;
        let rows = result.rows::<(i64, i64)>()?;
        rows.map(|row| {
            row.map(|(position, id)| (from_db(position), from_db(id)))
                .map_err(NotifyError::from)
        })
        .collect()
    }

    /// The live groups of one list and kind below `before`, newest first,
    /// up to `want`: list keys are checked against the groups' rows (a key
    /// left behind never shows) and groups past `floor_ms` are skipped.
    async fn live_groups(
        &self,
        recipient: u64,
        filtered: bool,
        kind: Kind,
        before: Option<u64>,
        want: usize,
        floor_ms: i64,
    ) -> Result<Vec<GroupRecord>, NotifyError> {
        let mut live = Vec::new();
        let mut cursor = below(before);
        loop {
            let keys = self
                .read_list_below(recipient, filtered, kind, cursor, want)
                .await?;
            let Some(&(last, _)) = keys.last() else {
                break;
            };
            let ids: Vec<u64> = keys.iter().map(|&(_, id)| id).collect();
            let mut groups = self.read_groups(recipient, &ids).await?;
            for (position, id) in &keys {
                if let Some(group) = groups.remove(id)
                    && group.position == *position
                    && group.filtered == filtered
                    && group.latest_at_ms >= floor_ms
                {
                    live.push(group);
                }
            }
            if live.len() >= want || keys.len() < want {
                break;
            }
            cursor = to_db(last);
        }
        live.truncate(want);
        Ok(live)
    }

    // ---- the conditional batch ---------------------------------------

    async fn begin(&self, recipient: u64, now_ms: i64) -> Result<Tx<'_>, NotifyError> {
        let (revision, meta) = self
            .read_meta(&self.st().select_meta_serial, recipient)
            .await?;
        Ok(Tx {
            store: self,
            recipient,
            now_ms,
            revision,
            meta_before: meta.clone(),
            meta,
            read_groups: HashMap::new(),
            groups: HashMap::new(),
            rows: BTreeMap::new(),
            cleared: Vec::new(),
            removed_actor_rows: HashSet::new(),
        })
    }

    // ---- changes ------------------------------------------------------

    async fn add(
        &self,
        item: Item,
        version: Version,
        filtered: bool,
        now_ms: i64,
    ) -> Result<Applied, NotifyError> {
        if version.at_ms < retention_floor_ms(now_ms) {
            return Ok(Applied::Stale);
        }
        if item.tweet_id != 0 {
            // Recipient first, deletion second: see the module docs.
            self.session()
                .execute_unpaged(
                    &self.st().insert_tweet_recipient,
                    (
                        to_db(item.tweet_id),
                        to_db(item.recipient),
                        retention_ttl(version.at_ms, now_ms),
                    ),
                )
                .await?;
            if self.tweet_deleted(item.tweet_id).await? {
                return Ok(Applied::Stale);
            }
        }
        let _turn = self.stripe(item.recipient).lock().await;
        let mut contention = Contention::default();
        loop {
            let mut tx = self.begin(item.recipient, now_ms).await?;
            let applied = tx.add(item, version, filtered).await?;
            if tx.commit().await? {
                return Ok(applied);
            }
            contention.wait().await?;
        }
    }

    async fn remove(
        &self,
        item: Item,
        version: Version,
        now_ms: i64,
    ) -> Result<Applied, NotifyError> {
        // The deletion took the item's group already; nothing to guard.
        if item.tweet_id != 0 && self.tweet_deleted(item.tweet_id).await? {
            return Ok(Applied::Stale);
        }
        let _turn = self.stripe(item.recipient).lock().await;
        let mut contention = Contention::default();
        loop {
            let mut tx = self.begin(item.recipient, now_ms).await?;
            let applied = tx.remove(item, version).await?;
            if tx.commit().await? {
                return Ok(applied);
            }
            contention.wait().await?;
        }
    }

    async fn silence(
        &self,
        recipient: u64,
        actor: u64,
        source: SilenceSource,
        version: Version,
        until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<Applied, NotifyError> {
        let _turn = self.stripe(recipient).lock().await;
        let mut removed = 0;
        let mut contention = Contention::default();
        loop {
            let mut tx = self.begin(recipient, now_ms).await?;
            let stored = self.read_silence(recipient, actor, source).await?;
            if stored.is_some_and(|stored| stored.version() >= version) {
                return Ok(removed_or(removed, Applied::Stale));
            }
            let present: Vec<(Item, ItemRecord)> = self
                .read_actor_items(recipient, actor)
                .await?
                .into_iter()
                .filter(|(_, record)| record.present)
                .collect();
            let last_chunk = present.len() <= CHUNK;
            let mut removed_now = 0;
            for (item, mut record) in present.into_iter().take(CHUNK) {
                if tx.remove_from_group(&record, actor).await? {
                    removed_now += 1;
                }
                record.present = false;
                tx.put_item(&item, &record);
            }
            if last_chunk {
                let silence = SilenceRecord {
                    version_at_ms: version.at_ms,
                    version_event_id: version.event_id,
                    active: true,
                    until_ms,
                };
                tx.put(
                    Section::Silence,
                    silence_key(actor, source),
                    silence.encode_to_vec(),
                    0,
                );
            }
            if !tx.commit().await? {
                contention.wait().await?;
                continue;
            }
            removed += removed_now;
            if last_chunk {
                return Ok(Applied::Removed { items: removed });
            }
        }
    }

    async fn unsilence(
        &self,
        recipient: u64,
        actor: u64,
        source: SilenceSource,
        version: Version,
        now_ms: i64,
    ) -> Result<Applied, NotifyError> {
        let _turn = self.stripe(recipient).lock().await;
        let mut contention = Contention::default();
        loop {
            let mut tx = self.begin(recipient, now_ms).await?;
            let stored = self.read_silence(recipient, actor, source).await?;
            if stored.is_some_and(|stored| stored.version() >= version) {
                return Ok(Applied::Stale);
            }
            let lifted = SilenceRecord {
                version_at_ms: version.at_ms,
                version_event_id: version.event_id,
                active: false,
                until_ms: None,
            };
            tx.put(
                Section::Silence,
                silence_key(actor, source),
                lifted.encode_to_vec(),
                0,
            );
            if tx.commit().await? {
                return Ok(Applied::Recorded);
            }
            contention.wait().await?;
        }
    }

    async fn tweet_deleted(&self, tweet_id: u64) -> Result<bool, NotifyError> {
        Ok(self
            .session()
            .execute_unpaged(&self.st().select_deleted_tweet, (to_db(tweet_id),))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?
            .is_some())
    }

    async fn delete_tweet(&self, tweet_id: u64, now_ms: i64) -> Result<Applied, NotifyError> {
        // Follows carry tweet 0, which is no tweet.
        if tweet_id == 0 {
            return Ok(Applied::Recorded);
        }
        let known = self.tweet_deleted(tweet_id).await?;
        if !known {
            // Deletion first, recipients second: see the module docs.
            self.session()
                .execute_unpaged(
                    &self.st().insert_deleted_tweet,
                    (to_db(tweet_id), now_ms, retention_ttl(now_ms, now_ms)),
                )
                .await?;
        }
        let recipients: Vec<u64> = self
            .session()
            .execute_iter(
                self.st().select_tweet_recipients.clone(),
                (to_db(tweet_id),),
            )
            .await?
            .rows_stream::<(i64,)>()?
            .map_ok(|(recipient,)| from_db(recipient))
            .try_collect()
            .await?;
        let mut removed = 0;
        for recipient in recipients {
            removed += self.clear_tweet(recipient, tweet_id, now_ms).await?;
        }
        // A redelivery that still found groups (its first delivery died
        // part-way) reports what it removed; one that found nothing is stale.
        Ok(if known && removed == 0 {
            Applied::Stale
        } else {
            Applied::Removed { items: removed }
        })
    }

    /// Drops a recipient's groups about a deleted tweet and remembers the
    /// deletion in their partition; returns the items removed.
    async fn clear_tweet(
        &self,
        recipient: u64,
        tweet_id: u64,
        now_ms: i64,
    ) -> Result<u64, NotifyError> {
        let _turn = self.stripe(recipient).lock().await;
        let mut removed = 0;
        let mut contention = Contention::default();
        loop {
            let mut tx = self.begin(recipient, now_ms).await?;
            let marker = [to_db(tweet_id), 0, 0, 0];
            let marked = self
                .read_row(recipient, Section::Deleted, marker)
                .await?
                .is_some();
            let mut refs = Vec::new();
            for kind in TWEET_KINDS {
                for (created, id) in self
                    .read_under_k2(
                        recipient,
                        Section::Topic,
                        kind as i64,
                        to_db(tweet_id),
                        CHUNK + 1,
                    )
                    .await?
                {
                    refs.push([kind as i64, to_db(tweet_id), created, id]);
                }
            }
            let last_chunk = refs.len() <= CHUNK;
            let mut removed_now = 0;
            for keys in refs.into_iter().take(CHUNK) {
                match tx.group(from_db(keys[3])).await? {
                    Some(group) => {
                        removed_now += group.count;
                        tx.drop_group(group.id);
                    }
                    // A topic key whose group is gone.
                    None => tx.delete(Section::Topic, keys),
                }
            }
            if !marked {
                tx.put(
                    Section::Deleted,
                    marker,
                    Vec::new(),
                    retention_ttl(now_ms, now_ms),
                );
            }
            if !tx.commit().await? {
                contention.wait().await?;
                continue;
            }
            removed += removed_now;
            if last_chunk {
                return Ok(removed);
            }
        }
    }

    /// The newest position of the recipient's main list (0: none): filtered
    /// groups never count as unread, so they do not move the marker.
    async fn newest_position(&self, recipient: u64) -> Result<u64, NotifyError> {
        let tops: Vec<Vec<(u64, u64)>> = futures::stream::iter(Kind::ALL)
            .map(|kind| self.read_list_below(recipient, false, kind, i64::MAX, 1))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(tops
            .iter()
            .flatten()
            .map(|&(position, _)| position)
            .max()
            .unwrap_or(0))
    }
}

/// Bounded retries of a change that lost its conditional batch, with a
/// jittered, growing pause.
#[derive(Default)]
struct Contention {
    attempts: u32,
}

impl Contention {
    async fn wait(&mut self) -> Result<(), NotifyError> {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return Err(NotifyError::storage(format!(
                "recipient partition contended: {} conditional batches lost in a row",
                self.attempts
            )));
        }
        let ceiling_ms = 1u64 << self.attempts.min(6);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let pause_ms = 1 + mix(u64::from(seed) ^ u64::from(self.attempts)) % ceiling_ms;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        Ok(())
    }
}

/// A row change of a batch.
enum RowChange {
    Put { value: Vec<u8>, ttl: i32 },
    Delete,
}

/// One attempt at a change of one recipient: what was read (at the
/// revision read first), and every row the change writes, committed at
/// once by [`Tx::commit`] if the revision did not move.
struct Tx<'s> {
    store: &'s ScyllaNotificationStore,
    recipient: u64,
    now_ms: i64,
    revision: Option<i64>,
    meta_before: MetaRecord,
    meta: MetaRecord,
    /// Groups as read (`None`: not there).
    read_groups: HashMap<u64, Option<GroupRecord>>,
    /// Groups as the commit leaves them.
    groups: HashMap<u64, Option<GroupRecord>>,
    /// Row changes, by `(section, keys)`; the last change of a key wins.
    rows: BTreeMap<(i32, [i64; 4]), RowChange>,
    /// `(section, k1)` prefixes cleared with a range tombstone.
    cleared: Vec<(i32, i64)>,
    /// Actor rows this attempt deletes, `(group id, position)`.
    removed_actor_rows: HashSet<(u64, u64)>,
}

impl Tx<'_> {
    fn put(&mut self, section: Section, keys: [i64; 4], value: Vec<u8>, ttl: i32) {
        self.rows
            .insert((section.db(), keys), RowChange::Put { value, ttl });
    }

    fn delete(&mut self, section: Section, keys: [i64; 4]) {
        self.rows.insert((section.db(), keys), RowChange::Delete);
    }

    fn put_item(&mut self, item: &Item, record: &ItemRecord) {
        let ttl = record.ttl(self.now_ms);
        self.put(Section::Item, item_keys(item), record.encode_to_vec(), ttl);
    }

    fn next_position(&mut self) -> u64 {
        self.meta.last_position += 1;
        self.meta.last_position
    }

    /// A group as this attempt sees it (read once, then as changed).
    async fn group(&mut self, id: u64) -> Result<Option<GroupRecord>, NotifyError> {
        if let Some(group) = self.groups.get(&id) {
            return Ok(group.clone());
        }
        let group: Option<GroupRecord> = self
            .store
            .read_record(self.recipient, Section::Group, [to_db(id), 0, 0, 0])
            .await?;
        self.read_groups.insert(id, group.clone());
        self.groups.insert(id, group.clone());
        Ok(group)
    }

    fn set_group(&mut self, group: GroupRecord) {
        self.groups.insert(group.id, Some(group));
    }

    /// Drops a group this attempt has read.
    fn drop_group(&mut self, id: u64) {
        if self.groups.insert(id, None).flatten().is_some() {
            self.meta.group_count = self.meta.group_count.saturating_sub(1);
        }
    }

    async fn add(
        &mut self,
        item: Item,
        version: Version,
        filtered: bool,
    ) -> Result<Applied, NotifyError> {
        let store = self.store;
        let recipient = self.recipient;
        let deleted = async {
            if item.tweet_id == 0 {
                return Ok(false);
            }
            let marker = [to_db(item.tweet_id), 0, 0, 0];
            Ok(store
                .read_row(recipient, Section::Deleted, marker)
                .await?
                .is_some())
        };
        let open = async {
            if !item.kind.groups() {
                return Ok(None);
            }
            let newest = store
                .read_under_k2(
                    recipient,
                    Section::Topic,
                    item.kind as i64,
                    to_db(item.tweet_id),
                    1,
                )
                .await?;
            Ok::<_, NotifyError>(newest.first().map(|&(_, id)| from_db(id)))
        };
        let (stored, silence, deleted, open) = tokio::try_join!(
            store.read_item(&item),
            store.silenced(recipient, item.actor, self.now_ms),
            deleted,
            open,
        )?;
        if stored
            .as_ref()
            .is_some_and(|stored| stored.version() >= version)
            || silence
            || deleted
        {
            return Ok(Applied::Stale);
        }
        if let Some(mut stored) = stored
            && stored.present
            && self.group(stored.group_id).await?.is_some()
        {
            // Already there (a newer action over one never undone): only
            // the version moves.
            stored.set_version(version);
            self.put_item(&item, &stored);
            return Ok(Applied::Recorded);
        }
        let at_ms = version.at_ms;
        let joined = match open {
            Some(id) => self
                .group(id)
                .await?
                .filter(|group| joins_group(group.latest_at_ms, at_ms)),
            None => None,
        };
        let (group, created) = match joined {
            Some(mut group) => {
                group.position = self.next_position();
                group.count += 1;
                group.actors.insert(0, item.actor);
                group.actors.truncate(MAX_SAMPLE_ACTORS);
                group.latest_at_ms = group.latest_at_ms.max(at_ms);
                (group, false)
            }
            None => {
                self.make_room().await?;
                let (position, id) = loop {
                    let position = self.next_position();
                    let id = group_id(self.recipient, position);
                    if id != 0 {
                        break (position, id);
                    }
                };
                self.read_groups.insert(id, None);
                self.meta.group_count += 1;
                let group = GroupRecord {
                    id,
                    kind: item.kind as i32,
                    tweet_id: item.tweet_id,
                    count: 1,
                    actors: vec![item.actor],
                    latest_at_ms: at_ms,
                    position,
                    filtered,
                    created_position: position,
                };
                (group, true)
            }
        };
        let actor_keys = [to_db(group.id), to_db(group.position), to_db(item.actor), 0];
        let actor = ActorRecord { at_ms }.encode_to_vec();
        let record = ItemRecord {
            version_at_ms: version.at_ms,
            version_event_id: version.event_id,
            present: true,
            group_id: group.id,
            position: group.position,
            at_ms,
        };
        self.put(
            Section::Actors,
            actor_keys,
            actor,
            retention_ttl(at_ms, self.now_ms),
        );
        self.put_item(&item, &record);
        let applied = Applied::Added {
            recipient: self.recipient,
            group_id: group.id,
            created,
            filtered: group.filtered,
        };
        self.set_group(group);
        Ok(applied)
    }

    async fn remove(&mut self, item: Item, version: Version) -> Result<Applied, NotifyError> {
        let stored = self.store.read_item(&item).await?;
        if stored
            .as_ref()
            .is_some_and(|stored| stored.version() >= version)
        {
            return Ok(Applied::Stale);
        }
        let removed = match &stored {
            Some(stored) if stored.present => self.remove_from_group(stored, item.actor).await?,
            _ => false,
        };
        let tombstone = ItemRecord {
            version_at_ms: version.at_ms,
            version_event_id: version.event_id,
            ..ItemRecord::default()
        };
        self.put_item(&item, &tombstone);
        Ok(if removed {
            Applied::Removed { items: 1 }
        } else {
            Applied::Recorded
        })
    }

    /// Takes a present item out of its group (the group goes when it was
    /// the last); false when the group is gone already.
    async fn remove_from_group(
        &mut self,
        item: &ItemRecord,
        actor: u64,
    ) -> Result<bool, NotifyError> {
        let Some(mut group) = self.group(item.group_id).await? else {
            return Ok(false);
        };
        self.delete(
            Section::Actors,
            [to_db(group.id), to_db(item.position), to_db(actor), 0],
        );
        self.removed_actor_rows.insert((group.id, item.position));
        group.count = group.count.saturating_sub(1);
        if group.count == 0 {
            self.drop_group(group.id);
            return Ok(true);
        }
        let newest = item.position >= group.position;
        let latest = item.at_ms >= group.latest_at_ms;
        if newest || latest || group.actors.contains(&actor) {
            let rows: Vec<(u64, u64, i64)> = self
                .store
                .read_actors(self.recipient, group.id, MAX_SAMPLE_ACTORS + 1)
                .await?
                .into_iter()
                .filter(|(position, _, _)| {
                    !self.removed_actor_rows.contains(&(group.id, *position))
                })
                .collect();
            group.actors = rows
                .iter()
                .take(MAX_SAMPLE_ACTORS)
                .map(|&(_, actor, _)| actor)
                .collect();
            if newest && let Some(&(position, _, _)) = rows.first() {
                group.position = position;
            }
            if latest && let Some(at_ms) = rows.iter().map(|&(_, _, at_ms)| at_ms).max() {
                group.latest_at_ms = at_ms;
            }
        }
        self.set_group(group);
        Ok(true)
    }

    /// Before a new group: at the cap, drop the oldest (recounting the
    /// groups first when the count may have drifted).
    async fn make_room(&mut self) -> Result<(), NotifyError> {
        let cap = RETAINED_GROUPS as u64;
        if self.meta.group_count < cap {
            return Ok(());
        }
        if self.meta.last_position >= self.meta.counted_at + RECOUNT_EVERY {
            let (count,) = self
                .store
                .session()
                .execute_unpaged(
                    &self.store.st().count_section,
                    (to_db(self.recipient), Section::Group.db()),
                )
                .await?
                .into_rows_result()?
                .single_row::<(i64,)>()?;
            self.meta.group_count = u64::try_from(count).unwrap_or(0);
            self.meta.counted_at = self.meta.last_position;
        }
        if self.meta.group_count < cap {
            return Ok(());
        }
        let store = self.store;
        let recipient = self.recipient;
        let oldest: Vec<Vec<(u64, u64)>> = futures::stream::iter(lists())
            .map(|(filtered, kind)| {
                store.read_list_oldest(recipient, filtered, kind, EVICTION_SCAN)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut oldest: Vec<(u64, u64)> = oldest.into_iter().flatten().collect();
        oldest.sort_unstable();
        let floor_ms = retention_floor_ms(self.now_ms);
        for (position, id) in oldest.into_iter().take(EVICTION_SCAN) {
            let Some(group) = self.group(id).await? else {
                continue;
            };
            if group.position != position {
                continue;
            }
            if self.meta.group_count >= cap || group.latest_at_ms < floor_ms {
                self.drop_group(id);
            }
        }
        Ok(())
    }

    /// Commits every change with the new revision, if the revision is still
    /// the one read. True when applied (or when there was nothing to write).
    async fn commit(mut self) -> Result<bool, NotifyError> {
        self.stage_groups();
        if self.rows.is_empty() && self.cleared.is_empty() && self.meta == self.meta_before {
            return Ok(true);
        }
        let store = self.store;
        let st = store.st();
        let recipient = to_db(self.recipient);
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        batch.set_is_idempotent(false);
        let mut values: Vec<Box<dyn SerializeRow + Send + Sync>> = Vec::new();
        batch.append_statement(st.commit_revision.clone());
        values.push(Box::new((
            self.revision.unwrap_or(0) + 1,
            self.meta.encode_to_vec(),
            recipient,
            self.revision,
        )));
        for (section, k1) in self.cleared {
            batch.append_statement(st.delete_under_k1.clone());
            values.push(Box::new((recipient, section, k1)));
        }
        for ((section, [k1, k2, k3, k4]), change) in self.rows {
            match change {
                RowChange::Put { value, ttl } => {
                    batch.append_statement(st.upsert_row.clone());
                    values.push(Box::new((recipient, section, k1, k2, k3, k4, value, ttl)));
                }
                RowChange::Delete => {
                    batch.append_statement(st.delete_row.clone());
                    values.push(Box::new((recipient, section, k1, k2, k3, k4)));
                }
            }
        }
        let result = store.session().batch(&batch, values).await?;
        applied(result)
    }

    /// Turns the groups' changes into rows: a group's row, its list key and
    /// its topic key move together; a dropped group's actors go with one
    /// range tombstone.
    fn stage_groups(&mut self) {
        let groups = std::mem::take(&mut self.groups);
        for (id, after) in groups {
            let before = self.read_groups.get(&id).cloned().flatten();
            if before == after {
                continue;
            }
            if let Some(before) = &before {
                let moved = after
                    .as_ref()
                    .is_none_or(|after| after.list_keys() != before.list_keys());
                if moved {
                    self.delete(Section::List, before.list_keys());
                }
            }
            match after {
                None => {
                    if let Some(before) = before {
                        self.delete(Section::Group, [to_db(id), 0, 0, 0]);
                        self.delete(Section::Topic, before.topic_keys());
                        let actors = Section::Actors.db();
                        self.rows.retain(|(section, keys), _| {
                            *section != actors || keys[0] != to_db(id)
                        });
                        self.cleared.push((actors, to_db(id)));
                    }
                }
                Some(after) => {
                    let ttl = retention_ttl(after.latest_at_ms, self.now_ms);
                    self.put(Section::List, after.list_keys(), Vec::new(), ttl);
                    self.put(Section::Topic, after.topic_keys(), Vec::new(), ttl);
                    self.put(
                        Section::Group,
                        [to_db(id), 0, 0, 0],
                        after.encode_to_vec(),
                        ttl,
                    );
                }
            }
        }
    }
}

/// Whether a conditional batch applied (`[applied]`, read by name: the
/// other columns ScyllaDB returns differ with the outcome).
fn applied(result: QueryResult) -> Result<bool, NotifyError> {
    let rows = result.into_rows_result()?;
    let index = rows
        .column_specs()
        .iter()
        .position(|spec| spec.name() == "[applied]")
        .ok_or_else(|| NotifyError::storage("conditional batch without [applied]"))?;
    let row = rows
        .maybe_first_row::<Row>()?
        .ok_or_else(|| NotifyError::storage("conditional batch without a result row"))?;
    row.columns
        .get(index)
        .and_then(Option::as_ref)
        .and_then(CqlValue::as_boolean)
        .ok_or_else(|| NotifyError::storage("conditional batch without [applied]"))
}

fn removed_or(items: u64, otherwise: Applied) -> Applied {
    if items > 0 {
        Applied::Removed { items }
    } else {
        otherwise
    }
}

/// Now, in Unix milliseconds, for reads whose call carries no clock.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Both lists times every kind: the `(k1, k2)` prefixes of list keys.
fn lists() -> impl Iterator<Item = (bool, Kind)> {
    [false, true]
        .into_iter()
        .flat_map(|filtered| Kind::ALL.into_iter().map(move |kind| (filtered, kind)))
}

fn item_keys(item: &Item) -> [i64; 4] {
    [to_db(item.actor), item.kind as i64, to_db(item.tweet_id), 0]
}

/// The TTL of data that matters until `at_ms` plus the retention.
fn retention_ttl(at_ms: i64, now_ms: i64) -> i32 {
    let remaining_secs = at_ms
        .saturating_add(RETENTION_MS)
        .saturating_sub(now_ms)
        .div_euclid(1_000);
    let ttl = remaining_secs
        .saturating_add(TTL_MARGIN_SECS)
        .clamp(1, MAX_TTL_SECS);
    i32::try_from(ttl).unwrap_or(i32::MAX)
}

/// A group's id: a bijection of `[0, 2^63)` applied to the position offset
/// by a per-recipient salt, so ids never repeat within a recipient, look
/// unrelated across recipients, and fit a positive `bigint`.
fn group_id(recipient: u64, position: u64) -> u64 {
    const MASK: u64 = (1 << 63) - 1;
    let mut x = position.wrapping_add(mix(recipient)) & MASK;
    // Each step is invertible modulo 2^63: a right xorshift, or a
    // multiplication by an odd constant.
    x ^= x >> 31;
    x = x.wrapping_mul(0x7fb5_d329_728e_a185) & MASK;
    x ^= x >> 27;
    x = x.wrapping_mul(0x81da_def4_bc2d_d44d) & MASK;
    x ^ (x >> 33)
}

/// The splitmix64 finaliser.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ids and positions are stored bit for bit as `bigint` (positions and
/// group ids stay below 2^63, so their order is kept).
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

async fn build_session(config: &ScyllaConfig) -> Result<Session, NotifyError> {
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

async fn create_schema(session: &Session, config: &ScyllaConfig) -> Result<(), NotifyError> {
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
    session
        .await_schema_agreement()
        .await
        .map_err(NotifyError::storage)?;
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

#[async_trait]
impl NotificationStore for ScyllaNotificationStore {
    async fn apply(&self, change: Change, now_ms: i64) -> Result<Applied, NotifyError> {
        match change {
            Change::Add {
                item,
                version,
                filtered,
            } => self.add(item, version, filtered, now_ms).await,
            Change::Remove { item, version } => self.remove(item, version, now_ms).await,
            Change::TweetDeleted { tweet_id } => self.delete_tweet(tweet_id, now_ms).await,
            Change::Silence {
                recipient,
                actor,
                source,
                version,
                until_ms,
            } => {
                self.silence(recipient, actor, source, version, until_ms, now_ms)
                    .await
            }
            Change::Unsilence {
                recipient,
                actor,
                source,
                version,
            } => {
                self.unsilence(recipient, actor, source, version, now_ms)
                    .await
            }
        }
    }

    async fn list(&self, query: ListQuery) -> Result<GroupPage, NotifyError> {
        if query.limit == 0 {
            return Ok(GroupPage {
                groups: Vec::new(),
                next_before: None,
            });
        }
        let mut kinds = if query.kinds.is_empty() {
            Kind::ALL.to_vec()
        } else {
            query.kinds.clone()
        };
        kinds.sort_unstable();
        kinds.dedup();
        let recipient = query.recipient;
        let (_, meta) = self.read_meta(&self.st().select_meta, recipient).await?;
        let floor_ms = retention_floor_ms(query.now_ms);
        // Each kind holds its `limit + 1` newest, so the merged newest
        // `limit + 1` are among them (the extra one tells of a next page).
        let want = query.limit.saturating_add(1);
        let per_kind: Vec<Vec<GroupRecord>> = futures::stream::iter(kinds)
            .map(|kind| {
                self.live_groups(
                    recipient,
                    query.filtered,
                    kind,
                    query.before,
                    want,
                    floor_ms,
                )
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut groups: Vec<GroupRecord> = per_kind.into_iter().flatten().collect();
        groups.sort_unstable_by_key(|group| std::cmp::Reverse(group.position));
        let more = groups.len() > query.limit;
        groups.truncate(query.limit);
        let next_before = if more {
            groups.last().map(|group| group.position)
        } else {
            None
        };
        Ok(GroupPage {
            groups: groups
                .into_iter()
                .map(|group| group.into_group(recipient, meta.read_up_to))
                .collect::<Result<_, _>>()?,
            next_before,
        })
    }

    async fn get(&self, recipient: u64, group_ids: &[u64]) -> Result<Vec<Group>, NotifyError> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ((_, meta), groups) = tokio::try_join!(
            self.read_meta(&self.st().select_meta, recipient),
            self.read_groups(recipient, group_ids),
        )?;
        // No clock comes with the call: the retention is judged by the
        // wall clock (as the embedded store does).
        let floor_ms = retention_floor_ms(wall_clock_ms());
        group_ids
            .iter()
            .filter_map(|id| groups.get(id).cloned())
            .filter(|group| group.latest_at_ms >= floor_ms)
            .map(|group| group.into_group(recipient, meta.read_up_to))
            .collect()
    }

    async fn unread(&self, recipient: u64, cap: u64) -> Result<Unread, NotifyError> {
        let (_, meta) = self.read_meta(&self.st().select_meta, recipient).await?;
        let above = below(Some(meta.read_up_to));
        let limit = cql_limit(usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX));
        let counts: Vec<u64> = futures::stream::iter(Kind::ALL)
            .map(|kind| async move {
                let result = self
                    .session()
                    .execute_unpaged(
                        &self.st().select_above,
                        (
                            to_db(recipient),
                            Section::List.db(),
                            0_i64,
                            kind as i64,
                            above,
                            limit,
                        ),
                    )
                    .await?
                    .into_rows_result()?;
                Ok::<_, NotifyError>(result.rows_num() as u64)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let total: u64 = counts.iter().sum();
        Ok(Unread {
            count: total.min(cap),
            capped: total > cap,
            read_up_to: meta.read_up_to,
        })
    }

    async fn mark_read(&self, recipient: u64, up_to: Option<u64>) -> Result<u64, NotifyError> {
        let _turn = self.stripe(recipient).lock().await;
        let mut contention = Contention::default();
        loop {
            let mut tx = self.begin(recipient, 0).await?;
            let target = match up_to {
                Some(id) => {
                    tx.group(id)
                        .await?
                        .ok_or(NotifyError::GroupNotFound(id))?
                        .position
                }
                None => self.newest_position(recipient).await?,
            };
            let marker = tx.meta.read_up_to;
            if target <= marker {
                return Ok(marker);
            }
            tx.meta.read_up_to = target;
            if tx.commit().await? {
                return Ok(target);
            }
            contention.wait().await?;
        }
    }

    async fn settings(&self, recipient: u64) -> Result<Settings, NotifyError> {
        let stored: Option<SettingsRecord> = self
            .read_record(recipient, Section::Settings, [0; 4])
            .await?;
        Ok(stored.map_or_else(Settings::default, |stored| Settings {
            mentions_from_strangers: if stored.filter_strangers {
                StrangerPolicy::Filter
            } else {
                StrangerPolicy::Accept
            },
            new_accounts_days: stored.new_accounts_days,
        }))
    }

    async fn set_settings(&self, recipient: u64, settings: Settings) -> Result<(), NotifyError> {
        let record = SettingsRecord {
            filter_strangers: settings.mentions_from_strangers == StrangerPolicy::Filter,
            new_accounts_days: settings.new_accounts_days,
        };
        self.session()
            .execute_unpaged(
                &self.st().upsert_row,
                (
                    to_db(recipient),
                    Section::Settings.db(),
                    0_i64,
                    0_i64,
                    0_i64,
                    0_i64,
                    record.encode_to_vec(),
                    0_i32,
                ),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_distinct_positive_and_recipient_specific() {
        let ids: HashSet<u64> = (1..=50_000).map(|position| group_id(7, position)).collect();
        assert_eq!(ids.len(), 50_000);
        assert!(ids.iter().all(|&id| id < 1 << 63));
        assert_ne!(group_id(7, 1), group_id(8, 1));
    }

    #[test]
    fn ttls_cover_the_retention_and_stay_in_range() {
        let now = 1_700_000_000_000;
        let full = retention_ttl(now, now);
        assert_eq!(i64::from(full), RETENTION_MS / 1_000 + TTL_MARGIN_SECS);
        assert_eq!(retention_ttl(now - 2 * RETENTION_MS, now), 1);
        assert_eq!(i64::from(retention_ttl(i64::MAX, now)), MAX_TTL_SECS);
    }

    #[test]
    fn records_round_trip() {
        let group = GroupRecord {
            id: group_id(1, 2),
            kind: Kind::Like as i32,
            tweet_id: 99,
            count: 100_000,
            actors: vec![5, 4, 3],
            latest_at_ms: 1_700_000_000_000,
            position: 2,
            filtered: false,
            created_position: 1,
        };
        let decoded: GroupRecord = decode(&group.encode_to_vec()).unwrap();
        assert_eq!(decoded, group);
        let group = decoded.into_group(1, 1).unwrap();
        assert!(group.unread);
        assert_eq!(group.kind, Kind::Like);
        // A recipient never written has empty meta.
        assert_eq!(decode::<MetaRecord>(&[]).unwrap(), MetaRecord::default());
    }

    #[test]
    fn silences_lapse() {
        let silence = SilenceRecord {
            active: true,
            until_ms: Some(1_000),
            ..SilenceRecord::default()
        };
        assert!(silence.silences_at(999));
        assert!(!silence.silences_at(1_000));
        let forever = SilenceRecord {
            active: true,
            ..SilenceRecord::default()
        };
        assert!(forever.silences_at(i64::MAX));
    }

    #[test]
    fn every_list_prefix_once() {
        assert_eq!(lists().count(), 2 * Kind::ALL.len());
    }
}
