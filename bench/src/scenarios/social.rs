//! `social`: what retweets and long block lists cost a feed read. On the
//! read scenario's workload, users retweet others' tweets (fanned out like
//! tweets), then two disjoint groups of readers read their hydrated home
//! timelines at the same concurrency, one after the other: readers who
//! block nobody, and readers who each block many users they do not follow
//! (1,000 at full size). Both timelines hold the same kind of entries, so
//! the ratio of the two rows is what the block list costs a read: timeline
//! filtering asks graph-svc one batch "relation of the viewer to these
//! authors" per page, never a scan of the list.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use warble_proto::graph::v1::BlockRequest;
use warble_proto::tweet::v1::RetweetRequest;

use super::{Options, Prepared, prepare, sample_users, standard_spec, warm_up, workload_for};
use crate::load::{self, Limits};
use crate::report::{Measurement, Report, format_us};
use crate::workload::Progress;

/// Entries per page, as in `read`.
const PAGE: u32 = 20;
/// Writes in flight while preparing (retweets, blocks).
const PREPARE_CONCURRENCY: usize = 16;

/// The groups of readers, and when they read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readers {
    /// Readers blocking no one, before anyone retweeted: the plain read.
    BeforeRetweets,
    /// The same readers once retweets fill their timelines.
    Plain,
    /// Readers blocking many, with retweets.
    Blocking,
}

impl Readers {
    fn row(self, mode: &crate::load::Mode) -> String {
        let who = match self {
            Self::BeforeRetweets => "no retweets yet, readers blocking no one",
            Self::Plain => "with retweets, readers blocking no one",
            Self::Blocking => "with retweets, readers blocking many",
        };
        format!("homeTimeline(first: 20) {who}, {}", mode.describe())
    }

    fn label(self) -> &'static str {
        match self {
            Self::BeforeRetweets => "before-retweets",
            Self::Plain => "plain",
            Self::Blocking => "blocking",
        }
    }
}

