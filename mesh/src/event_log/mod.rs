//! The durable event log services publish domain events to and consumers
//! read in groups, modelled on Redis Streams so both implementations share
//! one contract:
//!
//! - `append` adds an entry to a stream and returns its id; ids increase.
//! - `read_group` hands each new entry to exactly one consumer of a group and
//!   records it as pending for that consumer; a group created on first read
//!   starts at the beginning of the stream, so nothing appended earlier is missed.
//! - `ack` marks entries done; acknowledged entries are never delivered again.
//! - `reclaim` transfers entries left pending longer than `min_idle` (their
//!   consumer died) to another consumer.
//!
//! Entries are delivered in append order, so the order of events with the
//! same key (e.g. one author's tweets) is preserved in delivery.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedEventLog;
pub use redis::{DEFAULT_DEDUPE_TTL, DEFAULT_TRIM_EVERY, RedisEventLog};

/// The stream domain events are published to.
pub const DOMAIN_EVENTS_STREAM: &str = "warble.events.v1";

/// The stream notify-svc publishes `warble.notify.v1.NotificationPublished`
/// records to (keyed by recipient) each time a notification group is created
/// or absorbs an actor; gateways tail it for live subscriptions.
pub const NOTIFICATIONS_STREAM: &str = "warble.notifications.v1";

/// Position of an entry in a stream: `ms-seq`, as in Redis Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// Milliseconds part (append time, kept monotonic).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for EventId {
    type Err = EventLogError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = text
            .split_once('-')
            .ok_or_else(|| EventLogError::InvalidId(text.to_owned()))?;
        Ok(Self {
            ms: ms
                .parse()
                .map_err(|_| EventLogError::InvalidId(text.to_owned()))?,
            seq: seq
                .parse()
                .map_err(|_| EventLogError::InvalidId(text.to_owned()))?,
        })
    }
}

/// One entry handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The entry's id; pass it to `ack`.
    pub id: EventId,
    /// The ordering key given at append (e.g. the author id).
    pub key: u64,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// How many times this entry has been delivered to this group, this delivery included.
    pub delivery_count: u32,
}

