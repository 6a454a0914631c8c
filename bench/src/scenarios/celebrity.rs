//! `celebrity`: what following celebrities costs a reader, and what being
//! one costs a poster.
//!
//! Three groups of readers follow the same 20 normal authors plus 0, 10 or
//! 50 celebrities (authors above the threshold, merged into the home
//! timeline at read time). Each group's GetHomeTimeline(20) latency is
//! measured over gRPC (where the merge happens) and hydrated over GraphQL;
//! the merge's cost is the difference between the groups.
//!
//! A mega-celebrity with `--followers` followers (1M is the figure;
//! the default full size is 100K, see BENCHMARKS.md) posts: its CreateTweet
//! latency, and the time until the tweet shows in the merge (its recent-tweet
//! set), beside a normal author's post.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::seq::IndexedRandom as _;

use super::{Options, Posted, prepare, verify_posts, warm_up};
use crate::load::{self, Limits};
use crate::report::{Measurement, Report, format_us, new_histogram, record};
use crate::workload::{TweetSpec, Workload, WorkloadSpec};

/// Celebrities followed by each reader group.
const GROUPS: [usize; 3] = [0, 10, 50];
/// Normal authors each reader follows.
const NORMAL_FOLLOWS: usize = 20;

/// Where each kind of user sits in the workload.
struct Layout {
    mega: usize,
    normal: std::ops::Range<usize>,
    readers: Vec<std::ops::Range<usize>>,
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("celebrity", options.smoke);
    let threshold = options.threshold.unwrap_or(options.pick(20, 1_000));
    let mega_followers = options
        .followers
        .as_ref()
        .and_then(|f| f.first().copied())
        .unwrap_or(options.pick(100, 100_000));
    anyhow::ensure!(
        mega_followers as u64 >= threshold,
        "the posting celebrity needs at least the threshold's {threshold} followers"
    );
    let readers_per_group = options.pick(10, 200);
    let posts = options.posts.unwrap_or(options.pick(5, 50));
    report.param("celebrity_threshold", threshold);
    report.param("celebrity_followers", mega_followers as u64);
    report.param("readers_per_group", readers_per_group as u64);
    report.param("normal_follows_per_reader", NORMAL_FOLLOWS as u64);
    report.param("posts", posts as u64);

    let (workload, layout) = celebrity_workload(
        threshold,
        mega_followers,
        readers_per_group,
        options.pick((40, 5, 3), (200, 20, 10)),
        options.seed.unwrap_or(7),
    );
    let stack_options = options.stack_options(threshold);
    let prepared = prepare(options, workload, stack_options, &mut report).await?;
    let group_users: Vec<Vec<u64>> = layout
        .readers
        .iter()
        .map(|range| range.clone().map(|i| prepared.user_id(i)).collect())
        .collect();
    let all_readers: Vec<u64> = group_users.iter().flatten().copied().collect();
    options.say(format!("warming up {} readers", all_readers.len()));
    warm_up(&prepared, &all_readers, options.progress).await?;

