//! The standalone binary cannot share the in-process timeline cache, so it
//! refuses the embedded backend and says why.

use warble_testkit::binaries;

#[test]
fn refuses_the_embedded_backend_with_a_reason() {
    binaries::assert_refuses_the_embedded_backend(env!("CARGO_BIN_EXE_fanout-svc"));
}

#[test]
fn prints_its_config_keys() {
    binaries::assert_prints_its_config_keys(env!("CARGO_BIN_EXE_fanout-svc"));
}
