//! Trusted-documents mode on the real gateway binary: only the manifest's
//! documents run, by hash or by text; anything else is FORBIDDEN before it
//! is parsed; a manifest whose keys are not its documents' hashes stops
//! start-up.

use serde_json::{Value, json};
use warble_gateway::persisted::sha256_hex;
use warble_tests::graphql::error_codes;
use warble_tests::processes::LoneGateway;

const SECRET: &str = "trusted-documents-test-secret-0123456789";
const ISSUER: &str = "https://id.example.com/";
const AUDIENCE: &str = "warble";

async fn post(addr: std::net::SocketAddr, body: Value) -> (reqwest::StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&body)
        .send()
        .await
        .expect("gateway answers");
    (response.status(), response.json().await.expect("JSON"))
}

#[tokio::test]
async fn only_the_manifests_documents_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("trusted.json");
    let allowed = "query Kind { __typename }";
    let hash = sha256_hex(allowed);
    std::fs::write(&manifest, json!({ hash.clone(): allowed }).to_string()).unwrap();
    let gateway = LoneGateway::start(&[
        ("WARBLE_AUTH__HS256_SECRET", SECRET),
        ("WARBLE_AUTH__ISSUER", ISSUER),
        ("WARBLE_AUTH__AUDIENCE", AUDIENCE),
        ("WARBLE_TRUSTED_DOCUMENTS_FILE", manifest.to_str().unwrap()),
    ])
    .await;

    let by_hash =
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    let by_document_id = json!({ "extensions": { "documentId": format!("sha256:{hash}") } });
    let by_text = json!({ "query": allowed });
    for body in [by_hash, by_document_id, by_text] {
        let (status, response) = post(gateway.addr, body.clone()).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}: {response}");
        assert_eq!(response["data"]["__typename"], "Query", "{body}");
    }
    let standard_introspection =
        include_str!("../../../gateway/tests/data/graphql-js-introspection.graphql");
    for refused in ["{ __typename }", standard_introspection, "mutation { x }"] {
        let (status, response) = post(gateway.addr, json!({ "query": refused })).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{response}");
        assert_eq!(error_codes(&response), ["FORBIDDEN"], "{refused}");
    }
}

#[test]
fn a_manifest_that_does_not_match_its_documents_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("trusted.json");
    std::fs::write(
        &manifest,
        json!({ sha256_hex("{ a }"): "{ b }" }).to_string(),
    )
    .unwrap();
    let output = std::process::Command::new(warble_tests::processes::binary_path("gateway"))
        .env_clear()
        .env("WARBLE_LISTEN_ADDR", "127.0.0.1:0")
        .env("WARBLE_AUTH__HS256_SECRET", SECRET)
        .env("WARBLE_AUTH__ISSUER", ISSUER)
        .env("WARBLE_AUTH__AUDIENCE", AUDIENCE)
        .env("WARBLE_TRUSTED_DOCUMENTS_FILE", &manifest)
        .output()
        .expect("the gateway runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a config error: {stderr}");
    assert!(
        stderr.contains("trusted_documents_file") && stderr.contains("SHA-256"),
        "{stderr}"
    );
}
