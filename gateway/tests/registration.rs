//! Sign-up with an identity provider (`auth.subjects = "registered"`): a
//! gateway over the real services (in process, see `support`), served over
//! HTTP by the real router, verifying EdDSA tokens against a JWKS a server
//! of the test publishes, as Auth0, Keycloak or Cognito would. The tokens'
//! subjects are the provider's (`auth0|...`), never Warble user ids.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, Served, error_codes, id};
use warble_gateway::GatewayConfig;
use warble_gateway::config::{AuthConfig, JwtAlgorithm, SubjectMapping};
use warble_mesh::config::ServiceConfig as _;

const ISSUER: &str = "https://tenant.id.example/";
const AUDIENCE: &str = "warble";
const JWKS: &str = include_str!("data/jwks/jwks-a.json");
const SIGNING_KEY: &str = include_str!("data/jwks/key-a.pem");

const REGISTER: &str = "mutation($u: String!, $d: String!) { register(username: $u, displayName: $d) { id username displayName } }";
const VIEWER: &str = "{ viewer { id username } }";

/// Serves the provider's JWKS on loopback; its URL.
async fn publish_jwks() -> String {
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                JWKS,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A production gateway configuration: dev mode off, the provider's
/// issuer, audience and JWKS, subjects registered.
fn registered(backend: &Backend, jwks_url: &str) -> GatewayConfig {
    let mut config = backend.config();
    config.auth = AuthConfig {
        algorithm: JwtAlgorithm::EdDSA,
        jwks_url: jwks_url.to_owned(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        subjects: SubjectMapping::Registered,
        ..AuthConfig::default()
    };
    config.validate().expect("a valid production config");
    config
}

/// A token the provider signed for its account `subject`.
fn token(subject: &str) -> String {
    let now = warble_mesh::time::now_ms() / 1000;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("key-a".into());
    jsonwebtoken::encode(
        &header,
        &json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_ed_pem(SIGNING_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// POSTs a GraphQL request to `served` with `token`; the status and the answer.
async fn post(
    served: &Served,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/graphql", served.addr))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

fn codes(response: &Value) -> Vec<String> {
    error_codes(response)
        .into_iter()
        .map(|(code, _)| code)
        .collect()
}

async fn register(served: &Served, token: &str, username: &str) -> Value {
    post(
        served,
        Some(token),
        REGISTER,
        json!({ "u": username, "d": format!("  {username} in full  ") }),
    )
    .await
    .1
}

#[tokio::test]
async fn an_identity_registers_once_and_then_acts_as_its_user() {
    let backend = Backend::start();
    let served = backend.serve_replica(&registered(&backend, &publish_jwks().await));
    let ada = token("auth0|5f7c8ec7c33c6c004bbafe82");

    // Anonymous requests are as before.
    let (status, anonymous) = post(&served, None, VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(anonymous, json!({ "data": { "viewer": null } }));

    // Before registering, anything but `register` is UNREGISTERED, as a
    // whole (403), whether it needs the viewer or not.
    for query in [
        VIEWER,
        "{ user(username: \"nobody\") { id } }",
        "mutation { postTweet(text: \"hello\") { id } }",
    ] {
        let (status, response) = post(&served, Some(&ada), query, json!({})).await;
        assert_eq!(codes(&response), ["UNREGISTERED"], "{query}: {response}");
        assert_eq!(status, StatusCode::FORBIDDEN, "{query}");
        let message = response["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("register first"), "{message}");
        assert_eq!(response["data"], Value::Null, "nothing ran: {response}");
    }

    // Registering creates the user.
    let registered = register(&served, &ada, "ada").await;
    assert!(registered.get("errors").is_none(), "{registered}");
    let user = &registered["data"]["register"];
    assert_eq!(user["username"], "ada");
    assert_eq!(user["displayName"], "ada in full", "trimmed as at sign-up");
    let ada_id = id(&user["id"]);

    // The same token now signs in as that user.
    let (status, viewer) = post(&served, Some(&ada), VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        viewer,
        json!({ "data": { "viewer": { "id": ada_id.to_string(), "username": "ada" } } })
    );
    let (_, posted) = post(
        &served,
        Some(&ada),
        "mutation { postTweet(text: \"hello from my provider\") { text author { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        posted["data"]["postTweet"]["author"]["id"],
        ada_id.to_string(),
        "{posted}"
    );

    // Registering again with the same username (any case) is the same user.
    let again = register(&served, &ada, "ADA").await;
    assert_eq!(id(&again["data"]["register"]["id"]), ada_id, "{again}");
    // With another username, it says which one the account has.
    let renamed = register(&served, &ada, "ada_two").await;
    assert_eq!(codes(&renamed), ["BAD_USER_INPUT"], "{renamed}");
    let message = renamed["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("already registered as @ada"), "{message}");
    let (_, viewer) = post(&served, Some(&ada), VIEWER, json!({})).await;
    assert_eq!(viewer["data"]["viewer"]["username"], "ada");
}

#[tokio::test]
async fn taken_and_invalid_usernames_are_refused_and_bind_nothing() {
    let backend = Backend::start();
    let served = backend.serve_replica(&registered(&backend, &publish_jwks().await));
    let (ada, grace) = (token("auth0|ada"), token("auth0|grace"));
    register(&served, &ada, "ada").await;
    // A user who signed up otherwise (a bulk import, say) holds "bob".
    let bob = backend.sign_up("bob").await;
    assert_ne!(bob, 0);

    for (username, display_name, field) in [
        ("ADA", "Grace", ""),
        ("bob", "Grace", ""),
        ("no spaces", "Grace", "username"),
        ("sixteen_chars_xx", "Grace", "username"),
        ("grace", "   ", "display_name"),
    ] {
        let (status, response) = post(
            &served,
            Some(&grace),
            REGISTER,
            json!({ "u": username, "d": display_name }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{username}");
        assert_eq!(
            error_codes(&response),
            [("BAD_USER_INPUT".to_owned(), field.to_owned())],
            "{username}: {response}"
        );
    }
    // Still unregistered: none of that bound the account.
    let (_, viewer) = post(&served, Some(&grace), VIEWER, json!({})).await;
    assert_eq!(codes(&viewer), ["UNREGISTERED"], "{viewer}");
    let registered = register(&served, &grace, "grace").await;
    assert_eq!(
        registered["data"]["register"]["username"], "grace",
        "{registered}"
    );

    // `register` needs a token from the provider.
    let (_, anonymous) = post(&served, None, REGISTER, json!({ "u": "mallory", "d": "M" })).await;
    assert_eq!(codes(&anonymous), ["UNAUTHENTICATED"], "{anonymous}");
    // A subject longer than an identity may be is no valid token.
    let (_, long) = post(&served, Some(&token(&"s".repeat(256))), VIEWER, json!({})).await;
    assert_eq!(codes(&long), ["UNAUTHENTICATED"], "{long}");
}

#[tokio::test]
async fn a_registration_counts_at_once_on_every_replica_and_lookups_are_cached() {
    let backend = Backend::start();
    let config = registered(&backend, &publish_jwks().await);
    let (first, second) = (
        backend.serve_replica(&config),
        backend.serve_replica(&config),
    );
    let ada = token("auth0|ada");
    let lookups = || {
        backend
            .rpc_counts()
            .get("ResolveIdentity")
            .copied()
            .unwrap_or(0)
    };

    // The second replica learns the account is unregistered...
    let (_, before) = post(&second, Some(&ada), VIEWER, json!({})).await;
    assert_eq!(codes(&before), ["UNREGISTERED"]);
    // ...and does not remember it: a registration on the first counts there
    // on the very next request.
    let user = register(&first, &ada, "ada").await;
    let ada_id = id(&user["data"]["register"]["id"]);
    let (_, after) = post(&second, Some(&ada), VIEWER, json!({})).await;
    assert_eq!(id(&after["data"]["viewer"]["id"]), ada_id, "{after}");

    // One lookup each: the second replica's two requests and the
    // registration's own admission on the first (not found: the account
    // was unregistered then).
    let looked_up = lookups();
    assert_eq!(looked_up, 3);
    // Each replica then remembers the user: no more lookups, however many
    // requests (the first replica learned it when it registered).
    for served in [&first, &second, &first, &second] {
        let (_, viewer) = post(served, Some(&ada), VIEWER, json!({})).await;
        assert_eq!(id(&viewer["data"]["viewer"]["id"]), ada_id);
    }
    assert_eq!(lookups(), looked_up, "answered from each replica's cache");
}

#[tokio::test]
async fn register_is_rate_limited_per_client_address() {
    let backend = Backend::start();
    let mut config = registered(&backend, &publish_jwks().await);
    config.limits.mutation_burst = 2;
    config.limits.mutations_per_minute = 1;
    let served = backend.serve_replica(&config);
    let attempts = ["auth0|a", "auth0|b", "auth0|c"].map(token);
    let mut outcomes = Vec::new();
    for (n, attempt) in attempts.iter().enumerate() {
        let (status, response) = post(
            &served,
            Some(attempt),
            REGISTER,
            json!({ "u": format!("user_{n}"), "d": "U" }),
        )
        .await;
        outcomes.push((status, codes(&response)));
    }
    assert_eq!(
        outcomes,
        [
            (StatusCode::OK, vec![]),
            (StatusCode::OK, vec![]),
            (
                StatusCode::TOO_MANY_REQUESTS,
                vec!["RATE_LIMITED".to_owned()]
            ),
        ]
    );
}

#[tokio::test]
async fn register_is_forbidden_where_subjects_are_user_ids() {
    // The default: dev mode, subjects are user ids (`warble dev`).
    let backend = Backend::start();
    let ada = backend.sign_up("ada").await;
    for viewer in [None, Some(ada)] {
        let response = backend
            .execute(viewer, REGISTER, json!({ "u": "ada2", "d": "Ada" }))
            .await;
        assert_eq!(codes(&response), ["FORBIDDEN"], "{response}");
        let message = response["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("auth.subjects"), "{message}");
    }
    // And everything else is as it was.
    let viewer = backend.data(Some(ada), VIEWER, json!({})).await;
    assert_eq!(id(&viewer["viewer"]["id"]), ada);
    assert!(!backend.post(ada, "still here").await.is_empty());
}
