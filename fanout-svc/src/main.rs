//! The `fanout-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_fanout_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "fanout-svc",
    warble_fanout_svc::FanoutSvcConfig,
    warble_fanout_svc::run
);
