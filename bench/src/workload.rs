//! The synthetic social graph: generated from a [`WorkloadSpec`] (or read
//! back from JSON for a repeat run) and loaded into a stack through the
//! public gRPC APIs.
//!
//! # Shape
//!
//! User `i`'s index is their popularity rank. The first `celebrities` users
//! have at least `celebrity_threshold` followers (the most followed gets
//! `top_celebrity_followers`, the next ones fewer by a power law, never
//! below the threshold). Everyone else follows a Zipf-like law below the
//! threshold: rank `j` among them gets `top_normal_followers / (j + 1)^s`
//! followers (`s` = `zipf_exponent`), at least `min_followers`. Followers
//! are drawn uniformly without repetition, so following counts come out
//! roughly binomial while follower counts are heavy-tailed, as on real
//! networks. Tweets are generated in rounds (every user's first tweet, then
//! every user's second, ...) with hashtags, mentions and links.
//!
//! Everything derives from `seed`: the same spec always gives the same
//! workload; `--workload file.json` replays a saved one exactly.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use warble_proto::graph::v1::{
    CreateUserRequest, CreateUsersRequest, FollowManyRequest, FollowPair,
};
use warble_proto::limits;
use warble_proto::tweet::v1::{CreateTweetRequest, CreateTweetsRequest};

use crate::client::Grpc;
use crate::text;

/// What to generate (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Users in all.
    pub users: usize,
    /// Users with at least `celebrity_threshold` followers (the most popular ranks).
    pub celebrities: usize,
    /// The stack's celebrity threshold.
    pub celebrity_threshold: u64,
    /// Followers of the most followed celebrity.
    pub top_celebrity_followers: usize,
    /// Followers of the most followed non-celebrity (below the threshold).
    pub top_normal_followers: usize,
    /// Power-law exponent of follower counts by rank.
    pub zipf_exponent: f64,
    /// Fewest followers anyone has.
    pub min_followers: usize,
    /// Tweets each user has posted before the measurement starts.
    pub tweets_per_user: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl WorkloadSpec {
    /// A spec of `users` users with `celebrities` celebrities over `threshold`.
    pub fn new(users: usize, celebrities: usize, threshold: u64) -> Self {
        Self {
            users,
            celebrities,
            celebrity_threshold: threshold,
            top_celebrity_followers: (threshold as usize).saturating_mul(2),
            top_normal_followers: (threshold as usize).saturating_sub(1),
            zipf_exponent: 1.0,
            min_followers: 5,
            tweets_per_user: 3,
            seed: 42,
        }
    }

    /// Follower count of the user at popularity rank `rank`.
    pub fn followers_of_rank(&self, rank: usize) -> usize {
        let others = self.users.saturating_sub(1);
        let threshold = self.celebrity_threshold as usize;
        let zipf = |top: usize, rank: usize| {
            (top as f64 / ((rank + 1) as f64).powf(self.zipf_exponent)) as usize
        };
        if rank < self.celebrities {
            zipf(self.top_celebrity_followers, rank)
                .max(threshold)
                .min(others)
        } else {
            zipf(self.top_normal_followers, rank - self.celebrities)
                .max(self.min_followers)
                .min(threshold.saturating_sub(1))
                .min(others)
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users >= 2, "a workload needs at least 2 users");
        anyhow::ensure!(
            self.celebrities <= self.users,
            "more celebrities than users"
        );
        anyhow::ensure!(
            self.celebrities == 0 || self.users > self.celebrity_threshold as usize,
            "{} celebrities need more than {} users (the celebrity threshold)",
            self.celebrities,
            self.celebrity_threshold
        );
        anyhow::ensure!(self.zipf_exponent > 0.0, "zipf_exponent must be positive");
        anyhow::ensure!(self.users <= u32::MAX as usize, "too many users");
        Ok(())
    }
}

/// One tweet to post: its author (user index) and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TweetSpec {
    /// Index of the author in [`Workload::usernames`].
    pub author: u32,
    /// The text.
    pub text: String,
}

/// A generated social graph (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// How it was generated.
    pub spec: WorkloadSpec,
    /// Usernames by user index.
    pub usernames: Vec<String>,
    /// `followers[i]`: indexes of the users following user `i`, ascending.
    pub followers: Vec<Vec<u32>>,
    /// Tweets posted while loading, in posting order.
    pub tweets: Vec<TweetSpec>,
}

