//! The embedded event log: streams kept in the process's redb database.
//!
//! Stores append to it inside their own write transactions
//! ([`EmbeddedEventLog::append_in`]), which is what makes "write plus event"
//! one durable step in the single-process stack.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction,
};
use tokio::sync::Notify;

use super::{Delivery, EventId, EventLog, EventLogError};
use crate::time::now_ms;

/// (stream, id.ms, id.seq) -> key (8 bytes, big-endian) ++ payload.
const ENTRIES: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("event_log.entries");
/// stream -> (last id ms, last id seq, entries ever appended).
const HEADS: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("event_log.heads");
/// (stream, group) -> (last delivered ms, last delivered seq, entries acknowledged).
const GROUPS: TableDefinition<(&str, &str), (u64, u64, u64)> =
    TableDefinition::new("event_log.groups");
/// (stream, group, id.ms, id.seq) -> delivered-at ms (8) ++ delivery count (4) ++ consumer name.
const PENDING: TableDefinition<(&str, &str, u64, u64), &[u8]> =
    TableDefinition::new("event_log.pending");

/// (stream, reader) -> (applied ms, applied seq, whether it applied any):
/// what a reader outside groups still needs ([`EventLog::pin`]).
const PINS: TableDefinition<(&str, &str), (u64, u64, bool)> =
    TableDefinition::new("event_log.pins");
/// stream -> the newest id trimming removed ([`EventLog::max_trimmed_id`]).
const TRIMMED: TableDefinition<&str, (u64, u64)> = TableDefinition::new("event_log.trimmed");
/// (stream, group, member) -> alive until (ms): consumer group members.
const MEMBERS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("event_log.members");
/// (stream, lease) -> (holder, held until ms).
const LEASES: TableDefinition<(&str, &str), (&str, u64)> = TableDefinition::new("event_log.leases");

/// Acknowledgements of a stream between trims of what every group and pin
/// is done with.
pub const DEFAULT_TRIM_EVERY: u64 = 1_000;

/// Event log on the embedded database. Cheap to clone; clones share
/// wake-ups and the trimming count.
///
/// Like the Redis log, it trims a stream of what every consumer group has
/// acknowledged and every pinned reader has applied, once every
/// [`DEFAULT_TRIM_EVERY`] acknowledgements (and on demand with
/// [`EmbeddedEventLog::trim`]); a stream with neither groups nor pins is
/// never trimmed that way (dead letters have their own retention).
#[derive(Clone)]
pub struct EmbeddedEventLog {
    database: Arc<Database>,
    appended: Arc<Notify>,
    trim_every: u64,
    acked_since_trim: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for EmbeddedEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedEventLog").finish_non_exhaustive()
    }
}

struct PendingEntry {
    delivered_at_ms: u64,
    delivery_count: u32,
    consumer: String,
}

impl PendingEntry {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12 + self.consumer.len());
        bytes.extend_from_slice(&self.delivered_at_ms.to_be_bytes());
        bytes.extend_from_slice(&self.delivery_count.to_be_bytes());
        bytes.extend_from_slice(self.consumer.as_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Self {
        let (at, rest) = bytes.split_at(8.min(bytes.len()));
        let (count, consumer) = rest.split_at(4.min(rest.len()));
        Self {
            delivered_at_ms: u64::from_be_bytes(at.try_into().unwrap_or_default()),
            delivery_count: u32::from_be_bytes(count.try_into().unwrap_or_default()),
            consumer: String::from_utf8_lossy(consumer).into_owned(),
        }
    }
}

fn split_entry(bytes: &[u8]) -> (u64, Vec<u8>) {
    let (key, payload) = bytes.split_at(8.min(bytes.len()));
    (
        u64::from_be_bytes(key.try_into().unwrap_or_default()),
        payload.to_vec(),
    )
}

impl EmbeddedEventLog {
    /// Opens the log on `database`, creating its tables if needed.
    pub fn open(database: Arc<Database>) -> Result<Self, EventLogError> {
        let txn = database.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(HEADS)?;
        txn.open_table(GROUPS)?;
        txn.open_table(PENDING)?;
        txn.open_table(MEMBERS)?;
        txn.open_table(LEASES)?;
        txn.open_table(PINS)?;
        txn.open_table(TRIMMED)?;
        txn.commit()?;
        Ok(Self {
            database,
            appended: Arc::new(Notify::new()),
            trim_every: DEFAULT_TRIM_EVERY,
            acked_since_trim: Arc::default(),
        })
    }

