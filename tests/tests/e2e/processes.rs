//! The frontend cases against the services as separate processes, with
//! Redis as timeline cache and event stream: the production topology.

use warble_tests::processes::ProcessStack;

frontend_cases! { #[tokio::test(flavor = "multi_thread")] ProcessStack::start }

/// A standalone service serves no reflection unless told to
/// (`server.reflection`): it would describe the whole API to anyone who
/// reaches the port. Health checks still answer.
#[tokio::test(flavor = "multi_thread")]
async fn standalone_services_serve_no_reflection_by_default() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    let Some(stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let channel = warble_tests::channel(stack.fanout_addr()).await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");
    let requests = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let reflected = ServerReflectionClient::new(channel)
        .server_reflection_info(requests)
        .await;
    assert_eq!(
        reflected.map(|_| ()).unwrap_err().code(),
        tonic::Code::Unimplemented
    );
    stack.stop().await;
}

/// notify-svc killed with SIGKILL while it works through a backlog of likes
/// loses none and counts none twice once it is back: each change is
/// committed with its version, and what the dead process had not
/// acknowledged is redelivered (and reclaimed from its dead consumer).
#[tokio::test(flavor = "multi_thread")]
async fn notify_svc_killed_mid_batch_loses_nothing_and_counts_nothing_twice() {
    use serde_json::json;

    const FANS: usize = 120;
    let Some(mut stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let gql = warble_tests::frontend::Frontend::graphql(&stack);
    let (_, ana) = gql.sign_up("ana").await;
    let tweet = gql.post(&ana, "about to go viral").await;
    let mut fans = Vec::with_capacity(FANS);
    for fan in 0..FANS {
        fans.push(gql.sign_up(&format!("fan{fan}")).await.1);
    }
    // The likes pile up while notify-svc is down, so its next start applies
    // them as a backlog, batch after batch.
    stack.kill("notify-svc");
    for fan in &fans {
        let liked = gql
            .request(
                Some(fan),
                "mutation($id: ID!) { likeTweet(id: $id) { id } }",
                json!({ "id": tweet }),
            )
            .await;
        assert!(liked["errors"].is_null(), "{liked:#}");
    }
    stack.restart("notify-svc");
    // Crash again as soon as part of the backlog is applied.
    warble_tests::eventually("notify-svc to apply part of the backlog", || async {
        stack
            .notify_status()
            .await
            .is_some_and(|status| status.events_processed > 0)
    })
    .await;
    stack.kill("notify-svc");
    stack.restart("notify-svc");
    warble_tests::frontend::Frontend::settle(&stack).await;

    let data = gql
        .data(
            Some(&ana),
            "{ notifications(first: 10) { edges { node { type count actors { id } } } } unreadNotificationsCount }",
            json!({}),
        )
        .await;
    let edges = data["notifications"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{data:#}");
    assert_eq!(edges[0]["node"]["type"], "LIKE");
    assert_eq!(edges[0]["node"]["count"], FANS as u64, "{data:#}");
    assert_eq!(
        edges[0]["node"]["actors"].as_array().map(Vec::len),
        Some(warble_proto::limits::notify::MAX_SAMPLE_ACTORS)
    );
    assert_eq!(data["unreadNotificationsCount"], 1);
    stack.stop().await;
}
