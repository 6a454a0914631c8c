//! Checks every standalone service binary passes, written once: call them
//! with `env!("CARGO_BIN_EXE_<name>")` from the service's own tests.

use std::process::Command;

/// A service that cannot share the in-process embedded stores (fanout-svc
/// and timeline-svc need the timeline cache the other services write) exits
/// with code 2 on `WARBLE_BACKEND=embedded`, naming `warble dev` (which runs
/// everything in one process) and Redis as the ways out.
pub fn assert_refuses_the_embedded_backend(binary: &str) {
    let output = Command::new(binary)
        .env("WARBLE_BACKEND", "embedded")
        .output()
        .unwrap_or_else(|error| panic!("running {binary}: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("warble dev") && stderr.contains("redis"),
        "{stderr}"
    );
}

/// `--print-config-keys` succeeds and lists the env keys of the settings
/// every Redis-backed service reads.
pub fn assert_prints_its_config_keys(binary: &str) {
    let output = Command::new(binary)
        .arg("--print-config-keys")
        .output()
        .unwrap_or_else(|error| panic!("running {binary}: {error}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys = String::from_utf8_lossy(&output.stdout);
    assert!(
        keys.contains("WARBLE_REDIS__URL") && keys.contains("WARBLE_BACKEND"),
        "{keys}"
    );
}
