//! `delivery`: post-to-visible latency. Each tweet is posted through the
//! GraphQL `postTweet` mutation; the clock runs from just before the request
//! until the tweet is in the cached home timeline of every follower (and
//! the author). Posts are spaced out (each waits for the previous one to be
//! delivered), so this is the latency of an otherwise idle stack.
//!
//! Landing times come from timestamping fanout-svc's cache writes as they
//! return ([`crate::observe`]): exact per follower, and free of the load
//! polling ten thousand timelines would put on the same two cores. With
//! `--stack processes` fanout-svc runs in a process of its own, so its
//! deliveries counter (GetStatus, counted as each cache write returns) is
//! polled instead, every millisecond or so from before the post: each
//! landing is timed to the poll that first saw it. As a black-box
//! cross-check, a few followers poll GetHomeTimeline over gRPC and their own
//! observed latency is reported beside it.

use std::time::{Duration, Instant};

use super::{
    BackendKind, Options, Posted, audience_workload, backends, cache_backend, prepare,
    verify_posts, warm_up,
};
use crate::ceiling::RedisTarget;
use crate::observe::{DeliveryLog, Landing};
use crate::report::{Measurement, Report, format_us, new_histogram, record};
use crate::stack::StackShape;
use warble_proto::fanout::v1::GetStatusRequest;
use warble_proto::fanout::v1::fanout_service_client::FanoutServiceClient;

/// Followers polling over gRPC per post (the black-box cross-check).
const PROBES: usize = 2;
/// How long one tweet may take to reach everyone before the run fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("delivery", options.smoke);
    let threshold = options.threshold.unwrap_or(options.pick(400, 50_000));
    let audiences = options
        .followers
        .clone()
        .unwrap_or_else(|| options.pick(vec![20, 200], vec![100, 10_000]));
    anyhow::ensure!(
        audiences.iter().all(|&a| (a as u64) < threshold),
        "every audience must be below the celebrity threshold ({threshold})"
    );
    let posts = options.posts.unwrap_or(options.pick(4, 50));
    report.param("celebrity_threshold", threshold);
    report.param("followers", audiences.clone());
    report.param("posts_per_author", posts as u64);
    report.param("probe_readers", PROBES as u64);

    let processes = options.shape == StackShape::Processes;
    let kinds = backends(options, &[BackendKind::Embedded]);
    let redis = if kinds.contains(&BackendKind::Redis) && !processes {
        RedisTarget::acquire(options.redis_url.as_deref())?
    } else {
        None
    };
    for kind in kinds {
        if kind == BackendKind::Redis && redis.is_none() && !processes {
            report
                .notes
                .push("redis-server is not installed: the Redis rows were skipped".into());
            continue;
        }
        let backend = cache_backend(kind, redis.as_ref().map(|r| r.url.as_str()), "delivery");
        let mut stack_options = options.stack_options(threshold);
        stack_options.backend = backend;
        stack_options.observe_deliveries = !processes;
        let name = stack_options.label();
        let workload = audience_workload(&audiences, threshold);
        let prepared = prepare(options, workload, stack_options, &mut report).await?;
        let pool: Vec<u64> = (audiences.len()..prepared.loaded.user_ids.len())
            .map(|index| prepared.user_id(index))
            .collect();
        options.say(format!("{name}: warming up {} followers", pool.len()));
        warm_up(&prepared, &pool, options.progress).await?;
        let log = prepared.stack.deliveries.clone();

        let mut posted = Vec::new();
        for (author, &followers) in audiences.iter().enumerate() {
            let author_id = prepared.user_id(author);
            let token = prepared.stack.token(author_id);
            let audience = followers + 1;
            let mut response = new_histogram();
            let mut all_visible = new_histogram();
            let mut per_follower = new_histogram();
            let mut probed = new_histogram();
            let mut errors = 0u64;
            let started_all = Instant::now();
            for n in 0..posts {
                // Probes: the last followers of the pool, polling from before the post.
                let mut probes = Vec::new();
                for &user in &pool[followers.saturating_sub(PROBES)..followers] {
                    let newest = prepared.grpc.home(user, 1).await?.first().copied();
                    probes.push((user, newest.unwrap_or(0)));
                }
                // Without the in-process log (separate processes), fan-out's
                // deliveries counter times the landings instead.
                let fanout = prepared
                    .stack
                    .processes()
                    .filter(|_| log.is_none())
                    .map(|processes| processes.fanout_client());
                let before = match &fanout {
                    Some(_) => prepared.stack.deliveries_written().await?,
                    None => 0,
                };
                let posted_at = Instant::now();
                let counter = fanout.map(|fanout| {
                    tokio::spawn(count_landings(fanout, before, audience as u64, posted_at))
                });
                let watchers = probes
                    .into_iter()
                    .map(|(user, newest_before)| {
                        let grpc = prepared.grpc.clone();
                        tokio::spawn(watch(grpc, user, newest_before, posted_at))
                    })
                    .collect::<Vec<_>>();
                let text = format!("delivery probe {n} to {followers} followers #bench");
                let tweet_id = match prepared.graphql.post(&token, &text).await {
                    Ok(id) => id,
                    Err(error) => {
                        errors += 1;
                        report.checks.fail(format!("postTweet failed: {error:#}"));
                        for watcher in watchers {
                            watcher.abort();
                        }
                        if let Some(counter) = counter {
                            counter.abort();
                        }
                        continue;
                    }
                };
                record(&mut response, posted_at.elapsed());
                let landings = match (&log, counter) {
                    (Some(log), _) => observed_landings(log, tweet_id, audience, posted_at).await?,
                    (None, Some(counter)) => counter.await??,
                    (None, None) => unreachable!("a counter runs whenever no log does"),
                };
                for landing in &landings {
                    let latency = landing.at.saturating_duration_since(posted_at);
                    for _ in 0..landing.users {
                        record(&mut per_follower, latency);
                    }
                }
                if let Some(last) = landings.iter().map(|l| l.at).max() {
                    record(&mut all_visible, last.saturating_duration_since(posted_at));
                }
                for watcher in watchers {
                    match watcher.await? {
                        Ok(seen) => match seen.iter().find(|(id, _)| *id == tweet_id) {
                            Some((_, latency)) => record(&mut probed, *latency),
                            None => report
                                .checks
                                .fail(format!("a polling follower never saw tweet {tweet_id}")),
                        },
                        Err(error) => report
                            .checks
                            .fail(format!("polling GetHomeTimeline: {error:#}")),
                    }
                }
                posted.push(Posted { author, tweet_id });
            }
            let elapsed = started_all.elapsed();
            let label = |m: Measurement| {
                m.label("backend", name)
                    .label("followers", followers as u64)
            };
            let mut visible = label(Measurement::new(
                format!("post-to-visible, all followers: {followers} followers ({name})"),
                "posts",
            ))
            .with_throughput(posts as u64, elapsed)
            .with_latency(&all_visible);
            visible.errors = errors;
            report.measurements.push(visible);
            report.measurements.push(
                label(Measurement::new(
                    format!("post-to-visible, per follower: {followers} followers ({name})"),
                    "deliveries",
                ))
                .with_throughput(per_follower.len(), elapsed)
                .with_latency(&per_follower),
            );
            report.measurements.push(
                label(Measurement::new(
                    format!(
                        "post-to-visible, gRPC polling readers: {followers} followers ({name})"
                    ),
                    "observations",
                ))
                .with_throughput(probed.len(), elapsed)
                .with_latency(&probed),
            );
            report.measurements.push(
                label(Measurement::new(
                    format!("postTweet response: {followers} followers ({name})"),
                    "posts",
                ))
                .with_throughput(response.len(), elapsed)
                .with_latency(&response),
            );
        }
        verify_posts(&prepared, &posted, 0, &mut report).await?;
        prepared.stack.stop().await?;
    }

    let largest = audiences.iter().copied().max().unwrap_or(0);
    let (shown, target, stack) = if processes {
        (
            "processes",
            "post-to-visible p99 under 50 ms for a 10K-follower author, separate processes on Redis",
            "separate processes on Redis",
        )
    } else {
        (
            "embedded",
            "post-to-visible p99 under 50 ms for a 10K-follower author",
            "embedded stack",
        )
    };
    if let Some(row) = report
        .measurement(&format!(
            "post-to-visible, all followers: {largest} followers ({shown})"
        ))
        .cloned()
        && let Some(latency) = row.latency
    {
        report.target(
            target,
            format!(
                "{largest} followers, {stack}: p50 {} p99 {} max {} (every follower's timeline)",
                format_us(latency.p50_us),
                format_us(latency.p99_us),
                format_us(latency.max_us)
            ),
            latency.p99_us < 50_000,
        );
    }
    Ok(report)
}