    /// Acknowledgements between automatic trims (at least 1).
    pub fn with_trim_every(mut self, acknowledgements: u64) -> Self {
        self.trim_every = acknowledgements.max(1);
        self
    }

    /// Removes the entries of `stream` every consumer group has
    /// acknowledged and every pinned reader has applied; returns how many.
    pub async fn trim(&self, stream: &str) -> Result<u64, EventLogError> {
        let stream = stream.to_owned();
        self.blocking(move |database| trim_done(database, &stream))
            .await
    }

    /// The database the log lives in; stores share it to append in their transactions.
    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    /// Appends an entry inside the caller's write transaction, so it commits
    /// (or not) together with the caller's own writes. Call
    /// [`EmbeddedEventLog::notify_appended`] after the commit.
    pub fn append_in(
        txn: &WriteTransaction,
        stream: &str,
        key: u64,
        payload: &[u8],
    ) -> Result<EventId, redb::Error> {
        let mut heads = txn.open_table(HEADS)?;
        let (last_ms, last_seq, count) = heads
            .get(stream)?
            .map(|head| head.value())
            .unwrap_or((0, 0, 0));
        let now = now_ms();
        let id = if now > last_ms {
            EventId { ms: now, seq: 0 }
        } else {
            EventId {
                ms: last_ms,
                seq: last_seq + 1,
            }
        };
        heads.insert(stream, (id.ms, id.seq, count + 1))?;
        let mut value = Vec::with_capacity(8 + payload.len());
        value.extend_from_slice(&key.to_be_bytes());
        value.extend_from_slice(payload);
        txn.open_table(ENTRIES)?
            .insert((stream, id.ms, id.seq), value.as_slice())?;
        Ok(id)
    }

    /// Wakes consumers blocked in `read_group` after a commit that appended.
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, EventLogError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, EventLogError> + Send + 'static,
    {
        let database = self.database.clone();
        tokio::task::spawn_blocking(move || work(&database)).await?
    }

