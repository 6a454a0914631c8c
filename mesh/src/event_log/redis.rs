//! The event log on Redis Streams, for services running as separate processes.
//!
//! Each stream is a Redis stream named as given (after an optional key
//! prefix); entries carry two fields, `k` (the ordering key, decimal) and `p`
//! (the payload). The trait maps onto Streams one to one:
//!
//! | trait | Redis |
//! |---|---|
//! | `append` | `XADD <stream> * k <key> p <payload>` |
//! | `read_group` | `XREADGROUP GROUP <g> <c> COUNT <max> [BLOCK <ms>] STREAMS <stream> >`; the group is created on first use with `XGROUP CREATE <stream> <g> 0 MKSTREAM`, so entries appended before it are delivered |
//! | `ack` | `XACK` |
//! | `reclaim` | `XAUTOCLAIM` from `0-0`, continued until `max` entries or the end of the pending list, with each entry's delivery count from `XPENDING` (one Lua script) |
//! | `lag` | `XINFO GROUPS`: the group's `pending` plus its `lag` (entries not yet delivered) |
//! | `last_id` | `XINFO STREAM`'s `last-generated-id` (kept when entries are trimmed) |
//! | `read_after` | `XREAD COUNT <max> [BLOCK <ms>] STREAMS <stream> <after or 0-0>` |
//! | `count_after` | the length of `XRANGE <stream> (<after> + COUNT <cap>`, counted in a script |
//! | `max_trimmed_id` | `XINFO STREAM`'s `max-deleted-entry-id` |
//! | `pin` | a consumer group named after the reader, created at or moved to the position (`XGROUP CREATE … MKSTREAM`, else `XGROUP SETID`), so trimming keeps what follows |
//! | `unpin` | `XGROUP DESTROY` |
//!
//! **Length policy.** `XADD` never trims (no `MAXLEN`; only
//! [`EventLog::append_capped`], for streams tailed live and never consumed
//! in groups, caps with `MAXLEN ~`): a length cap would
//! drop entries whatever their state. Instead, once every
//! [`RedisEventLog::with_trim_every`] acknowledgements and appends of a
//! stream (and on demand with [`RedisEventLog::trim`]) a script computes,
//! over every group, the oldest entry still needed (the first pending one,
//! else the one after the last delivered) and runs `XTRIM MINID` at it
//! (then records the newest entry removed as the stream's
//! `max-deleted-entry-id` with `XSETID`, which `XTRIM` alone leaves alone).
//! Entries that are undelivered or unacknowledged by any group are kept,
//! up to the retention ([`RedisEventLog::with_retention`],
//! `stream_retention_hours`): older ones go whatever their state, and that
//! cut is logged as an error, so a dead consumer cannot fill the server. A
//! stream nobody has created a group on is never trimmed here. The cost: a
//! group nobody reads any more holds its stream's history for the
//! retention; delete such groups (`XGROUP DESTROY`).
//!
//! **Publishing once.** [`EventSink::publish_once`] runs a script that checks
//! a marker key for the event id, appends only if it is absent, and sets it
//! (holding the entry id) with a TTL ([`RedisEventLog::with_dedupe_ttl`]),
//! atomically. The marker key carries the stream's name as its hash tag
//! (`{<stream>}:dedupe:<event id>`) so both keys sit in one cluster slot.
//!
//! **Durability** is the server's: with `appendonly yes` an acknowledged
//! append survives a crash of the Redis process; `appendfsync` decides what
//! a crash of the machine can lose.
//!
//! A blocking read runs on a dedicated connection (see
//! [`RedisClient::blocking_query`]); cancelling it (e.g. at shutdown) may
//! leave the entries Redis had just handed out pending for this consumer,
//! where `reclaim` finds them after the idle timeout, as after a crash.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisError, Value};

use super::{Delivery, EventId, EventLog, EventLogError};
use crate::backends::RedisConfig;
use crate::outbox::EventSink;
use crate::redis_client::{RedisClient, RedisClientError, RedisScript, Request};

