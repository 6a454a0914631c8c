//! [`NotificationStore`] on the embedded redb database, which it shares with
//! the other stores of the process (every table name starts with `notify_`).
//!
//! Every change is one write transaction (a whole [`NotificationStore::apply_all`]
//! call is one too): the item, its group, the group's place in the feed and
//! the item's version commit together or not at all, so a redelivered event
//! finds either all of its effect or none of it.
//!
//! Reads never grow with a group's size: a group row carries its count, and
//! its newest actors are a reverse range over its items limited to
//! [`MAX_SAMPLE_ACTORS`]. A feed row carries the group's kind and newest
//! time, so filtering by kind and skipping groups past the retention costs
//! no extra lookups while a page or the unread count is scanned.
//!
//! What is never read again is dropped as writes come: a recipient's groups
//! beyond [`RETAINED_GROUPS`] when a new group pushes them over; a few of
//! their groups older than the retention on each of their adds; a few
//! undo tombstones and deleted-tweet tombstones older than the retention on
//! every write (an item that old is refused anyway, so the tombstone has
//! nothing left to guard).

use std::ops::Bound;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{
    Database, ReadOnlyTable, ReadableDatabase as _, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use warble_proto::limits::notify::{MAX_SAMPLE_ACTORS, RETAINED_GROUPS};

use super::{
    Applied, Change, Group, GroupPage, Item, Kind, ListQuery, NotificationStore, Settings,
    SilenceSource, StrangerPolicy, Unread, Version, joins_group, retention_floor_ms,
};
use crate::error::NotifyError;

/// Counter name -> next value to issue: [`NEXT_POSITION`], [`NEXT_GROUP_ID`].
const META: TableDefinition<&str, u64> = TableDefinition::new("notify_meta");
/// Positions of items (and so of groups) across every recipient: issued in
/// the write transaction, so they strictly increase. 0 is never issued: a
/// read marker at 0 has read nothing.
const NEXT_POSITION: &str = "next_position";
/// Group ids, likewise issued from 1.
const NEXT_GROUP_ID: &str = "next_group_id";

/// (recipient, group id) -> [`GroupRow`].
const GROUPS: TableDefinition<(u64, u64), GroupRow> = TableDefinition::new("notify_groups");
/// kind, tweet id, count, latest at ms, position, filtered.
type GroupRow = (u8, u64, u64, i64, u64, bool);

/// (recipient, position) -> [`FeedRow`]: the main list, newest last.
const FEED: TableDefinition<(u64, u64), FeedRow> = TableDefinition::new("notify_feed");
/// (recipient, position) -> [`FeedRow`]: the filtered list.
const FILTERED_FEED: TableDefinition<(u64, u64), FeedRow> =
    TableDefinition::new("notify_filtered_feed");
/// group id, kind, latest at ms (copies of the group row's, kept in step:
/// the row moves whenever they change).
type FeedRow = (u64, u8, i64);

/// (recipient, group id, item position) -> (actor, at ms): a group's items,
/// newest last.
const ITEMS: TableDefinition<(u64, u64, u64), (u64, i64)> = TableDefinition::new("notify_items");

/// (recipient, kind, tweet id, actor) -> [`VersionRow`]: the newest version
/// applied to each item, present or a tombstone.
const VERSIONS: TableDefinition<(u64, u8, u64, u64), VersionRow> =
    TableDefinition::new("notify_versions");
/// version at ms, version event id, present, group id, item position (the
/// last two meaningful only when present).
type VersionRow = (i64, u64, bool, u64, u64);

/// (recipient, actor, kind, tweet id) -> (): the present items of an actor,
/// which a silence removes.
const BY_ACTOR: TableDefinition<(u64, u64, u8, u64), ()> = TableDefinition::new("notify_by_actor");
/// (version at ms, recipient, kind, tweet id, actor) -> (): every tombstone
/// in [`VERSIONS`], oldest first, so those past the retention are purged.
const TOMBSTONES: TableDefinition<(i64, u64, u8, u64, u64), ()> =
    TableDefinition::new("notify_tombstones");
/// (recipient, kind, tweet id) -> group id: the newest group of a grouping
/// kind, the only one that may absorb new items.
const OPEN: TableDefinition<(u64, u8, u64), u64> = TableDefinition::new("notify_open");
/// (tweet id, recipient, group id) -> (): every group about a tweet (follows,
/// tweet 0, are about none).
const BY_TWEET: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("notify_by_tweet");
/// tweet id -> when its deletion was applied (ms).
const DELETED_TWEETS: TableDefinition<u64, i64> = TableDefinition::new("notify_deleted_tweets");
/// (deletion applied at ms, tweet id) -> (): deleted tweets oldest first, so
/// their tombstones are purged past the retention.
const DELETIONS: TableDefinition<(i64, u64), ()> = TableDefinition::new("notify_deletions");
/// (recipient, actor, source) -> (version at ms, version event id, until
/// ms, active): each pair's silence per [`SilenceSource`].
const SILENCES: TableDefinition<(u64, u64, u8), SilenceRow> =
    TableDefinition::new("notify_silences_by_source");
type SilenceRow = (i64, u64, Option<i64>, bool);
/// recipient -> read marker (a position).
const MARKERS: TableDefinition<u64, u64> = TableDefinition::new("notify_markers");
/// recipient -> (stranger policy: 0 accept, 1 filter; new accounts days).
const SETTINGS: TableDefinition<u64, (u8, u32)> = TableDefinition::new("notify_settings");
/// recipient -> groups held, both lists together.
const COUNTS: TableDefinition<u64, u64> = TableDefinition::new("notify_counts");

/// Too-old groups of a recipient dropped on each of their adds, and expired
/// tombstones purged per write transaction: a bounded cost per write that
/// keeps pace with what arrives.
const EXPIRED_DROPPED_PER_WRITE: usize = 64;

/// Most feed rows one page scans looking for groups of the kinds asked for:
/// a recipient holds about [`RETAINED_GROUPS`], so this covers all of them
/// while bounding the work of one call.
const MAX_SCANNED_ROWS: usize = RETAINED_GROUPS;

/// The embedded notification store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedNotificationStore {
    database: Arc<Database>,
}

