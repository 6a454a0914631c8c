//! ISO 8601 timestamps (shared with the other binaries through `warble-mesh`).

pub use warble_mesh::time::iso8601;