/// How long a published event id is remembered by `publish_once` by default.
/// A relay republishes after a crash within seconds to minutes; a day covers
/// a long outage of the store it relays from, at ~100 bytes per event.
pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Acknowledged entries of a stream between two automatic trims by default.
pub const DEFAULT_TRIM_EVERY: u64 = 1_000;

/// KEYS[1] stream, KEYS[2] dedupe marker (same slot); ARGV ttl secs, key, payload.
/// Returns the entry id: the new one, or the one published before.
static PUBLISH_ONCE: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local previous = redis.call('GET', KEYS[2])
if previous then return previous end
local id = redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 'p', ARGV[3])
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return id
"#,
    )
});

/// KEYS[1] stream; ARGV group, consumer, min idle ms, max. XAUTOCLAIM scans
/// a bounded slice of the pending list per call, so continue from its cursor
/// until `max` entries are claimed or the list is exhausted. Returns
/// {id, fields, delivery count} per entry, oldest first.
static RECLAIM: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local max = tonumber(ARGV[4])
local claimed = {}
local cursor = '0-0'
repeat
  local reply = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', max - #claimed)
  if reply.err then
    if string.sub(reply.err, 1, 7) == 'NOGROUP' then return {} end
    return redis.error_reply(reply.err)
  end
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do claimed[#claimed + 1] = entry end
until cursor == '0-0' or #claimed >= max
local out = {}
for i, entry in ipairs(claimed) do
  local info = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  local count = 1
  if info[1] then count = info[1][4] end
  out[i] = {entry[1], entry[2], count}
end
return out
"#,
    )
});

/// KEYS[1] stream; ARGV[1] group. Unacknowledged entries: the group's
/// pending ones plus those not delivered yet; every entry when the group
/// does not exist yet (it will start at the beginning).
static LAG: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then
    local undelivered = info['lag']
    if not undelivered then
      -- Redis reports no lag when deletions make it unknowable: count.
      undelivered = #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+')
    end
    return info['pending'] + undelivered
  end
end
return redis.call('XLEN', KEYS[1])
"#,
    )
});

/// KEYS[1] a group's member hash (member -> expiry, Redis server ms);
/// ARGV[1] member, ARGV[2] ttl ms (0 removes it). Drops expired members and
/// returns the live ones. The server's clock judges every member, so the
/// replicas' clocks need not agree.
static HEARTBEAT: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], now + ttl)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local live = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) > now then
    live[#live + 1] = fields[i]
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return live
"#,
    )
});

/// KEYS[1] a lease; ARGV[1] holder, ARGV[2] ttl ms: 1 when the holder has
/// the lease now (taken or renewed), 0 when another holds it.
static LEASE: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// KEYS[1] a lease; ARGV[1] holder: deletes the lease if the holder has it.
static RELEASE: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// KEYS[1] stream, ARGV[1] group: {the oldest pending id, the oldest
/// undelivered id}, each false when there is none.
static OLDEST_UNACKED: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {false, false} end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
    local next_entry = redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
    local undelivered = false
    if #next_entry > 0 then undelivered = next_entry[1][1] end
    return {pending[2] or false, undelivered}
  end
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 then return {false, first[1][1]} end
return {false, false}
"#,
    )
});

/// KEYS[1] stream; ARGV[1] an id field of `XINFO STREAM`: its value, false
/// for an absent stream or `0-0`. `last-generated-id` is the last id the
/// stream generated (trimmed or not), so a tail reader starting "now" never
/// sees older entries; `max-deleted-entry-id` the newest id removed.
static STREAM_ID_FIELD: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == ARGV[1] then
    if info[i + 1] == '0-0' then return false end
    return info[i + 1]
  end
end
return false
"#,
    )
});

