//! `notify`: what notifications cost. On the `read` scenario's workload:
//! - **apply rate**: a burst of likes (100,000 at full size, one viral
//!   tweet) goes through tweet-svc and the event log to notify-svc; the row
//!   is likes per second from the first like until notify-svc has applied
//!   the last one, with the rate tweet-svc accepted them beside it, so the
//!   report says which of the two bounded it. Then notify-svc alone: as
//!   many `Liked` events appended to the log in one transaction, applied
//!   from the backlog;
//! - **page reads**: hydrated `notifications(first: 20)` at a fixed
//!   concurrency for a reader with 25 like groups (a full page);
//! - **the viral tweet**: the same read for its author (one group of
//!   100,000 likes) against a reader whose only notification is one like.
//!   A group is read in O(newest actors), so the two should match.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use warble_proto::graph::v1::CreateUserRequest;
use warble_proto::tweet::v1::LikeTweetRequest;

use super::{Options, Prepared, prepare, standard_spec, workload_for};
use crate::load::{self, Limits};
use crate::report::{Measurement, Report, format_us};
use crate::workload::Progress;

/// The page the readers read.
const QUERY: &str = r#"query {
  notifications(first: 20) {
    edges { node { id type count latestAt unread
      actors { id username displayName }
      tweet { id text likeCount } } }
  }
  unreadNotificationsCount
}"#;
/// Writes in flight while preparing.
const PREPARE_CONCURRENCY: usize = 32;
/// Like groups of the full-page reader.
const PAGE_GROUPS: usize = 25;

/// Which reader a row measures.
#[derive(Clone, Copy)]
enum Reader {
    FullPage,
    Viral,
    SingleLike,
    EightLikes,
}

impl Reader {
    fn row(self, mode: &crate::load::Mode) -> String {
        let who = match self {
            Self::FullPage => "a reader with 25 like groups",
            Self::Viral => "the viral tweet's author (one group of every like)",
            Self::SingleLike => "a reader with one like",
            Self::EightLikes => "a reader with one group of 8 likes",
        };
        format!("notifications(first: 20), {who}, {}", mode.describe())
    }

    /// The row's name on charts.
    fn label(self) -> &'static str {
        match self {
            Self::FullPage => "25 like groups",
            Self::Viral => "viral: 1 group, every like",
            Self::SingleLike => "1 like",
            Self::EightLikes => "1 group of 8 likes",
        }
    }
}

async fn measure(
    prepared: &Prepared,
    report: &mut Report,
    options: &Options,
    reader: Reader,
    user: u64,
    concurrency: usize,
    limits: Limits,
) {
    let mode = options.mode(concurrency);
    let name = reader.row(&mode);
    options.say(format!("measuring {name}"));
    let token = Arc::new(prepared.stack.token(user));
    let graphql = prepared.graphql.clone();
    let outcome = load::run(mode, limits, 1, move |_| {
        let (graphql, token) = (graphql.clone(), token.clone());
        async move {
            let result = graphql.request(Some(&token), QUERY, json!({})).await;
            (0, result.map(drop))
        }
    })
    .await;
    if let Some(error) = &outcome.first_error {
        report.checks.fail(format!("{name}: {error}"));
    }
    let mut measurement = Measurement::new(name, "requests")
        .label("reader", reader.label())
        .label("mode", mode.describe())
        .label("concurrency", concurrency as u64)
        .with_throughput(outcome.ok[0], outcome.elapsed)
        .with_latency(&outcome.latency[0]);
    measurement.errors = outcome.errors[0];
    report.measurements.push(measurement);
}

/// Creates `count` extra users (the viral tweet's fans); returns their ids.
async fn create_fans(
    prepared: &Prepared,
    count: usize,
    progress: bool,
) -> anyhow::Result<Vec<u64>> {
    let fans = (0..count)
        .map(|fan| CreateUserRequest {
            username: format!("fan_{fan}"),
            display_name: format!("Fan {fan}"),
            bio: String::new(),
        })
        .collect();
    super::create_users(&prepared.grpc, fans, "fans", progress).await
}

