//! The ScyllaDB tweet store's transactional outbox: where its events wait
//! for the relay (`warble_mesh::outbox::run_relay`), and how the relay
//! reads them without a queue's tombstones.
//!
//! Entries are written in the same LOGGED batch as the tweet or deletion
//! they describe ([`OutboxRecord`]). They are ordered by *position*, a
//! Snowflake-shaped value minted from the writer's clock (increasing within
//! one process), then by event id, which keeps two writers' entries apart
//! even when their positions tie; they are partitioned by minute of
//! position and a shard. The relay reads forward from a durable "published below"
//! position ([`RelayState`]); once it has published everything below a
//! settled position it persists it and drops whole partitions behind it, so
//! no entry is ever deleted one by one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::scylla::statement::SerialConsistency;
use async_trait::async_trait;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLogError};
use warble_mesh::outbox::{Outbox, OutboxEntry};
use warble_mesh::snowflake;
use warble_mesh::time::now_ms;
use warble_proto::events::v1::Event;

use super::{OutboxRow, ScyllaTweetStore, cql, cql_limit, from_db, mix, to_db};
use crate::error::TweetError;

/// Partitions per outbox minute: spreads one minute's writes over this many
/// replica sets instead of one hot partition.
const OUTBOX_SHARDS: i32 = 4;

/// Width of an outbox partition in milliseconds of write time.
const OUTBOX_BUCKET_MS: u64 = 60_000;

/// How long after its position (the write time) an outbox entry may still
/// appear: above the request timeout plus clock skew between tweet-svc
/// replicas. The relay only moves its durable progress past entries older
/// than this; see [`RelayState`].
const OUTBOX_SETTLE: Duration = Duration::from_secs(15);

/// How often the relay re-reads from its durable progress (catching entries
/// that committed out of position order) instead of only past what it saw.
const OUTBOX_RESCAN_EVERY: Duration = Duration::from_secs(2);

/// An idle relay (nothing found, nothing written by this process since)
/// looks again after this long rather than on every poll.
const OUTBOX_IDLE_SCAN_EVERY: Duration = Duration::from_millis(100);

/// Published partitions dropped per relay call, bounding the work of a
/// relay catching up after a long pause.
const OUTBOX_DROPS_PER_CALL: i64 = 16;

/// The progress row's name (one relay position per keyspace).
const OUTBOX_PROGRESS_ROW: &str = "domain_events";

/// An outbox entry's place in the relay's order: (position, event id).
type EntryKey = (u64, u64);

/// Mints outbox positions: the current time as a Snowflake-shaped id, and
/// always above the last one this process minted, so one process's entries
/// sort in the order it wrote them.
#[derive(Debug, Default)]
pub(super) struct PositionClock {
    last: AtomicU64,
}

impl PositionClock {
    pub(super) fn next(&self) -> u64 {
        let now = snowflake::min_id_at(now_ms());
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }
}

/// The relay's view of the outbox, kept in memory between `pending` and
/// `mark_published` calls.
///
/// Outbox entries are ordered by *position*, an id minted from the clock
/// when the entry is written. An entry can only appear with a position
/// older than [`OUTBOX_SETTLE`] if a write outlived its timeout, so once a
/// complete scan has seen everything below `now - OUTBOX_SETTLE` and all of
/// it is published, `published_below` moves there, is persisted (LWT, only
/// forward), and partitions behind it are dropped. A restarted relay reads
/// from the persisted value and publishes some entries again, which the
/// sink drops by event id.
pub(super) struct RelayState {
    /// Loaded from `outbox_progress` on first use.
    loaded: bool,
    /// Every entry with a position below this has been published.
    published_below: u64,
    /// The value `outbox_progress` holds as far as this process knows.
    persisted_below: u64,
    /// Entries at or above `published_below` that were marked published.
    published: BTreeSet<EntryKey>,
    /// Entries handed out by `pending` and not yet marked.
    handed_out: BTreeSet<EntryKey>,
    /// Largest position ever handed out.
    high_water: Option<u64>,
    /// Set by a complete re-read from `published_below`: every entry below
    /// it existed then and was handed out (or already published).
    frontier: Option<u64>,
    last_rescan: Option<Instant>,
    /// When a scan last found nothing, and the local write count then.
    last_empty_scan: Option<(Instant, u64)>,
    /// Outbox partitions of buckets below this one have been dropped.
    dropped_below_bucket: i64,
}