impl Workload {
    /// Generates the workload `spec` describes.
    pub fn generate(spec: &WorkloadSpec) -> anyhow::Result<Self> {
        spec.validate()?;
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let usernames: Vec<String> = (0..spec.users).map(text::username).collect();
        let followers = (0..spec.users)
            .map(|user| {
                let count = spec.followers_of_rank(user);
                // Draw from everyone but the user, then skip over the user's own index.
                let mut drawn: Vec<u32> = rand::seq::index::sample(&mut rng, spec.users - 1, count)
                    .into_iter()
                    .map(|other| if other >= user { other + 1 } else { other } as u32)
                    .collect();
                drawn.sort_unstable();
                drawn
            })
            .collect();
        let mut tweets = Vec::with_capacity(spec.users * spec.tweets_per_user);
        for _round in 0..spec.tweets_per_user {
            for author in 0..spec.users {
                // Mention someone the author plausibly knows: any user, popular ones more often.
                let mention_pool = if rng.random_bool(0.5) {
                    &usernames[..usernames.len().min(100)]
                } else {
                    &usernames[..]
                };
                tweets.push(TweetSpec {
                    author: author as u32,
                    text: text::tweet_text(&mut rng, mention_pool),
                });
            }
        }
        Ok(Self {
            spec: spec.clone(),
            usernames,
            followers,
            tweets,
        })
    }

    /// Reads a workload saved with [`Workload::save`].
    pub fn load_file(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the workload {}", path.display()))?;
        serde_json::from_reader(std::io::BufReader::new(file))
            .with_context(|| format!("{} is not a saved workload", path.display()))
    }

    /// Saves the workload as JSON for a repeat run.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(file), self)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Follow edges in all.
    pub fn follow_count(&self) -> usize {
        self.followers.iter().map(Vec::len).sum()
    }

    /// `following[i]`: whom user `i` follows.
    pub fn following(&self) -> Vec<Vec<u32>> {
        let mut following = vec![Vec::new(); self.usernames.len()];
        for (followee, followers) in self.followers.iter().enumerate() {
            for &follower in followers {
                following[follower as usize].push(followee as u32);
            }
        }
        following
    }

    /// Indexes of the users with at least the threshold's followers.
    pub fn celebrities(&self) -> Vec<usize> {
        (0..self.usernames.len())
            .filter(|&user| self.followers[user].len() as u64 >= self.spec.celebrity_threshold)
            .collect()
    }
}

/// A workload loaded into a stack.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The stack's user id for each user index.
    pub user_ids: Vec<u64>,
    /// The tweet id of each of the workload's tweets, in order.
    pub tweet_ids: Vec<u64>,
    /// Seconds spent creating users.
    pub users_s: f64,
    /// Seconds spent creating follows.
    pub follows_s: f64,
    /// Seconds spent posting tweets.
    pub tweets_s: f64,
}

/// Users, follows or tweets per CreateUsers / FollowMany / CreateTweets
/// call. Each call is one store transaction, one fsync, so loading runs
/// about this many times faster than a call per item; graph-svc and
/// tweet-svc take up to [`limits::graph::MAX_WRITE_BATCH`] and
/// [`limits::tweet::MAX_WRITE_BATCH`].
const LOAD_BATCH: usize = 500;
const _: () = assert!(LOAD_BATCH <= limits::graph::MAX_WRITE_BATCH);
const _: () = assert!(LOAD_BATCH <= limits::tweet::MAX_WRITE_BATCH);

/// Most batch calls in flight at once. The store commits one transaction
/// at a time, so more would only queue; a few keep the next batches
/// encoded and on the wire while one commits.
const BATCH_CALLS_IN_FLIGHT: usize = 4;

/// How [`load`] runs.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Calls in flight at once (at most [`BATCH_CALLS_IN_FLIGHT`]: every
    /// loading call is a batch).
    pub concurrency: usize,
    /// Print a progress line to stderr.
    pub progress: bool,
}

