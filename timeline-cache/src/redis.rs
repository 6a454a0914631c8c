//! The timeline cache on Redis, shared by timeline-svc and fanout-svc
//! running as separate processes (single node or Redis Cluster alike).
//!
//! # Key layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tl:<user>` | sorted set | the home timeline: one member per entry, plus the *built* sentinel |
//! | `cel:<author>` | sorted set | a celebrity's recent tweet ids, plus the *filled* sentinel |
//! | `la:<bucket>` | sorted set | last-active marks: member = user id, score = Unix ms; users spread over 1,024 buckets |
//!
//! (each after an optional prefix, [`RedisTimelineCache::with_key_prefix`]).
//!
//! # Idle users' keys expire
//!
//! With [`RedisTimelineCache::with_idle_expiry`] (the inactivity window
//! fan-out uses), a timeline lives that long after it was last built or
//! read: each read of a built timeline renews its `PEXPIRE` inside the read
//! script, so the timeline of a user who stopped reading goes, and their
//! next read rebuilds it. Activity marks older than the window are removed
//! from their bucket whenever the bucket gets a new mark (fan-out treats a
//! missing mark as it treats an idle one: no push).
//! No key has a hash tag: on a cluster, timelines spread over every node by
//! their own names. A command touching several keys (a fan-out's script
//! calls, below) only ever carries keys of one hash slot there.
//!
//! # Members, not scores, carry the ids
//!
//! Tweet ids are 64-bit Snowflakes (up to 2^63) and sorted-set scores are
//! f64, exact only up to 2^53: two tweets a few milliseconds apart can share
//! a score, and an id cannot be recovered from one. So every member has
//! score 0 and *is* the data, in fixed-width big-endian binary: a tweet's
//! own entry is `tweet id (8 bytes) ++ author id (8 bytes)`, a retweet
//! `retweet id ++ author id ++ tweet id ++ retweeter id` (32 bytes), in a
//! timeline and a celebrity set alike (older celebrity sets may still hold
//! bare 8-byte tweet ids, read as the celebrity's own tweets). Either way a
//! member starts with its position. With equal scores Redis orders members
//! bytewise, which for big-endian fixed-width integers is numeric order;
//! reads page with `ZREVRANGEBYLEX` from an exclusive bound `(<before>`, and
//! trimming by rank drops the lowest, i.e. oldest, ids. (Binary rather than
//! hex halves each member: at 800 entries for millions of users that is
//! gigabytes.)
//!
//! # Built and filled flags are sentinel members
//!
//! A timeline is *built* when its set holds the member `0xFF × 17`, which
//! sorts above every 16-byte entry (a celebrity set: `0xFF × 9`, above every
//! 8-byte id). A flag inside the set vanishes with it: `DEL`, expiry or a
//! `maxmemory` eviction can never leave a "built" flag on a lost timeline,
//! which would serve an empty timeline as a hit. Reads skip the sentinel by
//! starting below it; lengths and the cap do not count it.
//!
//! # The cap without doubling commands
//!
//! Adding to sets is one `EVALSHA` of a small script that, for each set it
//! is given, skips an entry already present (by position, whatever the
//! rest: a `ZREVRANGEBYLEX ... LIMIT 0 1` over the position's range of
//! members), skips a pushed retweet whose tweet is among the newest
//! [`RETWEET_DEDUP_WINDOW`] members, `ZADD`s,
//! and only when the set then exceeds its cap runs `ZREMRANGEBYRANK` on the
//! oldest excess. A script runs atomically: no reader ever sees 801
//! entries, and an entry older than a full timeline's oldest is added and
//! dropped in the same step, i.e. not kept, as the contract says. (Trimming
//! every Nth insert instead would need readers to ignore entries past the
//! cap, and then a later removal would resurrect an entry the contract says
//! was never kept.)
//!
//! The duplicate check looks from the newest end because a set of up to 128
//! members is a listpack, scanned element by element: `ZLEXCOUNT` walks it
//! from the oldest member, copying each, to reach a new tweet's place at the
//! top. Measured with callgrind on Redis 7.0.15, pushing a new tweet to 5,000
//! timelines of ~50 entries: 70,000 server instructions per delivery with
//! `ZLEXCOUNT` (and numbers passed from Lua, each formatted with `sprintf`),
//! 42,000 now; on full 800-entry timelines (skiplists) both ~36,000.
//!
//! # Fan-out is one round trip of few commands
//!
//! [`TimelineCache::push`] to thousands of users is one script call per
//! group of timelines, each set treated exactly as above on its own: on a
//! single node up to [`KEYS_PER_CALL`] timelines per call, so the server
//! parses, looks up and answers one command per 128 deliveries rather than
//! per delivery; on a cluster, where one script's keys must share a hash
//! slot, the timelines of one slot per call (mostly a single timeline:
//! correct, but no cheaper than one call per follower).
//!
//! `remove` from many users, `celebrity_recent` for many authors and
//! `last_active` for many users build one command per key (or bucket). A
//! removal stays one plain `ZREMRANGEBYLEX` per timeline: grouped into
//! multi-key scripts it cost the server slightly more, not less (measured:
//! about 1.4 µs of server CPU per timeline plain, 1.5 µs in a script).
//!
//! Last-active marks stay one `ZMSCORE` per bucket touched (a 5,000-follower
//! page touches nearly all 1,024) for the same reason, by a wider margin.
//! Measured with callgrind on Redis 7.0.15, 50,000 marks read in pages of
//! 5,000, server instructions per user: `ZMSCORE` per bucket 8,400; one
//! script per 128 users calling `ZSCORE` for each 15,300; the users sorted
//! by bucket and one `ZMSCORE` per bucket inside the script 13,900. Whatever
//! the command, the server scans the user's bucket and formats their score
//! as text (three quarters of the 8,400); from a script each `redis.call`
//! then costs more than the command parsing it saves. Checking the marks
//! inside `push`'s script would pay that per-call cost too, and a cluster
//! rules it out anyway: a timeline and its owner's bucket lie in different
//! hash slots, and a script may only touch keys of one.
//!
//! Every batch goes out with [`RedisClient::batch`]: one pipeline per node
//! (at most [`warble_mesh::redis_client::PIPELINE_MAX`] commands each, sent
//! concurrently), so a page of 5,000 followers costs one round trip, not
//! 5,000.
//!
//! Needs Redis 6.2 or later (`ZADD GT`, `ZMSCORE`); the client requires 7.0.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisError, Value};
use warble_mesh::backends::RedisConfig;
use warble_mesh::redis_client::{RedisClient, RedisClientError, RedisScript, Request, key_slot};