impl EmbeddedNotificationStore {
    /// Opens the store in `database` (shared with the other stores of the
    /// process), creating its tables.
    pub fn open(database: Arc<Database>) -> Result<Self, NotifyError> {
        create_tables(&database).map_err(NotifyError::storage)?;
        Ok(Self { database })
    }

    /// Runs redb work, which blocks on disk I/O, off the async workers.
    async fn blocking<T, F>(&self, work: F) -> Result<T, NotifyError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    {
        let database = Arc::clone(&self.database);
        tokio::task::spawn_blocking(move || work(&database))
            .await
            .map_err(NotifyError::storage)?
            .map_err(NotifyError::storage)
    }

    /// Applies `changes` in order in one write transaction.
    async fn write_changes(
        &self,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> Result<Vec<Applied>, NotifyError> {
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            let applied = {
                let mut writer = Writer::open(&txn, now_ms)?;
                let applied = changes
                    .into_iter()
                    .map(|change| writer.apply(change))
                    .collect::<Result<Vec<_>, _>>()?;
                writer.finish()?;
                applied
            };
            txn.commit()?;
            Ok(applied)
        })
        .await
    }
}

fn create_tables(database: &Database) -> Result<(), redb::Error> {
    let txn = database.begin_write()?;
    txn.open_table(META)?;
    txn.open_table(GROUPS)?;
    txn.open_table(FEED)?;
    txn.open_table(FILTERED_FEED)?;
    txn.open_table(ITEMS)?;
    txn.open_table(VERSIONS)?;
    txn.open_table(BY_ACTOR)?;
    txn.open_table(TOMBSTONES)?;
    txn.open_table(OPEN)?;
    txn.open_table(BY_TWEET)?;
    txn.open_table(DELETED_TWEETS)?;
    txn.open_table(DELETIONS)?;
    txn.open_table(SILENCES)?;
    txn.open_table(MARKERS)?;
    txn.open_table(SETTINGS)?;
    txn.open_table(COUNTS)?;
    txn.commit()?;
    Ok(())
}

#[async_trait]
impl NotificationStore for EmbeddedNotificationStore {
    async fn apply(&self, change: Change, now_ms: i64) -> Result<Applied, NotifyError> {
        let mut applied = self.write_changes(vec![change], now_ms).await?;
        applied
            .pop()
            .ok_or_else(|| NotifyError::storage("a change applied without an outcome"))
    }

    async fn apply_all(
        &self,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> Result<Vec<Applied>, NotifyError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.write_changes(changes, now_ms).await
    }

    async fn list(&self, query: ListQuery) -> Result<GroupPage, NotifyError> {
        self.blocking(move |database| Reader::open(database, query.now_ms)?.list(&query))
            .await
    }

    async fn get(&self, recipient: u64, group_ids: &[u64]) -> Result<Vec<Group>, NotifyError> {
        let group_ids = group_ids.to_vec();
        self.blocking(move |database| {
            let reader = Reader::open(database, wall_clock_ms())?;
            let marker = reader.marker(recipient)?;
            let mut groups = Vec::with_capacity(group_ids.len());
            for group_id in group_ids {
                if let Some(group) = reader.group(recipient, group_id, marker)? {
                    groups.push(group);
                }
            }
            Ok(groups)
        })
        .await
    }

    async fn unread(&self, recipient: u64, cap: u64) -> Result<Unread, NotifyError> {
        self.blocking(move |database| {
            Reader::open(database, wall_clock_ms())?.unread(recipient, cap)
        })
        .await
    }

    async fn mark_read(&self, recipient: u64, up_to: Option<u64>) -> Result<u64, NotifyError> {
        let moved = self
            .blocking(move |database| {
                let txn = database.begin_write()?;
                let marker = mark_read_in(&txn, recipient, up_to)?;
                if marker.is_some() {
                    txn.commit()?;
                } else {
                    txn.abort()?;
                }
                Ok(marker)
            })
            .await?;
        moved.ok_or_else(|| NotifyError::GroupNotFound(up_to.unwrap_or_default()))
    }

