//! `read`: the feed screen. Hydrated `homeTimeline(first: 20)` over HTTP
//! GraphQL at 1, 16 and 64 concurrent clients (closed loop; or one open-loop
//! run at `--rate`), and in the same run, at the same concurrency, the two
//! layers under it: a trivial `{ __typename }` query (HTTP, parsing, auth:
//! the gateway's floor) and a direct GetHomeTimeline gRPC call (timeline-svc
//! alone, no hydration). The ratios say what each layer costs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Options, prepare, sample_users, standard_spec, warm_up, workload_for};
use crate::load::{self, Limits, Mode};
use crate::report::{Measurement, Report, format_us};
use crate::stack::StackShape;

/// Entries per page, as the issue specifies.
const PAGE: u32 = 20;

#[derive(Clone, Copy)]
enum Client {
    Hydrated,
    Trivial,
    Grpc,
}

impl Client {
    fn row(self, mode: &Mode) -> String {
        let what = match self {
            Self::Hydrated => "homeTimeline(first: 20) GraphQL",
            Self::Trivial => "{ __typename } GraphQL",
            Self::Grpc => "GetHomeTimeline(20) gRPC",
        };
        format!("{what} {}", mode.describe())
    }

    fn label(self) -> &'static str {
        match self {
            Self::Hydrated => "graphql-home",
            Self::Trivial => "graphql-trivial",
            Self::Grpc => "grpc-home",
        }
    }
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("read", options.smoke);
    let spec = standard_spec(options);
    let workload = workload_for(options, spec)?;
    report.param("users", workload.usernames.len() as u64);
    report.param("follows", workload.follow_count() as u64);
    report.param("celebrity_threshold", workload.spec.celebrity_threshold);
    let stack_options = options.stack_options(workload.spec.celebrity_threshold);
    let prepared = prepare(options, workload, stack_options, &mut report).await?;
    let readers = sample_users(
        &prepared.loaded.user_ids,
        options.pick(100, 2_000),
        prepared.workload.spec.seed,
    );
    report.param("readers", readers.len() as u64);
    options.say(format!("warming up {} readers", readers.len()));
    warm_up(&prepared, &readers, options.progress).await?;
    let tokens: Arc<Vec<String>> =
        Arc::new(readers.iter().map(|&r| prepared.stack.token(r)).collect());
    let readers = Arc::new(readers);

    let limits = Limits {
        duration: options
            .duration
            .unwrap_or(options.pick(Duration::from_secs(10), Duration::from_secs(10))),
        max_operations: options.smoke.then_some(40),
    };
    report.param("seconds_per_step", limits.duration.as_secs_f64());
    let concurrencies = match options.open_rate {
        Some(_) => vec![0],
        None => options
            .concurrency
            .clone()
            .unwrap_or_else(|| options.pick(vec![1, 4], vec![1, 16, 64])),
    };
    for &concurrency in &concurrencies {
        let mode = options.mode(concurrency);
        for client in [Client::Hydrated, Client::Trivial, Client::Grpc] {
            options.say(format!("measuring {}", client.row(&mode)));
            let (graphql, grpc) = (prepared.graphql.clone(), prepared.grpc.clone());
            let (tokens, readers) = (tokens.clone(), readers.clone());
            let outcome = load::run(mode, limits, 1, move |i| {
                let (graphql, grpc) = (graphql.clone(), grpc.clone());
                let (tokens, readers) = (tokens.clone(), readers.clone());
                async move {
                    let who = i as usize % readers.len();
                    let result = match client {
                        Client::Hydrated => graphql.home(&tokens[who], PAGE).await.map(drop),
                        Client::Trivial => graphql.trivial().await,
                        Client::Grpc => grpc.home(readers[who], PAGE).await.map(drop),
                    };
                    (0, result)
                }
            })
            .await;
            if let Some(error) = &outcome.first_error {
                report
                    .checks
                    .fail(format!("{}: {error}", client.row(&mode)));
            }
            let mut row = Measurement::new(client.row(&mode), "requests")
                .label("client", client.label())
                .label("mode", mode.describe())
                .label("concurrency", concurrency as u64)
                .with_throughput(outcome.ok[0], outcome.elapsed)
                .with_latency(&outcome.latency[0]);
            row.errors = outcome.errors[0];
            report.measurements.push(row);
        }
        let rows = |client: Client| client.row(&mode);
        report.ratio_of_throughput(
            &format!("hydrated / trivial GraphQL throughput, {}", mode.describe()),
            &rows(Client::Hydrated),
            &rows(Client::Trivial),
        );
        report.ratio_of_throughput(
            &format!("hydrated GraphQL / gRPC throughput, {}", mode.describe()),
            &rows(Client::Hydrated),
            &rows(Client::Grpc),
        );
        report.ratio_of_p50(
            &format!("hydrated GraphQL / gRPC p50 latency, {}", mode.describe()),
            &rows(Client::Hydrated),
            &rows(Client::Grpc),
        );
    }

    // A sanity check on what the clients read: a warmed reader's feed is not empty.
    let probe = prepared
        .graphql
        .request(
            Some(&tokens[0]),
            crate::client::HOME_QUERY,
            json!({ "first": PAGE }),
        )
        .await?;
    let edges = probe["homeTimeline"]["edges"]
        .as_array()
        .map_or(0, Vec::len);
    report
        .measurements
        .push(Measurement::new("sample feed page", "edges").with_extra("edges", edges as u64));
    if edges == 0 {
        report
            .notes
            .push("the sampled reader's home timeline was empty".into());
    }

    let row = Client::Hydrated.row(&Mode::Closed { concurrency: 64 });
    if let Some(m) = report.measurement(&row).cloned()
        && let Some(latency) = m.latency
    {
        // Issue 19's targets: the single process, and the five separate
        // processes on Redis (the shape operators deploy).
        let (goal, min_rate, max_p99_us) = match options.shape {
            StackShape::Dev => (
                "hydrated home timeline >= 6,000 req/s with p99 < 10 ms at 64 clients (single process)",
                6_000.0,
                10_000,
            ),
            StackShape::Processes => (
                "hydrated home timeline >= 3,500 req/s with p99 < 25 ms at 64 clients (five processes on Redis)",
                3_500.0,
                25_000,
            ),
        };
        report.target(
            goal,
            format!(
                "{:.0} req/s, p50 {}, p99 {}",
                m.throughput_per_s,
                format_us(latency.p50_us),
                format_us(latency.p99_us)
            ),
            m.throughput_per_s >= min_rate && latency.p99_us < max_p99_us,
        );
    }
    prepared.stack.stop().await?;
    Ok(report)
}
