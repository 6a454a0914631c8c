//! Warble's graph service: user profiles, who follows whom, and who blocks
//! or mutes whom.
//!
//! Owns the `warble.graph.v1.GraphService` contract. Every change publishes
//! its event to the domain event stream in the same durable step as the
//! change: `Followed`/`Unfollowed` carrying the counts after it (so fan-out
//! and timelines never need to call back), `UserCreated`, `ProfileUpdated`
//! (the whole profile after), `Blocked` (after an `Unfollowed` for each
//! follow the block removed), `Unblocked`, `Muted` and `Unmuted`. Timelines
//! filter a page of authors with one `GetRelations` call, point lookups
//! per author whatever the length of the viewer's block and mute lists.
//!
//! The library holds everything; the `graph-svc` binary only loads config
//! and calls [`run`], which opens the store ([`GraphSvc::open_embedded`] or
//! [`GraphSvc::open_neo4j`]) and serves [`GraphSvc::into_grpc_server`]. Tests
//! and the single-process stack do the same on their own listeners.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod service;
pub mod store;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use warble_mesh::event_log::EmbeddedEventLog;
use warble_mesh::grpc::GrpcServer;
use warble_mesh::outbox::Outbox;
use warble_mesh::scaffold::Shutdown;
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_proto::graph::v1::graph_service_server::GraphServiceServer;

pub use config::GraphSvcConfig;
pub use error::GraphError;
pub use service::GraphApi;
pub use store::{EmbeddedGraphStore, GraphStore, Neo4jGraphStore};

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.graph.v1.GraphService";

/// A graph service ready to serve.
#[derive(Debug, Clone)]
pub struct GraphSvc {
    api: GraphApi,
}

impl GraphSvc {
    /// Opens the embedded store in `config.data_dir` (sharing the database
    /// with any service of this process on the same directory) and issues ids
    /// as `config.worker_id`, above every id already stored.
    pub fn open_embedded(config: &GraphSvcConfig) -> Result<Self, GraphError> {
        let database = warble_mesh::embedded::open_shared(&config.data_dir)?;
        let log = EmbeddedEventLog::open(database)?;
        Self::open_embedded_with_log(config, log)
    }

    /// Opens the embedded store on an event log the caller already has (a
    /// single-process stack passes the handle its consumers wait on, so they
    /// wake as soon as a follow commits). `log` must be the one in
    /// `config.data_dir`'s database.
    pub fn open_embedded_with_log(
        config: &GraphSvcConfig,
        log: EmbeddedEventLog,
    ) -> Result<Self, GraphError> {
        let ids = Arc::new(SnowflakeGenerator::new(config.worker_id)?);
        let store = EmbeddedGraphStore::open(log, ids)?;
        Ok(Self::from_parts(Arc::new(store)))
    }

    /// Connects to Neo4j as `config.store.neo4j` says: checks that the
    /// server answers and accepts the credentials, creates the constraints
    /// and indexes if missing and waits until they are online, and issues
    /// ids as `config.worker_id` above every id already stored. Fails with a
    /// message naming the store and its address.
    ///
    /// Also returns the store's outbox, where its events wait
    /// until a relay (`warble_mesh::outbox::run_relay`) publishes them.
    pub async fn open_neo4j(config: &GraphSvcConfig) -> anyhow::Result<(Self, Arc<dyn Outbox>)> {
        let neo4j = &config.store.neo4j;
        let ids = Arc::new(SnowflakeGenerator::new(config.worker_id).context("invalid worker_id")?);
        let store = Neo4jGraphStore::connect(neo4j, ids)
            .await
            .with_context(|| {
                format!(
                    "graph store unavailable: Neo4j at {} (database `{}`, user `{}`)",
                    neo4j.uri,
                    if neo4j.database.is_empty() {
                        "neo4j"
                    } else {
                        &neo4j.database
                    },
                    neo4j.user
                )
            })?;
        let outbox: Arc<dyn Outbox> = Arc::new(store.clone());
        Ok((Self::from_parts(Arc::new(store)), outbox))
    }

    /// A service over any store.
    pub fn from_parts(store: Arc<dyn GraphStore>) -> Self {
        Self {
            api: GraphApi::new(store),
        }
    }

    /// The gRPC service, for callers that assemble their own server.
    pub fn grpc_service(&self) -> GraphServiceServer<GraphApi> {
        GraphServiceServer::new(self.api.clone())
    }

    /// The gRPC server (not yet serving), for callers that also call it in
    /// process ([`GrpcServer::local_channel`]).
    pub fn into_grpc_server(self, drain_timeout: Duration) -> GrpcServer {
        GrpcServer::new(drain_timeout).add_service(self.grpc_service())
    }
}

/// Runs graph-svc as its own process until `shutdown` resolves: opens the
/// configured store, relays its outbox to Redis Streams when
/// `events.backend = "redis"`, binds and serves.
pub async fn run(config: GraphSvcConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    use config::GraphStoreBackend;
    use warble_mesh::outbox::{embedded_outbox, serve_relaying};

    let (service, outbox): (GraphSvc, Arc<dyn Outbox>) = match config.store.backend {
        GraphStoreBackend::Embedded => {
            let database =
                warble_mesh::embedded::open_shared(&config.data_dir).with_context(|| {
                    format!("cannot open the store in {}", config.data_dir.display())
                })?;
            let log = EmbeddedEventLog::open(database).context("cannot open the event log")?;
            let service = GraphSvc::open_embedded_with_log(&config, log.clone())?;
            (service, embedded_outbox(log))
        }
        GraphStoreBackend::Neo4j => GraphSvc::open_neo4j(&config).await?,
    };
    let production_store =
        (config.store.backend == GraphStoreBackend::Neo4j).then_some("store.backend = \"neo4j\"");
    let server = service
        .into_grpc_server(config.server.drain_timeout())
        .with_server_config(&config.server)?;
    serve_relaying(
        server,
        outbox,
        &config.events,
        &config.server,
        production_store,
        shutdown,
    )
    .await
}