impl RelayState {
    pub(super) fn new() -> Self {
        Self {
            loaded: false,
            published_below: 0,
            persisted_below: 0,
            published: BTreeSet::new(),
            handed_out: BTreeSet::new(),
            high_water: None,
            frontier: None,
            last_rescan: None,
            last_empty_scan: None,
            dropped_below_bucket: 0,
        }
    }

    /// Moves `published_below` as far as what is known allows.
    fn advance(&mut self) {
        let Some(frontier) = self.frontier else {
            return;
        };
        let target = self
            .handed_out
            .first()
            .map_or(frontier, |&(oldest, _)| oldest.min(frontier));
        if target > self.published_below {
            self.published_below = target;
            self.published = self.published.split_off(&(target, 0));
        }
    }
}

/// An outbox row about to be written.
pub(super) struct OutboxRecord {
    bucket: i64,
    shard: i32,
    position: u64,
    event_id: u64,
    key: u64,
    payload: Vec<u8>,
}

impl OutboxRecord {
    /// The entry for `event`, keyed by `key`, at `position` (the write's
    /// time, not the event's: a crashed request completed later by another
    /// must land where the relay still looks).
    pub(super) fn new(key: u64, event: &Event, position: u64) -> Self {
        Self {
            bucket: bucket_of(position),
            shard: i32::try_from(mix(event.event_id) % OUTBOX_SHARDS as u64).unwrap_or(0),
            position,
            event_id: event.event_id,
            key,
            payload: warble_mesh::telemetry::encode_event(event),
        }
    }

    pub(super) fn values(&self) -> (i64, i32, i64, i64, &'static str, i64, &[u8]) {
        (
            self.bucket,
            self.shard,
            to_db(self.position),
            to_db(self.event_id),
            DOMAIN_EVENTS_STREAM,
            to_db(self.key),
            self.payload.as_slice(),
        )
    }
}

/// The outbox partition (minute of write time) of a position.
fn bucket_of(position: u64) -> i64 {
    let unix_ms = snowflake::decode(position).unix_ms;
    i64::try_from(unix_ms / OUTBOX_BUCKET_MS).unwrap_or(i64::MAX)
}

/// The handle of an entry: `bucket:shard:position:event_id`.
fn handle_of(bucket: i64, shard: i32, (position, event_id): EntryKey) -> String {
    format!("{bucket}:{shard}:{position}:{event_id}")
}

/// The (position, event id) in a handle.
fn parse_handle(handle: &str) -> Result<EntryKey, TweetError> {
    let mut parts = handle.rsplit(':');
    let event_id = parts.next().and_then(|part| part.parse().ok());
    let position = parts.next().and_then(|part| part.parse().ok());
    match (position, event_id, parts.next(), parts.next(), parts.next()) {
        (Some(position), Some(event_id), Some(_), Some(_), None) => Ok((position, event_id)),
        _ => Err(TweetError::storage(format!(
            "malformed outbox handle `{handle}`"
        ))),
    }
}

fn outbox_error(error: TweetError) -> EventLogError {
    EventLogError::Unavailable(format!(
        "ScyllaDB outbox: {}",
        warble_mesh::status::ErrorChain(&error)
    ))
}

#[async_trait]
impl Outbox for ScyllaTweetStore {
    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, EventLogError> {
        self.pending_entries(max).await.map_err(outbox_error)
    }

    async fn mark_published(&self, handles: &[String]) -> Result<(), EventLogError> {
        self.mark_entries(handles).await.map_err(outbox_error)
    }
}

impl ScyllaTweetStore {
    /// A fresh keyspace starts publishing from now; an existing one keeps
    /// its progress (the insert is conditional).
    pub(super) async fn init_outbox_progress(&self) -> Result<(), TweetError> {
        let statement = cql::init_progress(&self.inner.keyspace);
        let mut prepared = self.session().prepare(statement).await?;
        prepared.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        let start = to_db(snowflake::min_id_at(now_ms()));
        self.session()
            .execute_unpaged(&prepared, (OUTBOX_PROGRESS_ROW, start))
            .await?;
        Ok(())
    }

