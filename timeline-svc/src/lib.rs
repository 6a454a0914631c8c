//! timeline-svc: home and user timelines from the timeline cache, merging
//! celebrity tweets at read time. Implements `warble.timeline.v1.TimelineService`
//! (contract in `proto/`); the implementation lands with the hybrid fan-out issue.

/// The gRPC service this crate serves.
pub const SERVICE_NAME: &str = "warble.timeline.v1.TimelineService";