use crate::{
    CELEBRITY_CAPACITY, CacheError, CachedPage, Entry, RETWEET_DEDUP_WINDOW, RecentEntries,
    Removal, TIMELINE_CAPACITY, TimelineCache,
};

/// Sorts above every 16-byte timeline member: the *built* flag.
const BUILT: [u8; 17] = [0xFF; 17];
/// Sorts above every 8-byte celebrity member: the *filled* flag.
const FILLED: [u8; 9] = [0xFF; 9];
/// Last-active buckets. Changing it orphans every existing mark (users are
/// then treated as never seen until they are active again).
const LAST_ACTIVE_BUCKETS: u64 = 1_024;

/// Timelines per multi-key [`ADD_CAPPED`] call from `push` on a single
/// node. Measured there (server CPU per delivery, `push` to 50,000 small
/// timelines): one key per call 6.6 µs, 16 keys 4.2 µs, 64 to 512 keys a
/// flat 3.8–4.0 µs. 128 sits on that plateau while holding the server's
/// event loop for only about half a millisecond per call.
const KEYS_PER_CALL: usize = 128;

/// KEYS capped sets; ARGV sentinel, cap, mark ('1' adds the sentinel),
/// retweet window (0 for none), members. To each set in turn: adds each
/// member unless one with the same leading 8-byte position is present, or
/// it is a retweet (32 bytes) whose tweet is among the set's newest
/// `window` members; trims the oldest beyond the cap (not counting the
/// sentinel), then marks. Returns how many members were added in all.
static ADD_CAPPED: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local sentinel, cap, mark, window = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]
-- Each member's position range, built once for every set.
local members, firsts, lasts, retweeted = {}, {}, {}, {}
for i = 5, #ARGV do
  local member = ARGV[i]
  local position = string.sub(member, 1, 8)
  members[#members + 1] = member
  firsts[#firsts + 1] = '[' .. position
  lasts[#lasts + 1] = '[' .. position .. string.rep('\255', #member - 8)
  retweeted[#retweeted + 1] = window ~= '0' and #member == 32 and string.sub(member, 17, 24) or false
end
-- Whether the newest `window` members of `key` hold `tweet` (its own entry,
-- or a retweet of it).
local function recently_shown(key, tweet)
  local newest = redis.call('ZREVRANGEBYLEX', key, '(' .. sentinel, '-', 'LIMIT', '0', window)
  for _, member in ipairs(newest) do
    if (#member == 16 and string.sub(member, 1, 8) == tweet)
      or (#member == 32 and string.sub(member, 17, 24) == tweet) then
      return true
    end
  end
  return false
end
local added = 0
for _, key in ipairs(KEYS) do
  for i = 1, #members do
    -- From the newest end (see the module docs). Numbers go as strings:
    -- Lua formats a number argument with sprintf on every call.
    if #redis.call('ZREVRANGEBYLEX', key, lasts[i], firsts[i], 'LIMIT', '0', '1') == 0
      and not (retweeted[i] and recently_shown(key, retweeted[i])) then
      redis.call('ZADD', key, '0', members[i])
      added = added + 1
    end
  end
  local len = redis.call('ZCARD', key)
  if len > cap then
    if redis.call('ZSCORE', key, sentinel) then len = len - 1 end
    if len > cap then redis.call('ZREMRANGEBYRANK', key, 0, len - cap - 1) end
  end
  if mark then redis.call('ZADD', key, 0, sentinel) end
end
return added
"#,
    )
});

/// KEYS[1] a capped set; ARGV sentinel, upper bound (exclusive, `(` form),
/// count, lifetime in ms to renew on a hit ('0': none). Nil when the
/// sentinel is absent (a miss); else {length without the sentinel, members
/// below the bound newest first}.
/// KEYS[1] a user's followed-celebrity set; ARGV[1] its lifetime in ms,
/// ARGV[2..] the celebrities. Replaces the set, with the member 0 marking
/// "recorded" so an empty record exists too.
static SET_FOLLOWED: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], '0', unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#,
    )
});

