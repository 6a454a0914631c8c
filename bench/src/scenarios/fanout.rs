//! `fanout`: how many timeline deliveries per second the fan-out path
//! writes, for authors of 100, 10K and just-under-threshold followers, on
//! the embedded cache and on Redis; and in the same run Redis's own
//! pipelined ZADD ceiling, so the Redis figures are ratios.
//!
//! Two rows per author and backend:
//! - *fanout-svc pipeline*: tweets posted through CreateTweet, timed until
//!   fanout-svc has written every delivery (event log, follower paging over
//!   gRPC, activity filter, cache writes).
//! - *cache.push direct*: the same deliveries written straight into the
//!   cache in follower pages of 5,000, as the engine writes them: the cache's
//!   own ceiling, without the services around it.
//!
//! And one row per backend for a real mix: many authors with Zipf-distributed
//! follower counts (most under 1,000) posting at once, timed until every
//! delivery is written: per-post overhead, which dominates small audiences,
//! against the same ZADD ceiling.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use warble_proto::limits::tweet::MAX_WRITE_BATCH;
use warble_proto::tweet::v1::{CreateTweetRequest, CreateTweetsRequest};
use warble_timeline_cache::Entry;

use super::{
    BackendKind, Options, Posted, audience_workload, backends, cache_backend, prepare,
    verify_posts, warm_up,
};
use crate::ceiling::{self, RedisTarget};
use crate::report::{Measurement, Report};

