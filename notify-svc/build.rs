//! `cfg(scylla_live)` when `SCYLLA_URI` is set: the tests against a live
//! ScyllaDB (tests/store_scylla.rs) then run, and are otherwise listed
//! as ignored with the reason (see `warble_testkit::live`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(scylla_live)\ncargo::rerun-if-env-changed=SCYLLA_URI");
    if std::env::var_os("SCYLLA_URI").is_some_and(|uri| !uri.is_empty()) {
        println!("cargo::rustc-cfg=scylla_live");
    }
}
