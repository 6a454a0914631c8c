//! The `graph-svc` binary: config, telemetry, bind, serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;
use warble_graph_svc::{GraphSvc, GraphSvcConfig, SERVICE_NAME};
use warble_mesh::config::{load_for_main, redacted_json};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = load_for_main::<GraphSvcConfig>(SERVICE_NAME) else {
        return ExitCode::SUCCESS;
    };
    // Held until main returns so buffered spans are flushed on exit.
    let _telemetry = match warble_mesh::telemetry::init(&config.telemetry, SERVICE_NAME) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{SERVICE_NAME}: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %redacted_json(&config), "starting {SERVICE_NAME}");
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{SERVICE_NAME} failed");
            eprintln!("{SERVICE_NAME}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: GraphSvcConfig) -> anyhow::Result<()> {
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
