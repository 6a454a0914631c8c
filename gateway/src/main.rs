//! The `gateway` binary: the shared scaffold (config, telemetry, exit codes)
//! around [`warble_gateway::run`], until SIGTERM/SIGINT.

warble_mesh::service_main!(
    "gateway",
    warble_gateway::GatewayConfig,
    warble_gateway::run
);
