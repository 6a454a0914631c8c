//! The `gateway` binary: config, telemetry, bind, serve until SIGTERM/SIGINT.

/// mimalloc: far less time in allocation than glibc malloc under many
/// threads (see BENCHMARKS.md, "Where the read path's time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use warble_gateway::GatewayConfig;
use warble_mesh::config::{load_for_main, redacted_json};

const BINARY: &str = "gateway";

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = load_for_main::<GatewayConfig>(BINARY) else {
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
    match warble_gateway::run(config, warble_mesh::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{BINARY}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
