//! The `media-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_media_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "media-svc",
    warble_media_svc::MediaSvcConfig,
    warble_media_svc::run
);
