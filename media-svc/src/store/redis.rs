//! The production metadata store: Redis, single node or cluster.
//!
//! Each record is a hash `{prefix}media:{id}`: `doc` holds the record's
//! JSON as uploaded (what never changes), and `owner`, `kind`, `state`,
//! `claim`, `until`, `tweet` and `due` the fields that do. Every state change
//! is one Lua script on that one hash, so it is atomic and works on a
//! cluster (one key per script). Ids stay strings inside Lua: Snowflake ids
//! exceed a Lua number's 53-bit precision.
//!
//! The due index is one sorted set `{prefix}media:due` (member: id, score:
//! due time). It is updated after the hash, in an order that only ever
//! leaves an extra entry behind, never a missing one: an entry whose
//! record is attached or gone is dropped by the next sweep.
//!
//! Claims of several ids are one script per id; a conflict on a later id
//! releases the earlier ones, so the claim is still all or nothing as seen
//! by any other claim (a concurrent claim of the same ids fails on the
//! first it finds taken).
//!
//! The Redis must keep what it is told: append-only persistence on and
//! `maxmemory-policy noeviction`, like the event log's.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::Value;
use warble_mesh::redis_client::{RedisClient, RedisScript, Request};

use super::{Conflict, Kind, MediaRecord, MediaStore, Removal, State};
use crate::error::MediaError;

/// See the module docs.
#[derive(Clone)]
pub struct RedisMediaStore {
    client: RedisClient,
    prefix: String,
}

impl std::fmt::Debug for RedisMediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMediaStore")
            .field("address", &self.client.address())
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> MediaError {
    MediaError::storage(error)
}

/// The outcome words the scripts return, as conflicts.
fn conflict(word: &str) -> Option<Conflict> {
    match word {
        "missing" => Some(Conflict::Missing),
        "not_owner" => Some(Conflict::NotOwner),
        "claimed" => Some(Conflict::Claimed),
        "attached" => Some(Conflict::Attached),
        "gone" => Some(Conflict::Gone),
        "not_image" => Some(Conflict::NotImage),
        _ => None,
    }
}

/// ARGV: owner, claim key, now, until. Returns "ok" or a conflict word.
static CLAIM: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'state', 'claim', 'until')
if not f[1] then return 'missing' end
if f[1] ~= ARGV[1] then return 'not_owner' end
local state = f[2]
if state == 'claimed' then
  if f[3] ~= ARGV[2] and tonumber(f[4]) > tonumber(ARGV[3]) then return 'claimed' end
elseif state == 'attached' then
  if f[3] == ARGV[2] then return 'ok' end
  return 'attached'
elseif state ~= 'uploaded' then return 'gone' end
redis.call('HSET', KEYS[1], 'state', 'claimed', 'claim', ARGV[2], 'until', ARGV[4])
return 'ok'
"#,
    )
});

/// ARGV: owner, claim key. Returns 1 when released.
static RELEASE: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'state', 'claim')
if f[1] == ARGV[1] and f[2] == 'claimed' and f[3] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'state', 'uploaded')
  redis.call('HDEL', KEYS[1], 'claim', 'until')
  return 1
end
return 0
"#,
    )
});

/// ARGV: owner, tweet id. Returns "attached_now", "same" or a conflict word.
static ATTACH: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'state', 'tweet')
if not f[1] then return 'missing' end
if f[1] ~= ARGV[1] then return 'not_owner' end
local state = f[2]
if state == 'attached' then
  if f[3] == ARGV[2] then return 'same' end
  return 'attached'
end
if state ~= 'uploaded' and state ~= 'claimed' then return 'gone' end
redis.call('HSET', KEYS[1], 'state', 'attached', 'tweet', ARGV[2])
-- The claim that attached it stays, so a retried post can claim it again.
if state == 'uploaded' then redis.call('HDEL', KEYS[1], 'claim') end
redis.call('HDEL', KEYS[1], 'until')
return 'attached_now'
"#,
    )
});

/// ARGV: owner. Returns "ok" or a conflict word.
static AVATAR: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'state', 'tweet', 'kind')
if not f[1] then return 'missing' end
if f[1] ~= ARGV[1] then return 'not_owner' end
if f[4] ~= 'image' then return 'not_image' end
local state = f[2]
if state == 'attached' then
  if f[3] ~= '0' then return 'attached' end
elseif state == 'claimed' then return 'claimed'
elseif state ~= 'uploaded' then return 'gone' end
redis.call('HSET', KEYS[1], 'state', 'attached', 'tweet', '0')
return 'ok'
"#,
    )
});

/// ARGV: tweet id, due time. Returns the due time now set, or false.
static SCHEDULE: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'state', 'tweet', 'due')
if f[1] == 'attached' and f[2] == ARGV[1] and ARGV[1] ~= '0' then
  redis.call('HSET', KEYS[1], 'state', 'deleting', 'due', ARGV[2])
  return ARGV[2]