    /// Reads the outbox from `from` (a position) up to now, bucket by
    /// bucket, shards merged; at most `max + 1` entries, so the caller can
    /// tell a truncated scan from a complete one.
    async fn scan_outbox(
        &self,
        from: u64,
        max: usize,
        skip: &BTreeSet<EntryKey>,
    ) -> Result<Vec<(EntryKey, OutboxEntry)>, TweetError> {
        let last_bucket = bucket_of(snowflake::min_id_at(now_ms()));
        let mut found: Vec<(EntryKey, OutboxEntry)> = Vec::new();
        let mut bucket = bucket_of(from);
        while bucket <= last_bucket && found.len() <= max {
            let mut in_bucket = Vec::new();
            for shard in 0..OUTBOX_SHARDS {
                let result = self
                    .session()
                    .execute_unpaged(
                        &self.statements().select_outbox,
                        (
                            bucket,
                            shard,
                            to_db(from),
                            cql_limit(max.saturating_add(skip.len()).saturating_add(1)),
                        ),
                    )
                    .await?
                    .into_rows_result()?;
                for row in result.rows::<OutboxRow>()? {
                    let (position, event_id, stream, key, payload) = row?;
                    let entry_key = (from_db(position), from_db(event_id));
                    if skip.contains(&entry_key) {
                        continue;
                    }
                    in_bucket.push((
                        entry_key,
                        OutboxEntry {
                            handle: handle_of(bucket, shard, entry_key),
                            stream,
                            key: from_db(key),
                            payload,
                        },
                    ));
                }
            }
            in_bucket.sort_by_key(|(entry_key, _)| *entry_key);
            found.extend(in_bucket);
            bucket += 1;
        }
        found.truncate(max.saturating_add(1));
        Ok(found)
    }

