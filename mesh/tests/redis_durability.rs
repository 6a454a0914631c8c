//! The start-up check of a Redis that holds durable data: append-only
//! persistence off or an evicting `maxmemory-policy` is named, and refused
//! or warned about as configured; on a cluster every master is asked.

use warble_mesh::backends::DurabilityCheck;
use warble_mesh::redis_client::{RedisClient, RedisClientError};
use warble_testkit::{RedisServer, ServerOptions, Topology};

#[tokio::test]
async fn a_redis_that_loses_writes_is_named_and_refused_or_warned_about() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let client = RedisClient::connect(&server.config()).await.unwrap();
    let problems = client.durability_problems().await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("appendonly yes"), "{problems:?}");
    match client
        .check_durability(
            DurabilityCheck::Refuse,
            "the event log",
            "redis.durability_check",
        )
        .await
    {
        Err(RedisClientError::NotDurable { problems, key, .. }) => {
            assert_eq!(key, "redis.durability_check");
            assert!(problems[0].contains("appendonly"), "{problems:?}");
        }
        other => panic!("refused expected, got {other:?}"),
    }
    let error = client
        .check_durability(
            DurabilityCheck::Refuse,
            "the event log",
            "redis.durability_check",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the event log") && error.contains("appendonly yes"),
        "{error}"
    );
    client
        .check_durability(
            DurabilityCheck::Warn,
            "the event log",
            "redis.durability_check",
        )
        .await
        .unwrap();
    client
        .check_durability(
            DurabilityCheck::Off,
            "the event log",
            "redis.durability_check",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_evicting_policy_is_named_even_with_persistence_on() {
    let Some(server) = RedisServer::start_with(ServerOptions {
        appendonly: true,
        ..ServerOptions::default()
    }) else {
        return;
    };
    let client = RedisClient::connect(&server.config()).await.unwrap();
    assert_eq!(
        client.durability_problems().await.unwrap(),
        Vec::<String>::new()
    );
    client
        .check_durability(
            DurabilityCheck::Refuse,
            "the event log",
            "redis.durability_check",
        )
        .await
        .unwrap();
    server
        .command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .unwrap();
    let problems = client.durability_problems().await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("allkeys-lru") && problems[0].contains("noeviction"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn every_master_of_a_cluster_is_asked() {
    let Some(config) = Topology::Cluster.shared_config() else {
        return;
    };
    let client = RedisClient::connect(&config).await.unwrap();
    let infos = client.info_of_every_master().await.unwrap();
    assert_eq!(infos.len(), 3, "one INFO per master");
    assert!(infos.iter().all(|info| info.contains("aof_enabled:")));
    // The test cluster runs without append-only persistence: named once.
    let problems = client.durability_problems().await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("appendonly yes"), "{problems:?}");
}
