//! The `graph-svc` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_graph_svc::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "graph-svc",
    warble_graph_svc::GraphSvcConfig,
    warble_graph_svc::run
);
