//! The `notify-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_notify_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "notify-svc",
    warble_notify_svc::NotifySvcConfig,
    warble_notify_svc::run
);
