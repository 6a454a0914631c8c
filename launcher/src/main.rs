//! `warble`: runs Warble. `warble dev` starts every service in one process on
//! embedded stores; see the README for configuration.

/// mimalloc: far less time in allocation than glibc malloc under many
/// threads (see BENCHMARKS.md, "Where the read path's time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use warble_stack::{DevConfig, DevStack};

const USAGE: &str = "usage: warble dev [--demo] [--config <file.toml>] [--print-config | --print-config-keys]\n\
       warble bench <scenario|all> [options]   (warble bench --help)\n\
  Starts every Warble service in one process on loopback, with embedded stores in data_dir.\n\
  --demo  loads sample users, follows and tweets (including a celebrity) once the stack is up.";

/// The celebrity threshold `--demo` uses when none is configured, so the
/// demo's celebrity needs dozens of followers rather than ten thousand.
const DEMO_CELEBRITY_THRESHOLD: u64 = 25;

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dev") => {
            args.remove(0);
        }
        Some("bench") => {
            args.remove(0);
            std::process::exit(warble_bench::cli::main(args).await);
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return;
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
    let demo = args.iter().any(|arg| arg == "--demo");
    args.retain(|arg| arg != "--demo");
    let Some(mut config) =
        warble_mesh::config::load_for_main_with_args::<DevConfig>("warble dev", args)
    else {
        return;
    };
    let _telemetry = match warble_mesh::telemetry::init(&config.telemetry, "warble-dev") {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("warble dev: {error}");
            std::process::exit(2);
        }
    };
    if demo && config.fanout.celebrity_threshold == DevConfig::default().fanout.celebrity_threshold
    {
        config.fanout.celebrity_threshold = DEMO_CELEBRITY_THRESHOLD;
        println!(
            "demo: celebrity threshold lowered to {DEMO_CELEBRITY_THRESHOLD} followers \
             (set WARBLE_FANOUT__CELEBRITY_THRESHOLD to choose another)"
        );
    }
    tracing::info!(config = %warble_mesh::config::redacted_json(&config), "effective config");
    let stack = match DevStack::start(&config).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("warble dev: {error:#}");
            std::process::exit(1);
        }
    };
    if demo {
        let loaded = warble_launcher::demo::load(
            stack.tweet_addr,
            stack.graph_addr,
            config.fanout.celebrity_threshold,
        )
        .await;
        if let Err(error) = loaded {
            eprintln!("warble dev: loading the demo data failed: {error:#}");
            let _ = stack.stop().await;
            std::process::exit(1);
        }
    }
    println!("{}", stack.ready_line());
    if let Err(error) = stack.run_until(warble_mesh::shutdown::signal()).await {
        eprintln!("warble dev: {error:#}");
        std::process::exit(1);
    }
}