    async fn settings(&self, recipient: u64) -> Result<Settings, NotifyError> {
        self.blocking(move |database| {
            let txn = database.begin_read()?;
            let row = txn
                .open_table(SETTINGS)?
                .get(recipient)?
                .map(|row| row.value());
            Ok(row.map(settings_from_row).unwrap_or_default())
        })
        .await
    }

    async fn set_settings(&self, recipient: u64, settings: Settings) -> Result<(), NotifyError> {
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            txn.open_table(SETTINGS)?
                .insert(recipient, settings_row(settings))?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

/// Moves the marker (see [`NotificationStore::mark_read`]); `None` when
/// `up_to` is not one of the recipient's groups.
fn mark_read_in(
    txn: &WriteTransaction,
    recipient: u64,
    up_to: Option<u64>,
) -> Result<Option<u64>, redb::Error> {
    let target = match up_to {
        Some(group_id) => match txn.open_table(GROUPS)?.get((recipient, group_id))? {
            Some(row) => GroupRecord::from_row(row.value())?.position,
            None => return Ok(None),
        },
        None => txn
            .open_table(FEED)?
            .range(recipient_rows(recipient))?
            .next_back()
            .transpose()?
            .map_or(0, |(key, _)| key.value().1),
    };
    let mut markers = txn.open_table(MARKERS)?;
    let current = markers.get(recipient)?.map_or(0, |row| row.value());
    if target > current {
        markers.insert(recipient, target)?;
    }
    Ok(Some(current.max(target)))
}

/// Now, for the reads whose trait method carries no clock (get, unread): it
/// only decides which groups are past the retention.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Every key of `recipient` in a table keyed by (recipient, u64).
fn recipient_rows(recipient: u64) -> std::ops::RangeInclusive<(u64, u64)> {
    (recipient, 0)..=(recipient, u64::MAX)
}

/// Every item of one group.
fn group_items(recipient: u64, group_id: u64) -> std::ops::RangeInclusive<(u64, u64, u64)> {
    (recipient, group_id, 0)..=(recipient, group_id, u64::MAX)
}

fn corrupted(what: String) -> redb::Error {
    redb::Error::Corrupted(what)
}

fn kind_from_row(value: u8) -> Result<Kind, redb::Error> {
    Kind::from_number(i32::from(value))
        .ok_or_else(|| corrupted(format!("notification kind {value} is unknown")))
}

fn settings_row(settings: Settings) -> (u8, u32) {
    let policy = match settings.mentions_from_strangers {
        StrangerPolicy::Accept => 0,
        StrangerPolicy::Filter => 1,
    };
    (policy, settings.new_accounts_days)
}

fn settings_from_row((policy, new_accounts_days): (u8, u32)) -> Settings {
    Settings {
        mentions_from_strangers: if policy == 1 {
            StrangerPolicy::Filter
        } else {
            StrangerPolicy::Accept
        },
        new_accounts_days,
    }
}

/// A group row, decoded.
#[derive(Debug, Clone, Copy)]
struct GroupRecord {
    kind: Kind,
    tweet_id: u64,
    count: u64,
    latest_at_ms: i64,
    position: u64,
    filtered: bool,
}

impl GroupRecord {
    fn from_row(
        (kind, tweet_id, count, latest_at_ms, position, filtered): GroupRow,
    ) -> Result<Self, redb::Error> {
        Ok(Self {
            kind: kind_from_row(kind)?,
            tweet_id,
            count,
            latest_at_ms,
            position,
            filtered,
        })
    }

    fn row(&self) -> GroupRow {
        (
            self.kind as u8,
            self.tweet_id,
            self.count,
            self.latest_at_ms,
            self.position,
            self.filtered,
        )
    }

    fn feed_row(&self, group_id: u64) -> FeedRow {
        (group_id, self.kind as u8, self.latest_at_ms)
    }
}

/// A version row, decoded.
#[derive(Debug, Clone, Copy)]
struct VersionRecord {
    version: Version,
    present: bool,
    group_id: u64,
    item_position: u64,
}

impl VersionRecord {
    fn from_row((at_ms, event_id, present, group_id, item_position): VersionRow) -> Self {
        Self {
            version: Version { at_ms, event_id },
            present,
            group_id,
            item_position,
        }
    }

    fn tombstone(version: Version) -> Self {
        Self {
            version,
            present: false,
            group_id: 0,
            item_position: 0,
        }
    }

    fn row(&self) -> VersionRow {
        (
            self.version.at_ms,
            self.version.event_id,
            self.present,
            self.group_id,
            self.item_position,
        )
    }
}

fn version_key(item: &Item) -> (u64, u8, u64, u64) {
    (item.recipient, item.kind as u8, item.tweet_id, item.actor)
}

/// What becomes of the versions of a dropped group's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forget {
    /// Forgotten: the tweet is deleted (its tombstone refuses every item) or
    /// the group is past the retention (its items are refused as too old).
    Versions,
    /// Kept as tombstones, so a late redelivery of a dropped item does not
    /// bring it back; they go once past the retention.
    KeepTombstones,
}

/// One write transaction's tables and counters.
struct Writer<'txn> {
    meta: Table<'txn, &'static str, u64>,
    groups: Table<'txn, (u64, u64), GroupRow>,
    feed: Table<'txn, (u64, u64), FeedRow>,
    filtered_feed: Table<'txn, (u64, u64), FeedRow>,
    items: Table<'txn, (u64, u64, u64), (u64, i64)>,
    versions: Table<'txn, (u64, u8, u64, u64), VersionRow>,
    by_actor: Table<'txn, (u64, u64, u8, u64), ()>,
    tombstones: Table<'txn, (i64, u64, u8, u64, u64), ()>,
    open: Table<'txn, (u64, u8, u64), u64>,
    by_tweet: Table<'txn, (u64, u64, u64), ()>,
    deleted_tweets: Table<'txn, u64, i64>,
    deletions: Table<'txn, (i64, u64), ()>,
    silences: Table<'txn, (u64, u64, u8), SilenceRow>,
    counts: Table<'txn, u64, u64>,
    next_position: u64,
    next_group_id: u64,
    /// Judges silences' expiry.
    now_ms: i64,
    /// Groups and items older than this are past the retention.
    floor_ms: i64,
}

