//! The `search-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_search_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "search-svc",
    warble_search_svc::SearchSvcConfig,
    warble_search_svc::run
);