/// KEYS[1] a user's followed-celebrity set; ARGV[1] a celebrity. Adds it
/// only to a set that is recorded.
static ADD_FOLLOWED: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('SADD', KEYS[1], ARGV[1])
end
return 0
"#,
    )
});

static READ: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local len = redis.call('ZCARD', KEYS[1]) - 1
return {len, redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], '-', 'LIMIT', 0, tonumber(ARGV[3]))}
"#,
    )
});

/// KEYS[1] a celebrity set; ARGV sentinel, the entry's position range (low,
/// high, `[` forms), cap. Removes the entry; when the set was full, also
/// the sentinel, so its next read fills it again (see
/// `TimelineCache::celebrity_remove`). Returns how many entries went.
static REMOVE_CELEBRITY_ENTRY: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local filled = redis.call('ZSCORE', KEYS[1], ARGV[1])
local len = redis.call('ZCARD', KEYS[1])
if filled then len = len - 1 end
local removed = redis.call('ZREMRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])
if removed > 0 and filled and len >= tonumber(ARGV[4]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return removed
"#,
    )
});

/// KEYS[1] a timeline; ARGV[1] the 8-byte user id, ARGV[2] '1' to remove
/// every entry involving the user ([`Removal::Involving`]), '0' only those
/// coming from them ([`Removal::ComingFrom`]). Scans at most a timeline's
/// worth; returns how many went.
static REMOVE_USER: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local user, involving = ARGV[1], ARGV[2] == '1'
local doomed = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local gone = false
  if #member == 16 then
    gone = string.sub(member, 9, 16) == user
  elseif #member == 32 then
    gone = string.sub(member, 25, 32) == user
      or (involving and string.sub(member, 9, 16) == user)
  end
  if gone then doomed[#doomed + 1] = member end
end
for i = 1, #doomed, 500 do
  redis.call('ZREM', KEYS[1], unpack(doomed, i, math.min(i + 499, #doomed)))
end
return #doomed
"#,
    )
});

/// [`TimelineCache`] on Redis (see the module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisTimelineCache {
    client: RedisClient,
    prefix: String,
    capacity: usize,
    /// How long a timeline outlives its last build or read, and an
    /// activity mark its time (`None`: forever).
    idle_expiry: Option<Duration>,
}