impl<'txn> Writer<'txn> {
    fn open(txn: &'txn WriteTransaction, now_ms: i64) -> Result<Self, redb::Error> {
        let meta = txn.open_table(META)?;
        let next_position = meta.get(NEXT_POSITION)?.map_or(1, |row| row.value());
        let next_group_id = meta.get(NEXT_GROUP_ID)?.map_or(1, |row| row.value());
        Ok(Self {
            meta,
            groups: txn.open_table(GROUPS)?,
            feed: txn.open_table(FEED)?,
            filtered_feed: txn.open_table(FILTERED_FEED)?,
            items: txn.open_table(ITEMS)?,
            versions: txn.open_table(VERSIONS)?,
            by_actor: txn.open_table(BY_ACTOR)?,
            tombstones: txn.open_table(TOMBSTONES)?,
            open: txn.open_table(OPEN)?,
            by_tweet: txn.open_table(BY_TWEET)?,
            deleted_tweets: txn.open_table(DELETED_TWEETS)?,
            deletions: txn.open_table(DELETIONS)?,
            silences: txn.open_table(SILENCES)?,
            counts: txn.open_table(COUNTS)?,
            next_position,
            next_group_id,
            now_ms,
            floor_ms: retention_floor_ms(now_ms),
        })
    }

    /// Purges expired tombstones and saves the counters; call once, last.
    fn finish(mut self) -> Result<(), redb::Error> {
        self.purge_expired_tombstones()?;
        self.meta.insert(NEXT_POSITION, self.next_position)?;
        self.meta.insert(NEXT_GROUP_ID, self.next_group_id)?;
        Ok(())
    }

    fn apply(&mut self, change: Change) -> Result<Applied, redb::Error> {
        match change {
            Change::Add {
                item,
                version,
                filtered,
            } => self.add(item, version, filtered),
            Change::Remove { item, version } => self.remove(item, version),
            Change::TweetDeleted { tweet_id } => self.delete_tweet(tweet_id),
            Change::Silence {
                recipient,
                actor,
                source,
                version,
                until_ms,
            } => self.silence((recipient, actor, source as u8), version, until_ms),
            Change::Unsilence {
                recipient,
                actor,
                source,
                version,
            } => self.unsilence((recipient, actor, source as u8), version),
        }
    }

    fn add(
        &mut self,
        item: Item,
        version: Version,
        filtered: bool,
    ) -> Result<Applied, redb::Error> {
        // An item older than the retention would make a group no read shows.
        if version.at_ms < self.floor_ms
            || self.tweet_deleted(item.tweet_id)?
            || self.silenced(item.recipient, item.actor)?
        {
            return Ok(Applied::Stale);
        }
        let key = version_key(&item);
        if let Some(stored) = self.version(key)? {
            if stored.version >= version {
                return Ok(Applied::Stale);
            }
            if stored.present {
                // A newer action on an item already present (its undo is
                // still on the way, or was lost to a newer one): nothing to
                // show, but an undo older than this one must not remove it.
                let newer = VersionRecord { version, ..stored };
                self.versions.insert(key, newer.row())?;
                return Ok(Applied::Recorded);
            }
            self.forget_tombstone(&item, stored.version)?;
        }

        let recipient = item.recipient;
        let position = self.issue_position();
        let absorbed = match self.open_group(&item, version.at_ms)? {
            Some((group_id, mut group)) => {
                self.feed_table(group.filtered)
                    .remove((recipient, group.position))?;
                group.position = position;
                group.latest_at_ms = group.latest_at_ms.max(version.at_ms);
                group.count += 1;
                self.save_group(recipient, group_id, &group)?;
                Some((group_id, group.filtered))
            }
            None => None,
        };
        let (group_id, created, filtered) = match absorbed {
            Some((group_id, filtered)) => (group_id, false, filtered),
            None => (
                self.create_group(&item, version.at_ms, position, filtered)?,
                true,
                filtered,
            ),
        };
        self.items
            .insert((recipient, group_id, position), (item.actor, version.at_ms))?;
        let record = VersionRecord {
            version,
            present: true,
            group_id,
            item_position: position,
        };
        self.versions.insert(key, record.row())?;
        self.by_actor
            .insert((recipient, item.actor, item.kind as u8, item.tweet_id), ())?;
        if created {
            self.enforce_retained_groups(recipient)?;
        }
        self.drop_too_old_groups(recipient)?;
        Ok(Applied::Added {
            recipient,
            group_id,
            created,
            filtered,
        })
    }

