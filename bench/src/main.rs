//! `warble-bench`: Warble's benchmarks and load generator, a binary of its
//! own so the product (`warble`) never ships it. See `warble-bench --help`
//! and BENCHMARKS.md.

#[global_allocator]
static ALLOCATOR: warble_mesh::scaffold::Allocator = warble_mesh::scaffold::Allocator;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = warble_bench::cli::main(args).await;
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
