//! The checked-in `schema.graphql` is exactly what the code serves: frontend
//! tooling (codegen, linting) reads the file, so drift must fail the build.

#[test]
fn checked_in_schema_matches_the_code() {
    let sdl = warble_gateway::schema::sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &sdl).expect("write schema.graphql");
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == sdl,
        "gateway/schema.graphql is out of date; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p warble-gateway --test schema`"
    );
}
