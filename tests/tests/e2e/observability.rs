//! What operators see of the separate processes: the traces they export
//! over OTLP (to a real OTLP/gRPC receiver this test serves) and the
//! metrics each one serves at `/metrics`.

use std::time::Duration;

use serde_json::json;
use warble_testkit::otlp::{OtlpReceiver, ReceivedSpan, descends_from, trace};
use warble_tests::frontend::{Frontend as _, StackSpec};
use warble_tests::processes::ProcessStack;

/// How long spans may take to arrive: each process exports every 100 ms.
const SPANS_WITHIN: Duration = Duration::from_secs(30);

fn is_server_span(span: &ReceivedSpan, service: &str, method: &str) -> bool {
    span.service == service
        && span.name == "grpc.server"
        && span.attribute("rpc.method").ends_with(method)
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A post is one trace from the gateway's operation span through
/// tweet-svc's CreateTweet to fan-out's `tweet_created` (carried by the
/// event's trace context across the event log), and a timeline read is one
/// trace rooted at the gateway's span, holding timeline-svc's and
/// tweet-svc's calls. Then every process's `/metrics` shows the calls.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_and_a_timeline_read_are_one_trace_each_and_every_process_counts_them() {
    let receiver = OtlpReceiver::start().await;
    let spec = StackSpec {
        otlp_endpoint: Some(receiver.endpoint()),
        ..StackSpec::default()
    };
    let Some(stack) = ProcessStack::start(&spec).await else {
        return;
    };
    let graphql = stack.graphql();
    let (author, author_token) = graphql.sign_up("traced_author").await;
    let (_, reader_token) = graphql.sign_up("traced_reader").await;
    graphql.follow(&reader_token, &author).await;
    stack.settle().await;

    // The post.
    let posted = graphql
        .data(
            Some(&author_token),
            "mutation PostTraced($t: String!) { postTweet(text: $t) { id } }",
            json!({ "t": "followed across every hop" }),
        )
        .await;
    assert!(posted["postTweet"]["id"].is_string(), "{posted}");
    let (root, create, fanned_out, spans) = receiver
        .wait_for("post trace reaching fan-out", SPANS_WITHIN, |spans| {
            let root = spans
                .iter()
                .find(|span| span.service == "gateway" && span.name == "mutation PostTraced")?;
            let create = spans.iter().find(|span| {
                span.trace_id == root.trace_id
                    && is_server_span(
                        span,
                        "tweet-svc",
                        "/warble.tweet.v1.TweetService/CreateTweet",
                    )
            })?;
            let fanned_out = spans.iter().find(|span| {
                span.trace_id == root.trace_id
                    && span.service == "fanout-svc"
                    && span.name == "tweet_created"
            })?;
            // Spans arrive as each process exports them, children first:
            // wait until the chain between them has arrived too.
            let in_trace = trace(spans, &root.trace_id);
            (descends_from(&in_trace, create, root) && descends_from(&in_trace, fanned_out, create))
                .then(|| {
                    (
                        root.clone(),
                        create.clone(),
                        fanned_out.clone(),
                        spans.to_vec(),
                    )
                })
        })
        .await;
    let post_trace = trace(&spans, &root.trace_id);
    assert_eq!(
        root.parent_span_id, "",
        "the operation span is the root: {root:?}"
    );
    assert_eq!(root.attribute("graphql.operation.type"), "mutation");
    assert_eq!(root.attribute("graphql.operation.name"), "PostTraced");
    assert!(
        descends_from(&post_trace, &create, &root),
        "CreateTweet is under the operation span: {post_trace:#?}"
    );
    assert!(
        descends_from(&post_trace, &fanned_out, &create),
        "fan-out's work on the event is under CreateTweet: {post_trace:#?}"
    );
    assert!(
        post_trace
            .iter()
            .any(|span| span.service == "fanout-svc" && span.name == "event.consume"),
        "the consumer's span joins the trace: {post_trace:#?}"
    );

    // The read.
    stack.settle().await;
    let page = graphql
        .data(
            Some(&reader_token),
            "query ReadTraced { homeTimeline(first: 10) { edges { node { id text author { username } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        page["homeTimeline"]["edges"][0]["node"]["text"], "followed across every hop",
        "{page}"
    );
    let (root, spans) = receiver
        .wait_for("timeline read trace", SPANS_WITHIN, |spans| {
            let root = spans
                .iter()
                .find(|span| span.service == "gateway" && span.name == "query ReadTraced")?;
            let in_trace = trace(spans, &root.trace_id);
            let timeline_call = in_trace
                .iter()
                .any(|span| span.service == "timeline-svc" && span.name == "grpc.server");
            let tweets_call = in_trace.iter().any(|span| {
                is_server_span(span, "tweet-svc", "/warble.tweet.v1.TweetService/GetTweets")
            });
            let all_under_root = in_trace
                .iter()
                .all(|span| descends_from(&in_trace, span, root));
            (timeline_call && tweets_call && all_under_root).then(|| (root.clone(), spans.to_vec()))
        })
        .await;
    let read_trace = trace(&spans, &root.trace_id);
    assert_eq!(root.parent_span_id, "", "{root:?}");
    for span in &read_trace {
        assert!(
            descends_from(&read_trace, span, &root),
            "every span of the read hangs under the gateway's operation span, {span:?} does not: {read_trace:#?}"
        );
    }

    // The same read over a WebSocket (graphql-transport-ws) is a trace of
    // its own, rooted the same way.
    let mut socket = warble_tests::graphql::Subscription::start(
        graphql.addr(),
        &reader_token,
        "query ReadOverSocket { homeTimeline(first: 10) { edges { node { id author { username } } } } }",
    )
    .await;
    let over_socket = socket
        .next_data(Duration::from_secs(10))
        .await
        .expect("the query's result");
    assert!(
        over_socket["homeTimeline"]["edges"][0]["node"]["id"].is_string(),
        "{over_socket}"
    );
    receiver
        .wait_for("read-over-socket trace", SPANS_WITHIN, |spans| {
            let root = spans
                .iter()
                .find(|span| span.service == "gateway" && span.name == "query ReadOverSocket")?;
            let in_trace = trace(spans, &root.trace_id);
            let timeline_call = in_trace
                .iter()
                .any(|span| span.service == "timeline-svc" && span.name == "grpc.server");
            let all_under_root = in_trace
                .iter()
                .all(|span| descends_from(&in_trace, span, root));
            (root.parent_span_id.is_empty() && timeline_call && all_under_root).then_some(())
        })
        .await;

    // Metrics: RED per RPC on the service that served it, per operation on
    // the gateway, the consumer group's counters and backlog on fan-out,
    // cache reads on timeline-svc.
    let tweets = stack.metrics_text("tweet-svc").await;
    let creates = sample(
        &tweets,
        r#"warble_grpc_server_requests_total{service="tweet-svc",method="/warble.tweet.v1.TweetService/CreateTweet",code="OK"}"#,
    );
    assert_eq!(creates, Some(1.0), "{tweets}");
    let timed = sample(
        &tweets,
        r#"warble_grpc_server_request_duration_seconds_count{service="tweet-svc",method="/warble.tweet.v1.TweetService/CreateTweet"}"#,
    );
    assert_eq!(timed, Some(1.0), "{tweets}");
    // A call refused before any message carries its code in the headers
    // (trailers-only): counted under that code.
    let oversized = warble_proto::tweet::v1::GetTweetsRequest {
        tweet_ids: vec![1; warble_proto::limits::tweet::MAX_BATCH + 1],
        ..Default::default()
    };
    let refused = warble_proto::tweet::v1::tweet_service_client::TweetServiceClient::new(
        warble_tests::channel(stack.tweet_addr()).await,
    )
    .get_tweets(oversized)
    .await
    .expect_err("more ids than a batch may carry");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let tweets = stack.metrics_text("tweet-svc").await;
    let invalid = sample(
        &tweets,
        r#"warble_grpc_server_requests_total{service="tweet-svc",method="/warble.tweet.v1.TweetService/GetTweets",code="INVALID_ARGUMENT"}"#,
    );
    assert_eq!(invalid, Some(1.0), "{tweets}");
    let gateway = stack.metrics_text("gateway").await;
    let operations = sample(
        &gateway,
        r#"warble_graphql_requests_total{operation="PostTraced",type="mutation",outcome="ok"}"#,
    );
    assert_eq!(operations, Some(1.0), "{gateway}");
    let fanout = stack.metrics_text("fanout-svc").await;
    let processed = sample(
        &fanout,
        r#"warble_consumer_events_processed_total{group="fanout"}"#,
    );
    assert!(
        processed.is_some_and(|count| count >= 3.0),
        "two sign-ups, a follow and a post: {fanout}"
    );
    for gauge in [
        r#"warble_consumer_lag_events{group="fanout"}"#,
        r#"warble_consumer_oldest_unacked_age_seconds{group="fanout"}"#,
    ] {
        assert!(sample(&fanout, gauge).is_some(), "{gauge} in {fanout}");
    }
    let timeline = stack.metrics_text("timeline-svc").await;
    let reads = sample(
        &timeline,
        r#"warble_timeline_cache_requests_total{result="hit"}"#,
    )
    .unwrap_or(0.0)
        + sample(
            &timeline,
            r#"warble_timeline_cache_requests_total{result="miss"}"#,
        )
        .unwrap_or(0.0);
    assert!(reads >= 1.0, "{timeline}");
    stack.stop().await;
}