/// Reads `readers`' hydrated home timelines round-robin at `mode`; adds the row.
async fn measure(
    prepared: &Prepared,
    report: &mut Report,
    options: &Options,
    group: Readers,
    readers: &[u64],
    concurrency: usize,
    limits: Limits,
) {
    let mode = options.mode(concurrency);
    let name = group.row(&mode);
    options.say(format!("measuring {name}"));
    let tokens: Arc<Vec<String>> =
        Arc::new(readers.iter().map(|&r| prepared.stack.token(r)).collect());
    let graphql = prepared.graphql.clone();
    let outcome = load::run(mode, limits, 1, move |i| {
        let (graphql, tokens) = (graphql.clone(), tokens.clone());
        async move {
            let token = &tokens[i as usize % tokens.len()];
            (0, graphql.home(token, PAGE).await.map(drop))
        }
    })
    .await;
    if let Some(error) = &outcome.first_error {
        report.checks.fail(format!("{name}: {error}"));
    }
    let mut measurement = Measurement::new(name, "requests")
        .label("readers", group.label())
        .label("mode", mode.describe())
        .label("concurrency", concurrency as u64)
        .with_throughput(outcome.ok[0], outcome.elapsed)
        .with_latency(&outcome.latency[0]);
    measurement.errors = outcome.errors[0];
    report.measurements.push(measurement);
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("social", options.smoke);
    let spec = standard_spec(options);
    let workload = workload_for(options, spec)?;
    report.param("users", workload.usernames.len() as u64);
    report.param("follows", workload.follow_count() as u64);
    let stack_options = options.stack_options(workload.spec.celebrity_threshold);
    let prepared = prepare(options, workload, stack_options, &mut report).await?;

    let per_group = options.pick(10, 50);
    let sampled = sample_users(
        &prepared.loaded.user_ids,
        2 * per_group,
        prepared.workload.spec.seed ^ 0x50C1A1,
    );
    let (plain, blocking) = sampled.split_at(sampled.len() / 2);
    report.param("readers_per_group", plain.len() as u64);
    let limits = Limits {
        duration: options.duration.unwrap_or(Duration::from_secs(10)),
        max_operations: options.smoke.then_some(40),
    };
    report.param("seconds_per_step", limits.duration.as_secs_f64());
    let concurrencies = options
        .concurrency
        .clone()
        .unwrap_or_else(|| options.pick(vec![4], vec![16, 64]));

    // The plain read: the same readers, before any retweet.
    options.say(format!("warming up {} readers", plain.len()));
    warm_up(&prepared, plain, options.progress).await?;
    for &concurrency in &concurrencies {
        measure(
            &prepared,
            &mut report,
            options,
            Readers::BeforeRetweets,
            plain,
            concurrency,
            limits,
        )
        .await;
    }

    let retweets = options.pick(400, 20_000);
    retweet_at_random(&prepared, retweets, options.progress).await?;
    report.param("retweets", retweets as u64);
    let blocks_each = options.pick(20, 1_000);
    report.param("blocks_per_blocking_reader", blocks_each as u64);
    block_strangers(&prepared, blocking, blocks_each, options.progress).await?;
    prepared
        .stack
        .wait_fanout_idle(Duration::from_secs(600))
        .await?;
    options.say(format!("warming up {} readers", sampled.len()));
    warm_up(&prepared, &sampled, options.progress).await?;

    for &concurrency in &concurrencies {
        let mode = options.mode(concurrency);
        for (group, readers) in [(Readers::Plain, plain), (Readers::Blocking, blocking)] {
            measure(
                &prepared,
                &mut report,
                options,
                group,
                readers,
                concurrency,
                limits,
            )
            .await;
        }
        report.ratio_of_throughput(
            &format!("blocking / plain readers' throughput, {}", mode.describe()),
            &Readers::Blocking.row(&mode),
            &Readers::Plain.row(&mode),
        );
        report.ratio_of_throughput(
            &format!(
                "blocking readers with retweets / the plain read before retweets, throughput, {}",
                mode.describe()
            ),
            &Readers::Blocking.row(&mode),
            &Readers::BeforeRetweets.row(&mode),
        );
        report.ratio_of_p50(
            &format!("blocking / plain readers' p50 latency, {}", mode.describe()),
            &Readers::Blocking.row(&mode),
            &Readers::Plain.row(&mode),
        );
    }

    // What the readers read: pages with retweets in them.
    let mut retweet_edges = 0;
    for &reader in plain.iter().chain(blocking) {
        let page = prepared
            .graphql
            .request(
                Some(&prepared.stack.token(reader)),
                crate::client::HOME_QUERY,
                json!({ "first": PAGE }),
            )
            .await?;
        retweet_edges += page["homeTimeline"]["edges"].as_array().map_or(0, |edges| {
            edges
                .iter()
                .filter(|edge| !edge["retweetedBy"].is_null())
                .count()
        });
    }
    report.measurements.push(
        Measurement::new("retweet edges in the readers' first pages", "edges")
            .with_extra("edges", retweet_edges as u64),
    );
    if retweet_edges == 0 {
        report
            .checks
            .fail("no reader's first page held a retweet: the scenario measured nothing new");
    }

    let last = options.mode(*concurrencies.last().unwrap_or(&16));
    let throughput = |report: &Report, group: Readers| {
        report.measurement(&group.row(&last)).map(|m| {
            (
                m.throughput_per_s,
                m.latency.as_ref().map_or(0, |l| l.p99_us),
            )
        })
    };
    if let (Some(before), Some(plain), Some(blocking)) = (
        throughput(&report, Readers::BeforeRetweets),
        throughput(&report, Readers::Plain),
        throughput(&report, Readers::Blocking),
    ) && before.0 > 0.0
        && plain.0 > 0.0
    {
        report.target(
            "readers blocking 1,000 users, timelines with retweets, within 10% of the plain read (no blocks, no retweets), same run",
            format!(
                "{:.0} vs {:.0} req/s ({:.3}), p99 {} vs {}",
                blocking.0,
                before.0,
                blocking.0 / before.0,
                format_us(blocking.1),
                format_us(before.1),
            ),
            blocking.0 / before.0 >= 0.9,
        );
        report.target(
            "readers blocking 1,000 users within 10% of readers blocking no one (both with retweets), same run",
            format!(
                "{:.0} vs {:.0} req/s ({:.3}), p99 {} vs {}",
                blocking.0,
                plain.0,
                blocking.0 / plain.0,
                format_us(blocking.1),
                format_us(plain.1),
            ),
            blocking.0 / plain.0 >= 0.9,
        );
    }
    prepared.stack.stop().await?;
    Ok(report)
}