    let concurrency = options
        .concurrency
        .as_ref()
        .and_then(|c| c.first().copied())
        .unwrap_or(1);
    let limits = Limits {
        duration: options.duration.unwrap_or(Duration::from_secs(5)),
        max_operations: options.smoke.then_some(30),
    };
    report.param("read_concurrency", concurrency as u64);
    for (group, users) in GROUPS.iter().zip(&group_users) {
        let users = Arc::new(users.clone());
        let tokens: Arc<Vec<String>> =
            Arc::new(users.iter().map(|&u| prepared.stack.token(u)).collect());
        let mode = options.mode(concurrency);
        for graphql in [false, true] {
            let (grpc, client) = (prepared.grpc.clone(), prepared.graphql.clone());
            let (users, tokens) = (users.clone(), tokens.clone());
            let outcome = load::run(mode, limits, 1, move |i| {
                let (grpc, client) = (grpc.clone(), client.clone());
                let (users, tokens) = (users.clone(), tokens.clone());
                async move {
                    let who = i as usize % users.len();
                    let result = if graphql {
                        client.home(&tokens[who], 20).await.map(drop)
                    } else {
                        grpc.home(users[who], 20).await.map(drop)
                    };
                    (0, result)
                }
            })
            .await;
            if let Some(error) = &outcome.first_error {
                report.checks.fail(format!("home read: {error}"));
            }
            let name = if graphql {
                format!("homeTimeline(first: 20) GraphQL, following {group} celebrities")
            } else {
                format!("GetHomeTimeline(20) gRPC, following {group} celebrities")
            };
            let mut row = Measurement::new(name, "requests")
                .label("client", if graphql { "graphql-home" } else { "grpc-home" })
                .label("celebrities", *group as u64)
                .label("mode", mode.describe())
                .with_throughput(outcome.ok[0], outcome.elapsed)
                .with_latency(&outcome.latency[0]);
            row.errors = outcome.errors[0];
            report.measurements.push(row);
        }
    }
    merge_cost(&mut report);

