//! A gateway configured for production (dev mode off, its own secret, issuer
//! and audience) on the real binary: tokens forged with the public dev
//! secret, expired tokens and `alg: none` are refused before anything runs,
//! and the dev-only mutations are FORBIDDEN.

use serde_json::{Value, json};
use warble_gateway::auth::Authenticator;
use warble_gateway::config::AuthConfig;
use warble_tests::graphql::error_codes;
use warble_tests::processes::LoneGateway;

const SECRET: &str = "production-auth-test-secret-0123456789abcdef";
const ISSUER: &str = "https://id.example.com/";
const AUDIENCE: &str = "warble";

/// A token for user 7 signed with `secret`, with the production issuer and
/// audience, living `ttl_secs`.
fn token(secret: &str, ttl_secs: u64) -> String {
    Authenticator::new(&AuthConfig {
        hs256_secret: secret.into(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        dev_mode: true,
        dev_token_ttl_secs: ttl_secs,
        ..AuthConfig::default()
    })
    .expect("issuer")
    .issue(7)
    .expect("token")
}

async fn post(addr: std::net::SocketAddr, token: Option<&str>, query: &str) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn forged_expired_and_unsigned_tokens_are_refused_and_dev_mutations_forbidden() {
    let gateway = LoneGateway::start(&[
        ("WARBLE_AUTH__HS256_SECRET", SECRET),
        ("WARBLE_AUTH__ISSUER", ISSUER),
        ("WARBLE_AUTH__AUDIENCE", AUDIENCE),
    ])
    .await;
    let addr = gateway.addr;

    let public_dev_secret = warble_stack::DevConfig::default().effective_jwt_secret();
    let forged = token(public_dev_secret.expose(), 3_600);
    // Signed with the right key, issuer and audience, but expired an hour
    // ago (well beyond the 30 s leeway).
    let expired = {
        let now = warble_mesh::time::now_ms() / 1000;
        let claims = json!({ "sub": "7", "iat": now - 7_200, "exp": now - 3_600, "iss": ISSUER, "aud": AUDIENCE });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let valid = token(SECRET, 3_600);
    let (_, rest) = valid.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    for (what, token) in [
        ("signed with the public dev secret", forged),
        ("expired", expired),
        ("alg: none", unsigned),
    ] {
        let response = post(addr, Some(&token), "{ __typename }").await;
        assert_eq!(
            error_codes(&response),
            ["UNAUTHENTICATED"],
            "{what}: {response}"
        );
    }
    // The right key, issuer and audience pass the check (nothing downstream
    // is needed for `__typename`).
    let accepted = post(addr, Some(&valid), "{ __typename }").await;
    assert_eq!(accepted["data"]["__typename"], "Query", "{accepted}");

    for dev_only in [
        r#"mutation { signUp(username: "mallory", displayName: "M") { token } }"#,
        r#"mutation { issueToken(username: "alice") { token } }"#,
    ] {
        let response = post(addr, None, dev_only).await;
        assert_eq!(
            error_codes(&response),
            ["FORBIDDEN"],
            "{dev_only}: {response}"
        );
    }
}
