//! `mixed`: the standard social-network mix over GraphQL: 60% hydrated home
//! timelines, 30% user timelines (authors picked by popularity, so popular
//! profiles are read most), 10% posts, from a pool of returning users.
//! Every post is then checked to have reached its followers' timelines.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng as _;
use rand::distr::Distribution as _;
use rand::distr::weighted::WeightedIndex;

use super::{
    Options, Posted, Prepared, prepare, standard_spec, verify_posts, warm_up, workload_for,
};
use crate::client::Graphql;
use crate::load::{self, Limits};
use crate::report::{Measurement, Report};

/// The mix's operations, by kind.
pub(super) const KINDS: [&str; 3] = [
    "homeTimeline(first: 20)",
    "userTimeline(first: 20)",
    "postTweet",
];
/// Out of ten operations: six home reads, three user timelines, one post.
const MIX: [usize; 10] = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];

/// The social mix over a warmed-up pool of users: what each operation
/// needs, and the posts acknowledged so far (to verify afterwards).
pub(super) struct SocialMix {
    graphql: Graphql,
    tokens: Vec<String>,
    pool: Vec<usize>,
    usernames: Vec<String>,
    popularity: WeightedIndex<usize>,
    seed: u64,
    /// Every acknowledged post.
    pub posted: Mutex<Vec<Posted>>,
}

impl SocialMix {
    /// Picks a pool of returning users (60 at smoke size, 2,000 full) and
    /// warms their timelines up.
    pub(super) async fn warmed_up(options: &Options, prepared: &Prepared) -> anyhow::Result<Self> {
        let users = prepared.loaded.user_ids.len();
        let pool_size = options.pick(60, 2_000).min(users);
        let mut rng = rand::rngs::StdRng::seed_from_u64(prepared.workload.spec.seed);
        let pool: Vec<usize> = rand::seq::index::sample(&mut rng, users, pool_size).into_vec();
        let pool_ids: Vec<u64> = pool.iter().map(|&i| prepared.user_id(i)).collect();
        options.say(format!("warming up {} users", pool.len()));
        warm_up(prepared, &pool_ids, options.progress).await?;
        Ok(Self {
            graphql: prepared.graphql.clone(),
            tokens: pool_ids.iter().map(|&u| prepared.stack.token(u)).collect(),
            pool,
            usernames: prepared.workload.usernames.clone(),
            // Profiles are read in proportion to their popularity (follower count).
            popularity: WeightedIndex::new(
                prepared.workload.followers.iter().map(|f| f.len() + 1),
            )?,
            seed: prepared.workload.spec.seed,
            posted: Mutex::default(),
        })
    }

    /// Users in the pool.
    pub(super) fn pool_size(&self) -> usize {
        self.pool.len()
    }

    /// Operation `i` of the mix: its kind (an index into [`KINDS`]) and result.
    pub(super) async fn operation(&self, i: u64) -> (usize, anyhow::Result<()>) {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(self.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let kind = MIX[(splitmix(i) % MIX.len() as u64) as usize];
        let who = (splitmix(i ^ 0xABCD) % self.pool.len() as u64) as usize;
        let token = &self.tokens[who];
        let result = match kind {
            0 => self.graphql.home(token, 20).await.map(drop),
            1 => {
                let author = self.popularity.sample(&mut rng);
                self.graphql
                    .user_timeline(token, &self.usernames[author], 20)
                    .await
                    .map(drop)
            }
            _ => {
                let text = crate::text::tweet_text(
                    &mut rng,
                    &self.usernames[..self.usernames.len().min(100)],
                );
                self.graphql.post(token, &text).await.map(|tweet_id| {
                    self.posted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Posted {
                            author: self.pool[who],
                            tweet_id,
                        });
                })
            }
        };
        (kind, result)
    }
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("mixed", options.smoke);
    let workload = workload_for(options, standard_spec(options))?;
    report.param("users", workload.usernames.len() as u64);
    report.param("follows", workload.follow_count() as u64);
    report.param("mix", "60% homeTimeline, 30% userTimeline, 10% postTweet");
    let stack_options = options.stack_options(workload.spec.celebrity_threshold);
    let prepared = prepare(options, workload, stack_options, &mut report).await?;
    let mix = Arc::new(SocialMix::warmed_up(options, &prepared).await?);
    report.param("active_users", mix.pool_size() as u64);
    let concurrency = options
        .concurrency
        .as_ref()
        .and_then(|c| c.first().copied())
        .unwrap_or(options.pick(4, 16));
    let mode = options.mode(concurrency);
    let limits = Limits {
        duration: options.duration.unwrap_or(Duration::from_secs(30)),
        max_operations: options.smoke.then_some(80),
    };
    report.param("mode", mode.describe());
    report.param("seconds", limits.duration.as_secs_f64());

    let operations = mix.clone();
    let outcome = load::run(mode, limits, KINDS.len(), move |i| {
        let mix = operations.clone();
        async move { mix.operation(i).await }
    })
    .await;
    if let Some(error) = &outcome.first_error {
        report.checks.fail(format!("mixed: {error}"));
    }
    let mut total = crate::report::new_histogram();
    for (kind, name) in KINDS.iter().enumerate() {
        total.add(&outcome.latency[kind])?;
        let mut row = Measurement::new(format!("{name} ({})", mode.describe()), "requests")
            .label("operation", *name)
            .label("mode", mode.describe())
            .with_throughput(outcome.ok[kind], outcome.elapsed)
            .with_latency(&outcome.latency[kind]);
        row.errors = outcome.errors[kind];
        report.measurements.push(row);
    }
    let mut row = Measurement::new(format!("all operations ({})", mode.describe()), "requests")
        .label("operation", "all")
        .label("mode", mode.describe())
        .with_throughput(outcome.ok.iter().sum(), outcome.elapsed)
        .with_latency(&total);
    row.errors = outcome.errors.iter().sum();
    // Counted in the per-operation rows already.
    row.extra
        .insert("errors_in_rows_above".into(), row.errors.into());
    row.errors = 0;
    report.measurements.push(row);

    let posted = mix.posted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    options.say(format!("verifying {} posts", posted.len()));
    verify_posts(&prepared, &posted, options.pick(10, 50), &mut report).await?;
    prepared.stack.stop().await?;
    Ok(report)
}

/// A well-mixed hash of `i`, so the operation mix has no period.
pub(super) fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