/// KEYS[1] stream; ARGV[1] exclusive start (`(ms-seq` or `-`), ARGV[2] cap.
/// How many entries follow the start, up to the cap.
static COUNT_AFTER: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
return #redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
"#,
    )
});

/// KEYS[1] stream; ARGV[1] group, ARGV[2] position. Creates the group at
/// the position, or moves it there.
static PIN: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if type(created) == 'table' and created.err then
  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"#,
    )
});

/// KEYS[1] stream; ARGV[1] the retention floor id or ''. Trims entries
/// every group is done with (see the module docs), and with a floor every
/// older entry; returns {how many were removed, 1 when the floor removed
/// entries some group had not acknowledged}.
static TRIM: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, 0} end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local keep_ms, keep_seq
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local ms, seq
  if info['pending'] > 0 then
    ms, seq = parse(redis.call('XPENDING', KEYS[1], info['name'])[2])
  else
    ms, seq = parse(info['last-delivered-id'])
    seq = seq + 1
  end
  if not keep_ms or ms < keep_ms or (ms == keep_ms and seq < keep_seq) then
    keep_ms, keep_seq = ms, seq
  end
end
-- Retention: ARGV[1], when not empty, is the oldest id to keep whatever
-- the groups have acknowledged.
local cut = 0
if ARGV[1] ~= '' then
  local floor_ms, floor_seq = parse(ARGV[1])
  if floor_ms > keep_ms or (floor_ms == keep_ms and floor_seq > keep_seq) then
    keep_ms, keep_seq = floor_ms, floor_seq
    cut = 1
  end
end
local keep = string.format('%d-%d', keep_ms, keep_seq)
-- XTRIM does not update the stream's max-deleted-entry-id (only XDEL
-- does), yet readers outside groups read it to learn they missed entries:
-- record the newest entry trimmed there with XSETID.
local newest_trimmed = redis.call('XREVRANGE', KEYS[1], '(' .. keep, '-', 'COUNT', 1)[1]
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', keep)
if trimmed > 0 and newest_trimmed then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  local old_ms, old_seq = parse(fields['max-deleted-entry-id'])
  local new_ms, new_seq = parse(newest_trimmed[1])
  if new_ms > old_ms or (new_ms == old_ms and new_seq > old_seq) then
    redis.call('XSETID', KEYS[1], fields['last-generated-id'], 'MAXDELETEDID', newest_trimmed[1])
  end
end
if trimmed == 0 then cut = 0 end
return {trimmed, cut}
"#,
    )
});

/// [`EventLog`] and [`EventSink`] on Redis Streams (see the module docs).
pub struct RedisEventLog {
    client: RedisClient,
    prefix: String,
    dedupe_ttl: Duration,
    trim_every: u64,
    /// (stream key, group) pairs known to exist, so reads skip `XGROUP CREATE`.
    groups: Mutex<HashSet<(String, String)>>,
    /// Entries acknowledged per stream key since its last automatic trim.
    acked_since_trim: Mutex<HashMap<String, u64>>,
    /// Consumer groups found gone that had been created before.
    groups_vanished: std::sync::atomic::AtomicU64,
    /// Longest an entry of a consumed stream is kept (`None`: until acknowledged).
    retention: Option<Duration>,
}

