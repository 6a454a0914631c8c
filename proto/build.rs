//! Compiles every contract under `proto/` with `protox` (a pure-Rust protobuf
//! compiler), so a fresh machine builds with cargo alone: no system `protoc`.

use std::path::PathBuf;

use protox::prost::Message as _;

const PROTOS: &[&str] = &[
    "warble/common/v1/common.proto",
    "warble/events/v1/events.proto",
    "warble/tweet/v1/tweet.proto",
    "warble/graph/v1/graph.proto",
    "warble/timeline/v1/timeline.proto",
    "warble/fanout/v1/fanout.proto",
    "warble/notify/v1/notify.proto",
    "warble/search/v1/search.proto",
    "warble/media/v1/media.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    // `compile_fds` does not write the set itself; reflection needs it on disk.
    std::fs::write(
        out_dir.join("warble_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