/// Loads `workload` through the public gRPC APIs: users (CreateUsers),
/// then follows (FollowMany), then tweets (CreateTweets), each in batches
/// of [`LOAD_BATCH`] with a few calls in flight.
pub async fn load(
    workload: &Workload,
    grpc: &Grpc,
    options: LoadOptions,
) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let user_ids = create_all(workload, grpc, options).await?;
    let users_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    follow_all(workload, grpc, &user_ids, options).await?;
    let follows_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let tweets: Vec<(u64, String)> = workload
        .tweets
        .iter()
        .map(|tweet| (user_ids[tweet.author as usize], tweet.text.clone()))
        .collect();
    let tweet_ids = post_all(grpc, tweets, options).await?;
    Ok(Loaded {
        user_ids,
        tweet_ids,
        users_s,
        follows_s,
        tweets_s: started.elapsed().as_secs_f64(),
    })
}

/// Batch calls in flight for `options`.
fn batch_calls_in_flight(options: LoadOptions) -> usize {
    options.concurrency.clamp(1, BATCH_CALLS_IN_FLIGHT)
}

/// Creates every user of `workload`; returns their ids by user index.
async fn create_all(
    workload: &Workload,
    grpc: &Grpc,
    options: LoadOptions,
) -> anyhow::Result<Vec<u64>> {
    let progress = Progress::start("users", workload.usernames.len(), options.progress);
    let user_ids = futures::stream::iter(workload.usernames.chunks(LOAD_BATCH))
        .map(|usernames| {
            let mut graph = grpc.graph.clone();
            let progress = progress.clone();
            let users = usernames
                .iter()
                .map(|username| CreateUserRequest {
                    username: username.clone(),
                    display_name: username.replace('_', " "),
                    bio: format!("Synthetic user {username} of warble bench."),
                })
                .collect();
            async move {
                let created = graph
                    .create_users(CreateUsersRequest { users })
                    .await?
                    .into_inner()
                    .users;
                // Ids are matched to user indexes by position: check it holds.
                anyhow::ensure!(
                    created.len() == usernames.len()
                        && created
                            .iter()
                            .zip(usernames)
                            .all(|(user, username)| &user.username == username),
                    "CreateUsers did not return the {} users asked for, in order",
                    usernames.len()
                );
                progress.add(created.len() as u64);
                anyhow::Ok(created.into_iter().map(|user| user.id).collect::<Vec<_>>())
            }
        })
        .buffered(batch_calls_in_flight(options))
        .try_concat()
        .await
        .context("creating users")?;
    progress.finish();
    Ok(user_ids)
}

