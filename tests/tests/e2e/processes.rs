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

/// Every live tweet tweet-svc holds, by id, through its paged scan.
async fn live_tweet_ids(stack: &ProcessStack) -> Vec<String> {
    use warble_proto::common::v1::PageRequest;
    use warble_proto::tweet::v1::ScanTweetsRequest;
    use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

    let mut client = TweetServiceClient::new(warble_tests::channel(stack.tweet_addr()).await);
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .scan_tweets(ScanTweetsRequest {
                page: Some(PageRequest {
                    cursor: cursor.clone(),
                    limit: 0,
                }),
            })
            .await
            .expect("tweet-svc scan")
            .into_inner();
        ids.extend(page.tweets.iter().map(|tweet| tweet.id.to_string()));
        cursor = page.page.map(|page| page.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            return ids;
        }
    }
}

/// Every tweet `query` finds, walking every page (newest first).
async fn all_search_results(stack: &ProcessStack, query: &str) -> Vec<String> {
    use serde_json::{Value, json};

    let gql = warble_tests::frontend::Frontend::graphql(stack);
    let mut ids = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = gql
            .data(
                None,
                "query($q: String!, $after: String) { search(query: $q, first: 100, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "q": query, "after": after }),
            )
            .await;
        ids.extend(warble_tests::graphql::node_ids(&data["search"]));
        let info = &data["search"]["pageInfo"];
        if !info["hasNextPage"].as_bool().expect("hasNextPage") {
            return ids;
        }
        after = info["endCursor"].clone();
    }
}

/// Asserts the index holds exactly tweet-svc's live tweets, each once.
async fn assert_index_matches_tweet_svc(stack: &ProcessStack) {
    let mut found = all_search_results(stack, "indexed").await;
    let count = found.len();
    found.sort();
    found.dedup();
    assert_eq!(found.len(), count, "a tweet was indexed twice");
    let mut live = live_tweet_ids(stack).await;
    live.sort();
    assert_eq!(found, live, "the index differs from tweet-svc");
}