/// Likes `tweet_id` as each of `users`, `PREPARE_CONCURRENCY` at a time;
/// returns when tweet-svc accepted the last one.
async fn like_all(
    prepared: &Prepared,
    users: &[u64],
    tweet_id: u64,
    progress: bool,
) -> anyhow::Result<()> {
    let meter = Progress::start("likes", users.len(), progress);
    futures::stream::iter(users.iter().copied())
        .map(|user_id| {
            let (mut tweets, meter) = (prepared.grpc.tweets.clone(), meter.clone());
            async move {
                tweets
                    .like_tweet(LikeTweetRequest { user_id, tweet_id })
                    .await?;
                meter.add(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PREPARE_CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// Appends a `Liked` event of `tweet_id` (by `author`) for each of `fans`
/// to the stack's event log, in one transaction.
fn append_likes(
    prepared: &Prepared,
    fans: &[u64],
    author: u64,
    tweet_id: u64,
) -> anyhow::Result<()> {
    use prost::Message as _;
    use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog};
    use warble_proto::events::v1::{Event, Liked, event::Payload};

    let log = &prepared.stack.dev()?.event_log;
    let txn = log.database().begin_write()?;
    let now_ms = warble_mesh::time::now_ms() as i64;
    for (index, &fan) in fans.iter().enumerate() {
        let event = Event {
            // Distinct ids, far from the stack's own Snowflakes.
            event_id: (1 << 62) + tweet_id % (1 << 40) + index as u64,
            occurred_at_ms: now_ms,
            trace_context: Default::default(),
            payload: Some(Payload::Liked(Liked {
                user_id: fan,
                tweet_id,
                tweet_author_id: author,
                liked_at_ms: now_ms,
                like_count: index as u64 + 1,
            })),
        };
        EmbeddedEventLog::append_in(&txn, DOMAIN_EVENTS_STREAM, fan, &event.encode_to_vec())?;
    }
    txn.commit()?;
    log.notify_appended();
    Ok(())
}

/// Subscribes to `notificationAdded` as `reader`, then has each of `fans`
/// like `tweet_id` in turn, timing each like until its message arrives (in
/// microseconds). `probe` likes first, until a message shows the
/// subscription is live (it starts when the gateway has processed it, and
/// the protocol does not acknowledge a subscribe).
async fn live_latency(
    prepared: &Prepared,
    reader: u64,
    tweet_id: u64,
    probe: u64,
    fans: &[u64],
    progress: bool,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let mut request =
        format!("ws://{}/graphql", prepared.stack.gateway_addr).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let token = prepared.stack.token(reader);
    let send = |value: serde_json::Value| Message::text(value.to_string());
    socket
        .send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })))
        .await?;
    socket
        .send(send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { notificationAdded { id count } }" } })))
        .await?;
    let mut tweets = prepared.grpc.tweets.clone();
    let mut live = false;
    for _ in 0..20 {
        tweets
            .like_tweet(LikeTweetRequest {
                user_id: probe,
                tweet_id,
            })
            .await?;
        if next_message(&mut socket, Duration::from_millis(500))
            .await?
            .is_some()
        {
            live = true;
            break;
        }
        tweets
            .unlike_tweet(warble_proto::tweet::v1::UnlikeTweetRequest {
                user_id: probe,
                tweet_id,
            })
            .await?;
    }
    anyhow::ensure!(live, "the notificationAdded subscription never delivered");
    // A probe's late message must not pass for the first measured one.
    while next_message(&mut socket, Duration::from_millis(300))
        .await?
        .is_some()
    {}
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    let meter = Progress::start("live deliveries", fans.len(), progress);
    for (index, &user_id) in fans.iter().enumerate() {
        let liked_at = Instant::now();
        tweets
            .like_tweet(LikeTweetRequest { user_id, tweet_id })
            .await?;
        next_message(&mut socket, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("like {index}: no notificationAdded within 10 s"))?;
        histogram.record(liked_at.elapsed().as_micros() as u64)?;
        meter.add(1);
    }
    Ok(histogram)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next `next` message of a `graphql-transport-ws` socket (answering
/// pings), `None` after `timeout`.
async fn next_message(
    socket: &mut Socket,
    timeout: Duration,
) -> anyhow::Result<Option<serde_json::Value>> {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;

    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Ok(message) = tokio::time::timeout_at(deadline, socket.next()).await else {
            return Ok(None);
        };
        let message = message.ok_or_else(|| anyhow::anyhow!("the subscription closed"))??;
        let Message::Text(text) = message else {
            continue;
        };
        let message: serde_json::Value = serde_json::from_str(text.as_str())?;
        match message["type"].as_str() {
            Some("next") => return Ok(Some(message)),
            Some("ping") => {
                socket
                    .send(Message::text(json!({ "type": "pong" }).to_string()))
                    .await?
            }
            Some("error") | Some("complete") => anyhow::bail!("subscription ended: {message}"),
            _ => {}
        }
    }
}

/// Waits until notify-svc has added `target` items in all.
async fn wait_items(prepared: &Prepared, target: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while prepared
        .stack
        .dev()?
        .notify_stats
        .items_added
        .load(Ordering::Relaxed)
        < target
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "notify-svc did not apply every like within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub(super) async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new("notify", options.smoke);
    let workload = workload_for(options, standard_spec(options))?;
    let stack_options = options.stack_options(workload.spec.celebrity_threshold);
    let prepared = prepare(options, workload, stack_options, &mut report).await?;
    // Follows of the workload notified their followees while loading: wait
    // them out so the rows below time likes alone.
    let settle = Duration::from_secs(600);
    let lag_deadline = Instant::now() + settle;
    while prepared.stack.dev()?.notify_lag().await? > 0 {
        anyhow::ensure!(
            Instant::now() < lag_deadline,
            "notify-svc never caught up with loading"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let fans_count = options.pick(300, 100_000);
    report.param("viral_likes", fans_count as u64);
    // The readers are new users too: nobody follows them, so their lists
    // hold exactly the likes below.
    let mut fans = create_fans(&prepared, fans_count + 6, options.progress).await?;
    let readers = fans.split_off(fans_count);
    let (live_reader, backlog_author, eight_reader) = (readers[3], readers[4], readers[5]);
    let (viral_author, page_reader, single_reader) = (readers[0], readers[1], readers[2]);

    // The apply rate: one viral tweet liked by every fan.
    let viral = prepared.grpc.post(viral_author, "the viral tweet").await?;
    let before = prepared
        .stack
        .dev()?
        .notify_stats
        .items_added
        .load(Ordering::Relaxed);
    let started = Instant::now();
    like_all(&prepared, &fans, viral, options.progress).await?;
    let accepted = started.elapsed();
    wait_items(&prepared, before + fans.len() as u64, settle).await?;
    let applied = started.elapsed();
    report.measurements.push(
        Measurement::new(
            "likes applied by notify-svc (tweet-svc, event log, notify-svc)",
            "likes",
        )
        .with_throughput(fans.len() as u64, applied)
        .with_extra(
            "accepted_by_tweet_svc_per_s",
            fans.len() as f64 / accepted.as_secs_f64(),
        )
        .with_extra(
            "lag_when_the_last_like_was_accepted_ms",
            (applied - accepted).as_millis() as u64,
        ),
    );

    // notify-svc alone: the same fans like a second tweet, as events
    // appended straight to the event log in one transaction, so notify-svc
    // meets the whole backlog at once and its own rate shows.
    let second = prepared
        .grpc
        .post(backlog_author, "the second viral tweet")
        .await?;
    let before = prepared
        .stack
        .dev()?
        .notify_stats
        .items_added
        .load(Ordering::Relaxed);
    let started = Instant::now();
    append_likes(&prepared, &fans, backlog_author, second)?;
    let appended = started.elapsed();
    wait_items(&prepared, before + fans.len() as u64, settle).await?;
    let drained = started.elapsed();
    report.measurements.push(
        Measurement::new(
            "Liked events applied by notify-svc from a backlog",
            "events",
        )
        .with_throughput(fans.len() as u64, drained)
        .with_extra("appending_the_backlog_ms", appended.as_millis() as u64),
    );

    // The full-page reader: PAGE_GROUPS tweets, each liked by two workload users.
    let mut page_likes = Vec::new();
    for index in 0..PAGE_GROUPS {
        let tweet = prepared
            .grpc
            .post(page_reader, &format!("tweet {index} of the page reader"))
            .await?;
        for liker in [fans[index % 50], fans[50 + index % 40]] {
            page_likes.push((liker, tweet));
        }
    }
    let single = prepared.grpc.post(single_reader, "liked once").await?;
    page_likes.push((fans[0], single));
    // As many actors as a group shows: the same page as the viral author's,
    // but for the group's size.
    let eight = prepared
        .grpc
        .post(eight_reader, "liked eight times")
        .await?;
    for &fan in &fans[..warble_proto::limits::notify::MAX_SAMPLE_ACTORS] {
        page_likes.push((fan, eight));
    }
    let before = prepared
        .stack
        .dev()?
        .notify_stats
        .items_added
        .load(Ordering::Relaxed);
    for &(user_id, tweet_id) in &page_likes {
        prepared
            .grpc
            .tweets
            .clone()
            .like_tweet(LikeTweetRequest { user_id, tweet_id })
            .await?;
    }
    wait_items(&prepared, before + page_likes.len() as u64, settle).await?;

    // Live: likes of the single-like reader's tweet, one at a time, each
    // timed from the like until notificationAdded brings its group.
    let deliveries = options.pick(20, 200);
    let live_started = Instant::now();
    let live_tweet = prepared.grpc.post(live_reader, "liked live").await?;
    let latency = live_latency(
        &prepared,
        live_reader,
        live_tweet,
        fans[0],
        &fans[1..=deliveries],
        options.progress,
    )
    .await?;
    report.measurements.push(
        Measurement::new(
            "notificationAdded: like (gRPC) to the subscriber's WebSocket message",
            "deliveries",
        )
        .label("reader", "live: like to WebSocket")
        .with_throughput(latency.len(), live_started.elapsed())
        .with_latency(&latency),
    );
    let p99_ms = latency.value_at_quantile(0.99) as f64 / 1_000.0;
    report.target(
        "notificationAdded delivered within 1 s of the like (p99)",
        format!(
            "p99 {}, max {} over {} likes",
            format_us(latency.value_at_quantile(0.99)),
            format_us(latency.max()),
            latency.len()
        ),
        p99_ms < 1_000.0,
    );

    // Check what the readers read before timing it.
    for (reader, groups, first_count) in [
        (viral_author, 1, fans.len() as u64),
        (page_reader, 20, 2),
        (single_reader, 1, 1),
        (eight_reader, 1, 8),
    ] {
        let page = prepared
            .graphql
            .request(Some(&prepared.stack.token(reader)), QUERY, json!({}))
            .await?;
        let edges = page["notifications"]["edges"]
            .as_array()
            .map_or(0, Vec::len);
        let count = page["notifications"]["edges"][0]["node"]["count"].as_u64();
        if edges != groups || count != Some(first_count) {
            report.checks.fail(format!(
                "reader {reader}: {edges} groups, first count {count:?}; expected {groups} and {first_count}"
            ));
        }
    }

    let limits = Limits {
        duration: options.duration.unwrap_or(Duration::from_secs(10)),
        max_operations: options.smoke.then_some(40),
    };
    report.param("seconds_per_step", limits.duration.as_secs_f64());
    let concurrency = options
        .concurrency
        .as_ref()
        .and_then(|list| list.first().copied())
        .unwrap_or(options.pick(4, 16));
    for (reader, user) in [
        (Reader::FullPage, page_reader),
        (Reader::SingleLike, single_reader),
        (Reader::EightLikes, eight_reader),
        (Reader::Viral, viral_author),
    ] {
        measure(
            &prepared,
            &mut report,
            options,
            reader,
            user,
            concurrency,
            limits,
        )
        .await;
    }
    let mode = options.mode(concurrency);
    for (name, reference) in [
        ("a group of 8 likes", Reader::EightLikes),
        ("a single like", Reader::SingleLike),
    ] {
        report.ratio_of_throughput(
            &format!(
                "viral author / {name} reader throughput, {}",
                mode.describe()
            ),
            &Reader::Viral.row(&mode),
            &reference.row(&mode),
        );
    }
    let figures = |report: &Report, reader: Reader| {
        report
            .measurement(&reader.row(&mode))
            .and_then(|m| m.latency.as_ref().map(|l| (m.throughput_per_s, l.p99_us)))
    };
    // The group's size against one of 8 (the same page: one group, 8
    // actors), and the strict reading against a single like (a page with
    // one actor to hydrate and serialise instead of 8).
    for (goal, reference) in [
        (
            format!(
                "reading a group of {fans_count} likes as fast as a group of 8 likes (throughput within 10%), same run"
            ),
            Reader::EightLikes,
        ),
        (
            format!(
                "reading a group of {fans_count} likes as fast as a single like (throughput within 10%), same run"
            ),
            Reader::SingleLike,
        ),
    ] {
        if let (Some(viral), Some(other)) =
            (figures(&report, Reader::Viral), figures(&report, reference))
            && other.0 > 0.0
        {
            report.target(
                &goal,
                format!(
                    "{:.0} vs {:.0} req/s ({:.3}), p99 {} vs {}",
                    viral.0,
                    other.0,
                    viral.0 / other.0,
                    format_us(viral.1),
                    format_us(other.1)
                ),
                viral.0 / other.0 >= 0.9,
            );
        }
    }
    prepared.stack.stop().await?;
    Ok(report)
}