/// Followers per page, as fanout-svc's default `fanout.follower_page_size`.
const PAGE: usize = 5_000;

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("fanout", options.smoke);
    let threshold = options.threshold.unwrap_or(options.pick(200, 50_000));
    let audiences = options.followers.clone().unwrap_or_else(|| {
        options.pick(
            vec![20, 100, threshold as usize - 1],
            vec![100, 10_000, threshold as usize - 1],
        )
    });
    anyhow::ensure!(
        audiences.iter().all(|&a| (a as u64) < threshold),
        "every audience must be below the celebrity threshold ({threshold}) to be pushed"
    );
    let posts = options.posts.unwrap_or(options.pick(3, 20));
    let mixed = mixed_audiences(options.pick(12, 300), options.pick(60, 5_000));
    anyhow::ensure!(
        mixed.iter().all(|&a| (a as u64) < threshold),
        "the mixed authors' audiences must be below the celebrity threshold ({threshold})"
    );
    let kinds = backends(options, &[BackendKind::Embedded, BackendKind::Redis]);
    report.param("celebrity_threshold", threshold);
    report.param("followers", audiences.clone());
    report.param("posts_per_author", posts as u64);
    report.param("follower_page_size", PAGE as u64);
    report.param("mixed_authors", mixed.len() as u64);
    report.param(
        "mixed_deliveries_per_round",
        mixed.iter().sum::<usize>() as u64 + mixed.len() as u64,
    );

    let redis = if kinds.contains(&BackendKind::Redis) {
        let target = RedisTarget::acquire(options.redis_url.as_deref())?;
        if target.is_none() {
            report
                .notes
                .push("redis-server is not installed: the Redis rows were skipped".into());
        }
        target
    } else {
        None
    };

    for kind in kinds {
        if kind == BackendKind::Redis && redis.is_none() {
            continue;
        }
        let backend = cache_backend(kind, redis.as_ref().map(|r| r.url.as_str()), "fanout");
        let name = backend.name();
        // The measured authors first, then the mixed ones.
        let everyone: Vec<usize> = audiences.iter().chain(&mixed).copied().collect();
        let workload = audience_workload(&everyone, threshold);
        let mut stack_options = options.stack_options(threshold);
        stack_options.backend = backend;
        let prepared = prepare(options, workload, stack_options, &mut report).await?;
        let pool: Vec<u64> = (everyone.len()..prepared.loaded.user_ids.len())
            .map(|index| prepared.user_id(index))
            .collect();
        options.say(format!("{name}: warming up {} followers", pool.len()));
        warm_up(&prepared, &pool, options.progress).await?;

        // Through the services.
        let mut posted = Vec::new();
        for (author, &followers) in audiences.iter().enumerate() {
            let author_id = prepared.user_id(author);
            let expected = (posts * (followers + 1)) as u64;
            let before = prepared.stack.deliveries_written().await?;
            let started = Instant::now();
            let ids: Vec<u64> = futures::stream::iter(0..posts)
                .map(|n| {
                    let grpc = prepared.grpc.clone();
                    async move {
                        grpc.post(author_id, &format!("fan-out probe {n} #bench"))
                            .await
                    }
                })
                .buffered(4)
                .try_collect()
                .await?;
            deliveries_reach(&prepared, before + expected, started, || {
                format!("fan-out of {posts} tweets to {followers} followers")
            })
            .await?;
            let elapsed = started.elapsed();
            posted.extend(ids.into_iter().map(|tweet_id| Posted { author, tweet_id }));
            report.measurements.push(
                Measurement::new(
                    format!("fanout-svc pipeline: {followers} followers ({name})"),
                    "deliveries",
                )
                .label("backend", name)
                .label("kind", "pipeline")
                .label("followers", followers as u64)
                .with_throughput(expected, elapsed)
                .with_extra("posts", posts as u64)
                .with_extra("ms_per_post", elapsed.as_secs_f64() * 1e3 / posts as f64),
            );
        }

        // The mix: every mixed author posts at once.
        let first_mixed = audiences.len();
        let expected: u64 = mixed
            .iter()
            .map(|&followers| (posts * (followers + 1)) as u64)
            .sum();
        let before = prepared.stack.deliveries_written().await?;
        let started = Instant::now();
        // Each round is one CreateTweets batch (a tweet from every mixed
        // author), so taking the posts costs tweet-svc one commit per round
        // and the clock measures fan-out, not tweet-svc's commits.
        let batches: Vec<Vec<(usize, CreateTweetRequest)>> = (0..posts)
            .flat_map(|n| {
                let authors: Vec<usize> = (first_mixed..first_mixed + mixed.len()).collect();
                authors
                    .chunks(MAX_WRITE_BATCH)
                    .map(|chunk| {
                        chunk
                            .iter()
                            .map(|&author| {
                                let request = CreateTweetRequest {
                                    author_id: prepared.user_id(author),
                                    text: format!("mixed fan-out {n} #bench"),
                                    ..Default::default()
                                };
                                (author, request)
                            })
                            .collect()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let ids: Vec<Vec<(usize, u64)>> = futures::stream::iter(batches)
            .map(|batch| {
                let mut tweets = prepared.grpc.tweets.clone();
                async move {
                    let (authors, requests): (Vec<usize>, Vec<CreateTweetRequest>) =
                        batch.into_iter().unzip();
                    let created = tweets
                        .create_tweets(CreateTweetsRequest { tweets: requests })
                        .await?
                        .into_inner();
                    let ids = created
                        .results
                        .into_iter()
                        .map(|result| result.tweet.map(|tweet| tweet.id))
                        .collect::<Option<Vec<u64>>>()
                        .context("CreateTweets returned a result without its tweet")?;
                    anyhow::Ok(authors.into_iter().zip(ids).collect())
                }
            })
            .buffer_unordered(4)
            .try_collect()
            .await?;
        let ids: Vec<(usize, u64)> = ids.into_iter().flatten().collect();
        deliveries_reach(&prepared, before + expected, started, || {
            "the mixed authors' fan-out".to_owned()
        })
        .await?;
        let elapsed = started.elapsed();
        posted.extend(
            ids.into_iter()
                .map(|(author, tweet_id)| Posted { author, tweet_id }),
        );
        report.measurements.push(
            Measurement::new(mixed_row(mixed.len(), name), "deliveries")
                .label("backend", name)
                .label("kind", "mixed")
                .with_throughput(expected, elapsed)
                .with_extra("posts", (posts * mixed.len()) as u64),
        );
        verify_posts(&prepared, &posted, 0, &mut report).await?;

        // Straight into the cache, after verification (these entries are synthetic).
        let mut next_id = 1u64 << 40;
        for (author, &followers) in audiences.iter().enumerate() {
            let users = &pool[..followers];
            let started = Instant::now();
            for _ in 0..posts {
                next_id += 1;
                let entry = Entry::tweet(next_id, prepared.user_id(author));
                for page in users.chunks(PAGE) {
                    prepared.stack.timeline_cache.push(page, entry).await?;
                }
            }
            let elapsed = started.elapsed();
            report.measurements.push(
                Measurement::new(
                    format!("cache.push direct: {followers} followers ({name})"),
                    "deliveries",
                )
                .label("backend", name)
                .label("kind", "cache")
                .label("followers", followers as u64)
                .with_throughput((posts * followers) as u64, elapsed),
            );
        }
        prepared.stack.stop().await?;
    }

    if let Some(redis) = &redis {
        ceilings(options, redis, threshold, &mut report).await?;
    }
    ratios(&audiences, &mut report);
    mixed_ratio(mixed.len(), &mut report);
    Ok(report)
}

/// Waits (up to ten minutes from `started`) until fanout-svc has written
/// `target` deliveries in all; `what` names the work in the error.
async fn deliveries_reach(
    prepared: &super::Prepared,
    target: u64,
    started: Instant,
    what: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = started + Duration::from_secs(600);
    while prepared.stack.deliveries_written().await? < target {
        anyhow::ensure!(Instant::now() < deadline, "{} did not finish", what());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// `authors` follower counts after Zipf's law below `top` (s = 1), at least
/// 10 each: a few large audiences, most small.
fn mixed_audiences(authors: usize, top: usize) -> Vec<usize> {
    (0..authors)
        .map(|rank| (top / (rank + 1)).max(10))
        .collect()
}

fn mixed_row(authors: usize, backend: &str) -> String {
    format!("fanout-svc pipeline: {authors} mixed authors at once ({backend})")
}

/// The mixed authors' aggregate rate against Redis's ZADD ceiling.
fn mixed_ratio(authors: usize, report: &mut Report) {
    let name = "redis mixed authors / redis-benchmark";
    report.ratio_of_throughput(
        name,
        &mixed_row(authors, "redis"),
        "ceiling: redis-benchmark ZADD random keys -P 16",
    );
    if let Some(ratio) = report.ratios.iter().find(|r| r.name == name).cloned() {
        report.target(
            "mixed-author fan-out at least half the ZADD rate",
            format!(
                "{:.0} deliveries/s through fanout-svc into Redis from {authors} authors posting at once = {:.2} x redis-benchmark ZADD -P 16",
                report
                    .measurement(&ratio.numerator)
                    .map_or(0.0, |m| m.throughput_per_s),
                ratio.value
            ),
            ratio.value >= 0.5,
        );
    }
}

async fn ceilings(
    options: &Options,
    redis: &RedisTarget,
    keyspace: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    options.say("redis: measuring the ZADD ceilings");
    let duration = options.pick(Duration::from_millis(500), Duration::from_secs(5));
    report
        .measurements
        .push(ceiling::raw_zadd_pipeline(redis, duration, PAGE, keyspace).await?);
    let requests = options.pick(50_000, 2_000_000);
    for random_keys in [true, false] {
        match ceiling::redis_benchmark_zadd(redis, requests, keyspace, random_keys).await? {
            Some(row) => report.measurements.push(row),
            None => {
                report
                    .notes
                    .push("redis-benchmark is not installed: its ceiling row was skipped".into());
                break;
            }
        }
    }
    Ok(())
}

fn ratios(audiences: &[usize], report: &mut Report) {
    let ceiling = "ceiling: redis-benchmark ZADD random keys -P 16";
    let raw = "ceiling: raw pipelined ZADD (same client)";
    for &followers in audiences {
        let pipeline = |b: &str| format!("fanout-svc pipeline: {followers} followers ({b})");
        let direct = |b: &str| format!("cache.push direct: {followers} followers ({b})");
        report.ratio_of_throughput(
            &format!("redis pipeline / redis-benchmark, {followers} followers"),
            &pipeline("redis"),
            ceiling,
        );
        report.ratio_of_throughput(
            &format!("redis cache.push / redis-benchmark, {followers} followers"),
            &direct("redis"),
            ceiling,
        );
        report.ratio_of_throughput(
            &format!("redis cache.push / raw ZADD loop, {followers} followers"),
            &direct("redis"),
            raw,
        );
        report.ratio_of_throughput(
            &format!("embedded pipeline / embedded cache.push, {followers} followers"),
            &pipeline("embedded"),
            &direct("embedded"),
        );
    }
    let largest = audiences.iter().copied().max().unwrap_or(0);
    let name = format!("redis pipeline / redis-benchmark, {largest} followers");
    if let Some(ratio) = report.ratios.iter().find(|r| r.name == name).cloned() {
        report.target(
            "fan-out at least half the store's raw pipelined ZADD rate",
            format!(
                "{:.0} deliveries/s through fanout-svc into Redis ({largest} followers) = {:.2} x redis-benchmark ZADD -P 16",
                report
                    .measurement(&ratio.numerator)
                    .map_or(0.0, |m| m.throughput_per_s),
                ratio.value
            ),
            ratio.value >= 0.5,
        );
    }
}
