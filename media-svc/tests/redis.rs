//! The Redis metadata store on a real Redis: the conformance suite on a
//! single node and on a three-master cluster (every script touches one key,
//! so it runs on a cluster as it does on one node).

use std::sync::Arc;

use warble_media_svc::store::{MediaStore, RedisMediaStore, conformance};
use warble_mesh::redis_client::RedisClient;
use warble_testkit::{Topology, run_suite_on, test_each_topology, unique_prefix};

async fn conformance_on(topology: Topology) {
    run_suite_on(topology, "media store conformance", |config| async move {
        let client = RedisClient::connect(&config).await.unwrap();
        conformance::run_all(|| {
            let store: Arc<dyn MediaStore> =
                Arc::new(RedisMediaStore::new(client.clone(), unique_prefix()));
            std::future::ready(store)
        })
        .await;
    })
    .await;
}

test_each_topology!(conformance_on => media_store_on_a_single_node, media_store_on_a_three_master_cluster);