impl RedisTimelineCache {
    /// The cache on `client`'s Redis, keeping [`TIMELINE_CAPACITY`] entries per timeline.
    pub fn new(client: RedisClient) -> Self {
        Self {
            client,
            prefix: String::new(),
            capacity: TIMELINE_CAPACITY,
            idle_expiry: None,
        }
    }

    /// Connects as `config` says (checking the server answers) and returns the cache.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisClientError> {
        Ok(Self::new(RedisClient::connect(config).await?))
    }

    /// Prepends `prefix` to every key, so several caches (tests,
    /// environments) can share one Redis. Must not contain `{` or `}`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Keeps `capacity` entries per timeline instead (at least 1). Every
    /// process sharing the Redis must use the same value.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Lets idle users' keys expire after `window` (see the module docs):
    /// fan-out's inactivity window, the same in every process.
    pub fn with_idle_expiry(mut self, window: Duration) -> Self {
        self.idle_expiry = Some(window.max(Duration::from_secs(1)));
        self
    }

    /// The idle expiry in milliseconds, `0` for none (the scripts' form).
    fn idle_expiry_ms(&self) -> u64 {
        self.idle_expiry
            .map_or(0, |window| window.as_millis() as u64)
    }

    /// The client this cache uses.
    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    fn timeline_key(&self, user: u64) -> String {
        format!("{}tl:{user}", self.prefix)
    }

    fn celebrity_key(&self, author: u64) -> String {
        format!("{}cel:{author}", self.prefix)
    }

    fn followed_celebrities_key(&self, user: u64) -> String {
        format!("{}fc:{user}", self.prefix)
    }

    /// The key of the bucket holding `user`'s activity mark.
    pub fn last_active_key(&self, user: u64) -> String {
        // Snowflake ids' low bits are mostly sequence zeros: mix before bucketing.
        let bucket = (user.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % LAST_ACTIVE_BUCKETS;
        format!("{}la:{bucket}", self.prefix)
    }

    fn unavailable(&self, error: RedisError) -> CacheError {
        CacheError::Unavailable(format!("redis at {}: {error}", self.client.address()))
    }

    async fn batch(&self, requests: &[Request]) -> Result<Vec<Value>, CacheError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.client
            .batch(requests)
            .await
            .map_err(|error| self.unavailable(error))
    }

    /// One request per group of `users`' timelines that a multi-key script
    /// call may carry: up to [`KEYS_PER_CALL`] keys, in the order given, on
    /// a single node; on a cluster, where a script's keys must share a hash
    /// slot, the keys of one slot (without hash tags, mostly one key each).
    fn per_timeline_group(
        &self,
        users: &[u64],
        request: impl FnMut(&[String]) -> Request,
    ) -> Vec<Request> {
        let keys: Vec<String> = users.iter().map(|&user| self.timeline_key(user)).collect();
        if !self.client.is_cluster() {
            return keys.chunks(KEYS_PER_CALL).map(request).collect();
        }
        let mut by_slot: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for key in keys {
            by_slot
                .entry(key_slot(key.as_bytes()))
                .or_default()
                .push(key);
        }
        by_slot
            .values()
            .flat_map(|keys| keys.chunks(KEYS_PER_CALL))
            .map(request)
            .collect()
    }

    async fn add_capped(
        &self,
        key: String,
        sentinel: &[u8],
        cap: usize,
        mark: bool,
        members: Vec<Vec<u8>>,
    ) -> Result<(), CacheError> {
        let mut request = ADD_CAPPED
            .call(&[key])
            .arg(sentinel)
            .arg(cap)
            .arg(if mark { "1" } else { "0" })
            .arg("0");
        for member in members {
            request = request.arg(member);
        }
        self.batch(&[request]).await.map(|_| ())
    }
}

