//! The ScyllaDB tweet store: start-up failures always; the conformance suite
//! and a gRPC smoke test against a live cluster when `SCYLLA_URI` is set
//! (e.g. `SCYLLA_URI=127.0.0.1:9042`, comma-separated contact points).
//! Without it those two are built as ignored, with the reason, so a runner
//! lists them as skipped (see `build.rs`); with it, an unreachable cluster
//! fails them. Each run uses its own keyspace and drops it at the end.

use std::sync::Arc;

use warble_mesh::backends::ScyllaConfig;
use warble_mesh::outbox::Outbox;
use warble_proto::tweet::v1 as pb;
use warble_testkit::{live, served};
use warble_tweet_svc::config::{TweetStoreBackend, TweetStoreConfig};
use warble_tweet_svc::store::ScyllaTweetStore;
use warble_tweet_svc::store::conformance::{self, IDEMPOTENCY_TTL};
use warble_tweet_svc::{TweetSvc, TweetSvcConfig};

/// The cluster `SCYLLA_URI` names, in a keyspace of this run's own.
fn scylla_under_test() -> ScyllaConfig {
    ScyllaConfig {
        nodes: live::required("SCYLLA_URI")
            .trim_start_matches("scylla://")
            .to_owned(),
        keyspace: format!("warble_test_{:016x}", rand::random::<u64>()),
        replication_factor: live::or("SCYLLA_REPLICATION_FACTOR", "1")
            .parse()
            .expect("SCYLLA_REPLICATION_FACTOR is a number"),
        local_datacenter: live::or("SCYLLA_DATACENTER", "datacenter1"),
        username: live::or("SCYLLA_USERNAME", ""),
        password: live::or("SCYLLA_PASSWORD", "").into(),
        request_timeout_ms: 10_000,
    }
}

/// Drops the run's keyspace (best effort: a leftover keyspace only costs disk).
async fn drop_keyspace(config: &ScyllaConfig) {
    let mut builder =
        scylla::client::session_builder::SessionBuilder::new().known_nodes(config.node_list());
    if !config.username.is_empty() {
        builder = builder.user(config.username.clone(), config.password.expose());
    }
    if let Ok(session) = builder.build().await {
        let drop = format!("DROP KEYSPACE IF EXISTS {}", config.keyspace);
        if let Err(error) = session.query_unpaged(drop, ()).await {
            eprintln!("could not drop keyspace {}: {error}", config.keyspace);
        }
    }
}

#[tokio::test]
#[cfg_attr(
    not(scylla_live),
    ignore = "SCYLLA_URI is not set: needs a live ScyllaDB (see README, \"Running the gated suites\")"
)]
async fn scylla_store_passes_the_conformance_suite() {
    let config = scylla_under_test();
    let store = ScyllaTweetStore::connect(&config, IDEMPOTENCY_TTL)
        .await
        .expect("connect to ScyllaDB");
    // One keyspace for the whole run: the checks never assume an empty store.
    conformance::run_all(|| {
        let store = store.clone();
        async move {
            let outbox: Arc<dyn Outbox> = Arc::new(store.clone());
            ((), store, outbox)
        }
    })
    .await;
    drop_keyspace(&config).await;
}

#[tokio::test]
#[cfg_attr(
    not(scylla_live),
    ignore = "SCYLLA_URI is not set: needs a live ScyllaDB (see README, \"Running the gated suites\")"
)]
async fn a_scylla_backed_service_serves_tweets_over_grpc() {
    let scylla = scylla_under_test();
    let config = TweetSvcConfig {
        store: TweetStoreConfig {
            backend: TweetStoreBackend::Scylla,
            scylla: scylla.clone(),
        },
        ..TweetSvcConfig::default()
    };
    let (service, outbox) = TweetSvc::open_scylla(&config)
        .await
        .expect("open on ScyllaDB");
    let server = served::serve_on_a_free_port(|listener, shutdown| {
        service
            .into_grpc_server(std::time::Duration::from_secs(5))
            .serve(listener, shutdown)
    })
    .await;
    let mut client = pb::tweet_service_client::TweetServiceClient::connect(server.url())
        .await
        .unwrap();
    let author = rand::random_range(1u64 << 40..1u64 << 50);
    let created = client
        .create_tweet(pb::CreateTweetRequest {
            author_id: author,
            text: "hello from ScyllaDB".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .tweet
        .expect("a tweet");
    let listed = client
        .list_user_tweets(pb::ListUserTweetsRequest {
            author_id: author,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.tweets, vec![created.clone()]);
    let pending = outbox.pending(10_000).await.expect("outbox");
    assert!(
        pending.iter().any(|entry| entry.key == author),
        "the create left its event in the outbox"
    );
    server.stop().await.unwrap();
    drop_keyspace(&scylla).await;
}

/// Runs everywhere: start-up against an address where nothing listens fails
/// fast, naming the store and the address.
#[tokio::test]
async fn an_unreachable_cluster_fails_start_up_naming_store_and_address() {
    let config = TweetSvcConfig {
        store: TweetStoreConfig {
            backend: TweetStoreBackend::Scylla,
            scylla: ScyllaConfig {
                nodes: "127.0.0.1:1".into(),
                request_timeout_ms: 2_000,
                ..ScyllaConfig::default()
            },
        },
        ..TweetSvcConfig::default()
    };
    let error = match TweetSvc::open_scylla(&config).await {
        Ok(_) => panic!("nothing listens on 127.0.0.1:1"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("ScyllaDB"), "{error}");
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(error.contains("tweet store"), "{error}");
}