impl std::fmt::Debug for RedisEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventLog")
            .field("client", &self.client)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisEventLog {
    /// The event log on `client`'s Redis.
    pub fn new(client: RedisClient) -> Self {
        Self {
            client,
            prefix: String::new(),
            dedupe_ttl: DEFAULT_DEDUPE_TTL,
            trim_every: DEFAULT_TRIM_EVERY,
            groups: Mutex::new(HashSet::new()),
            acked_since_trim: Mutex::new(HashMap::new()),
            groups_vanished: std::sync::atomic::AtomicU64::new(0),
            retention: None,
        }
    }

    /// The set recording every consumer group ever created on the stream at
    /// `key`, so a group that vanished (destroyed by hand, or its stream
    /// deleted) is told apart from one never created, across restarts.
    fn group_registry_key(key: &str) -> String {
        format!("{key}:consumer-groups")
    }

    /// Connects as `config` says (checking the server answers) and returns the log.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisClientError> {
        let client = RedisClient::connect(config).await?;
        client
            .check_durability(config.durability_check, "the event log", "durability_check")
            .await?;
        let retention = (config.stream_retention_hours > 0)
            .then(|| Duration::from_secs(u64::from(config.stream_retention_hours) * 3_600));
        Ok(Self::new(client).with_retention(retention))
    }

    /// Prepends `prefix` to every stream's key, so several logs (tests,
    /// environments) can share one Redis. Must not contain `{` or `}`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long `publish_once` remembers an event id (at least one second).
    pub fn with_dedupe_ttl(mut self, ttl: Duration) -> Self {
        self.dedupe_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Keeps entries no longer than `retention` even if a group has not
    /// acknowledged them (`None`: until every group has); see
    /// `RedisConfig::stream_retention_hours`.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Acknowledged entries of a stream between automatic trims (at least 1).
    pub fn with_trim_every(mut self, acknowledgements: u64) -> Self {
        self.trim_every = acknowledgements.max(1);
        self
    }

    /// The client this log uses.
    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    /// The Redis key of `stream`.
    pub fn stream_key(&self, stream: &str) -> String {
        format!("{}{stream}", self.prefix)
    }

    /// Removes the entries of `stream` that every consumer group has
    /// acknowledged (and nothing else); returns how many were removed.
    pub async fn trim(&self, stream: &str) -> Result<u64, EventLogError> {
        trim_stream(&self.client, &self.stream_key(stream), self.retention).await
    }

    async fn ensure_group(&self, key: &str, group: &str) -> Result<(), RedisError> {
        let known = (key.to_owned(), group.to_owned());
        if self.lock_groups().contains(&known) {
            return Ok(());
        }
        // `XGROUP CREATE` takes its key second: route by it, not by "CREATE".
        // Id 0: a new group starts at the beginning of the stream.
        let create = Request::routed_by("XGROUP", key)
            .arg("CREATE")
            .arg(key)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM");
        let created = match self.client.query::<()>(create).await {
            Ok(()) => true,
            Err(error) if error.code() == Some("BUSYGROUP") => false,
            Err(error) => return Err(error),
        };
        let registry = Self::group_registry_key(key);
        if created {
            // SADD answers 0 when the group was recorded before: it existed
            // and is gone. It is created again at the start of what the
            // stream still holds (redelivered, and applied idempotently),
            // but entries trimmed while it was gone never reach it: an
            // alarm, not a quiet re-create.
            let added: u64 = self
                .client
                .query(Request::new("SADD", &registry).arg(group))
                .await?;
            if added == 0 {
                self.groups_vanished
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    stream = key,
                    group,
                    "consumer group vanished (destroyed, or its stream deleted or lost) and was created again \
                     at the oldest entry the stream still holds; entries trimmed while it was gone were never \
                     delivered to it"
                );
            }
        } else {
            self.client
                .query::<u64>(Request::new("SADD", &registry).arg(group))
                .await?;
        }
        self.lock_groups().insert(known);
        Ok(())
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn read_new(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, RedisError> {
        let request = Request::routed_by("XREADGROUP", key)
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max.max(1));
        let reply = self.read_stream(request, key, ">", block).await?;
        parse_read_reply(reply)
    }

    /// Completes an `XREAD`/`XREADGROUP` request (given up to its `COUNT`)
    /// with `BLOCK`, when `block` is not zero, and `STREAMS <key> <from>`,
    /// then runs it: at once on the shared connection, or blocking on a
    /// dedicated one.
    async fn read_stream(
        &self,
        request: Request,
        key: &str,
        from: &str,
        block: Duration,
    ) -> Result<Value, RedisError> {
        // BLOCK 0 would wait forever; no BLOCK at all is "return at once".
        if block.is_zero() {
            let request = request.arg("STREAMS").arg(key).arg(from);
            return self.client.query(request).await;
        }
        let millis = block.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let request = request
            .arg("BLOCK")
            .arg(millis)
            .arg("STREAMS")
            .arg(key)
            .arg(from);
        self.client.blocking_query(request, block).await
    }

    fn unavailable(&self, error: RedisError) -> EventLogError {
        EventLogError::Unavailable(format!("redis at {}: {error}", self.client.address()))
    }

    /// Counts acknowledgements and starts a trim in the background when one is due.
    /// Counts acknowledgements and appends on the stream at `key`, and
    /// trims it in the background every `trim_every` of them: appends count
    /// too, so retention holds while no consumer acknowledges anything.
    fn note_activity(&self, key: &str, count: u64) {
        let due = {
            let mut acked = self
                .acked_since_trim
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let since = acked.entry(key.to_owned()).or_default();
            *since += count;
            if *since >= self.trim_every {
                *since = 0;
                true
            } else {
                false
            }
        };
        if due {
            let (client, key, retention) = (self.client.clone(), key.to_owned(), self.retention);
            tokio::spawn(async move {
                if let Err(error) = trim_stream(&client, &key, retention).await {
                    tracing::warn!(stream = %key, %error, "trimming the stream failed; the next trim retries");
                }
            });
        }
    }
}