fn timeline_member(entry: Entry) -> Vec<u8> {
    let mut member = Vec::with_capacity(32);
    member.extend_from_slice(&entry.position().to_be_bytes());
    member.extend_from_slice(&entry.author_id.to_be_bytes());
    if entry.is_retweet() {
        member.extend_from_slice(&entry.tweet_id.to_be_bytes());
        member.extend_from_slice(&entry.retweeted_by.to_be_bytes());
    }
    member
}

/// The entry a member holds; a bare 8-byte member (an older celebrity set)
/// is `owner`'s own tweet. `None` for anything else.
fn parse_member(member: &[u8], owner: u64) -> Option<Entry> {
    match member.len() {
        8 => Some(Entry::tweet(u64_at(member, 0)?, owner)),
        16 => Some(Entry::tweet(u64_at(member, 0)?, u64_at(member, 8)?)),
        32 => Some(Entry::retweet(
            u64_at(member, 0)?,
            u64_at(member, 24)?,
            u64_at(member, 16)?,
            u64_at(member, 8)?,
        )),
        _ => None,
    }
}

/// The inclusive `ZRANGEBYLEX` bounds of every member at `position`,
/// whatever its length.
fn position_range(position: u64) -> (Vec<u8>, Vec<u8>) {
    let mut low = vec![b'['];
    low.extend_from_slice(&position.to_be_bytes());
    let mut high = low.clone();
    high.extend_from_slice(&[0xFF; 24]);
    (low, high)
}

/// An exclusive upper bound for `ZREVRANGEBYLEX`: below `before`'s tweet id,
/// or below the sentinel (everything) when `None`.
fn upper_bound(before: Option<u64>, sentinel: &[u8]) -> Vec<u8> {
    let mut bound = vec![b'('];
    match before {
        Some(before) => bound.extend_from_slice(&before.to_be_bytes()),
        None => bound.extend_from_slice(sentinel),
    }
    bound
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|slice| slice.try_into().ok())
        .map(u64::from_be_bytes)
}

/// A [`READ`] reply that hit: the set's length (sentinel excluded) and the members read.
struct SetPage {
    len: usize,
    members: Vec<Vec<u8>>,
}

/// A [`READ`] reply: `None` for a miss.
fn parse_read(value: Value) -> Result<Option<SetPage>, RedisError> {
    match value {
        Value::Nil => Ok(None),
        Value::Array(mut parts) if parts.len() == 2 => {
            let members: Vec<Vec<u8>> = redis::from_redis_value(parts.pop().unwrap_or(Value::Nil))?;
            let len: usize = redis::from_redis_value(parts.pop().unwrap_or(Value::Nil))?;
            Ok(Some(SetPage { len, members }))
        }
        _ => Err(RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected timeline read reply",
        ))),
    }
}

#[async_trait]
impl TimelineCache for RedisTimelineCache {
    async fn push(&self, users: &[u64], entry: Entry) -> Result<(), CacheError> {
        let member = timeline_member(entry);
        let requests = self.per_timeline_group(users, |keys| {
            ADD_CAPPED
                .call(keys)
                .arg(&BUILT[..])
                .arg(self.capacity)
                .arg("0")
                .arg(RETWEET_DEDUP_WINDOW)
                .arg(member.as_slice())
        });
        self.batch(&requests).await.map(|_| ())
    }

