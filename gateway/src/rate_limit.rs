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

/// Where buckets live.
pub enum RateLimiter {
    /// In this process.
    Memory(MemoryBuckets),
    /// In Redis, shared by every gateway replica.
    Redis(RedisClient),
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("RateLimiter::Memory"),
            Self::Redis(client) => write!(f, "RateLimiter::Redis({})", client.address()),
        }
    }
}

impl RateLimiter {
    /// Buckets in this process.
    pub fn in_memory() -> Self {
        Self::Memory(MemoryBuckets::default())
    }

    /// Takes one request from `key`'s bucket under `rate`.
    pub async fn acquire(&self, key: &str, rate: Rate) -> Decision {
        match self {
            Self::Memory(buckets) => buckets.acquire(key, rate, Instant::now()),
            Self::Redis(client) => {
                // Microseconds: in milliseconds, any rate above 1,000 a
                // second would round to one request per millisecond.
                let interval = rate.interval().as_micros().max(1) as u64;
                let tolerance = rate.tolerance().as_micros().max(1) as u64;
                let request = GCRA
                    .call(&[format!("warble:ratelimit:{key}")])
                    .arg(interval)
                    .arg(tolerance);
                match client.query::<i64>(request).await {
                    Ok(wait_us) if wait_us > 0 => Decision::Limited {
                        retry_after: Duration::from_micros(wait_us as u64),
                    },
                    Ok(_) => Decision::Allowed,
                    Err(error) => {
                        tracing::warn!(%error, "rate limit store unavailable; letting the request through");
                        Decision::Allowed
                    }
                }
            }
        }
    }
}

/// GCRA in one script: `KEYS[1]` holds the bucket's theoretical arrival
/// time (µs, Redis's clock, so replicas agree; Lua's doubles hold µs since
/// the epoch exactly); `ARGV` are the interval and the tolerance in µs.
/// Returns 0 when the request passes, else the microseconds until one
/// would. The key expires when the bucket is full again, so idle clients
/// cost nothing.
static GCRA: LazyLock<RedisScript> = LazyLock::new(|| {
    RedisScript::new(
        r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > tolerance then
  return next_tat - now - tolerance
end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000))
return 0
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
            || async { RateLimiter::Redis(RedisClient::connect(&server.config()).await.unwrap()) };
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
        let limiter = RateLimiter::Redis(RedisClient::connect(&server.config()).await.unwrap());
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
}