/// Trims what every group acknowledged, and with `retention` everything
/// older; returns how many entries went.
async fn trim_stream(
    client: &RedisClient,
    key: &str,
    retention: Option<Duration>,
) -> Result<u64, EventLogError> {
    let floor = retention.map_or_else(String::new, |retention| {
        let floor_ms = crate::time::now_ms().saturating_sub(retention.as_millis() as u64);
        format!("{floor_ms}-0")
    });
    let (trimmed, cut): (u64, u64) =
        client
            .query(TRIM.call(&[key]).arg(floor))
            .await
            .map_err(|error| {
                EventLogError::Unavailable(format!("redis at {}: {error}", client.address()))
            })?;
    if cut == 1 {
        tracing::error!(
            stream = %key,
            trimmed,
            "stream retention trimmed entries a consumer group had not acknowledged: that group never applies them (raise redis.stream_retention_hours or fix the consumer)"
        );
    }
    Ok(trimmed)
}

/// A key in the same cluster slot as `key`: `key`'s own hash tag if it has
/// one, else `key` itself made the tag.
fn same_slot_key(key: &str, suffix: &str) -> String {
    let has_tag = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|length| length > 0);
    if has_tag {
        format!("{key}{suffix}")
    } else {
        format!("{{{key}}}{suffix}")
    }
}

fn unexpected(command: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply",
        command.to_owned(),
    ))
}

/// An `XREAD`/`XREADGROUP` reply (nil when nothing arrived, else
/// `[[stream, [entry, ...]]]`) into deliveries seen for the first time.
fn parse_read_reply(reply: Value) -> Result<Vec<Delivery>, RedisError> {
    let mut deliveries = Vec::new();
    if let Value::Array(streams) = reply {
        for stream in streams {
            let Value::Array(mut parts) = stream else {
                return Err(unexpected("stream read"));
            };
            if parts.len() != 2 {
                return Err(unexpected("stream read"));
            }
            let Value::Array(entries) = parts.swap_remove(1) else {
                return Err(unexpected("stream read"));
            };
            for entry in entries {
                deliveries.extend(parse_entry(entry, 1)?);
            }
        }
    }
    Ok(deliveries)
}

