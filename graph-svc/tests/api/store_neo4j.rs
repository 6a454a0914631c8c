//! The Neo4j graph store over real Bolt: start-up failures always; the
//! conformance suite and a gRPC smoke test against the Neo4j `NEO4J_URI`
//! names (e.g. `NEO4J_URI=bolt://127.0.0.1:7687 NEO4J_PASSWORD=...`), or
//! else against ArcadeDB's Bolt endpoint, started once per test process by
//! `warble_testkit::arcadedb` from what `scripts/arcadedb.sh fetch`
//! unpacked. Without either, they print a notice and pass, except under
//! `CI=true`, where they fail; an unreachable `NEO4J_URI` fails them.
//!
//! ArcadeDB is not Neo4j: a pass on it proves the Cypher, the parameter
//! types, the decoding, the transactions and the error mapping over real
//! Bolt, not Neo4j's locking or planner.
//!
//! Each run uses its own label namespace and removes its nodes and schema
//! at the end.

use std::sync::Arc;
use std::time::Instant;

use warble_graph_svc::config::{GraphStoreBackend, GraphStoreConfig};
use warble_graph_svc::store::conformance;
use warble_graph_svc::{GraphSvc, GraphSvcConfig, Neo4jGraphStore};
use warble_mesh::backends::Neo4jConfig;
use warble_mesh::outbox::Outbox;
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_proto::graph::v1 as pb;
use warble_testkit::arcadedb::ArcadeDb;
use warble_testkit::{live, served};

/// The Bolt server under test: the Neo4j `NEO4J_URI` names, or else this
/// test process's ArcadeDB; `None` (after a notice) when neither is there.
fn bolt_server_under_test() -> Option<Neo4jConfig> {
    match std::env::var("NEO4J_URI") {
        Ok(uri) if !uri.trim().is_empty() => Some(Neo4jConfig {
            uri,
            user: live::or("NEO4J_USER", "neo4j"),
            password: live::or("NEO4J_PASSWORD", "").into(),
            database: live::or("NEO4J_DATABASE", ""),
            max_connections: 16,
        }),
        _ => ArcadeDb::shared().map(ArcadeDb::config),
    }
}

/// A label namespace no other run uses.
fn namespace() -> String {
    format!("T{:012x}_", rand::random::<u64>() >> 16)
}

/// Removes the run's nodes, constraints and indexes (best effort).
async fn drop_namespace(config: &Neo4jConfig, namespace: &str) {
    let Ok(graph) = neo4rs::Graph::new(&config.uri, &config.user, config.password.expose()).await
    else {
        return;
    };
    for label in ["User", "Identity", "Outbox"] {
        let delete = format!("MATCH (n:{namespace}{label}) DETACH DELETE n");
        let _ = graph.run(neo4rs::query(&delete)).await;
    }
    let prefix = format!("warble_{}", namespace.to_ascii_lowercase());
    for (show, drop) in [("CONSTRAINTS", "CONSTRAINT"), ("INDEXES", "INDEX")] {
        let list = format!("SHOW {show} YIELD name WHERE name STARTS WITH $prefix RETURN name");
        let Ok(mut rows) = graph
            .execute(neo4rs::query(&list).param("prefix", prefix.as_str()))
            .await
        else {
            continue;
        };
        let mut names = Vec::new();
        while let Ok(Some(row)) = rows.next().await {
            if let Ok(name) = row.get::<String>("name") {
                names.push(name);
            }
        }
        for name in names {
            let _ = graph
                .run(neo4rs::query(&format!("DROP {drop} {name} IF EXISTS")))
                .await;
        }
    }
}

