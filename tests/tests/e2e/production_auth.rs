//! A gateway configured for production (dev mode off, its own secret, issuer
//! and audience) on the real binary: tokens forged with the public dev
//! secret, expired tokens and `alg: none` are refused before anything runs,
//! and the dev-only mutations are FORBIDDEN. With `auth.subjects =
//! "registered"`, a person signed in with an identity provider registers,
//! then acts as their new user.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use warble_gateway::auth::Authenticator;
use warble_gateway::config::AuthConfig;
use warble_tests::TestStack;
use warble_tests::graphql::{error_codes, raw_socket, send_json};
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

/// A token the identity provider at [`ISSUER`] signed for its account
/// `subject` (not a Warble user id), as Auth0 or Keycloak would.
fn provider_token(subject: &str) -> String {
    let now = warble_mesh::time::now_ms() / 1000;
    let claims =
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 3_600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// How the gateway answers a WebSocket `connection_init` with `token`: the
/// answer's type (`connection_ack`), or the close frame's code and reason.
async fn socket_answer(addr: std::net::SocketAddr, token: &str) -> String {
    let mut socket = raw_socket(addr).await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    send_json(&mut socket, &init).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
                return answer["type"].as_str().unwrap_or_default().to_owned();
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return format!("{} {}", u16::from(frame.code), frame.reason);
            }
            Some(Ok(_)) => continue,
            other => panic!("the socket ended without an answer: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_from_an_outside_issuer_registers_then_posts_a_tweet() {
    // The services in process; the gateway the production binary.
    let stack = TestStack::start().await;
    let services = &stack.stack;
    let addrs = [
        ("WARBLE_TWEET_SERVICE_ADDR", services.tweet_addr),
        ("WARBLE_GRAPH_SERVICE_ADDR", services.graph_addr),
        ("WARBLE_TIMELINE_SERVICE_ADDR", services.timeline_addr),
        ("WARBLE_NOTIFY_SERVICE_ADDR", services.notify_addr),
        ("WARBLE_SEARCH_SERVICE_ADDR", services.search_addr),
        ("WARBLE_MEDIA_SERVICE_ADDR", services.media_addr),
    ]
    .map(|(key, addr)| (key, addr.to_string()));
    let mut env: Vec<(&str, &str)> = vec![
        ("WARBLE_AUTH__HS256_SECRET", SECRET),
        ("WARBLE_AUTH__ISSUER", ISSUER),
        ("WARBLE_AUTH__AUDIENCE", AUDIENCE),
        ("WARBLE_AUTH__SUBJECTS", "registered"),
    ];
    env.extend(addrs.iter().map(|(key, addr)| (*key, addr.as_str())));
    let gateway = LoneGateway::start(&env).await;
    let addr = gateway.addr;
    let ada = provider_token("auth0|5f7c8ec7c33c6c004bbafe82");

    // Signed in with the provider, not yet a Warble user: only `register`.
    let before = post(addr, Some(&ada), "{ viewer { id } }").await;
    assert_eq!(error_codes(&before), ["UNREGISTERED"], "{before}");
    // A socket is refused as one with an invalid token is, saying why.
    let refused = socket_answer(addr, &ada).await;
    let invalid = socket_answer(addr, "not-a-token").await;
    assert!(refused.contains(" UNREGISTERED: "), "{refused}");
    assert!(invalid.contains("invalid or expired"), "{invalid}");
    assert_eq!(
        refused.split(' ').next(),
        invalid.split(' ').next(),
        "the same close code"
    );
    // A token forged for the same account is refused as before.
    let forged = token(
        warble_stack::DevConfig::default()
            .effective_jwt_secret()
            .expose(),
        3_600,
    );
    let forged = post(addr, Some(&forged), "{ viewer { id } }").await;
    assert_eq!(error_codes(&forged), ["UNAUTHENTICATED"], "{forged}");

    let registered = post(
        addr,
        Some(&ada),
        r#"mutation { register(username: "ada_idp", displayName: "Ada") { id username } }"#,
    )
    .await;
    assert!(registered.get("errors").is_none(), "{registered}");
    let ada_id = registered["data"]["register"]["id"].clone();
    assert_eq!(registered["data"]["register"]["username"], "ada_idp");

    let posted = post(
        addr,
        Some(&ada),
        r#"mutation { postTweet(text: "signed in elsewhere, posting here") { text author { id username } } }"#,
    )
    .await;
    assert!(posted.get("errors").is_none(), "{posted}");
    assert_eq!(
        posted["data"]["postTweet"],
        json!({
            "text": "signed in elsewhere, posting here",
            "author": { "id": ada_id, "username": "ada_idp" }
        })
    );
    let viewer = post(addr, Some(&ada), "{ viewer { id } }").await;
    assert_eq!(viewer["data"]["viewer"]["id"], ada_id, "{viewer}");
    assert_eq!(socket_answer(addr, &ada).await, "connection_ack");

    drop(gateway);
    stack.stop().await;
}
