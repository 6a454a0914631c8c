//! `search`: what search costs, on a corpus of generated tweets (a million
//! at full size) written through tweet-svc:
//! - **indexing**: tweets per second search-svc applies while tweet-svc
//!   takes the corpus in batches (bounded by whichever is slower; both
//!   rates are in the row); then search-svc alone, applying a backlog of
//!   `TweetCreated` events appended to the log in one transaction; then
//!   tantivy alone (the same index code, documents in memory, no event
//!   log), as the ceiling the service is compared with;
//! - **index bytes per tweet**: the index directory's size on disk over
//!   the tweets it holds;
//! - **post to searchable**: a tweet posted through tweet-svc with a word
//!   nobody used, timed until SearchTweets returns it;
//! - **queries** at the full corpus: SearchTweets (newest first) for a
//!   common word, two words, a phrase, a hashtag and an author; best first
//!   for a common word; the hydrated GraphQL `search(first: 20)`;
//! - **typeahead**: SearchUsers for 2 to 4 letter prefixes of usernames.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tonic::transport::Channel;
use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1::CreateUserRequest;
use warble_proto::search::v1 as search;
use warble_proto::search::v1::search_service_client::SearchServiceClient;
use warble_proto::tweet::v1::{CreateTweetRequest, CreateTweetsRequest};
use warble_search_svc::index::{Checkpoint, IndexOp, SearchIndex, TweetDoc};

use super::Options;
use crate::client::{Graphql, Grpc, channel};
use crate::load::{self, Limits};
use crate::report::{Measurement, Report, format_us, new_histogram, record};
use crate::stack::BenchStack;
use crate::workload::Progress;

/// Words of the generated vocabulary; drawn with a Zipf-like skew, so a
/// few are in most tweets and most are rare, as in real text.
const VOCABULARY: usize = 20_000;
/// Hashtags, drawn with the same skew.
const TAGS: usize = 500;
/// Tweets per CreateTweets call while loading.
const BATCH: usize = warble_proto::limits::tweet::MAX_WRITE_BATCH;
/// CreateTweets calls in flight while loading.
const LOAD_CONCURRENCY: usize = 4;
/// Documents per commit when measuring tantivy alone (the indexer's default batch).
const RAW_BATCH: usize = 2_048;

/// A pronounceable word for each vocabulary index (`ka`, `kelo`, ...).
fn word(index: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ba", "de", "fu", "go", "hi", "ju", "pe",
        "zo",
    ];
    let mut rest = index;
    let mut word = String::new();
    loop {
        word.push_str(SYLLABLES[rest % 16]);
        rest /= 16;
        if rest == 0 {
            return word;
        }
    }
}

/// An index drawn with a Zipf-like skew (rank ~ 1/u): index 0 is the most common.
fn skewed(rng: &mut StdRng, len: usize) -> usize {
    let u: f64 = rng.random_range(0.0..1.0);
    (((len as f64 + 1.0).powf(u) - 1.0) as usize).min(len - 1)
}

/// A generated tweet: 6 to 20 words, one or two hashtags, sometimes a mention.
fn tweet_text(rng: &mut StdRng, usernames: &[String]) -> String {
    let words = rng.random_range(6..=20);
    let mut text: Vec<String> = (0..words).map(|_| word(skewed(rng, VOCABULARY))).collect();
    for _ in 0..rng.random_range(1..=2) {
        text.push(format!("#tag{}", skewed(rng, TAGS)));
    }
    if rng.random_bool(0.2) {
        text.push(format!(
            "@{}",
            usernames[rng.random_range(0..usernames.len())]
        ));
    }
    text.join(" ")
}