/// Waits until `tweet_id` is in all `audience` timelines by the observed
/// cache's log; returns its landings.
async fn observed_landings(
    log: &DeliveryLog,
    tweet_id: u64,
    audience: usize,
    posted_at: Instant,
) -> anyhow::Result<Vec<Landing>> {
    let deadline = posted_at + DELIVERY_TIMEOUT;
    while log.delivered(tweet_id) < audience {
        anyhow::ensure!(
            Instant::now() < deadline,
            "tweet {tweet_id} reached {} of {audience} timelines in {DELIVERY_TIMEOUT:?}",
            log.delivered(tweet_id)
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(log.landings(tweet_id))
}

/// Polls fanout-svc's deliveries counter from `before` until it has grown
/// by `audience` (posts are spaced out, so every write counted is this
/// post's); each growth is a landing at the poll that saw it.
async fn count_landings(
    fanout: FanoutServiceClient<tonic::transport::Channel>,
    before: u64,
    audience: u64,
    posted_at: Instant,
) -> anyhow::Result<Vec<Landing>> {
    let deadline = posted_at + DELIVERY_TIMEOUT;
    let mut landings = Vec::new();
    let mut seen = before;
    while seen < before + audience {
        anyhow::ensure!(
            Instant::now() < deadline,
            "a post reached {} of {audience} timelines in {DELIVERY_TIMEOUT:?}",
            seen - before
        );
        let written = fanout
            .clone()
            .get_status(GetStatusRequest {})
            .await?
            .into_inner()
            .deliveries_written;
        if written > seen {
            landings.push(Landing {
                at: Instant::now(),
                users: (written - seen) as usize,
            });
            seen = written;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(landings)
}

/// Polls `user`'s home timeline over gRPC for up to [`DELIVERY_TIMEOUT`]
/// until a tweet newer than `newest_before` shows; returns it and how long
/// after `since` it appeared (empty when none did).
async fn watch(
    grpc: crate::client::Grpc,
    user: u64,
    newest_before: u64,
    since: Instant,
) -> anyhow::Result<Vec<(u64, Duration)>> {
    let deadline = since + DELIVERY_TIMEOUT;
    while Instant::now() < deadline {
        let page = grpc.home(user, 1).await?;
        if let Some(&newest) = page.first()
            && newest > newest_before
        {
            return Ok(vec![(newest, since.elapsed())]);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Vec::new())
}