    fn remove(&mut self, item: Item, version: Version) -> Result<Applied, redb::Error> {
        if self.tweet_deleted(item.tweet_id)? {
            return Ok(Applied::Stale);
        }
        let key = version_key(&item);
        let stored = self.version(key)?;
        let mut removed = 0;
        if let Some(stored) = stored {
            if stored.version >= version {
                return Ok(Applied::Stale);
            }
            if stored.present {
                self.take_item(&item, &stored)?;
                removed = 1;
            } else {
                self.forget_tombstone(&item, stored.version)?;
            }
        }
        self.record_tombstone(&item, version)?;
        Ok(if removed == 0 {
            Applied::Recorded
        } else {
            Applied::Removed { items: removed }
        })
    }

    fn delete_tweet(&mut self, tweet_id: u64) -> Result<Applied, redb::Error> {
        // Follows carry tweet 0, which is no tweet.
        if tweet_id == 0 {
            return Ok(Applied::Recorded);
        }
        if self.tweet_deleted(tweet_id)? {
            return Ok(Applied::Stale);
        }
        self.deleted_tweets.insert(tweet_id, self.now_ms)?;
        self.deletions.insert((self.now_ms, tweet_id), ())?;
        let about = self
            .by_tweet
            .range((tweet_id, 0, 0)..=(tweet_id, u64::MAX, u64::MAX))?
            .map(|row| row.map(|(key, _)| key.value()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut items = 0;
        for (_, recipient, group_id) in about {
            if let Some(group) = self.group(recipient, group_id)? {
                items += self.drop_group(recipient, group_id, &group, Forget::Versions)?;
            }
        }
        Ok(Applied::Removed { items })
    }

    fn silence(
        &mut self,
        key: (u64, u64, u8),
        version: Version,
        until_ms: Option<i64>,
    ) -> Result<Applied, redb::Error> {
        if !self.silence_change_is_newer(key, version)? {
            return Ok(Applied::Stale);
        }
        self.silences
            .insert(key, (version.at_ms, version.event_id, until_ms, true))?;
        let (recipient, actor, _) = key;
        let present = self
            .by_actor
            .range((recipient, actor, 0, 0)..=(recipient, actor, u8::MAX, u64::MAX))?
            .map(|row| row.map(|(key, _)| key.value()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut items = 0;
        for (_, _, kind, tweet_id) in present {
            let item = Item {
                recipient,
                kind: kind_from_row(kind)?,
                tweet_id,
                actor,
            };
            let key = version_key(&item);
            let Some(stored) = self.version(key)? else {
                continue;
            };
            if stored.present {
                self.take_item(&item, &stored)?;
                // The item's own version stays: an older redelivery of it
                // is refused after the silence is lifted too.
                self.record_tombstone(&item, stored.version)?;
                items += 1;
            }
        }
        Ok(Applied::Removed { items })
    }

    fn unsilence(&mut self, key: (u64, u64, u8), version: Version) -> Result<Applied, redb::Error> {
        if !self.silence_change_is_newer(key, version)? {
            return Ok(Applied::Stale);
        }
        self.silences
            .insert(key, (version.at_ms, version.event_id, None, false))?;
        Ok(Applied::Recorded)
    }

    fn silence_change_is_newer(
        &self,
        key: (u64, u64, u8),
        version: Version,
    ) -> Result<bool, redb::Error> {
        Ok(match self.silences.get(key)? {
            Some(row) => {
                let (at_ms, event_id, _, _) = row.value();
                version > Version { at_ms, event_id }
            }
            None => true,
        })
    }

    /// Whether any source silences `actor` for `recipient` now.
    fn silenced(&self, recipient: u64, actor: u64) -> Result<bool, redb::Error> {
        for source in SilenceSource::ALL {
            if let Some(row) = self.silences.get((recipient, actor, source as u8))? {
                let (_, _, until_ms, active) = row.value();
                if active && until_ms.is_none_or(|until_ms| until_ms > self.now_ms) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn tweet_deleted(&self, tweet_id: u64) -> Result<bool, redb::Error> {
        Ok(tweet_id != 0 && self.deleted_tweets.get(tweet_id)?.is_some())
    }

    fn version(&self, key: (u64, u8, u64, u64)) -> Result<Option<VersionRecord>, redb::Error> {
        Ok(self
            .versions
            .get(key)?
            .map(|row| VersionRecord::from_row(row.value())))
    }

    fn group(&self, recipient: u64, group_id: u64) -> Result<Option<GroupRecord>, redb::Error> {
        self.groups
            .get((recipient, group_id))?
            .map(|row| GroupRecord::from_row(row.value()))
            .transpose()
    }

    fn issue_position(&mut self) -> u64 {
        let position = self.next_position;
        self.next_position += 1;
        position
    }

    fn feed_table(&mut self, filtered: bool) -> &mut Table<'txn, (u64, u64), FeedRow> {
        if filtered {
            &mut self.filtered_feed
        } else {
            &mut self.feed
        }
    }

    /// The recipient's open group the item joins, if any (never for
    /// mentions, replies and quotes).
    fn open_group(
        &self,
        item: &Item,
        at_ms: i64,
    ) -> Result<Option<(u64, GroupRecord)>, redb::Error> {
        if !item.kind.groups() {
            return Ok(None);
        }
        let open = self
            .open
            .get((item.recipient, item.kind as u8, item.tweet_id))?
            .map(|row| row.value());
        let Some(group_id) = open else {
            return Ok(None);
        };
        Ok(self
            .group(item.recipient, group_id)?
            .filter(|group| joins_group(group.latest_at_ms, at_ms))
            .map(|group| (group_id, group)))
    }

    /// Writes the group row and its feed row (the caller removed the old feed
    /// row when the position changed).
    fn save_group(
        &mut self,
        recipient: u64,
        group_id: u64,
        group: &GroupRecord,
    ) -> Result<(), redb::Error> {
        self.groups.insert((recipient, group_id), group.row())?;
        self.feed_table(group.filtered)
            .insert((recipient, group.position), group.feed_row(group_id))?;
        Ok(())
    }

    /// A new group holding (once the caller inserts it) the item at `position`.
    fn create_group(
        &mut self,
        item: &Item,
        at_ms: i64,
        position: u64,
        filtered: bool,
    ) -> Result<u64, redb::Error> {
        let group_id = self.next_group_id;
        self.next_group_id += 1;
        let group = GroupRecord {
            kind: item.kind,
            tweet_id: item.tweet_id,
            count: 1,
            latest_at_ms: at_ms,
            position,
            filtered,
        };
        self.save_group(item.recipient, group_id, &group)?;
        if item.kind.groups() {
            self.open
                .insert((item.recipient, item.kind as u8, item.tweet_id), group_id)?;
        }
        if item.tweet_id != 0 {
            self.by_tweet
                .insert((item.tweet_id, item.recipient, group_id), ())?;
        }
        let held = self
            .counts
            .get(item.recipient)?
            .map_or(0, |row| row.value());
        self.counts.insert(item.recipient, held + 1)?;
        Ok(group_id)
    }

    /// Removes a present item from its group: the group shrinks, goes when
    /// empty, and takes its newest remaining item's place when the item was
    /// its newest. The caller rewrites the item's version.
    fn take_item(&mut self, item: &Item, stored: &VersionRecord) -> Result<(), redb::Error> {
        let recipient = item.recipient;
        let group_id = stored.group_id;
        self.items
            .remove((recipient, group_id, stored.item_position))?;
        self.by_actor
            .remove((recipient, item.actor, item.kind as u8, item.tweet_id))?;
        let Some(mut group) = self.group(recipient, group_id)? else {
            return Ok(());
        };
        group.count = group.count.saturating_sub(1);
        let newest = self
            .items
            .range(group_items(recipient, group_id))?
            .next_back()
            .transpose()?
            .map(|(key, value)| (key.value().2, value.value().1));
        match newest {
            None => self.unlist_group(recipient, group_id, &group),
            Some((position, at_ms)) => {
                if position != group.position {
                    self.feed_table(group.filtered)
                        .remove((recipient, group.position))?;
                    group.position = position;
                    group.latest_at_ms = at_ms;
                }
                self.save_group(recipient, group_id, &group)
            }
        }
    }

    /// Drops a whole group with its items; returns how many items it held.
    fn drop_group(
        &mut self,
        recipient: u64,
        group_id: u64,
        group: &GroupRecord,
        forget: Forget,
    ) -> Result<u64, redb::Error> {
        let items = self
            .items
            .range(group_items(recipient, group_id))?
            .map(|row| row.map(|(key, value)| (key.value().2, value.value().0)))
            .collect::<Result<Vec<_>, _>>()?;
        for &(position, actor) in &items {
            self.items.remove((recipient, group_id, position))?;
            self.by_actor
                .remove((recipient, actor, group.kind as u8, group.tweet_id))?;
            let item = Item {
                recipient,
                kind: group.kind,
                tweet_id: group.tweet_id,
                actor,
            };
            let key = version_key(&item);
            match forget {
                Forget::Versions => {
                    self.versions.remove(key)?;
                }
                Forget::KeepTombstones => {
                    if let Some(stored) = self.version(key)? {
                        self.record_tombstone(&item, stored.version)?;
                    }
                }
            }
        }
        self.unlist_group(recipient, group_id, group)?;
        Ok(items.len() as u64)
    }

    /// Removes the group row and every index row of it (not its items).
    fn unlist_group(
        &mut self,
        recipient: u64,
        group_id: u64,
        group: &GroupRecord,
    ) -> Result<(), redb::Error> {
        self.groups.remove((recipient, group_id))?;
        self.feed_table(group.filtered)
            .remove((recipient, group.position))?;
        if group.kind.groups() {
            let open_key = (recipient, group.kind as u8, group.tweet_id);
            let open = self.open.get(open_key)?.map(|row| row.value());
            if open == Some(group_id) {
                self.open.remove(open_key)?;
            }
        }
        if group.tweet_id != 0 {
            self.by_tweet
                .remove((group.tweet_id, recipient, group_id))?;
        }
        let held = self.counts.get(recipient)?.map_or(0, |row| row.value());
        if held <= 1 {
            self.counts.remove(recipient)?;
        } else {
            self.counts.insert(recipient, held - 1)?;
        }
        Ok(())
    }

    /// Drops the recipient's oldest groups while they hold more than
    /// [`RETAINED_GROUPS`].
    fn enforce_retained_groups(&mut self, recipient: u64) -> Result<(), redb::Error> {
        let held = self.counts.get(recipient)?.map_or(0, |row| row.value());
        let excess = held.saturating_sub(RETAINED_GROUPS as u64);
        for _ in 0..excess {
            let oldest_main = first_row(&self.feed, recipient)?;
            let oldest_filtered = first_row(&self.filtered_feed, recipient)?;
            let oldest = match (oldest_main, oldest_filtered) {
                (Some(main), Some(filtered)) => {
                    Some(if main.0 < filtered.0 { main } else { filtered })
                }
                (main, filtered) => main.or(filtered),
            };
            let Some((_, group_id)) = oldest else {
                break;
            };
            if let Some(group) = self.group(recipient, group_id)? {
                self.drop_group(recipient, group_id, &group, Forget::KeepTombstones)?;
            }
        }
        Ok(())
    }

    /// Drops a few of the recipient's groups past the retention, oldest first.
    fn drop_too_old_groups(&mut self, recipient: u64) -> Result<(), redb::Error> {
        for filtered in [false, true] {
            let floor_ms = self.floor_ms;
            let expired = self
                .feed_table(filtered)
                .range(recipient_rows(recipient))?
                .take(EXPIRED_DROPPED_PER_WRITE)
                .map(|row| row.map(|(_, value)| value.value()))
                .take_while(|row| match row {
                    Ok((_, _, latest_at_ms)) => *latest_at_ms < floor_ms,
                    Err(_) => true,
                })
                .map(|row| row.map(|(group_id, _, _)| group_id))
                .collect::<Result<Vec<_>, _>>()?;
            for group_id in expired {
                if let Some(group) = self.group(recipient, group_id)? {
                    self.drop_group(recipient, group_id, &group, Forget::Versions)?;
                }
            }
        }
        Ok(())
    }

    fn record_tombstone(&mut self, item: &Item, version: Version) -> Result<(), redb::Error> {
        self.versions
            .insert(version_key(item), VersionRecord::tombstone(version).row())?;
        self.tombstones.insert(
            (
                version.at_ms,
                item.recipient,
                item.kind as u8,
                item.tweet_id,
                item.actor,
            ),
            (),
        )?;
        Ok(())
    }

    /// Removes a tombstone's expiry entry (its version row is being rewritten).
    fn forget_tombstone(&mut self, item: &Item, version: Version) -> Result<(), redb::Error> {
        self.tombstones.remove((
            version.at_ms,
            item.recipient,
            item.kind as u8,
            item.tweet_id,
            item.actor,
        ))?;
        Ok(())
    }

    /// Purges a few undo tombstones and deleted-tweet tombstones past the
    /// retention: what they guard against is now refused as too old.
    fn purge_expired_tombstones(&mut self) -> Result<(), redb::Error> {
        let floor_ms = self.floor_ms;
        let tombstones = self
            .tombstones
            .range(..(floor_ms, 0, 0, 0, 0))?
            .take(EXPIRED_DROPPED_PER_WRITE)
            .map(|row| row.map(|(key, _)| key.value()))
            .collect::<Result<Vec<_>, _>>()?;
        for (at_ms, recipient, kind, tweet_id, actor) in tombstones {
            self.tombstones
                .remove((at_ms, recipient, kind, tweet_id, actor))?;
            let key = (recipient, kind, tweet_id, actor);
            if self
                .version(key)?
                .is_some_and(|stored| !stored.present && stored.version.at_ms == at_ms)
            {
                self.versions.remove(key)?;
            }
        }
        let deletions = self
            .deletions
            .range(..(floor_ms, 0))?
            .take(EXPIRED_DROPPED_PER_WRITE)
            .map(|row| row.map(|(key, _)| key.value()))
            .collect::<Result<Vec<_>, _>>()?;
        for (deleted_at_ms, tweet_id) in deletions {
            self.deletions.remove((deleted_at_ms, tweet_id))?;
            self.deleted_tweets.remove(tweet_id)?;
        }
        Ok(())
    }
}

/// The lowest (position, group id) of the recipient in a feed.
fn first_row(
    feed: &Table<'_, (u64, u64), FeedRow>,
    recipient: u64,
) -> Result<Option<(u64, u64)>, redb::Error> {
    Ok(feed
        .range(recipient_rows(recipient))?
        .next()
        .transpose()?
        .map(|(key, value)| (key.value().1, value.value().0)))
}

/// One read transaction's tables.
struct Reader {
    groups: ReadOnlyTable<(u64, u64), GroupRow>,
    feed: ReadOnlyTable<(u64, u64), FeedRow>,
    filtered_feed: ReadOnlyTable<(u64, u64), FeedRow>,
    items: ReadOnlyTable<(u64, u64, u64), (u64, i64)>,
    markers: ReadOnlyTable<u64, u64>,
    /// Groups older than this are past the retention and never shown.
    floor_ms: i64,
}

impl Reader {
    fn open(database: &Database, now_ms: i64) -> Result<Self, redb::Error> {
        let txn = database.begin_read()?;
        Ok(Self {
            groups: txn.open_table(GROUPS)?,
            feed: txn.open_table(FEED)?,
            filtered_feed: txn.open_table(FILTERED_FEED)?,
            items: txn.open_table(ITEMS)?,
            markers: txn.open_table(MARKERS)?,
            floor_ms: retention_floor_ms(now_ms),
        })
    }

    fn marker(&self, recipient: u64) -> Result<u64, redb::Error> {
        Ok(self.markers.get(recipient)?.map_or(0, |row| row.value()))
    }

    /// The group as read, unless it is missing or past the retention.
    fn group(
        &self,
        recipient: u64,
        group_id: u64,
        marker: u64,
    ) -> Result<Option<Group>, redb::Error> {
        let Some(row) = self.groups.get((recipient, group_id))? else {
            return Ok(None);
        };
        let record = GroupRecord::from_row(row.value())?;
        if record.latest_at_ms < self.floor_ms {
            return Ok(None);
        }
        let actors = self
            .items
            .range(group_items(recipient, group_id))?
            .rev()
            .take(MAX_SAMPLE_ACTORS)
            .map(|row| row.map(|(_, value)| value.value().0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Group {
            id: group_id,
            recipient,
            kind: record.kind,
            tweet_id: record.tweet_id,
            count: record.count,
            actors,
            latest_at_ms: record.latest_at_ms,
            position: record.position,
            unread: record.position > marker,
            filtered: record.filtered,
        }))
    }

    fn list(&self, query: &ListQuery) -> Result<GroupPage, redb::Error> {
        let recipient = query.recipient;
        let marker = self.marker(recipient)?;
        let feed = if query.filtered {
            &self.filtered_feed
        } else {
            &self.feed
        };
        let upper = match query.before {
            Some(before) => Bound::Excluded((recipient, before)),
            None => Bound::Included((recipient, u64::MAX)),
        };
        let mut groups = Vec::with_capacity(query.limit.min(64));
        let mut last_scanned = None;
        let mut more = false;
        for (scanned, row) in feed
            .range((Bound::Included((recipient, 0)), upper))?
            .rev()
            .enumerate()
        {
            if scanned == MAX_SCANNED_ROWS {
                // Bounded work: the next page goes on from here.
                more = true;
                break;
            }
            let (key, value) = row?;
            let position = key.value().1;
            let (group_id, kind, latest_at_ms) = value.value();
            last_scanned = Some(position);
            if latest_at_ms < self.floor_ms {
                continue;
            }
            if !query.kinds.is_empty() && !query.kinds.iter().any(|wanted| *wanted as u8 == kind) {
                continue;
            }
            if groups.len() == query.limit {
                more = true;
                break;
            }
            if let Some(group) = self.group(recipient, group_id, marker)? {
                groups.push(group);
            }
        }
        let next_before = if !more {
            None
        } else if groups.len() == query.limit {
            groups.last().map(|group| group.position)
        } else {
            last_scanned
        };
        Ok(GroupPage {
            groups,
            next_before,
        })
    }

    fn unread(&self, recipient: u64, cap: u64) -> Result<Unread, redb::Error> {
        let marker = self.marker(recipient)?;
        let mut unread = 0;
        for row in self
            .feed
            .range((
                Bound::Excluded((recipient, marker)),
                Bound::Included((recipient, u64::MAX)),
            ))?
            .rev()
        {
            let (_, value) = row?;
            let (_, _, latest_at_ms) = value.value();
            if latest_at_ms < self.floor_ms {
                continue;
            }
            unread += 1;
            if unread > cap {
                break;
            }
        }
        Ok(Unread {
            count: unread.min(cap),
            capped: unread > cap,
            read_up_to: marker,
        })
    }
}
