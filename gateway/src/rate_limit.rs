//! Rate limits: requests per client, mutations per user, sign-ups and
//! token requests per client address.
//!
//! Each limit is a GCRA (generic cell rate algorithm) bucket: `burst`
//! requests at once, then one every `60 / per_minute` seconds. A refusal
//! says when the next request will pass (`retryAfter`, and HTTP 429 with
//! `Retry-After`). With Redis configured (`events.backend = "redis"`), the
//! buckets live in Redis, one key each, updated by one script call, so every
//! gateway replica enforces the same limit; otherwise they live in this
//! process. If Redis cannot answer, the request passes (a warning is
//! logged): a cache outage must not take the API down with it.
//!
//! A round trip to Redis for every request would cost each request a
//! wait and Redis a script run (in the five-process read benchmark, the
//! rate-limit Redis used more CPU than the timeline cache's). So a
//! replica takes a bucket's cells in **claims**: up to a tenth of the
//! burst at once, sized by how fast the client spent its last claim
//! (doubling while a claim runs out within its [`CLAIM_LIFETIME`], halving
//! when cells were left over), and serves requests from the claim without
//! asking Redis. Cells are charged in Redis when claimed, so no client is
//! ever admitted beyond its limit, whatever the number of replicas; cells
//! left when a claim lapses are lost to the client, so one spreading its
//! requests over replicas may be refused up to a tenth of its burst early.
//! Buckets whose burst is under 20 (sign-ups, token requests, mutations
//! by default) are never claimed ahead: every request asks Redis.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use warble_mesh::redis_client::{RedisClient, RedisScript};

/// One limit: `burst` at once, `per_minute` sustained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests regained per minute.
    pub per_minute: u32,
}

impl Rate {
    /// Time between two requests at the sustained rate.
    fn interval(self) -> Duration {
        Duration::from_secs_f64(60.0 / f64::from(self.per_minute.max(1)))
    }

    /// How far ahead of now the bucket's theoretical arrival time may run.
    fn tolerance(self) -> Duration {
        self.interval() * self.burst.max(1)
    }
}

/// The outcome of one request against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It passes.
    Allowed,
    /// Refused; the next request passes after this long.
    Limited { retry_after: Duration },
}

/// How long a replica keeps cells it claimed ahead before they lapse.
pub const CLAIM_LIFETIME: Duration = Duration::from_millis(100);
/// Claims kept before lapsed ones are swept.
const SWEEP_CLAIMS_ABOVE: usize = 10_000;

/// Where buckets live.
pub enum RateLimiter {
    /// In this process.
    Memory(MemoryBuckets),
    /// In Redis, shared by every gateway replica.
    Redis(RedisBuckets),
}

/// Buckets in Redis, and the cells this replica claimed ahead.
pub struct RedisBuckets {
    client: RedisClient,
    claims: Mutex<HashMap<String, Claim>>,
}

/// Cells of one bucket claimed ahead by this replica.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// Cells not yet used.
    left: u32,
    /// When the unused cells lapse.
    lapses: Instant,
    /// Cells the next claim asks for.
    next_size: u32,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("RateLimiter::Memory"),
            Self::Redis(buckets) => {
                write!(f, "RateLimiter::Redis({})", buckets.client.address())
            }
        }
    }
}

impl RateLimiter {
    /// Buckets in this process.
    pub fn in_memory() -> Self {
        Self::Memory(MemoryBuckets::default())
    }