/// Creates every follow edge of `workload`.
async fn follow_all(
    workload: &Workload,
    grpc: &Grpc,
    user_ids: &[u64],
    options: LoadOptions,
) -> anyhow::Result<()> {
    let edges = workload
        .followers
        .iter()
        .enumerate()
        .flat_map(|(followee, followers)| {
            followers
                .iter()
                .map(move |&follower| (user_ids[follower as usize], user_ids[followee]))
        });
    let progress = Progress::start("follows", workload.follow_count(), options.progress);
    futures::stream::iter(edges)
        .chunks(LOAD_BATCH)
        .map(|pairs| {
            let mut graph = grpc.graph.clone();
            let progress = progress.clone();
            async move {
                let pairs: Vec<FollowPair> = pairs
                    .into_iter()
                    .map(|(follower_id, followee_id)| FollowPair {
                        follower_id,
                        followee_id,
                    })
                    .collect();
                let count = pairs.len() as u64;
                graph.follow_many(FollowManyRequest { pairs }).await?;
                progress.add(count);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(batch_calls_in_flight(options))
        .try_collect::<()>()
        .await
        .context("creating follows")?;
    progress.finish();
    Ok(())
}

/// Posts `(author id, text)` tweets with CreateTweets, in batches of
/// [`LOAD_BATCH`]; returns their ids in order.
pub async fn post_all(
    grpc: &Grpc,
    tweets: Vec<(u64, String)>,
    options: LoadOptions,
) -> anyhow::Result<Vec<u64>> {
    let progress = Progress::start("tweets", tweets.len(), options.progress);
    let ids = futures::stream::iter(tweets)
        .chunks(LOAD_BATCH)
        .map(|batch| {
            let mut client = grpc.tweets.clone();
            let progress = progress.clone();
            let authors: Vec<u64> = batch.iter().map(|(author, _)| *author).collect();
            let tweets = batch
                .into_iter()
                .map(|(author_id, text)| CreateTweetRequest {
                    author_id,
                    text,
                    ..Default::default()
                })
                .collect();
            async move {
                let results = client
                    .create_tweets(CreateTweetsRequest { tweets })
                    .await?
                    .into_inner()
                    .results;
                // Ids are matched to workload tweets by position: check it holds.
                let ids = results
                    .into_iter()
                    .map(|result| result.tweet.map(|tweet| (tweet.author_id, tweet.id)))
                    .collect::<Option<Vec<_>>>()
                    .context("CreateTweets returned a result without its tweet")?;
                anyhow::ensure!(
                    ids.len() == authors.len()
                        && ids
                            .iter()
                            .zip(&authors)
                            .all(|((author, _), asked)| author == asked),
                    "CreateTweets did not return the {} tweets asked for, in order",
                    authors.len()
                );
                progress.add(ids.len() as u64);
                anyhow::Ok(ids.into_iter().map(|(_, id)| id).collect::<Vec<_>>())
            }
        })
        .buffered(batch_calls_in_flight(options))
        .try_concat()
        .await
        .context("posting tweets")?;
    progress.finish();
    Ok(ids)
}

/// A progress line on stderr, refreshed twice a second.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<ProgressInner>,
}

struct ProgressInner {
    label: String,
    total: usize,
    done: AtomicU64,
    started: Instant,
    enabled: bool,
    ticker: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Progress {
    /// Starts reporting `label` out of `total` (silently when not `enabled`).
    pub fn start(label: &str, total: usize, enabled: bool) -> Self {
        let inner = Arc::new(ProgressInner {
            label: label.into(),
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            enabled,
            ticker: std::sync::Mutex::new(None),
        });
        if enabled {
            let weak = Arc::downgrade(&inner);
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match weak.upgrade() {
                        Some(inner) => inner.print(false),
                        None => return,
                    }
                }
            });
            *inner.ticker.lock().unwrap_or_else(|p| p.into_inner()) = Some(ticker);
        }
        Self { inner }
    }

    /// Counts `n` more done.
    pub fn add(&self, n: u64) {
        self.inner.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Prints the final line.
    pub fn finish(&self) {
        if let Some(ticker) = self
            .inner
            .ticker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            ticker.abort();
        }
        if self.inner.enabled {
            self.inner.print(true);
        }
    }
}

impl ProgressInner {
    fn print(&self, last: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let percent = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        eprint!(
            "\r  loading {:<8} {done:>9}/{:<9} {percent:5.1}%  {:>8.0}/s  {:>6.1}s{}",
            self.label,
            self.total,
            done as f64 / elapsed,
            elapsed,
            if last { "\n" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_counts_follow_the_power_law_and_respect_the_threshold() {
        let spec = WorkloadSpec {
            min_followers: 2,
            ..WorkloadSpec::new(1_000, 3, 100)
        };
        let workload = Workload::generate(&spec).unwrap();
        let counts: Vec<usize> = workload.followers.iter().map(Vec::len).collect();
        assert_eq!(workload.celebrities(), vec![0, 1, 2]);
        assert_eq!(counts[0], 200);
        assert_eq!(
            counts[3], 99,
            "the top normal user is just under the threshold"
        );
        assert_eq!(counts[4], 49);
        assert!(counts[3..].iter().all(|&c| (2..100).contains(&c)));
        for (user, followers) in workload.followers.iter().enumerate() {
            assert!(
                !followers.contains(&(user as u32)),
                "nobody follows themself"
            );
            assert!(
                followers.windows(2).all(|w| w[0] < w[1]),
                "distinct, sorted"
            );
        }
        assert_eq!(workload.tweets.len(), 3_000);
    }

    #[test]
    fn the_same_spec_gives_the_same_workload_and_it_round_trips_through_json() {
        let spec = WorkloadSpec::new(200, 1, 50);
        let first = Workload::generate(&spec).unwrap();
        assert_eq!(first, Workload::generate(&spec).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workload.json");
        first.save(&path).unwrap();
        assert_eq!(Workload::load_file(&path).unwrap(), first);
    }

    #[test]
    fn impossible_specs_are_refused() {
        assert!(Workload::generate(&WorkloadSpec::new(50, 1, 100)).is_err());
        assert!(Workload::generate(&WorkloadSpec::new(1, 0, 100)).is_err());
    }
}