    async fn remove(&self, users: &[u64], position: u64) -> Result<(), CacheError> {
        let (low, high) = position_range(position);
        let requests: Vec<Request> = users
            .iter()
            .map(|&user| {
                Request::new("ZREMRANGEBYLEX", self.timeline_key(user))
                    .arg(low.as_slice())
                    .arg(high.as_slice())
            })
            .collect();
        self.batch(&requests).await.map(|_| ())
    }

    async fn insert(
        &self,
        user: u64,
        entries: &[Entry],
        mark_built: bool,
    ) -> Result<(), CacheError> {
        if entries.is_empty() && !mark_built {
            return Ok(());
        }
        // Only the first entry at a position counts, and only the
        // `capacity` newest can survive the cap: send no more than that.
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        let mut kept: Vec<Entry> = entries
            .iter()
            .copied()
            .filter(|entry| seen.insert(entry.position()))
            .collect();
        kept.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.position()));
        kept.truncate(self.capacity);
        let members = kept.into_iter().map(timeline_member).collect();
        self.add_capped(
            self.timeline_key(user),
            &BUILT,
            self.capacity,
            mark_built,
            members,
        )
        .await?;
        // A build starts the timeline's life; reads renew it.
        if mark_built && let Some(window) = self.idle_expiry {
            let request =
                Request::new("PEXPIRE", self.timeline_key(user)).arg(window.as_millis() as u64);
            self.batch(&[request]).await?;
        }
        Ok(())
    }

    async fn remove_user(&self, user: u64, other: u64, removal: Removal) -> Result<(), CacheError> {
        let request = REMOVE_USER
            .call(&[self.timeline_key(user)])
            .arg(&other.to_be_bytes()[..])
            .arg(match removal {
                Removal::Involving => "1",
                Removal::ComingFrom => "0",
            });
        self.batch(&[request]).await.map(|_| ())
    }

    async fn evict(&self, user: u64) -> Result<(), CacheError> {
        self.batch(&[Request::new("DEL", self.timeline_key(user))])
            .await
            .map(|_| ())
    }

    async fn read(
        &self,
        user: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Option<CachedPage>, CacheError> {
        // One more than asked tells whether more follow; a timeline never
        // holds more than its capacity.
        let fetch = limit.min(self.capacity) + 1;
        let request = READ
            .call(&[self.timeline_key(user)])
            .arg(&BUILT[..])
            .arg(upper_bound(before, &BUILT))
            .arg(fetch)
            .arg(self.idle_expiry_ms());
        let reply = self.batch(&[request]).await?.pop().unwrap_or(Value::Nil);
        let Some(SetPage { len, members }) =
            parse_read(reply).map_err(|error| self.unavailable(error))?
        else {
            return Ok(None);
        };
        let has_more = members.len() > limit;
        let entries = members
            .iter()
            .take(limit)
            .filter_map(|member| parse_member(member, 0))
            .collect();
        Ok(Some(CachedPage {
            entries,
            has_more,
            len,
        }))
    }

    async fn celebrity_add(&self, celebrity: u64, entry: Entry) -> Result<(), CacheError> {
        self.add_capped(
            self.celebrity_key(celebrity),
            &FILLED,
            CELEBRITY_CAPACITY,
            false,
            vec![timeline_member(entry)],
        )
        .await
    }

    async fn celebrity_remove(&self, celebrity: u64, position: u64) -> Result<(), CacheError> {
        let (low, high) = position_range(position);
        let request = REMOVE_CELEBRITY_ENTRY
            .call(&[self.celebrity_key(celebrity)])
            .arg(&FILLED[..])
            .arg(low.as_slice())
            .arg(high.as_slice())
            .arg(CELEBRITY_CAPACITY);
        self.batch(&[request]).await.map(|_| ())
    }

    async fn celebrity_fill(&self, celebrity: u64, entries: &[Entry]) -> Result<(), CacheError> {
        let mut newest = entries.to_vec();
        newest.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.position()));
        newest.dedup_by_key(|entry| entry.position());
        newest.truncate(CELEBRITY_CAPACITY);
        let members = newest.into_iter().map(timeline_member).collect();
        self.add_capped(
            self.celebrity_key(celebrity),
            &FILLED,
            CELEBRITY_CAPACITY,
            true,
            members,
        )
        .await
    }

    async fn celebrity_recent(
        &self,
        celebrities: &[u64],
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Option<RecentEntries>>, CacheError> {
        let bound = upper_bound(before, &FILLED);
        let fetch = limit.min(CELEBRITY_CAPACITY);
        let requests: Vec<Request> = celebrities
            .iter()
            .map(|&celebrity| {
                READ.call(&[self.celebrity_key(celebrity)])
                    .arg(&FILLED[..])
                    .arg(bound.as_slice())
                    .arg(fetch)
                    .arg("0")
            })
            .collect();
        self.batch(&requests)
            .await?
            .into_iter()
            .zip(celebrities)
            .map(|(reply, &celebrity)| {
                let read = parse_read(reply).map_err(|error| self.unavailable(error))?;
                Ok(read.map(|page| RecentEntries {
                    entries: page
                        .members
                        .iter()
                        .filter_map(|member| parse_member(member, celebrity))
                        .collect(),
                    complete: page.len < CELEBRITY_CAPACITY,
                }))
            })
            .collect()
    }

    async fn mark_active(&self, user: u64, at_ms: u64) -> Result<(), CacheError> {
        // GT: a mark only moves forward, atomically, in one command. Scores
        // hold Unix milliseconds exactly (well below 2^53).
        let key = self.last_active_key(user);
        let mut requests = vec![Request::new("ZADD", &key).arg("GT").arg(at_ms).arg(user)];
        if let Some(window) = self.idle_expiry {
            // Marks past the window say no more than a missing one: prune
            // them (same key, same pipeline; cheap when there are none).
            let cutoff = warble_mesh::time::now_ms().saturating_sub(window.as_millis() as u64);
            requests.push(
                Request::new("ZREMRANGEBYSCORE", &key)
                    .arg("-inf")
                    .arg(format!("({cutoff}")),
            );
        }
        self.batch(&requests).await.map(|_| ())
    }

    async fn last_active(&self, users: &[u64]) -> Result<Vec<Option<u64>>, CacheError> {
        // One ZMSCORE per bucket touched, all in one batch; not a script
        // (see the module docs: it costs the server more, not less).
        let mut buckets: Vec<(String, Vec<usize>)> = Vec::new();
        let mut bucket_of: std::collections::HashMap<String, usize> = Default::default();
        for (position, &user) in users.iter().enumerate() {
            let key = self.last_active_key(user);
            let bucket = *bucket_of.entry(key.clone()).or_insert_with(|| {
                buckets.push((key, Vec::new()));
                buckets.len() - 1
            });
            buckets[bucket].1.push(position);
        }
        let requests: Vec<Request> = buckets
            .iter()
            .map(|(key, positions)| {
                positions
                    .iter()
                    .fold(Request::new("ZMSCORE", key), |request, &position| {
                        request.arg(users[position])
                    })
            })
            .collect();
        let replies = self.batch(&requests).await?;
        let mut marks = vec![None; users.len()];
        for ((_, positions), reply) in buckets.iter().zip(replies) {
            let scores: Vec<Option<f64>> =
                redis::from_redis_value(reply).map_err(|error| self.unavailable(error.into()))?;
            for (&position, score) in positions.iter().zip(scores) {
                marks[position] = score.map(|score| score as u64);
            }
        }
        Ok(marks)
    }

    async fn followed_celebrities(&self, user: u64) -> Result<Option<Vec<u64>>, CacheError> {
        let reply = self
            .batch(&[Request::new(
                "SMEMBERS",
                self.followed_celebrities_key(user),
            )])
            .await?;
        let members: Vec<u64> = match reply.into_iter().next() {
            Some(value) => {
                redis::from_redis_value(value).map_err(|error| self.unavailable(error.into()))?
            }
            None => Vec::new(),
        };
        // No key: nothing recorded. The member 0 marks a record, empty or not.
        if members.is_empty() {
            return Ok(None);
        }
        let mut celebrities: Vec<u64> = members.into_iter().filter(|id| *id != 0).collect();
        celebrities.sort_unstable();
        Ok(Some(celebrities))
    }

    async fn set_followed_celebrities(
        &self,
        user: u64,
        celebrities: &[u64],
    ) -> Result<(), CacheError> {
        let mut request = SET_FOLLOWED
            .call(&[self.followed_celebrities_key(user)])
            .arg(crate::FOLLOWED_CELEBRITIES_TTL.as_millis() as u64);
        for celebrity in celebrities {
            request = request.arg(*celebrity);
        }
        self.batch(&[request]).await.map(|_| ())
    }

    async fn add_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError> {
        let requests: Vec<Request> = users
            .iter()
            .map(|user| {
                ADD_FOLLOWED
                    .call(&[self.followed_celebrities_key(*user)])
                    .arg(celebrity)
            })
            .collect();
        self.batch(&requests).await.map(|_| ())
    }

    async fn remove_followed_celebrity(
        &self,
        users: &[u64],
        celebrity: u64,
    ) -> Result<(), CacheError> {
        let requests: Vec<Request> = users
            .iter()
            .map(|user| Request::new("SREM", self.followed_celebrities_key(*user)).arg(celebrity))
            .collect();
        self.batch(&requests).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sort_bytewise_as_their_ids_do() {
        let ids = [
            0u64,
            1,
            255,
            256,
            (1 << 53) + 1,
            (1 << 53) + 2,
            (1 << 63) - 1,
            u64::MAX,
        ];
        for pair in ids.windows(2) {
            // A retweet's longer member still sorts by its position (id 0
            // cannot be a retweet's).
            let low = match pair[0] {
                0 => Entry::tweet(0, u64::MAX),
                id => Entry::retweet(id, u64::MAX, u64::MAX, u64::MAX),
            };
            let (low, high) = (
                timeline_member(low),
                timeline_member(Entry::tweet(pair[1], 0)),
            );
            assert!(low < high, "{pair:?}");
            assert!(
                high.as_slice() < &BUILT[..],
                "the sentinel sorts above every entry"
            );
        }
        assert!(u64::MAX.to_be_bytes()[..] < FILLED[..]);
    }

    #[test]
    fn bounds_exclude_the_given_id_and_the_sentinel() {
        let bound = upper_bound(Some(7), &BUILT);
        assert_eq!(bound[0], b'(');
        let member = timeline_member(Entry::tweet(7, 0));
        assert!(
            &bound[1..] < member.as_slice(),
            "entries of tweet 7 are excluded"
        );
        let older = timeline_member(Entry::retweet(6, u64::MAX, u64::MAX, u64::MAX));
        assert!(older.as_slice() < &bound[1..]);
    }

    #[test]
    fn members_round_trip_and_start_with_their_position() {
        for entry in [Entry::tweet(5, 9), Entry::retweet(11, 3, 5, 9)] {
            let member = timeline_member(entry);
            assert_eq!(u64_at(&member, 0), Some(entry.position()));
            assert_eq!(parse_member(&member, 0), Some(entry));
        }
        assert_eq!(
            parse_member(&5u64.to_be_bytes(), 9),
            Some(Entry::tweet(5, 9)),
            "a bare id in an older celebrity set is the celebrity's tweet"
        );
        assert_eq!(parse_member(&[1, 2, 3], 0), None);
    }
}