    /// Buckets in Redis behind `client`, shared by every replica.
    pub fn redis(client: RedisClient) -> Self {
        Self::Redis(RedisBuckets {
            client,
            claims: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request from `key`'s bucket under `rate`.
    pub async fn acquire(&self, key: &str, rate: Rate) -> Decision {
        match self {
            Self::Memory(buckets) => buckets.acquire(key, rate, Instant::now()),
            Self::Redis(buckets) => buckets.acquire(key, rate).await,
        }
    }
}

impl RedisBuckets {
    async fn acquire(&self, key: &str, rate: Rate) -> Decision {
        let largest_claim = rate.burst / 10;
        if largest_claim < 2 {
            return match self.take(key, rate, 1).await {
                Ok(_) => Decision::Allowed,
                Err(decision) => decision,
            };
        }
        let size = {
            let now = Instant::now();
            let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(claim) = claims.get_mut(key)
                && claim.left > 0
                && now < claim.lapses
            {
                claim.left -= 1;
                return Decision::Allowed;
            }
            if claims.len() > SWEEP_CLAIMS_ABOVE {
                claims.retain(|_, claim| claim.lapses > now);
            }
            claims.get(key).map_or(1, |claim| {
                // Ran out before lapsing: the client spends faster than the
                // claim; lapsed with cells left: slower.
                let size = if claim.left == 0 && now < claim.lapses {
                    claim.next_size
                } else {
                    claim.next_size / 2
                };
                size.clamp(1, largest_claim)
            })
        };
        match self.take(key, rate, size).await {
            Ok(granted) => {
                let now = Instant::now();
                let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
                let claim = claims.entry(key.to_owned()).or_insert(Claim {
                    left: 0,
                    lapses: now,
                    next_size: 1,
                });
                let unexpired = if now < claim.lapses { claim.left } else { 0 };
                // One of the cells serves this request.
                claim.left = unexpired + granted.saturating_sub(1);
                claim.lapses = now + CLAIM_LIFETIME;
                claim.next_size = (size * 2).min(largest_claim);
                Decision::Allowed
            }
            Err(decision) => decision,
        }
    }

    /// Up to `cells` cells from `key`'s bucket in Redis: how many it
    /// granted (at least 1), or the refusal. When Redis cannot answer, one
    /// cell (see the module docs).
    async fn take(&self, key: &str, rate: Rate, cells: u32) -> Result<u32, Decision> {
        // Microseconds: in milliseconds, any rate above 1,000 a second
        // would round to one request per millisecond.
        let interval = rate.interval().as_micros().max(1) as u64;
        let tolerance = rate.tolerance().as_micros().max(1) as u64;
        let request = GCRA
            .call(&[format!("warble:ratelimit:{key}")])
            .arg(interval)
            .arg(tolerance)
            .arg(cells);
        match self.client.query::<(i64, i64)>(request).await {
            Ok((granted, _)) if granted > 0 => Ok(granted as u32),
            Ok((_, wait_us)) => Err(Decision::Limited {
                retry_after: Duration::from_micros(wait_us.max(1) as u64),
            }),
            Err(error) => {
                tracing::warn!(%error, "rate limit store unavailable; letting the request through");
                Ok(1)
            }
        }
    }
}

/// GCRA in one script, for up to a number of cells at once: `KEYS[1]`
/// holds the bucket's theoretical arrival time (µs, Redis's clock, so
/// replicas agree; Lua's doubles hold µs since the epoch exactly); `ARGV`
/// are the interval and the tolerance in µs and the cells wanted. Returns
/// {cells granted, 0}, as many as fit (one cell fits exactly when a single
/// request would pass), or {0, microseconds until one would}. The key
/// expires when the bucket is full again, so idle clients cost nothing.
static GCRA: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + tolerance - tat) / interval)
if room < 1 then
  return {0, tat + interval - now - tolerance}
end
local granted = math.min(wanted, room)
local next_tat = tat + granted * interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000))
return {granted, 0}
"#,
    )
});

/// Buckets kept before full ones are swept.
const SWEEP_ABOVE: usize = 100_000;

/// In-process GCRA buckets: each key's theoretical arrival time.
#[derive(Debug, Default)]
pub struct MemoryBuckets {
    arrivals: Mutex<HashMap<String, Instant>>,
}

