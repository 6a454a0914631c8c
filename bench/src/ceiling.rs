//! The store's own limits, measured in the same run as the figure they
//! bound: Redis's pipelined ZADD rate, from `redis-benchmark` and from a
//! raw pipelined loop through the same client the timeline cache uses.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use warble_mesh::backends::RedisConfig;
use warble_mesh::redis_client::{PIPELINE_MAX, RedisClient, Request};
use warble_testkit::RedisServer;

use crate::report::Measurement;

/// A Redis to benchmark against: the one at `--redis-url`, or a throwaway
/// `redis-server` this run started (killed when this is dropped).
pub struct RedisTarget {
    /// `redis://host:port`.
    pub url: String,
    /// Host, for `redis-benchmark -h`.
    pub host: String,
    /// Port, for `redis-benchmark -p`.
    pub port: u16,
    _server: Option<RedisServer>,
}

impl RedisTarget {
    /// Uses `url`, or starts a server; `None` when none is given and
    /// `redis-server` is not installed (a notice is printed; under `CI=true`
    /// this panics instead, as every Redis test does).
    pub fn acquire(url: Option<&str>) -> anyhow::Result<Option<Self>> {
        if let Some(url) = url {
            let (host, port) = host_port(url)?;
            return Ok(Some(Self {
                url: url.into(),
                host,
                port,
                _server: None,
            }));
        }
        let Some(server) = RedisServer::start() else {
            return Ok(None);
        };
        Ok(Some(Self {
            url: server.url(),
            host: "127.0.0.1".into(),
            port: server.port(),
            _server: Some(server),
        }))
    }

    /// A client like the timeline cache's.
    pub async fn client(&self) -> anyhow::Result<RedisClient> {
        RedisClient::connect(&RedisConfig {
            url: self.url.clone(),
            ..RedisConfig::default()
        })
        .await
        .with_context(|| format!("cannot connect to {}", self.url))
    }

    /// Bytes Redis uses for data (`used_memory` of `INFO memory`).
    pub async fn used_memory(&self) -> anyhow::Result<u64> {
        let client = self.client().await?;
        let info: String = client
            .query(Request::routed_by("INFO", "").arg("memory"))
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .context("INFO memory has no used_memory")
    }
}

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .map_or((authority, "6379"), |(host, port)| (host, port));
    Ok((
        host.to_owned(),
        port.parse()
            .with_context(|| format!("no valid port in the Redis URL {url}"))?,
    ))
}

/// ZADDs of 16-byte members (the timeline entry's size) to random keys of a
/// `keyspace`-key space, `batch` per pipeline, one pipeline at a time, for
/// `duration`: the fastest the cache's client can write, without the
/// cache's capping script.
pub async fn raw_zadd_pipeline(
    target: &RedisTarget,
    duration: Duration,
    batch: usize,
    keyspace: u64,
) -> anyhow::Result<Measurement> {
    let client = target.client().await?;
    let batch = batch.clamp(1, PIPELINE_MAX);
    let mut rng = rand::rng();
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        let requests: Vec<Request> = (0..batch)
            .map(|_| {
                let key = format!("warble-bench:raw:{}", rng.random_range(0..keyspace));
                let member: [u8; 16] = rng.random();
                Request::new("ZADD", key).arg(0).arg(&member[..])
            })
            .collect();
        client.batch(&requests).await?;
        written += batch as u64;
    }
    let elapsed = started.elapsed();
    Ok(
        Measurement::new("ceiling: raw pipelined ZADD (same client)", "zadds")
            .label("backend", "redis")
            .label("kind", "ceiling")
            .with_throughput(written, elapsed)
            .with_extra("pipeline", batch as u64)
            .with_extra("keyspace", keyspace),
    )
}

/// `redis-benchmark -P 16 -r <keyspace> -n <requests>` of ZADD to random
/// keys (`random_keys`), or the stock `-t zadd` (one key, random members).
/// `None` when `redis-benchmark` is not installed.
pub async fn redis_benchmark_zadd(
    target: &RedisTarget,
    requests: u64,
    keyspace: u64,
    random_keys: bool,
) -> anyhow::Result<Option<Measurement>> {
    let mut command = Command::new("redis-benchmark");
    command.args([
        "-h",
        &target.host,
        "-p",
        &target.port.to_string(),
        "-P",
        "16",
        "-r",
        &keyspace.to_string(),
        "-n",
        &requests.to_string(),
        "--csv",
    ]);
    if random_keys {
        command.args(["ZADD", "warble-bench:rb:__rand_int__", "0", "__rand_int__"]);
    } else {
        command.args(["-t", "zadd"]);
    }
    let output = match tokio::task::spawn_blocking(move || command.output()).await? {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("cannot run redis-benchmark"),
    };
    anyhow::ensure!(
        output.status.success(),
        "redis-benchmark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (rps, p50_ms) = parse_csv(&stdout)
        .with_context(|| format!("unexpected redis-benchmark output: {stdout}"))?;
    let name = if random_keys {
        "ceiling: redis-benchmark ZADD random keys -P 16"
    } else {
        "ceiling: redis-benchmark -t zadd -P 16 (one key)"
    };
    let duration = Duration::from_secs_f64(requests as f64 / rps);
    Ok(Some(
        Measurement::new(name, "zadds")
            .label("backend", "redis")
            .label("kind", "ceiling")
            .with_throughput(requests, duration)
            .with_extra("p50_ms_per_pipeline", p50_ms)
            .with_extra("keyspace", keyspace)
            .with_extra("clients", 50),
    ))
}

/// (requests per second, p50 ms) from `redis-benchmark --csv`: a header
/// line, then `"<test>","<rps>","<avg>","<min>","<p50>",...`.
fn parse_csv(output: &str) -> Option<(f64, f64)> {
    let line = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .find(|line| !line.starts_with("\"test\""))?;
    let fields: Vec<&str> = line.split("\",\"").map(|f| f.trim_matches('"')).collect();
    let rps: f64 = fields.get(1)?.parse().ok()?;
    let p50: f64 = fields.get(4).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    Some((rps, p50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let output = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"ZADD\",\"512820.50\",\"1.455\",\"0.120\",\"1.399\",\"2.111\",\"2.527\",\"3.119\"\n";
        assert_eq!(parse_csv(output), Some((512_820.5, 1.399)));
        assert_eq!(parse_csv("garbage"), None);
    }

    #[test]
    fn finds_host_and_port_in_urls() {
        assert_eq!(
            host_port("redis://127.0.0.1:6380/0").unwrap(),
            ("127.0.0.1".into(), 6380)
        );
        assert_eq!(
            host_port("redis://:pw@cache:7000").unwrap(),
            ("cache".into(), 7000)
        );
        assert_eq!(host_port("redis://cache").unwrap(), ("cache".into(), 6379));
    }
}
