//! `overload`: what the stack does past its capacity. The social mix (60%
//! home timelines, 30% user timelines, 10% posts) is run closed-loop to
//! find the capacity, then open-loop at half of it (the unloaded latency)
//! and at three times it. Past capacity the gateway refuses what it cannot
//! take at once (`limits.max_in_flight_requests`: 503, `RATE_LIMITED`,
//! `Retry-After`) and the services do the same (`server.max_in_flight`:
//! RESOURCE_EXHAUSTED, which the gateway reports as `RATE_LIMITED`). The
//! goals: the admitted requests' p99 within twice its unloaded value, every
//! refusal a clear code, and every acknowledged post in its followers'
//! timelines afterwards.

use std::sync::Arc;
use std::time::Duration;

use super::mixed::{self, SocialMix};
use super::{Options, prepare, standard_spec, verify_posts, workload_for};
use crate::load::{self, Limits, Mode, Outcome};
use crate::report::{Measurement, Report, new_histogram};
use crate::stack::StackOptions;

/// Kinds of outcome: the mix's operations served, then refusals.
const KINDS: [&str; 4] = [
    mixed::KINDS[0],
    mixed::KINDS[1],
    mixed::KINDS[2],
    "refused (RATE_LIMITED / UNAVAILABLE)",
];
const REFUSED: usize = 3;

/// Operation `i` of the mix, with a clear refusal counted as [`REFUSED`]:
/// under overload that is the behaviour asked for, not an error.
async fn operation(mix: &SocialMix, i: u64) -> (usize, anyhow::Result<()>) {
    match mix.operation(i).await {
        (_, Err(error)) if is_refusal(&error) => (REFUSED, Ok(())),
        outcome => outcome,
    }
}

/// Whether `error` is a clear refusal: `RATE_LIMITED` (the gateway's 503 or
/// a service's RESOURCE_EXHAUSTED) or `UNAVAILABLE`.
fn is_refusal(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("\"RATE_LIMITED\"") || text.contains("\"UNAVAILABLE\"")
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("overload", options.smoke);
    let workload = workload_for(options, standard_spec(options))?;
    report.param("users", workload.usernames.len() as u64);
    report.param("mix", "60% homeTimeline, 30% userTimeline, 10% postTweet");
    let stack_options = StackOptions {
        // Shedding past capacity is what this scenario measures.
        adaptive_in_flight: true,
        ..options.stack_options(workload.spec.celebrity_threshold)
    };
    let prepared = prepare(options, workload, stack_options, &mut report).await?;
    let mix = Arc::new(SocialMix::warmed_up(options, &prepared).await?);
    report.param("active_users", mix.pool_size() as u64);
    let seconds = options
        .duration
        .unwrap_or(Duration::from_secs(options.pick(2, 20)));
    let limits = Limits {
        duration: seconds,
        max_operations: options.smoke.then_some(400),
    };
    report.param("seconds_per_step", seconds.as_secs_f64());

    // Capacity: what 64 clients in a loop get through.
    let concurrency = options.pick(8, 64);
    let closed = step(&mix, Mode::Closed { concurrency }, limits).await;
    let capacity = served(&closed) as f64 / closed.elapsed.as_secs_f64().max(1e-9);
    record(
        &mut report,
        "capacity",
        Mode::Closed { concurrency },
        &closed,
    );
    report.param("capacity_per_second", capacity.round());

    // Open loop at half the capacity (unloaded) and at three times it. The
    // client never holds requests back: each is sent at its arrival time.
    let open = |factor: f64| Mode::Open {
        rate: (capacity * factor).max(1.0),
        max_in_flight: 100_000,
    };
    let unloaded = step(&mix, open(0.5), limits).await;
    record(&mut report, "0.5x capacity", open(0.5), &unloaded);
    let overloaded = step(&mix, open(3.0), limits).await;
    record(&mut report, "3x capacity", open(3.0), &overloaded);

    let p99 = |outcome: &Outcome| admitted_latency(outcome).value_at_quantile(0.99);
    let (calm, loaded) = (p99(&unloaded), p99(&overloaded));
    report.target(
        "admitted requests' p99 at 3x capacity <= 2x its value at 0.5x",
        format!(
            "{:.1} ms vs {:.1} ms ({:.2}x); {} of {} requests refused at 3x",
            loaded as f64 / 1e3,
            calm as f64 / 1e3,
            loaded as f64 / calm.max(1) as f64,
            overloaded.ok[REFUSED],
            overloaded.ok.iter().sum::<u64>() + overloaded.errors.iter().sum::<u64>()
        ),
        loaded <= 2 * calm,
    );
    for (name, outcome) in [
        ("capacity", &closed),
        ("0.5x", &unloaded),
        ("3x", &overloaded),
    ] {
        if let Some(error) = &outcome.first_error {
            report.checks.fail(format!(
                "{name}: a request failed without a clear refusal code: {error}"
            ));
        }
    }

    let posted = mix.posted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    options.say(format!("verifying {} acknowledged posts", posted.len()));
    verify_posts(&prepared, &posted, options.pick(10, 50), &mut report).await?;
    prepared.stack.stop().await?;
    Ok(report)
}

async fn step(mix: &Arc<SocialMix>, mode: Mode, limits: Limits) -> Outcome {
    let mix = mix.clone();
    load::run(mode, limits, KINDS.len(), move |i| {
        let mix = mix.clone();
        async move { operation(&mix, i).await }
    })
    .await
}

/// Requests served (refusals not counted).
fn served(outcome: &Outcome) -> u64 {
    outcome.ok[..REFUSED].iter().sum()
}

/// The latency of every served request.
fn admitted_latency(outcome: &Outcome) -> hdrhistogram::Histogram<u64> {
    let mut all = new_histogram();
    for histogram in &outcome.latency[..REFUSED] {
        all.add(histogram).expect("histograms share bounds");
    }
    all
}

/// One row per kind of outcome, and one for every served request.
fn record(report: &mut Report, step: &str, mode: Mode, outcome: &Outcome) {
    for (kind, name) in KINDS.iter().enumerate() {
        if kind == REFUSED && outcome.ok[kind] == 0 {
            continue;
        }
        let mut row = Measurement::new(format!("{name} ({step}, {})", mode.describe()), "requests")
            .label("operation", *name)
            .label("step", step)
            .with_throughput(outcome.ok[kind], outcome.elapsed)
            .with_latency(&outcome.latency[kind]);
        row.errors = outcome.errors[kind];
        report.measurements.push(row);
    }
    let row = Measurement::new(format!("served ({step}, {})", mode.describe()), "requests")
        .label("operation", "served")
        .label("step", step)
        .with_throughput(served(outcome), outcome.elapsed)
        .with_latency(&admitted_latency(outcome));
    report.measurements.push(row);
}
