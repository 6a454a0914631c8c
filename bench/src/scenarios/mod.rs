//! The benchmark scenarios and what they share: preparing a stack with a
//! loaded workload, warming users up, and verifying that every posted tweet
//! reached every timeline it should.

pub mod celebrity;
pub mod delivery;
pub mod fanout;
pub mod media;
pub mod mixed;
pub mod notify;
pub mod overload;
pub mod read;
pub mod scale;
pub mod search;
pub mod social;
pub mod wide;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};

use crate::client::{Graphql, Grpc};
use crate::load::Mode;
use crate::report::{Measurement, Report};
use crate::stack::{BenchStack, CacheBackend, StackOptions, StackShape};
use crate::workload::{self, LoadOptions, Loaded, Workload, WorkloadSpec};

/// A scenario of `warble-bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Deliveries per second into the timeline cache, against Redis's own ZADD ceiling.
    Fanout,
    /// Post-to-visible latency for authors of 100 and 10K followers.
    Delivery,
    /// Hydrated home timelines over GraphQL against a trivial query and direct gRPC.
    Read,
    /// Read cost of following celebrities; a celebrity's post latency.
    Celebrity,
    /// 60% home reads, 30% user timelines, 10% posts.
    Mixed,
    /// Memory and fan-out cost as the user count grows.
    Scale,
    /// Feed reads with retweets, by readers blocking many users and none.
    Social,
    /// Notifications: events applied per second, page reads, a viral tweet.
    Notify,
    /// Search: indexing rate, post-to-searchable, query and typeahead latency, index size.
    Search,
    /// Home reads by a reader following 2,000 accounts against one following 25.
    Wide,
    /// Uploads through the gateway against object_store's own write rate.
    Media,
    /// The social mix past capacity: admitted latency, refusals, no lost posts.
    Overload,
}

impl Scenario {
    /// Every scenario, in the order `warble-bench all` runs them.
    pub const ALL: [Scenario; 12] = [
        Self::Fanout,
        Self::Delivery,
        Self::Read,
        Self::Celebrity,
        Self::Mixed,
        Self::Scale,
        Self::Social,
        Self::Notify,
        Self::Search,
        Self::Wide,
        Self::Media,
        Self::Overload,
    ];

    /// Whether the scenario can run on the separate processes
    /// (`--stack processes`): the others read what only the single process
    /// exposes (its event log, in-memory cache, other services' counters).
    pub fn runs_as_processes(self) -> bool {
        matches!(
            self,
            Self::Read | Self::Delivery | Self::Mixed | Self::Celebrity | Self::Wide
        )
    }

    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Delivery => "delivery",
            Self::Read => "read",
            Self::Celebrity => "celebrity",
            Self::Mixed => "mixed",
            Self::Scale => "scale",
            Self::Social => "social",
            Self::Notify => "notify",
            Self::Search => "search",
            Self::Wide => "wide",
            Self::Media => "media",
            Self::Overload => "overload",
        }
    }

    /// One line on what it measures.
    pub fn summary(self) -> &'static str {
        match self {
            Self::Fanout => {
                "deliveries/s into the embedded and Redis caches for authors of 100, 10K and just-under-threshold followers, vs Redis's pipelined ZADD ceiling"
            }
            Self::Delivery => {
                "post-to-visible latency (p50/p99/max) from postTweet until every follower's timeline has it, 100 and 10K followers"
            }
            Self::Read => {
                "hydrated homeTimeline(first: 20) over GraphQL at 1/16/64 clients, vs a trivial query and direct GetHomeTimeline"
            }
            Self::Celebrity => {
                "home read latency following 0/10/50 celebrities; post latency of a celebrity with many followers"
            }
            Self::Mixed => "60% home timelines, 30% user timelines, 10% posts over GraphQL",
            Self::Scale => {
                "memory (RSS, bytes per cached entry) and fan-out cost from 10K users upwards"
            }
            Self::Social => {
                "hydrated homeTimeline with retweets: readers blocking 1,000 users vs readers blocking none"
            }
            Self::Notify => {
                "notifications: likes applied per second, a 20-group page read, a 100,000-like group read vs a single like"
            }
            Self::Search => {
                "search: tweets indexed per second (service vs tantivy alone), post-to-searchable, query and typeahead p99 at 1M tweets, index bytes per tweet"
            }
            Self::Wide => {
                "hydrated homeTimeline and GetHomeTimeline for a reader following 2,000 accounts against one following 25 (same celebrities)"
            }
            Self::Media => {
                "uploadMedia MB/s through the gateway vs object_store's own multipart puts (same run, same disk), and a 1 MB image upload's latency"
            }
            Self::Overload => {
                "the social mix open-loop at 0.5x and 3x its closed-loop capacity: admitted p99, refusals by code, every acknowledged post delivered"
            }
        }
    }

    /// Runs the scenario.
    pub async fn run(self, options: &Options) -> anyhow::Result<Report> {
        let started = Instant::now();
        let mut report = match self {
            Self::Fanout => fanout::run(options).await?,
            Self::Delivery => delivery::run(options).await?,
            Self::Read => read::run(options).await?,
            Self::Celebrity => celebrity::run(options).await?,
            Self::Mixed => mixed::run(options).await?,
            Self::Scale => scale::run(options).await?,
            Self::Social => social::run(options).await?,
            Self::Notify => notify::run(options).await?,
            Self::Search => search::run(options).await?,
            Self::Wide => wide::run(options).await?,
            Self::Media => media::run(options).await?,
            Self::Overload => overload::run(options).await?,
        };
        report.finish(started.elapsed());
        Ok(report)
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .with_context(|| format!("unknown scenario `{name}`"))
    }
}