end
if f[1] == 'deleting' and f[2] == ARGV[1] then return f[3] end
return false
"#,
    )
});

/// ARGV: now. Returns "remove", "undue", "missing" or the later due time.
static BEGIN_REMOVAL: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'state', 'due', 'until')
local state = f[1]
if not state then return 'missing' end
if state == 'attached' then return 'undue' end
if state == 'removing' then return 'remove' end
local now = tonumber(ARGV[1])
local due = tonumber(f[2])
if state == 'claimed' and tonumber(f[3]) > now then
  local later = math.max(due, tonumber(f[3]))
  redis.call('HSET', KEYS[1], 'due', later)
  return tostring(later)
end
if due <= now then
  redis.call('HSET', KEYS[1], 'state', 'removing')
  return 'remove'
end
return tostring(due)
"#,
    )
});

impl RedisMediaStore {
    /// A store on `client`, its keys under `prefix`.
    pub fn new(client: RedisClient, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    fn key(&self, id: u64) -> String {
        format!("{}media:{id}", self.prefix)
    }

    fn due_key(&self) -> String {
        format!("{}media:due", self.prefix)
    }

    async fn word(&self, request: Request) -> Result<String, MediaError> {
        self.client.query::<String>(request).await.map_err(failed)
    }

    /// The record a hash holds, or `None` for an empty reply (no such key).
    fn record(fields: HashMap<String, String>) -> Result<Option<MediaRecord>, MediaError> {
        let Some(doc) = fields.get("doc") else {
            return Ok(None);
        };
        let mut record = MediaRecord::decode(doc.as_bytes())?;
        let number = |name: &str| -> Result<i64, MediaError> {
            fields
                .get(name)
                .map(|value| value.parse::<i64>())
                .transpose()
                .map_err(MediaError::storage)?
                .ok_or_else(|| MediaError::storage(format!("media hash lacks `{name}`")))
        };
        record.due_ms = number("due")?;
        record.attached_by_claim = String::new();
        record.state = match fields.get("state").map(String::as_str) {
            Some("uploaded") => State::Uploaded,
            Some("claimed") => State::Claimed {
                key: fields.get("claim").cloned().unwrap_or_default(),
                until_ms: number("until")?,
            },
            Some("attached") => {
                record.attached_by_claim = fields.get("claim").cloned().unwrap_or_default();
                State::Attached {
                    tweet_id: fields
                        .get("tweet")
                        .map(|value| value.parse::<u64>())
                        .transpose()
                        .map_err(MediaError::storage)?
                        .unwrap_or(0),
                }
            }
            Some("deleting") => State::Deleting,
            Some("removing") => State::Removing,
            other => {
                return Err(MediaError::storage(format!(
                    "media hash has an unknown state {other:?}"
                )));
            }
        };
        Ok(Some(record))
    }
}

#[async_trait]
impl MediaStore for RedisMediaStore {
    async fn insert(&self, record: &MediaRecord) -> Result<(), MediaError> {
        let kind = match record.kind {
            Kind::Image => "image",
            Kind::Video => "video",
        };
        // Index first: a crash between the two leaves an index entry
        // without a record, which the sweeper drops.
        self.client
            .query::<Value>(
                Request::new("ZADD", self.due_key())
                    .arg(record.due_ms)
                    .arg(record.id),
            )
            .await
            .map_err(failed)?;
        self.client
            .query::<Value>(
                Request::new("HSET", self.key(record.id))
                    .arg("doc")
                    .arg(record.encode())
                    .arg("owner")
                    .arg(record.owner_id.to_string())
                    .arg("kind")
                    .arg(kind)
                    .arg("state")
                    .arg("uploaded")
                    .arg("due")
                    .arg(record.due_ms),
            )
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn get_many(&self, ids: &[u64]) -> Result<Vec<Option<MediaRecord>>, MediaError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let requests: Vec<Request> = ids
            .iter()
            .map(|id| Request::new("HGETALL", self.key(*id)))
            .collect();
        let replies = self.client.batch(&requests).await.map_err(failed)?;
        replies
            .into_iter()
            .map(|reply| {
                let fields: HashMap<String, String> =
                    redis::from_redis_value(reply).map_err(failed)?;
                Self::record(fields)
            })
            .collect()
    }

