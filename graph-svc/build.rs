//! `cfg(neo4j_live)` when `NEO4J_URI` is set: the tests against a live
//! Neo4j (tests/api/store_neo4j.rs) then run, and are otherwise listed as
//! ignored with the reason (see `warble_testkit::live`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(neo4j_live)\ncargo::rerun-if-env-changed=NEO4J_URI");
    if std::env::var_os("NEO4J_URI").is_some_and(|uri| !uri.is_empty()) {
        println!("cargo::rustc-cfg=neo4j_live");
    }
}
