//! The tweet-svc binary: load config, start telemetry, open the store, serve
//! until SIGTERM/SIGINT.

use std::process::ExitCode;

use anyhow::Context as _;
use warble_mesh::config::{load_for_main, redacted_json};
use warble_tweet_svc::{TweetSvc, TweetSvcConfig};

const BINARY: &str = "tweet-svc";

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = load_for_main::<TweetSvcConfig>(BINARY) else {
        return ExitCode::SUCCESS;
    };
    let _telemetry = match warble_mesh::telemetry::init(&config.telemetry, BINARY) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{BINARY}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "tweet-svc failed");
            eprintln!("{BINARY}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: TweetSvcConfig) -> anyhow::Result<()> {
    tracing::info!(config = %redacted_json(&config), "effective config");
    let embedded_only = config.store.backend
        == warble_tweet_svc::config::TweetStoreBackend::Embedded
        && config.events.backend == warble_mesh::backends::EventsBackend::Embedded;
    anyhow::ensure!(
        embedded_only,
        "store.backend = \"scylla\" and events.backend = \"redis\" are not available in this build yet; \
         use the embedded defaults"
    );
    let service = TweetSvc::open_embedded(&config)?;
    let addr = config.server.listen_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    service
        .serve(
            listener,
            config.server.drain_timeout(),
            warble_mesh::shutdown::signal(),
        )
        .await?;
    Ok(())
}
