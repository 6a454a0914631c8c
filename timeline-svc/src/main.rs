//! The `timeline-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_timeline_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "timeline-svc",
    warble_timeline_svc::TimelineSvcConfig,
    warble_timeline_svc::run
);
