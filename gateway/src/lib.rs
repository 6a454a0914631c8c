//! gateway: the GraphQL edge frontend teams query (async-graphql over the
//! gRPC mesh, with batched timeline hydration).

#![forbid(unsafe_code)]

pub mod config;

pub use config::GatewayConfig;
