//! `warble`: runs Warble. `warble dev` starts every service in one process on
//! embedded stores; `warble dlq` lists, shows, replays and drops dead
//! letters; see the README for configuration. Load generation is a
//! separate binary, `warble-bench`, so the product never ships it.

#[global_allocator]
static ALLOCATOR: warble_mesh::scaffold::Allocator = warble_mesh::scaffold::Allocator;

use std::process::ExitCode;

use warble_mesh::scaffold::{EXIT_FAILED, EXIT_USAGE, main_with_args};
use warble_stack::DevConfig;

const USAGE: &str = "usage: warble dev [--demo] [--config <file.toml>] [--print-config | --print-config-keys]\n\
       warble dlq <list|show|replay|drop> ...   (see warble dlq --help)\n\
  dev     starts every Warble service in one process on loopback, with embedded stores in data_dir.\n\
  --demo  loads sample users, follows and tweets (including a celebrity) once the stack is up.\n\
  dlq     lists, shows, replays and drops the events consumers gave up on.\n\
  Benchmarks are a separate binary: warble-bench --help.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dev") => {
            args.remove(0);
        }
        Some("dlq") => return dlq(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let demo = args.iter().any(|arg| arg == "--demo");
    args.retain(|arg| arg != "--demo");
    main_with_args::<DevConfig, _, _>("warble dev", args, move |config, shutdown| {
        warble_launcher::dev(config, demo, shutdown)
    })
}

/// `warble dlq ...`: exit 0 when done, 1 when it failed, 2 for a bad
/// command line or config.
fn dlq(args: &[String]) -> ExitCode {
    use warble_launcher::dlq;
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{}", dlq::USAGE);
        return ExitCode::SUCCESS;
    }
    let (command, config_file) = match dlq::parse(args) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("warble dlq: {error}\n{}", dlq::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match warble_mesh::config::load::<dlq::DlqConfig>(config_file.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("warble dlq: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("warble dlq: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let outcome = runtime.block_on(async {
        let log = dlq::open(&config).await?;
        dlq::run(log.as_ref(), command, &mut std::io::stdout().lock()).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("warble dlq: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
