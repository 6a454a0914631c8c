//! The trend store contract on a real Redis, single node and three-master
//! cluster (the keys of one tag share a slot, so `PFCOUNT` over a tag's
//! buckets works on both).

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
