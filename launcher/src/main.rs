//! `warble`: runs Warble. `warble dev` starts every service in one process on
//! embedded stores; see the README for configuration. Load generation is a
//! separate binary, `warble-bench`, so the product never ships it.

#[global_allocator]
static ALLOCATOR: warble_mesh::scaffold::Allocator = warble_mesh::scaffold::Allocator;

use std::process::ExitCode;

use warble_mesh::scaffold::{EXIT_USAGE, main_with_args};
use warble_stack::DevConfig;

const USAGE: &str = "usage: warble dev [--demo] [--config <file.toml>] [--print-config | --print-config-keys]\n\
  Starts every Warble service in one process on loopback, with embedded stores in data_dir.\n\
  --demo  loads sample users, follows and tweets (including a celebrity) once the stack is up.\n\
  Benchmarks are a separate binary: warble-bench --help.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dev") => {
            args.remove(0);
        }
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