    async fn load_relay_state(&self, state: &mut RelayState) -> Result<(), TweetError> {
        let row = self
            .session()
            .execute_unpaged(&self.statements().select_progress, (OUTBOX_PROGRESS_ROW,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?;
        let below = row
            .and_then(|(below,)| below)
            .map(from_db)
            .ok_or_else(|| TweetError::storage("outbox progress row is missing"))?;
        state.published_below = below;
        state.persisted_below = below;
        state.dropped_below_bucket = bucket_of(below);
        state.loaded = true;
        Ok(())
    }

    /// Persists progress (forward only) and drops partitions behind it.
    async fn persist_relay_state(&self, state: &mut RelayState) -> Result<(), TweetError> {
        let target_bucket = bucket_of(state.published_below);
        // Persist at most once per bucket unless far behind: progress is a
        // restart hint, and each write is an LWT.
        if bucket_of(state.persisted_below) < target_bucket {
            self.session()
                .execute_unpaged(
                    &self.statements().advance_progress,
                    (
                        to_db(state.published_below),
                        OUTBOX_PROGRESS_ROW,
                        to_db(state.published_below),
                    ),
                )
                .await?;
            state.persisted_below = state.published_below;
        }
        // Only partitions wholly behind the *persisted* progress go: a
        // restarted relay never looks for entries in them.
        let droppable = bucket_of(state.persisted_below);
        let mut drops = 0;
        while state.dropped_below_bucket < droppable && drops < OUTBOX_DROPS_PER_CALL {
            for shard in 0..OUTBOX_SHARDS {
                self.session()
                    .execute_unpaged(
                        &self.statements().drop_outbox_partition,
                        (state.dropped_below_bucket, shard),
                    )
                    .await?;
            }
            state.dropped_below_bucket += 1;
            drops += 1;
        }
        Ok(())
    }

    async fn pending_entries(&self, max: usize) -> Result<Vec<OutboxEntry>, TweetError> {
        let mut state = self.inner.relay.lock().await;
        if !state.loaded {
            self.load_relay_state(&mut state).await?;
        }
        let local_writes = self.inner.local_outbox_writes.load(Ordering::Relaxed);
        let rescan = state
            .last_rescan
            .is_none_or(|at| at.elapsed() >= OUTBOX_RESCAN_EVERY);
        if !rescan
            && state.handed_out.is_empty()
            && let Some((at, writes)) = state.last_empty_scan
            && writes == local_writes
            && at.elapsed() < OUTBOX_IDLE_SCAN_EVERY
        {
            return Ok(Vec::new());
        }
        let settled_below = snowflake::min_id_at(
            now_ms().saturating_sub(u64::try_from(OUTBOX_SETTLE.as_millis()).unwrap_or(0)),
        );
        let from = if rescan {
            state.published_below
        } else {
            // Entries handed out but not marked (a failed publish) come
            // again first, so one key's events keep their order. The
            // high-water position itself is read again: another writer's
            // entry may share it.
            let seen = state.high_water.unwrap_or(0);
            state
                .handed_out
                .first()
                .map_or(seen, |&(oldest, _)| oldest.min(seen))
                .max(state.published_below)
        };
        let skip = state.published.clone();
        let mut entries = self.scan_outbox(from, max, &skip).await?;
        let first_unreturned = entries.get(max).map(|((position, _), _)| *position);
        entries.truncate(max);

        for ((position, event_id), _) in &entries {
            state.handed_out.insert((*position, *event_id));
            state.high_water = Some(
                state
                    .high_water
                    .map_or(*position, |high| high.max(*position)),
            );
        }
        state.last_empty_scan = entries.is_empty().then(|| (Instant::now(), local_writes));
        let entries: Vec<OutboxEntry> = entries.into_iter().map(|(_, entry)| entry).collect();
        if rescan {
            state.last_rescan = Some(Instant::now());
            state.frontier = Some(match first_unreturned {
                Some(position) => position,
                None => settled_below.max(state.published_below),
            });
            state.advance();
            self.persist_relay_state(&mut state).await?;
        }
        Ok(entries)
    }

    async fn mark_entries(&self, handles: &[String]) -> Result<(), TweetError> {
        let mut state = self.inner.relay.lock().await;
        for handle in handles {
            let entry_key = parse_handle(handle)?;
            state.handed_out.remove(&entry_key);
            if entry_key.0 >= state.published_below {
                state.published.insert(entry_key);
            }
        }
        state.advance();
        self.persist_relay_state(&mut state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warble_mesh::snowflake::WARBLE_EPOCH_MS;

    #[test]
    fn outbox_entries_spread_over_shards_and_minutes() {
        let base = snowflake::min_id_at(WARBLE_EPOCH_MS + 3_600_000);
        let shards: std::collections::HashSet<u64> = (0..64)
            .map(|n| mix(base + (n << 22)) % OUTBOX_SHARDS as u64)
            .collect();
        assert_eq!(shards.len(), OUTBOX_SHARDS as usize);
        let minute = snowflake::min_id_at(WARBLE_EPOCH_MS + 60_000);
        assert_eq!(bucket_of(minute) - bucket_of(minute - 1), 1);
    }

    #[test]
    fn handles_carry_position_and_event_id() {
        let handle = handle_of(28_800, 3, (12_345, 678));
        assert_eq!(parse_handle(&handle).unwrap(), (12_345, 678));
        assert!(parse_handle("nonsense").is_err());
        assert!(parse_handle("1:2:3").is_err());
    }

    #[test]
    fn positions_increase_within_a_process() {
        let clock = PositionClock::default();
        let positions: Vec<u64> = (0..1_000).map(|_| clock.next()).collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
        let now = snowflake::min_id_at(now_ms());
        assert!(
            positions[0] >= now - (1 << 22) * 1_000,
            "close to the clock"
        );
    }

    #[test]
    fn progress_stops_at_the_oldest_unpublished_entry() {
        let mut state = RelayState::new();
        state.loaded = true;
        state.published_below = 10;
        state.handed_out.extend([(12, 1), (15, 2)]);
        state.frontier = Some(20);
        state.advance();
        assert_eq!(state.published_below, 12, "12 is not published yet");
        state.handed_out.remove(&(12, 1));
        state.published.insert((12, 1));
        state.advance();
        assert_eq!(state.published_below, 15);
        state.handed_out.remove(&(15, 2));
        state.advance();
        assert_eq!(
            state.published_below, 20,
            "up to what the rescan saw settled"
        );
        assert!(state.published.is_empty());
    }
}
