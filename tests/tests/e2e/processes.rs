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

/// The TweetCreated events of `tweet` in the stack's domain stream.
async fn tweet_created_entries(stack: &ProcessStack, tweet: &str) -> usize {
    use warble_proto::events::v1::event::Payload;
    let tweet: u64 = tweet.parse().expect("a numeric tweet id");
    stack
        .domain_events()
        .await
        .iter()
        .filter(|event| {
            matches!(&event.payload, Some(Payload::TweetCreated(created)) if created.tweet_id == tweet)
        })
        .count()
}

/// Posts `text` as `token` once tweet-svc answers (it may be starting):
/// the idempotency key makes a retry the same post.
async fn post_when_up(
    gql: &warble_tests::graphql::GraphqlClient,
    token: &str,
    text: &str,
    key: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + warble_tests::EVENTUALLY;
    loop {
        let posted = gql
            .request(
                Some(token),
                "mutation($t: String!, $k: String!) { postTweet(text: $t, idempotencyKey: $k) { id } }",
                serde_json::json!({ "t": text, "k": key }),
            )
            .await;
        if let Some(id) = posted["data"]["postTweet"]["id"].as_str() {
            return id.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tweet-svc never took the post: {posted}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Signs up ana and ben, who follows her, and has her post twice; returns
/// their tokens once ben's cached timeline holds both posts, so its newest
/// entry is what fan-out pushed last (see [`home`]).
async fn ana_posts_to_ben(stack: &ProcessStack) -> (String, String) {
    use warble_tests::frontend::Frontend as _;
    let gql = stack.graphql();
    let (ana_id, ana) = gql.sign_up("ana").await;
    let (_, ben) = gql.sign_up("ben").await;
    gql.follow(&ben, &ana_id).await;
    for warm_up in ["first words", "second words"] {
        gql.post(&ana, warm_up).await;
    }
    stack.settle().await;
    assert_eq!(home(stack, &ben, 2).await.len(), 2);
    (ana, ben)
}

/// The first `first` tweets of `token`'s home timeline. Asked for no more
/// than the cached timeline holds, the page is the cache alone: timeline-svc
/// pulls from the stores only below a cache that ran out, which would show
/// a tweet fan-out never pushed.
async fn home(stack: &ProcessStack, token: &str, first: u32) -> Vec<String> {
    use warble_tests::frontend::Frontend as _;
    let page = stack
        .graphql()
        .data(
            Some(token),
            "query($first: Int!) { homeTimeline(first: $first) { edges { node { id } } } }",
            serde_json::json!({ "first": first }),
        )
        .await;
    warble_tests::graphql::node_ids(&page["homeTimeline"])
}

/// tweet-svc killed with SIGKILL by its outbox relay, between publishing an
/// event to Redis and marking it published, and again right after the mark:
/// either way the event is in the stream exactly once after the restart and
/// reaches the follower once. (The republish after the first crash is
/// dropped by the event's id.)
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_killed_around_the_outbox_mark_loses_nothing_and_publishes_once() {
    use warble_tests::frontend::Frontend as _;

    let Some(mut stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let gql = stack.graphql();
    let (ana, ben) = ana_posts_to_ben(&stack).await;

    for failpoint in ["relay.after_publish", "relay.after_mark"] {
        let posted = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let into = posted.clone();
        let text = format!("posted as the relay dies at {failpoint}");
        let key = format!("crash-{failpoint}");
        stack
            .run_into_failpoint("tweet-svc", failpoint, &[], |stack| {
                let gql = stack.graphql();
                let (ana, text, key) = (ana.clone(), text.clone(), key.clone());
                async move {
                    // tweet-svc is starting again: post once it answers.
                    *into.lock().unwrap() = post_when_up(&gql, &ana, &text, &key).await;
                }
            })
            .await;
        let tweet = posted.lock().unwrap().clone();
        // Published before the crash either way.
        assert_eq!(
            tweet_created_entries(&stack, &tweet).await,
            1,
            "{failpoint}"
        );
        stack.kill("tweet-svc");
        stack.restart("tweet-svc");

        // Entries relay in outbox order: once a later post is in the
        // stream, the relay has been past the first one again.
        let (_, after) = gql.sign_up(&format!("later{}", failpoint.len())).await;
        let later = post_when_up(&gql, &after, "after the restart", "later").await;
        warble_tests::eventually("the later post to reach the stream", || {
            let (stack, later) = (&stack, later.clone());
            async move { tweet_created_entries(stack, &later).await == 1 }
        })
        .await;
        assert_eq!(
            tweet_created_entries(&stack, &tweet).await,
            1,
            "{failpoint}: the event is in the stream exactly once"
        );
        stack.settle().await;
        assert_eq!(
            home(&stack, &ben, 1).await,
            [tweet.as_str()],
            "{failpoint}: fan-out pushed the tweet to the follower"
        );
    }
    stack.stop().await;
}

/// fanout-svc killed with SIGKILL between two pages of one tweet's
/// followers: some have it, some not yet. After the restart the event is
/// taken over and every follower has the tweet exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn fan_out_killed_mid_batch_reaches_every_follower_once() {
    use warble_tests::frontend::{Frontend as _, StackSpec};

    const FOLLOWERS: usize = 6;
    let spec = StackSpec {
        celebrity_threshold: 1_000,
        ..StackSpec::default()
    };
    let Some(mut stack) = ProcessStack::start(&spec).await else {
        return;
    };
    let gql = stack.graphql();
    let (author_id, author) = gql.sign_up("author").await;
    let mut followers = Vec::new();
    for index in 0..FOLLOWERS {
        let (_, token) = gql.sign_up(&format!("reader{index}")).await;
        gql.follow(&token, &author_id).await;
        followers.push(token);
    }
    for warm_up in ["first words", "second words"] {
        gql.post(&author, warm_up).await;
    }
    stack.settle().await;
    // Cached timelines holding entries: the newest is what fan-out pushed
    // last (see `home`).
    for token in &followers {
        assert_eq!(home(&stack, token, 2).await.len(), 2);
    }

    let posted = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = posted.clone();
    stack
        .run_into_failpoint(
            "fanout-svc",
            "fanout.between_pages",
            &[("WARBLE_FANOUT__FOLLOWER_PAGE_SIZE", "2")],
            |stack| {
                let gql = stack.graphql();
                let author = author.clone();
                async move {
                    *into.lock().unwrap() = gql.post(&author, "half delivered, then a crash").await;
                }
            },
        )
        .await;
    let tweet = posted.lock().unwrap().clone();
    let mut reached = 0;
    for token in &followers {
        reached += usize::from(home(&stack, token, 1).await == [tweet.as_str()]);
    }
    assert!(
        (1..FOLLOWERS).contains(&reached),
        "the crash is mid-batch: {reached} of {FOLLOWERS} followers have the tweet"
    );
    stack.kill("fanout-svc");
    stack.restart("fanout-svc");
    stack.settle().await;
    for (index, token) in followers.iter().enumerate() {
        let page = home(&stack, token, 3).await;
        assert_eq!(page.len(), 3, "follower {index}: {page:?}");
        assert_eq!(
            page.iter().filter(|id| **id == tweet).count(),
            1,
            "follower {index} has the tweet exactly once, on top: {page:?}"
        );
        assert_eq!(page[0], tweet, "follower {index}");
    }
    stack.stop().await;
}

/// Runs `warble dlq <args>` against the stack's Redis; returns its output,
/// failing the test if it fails.
fn warble_dlq(stack: &ProcessStack, args: &str) -> String {
    let output = std::process::Command::new(warble_tests::processes::binary_path("warble"))
        .arg("dlq")
        .args(args.split_whitespace())
        .env_clear()
        .env("WARBLE_BACKEND", "redis")
        .env("WARBLE_REDIS__URL", stack.redis_url())
        .output()
        .expect("warble runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "warble dlq {args} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// An event fan-out gave up on while graph-svc was down is a dead letter
/// `warble dlq` lists and shows; once graph-svc is back, `replay` puts it
/// back on the stream and the follower gets the tweet; `drop` clears the
/// rest.
#[tokio::test(flavor = "multi_thread")]
async fn warble_dlq_lists_shows_replays_and_drops_dead_letters_on_redis() {
    use warble_tests::frontend::Frontend as _;

    let Some(mut stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let gql = stack.graphql();
    let (ana, ben) = ana_posts_to_ben(&stack).await;
    assert_eq!(warble_dlq(&stack, "list"), "no dead letters\n");

    // Fan-out needs graph-svc for the followers: with it down, the event
    // fails every attempt and becomes a dead letter.
    stack.kill("graph-svc");
    let tweet = gql.post(&ana, "posted while the graph is down").await;
    warble_tests::eventually("fan-out to dead-letter the tweet", || {
        let listed = warble_dlq(&stack, "list --group fanout");
        async move { listed.contains("TweetCreated") }
    })
    .await;
    let listed = warble_dlq(&stack, "list --group fanout");
    let id = listed
        .split_whitespace()
        .next()
        .expect("a dead-letter id")
        .to_owned();
    assert!(listed.contains("group=fanout  attempts=5"), "{listed}");
    let shown = warble_dlq(&stack, &format!("show {id}"));
    assert!(shown.contains(&format!("tweet_id: {tweet}")), "{shown}");
    assert!(shown.contains("last error"), "{shown}");

    stack.restart("graph-svc");
    warble_tests::eventually("graph-svc to answer again", || {
        let gql = gql.clone();
        async move {
            gql.request(
                None,
                "{ user(username: \"ana\") { id } }",
                serde_json::json!({}),
            )
            .await["data"]["user"]["id"]
                .is_string()
        }
    })
    .await;
    let replayed = warble_dlq(&stack, "replay --all --group fanout");
    assert!(replayed.contains(&format!("replayed {id}")), "{replayed}");
    stack.settle().await;
    assert_eq!(
        home(&stack, &ben, 1).await,
        [tweet.as_str()],
        "the replayed event reached the follower"
    );
    assert_eq!(
        warble_dlq(&stack, "list --group fanout"),
        "no dead letters\n"
    );
    // Whatever the other groups gave up on meanwhile, `drop` clears it.
    let dropped = warble_dlq(&stack, "drop --all");
    assert!(dropped.ends_with(" dropped\n"), "{dropped}");
    assert_eq!(warble_dlq(&stack, "list"), "no dead letters\n");
    stack.stop().await;
}

/// Two fanout-svc replicas share the consumer group's partitions, so one
/// key's events are applied by one replica at a time, in order: a follow's
/// backfill never lands after its unfollow. Ben follows and unfollows ana
/// 50 times with his timeline cached; in the end it holds none of her
/// tweets (a backfill applied out of order would leave them there, and with
/// no followees the page is the cache alone), and after one more follow all
/// of them.
#[tokio::test(flavor = "multi_thread")]
async fn follows_and_unfollows_through_two_fanout_replicas_end_as_the_follow_state() {
    use warble_tests::frontend::Frontend as _;

    let Some(mut stack) = ProcessStack::start(&Default::default()).await else {
        return;
    };
    let replica = stack.start_replica("fanout-svc");
    let gql = stack.graphql();
    let (ana_id, ana) = gql.sign_up("flip_ana").await;
    let (_, ben) = gql.sign_up("flip_ben").await;
    let mut posts = Vec::new();
    for n in 0..5 {
        posts.push(gql.post(&ana, &format!("post {n}")).await);
    }
    assert!(home(&stack, &ben, 10).await.is_empty());

    // Both replicas at work before the flips: sign-ups (keyed by each new
    // user) spread over every partition until the new replica applied some.
    let processed = r#"warble_consumer_events_processed_total{group="fanout"}"#;
    let applied_by = |text: String| {
        text.lines()
            .find_map(|line| line.strip_prefix(processed)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = tokio::time::Instant::now() + warble_tests::EVENTUALLY;
    let mut warm_up = 0;
    while applied_by(stack.metrics_text(&replica).await) == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second fanout-svc replica never took a partition"
        );
        gql.sign_up(&format!("flip_warm_{warm_up}")).await;
        warm_up += 1;
    }

    for _ in 0..50 {
        gql.follow(&ben, &ana_id).await;
        gql.data(
            Some(&ben),
            "mutation($id: ID!) { unfollow(userId: $id) { id } }",
            serde_json::json!({ "id": ana_id }),
        )
        .await;
    }
    stack.settle().await;
    assert_eq!(home(&stack, &ben, 10).await, Vec::<String>::new());
    for fanout in ["fanout-svc", replica.as_str()] {
        assert!(
            applied_by(stack.metrics_text(fanout).await) > 0.0,
            "{fanout} applied events"
        );
    }

    gql.follow(&ben, &ana_id).await;
    stack.settle().await;
    posts.reverse();
    assert_eq!(home(&stack, &ben, 10).await, posts);
    stack.stop().await;
}