    // Posting: the mega-celebrity, then a normal author for comparison. One
    // follower reads first, which fills the celebrity's recent-tweet set as
    // any follower's read would; new posts then land in it.
    let fan = prepared.workload.followers[layout.mega][0] as usize;
    warm_up(&prepared, &[prepared.user_id(fan)], false).await?;
    let mut posted = Vec::new();
    let normal_author = layout.normal.start;
    for (author, label) in [
        (
            layout.mega,
            format!("celebrity with {mega_followers} followers"),
        ),
        (
            normal_author,
            format!(
                "normal author with {} followers",
                prepared.workload.followers[normal_author].len()
            ),
        ),
    ] {
        let author_id = prepared.user_id(author);
        let celebrity = prepared.workload.followers[author].len() as u64 >= threshold;
        let mut response = new_histogram();
        let mut visible = new_histogram();
        let started = Instant::now();
        let audience = prepared.workload.followers[author].len() as u64 + 1;
        for n in 0..posts {
            // A normal author's post is timed by fan-out's deliveries counter.
            let delivered_before = if celebrity {
                0
            } else {
                prepared.stack.deliveries_written().await?
            };
            let sent = Instant::now();
            let tweet_id = prepared
                .grpc
                .post(author_id, &format!("celebrity bench post {n} #bench"))
                .await?;
            record(&mut response, sent.elapsed());
            if celebrity {
                // Visible to every follower once it is in the recent-tweet set the merge reads.
                let deadline = sent + Duration::from_secs(30);
                loop {
                    let recent = prepared
                        .stack
                        .timeline_cache
                        .celebrity_recent(&[author_id], None, 1)
                        .await?;
                    if recent
                        .first()
                        .and_then(|r| r.as_ref())
                        .and_then(|r| r.entries.first())
                        .map(|entry| entry.tweet_id)
                        == Some(tweet_id)
                    {
                        record(&mut visible, sent.elapsed());
                        break;
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "celebrity tweet never reached the recent set"
                    );
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            } else {
                // Visible once fan-out wrote it to the author's and every
                // follower's timeline (its deliveries counter, on either shape).
                let deadline = sent + Duration::from_secs(30);
                while prepared.stack.deliveries_written().await? < delivered_before + audience {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "a normal author's post never reached every follower"
                    );
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                record(&mut visible, sent.elapsed());
            }
            posted.push(Posted { author, tweet_id });
        }
        let elapsed = started.elapsed();
        report.measurements.push(
            Measurement::new(format!("CreateTweet: {label}"), "posts")
                .label("kind", "post")
                .with_throughput(posts as u64, elapsed)
                .with_latency(&response),
        );
        report.measurements.push(
            Measurement::new(format!("post-to-visible: {label}"), "posts")
                .label("kind", "visible")
                .with_throughput(posts as u64, elapsed)
                .with_latency(&visible),
        );
    }
    verify_posts(&prepared, &posted, 0, &mut report).await?;
    prepared.stack.stop().await?;
    Ok(report)
}

fn merge_cost(report: &mut Report) {
    let p50 = |report: &Report, group: usize| {
        report
            .measurement(&format!(
                "GetHomeTimeline(20) gRPC, following {group} celebrities"
            ))
            .and_then(|m| m.latency.as_ref())
            .map(|l| l.p50_us)
    };
    for group in [10, 50] {
        report.ratio_of_p50(
            &format!("p50 read latency following {group} / 0 celebrities (gRPC)"),
            &format!("GetHomeTimeline(20) gRPC, following {group} celebrities"),
            "GetHomeTimeline(20) gRPC, following 0 celebrities",
        );
    }
    if let (Some(none), Some(fifty)) = (p50(report, 0), p50(report, 50)) {
        let added = fifty as i64 - none as i64;
        report.target(
            "celebrity merge adding under 1 ms for 50 celebrities",
            format!(
                "GetHomeTimeline p50 {} following 50 celebrities vs {} following none: {:+.3} ms",
                format_us(fifty),
                format_us(none),
                added as f64 / 1e3
            ),
            added < 1_000,
        );
    }
}

fn celebrity_workload(
    threshold: u64,
    mega_followers: usize,
    readers_per_group: usize,
    (normal_count, celebrity_tweets, normal_tweets): (usize, usize, usize),
    seed: u64,
) -> (Workload, Layout) {
    let celebrity_count = GROUPS.iter().copied().max().unwrap_or(0);
    let fans_count = mega_followers.max(threshold as usize);
    let celebrities = 0..celebrity_count;
    let mega = celebrity_count;
    let normal = mega + 1..mega + 1 + normal_count;
    let mut next = normal.end;
    let readers: Vec<std::ops::Range<usize>> = GROUPS
        .iter()
        .map(|_| {
            let range = next..next + readers_per_group;
            next = range.end;
            range
        })
        .collect();
    let fans = next..next + fans_count;
    let users = fans.end;

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut followers: Vec<Vec<u32>> = vec![Vec::new(); users];
    for celebrity in celebrities.clone() {
        followers[celebrity]
            .extend((fans.start..fans.start + threshold as usize).map(|f| f as u32));
    }
    followers[mega].extend(fans.clone().take(mega_followers).map(|f| f as u32));
    let normal_ids: Vec<usize> = normal.clone().collect();
    for (group, range) in GROUPS.iter().zip(&readers) {
        for reader in range.clone() {
            for list in followers.iter_mut().take(*group) {
                list.push(reader as u32);
            }
            for &author in normal_ids.choose_multiple(&mut rng, NORMAL_FOLLOWS) {
                followers[author].push(reader as u32);
            }
        }
    }
    for list in &mut followers {
        list.sort_unstable();
    }
    let mut tweets = Vec::new();
    let names: Vec<String> = (0..users.min(1_000)).map(crate::text::username).collect();
    for round in 0..celebrity_tweets.max(normal_tweets) {
        for author in celebrities
            .clone()
            .chain([mega])
            .filter(|_| round < celebrity_tweets)
        {
            tweets.push(TweetSpec {
                author: author as u32,
                text: crate::text::tweet_text(&mut rng, &names),
            });
        }
        if round < normal_tweets {
            for author in normal.clone() {
                tweets.push(TweetSpec {
                    author: author as u32,
                    text: crate::text::tweet_text(&mut rng, &names),
                });
            }
        }
    }
    let workload = Workload {
        spec: WorkloadSpec {
            celebrities: celebrity_count + 1,
            top_celebrity_followers: mega_followers,
            min_followers: 0,
            tweets_per_user: 0,
            seed,
            ..WorkloadSpec::new(users, celebrity_count + 1, threshold)
        },
        usernames: (0..users).map(crate::text::username).collect(),
        followers,
        tweets,
    };
    (
        workload,
        Layout {
            mega,
            normal,
            readers,
        },
    )
}
