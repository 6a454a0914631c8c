//! The `timeline-svc` binary: config, telemetry, then [`warble_timeline_svc::run`]
//! until SIGTERM/SIGINT.

/// mimalloc: far less time in allocation than glibc malloc under many
/// threads (see BENCHMARKS.md, "Where the read path's time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use warble_timeline_svc::TimelineSvcConfig;

const BINARY: &str = "timeline-svc";

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = warble_mesh::config::load_for_main::<TimelineSvcConfig>(BINARY) else {
        return ExitCode::SUCCESS;
    };
    let _telemetry = match warble_mesh::telemetry::init(&config.telemetry, BINARY) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{BINARY}: {error}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(config = %warble_mesh::config::redacted_json(&config), "effective config");
    match warble_timeline_svc::run(config, warble_mesh::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{BINARY}: {error:#}");
            ExitCode::from(2)
        }
    }
}
