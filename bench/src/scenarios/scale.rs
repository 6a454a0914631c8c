//! `scale`: how memory and fan-out cost grow with the number of users.
//!
//! For each size a fresh stack loads a power-law graph of that many users
//! (about ten follows each, two tweets each), then every user reads their
//! home timeline once (building every cached timeline, as a fully active
//! population would). Recorded per size: process RSS after loading and
//! after the warm-up, the cache's footprint (timelines, entries), Redis's
//! `used_memory` on the Redis backend, and fan-out throughput for the most
//! followed author and for a typical one.
//!
//! RSS counts the whole process (all five services, redb's page cache,
//! allocator slack), so bytes per cached entry are also measured in
//! isolation: an empty process-local cache filled with 10M entries in
//! 100K timelines, divided into the RSS it added.

use std::time::{Duration, Instant};

use warble_timeline_cache::{EmbeddedTimelineCache, Entry, TimelineCache as _};

use super::{BackendKind, Options, backends, cache_backend, prepare, warm_up, workload_for};
use crate::ceiling::RedisTarget;
use crate::report::{Measurement, Report};
use crate::system::{peak_rss_bytes, rss_bytes};
use crate::workload::WorkloadSpec;

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("scale", options.smoke);
    let sizes = options
        .sizes
        .clone()
        .unwrap_or_else(|| options.pick(vec![200, 400], vec![10_000, 30_000, 100_000]));
    let threshold = options.threshold.unwrap_or(10_000);
    let posts = options.posts.unwrap_or(options.pick(3, 10));
    report.param("sizes", sizes.clone());
    report.param("celebrity_threshold", threshold);
    report.param("posts_per_author", posts as u64);

    isolated_entry_size(options, &mut report).await?;

    let kinds = backends(options, &[BackendKind::Embedded]);
    let redis = if kinds.contains(&BackendKind::Redis) {
        RedisTarget::acquire(options.redis_url.as_deref())?
    } else {
        None
    };
    for kind in kinds {
        if kind == BackendKind::Redis && redis.is_none() {
            report
                .notes
                .push("redis-server is not installed: the Redis rows were skipped".into());
            continue;
        }
        for &users in &sizes {
            let backend = cache_backend(kind, redis.as_ref().map(|r| r.url.as_str()), "scale");
            let name = backend.name();
            let spec = WorkloadSpec {
                min_followers: options.pick(3, 10),
                tweets_per_user: options.pick(1, 2),
                top_normal_followers: (threshold as usize - 1).min(users / 2),
                ..WorkloadSpec::new(users, 0, threshold)
            };
            let workload = workload_for(options, spec)?;
            let follows = workload.follow_count();
            let rss_start = rss_bytes();
            let redis_start = match &redis {
                Some(r) if kind == BackendKind::Redis => r.used_memory().await?,
                _ => 0,
            };
            let mut stack_options = options.stack_options(threshold);
            stack_options.backend = backend;
            let prepared = prepare(options, workload, stack_options, &mut report).await?;
            let rss_loaded = rss_bytes();
            let everyone = prepared.loaded.user_ids.clone();
            options.say(format!("{name}: {users} users read their timeline"));
            let warm_started = Instant::now();
            warm_up(&prepared, &everyone, options.progress).await?;
            let warm_elapsed = warm_started.elapsed();
            let rss_warm = rss_bytes();
            let database_cache = prepared.stack.dev()?.embedded_cache_bytes() as u64;
            let (timelines, entries) = match &prepared.stack.dev()?.embedded_cache {
                Some(cache) => cache.footprint(),
                None => (everyone.len(), 0),
            };
            let redis_bytes = match &redis {
                Some(r) if kind == BackendKind::Redis => {
                    r.used_memory().await?.saturating_sub(redis_start)
                }
                _ => 0,
            };
            let mut memory = Measurement::new(
                format!("memory and rebuilds: {users} users ({name})"),
                "timelines built",
            )
            .label("backend", name)
            .label("users", users as u64)
            .with_throughput(everyone.len() as u64, warm_elapsed)
            .with_extra("follows", follows as u64)
            .with_extra("rss_before_stack_bytes", rss_start)
            .with_extra("rss_after_load_bytes", rss_loaded)
            .with_extra("rss_after_warmup_bytes", rss_warm)
            .with_extra("peak_rss_bytes", peak_rss_bytes())
            .with_extra("cached_timelines", timelines as u64)
            .with_extra("cached_entries", entries as u64)
            .with_extra("rebuilds", prepared.stack.dev()?.home_timelines.rebuilds())
            .with_extra("embedded_database_cache_bytes", database_cache)
            .with_extra("rss_per_user_bytes", rss_warm as f64 / users as f64);
            if entries > 0 {
                memory = memory.with_extra(
                    "rss_growth_per_cached_entry_bytes",
                    rss_warm.saturating_sub(rss_loaded) as f64 / entries as f64,
                );
            }
            if redis_bytes > 0 {
                memory = memory.with_extra("redis_used_memory_bytes", redis_bytes);
            }
            report.measurements.push(memory);

            // Fan-out cost at this size: the most followed author and a median one.
            let median = users / 2;
            for (author, which) in [(0usize, "top author"), (median, "median author")] {
                let followers = prepared.workload.followers[author].len();
                let author_id = prepared.user_id(author);
                let before = prepared.stack.deliveries_written().await?;
                let started = Instant::now();
                for n in 0..posts {
                    prepared
                        .grpc
                        .post(author_id, &format!("scale probe {n} #bench"))
                        .await?;
                }
                prepared
                    .stack
                    .wait_fanout_idle(Duration::from_secs(300))
                    .await?;
                let elapsed = started.elapsed();
                let delivered = prepared.stack.deliveries_written().await? - before;
                let expected = (posts * (followers + 1)) as u64;
                if delivered != expected {
                    report.checks.fail(format!(
                        "{users} users, {which}: {delivered} deliveries written, {expected} expected"
                    ));
                }
                report.checks.tweets_posted += posts as u64;
                report.checks.deliveries_expected += expected;
                report.checks.deliveries_verified += delivered.min(expected);
                report.measurements.push(
                    Measurement::new(
                        format!("fan-out: {which}, {followers} followers, {users} users ({name})"),
                        "deliveries",
                    )
                    .label("backend", name)
                    .label("users", users as u64)
                    .label("author", which)
                    .label("followers", followers as u64)
                    .with_throughput(delivered, elapsed)
                    .with_extra("ms_per_post", elapsed.as_secs_f64() * 1e3 / posts as f64),
                );
            }
            report.checks.dead_letters += prepared.stack.dead_letters().await?;
            prepared.stack.stop().await?;
        }
    }
    Ok(report)
}

/// Bytes each cached entry costs in the embedded cache, measured alone.
async fn isolated_entry_size(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let (timelines, per_timeline) = options.pick((2_000u64, 100u64), (100_000, 100));
    let cache = EmbeddedTimelineCache::new();
    let before = rss_bytes();
    let started = Instant::now();
    for user in 1..=timelines {
        let entries: Vec<Entry> = (0..per_timeline)
            .map(|n| Entry::tweet((n + 1) << 22 | user, n))
            .collect();
        cache.insert(user, &entries, true).await?;
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let (_, entries) = cache.footprint();
    report.measurements.push(
        Measurement::new("embedded cache alone: bytes per entry", "entries inserted")
            .label("backend", "embedded")
            .with_throughput(entries as u64, elapsed)
            .with_extra("timelines", timelines)
            .with_extra("entries", entries as u64)
            .with_extra("rss_growth_bytes", after.saturating_sub(before))
            .with_extra(
                "bytes_per_entry",
                after.saturating_sub(before) as f64 / entries.max(1) as f64,
            )
            .with_extra(
                "payload_bytes_per_entry",
                std::mem::size_of::<Entry>() as u64,
            ),
    );
    Ok(())
}