    async fn claim(
        &self,
        owner_id: u64,
        ids: &[u64],
        claim_key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Result<(), (u64, Conflict)>, MediaError> {
        let owner = owner_id.to_string();
        for (index, &id) in ids.iter().enumerate() {
            let outcome = self
                .word(
                    CLAIM
                        .call(&[self.key(id)])
                        .arg(&owner)
                        .arg(claim_key)
                        .arg(now_ms)
                        .arg(until_ms),
                )
                .await?;
            if let Some(conflict) = conflict(&outcome) {
                self.release(owner_id, &ids[..index], claim_key).await?;
                return Ok(Err((id, conflict)));
            }
        }
        Ok(Ok(()))
    }

    async fn release(&self, owner_id: u64, ids: &[u64], claim_key: &str) -> Result<(), MediaError> {
        if ids.is_empty() {
            return Ok(());
        }
        let owner = owner_id.to_string();
        let requests: Vec<Request> = ids
            .iter()
            .map(|id| RELEASE.call(&[self.key(*id)]).arg(&owner).arg(claim_key))
            .collect();
        self.client.batch(&requests).await.map_err(failed)?;
        Ok(())
    }

    async fn attach(
        &self,
        tweet_id: u64,
        owner_id: u64,
        ids: &[u64],
    ) -> Result<Vec<(u64, Conflict)>, MediaError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let owner = owner_id.to_string();
        let tweet = tweet_id.to_string();
        let requests: Vec<Request> = ids
            .iter()
            .map(|id| ATTACH.call(&[self.key(*id)]).arg(&owner).arg(&tweet))
            .collect();
        let replies = self.client.batch(&requests).await.map_err(failed)?;
        let mut skipped = Vec::new();
        let mut attached = Request::new("ZREM", self.due_key());
        let mut any_attached = false;
        for (&id, reply) in ids.iter().zip(replies) {
            let word: String = redis::from_redis_value(reply).map_err(failed)?;
            match conflict(&word) {
                Some(conflict) => skipped.push((id, conflict)),
                None => {
                    attached = attached.arg(id);
                    any_attached = true;
                }
            }
        }
        if any_attached {
            self.client.query::<Value>(attached).await.map_err(failed)?;
        }
        Ok(skipped)
    }

    async fn use_as_avatar(
        &self,
        owner_id: u64,
        id: u64,
    ) -> Result<Result<MediaRecord, Conflict>, MediaError> {
        let outcome = self
            .word(AVATAR.call(&[self.key(id)]).arg(owner_id.to_string()))
            .await?;
        if let Some(conflict) = conflict(&outcome) {
            return Ok(Err(conflict));
        }
        self.client
            .query::<Value>(Request::new("ZREM", self.due_key()).arg(id))
            .await
            .map_err(failed)?;
        match self.get_many(&[id]).await?.pop().flatten() {
            Some(record) => Ok(Ok(record)),
            None => Ok(Err(Conflict::Missing)),
        }
    }

    async fn schedule_deletion(
        &self,
        tweet_id: u64,
        ids: &[u64],
        due_ms: i64,
    ) -> Result<(), MediaError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tweet = tweet_id.to_string();
        let requests: Vec<Request> = ids
            .iter()
            .map(|id| SCHEDULE.call(&[self.key(*id)]).arg(&tweet).arg(due_ms))
            .collect();
        let replies = self.client.batch(&requests).await.map_err(failed)?;
        let mut index = Vec::new();
        for (&id, reply) in ids.iter().zip(replies) {
            let due: Option<i64> = redis::from_redis_value(reply).map_err(failed)?;
            if let Some(due) = due {
                index.push(Request::new("ZADD", self.due_key()).arg(due).arg(id));
            }
        }
        if !index.is_empty() {
            self.client.batch(&index).await.map_err(failed)?;
        }
        Ok(())
    }

    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<u64>, MediaError> {
        let ids: Vec<u64> = self
            .client
            .query(
                Request::new("ZRANGEBYSCORE", self.due_key())
                    .arg("-inf")
                    .arg(now_ms)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await
            .map_err(failed)?;
        Ok(ids)
    }

    async fn begin_removal(&self, id: u64, now_ms: i64) -> Result<Removal, MediaError> {
        let outcome = self
            .word(BEGIN_REMOVAL.call(&[self.key(id)]).arg(now_ms))
            .await?;
        match outcome.as_str() {
            "remove" => match self.get_many(&[id]).await?.pop().flatten() {
                Some(record) => Ok(Removal::Remove(Box::new(record))),
                None => Ok(Removal::Keep),
            },
            "undue" | "missing" => {
                self.client
                    .query::<Value>(Request::new("ZREM", self.due_key()).arg(id))
                    .await
                    .map_err(failed)?;
                Ok(Removal::Keep)
            }
            later => {
                let due: i64 = later.parse().map_err(MediaError::storage)?;
                self.client
                    .query::<Value>(Request::new("ZADD", self.due_key()).arg(due).arg(id))
                    .await
                    .map_err(failed)?;
                Ok(Removal::Keep)
            }
        }
    }

    async fn finish_removal(&self, id: u64) -> Result<(), MediaError> {
        // The record first: an index entry left behind is dropped as missing.
        self.client
            .query::<Value>(Request::new("DEL", self.key(id)))
            .await
            .map_err(failed)?;
        self.client
            .query::<Value>(Request::new("ZREM", self.due_key()).arg(id))
            .await
            .map_err(failed)?;
        Ok(())
    }
}
