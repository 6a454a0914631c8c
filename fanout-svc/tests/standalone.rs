//! The standalone binary cannot share the in-process timeline cache, so it
//! refuses the embedded backend and says why.

use std::process::Command;

#[test]
fn refuses_the_embedded_backend_with_a_reason() {
    let output = Command::new(env!("CARGO_BIN_EXE_fanout-svc"))
        .env("WARBLE_BACKEND", "embedded")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warble dev") && stderr.contains("redis"),
        "{stderr}"
    );
}

#[test]
fn prints_its_config_keys() {
    let output = Command::new(env!("CARGO_BIN_EXE_fanout-svc"))
        .arg("--print-config-keys")
        .output()
        .unwrap();
    assert!(output.status.success());
    let keys = String::from_utf8_lossy(&output.stdout);
    assert!(
        keys.contains("WARBLE_REDIS__URL") && keys.contains("WARBLE_BACKEND"),
        "{keys}"
    );
}