/// Which cache backends a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// In-memory.
    Embedded,
    /// Redis (a throwaway server unless `--redis-url`).
    Redis,
}

/// Options shared by every scenario; `None` picks the scenario's default
/// for the size (`--smoke` or full).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seconds-long, bounded sizes (what CI runs).
    pub smoke: bool,
    /// Closed loop (default) or open loop at `rate`.
    pub open_rate: Option<f64>,
    /// Client counts for closed-loop scenarios.
    pub concurrency: Option<Vec<usize>>,
    /// Measurement time per step.
    pub duration: Option<Duration>,
    /// Users in the generated graph.
    pub users: Option<usize>,
    /// User counts for `scale`.
    pub sizes: Option<Vec<usize>>,
    /// Follower counts of the measured authors (`fanout`, `delivery`).
    pub followers: Option<Vec<usize>>,
    /// The celebrity threshold.
    pub threshold: Option<u64>,
    /// Posts per measured author.
    pub posts: Option<usize>,
    /// Seed of the workload.
    pub seed: Option<u64>,
    /// Replay this saved workload instead of generating one.
    pub workload: Option<PathBuf>,
    /// Save the generated workload here.
    pub save_workload: Option<PathBuf>,
    /// Cache backends to run on.
    pub backends: Option<Vec<BackendKind>>,
    /// Use this Redis instead of starting one.
    pub redis_url: Option<String>,
    /// Embedded database directory (default: a fresh temporary one).
    pub data_dir: Option<PathBuf>,
    /// Services call each other over loopback gRPC instead of in process.
    pub network_calls: bool,
    /// The single process, or the services as separate processes on Redis.
    pub shape: StackShape,
    /// Where the service binaries of [`StackShape::Processes`] are
    /// (`None`: next to `warble-bench`).
    pub binaries: Option<PathBuf>,
    /// MiB the single process's embedded database caches (`None`: its default).
    pub data_cache_mb: Option<u64>,
    /// fanout-svc's parallel consumer workers (`consumer.workers`); `None`
    /// keeps the service's default.
    pub consumer_workers: Option<u32>,
    /// Print progress lines to stderr.
    pub progress: bool,
}

impl Options {
    /// `smoke` when smoke, else `full`.
    pub fn pick<T>(&self, smoke: T, full: T) -> T {
        if self.smoke { smoke } else { full }
    }

    /// The load mode for `concurrency` clients.
    pub fn mode(&self, concurrency: usize) -> Mode {
        match self.open_rate {
            Some(rate) => Mode::Open {
                rate,
                max_in_flight: 512,
            },
            None => Mode::Closed { concurrency },
        }
    }

    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            concurrency: 32,
            progress: self.progress,
        }
    }

    fn stack_options(&self, threshold: u64) -> StackOptions {
        StackOptions {
            data_dir: self.data_dir.clone(),
            celebrity_threshold: threshold,
            in_process_calls: !self.network_calls,
            shape: self.shape,
            binaries: self.binaries.clone(),
            data_cache_mb: self.data_cache_mb,
            consumer_workers: self
                .consumer_workers
                .unwrap_or(StackOptions::default().consumer_workers),
            ..StackOptions::default()
        }
    }

    fn say(&self, message: impl std::fmt::Display) {
        if self.progress {
            eprintln!("{message}");
        }
    }
}

