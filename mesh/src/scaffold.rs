//! The service scaffold: one shape for every Warble server and one `main`
//! for every Warble binary.
//!
//! - **Server shape.** A server is built with everything it needs, its drain
//!   deadline included, and then [`Serve::serve`]s an already-bound listener
//!   until a shutdown future resolves. Tests bind port 0; the single-process
//!   stack binds every port first and starts each server the same way.
//! - **Binary shape.** [`service_main!`](crate::service_main) writes a
//!   service's whole `main.rs`: parse `--config` / `--print-config` /
//!   `--print-config-keys`, load and validate the config, start telemetry,
//!   log the effective config (secrets redacted), run until SIGTERM/SIGINT,
//!   and exit with the same codes and error logging as every other binary:
//!
//! | exit code | meaning |
//! |---|---|
//! | 0 | stopped cleanly (or a print command ran) |
//! | 1 | failed while starting or running (the error is logged and printed) |
//! | 2 | bad command line or config (the message names the argument or key) |

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::{ServiceConfig, load_for_main_with_args, redacted_json};
use crate::telemetry::TelemetryConfig;

/// The future a server stops on (SIGTERM/SIGINT in a binary, a channel in
/// the stack and in tests).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Boxes any shutdown future into a [`Shutdown`].
pub fn shutdown_on(future: impl Future<Output = ()> + Send + 'static) -> Shutdown {
    Box::pin(future)
}

/// A built server, ready to serve.
pub trait Serve: Send + 'static {
    /// Serves on `listener` until `shutdown` resolves, then stops accepting,
    /// lets in-flight work finish for at most the drain deadline the server
    /// was built with, and returns.
    fn serve(
        self,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Binds `addr` with an error that names it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Binds `addr` and serves `server` on it until `shutdown` resolves: the
/// last step of every service's `run`.
pub async fn serve_on(
    addr: SocketAddr,
    server: impl Serve,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    server.serve(bind(addr).await?, shutdown).await
}

/// A binary's config: a validated [`ServiceConfig`] that also says how to
/// log and trace.
pub trait BinaryConfig: ServiceConfig {
    /// The `telemetry.*` section.
    fn telemetry(&self) -> &TelemetryConfig;
}

/// Exit code of a binary that failed while starting or running.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a binary given a bad command line or config.
pub const EXIT_USAGE: u8 = 2;

/// The body of every service binary's `main` (see the module docs): reads
/// the command line, then runs `run(config, SIGTERM/SIGINT)` on a
/// multi-threaded runtime.
pub fn main<C, F, Fut>(binary: &'static str, run: F) -> ExitCode
where
    C: BinaryConfig,
    F: FnOnce(C, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    main_with_args(binary, std::env::args().skip(1), run)
}

/// [`main`] over explicit arguments (for commands with subcommands, such as
/// `warble dev`).
pub fn main_with_args<C, F, Fut>(
    binary: &'static str,
    args: impl IntoIterator<Item = String>,
    run: F,
) -> ExitCode
where
    C: BinaryConfig,
    F: FnOnce(C, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // Bad arguments or config exit with EXIT_USAGE inside; `None` means a
    // print command already ran.
    let Some(config) = load_for_main_with_args::<C>(binary, args) else {
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{binary}: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(config.telemetry(), binary) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{binary}: {error}");
                return ExitCode::from(EXIT_FAILED);
            }
        };
        tracing::info!(config = %redacted_json(&config), "effective config");
        match run(config, shutdown_on(crate::shutdown::signal())).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                let message = format!("{error:#}");
                tracing::error!(error = %message, "{binary} failed");
                eprintln!("{binary}: {message}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    })
}

/// Writes a service binary's whole `main.rs`: the process allocator and a
/// `main` that hands the config type and the crate's `run` to
/// [`scaffold::main`](main).
///
/// ```ignore
/// warble_mesh::service_main!("tweet-svc", warble_tweet_svc::TweetSvcConfig, warble_tweet_svc::run);
/// ```
#[macro_export]
macro_rules! service_main {
    ($binary:literal, $config:ty, $run:path) => {
        /// mimalloc: far less time in allocation than glibc malloc under many
        /// threads (see BENCHMARKS.md, "Where the read path's time goes").
        #[global_allocator]
        static ALLOCATOR: $crate::scaffold::Allocator = $crate::scaffold::Allocator;

        fn main() -> ::std::process::ExitCode {
            $crate::scaffold::main::<$config, _, _>($binary, $run)
        }
    };
}

/// The allocator every Warble binary installs ([`service_main!`](crate::service_main)).
pub use mimalloc::MiMalloc as Allocator;