/// search-svc killed with SIGKILL while it indexes a stream of tweets (and
/// deletions) holds every live tweet exactly once after its restart: each
/// commit records the last event it applied, and the restart resumes from
/// exactly there.
#[tokio::test(flavor = "multi_thread")]
async fn search_svc_killed_mid_indexing_holds_every_tweet_exactly_once() {
    use serde_json::json;

    let Some(mut stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let gql = warble_tests::frontend::Frontend::graphql(&stack);
    let (_, ana) = gql.sign_up("ana").await;
    let mut posted = Vec::new();
    for n in 0..150 {
        posted.push(gql.post(&ana, &format!("indexed tweet {n}")).await);
    }
    // Killed while the burst is being indexed, then more arrives (and some
    // of it goes) while it is down.
    stack.kill("search-svc");
    for n in 150..300 {
        posted.push(gql.post(&ana, &format!("indexed tweet {n}")).await);
    }
    for id in posted.iter().step_by(10) {
        let deleted = gql
            .request(
                Some(&ana),
                "mutation($id: ID!) { deleteTweet(id: $id) }",
                json!({ "id": id }),
            )
            .await;
        assert!(deleted["errors"].is_null(), "{deleted:#}");
    }
    stack.restart("search-svc");
    // Crash again as soon as part of the backlog is applied.
    warble_tests::eventually("search-svc to apply part of the backlog", || async {
        stack
            .search_status()
            .await
            .is_some_and(|status| status.events_applied > 0)
    })
    .await;
    stack.kill("search-svc");
    stack.restart("search-svc");
    warble_tests::frontend::Frontend::settle(&stack).await;
    assert_index_matches_tweet_svc(&stack).await;
    assert_eq!(live_tweet_ids(&stack).await.len(), 270);
    stack.stop().await;
}

/// A replica gone longer than the stream keeps its history (unpinned, and
/// the stream trimmed past it) rebuilds from tweet-svc and graph-svc on its
/// return, then follows the stream: deletions and posts it missed are all
/// reflected.
#[tokio::test(flavor = "multi_thread")]
async fn a_search_replica_behind_retention_rebuilds_from_the_services() {
    use serde_json::json;
    use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog as _, RedisEventLog};

    let Some(mut stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let gql = warble_tests::frontend::Frontend::graphql(&stack);
    let (_, ana) = gql.sign_up("ana").await;
    let first = gql.post(&ana, "indexed before the outage").await;
    warble_tests::frontend::Frontend::settle(&stack).await;
    stack.kill("search-svc");
    gql.post(&ana, "indexed during the outage").await;
    let deleted = gql
        .request(
            Some(&ana),
            "mutation($id: ID!) { deleteTweet(id: $id) }",
            json!({ "id": first }),
        )
        .await;
    assert!(deleted["errors"].is_null(), "{deleted:#}");
    let (_, ben) = gql.sign_up("ben").await;
    gql.post(&ben, "indexed by a newcomer").await;
    // Its peers' timeout passes: unpinned, and everything the other
    // consumers acknowledged is trimmed, the outage's events included.
    stack.settle_consumer_groups().await;
    let log = RedisEventLog::connect(&stack.redis_config())
        .await
        .expect("event log");
    log.unpin(DOMAIN_EVENTS_STREAM, "search-0").await.unwrap();
    let trimmed = log.trim(DOMAIN_EVENTS_STREAM).await.unwrap();
    assert!(trimmed > 0, "nothing was trimmed");
    assert!(
        log.max_trimmed_id(DOMAIN_EVENTS_STREAM)
            .await
            .unwrap()
            .is_some()
    );

    stack.restart("search-svc");
    warble_tests::frontend::Frontend::settle(&stack).await;
    let status = stack.search_status().await.expect("search-svc status");
    assert!(status.backfilled >= 3, "{status:?}");
    assert_index_matches_tweet_svc(&stack).await;
    // It follows the stream again.
    gql.post(&ben, "indexed after the rebuild").await;
    warble_tests::frontend::Frontend::settle(&stack).await;
    assert_index_matches_tweet_svc(&stack).await;
    let users = gql
        .data(
            None,
            "{ searchUsers(query: \"be\") { username } }",
            json!({}),
        )
        .await;
    assert_eq!(users["searchUsers"][0]["username"], "ben");
    stack.stop().await;
}

/// With mutual TLS on, every hop of the production topology is mutual TLS:
/// cases that cross every service still pass, each service enforcing its
/// default peer rules. A write over gRPC from a peer without the gateway's
/// identity is PERMISSION_DENIED; a caller without a certificate from the
/// mesh CA cannot call at all.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_carries_every_hop_and_refuses_peers_without_the_right_identity() {
    use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;
    use warble_proto::tweet::v1::{CreateTweetRequest, GetTweetsRequest};
    use warble_tests::frontend::{Frontend as _, StackSpec};

    let spec = StackSpec {
        mutual_tls: true,
        ..StackSpec::default()
    };
    let Some(stack) = ProcessStack::start(&spec).await else {
        return;
    };
    // Gateway -> every service, timeline -> tweet/graph, fan-out -> graph,
    // notify -> graph, search -> tweet/graph: every hop is exercised (the
    // cases sign up different usernames, so they share one stack).
    warble_tests::cases::sign_up_follow_post_and_page_a_hydrated_home_timeline(&stack).await;
    warble_tests::cases::a_celebrity_tweet_reaches_followers_and_subscribers(&stack).await;
    warble_tests::cases::likes_retweets_and_deletes_update_counts(&stack).await;
    warble_tests::cases::notifications_group_count_and_clear_on_undo(&stack).await;
    warble_tests::cases::five_people_make_a_trend_and_one_spammer_does_not(&stack).await;
    warble_tests::cases::an_avatar_shows_on_the_author(&stack).await;

    let (author, _) = stack.graphql().sign_up("mallory").await;
    let author_id: u64 = author.parse().expect("a numeric user id");
    let forged = CreateTweetRequest {
        author_id,
        text: "posted around the gateway".into(),
        idempotency_key: "mtls-forged".into(),
        ..CreateTweetRequest::default()
    };
    let as_search = stack
        .channel_as(stack.tweet_addr(), Some("search-svc"))
        .await
        .expect("search-svc's certificate is accepted");
    let refused = TweetServiceClient::new(as_search.clone())
        .create_tweet(forged.clone())
        .await
        .expect_err("only the gateway may create tweets");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("search-svc")
            && refused.message().contains("TweetService/CreateTweet"),
        "the refusal names the peer and the RPC: {refused:?}"
    );
    // The same peer may read, as search-svc does.
    let read = TweetServiceClient::new(as_search)
        .get_tweets(GetTweetsRequest {
            tweet_ids: vec![1],
            ..GetTweetsRequest::default()
        })
        .await;
    assert!(read.is_ok(), "{read:?}");
    // The gateway's identity passes the same rule.
    let as_gateway = stack
        .channel_as(stack.tweet_addr(), Some("gateway"))
        .await
        .expect("the gateway's certificate is accepted");
    let created = TweetServiceClient::new(as_gateway)
        .create_tweet(forged)
        .await;
    assert!(created.is_ok(), "{created:?}");

    // No certificate, or one from another CA: no call gets through.
    let plaintext =
        tonic::transport::Channel::from_shared(format!("http://{}", stack.tweet_addr()))
            .unwrap()
            .connect_lazy();
    let without_tls = TweetServiceClient::new(plaintext)
        .get_tweets(GetTweetsRequest::default())
        .await;
    assert!(without_tls.is_err(), "a plaintext call was served");
    let stranger_ca = warble_testkit::tls::MeshPki::new("some other CA");
    let stranger = stranger_ca.issue("gateway");
    let stranger_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(stack.pki().expect("mutual TLS is on").ca_file()).unwrap(),
        ))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(&stranger.cert_file).unwrap(),
            std::fs::read(&stranger.key_file).unwrap(),
        ));
    let foreign = tonic::transport::Channel::from_shared(format!("https://{}", stack.tweet_addr()))
        .unwrap()
        .tls_config(stranger_tls)
        .unwrap()
        .connect_lazy();
    let with_foreign_cert = TweetServiceClient::new(foreign)
        .get_tweets(GetTweetsRequest::default())
        .await;
    assert!(
        with_foreign_cert.is_err(),
        "a certificate from another CA was accepted"
    );
    stack.stop().await;
}
