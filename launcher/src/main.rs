//! `warble`: runs Warble. `warble dev` starts every service in one process on
//! embedded stores; see the README for configuration.

use warble_launcher::{DevConfig, DevStack};

const USAGE: &str = "usage: warble dev [--config <file.toml>] [--print-config | --print-config-keys]\n\
  Starts every Warble service in one process on loopback, with embedded stores in data_dir.";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("dev") => {}
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return;
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
    let Some(config) =
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
    tracing::info!(config = %warble_mesh::config::redacted_json(&config), "effective config");
    let stack = match DevStack::start(&config).await {
        Ok(stack) => stack,
        Err(error) => {
            eprintln!("warble dev: {error:#}");
            std::process::exit(1);
        }
    };
    println!("{}", stack.ready_line());
    if let Err(error) = stack.run_until(warble_mesh::shutdown::signal()).await {
        eprintln!("warble dev: {error:#}");
        std::process::exit(1);
    }
}