/// A stack with a workload loaded into it.
pub struct Prepared {
    /// The stack.
    pub stack: BenchStack,
    /// gRPC clients.
    pub grpc: Grpc,
    /// The GraphQL client.
    pub graphql: Graphql,
    /// The workload.
    pub workload: Workload,
    /// Its ids in the stack.
    pub loaded: Loaded,
}

impl Prepared {
    /// The stack's id of user `index`.
    pub fn user_id(&self, index: usize) -> u64 {
        self.loaded.user_ids[index]
    }
}

/// The workload `--workload` names, or one generated from `spec` (saved
/// when `--save-workload` is given).
pub fn workload_for(options: &Options, spec: WorkloadSpec) -> anyhow::Result<Workload> {
    let workload = match &options.workload {
        Some(path) => Workload::load_file(path)?,
        None => {
            let spec = WorkloadSpec {
                seed: options.seed.unwrap_or(spec.seed),
                ..spec
            };
            Workload::generate(&spec)?
        }
    };
    if let Some(path) = &options.save_workload {
        workload.save(path)?;
    }
    Ok(workload)
}

/// Starts a stack on `backend` and loads `workload` into it, recording the
/// load rates in `report`.
pub async fn prepare(
    options: &Options,
    workload: Workload,
    stack_options: StackOptions,
    report: &mut Report,
) -> anyhow::Result<Prepared> {
    let backend = stack_options.label();
    report.param("stack", stack_options.shape.name());
    report.param(
        "internal_calls",
        if stack_options.shape == StackShape::Processes {
            "separate processes (loopback gRPC)"
        } else if stack_options.in_process_calls {
            "in-process"
        } else {
            "network"
        },
    );
    let stack = BenchStack::start(stack_options).await?;
    let grpc = Grpc::connect(&stack).await?;
    let graphql = Graphql::new(stack.gateway_addr);
    options.say(format!(
        "{backend}: loading {} users, {} follows, {} tweets",
        workload.usernames.len(),
        workload.follow_count(),
        workload.tweets.len()
    ));
    let loaded = workload::load(&workload, &grpc, options.load_options()).await?;
    stack
        .wait_fanout_idle(Duration::from_secs(600))
        .await
        .context("fan-out of the loaded workload")?;
    let users = Measurement::new(format!("load: CreateUser ({backend})"), "users")
        .label("backend", backend)
        .with_throughput(
            loaded.user_ids.len() as u64,
            Duration::from_secs_f64(loaded.users_s),
        );
    let follows = Measurement::new(format!("load: Follow ({backend})"), "follows")
        .label("backend", backend)
        .with_throughput(
            workload.follow_count() as u64,
            Duration::from_secs_f64(loaded.follows_s),
        );
    let tweets = Measurement::new(format!("load: CreateTweet ({backend})"), "tweets")
        .label("backend", backend)
        .with_throughput(
            loaded.tweet_ids.len() as u64,
            Duration::from_secs_f64(loaded.tweets_s),
        );
    // Rows for what this workload actually loaded (some have no tweets).
    report.measurements.extend(
        [users, follows, tweets]
            .into_iter()
            .filter(|row| row.operations > 0),
    );
    Ok(Prepared {
        stack,
        grpc,
        graphql,
        workload,
        loaded,
    })
}

/// Creates `users` through graph-svc's CreateUsers, a full batch per call
/// and four calls in flight, counting them on a `label` progress line;
/// returns their ids in order.
pub async fn create_users(
    grpc: &Grpc,
    users: Vec<warble_proto::graph::v1::CreateUserRequest>,
    label: &str,
    progress: bool,
) -> anyhow::Result<Vec<u64>> {
    use warble_proto::graph::v1::CreateUsersRequest;

    let meter = workload::Progress::start(label, users.len(), progress);
    let batches: Vec<Vec<_>> = users
        .chunks(warble_proto::limits::graph::MAX_WRITE_BATCH)
        .map(<[_]>::to_vec)
        .collect();
    let created: Vec<Vec<u64>> = futures::stream::iter(batches)
        .map(|users| {
            let (mut graph, meter) = (grpc.graph.clone(), meter.clone());
            async move {
                let created = graph
                    .create_users(CreateUsersRequest { users })
                    .await?
                    .into_inner()
                    .users;
                meter.add(created.len() as u64);
                anyhow::Ok(created.into_iter().map(|user| user.id).collect())
            }
        })
        .buffered(4)
        .try_collect()
        .await?;
    meter.finish();
    Ok(created.into_iter().flatten().collect())
}

