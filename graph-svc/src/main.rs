//! The `graph-svc` binary: config, telemetry, bind, serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;
use warble_graph_svc::{GraphSvc, GraphSvcConfig};
use warble_mesh::config::{load_for_main, redacted_json};

/// The name this binary logs and reports telemetry under.
const BINARY: &str = "graph-svc";

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = load_for_main::<GraphSvcConfig>(BINARY) else {
        return ExitCode::SUCCESS;
    };
    // Held until main returns so buffered spans are flushed on exit.
    let _telemetry = match warble_mesh::telemetry::init(&config.telemetry, BINARY) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{BINARY}: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %redacted_json(&config), "starting {BINARY}");
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{BINARY} failed");
            eprintln!("{BINARY}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: GraphSvcConfig) -> anyhow::Result<()> {
    let embedded_only = config.store.backend
        == warble_graph_svc::config::GraphStoreBackend::Embedded
        && config.events.backend == warble_mesh::backends::EventsBackend::Embedded;
    anyhow::ensure!(
        embedded_only,
        "store.backend = \"neo4j\" and events.backend = \"redis\" are not available in this build yet; \
         use the embedded defaults"
    );
    let service = GraphSvc::open_embedded(&config)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.server.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen_addr))?;
    service
        .serve(
            listener,
            config.server.drain_timeout(),
            warble_mesh::shutdown::signal(),
        )
        .await
        .context("gRPC server failed")
}
