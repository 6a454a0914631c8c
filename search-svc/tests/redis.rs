//! search-svc's Redis parts on a real Redis: the trend store contract on a
//! single node and a three-master cluster (the keys of one tag share a
//! slot, so `PFCOUNT` over a tag's buckets works on both), and the replica
//! registry that unpins replicas gone for good.

use warble_mesh::redis_client::RedisClient;
use warble_search_svc::trends::{RedisTrendStore, conformance};
use warble_testkit::{Topology, run_suite_on, test_each_topology, unique_prefix};

async fn conformance_on(topology: Topology) {
    run_suite_on(topology, "trend store conformance", |config| async move {
        let client = RedisClient::connect(&config).await.unwrap();
        let store = RedisTrendStore::new(client, unique_prefix());
        conformance::run(&store, warble_mesh::time::now_ms() as i64).await;
    })
    .await;
}

test_each_topology!(conformance_on => trends_on_a_single_node, trends_on_a_three_master_cluster);

/// A replica silent for longer than the timeout is unpinned by a live
/// peer's beat (so the stream can be trimmed past it) and forgotten; a
/// replica heard from recently keeps its pin.
#[tokio::test]
async fn a_replica_silent_past_the_timeout_is_unpinned() {
    use std::sync::Arc;
    use std::time::Duration;

    use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog, RedisEventLog};
    use warble_mesh::redis_client::Request;
    use warble_search_svc::replicas::ReplicaRegistry;

    let Some(config) = Topology::SingleNode.shared_config() else {
        return;
    };
    let prefix = unique_prefix();
    let redis = Arc::new(
        RedisEventLog::connect(&config)
            .await
            .unwrap()
            .with_key_prefix(prefix.clone()),
    );
    let client = redis.client().clone();
    let log: Arc<dyn EventLog> = redis.clone();
    let mut ids = Vec::new();
    for key in 0..4u64 {
        ids.push(log.append(DOMAIN_EVENTS_STREAM, key, b"x").await.unwrap());
    }
    // Two replicas pinned early, one recently alive, one long gone.
    log.pin(DOMAIN_EVENTS_STREAM, "search-live", Some(ids[0]))
        .await
        .unwrap();
    log.pin(DOMAIN_EVENTS_STREAM, "search-gone", Some(ids[0]))
        .await
        .unwrap();
    log.pin(DOMAIN_EVENTS_STREAM, "search-late", Some(ids[0]))
        .await
        .unwrap();
    let key = format!("{prefix}replicas");
    let now_ms = warble_mesh::time::now_ms();
    let hour_ms = 3_600_000u64;
    client
        .query::<()>(
            Request::new("HSET", &key)
                .arg("search-gone")
                .arg(now_ms - 2 * hour_ms)
                .arg("search-late")
                .arg(now_ms - hour_ms / 2),
        )
        .await
        .unwrap();
    let registry = ReplicaRegistry::new(
        client.clone(),
        &key,
        "search-live",
        Duration::from_secs(3_600),
    );
    let unpinned = registry.beat(&log, now_ms).await.unwrap();
    assert_eq!(unpinned, ["search-gone"]);
    let known: Vec<String> = client.query(Request::new("HKEYS", &key)).await.unwrap();
    let mut known = known;
    known.sort();
    assert_eq!(known, ["search-late", "search-live"]);
    // The live replicas moving on lets trimming go up to them.
    log.pin(DOMAIN_EVENTS_STREAM, "search-live", Some(ids[2]))
        .await
        .unwrap();
    log.pin(DOMAIN_EVENTS_STREAM, "search-late", Some(ids[2]))
        .await
        .unwrap();
    redis.trim(DOMAIN_EVENTS_STREAM).await.unwrap();
    let left = log
        .read_after(DOMAIN_EVENTS_STREAM, None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(left.first().map(|delivery| delivery.id), Some(ids[3]));
}