    fn read_new(
        database: &Database,
        stream: &str,
        group: &str,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, EventLogError> {
        // Cheap read-only check first: an idle consumer polling an empty
        // stream must not cost a durable write transaction.
        {
            let read = database.begin_read()?;
            let heads = read.open_table(HEADS)?;
            let groups = read.open_table(GROUPS)?;
            let head = heads.get(stream)?.map(|head| head.value());
            let position = groups
                .get((stream, group))?
                .map(|position| position.value());
            match (head, position) {
                (None, _) => return Ok(Vec::new()),
                (Some((ms, seq, _)), Some((at_ms, at_seq, _))) if (ms, seq) <= (at_ms, at_seq) => {
                    return Ok(Vec::new());
                }
                _ => {}
            }
        }
        let txn = database.begin_write()?;
        let deliveries = {
            let entries = txn.open_table(ENTRIES)?;
            let mut groups = txn.open_table(GROUPS)?;
            let mut pending = txn.open_table(PENDING)?;
            let (at_ms, at_seq, acked) = groups
                .get((stream, group))?
                .map(|g| g.value())
                .unwrap_or((0, 0, 0));
            let now = now_ms();
            let mut deliveries = Vec::new();
            let start = (stream, at_ms, at_seq);
            for entry in entries.range(start..=(stream, u64::MAX, u64::MAX))? {
                let (position, value) = entry?;
                let (_, ms, seq) = position.value();
                if (ms, seq) == (at_ms, at_seq) {
                    continue;
                }
                if deliveries.len() >= max {
                    break;
                }
                let (key, payload) = split_entry(value.value());
                let record = PendingEntry {
                    delivered_at_ms: now,
                    delivery_count: 1,
                    consumer: consumer.to_owned(),
                };
                pending.insert((stream, group, ms, seq), record.encode().as_slice())?;
                deliveries.push(Delivery {
                    id: EventId { ms, seq },
                    key,
                    payload,
                    delivery_count: 1,
                });
            }
            if let Some(last) = deliveries.last() {
                groups.insert((stream, group), (last.id.ms, last.id.seq, acked))?;
            }
            deliveries
        };
        if deliveries.is_empty() {
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(deliveries)
    }
}

#[async_trait]
impl EventLog for EmbeddedEventLog {
    async fn append(
        &self,
        stream: &str,
        key: u64,
        payload: &[u8],
    ) -> Result<EventId, EventLogError> {
        let (stream, payload) = (stream.to_owned(), payload.to_vec());
        let id = self
            .blocking(move |database| {
                let txn = database.begin_write()?;
                let id = Self::append_in(&txn, &stream, key, &payload)?;
                txn.commit()?;
                Ok(id)
            })
            .await?;
        self.notify_appended();
        Ok(id)
    }

    async fn append_capped(
        &self,
        stream: &str,
        entries: &[(u64, Vec<u8>)],
        _max_len: usize,
    ) -> Result<(), EventLogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (stream, entries) = (stream.to_owned(), entries.to_vec());
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            for (key, payload) in &entries {
                Self::append_in(&txn, &stream, *key, payload)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await?;
        self.notify_appended();
        Ok(())
    }

    async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Register for the wake-up before looking, so an append between
            // the look and the wait is not missed.
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let (s, g, c) = (stream.to_owned(), group.to_owned(), consumer.to_owned());
            let deliveries = self
                .blocking(move |database| Self::read_new(database, &s, &g, &c, max.max(1)))
                .await?;
            if !deliveries.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(deliveries);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[EventId]) -> Result<u64, EventLogError> {
        let (owned_stream, group, ids) = (stream.to_owned(), group.to_owned(), ids.to_vec());
        let acknowledged = self
            .blocking(move |database| {
                let stream = owned_stream;
                let txn = database.begin_write()?;
                let mut acknowledged = 0;
                {
                    let mut pending = txn.open_table(PENDING)?;
                    for id in &ids {
                        if pending
                            .remove((stream.as_str(), group.as_str(), id.ms, id.seq))?
                            .is_some()
                        {
                            acknowledged += 1;
                        }
                    }
                    if acknowledged > 0 {
                        let mut groups = txn.open_table(GROUPS)?;
                        let (ms, seq, acked) = groups
                            .get((stream.as_str(), group.as_str()))?
                            .map(|g| g.value())
                            .unwrap_or((0, 0, 0));
                        groups.insert(
                            (stream.as_str(), group.as_str()),
                            (ms, seq, acked + acknowledged),
                        )?;
                    }
                }
                txn.commit()?;
                Ok(acknowledged)
            })
            .await?;
        if acknowledged > 0 {
            use std::sync::atomic::Ordering;
            let since = self
                .acked_since_trim
                .fetch_add(acknowledged, Ordering::Relaxed)
                + acknowledged;
            if since >= self.trim_every {
                self.acked_since_trim.store(0, Ordering::Relaxed);
                if let Err(error) = self.trim(stream).await {
                    tracing::warn!(stream, %error, "trimming the stream failed; the next trim retries");
                }
            }
        }
        Ok(acknowledged)
    }

    async fn reclaim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let (stream, group, consumer) = (stream.to_owned(), group.to_owned(), consumer.to_owned());
        let min_idle_ms = min_idle.as_millis() as u64;
        self.blocking(move |database| {
            let (s, g) = (stream.as_str(), group.as_str());
            let now = now_ms();
            let txn = database.begin_write()?;
            let mut deliveries = Vec::new();
            {
                let entries = txn.open_table(ENTRIES)?;
                let mut pending = txn.open_table(PENDING)?;
                let mut idle = Vec::new();
                for item in pending.range((s, g, 0, 0)..=(s, g, u64::MAX, u64::MAX))? {
                    let (position, value) = item?;
                    let record = PendingEntry::decode(value.value());
                    if now.saturating_sub(record.delivered_at_ms) >= min_idle_ms {
                        let (_, _, ms, seq) = position.value();
                        idle.push((EventId { ms, seq }, record.delivery_count));
                        if idle.len() >= max.max(1) {
                            break;
                        }
                    }
                }
                for (id, count) in idle {
                    let Some(entry) = entries.get((s, id.ms, id.seq))? else {
                        // The entry is gone; nothing left to deliver.
                        pending.remove((s, g, id.ms, id.seq))?;
                        continue;
                    };
                    let (key, payload) = split_entry(entry.value());
                    let record = PendingEntry {
                        delivered_at_ms: now,
                        delivery_count: count.saturating_add(1),
                        consumer: consumer.clone(),
                    };
                    pending.insert((s, g, id.ms, id.seq), record.encode().as_slice())?;
                    deliveries.push(Delivery {
                        id,
                        key,
                        payload,
                        delivery_count: record.delivery_count,
                    });
                }
            }
            txn.commit()?;
            Ok(deliveries)
        })
        .await
    }