/// Why an event log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The embedded database failed.
    #[error("embedded event log: {0}")]
    Embedded(#[from] redb::Error),
    /// A background task failed to complete.
    #[error("event log task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The backing store is unreachable or failed.
    #[error("event log backend unavailable: {0}")]
    Unavailable(String),
    /// An entry id could not be parsed.
    #[error("invalid event id `{0}`")]
    InvalidId(String),
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for EventLogError {
            fn from(error: $error) -> Self {
                Self::Embedded(error.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A durable, consumer-group event log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one entry; durable when this returns.
    async fn append(
        &self,
        stream: &str,
        key: u64,
        payload: &[u8],
    ) -> Result<EventId, EventLogError>;

    /// Appends `entries` (key, payload), in order, to a stream only tailed
    /// live (no consumer group needs its history), keeping about its newest
    /// `max_len` entries. Redis sends them in one pipeline and caps the
    /// stream with `XADD MAXLEN ~`; the embedded log appends them in one
    /// transaction and keeps every stream whole (as `warble dev` does); the
    /// default appends one by one.
    async fn append_capped(
        &self,
        stream: &str,
        entries: &[(u64, Vec<u8>)],
        max_len: usize,
    ) -> Result<(), EventLogError> {
        let _ = max_len;
        for (key, payload) in entries {
            self.append(stream, *key, payload).await?;
        }
        Ok(())
    }

    /// Delivers up to `max` entries no consumer of `group` has received yet,
    /// waiting up to `block` for one to arrive when there are none.
    async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, EventLogError>;

    /// Acknowledges entries; returns how many were pending (repeats count once).
    async fn ack(&self, stream: &str, group: &str, ids: &[EventId]) -> Result<u64, EventLogError>;

    /// Transfers to `consumer` up to `max` entries pending in `group` for at
    /// least `min_idle` without an ack, oldest first, and delivers them again.
    async fn reclaim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, EventLogError>;

    /// Entries appended but not yet acknowledged by `group` (delivered or not).
    async fn lag(&self, stream: &str, group: &str) -> Result<u64, EventLogError>;

    /// The id of the oldest entry `group` has not acknowledged (pending or
    /// not yet delivered), `None` when it is caught up: its age is how far
    /// behind the group is in time.
    async fn oldest_unacked(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Option<EventId>, EventLogError>;

    /// Records `member` of the consumer group `group` on `stream` as alive
    /// for `ttl` (a zero `ttl` removes it), and returns the members alive
    /// now, sorted: how a group's replicas learn of each other to share its
    /// partitions ([`crate::consumer`]).
    async fn heartbeat(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, EventLogError>;

    /// Takes the lease `name` (on `stream`) for `holder`, or renews it if
    /// `holder` has it, for `ttl`; returns whether `holder` holds it now. A
    /// lease nobody renews lapses after `ttl`.
    async fn lease(
        &self,
        stream: &str,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError>;

    /// Gives the lease `name` up, if `holder` holds it.
    async fn release(&self, stream: &str, name: &str, holder: &str) -> Result<(), EventLogError>;

    /// The id of the newest entry in `stream`, `None` when it is empty. With
    /// [`EventLog::read_after`], lets a reader tail a stream from "now".
    async fn last_id(&self, stream: &str) -> Result<Option<EventId>, EventLogError> {
        let _ = stream;
        Err(EventLogError::Unavailable(
            "this event log cannot be tailed".into(),
        ))
    }

    /// How many entries of `stream` have ids greater than `after` (all when
    /// `None`), counting no further than `cap`: how far a reader outside
    /// groups is behind, bounded so asking is cheap.
    async fn count_after(
        &self,
        stream: &str,
        after: Option<EventId>,
        cap: u64,
    ) -> Result<u64, EventLogError> {
        let _ = (stream, after, cap);
        Err(EventLogError::Unavailable(
            "this event log cannot be tailed".into(),
        ))
    }

    /// The newest id trimming ever removed from `stream`, `None` when it
    /// never removed anything. A reader that applied entries only up to an
    /// older id has missed some and must rebuild. The default: a log that
    /// never trims.
    async fn max_trimmed_id(&self, stream: &str) -> Result<Option<EventId>, EventLogError> {
        let _ = stream;
        Ok(None)
    }

    /// Holds the entries of `stream` after `applied` (all when `None`) for
    /// a reader outside consumer groups (one using `read_after`): trimming
    /// keeps them until the reader moves its pin on. Moving a pin back is
    /// allowed. The default: a log that never trims needs no pins.
    async fn pin(
        &self,
        stream: &str,
        reader: &str,
        applied: Option<EventId>,
    ) -> Result<(), EventLogError> {
        let _ = (stream, reader, applied);
        Ok(())
    }

    /// Consumer groups this log found gone although they had been created
    /// before (and created again): each is an alarm, since entries trimmed
    /// meanwhile never reached the group. The default: a log whose groups
    /// cannot vanish.
    fn groups_vanished(&self) -> u64 {
        0
    }

    /// Removes entries from a stream no group consumes, such as the
    /// dead-letter stream (an operator dropping or replaying dead letters);
    /// returns how many existed. Redis: `XDEL`.
    async fn delete(&self, stream: &str, ids: &[EventId]) -> Result<u64, EventLogError> {
        let _ = (stream, ids);
        Err(EventLogError::Unavailable(
            "this event log cannot delete entries".into(),
        ))
    }

    /// Removes every entry of `stream` older than `before`, consumed or not:
    /// retention by age, for a stream no group consumes (dead letters).
    /// Returns how many went. Redis: `XTRIM MINID`.
    async fn trim_before(&self, stream: &str, before: EventId) -> Result<u64, EventLogError> {
        let _ = (stream, before);
        Ok(0)
    }

    /// Drops a reader's pin, so it no longer holds the stream's history.
    async fn unpin(&self, stream: &str, reader: &str) -> Result<(), EventLogError> {
        let _ = (stream, reader);
        Ok(())
    }

    /// Up to `max` entries with ids greater than `after` (all when `None`),
    /// waiting up to `block` for one when there are none: a plain read
    /// outside any consumer group (XREAD), for readers that each need every
    /// entry, such as live subscriptions.
    async fn read_after(
        &self,
        stream: &str,
        after: Option<EventId>,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let _ = (stream, after, max, block);
        Err(EventLogError::Unavailable(
            "this event log cannot be tailed".into(),
        ))
    }
}
