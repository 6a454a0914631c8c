//! `wide`: does a home page cost more for a reader who follows many
//! accounts? On the `read` workload, two new readers follow the same
//! celebrities (every one the workload has); the narrow reader follows 25
//! accounts in all, the wide one 2,000 (Twitter caps following at 5,000;
//! seed 001's average is 200). Both read hydrated `homeTimeline(first: 20)`
//! over GraphQL and GetHomeTimeline over gRPC, one after the other at the
//! same concurrency, and the rows are compared: a page's cost should not
//! depend on how many accounts the reader follows, only on the celebrities
//! among them (read from the cache's set of followed celebrities).

use std::time::Duration;

use rand::SeedableRng as _;
use rand::seq::IndexedRandom as _;
use warble_proto::graph::v1::{CreateUserRequest, FollowManyRequest, FollowPair};

use super::{Options, create_users, prepare, standard_spec, warm_up, workload_for};
use crate::load::{self, Limits};
use crate::report::{Measurement, Report, format_us};

/// Accounts the narrow reader follows.
const NARROW: usize = 25;
/// Accounts the wide reader follows.
const WIDE: usize = 2_000;
/// Entries per page.
const PAGE: u32 = 20;

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("wide", options.smoke);
    let spec = standard_spec(options);
    let workload = workload_for(options, spec)?;
    let stack_options = options.stack_options(workload.spec.celebrity_threshold);
    let prepared = prepare(options, workload, stack_options, &mut report).await?;
    let wide_count = WIDE.min(prepared.loaded.user_ids.len() - 1);
    report.param("narrow_follows", NARROW as u64);
    report.param("wide_follows", wide_count as u64);

    let readers = create_users(
        &prepared.grpc,
        ["narrow_reader", "wide_reader"]
            .into_iter()
            .map(|name| CreateUserRequest {
                username: name.into(),
                display_name: name.into(),
                bio: String::new(),
            })
            .collect(),
        "readers",
        options.progress,
    )
    .await?;
    let (narrow, wide) = (readers[0], readers[1]);
    let celebrities: Vec<u64> = prepared
        .workload
        .celebrities()
        .into_iter()
        .map(|index| prepared.user_id(index))
        .collect();
    report.param("celebrities_followed", celebrities.len() as u64);
    let others: Vec<u64> = prepared
        .loaded
        .user_ids
        .iter()
        .copied()
        .filter(|id| !celebrities.contains(id))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(prepared.workload.spec.seed);
    for (reader, count) in [(narrow, NARROW), (wide, wide_count)] {
        let followees: Vec<u64> = celebrities
            .iter()
            .copied()
            .chain(
                others
                    .choose_multiple(&mut rng, count.saturating_sub(celebrities.len()))
                    .copied(),
            )
            .collect();
        for chunk in followees.chunks(warble_proto::limits::graph::MAX_WRITE_BATCH) {
            prepared
                .grpc
                .graph
                .clone()
                .follow_many(FollowManyRequest {
                    pairs: chunk
                        .iter()
                        .map(|&followee_id| FollowPair {
                            follower_id: reader,
                            followee_id,
                        })
                        .collect(),
                })
                .await?;
        }
    }
    prepared
        .stack
        .wait_fanout_idle(Duration::from_secs(600))
        .await?;
    warm_up(&prepared, &[narrow, wide], options.progress).await?;

    let limits = Limits {
        duration: options
            .duration
            .unwrap_or(options.pick(Duration::from_secs(2), Duration::from_secs(10))),
        max_operations: options.smoke.then_some(100),
    };
    let concurrencies = options
        .concurrency
        .clone()
        .unwrap_or_else(|| options.pick(vec![4], vec![64]));
    for &concurrency in &concurrencies {
        let mode = options.mode(concurrency);
        for graphql in [true, false] {
            for (who, reader) in [("25 follows", narrow), ("2,000 follows", wide)] {
                let what = if graphql {
                    "homeTimeline(first: 20) GraphQL"
                } else {
                    "GetHomeTimeline(20) gRPC"
                };
                let name = format!("{what}, a reader with {who}, {}", mode.describe());
                options.say(format!("measuring {name}"));
                let (client, grpc) = (prepared.graphql.clone(), prepared.grpc.clone());
                let token = std::sync::Arc::new(prepared.stack.token(reader));
                let outcome = load::run(mode, limits, 1, move |_| {
                    let (client, grpc, token) = (client.clone(), grpc.clone(), token.clone());
                    async move {
                        let result = if graphql {
                            client.home(&token, PAGE).await.map(drop)
                        } else {
                            grpc.home(reader, PAGE).await.map(drop)
                        };
                        (0, result)
                    }
                })
                .await;
                if let Some(error) = &outcome.first_error {
                    report.checks.fail(format!("{name}: {error}"));
                }
                let mut row = Measurement::new(name, "requests")
                    .label("reader", who)
                    .label("client", if graphql { "graphql" } else { "grpc" })
                    .label("mode", mode.describe())
                    .with_throughput(outcome.ok[0], outcome.elapsed)
                    .with_latency(&outcome.latency[0]);
                row.errors = outcome.errors[0];
                report.measurements.push(row);
            }
            let what = if graphql {
                "homeTimeline(first: 20) GraphQL"
            } else {
                "GetHomeTimeline(20) gRPC"
            };
            report.ratio_of_throughput(
                &format!(
                    "{what}: 2,000 follows / 25 follows throughput, {}",
                    mode.describe()
                ),
                &format!("{what}, a reader with 2,000 follows, {}", mode.describe()),
                &format!("{what}, a reader with 25 follows, {}", mode.describe()),
            );
        }
    }

    // Both pages are full (the readers follow enough tweeting accounts).
    for (who, reader) in [("narrow", narrow), ("wide", wide)] {
        let edges = prepared
            .graphql
            .home(&prepared.stack.token(reader), PAGE)
            .await?;
        if edges < PAGE as usize {
            report.checks.fail(format!(
                "the {who} reader's page has {edges} tweets, not {PAGE}"
            ));
        }
    }
    let mode = options.mode(*concurrencies.last().expect("a concurrency"));
    let row = |who: &str| {
        format!(
            "homeTimeline(first: 20) GraphQL, a reader with {who}, {}",
            mode.describe()
        )
    };
    if let (Some(narrow_row), Some(wide_row)) = (
        report.measurement(&row("25 follows")).cloned(),
        report.measurement(&row("2,000 follows")).cloned(),
    ) {
        let ratio = wide_row.throughput_per_s / narrow_row.throughput_per_s;
        report.target(
            "a reader following 2,000 accounts reads within 10% of one following 25 (hydrated, same run)",
            format!(
                "{:.0} against {:.0} req/s ({ratio:.3}); p99 {} against {}",
                wide_row.throughput_per_s,
                narrow_row.throughput_per_s,
                wide_row.latency.as_ref().map_or("-".into(), |l| format_us(l.p99_us)),
                narrow_row.latency.as_ref().map_or("-".into(), |l| format_us(l.p99_us)),
            ),
            ratio >= 0.9,
        );
    }
    prepared.stack.stop().await?;
    Ok(report)
}