    async fn delete(&self, stream: &str, ids: &[EventId]) -> Result<u64, EventLogError> {
        let (stream, ids) = (stream.to_owned(), ids.to_vec());
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            let mut removed = 0;
            {
                let mut entries = txn.open_table(ENTRIES)?;
                for id in ids {
                    if entries.remove((stream.as_str(), id.ms, id.seq))?.is_some() {
                        removed += 1;
                    }
                }
            }
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn trim_before(&self, stream: &str, before: EventId) -> Result<u64, EventLogError> {
        let stream = stream.to_owned();
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            let removed = remove_before(&txn, &stream, (before.ms, before.seq))?.len() as u64;
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn last_id(&self, stream: &str) -> Result<Option<EventId>, EventLogError> {
        let stream = stream.to_owned();
        self.blocking(move |database| {
            let read = database.begin_read()?;
            let head = read
                .open_table(HEADS)?
                .get(stream.as_str())?
                .map(|head| head.value());
            Ok(head.map(|(ms, seq, _)| EventId { ms, seq }))
        })
        .await
    }

    async fn count_after(
        &self,
        stream: &str,
        after: Option<EventId>,
        cap: u64,
    ) -> Result<u64, EventLogError> {
        let stream = stream.to_owned();
        self.blocking(move |database| {
            let read = database.begin_read()?;
            let entries = read.open_table(ENTRIES)?;
            let start = after.map_or((0, 0), |id| (id.ms, id.seq));
            let mut count = 0;
            for entry in entries.range(
                (stream.as_str(), start.0, start.1)..=(stream.as_str(), u64::MAX, u64::MAX),
            )? {
                let (position, _) = entry?;
                let (_, ms, seq) = position.value();
                if after.is_some() && (ms, seq) == start {
                    continue;
                }
                if count >= cap {
                    break;
                }
                count += 1;
            }
            Ok(count)
        })
        .await
    }

    async fn read_after(
        &self,
        stream: &str,
        after: Option<EventId>,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let s = stream.to_owned();
            let entries = self
                .blocking(move |database| {
                    let read = database.begin_read()?;
                    let entries = read.open_table(ENTRIES)?;
                    let start = after.map_or((0, 0), |id| (id.ms, id.seq));
                    let mut found = Vec::new();
                    for entry in entries
                        .range((s.as_str(), start.0, start.1)..=(s.as_str(), u64::MAX, u64::MAX))?
                    {
                        let (position, value) = entry?;
                        let (_, ms, seq) = position.value();
                        if after.is_some() && (ms, seq) == start {
                            continue;
                        }
                        if found.len() >= max.max(1) {
                            break;
                        }
                        let (key, payload) = split_entry(value.value());
                        found.push(Delivery {
                            id: EventId { ms, seq },
                            key,
                            payload,
                            delivery_count: 1,
                        });
                    }
                    Ok(found)
                })
                .await?;
            if !entries.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn pin(
        &self,
        stream: &str,
        reader: &str,
        applied: Option<EventId>,
    ) -> Result<(), EventLogError> {
        let (stream, reader) = (stream.to_owned(), reader.to_owned());
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            let position = applied.map_or((0, 0, false), |id| (id.ms, id.seq, true));
            txn.open_table(PINS)?
                .insert((stream.as_str(), reader.as_str()), position)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn unpin(&self, stream: &str, reader: &str) -> Result<(), EventLogError> {
        let (stream, reader) = (stream.to_owned(), reader.to_owned());
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            txn.open_table(PINS)?
                .remove((stream.as_str(), reader.as_str()))?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn max_trimmed_id(&self, stream: &str) -> Result<Option<EventId>, EventLogError> {
        let stream = stream.to_owned();
        self.blocking(move |database| {
            let read = database.begin_read()?;
            let trimmed = read.open_table(TRIMMED)?.get(stream.as_str())?;
            Ok(trimmed.map(|trimmed| {
                let (ms, seq) = trimmed.value();
                EventId { ms, seq }
            }))
        })
        .await
    }

    async fn heartbeat(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, EventLogError> {
        let (stream, group, member) = (stream.to_owned(), group.to_owned(), member.to_owned());
        self.blocking(move |database| {
            let now = now_ms();
            let txn = database.begin_write()?;
            let live = {
                let mut members = txn.open_table(MEMBERS)?;
                let key = (stream.as_str(), group.as_str(), member.as_str());
                if ttl.is_zero() {
                    members.remove(key)?;
                } else {
                    members.insert(key, now + ttl.as_millis() as u64)?;
                }
                let mut live = Vec::new();
                let mut expired = Vec::new();
                let range = (stream.as_str(), group.as_str(), "")..;
                for row in members.range(range)? {
                    let (key, until) = row?;
                    let (row_stream, row_group, name) = key.value();
                    if row_stream != stream || row_group != group {
                        break;
                    }
                    if until.value() > now {
                        live.push(name.to_owned());
                    } else {
                        expired.push(name.to_owned());
                    }
                }
                for name in expired {
                    members.remove((stream.as_str(), group.as_str(), name.as_str()))?;
                }
                live
            };
            txn.commit()?;
            Ok(live)
        })
        .await
    }

    async fn lease(
        &self,
        stream: &str,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        let (stream, name, holder) = (stream.to_owned(), name.to_owned(), holder.to_owned());
        self.blocking(move |database| {
            let now = now_ms();
            let txn = database.begin_write()?;
            let held = {
                let mut leases = txn.open_table(LEASES)?;
                let key = (stream.as_str(), name.as_str());
                let free = match leases.get(key)? {
                    Some(current) => {
                        let (current_holder, until) = current.value();
                        current_holder == holder || until <= now
                    }
                    None => true,
                };
                if free {
                    leases.insert(key, (holder.as_str(), now + ttl.as_millis() as u64))?;
                }
                free
            };
            txn.commit()?;
            Ok(held)
        })
        .await
    }

    async fn release(&self, stream: &str, name: &str, holder: &str) -> Result<(), EventLogError> {
        let (stream, name, holder) = (stream.to_owned(), name.to_owned(), holder.to_owned());
        self.blocking(move |database| {
            let txn = database.begin_write()?;
            {
                let mut leases = txn.open_table(LEASES)?;
                let key = (stream.as_str(), name.as_str());
                let mine = leases
                    .get(key)?
                    .is_some_and(|current| current.value().0 == holder);
                if mine {
                    leases.remove(key)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn oldest_unacked(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Option<EventId>, EventLogError> {
        let (stream, group) = (stream.to_owned(), group.to_owned());
        self.blocking(move |database| {
            let read = database.begin_read()?;
            let (stream, group) = (stream.as_str(), group.as_str());
            let oldest_pending = read
                .open_table(PENDING)?
                .range((stream, group, 0, 0)..=(stream, group, u64::MAX, u64::MAX))?
                .next()
                .transpose()?
                .map(|(key, _)| {
                    let (_, _, ms, seq) = key.value();
                    EventId { ms, seq }
                });
            let (delivered_ms, delivered_seq) = read
                .open_table(GROUPS)?
                .get((stream, group))?
                .map_or((0, 0), |g| {
                    let (ms, seq, _) = g.value();
                    (ms, seq)
                });
            let after_delivered = match delivered_seq.checked_add(1) {
                Some(seq) => (delivered_ms, seq),
                None => (delivered_ms.saturating_add(1), 0),
            };
            let oldest_undelivered = read
                .open_table(ENTRIES)?
                .range(
                    (stream, after_delivered.0, after_delivered.1)..=(stream, u64::MAX, u64::MAX),
                )?
                .next()
                .transpose()?
                .map(|(key, _)| {
                    let (_, ms, seq) = key.value();
                    EventId { ms, seq }
                });
            Ok(match (oldest_pending, oldest_undelivered) {
                (Some(pending), Some(undelivered)) => Some(pending.min(undelivered)),
                (pending, undelivered) => pending.or(undelivered),
            })
        })
        .await
    }

    async fn lag(&self, stream: &str, group: &str) -> Result<u64, EventLogError> {
        let (stream, group) = (stream.to_owned(), group.to_owned());
        self.blocking(move |database| {
            let read = database.begin_read()?;
            let appended = read
                .open_table(HEADS)?
                .get(stream.as_str())?
                .map(|head| head.value().2)
                .unwrap_or(0);
            let acked = read
                .open_table(GROUPS)?
                .get((stream.as_str(), group.as_str()))?
                .map(|g| g.value().2)
                .unwrap_or(0);
            Ok(appended.saturating_sub(acked))
        })
        .await
    }
}

/// Removes the entries of `stream` older than `before` (ms, seq); returns
/// their ids, oldest first.
fn remove_before(
    txn: &WriteTransaction,
    stream: &str,
    before: (u64, u64),
) -> Result<Vec<(u64, u64)>, EventLogError> {
    let mut entries = txn.open_table(ENTRIES)?;
    let doomed: Vec<(u64, u64)> = entries
        .range((stream, 0, 0)..(stream, before.0, before.1))?
        .map(|entry| {
            entry.map(|(position, _)| {
                let (_, ms, seq) = position.value();
                (ms, seq)
            })
        })
        .collect::<Result<_, _>>()?;
    for (ms, seq) in &doomed {
        entries.remove((stream, *ms, *seq))?;
    }
    Ok(doomed)
}

/// The id right after `id`.
fn next_id(ms: u64, seq: u64) -> (u64, u64) {
    match seq.checked_add(1) {
        Some(seq) => (ms, seq),
        None => (ms.saturating_add(1), 0),
    }
}

/// Trims `stream` of the entries every group acknowledged and every pinned
/// reader applied (see [`EmbeddedEventLog`]); returns how many went.
fn trim_done(database: &Database, stream: &str) -> Result<u64, EventLogError> {
    let txn = database.begin_write()?;
    let removed = {
        // The oldest entry anyone still needs.
        let mut keep: Option<(u64, u64)> = None;
        let mut needs = |position: (u64, u64)| {
            keep = Some(keep.map_or(position, |known| known.min(position)));
        };
        let groups = txn.open_table(GROUPS)?;
        let pending = txn.open_table(PENDING)?;
        for row in groups.range((stream, "")..)? {
            let (key, value) = row?;
            let (row_stream, group) = key.value();
            if row_stream != stream {
                break;
            }
            let first_pending = pending
                .range((stream, group, 0, 0)..=(stream, group, u64::MAX, u64::MAX))?
                .next()
                .transpose()?
                .map(|(key, _)| {
                    let (_, _, ms, seq) = key.value();
                    (ms, seq)
                });
            let (ms, seq, _) = value.value();
            needs(first_pending.unwrap_or_else(|| next_id(ms, seq)));
        }
        let pins = txn.open_table(PINS)?;
        for row in pins.range((stream, "")..)? {
            let (key, value) = row?;
            if key.value().0 != stream {
                break;
            }
            let (ms, seq, applied_any) = value.value();
            needs(if applied_any {
                next_id(ms, seq)
            } else {
                (0, 0)
            });
        }
        drop((groups, pending, pins));
        let Some((keep_ms, keep_seq)) = keep else {
            return Ok(0);
        };
        let doomed = remove_before(&txn, stream, (keep_ms, keep_seq))?;
        if let Some(newest) = doomed.last() {
            txn.open_table(TRIMMED)?.insert(stream, *newest)?;
        }
        doomed.len() as u64
    };
    txn.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::conformance;

    /// The ids `read_after` still finds in `stream`.
    async fn remaining(log: &EmbeddedEventLog, stream: &str) -> Vec<EventId> {
        log.read_after(stream, None, 1_000, Duration::ZERO)
            .await
            .unwrap()
            .iter()
            .map(|delivery| delivery.id)
            .collect()
    }

    /// Trimming removes what every group acknowledged and every pinned
    /// reader applied, records the newest entry removed, and runs by itself
    /// every `trim_every` acknowledgements.
    #[tokio::test]
    async fn acknowledged_and_applied_entries_are_trimmed_and_the_rest_kept() {
        let (_dir, log) = fresh();
        let log = log.with_trim_every(1_000_000);
        let mut ids = Vec::new();
        for key in 0..10u64 {
            ids.push(log.append("s", key, b"x").await.unwrap());
        }
        assert_eq!(log.trim("s").await.unwrap(), 0, "no group or pin: keep all");
        log.pin("s", "reader", Some(ids[1])).await.unwrap();
        let fast = log
            .read_group("s", "fast", "c", 100, Duration::ZERO)
            .await
            .unwrap();
        log.ack("s", "fast", &fast.iter().map(|d| d.id).collect::<Vec<_>>())
            .await
            .unwrap();
        log.read_group("s", "slow", "c", 5, Duration::ZERO)
            .await
            .unwrap();
        log.ack("s", "slow", &ids[..3]).await.unwrap();

        // The pin needs ids[2] on; slow still holds ids[3] pending.
        assert_eq!(log.trim("s").await.unwrap(), 2);
        assert_eq!(remaining(&log, "s").await, ids[2..]);
        assert_eq!(log.max_trimmed_id("s").await.unwrap(), Some(ids[1]));
        log.pin("s", "reader", Some(ids[8])).await.unwrap();
        assert_eq!(
            log.trim("s").await.unwrap(),
            1,
            "now slow's pending entry holds"
        );
        assert_eq!(remaining(&log, "s").await, ids[3..]);

        // Everyone done: everything goes, and new entries still flow.
        log.unpin("s", "reader").await.unwrap();
        let rest = log
            .read_group("s", "slow", "c", 100, Duration::ZERO)
            .await
            .unwrap();
        let mut slow: Vec<EventId> = ids[3..5].to_vec();
        slow.extend(rest.iter().map(|d| d.id));
        log.ack("s", "slow", &slow).await.unwrap();
        assert_eq!(log.trim("s").await.unwrap(), 7);
        assert!(remaining(&log, "s").await.is_empty());
        assert_eq!(log.max_trimmed_id("s").await.unwrap(), Some(ids[9]));
        let late = log.append("s", 1, b"late").await.unwrap();
        let got = log
            .read_group("s", "fast", "c", 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![late]);

        // Acknowledgements trigger trimming by themselves.
        let (_dir, log) = fresh();
        let log = log.with_trim_every(2);
        let first = log.append("auto", 1, b"x").await.unwrap();
        let second = log.append("auto", 2, b"x").await.unwrap();
        log.read_group("auto", "g", "c", 10, Duration::ZERO)
            .await
            .unwrap();
        log.ack("auto", "g", &[first]).await.unwrap();
        assert_eq!(
            remaining(&log, "auto").await,
            vec![first, second],
            "not due yet"
        );
        log.ack("auto", "g", &[second]).await.unwrap();
        assert!(remaining(&log, "auto").await.is_empty());
    }

    fn fresh() -> (tempfile::TempDir, EmbeddedEventLog) {
        let dir = tempfile::tempdir().unwrap();
        let database = crate::embedded::open_shared(dir.path()).unwrap();
        (dir, EmbeddedEventLog::open(database).unwrap())
    }

    #[tokio::test]
    async fn conformance_suite() {
        conformance::run_all(|| async { fresh() }).await;
    }

    #[tokio::test]
    async fn entries_and_pending_state_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first_id = {
            let log =
                EmbeddedEventLog::open(crate::embedded::open_shared(dir.path()).unwrap()).unwrap();
            let first = log.append("s", 1, b"one").await.unwrap();
            log.append("s", 1, b"two").await.unwrap();
            let got = log
                .read_group("s", "g", "c1", 1, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(got[0].id, first);
            first
        };
        let log =
            EmbeddedEventLog::open(crate::embedded::open_shared(dir.path()).unwrap()).unwrap();
        // The unacked first entry is still pending and can be reclaimed; the second is still new.
        let reclaimed = log
            .reclaim("s", "g", "c2", Duration::ZERO, 10)
            .await
            .unwrap();
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(reclaimed[0].id, first_id);
        assert_eq!(reclaimed[0].delivery_count, 2);
        let new = log
            .read_group("s", "g", "c2", 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].payload, b"two");
        assert_eq!(log.lag("s", "g").await.unwrap(), 2);
    }
}