/// Each user reads their home timeline once, as a returning user would:
/// marks them active (so fan-out reaches them) and builds their cached timeline.
pub async fn warm_up(prepared: &Prepared, users: &[u64], progress: bool) -> anyhow::Result<()> {
    let meter = workload::Progress::start("warm-up", users.len(), progress);
    futures::stream::iter(users.iter().copied())
        .map(|user| {
            let (grpc, meter) = (prepared.grpc.clone(), meter.clone());
            async move {
                grpc.home(user, 1).await?;
                meter.add(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
        .context("warming up home timelines")?;
    meter.finish();
    Ok(())
}

/// A tweet posted during a measurement: its author's user index and its id.
#[derive(Debug, Clone, Copy)]
pub struct Posted {
    /// Author's user index in the workload.
    pub author: usize,
    /// The tweet id.
    pub tweet_id: u64,
}

/// Checks every posted tweet reached every timeline it should, once
/// fan-out is idle: the author's own timeline, each follower's built cached
/// timeline (pushed, or rebuilt with it), or the author's celebrity set.
/// Followers whose timeline was never built have nothing cached to check:
/// up to `probe_unbuilt` of them read their timeline through timeline-svc
/// (which rebuilds it from the stores) and are checked too. Adds the counts
/// to `report.checks`.
pub async fn verify_posts(
    prepared: &Prepared,
    posts: &[Posted],
    probe_unbuilt: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let stack = &prepared.stack;
    stack.wait_fanout_idle(Duration::from_secs(600)).await?;
    let threshold = stack.options.celebrity_threshold;
    let mut probed = 0usize;
    let mut failures = Vec::new();
    let (mut expected, mut verified) = (0u64, 0u64);
    for post in posts {
        let author_id = prepared.user_id(post.author);
        let followers = &prepared.workload.followers[post.author];
        if followers.len() as u64 >= threshold {
            // Celebrity: merged at read time from their recent-tweet set.
            expected += 1;
            let recent = stack
                .timeline_cache
                .celebrity_recent(&[author_id], Some(post.tweet_id + 1), 1)
                .await?;
            match recent.first() {
                Some(Some(recent))
                    if recent.entries.first().map(|entry| entry.tweet_id)
                        == Some(post.tweet_id) =>
                {
                    verified += 1
                }
                Some(None) => {
                    // Set never filled (nobody read a follower's timeline since):
                    // a follower's read fills it; probe one.
                    let follower = prepared.user_id(followers[0] as usize);
                    let seen = prepared.grpc.home(follower, 100).await?;
                    if seen.contains(&post.tweet_id) {
                        verified += 1;
                    } else {
                        failures.push(format!(
                            "celebrity tweet {} missing from follower {follower}'s timeline",
                            post.tweet_id
                        ));
                    }
                }
                _ => failures.push(format!(
                    "celebrity tweet {} missing from its author's recent set",
                    post.tweet_id
                )),
            }
            continue;
        }
        let audience: Vec<u64> = std::iter::once(author_id)
            .chain(followers.iter().map(|&f| prepared.user_id(f as usize)))
            .collect();
        let results: Vec<(u64, Option<bool>)> = futures::stream::iter(audience)
            .map(|user| async move {
                let found = contains(stack, user, post.tweet_id).await?;
                anyhow::Ok((user, found))
            })
            .buffer_unordered(64)
            .try_collect()
            .await?;
        for (user, found) in results {
            match found {
                Some(true) => {
                    expected += 1;
                    verified += 1;
                }
                Some(false) => {
                    expected += 1;
                    failures.push(format!(
                        "tweet {} (author {author_id}) missing from user {user}'s cached timeline",
                        post.tweet_id
                    ));
                }
                None if probed < probe_unbuilt => {
                    probed += 1;
                    expected += 1;
                    prepared.grpc.home(user, 1).await?;
                    if contains(stack, user, post.tweet_id).await? == Some(true) {
                        verified += 1;
                    } else {
                        failures.push(format!(
                            "tweet {} missing from user {user}'s rebuilt timeline",
                            post.tweet_id
                        ));
                    }
                }
                None => {}
            }
        }
    }
    report.checks.tweets_posted += posts.len() as u64;
    report.checks.deliveries_expected += expected;
    report.checks.deliveries_verified += verified;
    report.checks.dead_letters += stack.dead_letters().await?;
    let shown = failures.len().min(10);
    if failures.len() > shown {
        failures.truncate(shown);
        failures.push("(more missing deliveries not listed)".into());
    }
    report.checks.failures.extend(failures);
    Ok(())
}

/// Whether `user`'s cached timeline holds `tweet_id`; `None` when it is not
/// built. A full timeline may have dropped an older tweet: that counts as held.
async fn contains(stack: &BenchStack, user: u64, tweet_id: u64) -> anyhow::Result<Option<bool>> {
    let page = stack
        .timeline_cache
        .read(user, Some(tweet_id + 1), 1)
        .await?;
    Ok(page.map(|page| {
        page.entries.first().map(|entry| entry.tweet_id) == Some(tweet_id)
            || (page.len >= warble_timeline_cache::TIMELINE_CAPACITY && page.entries.is_empty())
    }))
}

/// The backends to run, by default `defaults`; Redis dropped (with a note)
/// when no server can be had.
pub fn backends(options: &Options, defaults: &[BackendKind]) -> Vec<BackendKind> {
    if options.shape == StackShape::Processes {
        // Separate processes share their own Redis servers: one run.
        return vec![BackendKind::Redis];
    }
    options
        .backends
        .clone()
        .unwrap_or_else(|| defaults.to_vec())
}

/// A key prefix unique to this run, so runs sharing a Redis never collide.
pub fn run_prefix(scenario: &str) -> String {
    format!(
        "warble-bench:{scenario}:{}:{}:",
        std::process::id(),
        warble_mesh::time::now_ms()
    )
}

/// The cache backend for `kind` on `redis` (when Redis).
pub fn cache_backend(kind: BackendKind, redis_url: Option<&str>, scenario: &str) -> CacheBackend {
    match (kind, redis_url) {
        (BackendKind::Redis, Some(url)) => CacheBackend::Redis {
            url: url.into(),
            key_prefix: run_prefix(scenario),
        },
        _ => CacheBackend::Embedded,
    }
}

/// Authors first (index `i` has `audiences[i]` followers), then the shared
/// follower pool: author `i`'s followers are the first `audiences[i]` of it.
pub fn audience_workload(audiences: &[usize], threshold: u64) -> Workload {
    let pool = audiences.iter().copied().max().unwrap_or(0);
    let users = audiences.len() + pool;
    let mut followers: Vec<Vec<u32>> = audiences
        .iter()
        .map(|&count| {
            (audiences.len()..audiences.len() + count)
                .map(|f| f as u32)
                .collect()
        })
        .collect();
    followers.resize(users, Vec::new());
    Workload {
        spec: WorkloadSpec {
            celebrities: 0,
            top_normal_followers: pool,
            min_followers: 0,
            tweets_per_user: 0,
            ..WorkloadSpec::new(users, 0, threshold)
        },
        usernames: (0..users).map(crate::text::username).collect(),
        followers,
        tweets: Vec::new(),
    }
}

/// The graph `read` and `mixed` run on: `--users` users (10,000; 200 at
/// smoke size) with a power-law follower distribution under a threshold of
/// 1,000 (50 at smoke size), 3 celebrities above it (2 at smoke size), 5
/// tweets each (2 at smoke size).
pub fn standard_spec(options: &Options) -> WorkloadSpec {
    let users = options.users.unwrap_or(options.pick(200, 10_000));
    let threshold = options
        .threshold
        .unwrap_or(options.pick(50, 1_000).min(users as u64 / 2));
    WorkloadSpec {
        min_followers: options.pick(3, 10),
        tweets_per_user: options.pick(2, 5),
        ..WorkloadSpec::new(users, options.pick(2, 3), threshold)
    }
}

/// Picks `count` distinct users from `users` at random (seeded).
pub fn sample_users(users: &[u64], count: usize, seed: u64) -> Vec<u64> {
    use rand::SeedableRng as _;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    rand::seq::index::sample(&mut rng, users.len(), count.min(users.len()))
        .into_iter()
        .map(|index| users[index])
        .collect()
}
