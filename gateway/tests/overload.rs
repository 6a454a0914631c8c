//! The gateway's bound on GraphQL requests in progress
//! (`limits.max_in_flight_requests`), over real HTTP: past it a request is
//! refused at once with 503, `Retry-After` and `RATE_LIMITED`, and the slot
//! serves again once the request holding it ends.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use warble_gateway::config::{AuthConfig, LimitsConfig};
use warble_gateway::{Gateway, GatewayConfig};

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_the_in_flight_limit_gets_503_and_the_slot_comes_back() {
    warble_mesh::telemetry::init_for_tests();
    // A tweet-svc that accepts connections and never answers: a request
    // that needs it holds its slot until its deadline.
    let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tweet_addr = black_hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            held.push(socket);
        }
    });
    let config = GatewayConfig {
        tweet_service_addr: tweet_addr.to_string(),
        // Long enough that a loaded machine still sees the stuck request
        // hold its slot; the test waits for its end, not for a clock.
        request_timeout_ms: 5_000,
        auth: AuthConfig {
            hs256_secret: "overload-tests-secret-0123456789abcdef".into(),
            dev_mode: true,
            ..AuthConfig::default()
        },
        limits: LimitsConfig {
            max_in_flight_requests: 1,
            ..LimitsConfig::default()
        },
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(&config, None).expect("gateway");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    let metrics = url.replace("/graphql", "/metrics");
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    let client = reqwest::Client::new();
    let post = |query: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(url)
                .json(&json!({ "query": query }))
                .send()
                .await
                .expect("the gateway answers")
        }
    };

    let mut stuck = tokio::spawn(post("{ tweet(id: \"1\") { id } }"));
    // Once the stuck request holds the only slot, the next is refused. A
    // probe may hold the slot itself when the stuck request arrives, which
    // then is the one refused: it is sent again. The stuck request ending
    // any other way before a refusal fails the test, whatever the load.
    let refused = loop {
        let response = post("{ __typename }").await;
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        if stuck.is_finished() {
            let ended = stuck.await.unwrap();
            let status = ended.status();
            let body: Value = ended.json().await.unwrap();
            assert_eq!(
                status,
                reqwest::StatusCode::SERVICE_UNAVAILABLE,
                "the stuck request ended before holding its slot: {body}"
            );
            stuck = tokio::spawn(post("{ tweet(id: \"1\") { id } }"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        refused.headers()[reqwest::header::RETRY_AFTER],
        "1",
        "{refused:?}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], 1, "{body}");
    let counted = client
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        counted.lines().any(
            |line| line.starts_with("warble_gateway_requests_shed_total ") && !line.ends_with(" 0")
        ),
        "{counted}"
    );

    // The stuck request ends at its deadline (its field UNAVAILABLE) and
    // frees the slot.
    let ended: Value = stuck.await.unwrap().json().await.unwrap();
    assert_eq!(
        ended["errors"][0]["extensions"]["code"], "UNAVAILABLE",
        "{ended}"
    );
    let served: Value = post("{ __typename }").await.json().await.unwrap();
    assert_eq!(served["data"]["__typename"], "Query", "{served}");
}
