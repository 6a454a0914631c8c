//! The ScyllaDB notification store against a live cluster: the conformance
//! suite, in a keyspace of this run's own that is dropped at the end.
//!
//! It needs `SCYLLA_URI` (e.g. `SCYLLA_URI=127.0.0.1:9042`, comma-separated
//! contact points). Without it the test is built as ignored, with the
//! reason, so a runner lists it as skipped rather than passed (`build.rs`
//! sets `cfg(scylla_live)` when the variable is set). Once it runs, an
//! unreachable cluster fails it.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;

use warble_mesh::backends::ScyllaConfig;
use warble_notify_svc::store::{NotificationStore, ScyllaNotificationStore, conformance};
use warble_testkit::live;

/// The cluster `SCYLLA_URI` names, in a keyspace of this run's own.
fn scylla_under_test() -> ScyllaConfig {
    let run = RandomState::new().hash_one(std::time::SystemTime::now());
    ScyllaConfig {
        nodes: live::required("SCYLLA_URI")
            .trim_start_matches("scylla://")
            .to_owned(),
        keyspace: format!("warble_test_{run:016x}"),
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
    let store: Arc<dyn NotificationStore> = Arc::new(
        ScyllaNotificationStore::connect(&config)
            .await
            .expect("connect to ScyllaDB"),
    );
    // One keyspace for the whole run: the cases never assume an empty store.
    conformance::run_all(|| std::future::ready(Arc::clone(&store))).await;
    drop_keyspace(&config).await;
}