impl MemoryBuckets {
    fn acquire(&self, key: &str, rate: Rate, now: Instant) -> Decision {
        let (interval, tolerance) = (rate.interval(), rate.tolerance());
        let mut arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if arrivals.len() > SWEEP_ABOVE {
            // A bucket whose arrival time has passed is full: the same as none.
            arrivals.retain(|_, arrival| *arrival > now);
        }
        let arrival = arrivals.get(key).copied().unwrap_or(now).max(now);
        let next = arrival + interval;
        let ahead = next - now;
        if ahead > tolerance {
            return Decision::Limited {
                retry_after: ahead - tolerance,
            };
        }
        arrivals.insert(key.to_owned(), next);
        Decision::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_PER_MINUTE: Rate = Rate {
        burst: 3,
        per_minute: 3,
    };

    #[test]
    fn a_burst_passes_then_requests_wait_their_interval() {
        let buckets = MemoryBuckets::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                buckets.acquire("a", THREE_PER_MINUTE, start),
                Decision::Allowed
            );
        }
        let Decision::Limited { retry_after } = buckets.acquire("a", THREE_PER_MINUTE, start)
        else {
            panic!("the fourth request at once is refused");
        };
        assert_eq!(retry_after, Duration::from_secs(20), "one interval");
        assert_eq!(
            buckets.acquire("b", THREE_PER_MINUTE, start),
            Decision::Allowed,
            "keys are independent"
        );
        let later = start + Duration::from_secs(20);
        assert_eq!(
            buckets.acquire("a", THREE_PER_MINUTE, later),
            Decision::Allowed
        );
        assert!(matches!(
            buckets.acquire("a", THREE_PER_MINUTE, later),
            Decision::Limited { .. }
        ));
    }

    /// The same limit in Redis, on a real `redis-server`: shared by two
    /// limiters (two gateway replicas) and measured on Redis's clock.
    #[tokio::test]
    async fn redis_buckets_are_shared_by_every_replica() {
        let Some(server) = warble_testkit::RedisServer::start() else {
            return;
        };
        let connect =
            || async { RateLimiter::redis(RedisClient::connect(&server.config()).await.unwrap()) };
        let (one, other) = (connect().await, connect().await);
        assert_eq!(one.acquire("k", THREE_PER_MINUTE).await, Decision::Allowed);
        assert_eq!(
            other.acquire("k", THREE_PER_MINUTE).await,
            Decision::Allowed
        );
        assert_eq!(one.acquire("k", THREE_PER_MINUTE).await, Decision::Allowed);
        let Decision::Limited { retry_after } = other.acquire("k", THREE_PER_MINUTE).await else {
            panic!("the burst is shared across replicas");
        };
        assert!(
            retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20),
            "{retry_after:?}"
        );
        assert_eq!(
            other.acquire("another", THREE_PER_MINUTE).await,
            Decision::Allowed
        );
    }

    /// A rate above 1,000 a second holds in Redis too: a million a second
    /// admits every one of 300 back-to-back requests (each a round trip to
    /// Redis, far longer than the 1 µs interval), where millisecond
    /// arithmetic capped every bucket at one request per millisecond.
    #[tokio::test]
    async fn redis_buckets_keep_rates_above_a_thousand_a_second() {
        let Some(server) = warble_testkit::RedisServer::start() else {
            return;
        };
        let limiter = RateLimiter::redis(RedisClient::connect(&server.config()).await.unwrap());
        let fast = Rate {
            burst: 10,
            per_minute: 60_000_000,
        };
        for n in 0..300 {
            assert_eq!(
                limiter.acquire("fast", fast).await,
                Decision::Allowed,
                "request {n}"
            );
        }
    }

    /// Claims ahead, on a real `redis-server` with two replicas taking
    /// turns: never more admitted than the bucket holds (its burst; the
    /// refill here is one a minute), most of it admitted, and far fewer
    /// round trips than requests. The lower bound allows for claims lapsing
    /// on a loaded machine.
    #[tokio::test]
    async fn claims_never_admit_beyond_the_limit_and_spare_round_trips() {
        let Some(server) = warble_testkit::RedisServer::start() else {
            return;
        };
        let connect = || async { RedisClient::connect(&server.config()).await.unwrap() };
        let clients = [connect().await, connect().await];
        let replicas = clients.clone().map(RateLimiter::redis);
        let rate = Rate {
            burst: 200,
            per_minute: 1,
        };
        let mut admitted = 0;
        let mut refused_by = [false, false];
        for turn in 0..1_000 {
            let replica = turn % 2;
            match replicas[replica].acquire("claimed", rate).await {
                Decision::Allowed => admitted += 1,
                Decision::Limited { retry_after } => {
                    assert!(retry_after > Duration::from_secs(30), "{retry_after:?}");
                    refused_by[replica] = true;
                }
            }
            if refused_by == [true, true] {
                break;
            }
        }
        assert_eq!(refused_by, [true, true], "both replicas reach the limit");
        assert!(admitted <= 200, "never beyond the burst: {admitted}");
        assert!(admitted >= 100, "most of the burst is served: {admitted}");
        let round_trips: u64 = clients.iter().map(RedisClient::round_trips).sum();
        assert!(
            round_trips * 3 < admitted,
            "{round_trips} round trips for {admitted} requests"
        );
    }
}