/// `count` retweets, each by a random user of a random workload tweet that
/// is not theirs.
async fn retweet_at_random(
    prepared: &Prepared,
    count: usize,
    progress: bool,
) -> anyhow::Result<()> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(prepared.workload.spec.seed ^ 0x7E7);
    let users = &prepared.loaded.user_ids;
    let tweets = &prepared.workload.tweets;
    let mut picks = Vec::with_capacity(count);
    while picks.len() < count {
        let tweet = rng.random_range(0..tweets.len());
        let user = rng.random_range(0..users.len());
        if tweets[tweet].author as usize != user {
            picks.push((users[user], prepared.loaded.tweet_ids[tweet]));
        }
    }
    let meter = Progress::start("retweets", count, progress);
    futures::stream::iter(picks)
        .map(|(user_id, tweet_id)| {
            let (mut tweets, meter) = (prepared.grpc.tweets.clone(), meter.clone());
            async move {
                tweets.retweet(RetweetRequest { user_id, tweet_id }).await?;
                meter.add(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PREPARE_CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// Makes each of `readers` block `count` users they do not follow (so
/// their home timelines keep the same sources as the plain readers').
async fn block_strangers(
    prepared: &Prepared,
    readers: &[u64],
    count: usize,
    progress: bool,
) -> anyhow::Result<()> {
    let index_of: std::collections::HashMap<u64, usize> = prepared
        .loaded
        .user_ids
        .iter()
        .enumerate()
        .map(|(index, &id)| (id, index))
        .collect();
    use rand::SeedableRng as _;
    let mut rng = rand::rngs::StdRng::seed_from_u64(prepared.workload.spec.seed ^ 0xB10C);
    let users = &prepared.loaded.user_ids;
    let mut pairs = Vec::with_capacity(readers.len() * count);
    for &reader in readers {
        let reader_index = index_of[&reader] as u32;
        // Whom the reader follows: everyone whose followers include them.
        let followed: HashSet<usize> = prepared
            .workload
            .followers
            .iter()
            .enumerate()
            .filter(|(_, followers)| followers.binary_search(&reader_index).is_ok())
            .map(|(index, _)| index)
            .collect();
        // A random sample, not the first users by index: those are the
        // most followed, whose tweets fill timelines with retweets.
        let wanted = (count + followed.len() + 1).min(users.len());
        let strangers = rand::seq::index::sample(&mut rng, users.len(), wanted)
            .into_iter()
            .filter(|&index| users[index] != reader && !followed.contains(&index))
            .map(|index| users[index])
            .take(count);
        pairs.extend(strangers.map(|blocked| (reader, blocked)));
    }
    let meter = Progress::start("blocks", pairs.len(), progress);
    futures::stream::iter(pairs)
        .map(|(blocker_id, blocked_id)| {
            let (mut graph, meter) = (prepared.grpc.graph.clone(), meter.clone());
            async move {
                graph
                    .block(BlockRequest {
                        blocker_id,
                        blocked_id,
                    })
                    .await?;
                meter.add(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PREPARE_CONCURRENCY)
        .try_collect::<()>()
        .await
}