/// `[id, [field, value, ...]]` into a delivery; `None` for an entry whose
/// content is gone (deleted while pending).
fn parse_entry(entry: Value, delivery_count: u32) -> Result<Option<Delivery>, RedisError> {
    let Value::Array(mut parts) = entry else {
        return Err(unexpected("stream entry"));
    };
    if parts.len() < 2 {
        return Err(unexpected("stream entry"));
    }
    let fields = parts.swap_remove(1);
    let id: String = redis::from_redis_value(parts.swap_remove(0))?;
    let id: EventId = id.parse().map_err(|_| unexpected("stream entry id"))?;
    let Value::Array(fields) = fields else {
        return Ok(None);
    };
    let (mut key, mut payload) = (None, None);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let name: Vec<u8> = redis::from_redis_value(name)?;
        match name.as_slice() {
            b"k" => key = Some(redis::from_redis_value::<u64>(value)?),
            b"p" => payload = Some(redis::from_redis_value::<Vec<u8>>(value)?),
            _ => {}
        }
    }
    Ok(Some(Delivery {
        id,
        key: key.unwrap_or(0),
        payload: payload.unwrap_or_default(),
        delivery_count,
    }))
}

#[async_trait]
impl EventLog for RedisEventLog {
    async fn append(
        &self,
        stream: &str,
        key: u64,
        payload: &[u8],
    ) -> Result<EventId, EventLogError> {
        let request = Request::new("XADD", self.stream_key(stream))
            .arg("*")
            .arg("k")
            .arg(key)
            .arg("p")
            .arg(payload);
        let id: String = self
            .client
            .query(request)
            .await
            .map_err(|error| self.unavailable(error))?;
        self.note_activity(&self.stream_key(stream), 1);
        id.parse()
    }

