//! Warble's graph service: user profiles and who follows whom.
//!
//! Owns the `warble.graph.v1.GraphService` contract. Every follow and
//! unfollow publishes a `Followed`/`Unfollowed` event to the domain event
//! stream in the same durable step as the change, carrying the counts after
//! it, so fan-out and timelines never need to call back.
//!
//! The library holds everything; the `graph-svc` binary only loads config
//! and calls [`GraphSvc::open_embedded`] and [`GraphSvc::serve`]. Tests and
//! the all-in-one dev launcher do the same on their own listeners.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod service;
pub mod store;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use warble_mesh::event_log::EmbeddedEventLog;
use warble_mesh::grpc::{GrpcServer, ServeError};
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_proto::graph::v1::graph_service_server::GraphServiceServer;

pub use config::GraphSvcConfig;
pub use error::GraphError;
pub use service::GraphApi;
pub use store::{EmbeddedGraphStore, GraphStore};

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

    /// Serves on `listener` (with health and reflection) until `shutdown`
    /// resolves, then lets in-flight calls finish for up to `drain_timeout`.
    pub async fn serve(
        self,
        listener: TcpListener,
        drain_timeout: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        GrpcServer::new(drain_timeout)
            .add_service(self.grpc_service())
            .serve(listener, shutdown)
            .await
    }
}
