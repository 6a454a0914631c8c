//! The `graph-svc` binary: config, telemetry, then [`warble_graph_svc::run`] until
//! SIGTERM/SIGINT.

/// mimalloc: far less time in allocation than glibc malloc under many
/// threads (see BENCHMARKS.md, "Where the read path's time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use warble_graph_svc::GraphSvcConfig;
use warble_mesh::config::{load_for_main, redacted_json};

const BINARY: &str = "graph-svc";

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = load_for_main::<GraphSvcConfig>(BINARY) else {
        return ExitCode::SUCCESS;
    };
    let _telemetry = match warble_mesh::telemetry::init(&config.telemetry, BINARY) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{BINARY}: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %redacted_json(&config), "effective config");
    match warble_graph_svc::run(config, warble_mesh::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{BINARY} failed");
            eprintln!("{BINARY}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