#[tokio::test]
async fn neo4j_store_passes_the_conformance_suite() {
    let Some(config) = bolt_server_under_test() else {
        return;
    };
    let started = Instant::now();
    let namespace = namespace();
    let ids = Arc::new(SnowflakeGenerator::new(7).unwrap());
    let store = Neo4jGraphStore::connect_in_namespace(&config, ids, &namespace)
        .await
        .expect("connect to Neo4j");
    // One namespace for the whole run: the checks never assume an empty store.
    conformance::run_all(|| {
        let store = store.clone();
        async move {
            let outbox: Arc<dyn Outbox> = Arc::new(store.clone());
            ((), store, outbox)
        }
    })
    .await;
    eprintln!(
        "graph conformance suite on {}: {:.1?}",
        config.uri,
        started.elapsed()
    );
    drop_namespace(&config, &namespace).await;
}

#[tokio::test]
async fn a_neo4j_backed_service_serves_the_graph_over_grpc() {
    let Some(neo4j) = bolt_server_under_test() else {
        return;
    };
    let config = GraphSvcConfig {
        store: GraphStoreConfig {
            backend: GraphStoreBackend::Neo4j,
            neo4j: neo4j.clone(),
        },
        ..GraphSvcConfig::default()
    };
    // The service runs in the production namespace; its users carry a
    // random name and are removed at the end.
    let (service, outbox) = GraphSvc::open_neo4j(&config).await.expect("open on Neo4j");
    let server = served::serve_on_a_free_port(|listener, shutdown| {
        service
            .into_grpc_server(std::time::Duration::from_secs(5))
            .serve(listener, shutdown)
    })
    .await;
    let mut client = pb::graph_service_client::GraphServiceClient::connect(server.url())
        .await
        .unwrap();
    let suffix = format!("{:08x}", rand::random::<u32>());
    let create = |name: String| {
        let mut client = client.clone();
        async move {
            client
                .create_user(pb::CreateUserRequest {
                    username: name,
                    display_name: "smoke".into(),
                    bio: String::new(),
                })
                .await
                .expect("create user")
                .into_inner()
                .user
                .expect("a user")
        }
    };
    let alice = create(format!("a_{suffix}")).await;
    let bob = create(format!("b_{suffix}")).await;
    client
        .follow(pb::FollowRequest {
            follower_id: alice.id,
            followee_id: bob.id,
        })
        .await
        .expect("follow");
    let followers = client
        .list_followers(pb::ListFollowersRequest {
            user_id: bob.id,
            ..Default::default()
        })
        .await
        .expect("list followers")
        .into_inner();
    assert_eq!(
        followers
            .followers
            .iter()
            .map(|e| e.user_id)
            .collect::<Vec<_>>(),
        vec![alice.id]
    );
    let pending = outbox.pending(10_000).await.expect("outbox");
    assert!(pending.iter().any(|entry| entry.key == bob.id));

    server.stop().await.unwrap();
    if let Ok(graph) = neo4rs::Graph::new(&neo4j.uri, &neo4j.user, neo4j.password.expose()).await {
        let cleanup = "MATCH (u:User) WHERE u.id IN $ids DETACH DELETE u";
        let ids = vec![alice.id as i64, bob.id as i64];
        let _ = graph.run(neo4rs::query(cleanup).param("ids", ids)).await;
        let handles: Vec<String> = pending
            .iter()
            .filter(|entry| entry.key == bob.id || entry.key == alice.id)
            .map(|entry| entry.handle.clone())
            .collect();
        let _ = outbox.mark_published(&handles).await;
    }
}

/// Runs everywhere: start-up against an address where nothing listens fails
/// fast, naming the store and the address.
#[tokio::test]
async fn an_unreachable_server_fails_start_up_naming_store_and_address() {
    let config = GraphSvcConfig {
        store: GraphStoreConfig {
            backend: GraphStoreBackend::Neo4j,
            neo4j: Neo4jConfig {
                uri: "bolt://127.0.0.1:1".into(),
                ..Neo4jConfig::default()
            },
        },
        ..GraphSvcConfig::default()
    };
    let error = match GraphSvc::open_neo4j(&config).await {
        Ok(_) => panic!("nothing listens on 127.0.0.1:1"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("Neo4j"), "{error}");
    assert!(error.contains("bolt://127.0.0.1:1"), "{error}");
    assert!(error.contains("graph store"), "{error}");
}