fn hashtags(text: &str) -> Vec<String> {
    text.split(' ')
        .filter_map(|word| word.strip_prefix('#'))
        .map(str::to_owned)
        .collect()
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Waits until search-svc has caught up and applied everything appended so far.
async fn wait_indexed(stack: &BenchStack, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if stack.dev()?.search_lag().await? == Some(0) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "search-svc did not catch up within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One gRPC query row: `queries` in turn, at `concurrency`.
#[allow(clippy::too_many_arguments)]
async fn query_row(
    report: &mut Report,
    options: &Options,
    client: &SearchServiceClient<Channel>,
    name: &str,
    queries: Arc<Vec<String>>,
    sort: search::SearchSort,
    concurrency: usize,
    limits: Limits,
) {
    let mode = options.mode(concurrency);
    let row = format!("SearchTweets {name}, {}", mode.describe());
    options.say(format!("measuring {row}"));
    let client = client.clone();
    let outcome = load::run(mode, limits, 1, move |n| {
        let (mut client, queries) = (client.clone(), queries.clone());
        async move {
            let query = queries[n as usize % queries.len()].clone();
            let result = client
                .search_tweets(search::SearchTweetsRequest {
                    query,
                    sort: sort as i32,
                    page: Some(PageRequest {
                        cursor: String::new(),
                        limit: 20,
                    }),
                })
                .await
                .map(drop)
                .map_err(anyhow::Error::from);
            (0, result)
        }
    })
    .await;
    if let Some(error) = &outcome.first_error {
        report.checks.fail(format!("{row}: {error}"));
    }
    let mut measurement = Measurement::new(row, "queries")
        .label("query", format!("{name}, {concurrency} clients"))
        .label("mode", mode.describe())
        .with_throughput(outcome.ok[0], outcome.elapsed)
        .with_latency(&outcome.latency[0]);
    measurement.errors = outcome.errors[0];
    report.measurements.push(measurement);
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("search", options.smoke);
    let users = options.users.unwrap_or(options.pick(500, 100_000));
    let tweets = options.pick(20_000, 1_000_000);
    let backlog = options.pick(5_000, 200_000);
    let seed = options.seed.unwrap_or(15);
    report.param("users", users as u64);
    report.param("tweets", tweets as u64);
    report.param("vocabulary_words", VOCABULARY as u64);
    let stack = BenchStack::start(options.stack_options(u64::MAX / 2)).await?;
    let grpc = Grpc::connect(&stack).await?;
    let client = SearchServiceClient::new(channel(stack.dev()?.search_addr).await?);
    wait_indexed(&stack, Duration::from_secs(60)).await?;

    let usernames: Vec<String> = (0..users).map(crate::text::username).collect();
    let users_to_create = usernames
        .iter()
        .map(|name| CreateUserRequest {
            username: name.clone(),
            display_name: format!("{} {}", word(name.len() * 7), name.replace('_', " ")),
            bio: String::new(),
        })
        .collect();
    let user_ids = super::create_users(&grpc, users_to_create, "users", options.progress).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let texts: Vec<(u64, String)> = (0..tweets)
        .map(|_| {
            (
                user_ids[skewed(&mut rng, users)],
                tweet_text(&mut rng, &usernames),
            )
        })
        .collect();

    // Indexing while tweet-svc takes the corpus.
    let meter = Progress::start("tweets", tweets, options.progress);
    let started = Instant::now();
    futures::stream::iter(texts.chunks(BATCH).map(<[(u64, String)]>::to_vec))
        .map(|batch| {
            let (mut tweets, meter) = (grpc.tweets.clone(), meter.clone());
            async move {
                let count = batch.len() as u64;
                tweets
                    .create_tweets(CreateTweetsRequest {
                        tweets: batch
                            .into_iter()
                            .map(|(author_id, text)| CreateTweetRequest {
                                author_id,
                                text,
                                ..Default::default()
                            })
                            .collect(),
                    })
                    .await?;
                meter.add(count);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_collect::<()>()
        .await
        .context("loading the corpus")?;
    let accepted = started.elapsed();
    meter.finish();
    wait_indexed(&stack, Duration::from_secs(3_600)).await?;
    let indexed = started.elapsed();
    report.measurements.push(
        Measurement::new(
            "indexing: tweets written through tweet-svc, applied by search-svc",
            "tweets",
        )
        .with_throughput(tweets as u64, indexed)
        .with_extra(
            "accepted_by_tweet_svc_per_s",
            tweets as f64 / accepted.as_secs_f64(),
        )
        .with_extra(
            "lag_when_the_last_batch_was_accepted_ms",
            (indexed - accepted).as_millis() as u64,
        ),
    );

    // search-svc alone: a backlog of TweetCreated events in one transaction.
    let backlog_texts: Vec<(u64, String)> = (0..backlog)
        .map(|_| {
            (
                user_ids[skewed(&mut rng, users)],
                // Words of their own, so the query rows below match the corpus only.
                format!(
                    "backlog {}",
                    tweet_text(&mut rng, &usernames).replace(' ', " zz")
                ),
            )
        })
        .collect();
    let started = Instant::now();
    append_created(&stack, &backlog_texts)?;
    let appended = started.elapsed();
    wait_indexed(&stack, Duration::from_secs(3_600)).await?;
    let drained = started.elapsed();
    let service_rate = backlog as f64 / drained.as_secs_f64();
    report.measurements.push(
        Measurement::new(
            "indexing: TweetCreated events applied by search-svc from a backlog",
            "tweets",
        )
        .with_throughput(backlog as u64, drained)
        .with_extra("appending_the_backlog_ms", appended.as_millis() as u64),
    );

    // tantivy alone, through the same index code, on a fresh directory.
    let raw_dir = tempfile::tempdir()?;
    let raw_docs: Vec<TweetDoc> = backlog_texts
        .iter()
        .enumerate()
        .map(|(index, (author_id, text))| TweetDoc {
            id: index as u64 + 1,
            author_id: *author_id,
            created_at_ms: 1_700_000_000_000 + index as i64,
            hashtags: hashtags(text),
            mentions: Vec::new(),
            text: text.clone(),
            is_reply: false,
            reply_to_author_id: None,
            has_media: false,
        })
        .collect();
    let raw_elapsed = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
        let index = SearchIndex::open(raw_dir.path(), 1, 64 << 20)?;
        let started = Instant::now();
        for chunk in raw_docs.chunks(RAW_BATCH) {
            let ops = chunk.iter().cloned().map(IndexOp::UpsertTweet).collect();
            index.apply(ops, &Checkpoint::at(None))?;
        }
        Ok(started.elapsed())
    })
    .await??;
    let raw_rate = backlog as f64 / raw_elapsed.as_secs_f64();
    report.measurements.push(
        Measurement::new(
            "indexing: tantivy alone (same documents, 2,048 per commit, one writer thread)",
            "tweets",
        )
        .with_throughput(backlog as u64, raw_elapsed),
    );
    report.target(
        "indexing ≥ 20,000 tweets/s on 2 cores (search-svc from a backlog)",
        format!(
            "{service_rate:.0} tweets/s ({:.0}% of tantivy alone, {raw_rate:.0}/s)",
            100.0 * service_rate / raw_rate
        ),
        service_rate >= 20_000.0,
    );

    // Index bytes per tweet.
    let status = client
        .clone()
        .get_status(search::GetStatusRequest {})
        .await?
        .into_inner();
    let index_dir = stack.data_dir.join("search-index").join("index");
    let bytes = dir_bytes(&index_dir);
    let per_tweet = bytes as f64 / status.indexed_tweets.max(1) as f64;
    report.measurements.push(
        Measurement::new("index size on disk", "tweets")
            .with_extra("indexed_tweets", status.indexed_tweets)
            .with_extra("indexed_users", status.indexed_users)
            .with_extra("index_bytes", bytes)
            .with_extra("bytes_per_tweet", per_tweet.round()),
    );
    let expected_tweets = (tweets + backlog) as u64;
    if status.indexed_tweets != expected_tweets {
        report.checks.fail(format!(
            "the index holds {} tweets, {expected_tweets} were written",
            status.indexed_tweets
        ));
    }

    // Post to searchable.
    let fresh = options.pick(30, 300);
    let mut latency = new_histogram();
    let started = Instant::now();
    for n in 0..fresh {
        let marker = format!("fresh{seed}x{n}");
        let author = user_ids[n % users];
        let posted_at = Instant::now();
        let tweet_id = grpc.post(author, &format!("just posted {marker}")).await?;
        let deadline = posted_at + Duration::from_secs(30);
        loop {
            let hits = client
                .clone()
                .search_tweets(search::SearchTweetsRequest {
                    query: marker.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .hits;
            if hits.iter().any(|hit| hit.tweet_id == tweet_id) {
                record(&mut latency, posted_at.elapsed());
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{marker} never became searchable"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    report.measurements.push(
        Measurement::new(
            "post to searchable: CreateTweet until SearchTweets returns it",
            "tweets",
        )
        .label("query", "post to searchable")
        .with_throughput(fresh as u64, started.elapsed())
        .with_latency(&latency),
    );
    report.target(
        "a posted tweet is searchable within 1 s (p99)",
        format!(
            "p99 {}, max {} over {fresh} posts",
            format_us(latency.value_at_quantile(0.99)),
            format_us(latency.max())
        ),
        latency.value_at_quantile(0.99) < 1_000_000,
    );

    // Queries at the full corpus.
    let limits = Limits {
        duration: options
            .duration
            .unwrap_or(options.pick(Duration::from_secs(1), Duration::from_secs(10))),
        max_operations: options.smoke.then_some(200),
    };
    let concurrency = options
        .concurrency
        .clone()
        .unwrap_or_else(|| options.pick(vec![4], vec![1, 16]));
    let common: Vec<String> = (0..20).map(word).collect();
    let pairs: Vec<String> = (0..50)
        .map(|n| format!("{} {}", word(n), word(n * 7 + 30)))
        .collect();
    let phrases: Vec<String> = (0..50)
        .map(|n| format!("\"{} {}\"", word(n % 5), word(n % 7 + 1)))
        .collect();
    let tags: Vec<String> = (0..50).map(|n| format!("#tag{n}")).collect();
    let authors: Vec<String> = (0..50)
        .map(|n| format!("from:{}", usernames[n % users]))
        .collect();
    // The worst newest-first p99 at each client count.
    let mut p99_worst: Vec<(usize, u64)> = Vec::new();
    for &clients in &concurrency {
        let mut worst = 0u64;
        for (name, queries, sort) in [
            ("a common word, latest", &common, search::SearchSort::Latest),
            ("two words, latest", &pairs, search::SearchSort::Latest),
            ("a phrase, latest", &phrases, search::SearchSort::Latest),
            ("a hashtag, latest", &tags, search::SearchSort::Latest),
            ("from:author, latest", &authors, search::SearchSort::Latest),
            ("a common word, top", &common, search::SearchSort::Top),
        ] {
            query_row(
                &mut report,
                options,
                &client,
                name,
                Arc::new(queries.clone()),
                sort,
                clients,
                limits,
            )
            .await;
            if sort == search::SearchSort::Latest
                && let Some(latency) = report
                    .measurements
                    .last()
                    .and_then(|row| row.latency.as_ref())
            {
                worst = worst.max(latency.p99_us);
            }
        }
        p99_worst.push((clients, worst));
    }
    let (loaded_clients, loaded_worst) = *p99_worst.last().expect("a client count");
    report.target(
        &format!(
            "query p99 < 20 ms at {tweets} tweets (worst newest-first row, at the most clients measured)"
        ),
        p99_worst
            .iter()
            .map(|(clients, worst)| format!("{clients} clients: worst p99 {}", format_us(*worst)))
            .collect::<Vec<_>>()
            .join("; "),
        loaded_worst < 20_000 && loaded_clients == *concurrency.iter().max().unwrap_or(&1),
    );

    // The hydrated GraphQL page, at the most clients.
    let graphql = Graphql::new(stack.gateway_addr);
    let mode = options.mode(loaded_clients);
    let row = format!(
        "GraphQL search(first: 20) hydrated, a common word, {}",
        mode.describe()
    );
    let common = Arc::new(common);
    let outcome = {
        let (graphql, common) = (graphql.clone(), common.clone());
        load::run(mode, limits, 1, move |n| {
            let (graphql, common) = (graphql.clone(), common.clone());
            async move {
                let query = common[n as usize % common.len()].clone();
                let result = graphql
                    .request(
                        None,
                        "query($q: String!) { search(query: $q, first: 20) { edges { node { id text createdAt likeCount author { username displayName } } } pageInfo { hasNextPage endCursor } } }",
                        json!({ "q": query }),
                    )
                    .await
                    .map(drop);
                (0, result)
            }
        })
        .await
    };
    if let Some(error) = &outcome.first_error {
        report.checks.fail(format!("{row}: {error}"));
    }
    let mut measurement = Measurement::new(row, "requests")
        .label("query", "GraphQL search, hydrated")
        .with_throughput(outcome.ok[0], outcome.elapsed)
        .with_latency(&outcome.latency[0]);
    measurement.errors = outcome.errors[0];
    report.measurements.push(measurement);

    // Typeahead, at each client count.
    let prefixes: Arc<Vec<String>> = Arc::new(
        (0..200)
            .map(|n| {
                let name = &usernames[(n * 37) % users];
                name.chars().take(2 + n % 3).collect()
            })
            .collect(),
    );
    let mut typeahead_p99 = Vec::new();
    for &clients in &concurrency {
        let mode = options.mode(clients);
        let row = format!("SearchUsers, 2 to 4 letter prefixes, {}", mode.describe());
        options.say(format!("measuring {row}"));
        let outcome = {
            let (client, prefixes) = (client.clone(), prefixes.clone());
            load::run(mode, limits, 1, move |n| {
                let (mut client, prefixes) = (client.clone(), prefixes.clone());
                async move {
                    let query = prefixes[n as usize % prefixes.len()].clone();
                    let result = client
                        .search_users(search::SearchUsersRequest { query, limit: 10 })
                        .await
                        .map(drop)
                        .map_err(anyhow::Error::from);
                    (0, result)
                }
            })
            .await
        };
        if let Some(error) = &outcome.first_error {
            report.checks.fail(format!("{row}: {error}"));
        }
        typeahead_p99.push((clients, outcome.latency[0].value_at_quantile(0.99)));
        let mut measurement = Measurement::new(row, "queries")
            .label("query", format!("typeahead, {} clients", clients))
            .with_throughput(outcome.ok[0], outcome.elapsed)
            .with_latency(&outcome.latency[0]);
        measurement.errors = outcome.errors[0];
        report.measurements.push(measurement);
    }
    let (_, loaded_typeahead) = *typeahead_p99.last().expect("a client count");
    report.target(
        &format!("typeahead p99 < 5 ms at {users} users (at the most clients measured)"),
        typeahead_p99
            .iter()
            .map(|(clients, p99)| format!("{clients} clients: p99 {}", format_us(*p99)))
            .collect::<Vec<_>>()
            .join("; "),
        loaded_typeahead < 5_000,
    );

    stack.stop().await?;
    Ok(report)
}

/// Appends a `TweetCreated` event for each of `texts` to the stack's event
/// log in one transaction (ids far from the stack's own Snowflakes).
fn append_created(stack: &BenchStack, texts: &[(u64, String)]) -> anyhow::Result<()> {
    use prost::Message as _;
    use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog};
    use warble_proto::events::v1::{Event, TweetCreated, event::Payload};

    let log = &stack.dev()?.event_log;
    let txn = log.database().begin_write()?;
    let now_ms = warble_mesh::time::now_ms() as i64;
    for (index, (author_id, text)) in texts.iter().enumerate() {
        let tweet_id = (1 << 62) + index as u64;
        let event = Event {
            event_id: tweet_id,
            occurred_at_ms: now_ms,
            trace_context: Default::default(),
            payload: Some(Payload::TweetCreated(TweetCreated {
                tweet_id,
                author_id: *author_id,
                created_at_ms: now_ms,
                text: text.clone(),
                hashtags: hashtags(text),
                ..TweetCreated::default()
            })),
        };
        EmbeddedEventLog::append_in(
            &txn,
            DOMAIN_EVENTS_STREAM,
            *author_id,
            &event.encode_to_vec(),
        )?;
    }
    txn.commit()?;
    log.notify_appended();
    Ok(())
}
