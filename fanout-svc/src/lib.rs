//! fanout-svc: consumes domain events and pushes new tweets into followers'
//! timelines (hybrid fan-out). Implements `warble.fanout.v1.FanoutService`
//! (contract in `proto/`); the implementation lands with the hybrid fan-out issue.

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.fanout.v1.FanoutService";
