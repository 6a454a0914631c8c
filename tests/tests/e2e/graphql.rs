//! The stack as a frontend sees it, in one process as `warble dev` runs it:
//! the shared frontend cases (see `warble_tests::cases`) plus the cases that
//! need the in-process stack (a second, degraded gateway; a restart).

use serde_json::{Value, json};
use warble_tests::cases;
use warble_tests::frontend::StackSpec;
use warble_tests::graphql::{error_codes, node_ids};
use warble_tests::{TestStack, eventually};

const HOME: &str = r#"query($first: Int, $after: String) {
  homeTimeline(first: $first, after: $after) {
    edges { cursor node { id author { followersCount } } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

/// The in-process stack for a shared frontend case; it is always available.
async fn start_spec(spec: &StackSpec) -> Option<TestStack> {
    Some(TestStack::start_spec(spec).await)
}

async fn start() -> TestStack {
    TestStack::start_spec(&StackSpec::default()).await
}

frontend_cases! { #[tokio::test] start_spec }

/// `in_process_calls = false`: every internal call goes over loopback gRPC,
/// as between separate processes; the frontend sees the same results and
/// the same constant number of downstream calls per page.
#[tokio::test]
async fn the_stack_serves_the_same_with_internal_calls_over_the_network() {
    let stack = TestStack::start_with(|config| config.in_process_calls = false).await;
    cases::sign_up_follow_post_and_page_a_hydrated_home_timeline(&stack).await;
    stack.stop().await;
    let stack = TestStack::start_with(|config| config.in_process_calls = false).await;
    cases::a_timeline_page_costs_a_constant_number_of_downstream_calls(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_failing_downstream_degrades_only_the_fields_it_serves() {
    let stack = start().await;
    let gql = stack.graphql();
    let (writer_id, writer) = gql.sign_up("writer").await;
    let (reader_id, reader) = gql.sign_up("reader").await;
    gql.follow(&reader, &writer_id).await;
    let tweet = gql.post(&writer, "still readable").await;
    stack.settle().await;

    // A second gateway whose graph-svc address is dead: authors cannot be
    // fetched, but the timeline and the tweets still can.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = warble_gateway::GatewayConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        tweet_service_addr: stack.stack.tweet_addr.to_string(),
        graph_service_addr: dead.to_string(),
        timeline_service_addr: stack.stack.timeline_addr.to_string(),
        request_timeout_ms: 2_000,
        auth: warble_gateway::config::AuthConfig {
            hs256_secret: stack.config().effective_jwt_secret(),
            dev_mode: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let degraded = warble_gateway::Gateway::new(&config, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(degraded.serve(listener, async {
        let _ = stopped.await;
    }));
    let response = warble_tests::graphql::GraphqlClient::new(addr)
        .request(
            Some(&reader),
            "{ homeTimeline { edges { node { id text likeCount author { username } } } } }",
            json!({}),
        )
        .await;
    let node = &response["data"]["homeTimeline"]["edges"][0]["node"];
    assert_eq!(node["id"], tweet.as_str(), "{response:#}");
    assert_eq!(node["text"], "still readable");
    assert_eq!(node["likeCount"], 0);
    assert_eq!(node["author"], Value::Null);
    assert_eq!(error_codes(&response), ["UNAVAILABLE"]);
    assert_eq!(
        response["errors"][0]["path"],
        json!(["homeTimeline", "edges", 0, "node", "author"])
    );
    let _ = reader_id;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_users_follows_tweets_and_timelines() {
    let stack = start().await;
    let gql = stack.graphql();
    let (writer_id, writer) = gql.sign_up("keeper").await;
    let (_, reader) = gql.sign_up("returner").await;
    gql.follow(&reader, &writer_id).await;
    let tweet = gql.post(&writer, "survives restarts").await;
    stack.settle().await;

    let stack = stack.restart().await;
    let gql = stack.graphql();
    // Tokens are still valid (same secret), and every piece of state is back.
    let home = gql.data(Some(&reader), HOME, json!({})).await;
    assert_eq!(
        node_ids(&home["homeTimeline"]),
        std::slice::from_ref(&tweet)
    );
    assert_eq!(
        home["homeTimeline"]["edges"][0]["node"]["author"]["followersCount"],
        1
    );
    eventually("the viewer to be the same user", || {
        let gql = gql.clone();
        let reader = reader.clone();
        async move {
            let data = gql
                .data(Some(&reader), "{ viewer { username } }", json!({}))
                .await;
            data["viewer"]["username"] == "returner"
        }
    })
    .await;
    stack.stop().await;
}
