//! RegisterUser and ResolveIdentity: sign-up with an identity provider.

use tonic::{Code, Status};
use warble_proto::graph::v1 as pb;
use warble_proto::limits::graph::{MAX_ISSUER_BYTES, MAX_SUBJECT_BYTES};

use super::helpers::{TestApp, assert_code, assert_invalid};

const ISSUER: &str = "https://tenant.id.example/";

fn registration(subject: &str, username: &str) -> pb::RegisterUserRequest {
    pb::RegisterUserRequest {
        issuer: ISSUER.into(),
        subject: subject.into(),
        username: username.into(),
        display_name: format!("  {username}  "),
    }
}

impl TestApp {
    async fn register(
        &self,
        request: pb::RegisterUserRequest,
    ) -> Result<pb::RegisterUserResponse, Status> {
        self.client()
            .register_user(request)
            .await
            .map(|response| response.into_inner())
    }

    async fn resolve(&self, issuer: &str, subject: &str) -> Result<u64, Status> {
        self.client()
            .resolve_identity(pb::ResolveIdentityRequest {
                issuer: issuer.into(),
                subject: subject.into(),
            })
            .await
            .map(|response| response.into_inner().user_id)
    }
}

#[tokio::test]
async fn an_identity_registers_once_and_resolves_to_its_user() {
    let app = TestApp::spawn().await;
    assert_code(app.resolve(ISSUER, "auth0|ada").await, Code::NotFound);
    let first = app
        .register(registration("auth0|ada", "Ada"))
        .await
        .unwrap();
    assert!(first.created);
    let user = first.user.expect("a user");
    assert_eq!(
        (user.username.as_str(), user.display_name.as_str()),
        ("Ada", "Ada")
    );
    assert_eq!(app.resolve(ISSUER, "auth0|ada").await.unwrap(), user.id);

    // Again, the same username in any case: the same user, nothing created.
    let again = app
        .register(registration("auth0|ada", "ADA"))
        .await
        .unwrap();
    assert_eq!((again.user.as_ref(), again.created), (Some(&user), false));
    // Another username: refused, naming the one it has.
    let renamed = app
        .register(registration("auth0|ada", "Ada2"))
        .await
        .unwrap_err();
    assert_eq!(renamed.code(), Code::AlreadyExists);
    assert_eq!(
        renamed.message(),
        "this identity is already registered as @Ada"
    );
    // The username is taken for everyone else, as at sign-up.
    assert_code(
        app.register(registration("auth0|grace", "ada")).await,
        Code::AlreadyExists,
    );
    assert_code(app.resolve(ISSUER, "auth0|grace").await, Code::NotFound);
}

#[tokio::test]
async fn registrations_are_validated_field_by_field() {
    let app = TestApp::spawn().await;
    let good = registration("auth0|ada", "ada");
    for (request, field) in [
        (
            pb::RegisterUserRequest {
                issuer: String::new(),
                ..good.clone()
            },
            "issuer",
        ),
        (
            pb::RegisterUserRequest {
                issuer: "i".repeat(MAX_ISSUER_BYTES + 1),
                ..good.clone()
            },
            "issuer",
        ),
        (
            pb::RegisterUserRequest {
                subject: String::new(),
                ..good.clone()
            },
            "subject",
        ),
        (
            pb::RegisterUserRequest {
                subject: "s".repeat(MAX_SUBJECT_BYTES + 1),
                ..good.clone()
            },
            "subject",
        ),
        (
            pb::RegisterUserRequest {
                username: "has space".into(),
                ..good.clone()
            },
            "username",
        ),
        (
            pb::RegisterUserRequest {
                display_name: "\t ".into(),
                ..good.clone()
            },
            "display_name",
        ),
    ] {
        assert_invalid(app.register(request).await, field);
    }
    assert_invalid(app.resolve("", "auth0|ada").await, "issuer");
    assert_invalid(
        app.resolve(ISSUER, &"s".repeat(MAX_SUBJECT_BYTES + 1))
            .await,
        "subject",
    );
    // Nothing was created by any of them.
    assert!(app.register(good).await.unwrap().created);
}

#[tokio::test]
async fn a_registration_publishes_user_created_once() {
    let app = TestApp::spawn().await;
    let user = app
        .register(registration("auth0|ada", "ada"))
        .await
        .unwrap()
        .user
        .unwrap();
    app.register(registration("auth0|ada", "ada"))
        .await
        .unwrap();
    let created: Vec<_> = app
        .read_all_events("identities")
        .await
        .into_iter()
        .filter(|(key, _, _)| *key == user.id)
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        matches!(&created[0].1, warble_proto::events::v1::event::Payload::UserCreated(e) if e.user_id == user.id && e.username == "ada"),
        "{created:?}"
    );
}