    async fn append_capped(
        &self,
        stream: &str,
        entries: &[(u64, Vec<u8>)],
        max_len: usize,
    ) -> Result<(), EventLogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let stream_key = self.stream_key(stream);
        // `~`: Redis trims whole radix-tree nodes, which is cheap; the
        // stream keeps at least `max_len` entries.
        let requests: Vec<Request> = entries
            .iter()
            .map(|(key, payload)| {
                Request::new("XADD", &stream_key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(max_len)
                    .arg("*")
                    .arg("k")
                    .arg(*key)
                    .arg("p")
                    .arg(payload.as_slice())
            })
            .collect();
        self.client
            .batch(&requests)
            .await
            .map_err(|error| self.unavailable(error))?;
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
        let key = self.stream_key(stream);
        self.ensure_group(&key, group)
            .await
            .map_err(|error| self.unavailable(error))?;
        match self.read_new(&key, group, consumer, max, block).await {
            // The stream or group vanished under us (deleted, or a Redis
            // without persistence restarted): create it again and retry once.
            Err(error) if error.code() == Some("NOGROUP") => {
                self.lock_groups().remove(&(key.clone(), group.to_owned()));
                self.ensure_group(&key, group)
                    .await
                    .map_err(|error| self.unavailable(error))?;
                self.read_new(&key, group, consumer, max, block).await
            }
            other => other,
        }
        .map_err(|error| self.unavailable(error))
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[EventId]) -> Result<u64, EventLogError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let key = self.stream_key(stream);
        let mut request = Request::new("XACK", &key).arg(group);
        for id in ids {
            request = request.arg(id.to_string());
        }
        let acknowledged: u64 = self
            .client
            .query(request)
            .await
            .map_err(|error| self.unavailable(error))?;
        if acknowledged > 0 {
            self.note_activity(&key, acknowledged);
        }
        Ok(acknowledged)
    }

    async fn delete(&self, stream: &str, ids: &[EventId]) -> Result<u64, EventLogError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let key = self.stream_key(stream);
        let mut request = Request::new("XDEL", &key);
        for id in ids {
            request = request.arg(id.to_string());
        }
        self.client
            .query(request)
            .await
            .map_err(|error| self.unavailable(error))
    }

    async fn trim_before(&self, stream: &str, before: EventId) -> Result<u64, EventLogError> {
        let key = self.stream_key(stream);
        let request = Request::new("XTRIM", &key)
            .arg("MINID")
            .arg(before.to_string());
        self.client
            .query(request)
            .await
            .map_err(|error| self.unavailable(error))
    }

    async fn reclaim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let key = self.stream_key(stream);
        let request = RECLAIM
            .call(&[&key])
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            // XAUTOCLAIM refuses huge counts; nobody reclaims more at once.
            .arg(max.clamp(1, 100_000));
        let reply: Vec<Value> = self
            .client
            .query(request)
            .await
            .map_err(|error| self.unavailable(error))?;
        let mut deliveries = Vec::with_capacity(reply.len());
        for item in reply {
            let Value::Array(mut parts) = item else {
                return Err(self.unavailable(unexpected("reclaim")));
            };
            if parts.len() != 3 {
                return Err(self.unavailable(unexpected("reclaim")));
            }
            let count: u32 = redis::from_redis_value(parts.pop().unwrap_or(Value::Nil))
                .map_err(|error| self.unavailable(error.into()))?;
            let entry = Value::Array(parts);
            if let Some(delivery) =
                parse_entry(entry, count).map_err(|error| self.unavailable(error))?
            {
                deliveries.push(delivery);
            }
        }
        Ok(deliveries)
    }

    async fn heartbeat(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, EventLogError> {
        let key = format!("{}:members:{group}", self.stream_key(stream));
        let mut members: Vec<String> = self
            .client
            .query(
                HEARTBEAT
                    .call(&[key])
                    .arg(member)
                    .arg(ttl.as_millis() as u64),
            )
            .await
            .map_err(|error| self.unavailable(error))?;
        members.sort();
        Ok(members)
    }

    async fn lease(
        &self,
        stream: &str,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        let key = format!("{}:lease:{name}", self.stream_key(stream));
        let held: i64 = self
            .client
            .query(
                LEASE
                    .call(&[key])
                    .arg(holder)
                    .arg(ttl.as_millis().max(1) as u64),
            )
            .await
            .map_err(|error| self.unavailable(error))?;
        Ok(held == 1)
    }

    async fn release(&self, stream: &str, name: &str, holder: &str) -> Result<(), EventLogError> {
        let key = format!("{}:lease:{name}", self.stream_key(stream));
        let _: i64 = self
            .client
            .query(RELEASE.call(&[key]).arg(holder))
            .await
            .map_err(|error| self.unavailable(error))?;
        Ok(())
    }

    async fn oldest_unacked(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Option<EventId>, EventLogError> {
        let (pending, undelivered): (Option<String>, Option<String>) = self
            .client
            .query(OLDEST_UNACKED.call(&[self.stream_key(stream)]).arg(group))
            .await
            .map_err(|error| self.unavailable(error))?;
        let ids = [pending, undelivered]
            .into_iter()
            .flatten()
            .map(|id| id.parse::<EventId>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids.into_iter().min())
    }

    async fn lag(&self, stream: &str, group: &str) -> Result<u64, EventLogError> {
        self.client
            .query(LAG.call(&[self.stream_key(stream)]).arg(group))
            .await
            .map_err(|error| self.unavailable(error))
    }

    async fn last_id(&self, stream: &str) -> Result<Option<EventId>, EventLogError> {
        let id: Option<String> = self
            .client
            .query(
                STREAM_ID_FIELD
                    .call(&[self.stream_key(stream)])
                    .arg("last-generated-id"),
            )
            .await
            .map_err(|error| self.unavailable(error))?;
        id.map(|id| id.parse()).transpose()
    }

    async fn count_after(
        &self,
        stream: &str,
        after: Option<EventId>,
        cap: u64,
    ) -> Result<u64, EventLogError> {
        if cap == 0 {
            return Ok(0);
        }
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        self.client
            .query(
                COUNT_AFTER
                    .call(&[self.stream_key(stream)])
                    .arg(start)
                    .arg(cap),
            )
            .await
            .map_err(|error| self.unavailable(error))
    }

    async fn max_trimmed_id(&self, stream: &str) -> Result<Option<EventId>, EventLogError> {
        let id: Option<String> = self
            .client
            .query(
                STREAM_ID_FIELD
                    .call(&[self.stream_key(stream)])
                    .arg("max-deleted-entry-id"),
            )
            .await
            .map_err(|error| self.unavailable(error))?;
        id.map(|id| id.parse()).transpose()
    }

    async fn pin(
        &self,
        stream: &str,
        reader: &str,
        applied: Option<EventId>,
    ) -> Result<(), EventLogError> {
        let position = applied.map_or_else(|| "0".to_owned(), |id| id.to_string());
        self.client
            .query::<()>(
                PIN.call(&[self.stream_key(stream)])
                    .arg(reader)
                    .arg(position),
            )
            .await
            .map_err(|error| self.unavailable(error))
    }

    async fn unpin(&self, stream: &str, reader: &str) -> Result<(), EventLogError> {
        let key = self.stream_key(stream);
        let destroy = Request::routed_by("XGROUP", &key)
            .arg("DESTROY")
            .arg(&key)
            .arg(reader);
        match self.client.query::<()>(destroy).await {
            Ok(()) => {}
            // No stream yet: nothing is pinned.
            Err(error) if error.to_string().contains("requires the key to exist") => {}
            Err(error) => return Err(self.unavailable(error)),
        }
        // A pin's group is gone on purpose: not a vanished consumer group.
        self.client
            .query::<u64>(Request::new("SREM", Self::group_registry_key(&key)).arg(reader))
            .await
            .map_err(|error| self.unavailable(error))?;
        let known = (key, reader.to_owned());
        self.lock_groups().remove(&known);
        Ok(())
    }

    fn groups_vanished(&self) -> u64 {
        self.groups_vanished
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn read_after(
        &self,
        stream: &str,
        after: Option<EventId>,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, EventLogError> {
        let key = self.stream_key(stream);
        // XREAD returns ids strictly greater than the given one; no entry has id 0-0.
        let from = after.map_or_else(|| "0-0".to_owned(), |id| id.to_string());
        let request = Request::routed_by("XREAD", &key)
            .arg("COUNT")
            .arg(max.max(1));
        let reply = self
            .read_stream(request, &key, &from, block)
            .await
            .map_err(|error| self.unavailable(error))?;
        parse_read_reply(reply).map_err(|error| self.unavailable(error))
    }
}

#[async_trait]
impl EventSink for RedisEventLog {
    async fn publish_once(
        &self,
        stream: &str,
        key: u64,
        payload: &[u8],
        event_id: u64,
    ) -> Result<(), EventLogError> {
        // Id 0 marks an event whose id could not be read: never deduplicated.
        if event_id == 0 {
            return self.append(stream, key, payload).await.map(|_| ());
        }
        let stream_key = self.stream_key(stream);
        let marker = same_slot_key(&stream_key, &format!(":dedupe:{event_id}"));
        let request = PUBLISH_ONCE
            .call(&[stream_key.as_str(), marker.as_str()])
            .arg(self.dedupe_ttl.as_secs().max(1))
            .arg(key)
            .arg(payload);
        self.client
            .query::<String>(request)
            .await
            .map_err(|error| self.unavailable(error))?;
        self.note_activity(&stream_key, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_client::key_slot;

    #[test]
    fn dedupe_markers_share_their_stream_slot() {
        for stream in [
            "warble.events.v1",
            "warble.events.v1.dead-letter",
            "t1-2:keys",
            "{tagged}.stream",
        ] {
            let marker = same_slot_key(stream, ":dedupe:42");
            assert_eq!(
                key_slot(marker.as_bytes()),
                key_slot(stream.as_bytes()),
                "{marker}"
            );
        }
        assert_eq!(
            same_slot_key("warble.events.v1", ":dedupe:7"),
            "{warble.events.v1}:dedupe:7"
        );
    }
}
