//! Profile edits, the verified mark and username batches over gRPC.

use tonic::Code;
use warble_proto::events::v1::event::Payload;
use warble_proto::graph::v1 as pb;

use super::helpers::{MISSING, TestApp, assert_code, assert_invalid};

fn edit(user_id: u64) -> pb::UpdateProfileRequest {
    pb::UpdateProfileRequest {
        user_id,
        ..Default::default()
    }
}

#[tokio::test]
async fn profile_edits_validate_like_sign_up_and_change_only_what_is_set() {
    let app = TestApp::spawn().await;
    let ada = app
        .try_create_user("ada", "Ada", "counts things")
        .await
        .unwrap();
    let update = |request: pb::UpdateProfileRequest| {
        let mut client = app.client();
        async move { client.update_profile(request).await.map(|r| r.into_inner()) }
    };
    for (request, field) in [
        (
            pb::UpdateProfileRequest {
                display_name: Some("   ".into()),
                ..edit(ada.id)
            },
            "display_name",
        ),
        (
            pb::UpdateProfileRequest {
                bio: Some("b".repeat(161)),
                ..edit(ada.id)
            },
            "bio",
        ),
        (
            pb::UpdateProfileRequest {
                location: Some("l".repeat(31)),
                ..edit(ada.id)
            },
            "location",
        ),
        (
            pb::UpdateProfileRequest {
                website: Some("javascript:alert(1)".into()),
                ..edit(ada.id)
            },
            "website",
        ),
        (
            pb::UpdateProfileRequest {
                website: Some(format!("https://example.com/{}", "a".repeat(81))),
                ..edit(ada.id)
            },
            "website",
        ),
        (edit(0), "user_id"),
    ] {
        assert_invalid(update(request).await, field);
    }
    assert_code(update(edit(MISSING)).await, Code::NotFound);

    let changed = update(pb::UpdateProfileRequest {
        location: Some("  London ".into()),
        website: Some("https://ada.example/".into()),
        ..edit(ada.id)
    })
    .await
    .unwrap();
    assert!(changed.changed);
    assert_eq!(
        changed.user,
        Some(pb::User {
            location: "London".into(),
            website: "https://ada.example/".into(),
            ..ada.clone()
        })
    );
    let unchanged = update(pb::UpdateProfileRequest {
        location: Some("London".into()),
        ..edit(ada.id)
    })
    .await
    .unwrap();
    assert!(!unchanged.changed);

    let events = app.read_events("profiles").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (key, Payload::ProfileUpdated(updated), _) = &events[0] else {
        panic!("expected ProfileUpdated, got {events:?}");
    };
    assert_eq!(*key, ada.id);
    assert_eq!(
        (updated.bio.as_str(), updated.location.as_str()),
        ("counts things", "London"),
        "the whole profile after"
    );
}

/// The avatar is an id the gateway has checked: set, left alone when
/// absent, cleared with 0, and carried by reads and `ProfileUpdated`.
#[tokio::test]
async fn an_avatar_id_is_set_kept_and_cleared() {
    let app = TestApp::spawn().await;
    let ada = app.try_create_user("ada", "Ada", "").await.unwrap();
    assert_eq!(ada.avatar_media_id, 0, "no avatar at sign-up");
    let update = |request: pb::UpdateProfileRequest| {
        let mut client = app.client();
        async move { client.update_profile(request).await.unwrap().into_inner() }
    };
    let avatar = |avatar_media_id| pb::UpdateProfileRequest {
        avatar_media_id: Some(avatar_media_id),
        ..edit(ada.id)
    };
    let read = || {
        let mut client = app.client();
        async move {
            client
                .get_users(pb::GetUsersRequest {
                    user_ids: vec![ada.id],
                })
                .await
                .unwrap()
                .into_inner()
                .results[0]
                .user
                .clone()
                .unwrap()
        }
    };

    let set = update(avatar(7_001)).await;
    let with_avatar = pb::User {
        avatar_media_id: 7_001,
        ..ada.clone()
    };
    assert!(set.changed);
    assert_eq!(set.user.as_ref(), Some(&with_avatar));
    assert_eq!(read().await, with_avatar);
    assert!(
        !update(avatar(7_001)).await.changed,
        "the same avatar again"
    );
    let kept = update(pb::UpdateProfileRequest {
        bio: Some("new bio".into()),
        ..edit(ada.id)
    })
    .await;
    assert_eq!(
        kept.user.unwrap().avatar_media_id,
        7_001,
        "absent: unchanged"
    );
    let cleared = update(avatar(0)).await;
    assert!(cleared.changed);
    assert_eq!(cleared.user.unwrap().avatar_media_id, 0);
    assert_eq!(read().await.avatar_media_id, 0);

    let avatars: Vec<u64> = app
        .read_events("avatars")
        .await
        .into_iter()
        .map(|(_, payload, _)| match payload {
            Payload::ProfileUpdated(updated) => updated.avatar_media_id,
            other => panic!("expected ProfileUpdated, got {other:?}"),
        })
        .collect();
    assert_eq!(avatars, vec![7_001, 7_001, 0], "set, bio edit, clear");
}

#[tokio::test]
async fn the_verified_mark_is_set_by_its_own_call() {
    let app = TestApp::spawn().await;
    let vip = app.user("vip").await;
    let set = |verified| {
        let mut client = app.client();
        async move {
            client
                .set_verified(pb::SetVerifiedRequest {
                    user_id: vip,
                    verified,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = set(true).await;
    assert!(first.changed && first.user.unwrap().verified);
    assert!(!set(true).await.changed);
    let user = app
        .client()
        .get_users(pb::GetUsersRequest {
            user_ids: vec![vip],
        })
        .await
        .unwrap()
        .into_inner()
        .results[0]
        .user
        .clone()
        .unwrap();
    assert!(user.verified);
    assert_code(
        app.client()
            .set_verified(pb::SetVerifiedRequest {
                user_id: MISSING,
                verified: true,
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn usernames_resolve_in_a_batch_and_bad_ones_are_reported_not_failed() {
    let app = TestApp::spawn().await;
    let alice = app.try_create_user("Alice", "Alice", "").await.unwrap();
    let results = app
        .client()
        .get_users_by_usernames(pb::GetUsersByUsernamesRequest {
            usernames: vec![
                "ALICE".into(),
                "not a name!".into(),
                "nobody".into(),
                "alice".into(),
                String::new(),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let answers: Vec<(&str, Option<u64>)> = results
        .iter()
        .map(|r| (r.username.as_str(), r.user.as_ref().map(|u| u.id)))
        .collect();
    assert_eq!(
        answers,
        vec![
            ("ALICE", Some(alice.id)),
            ("not a name!", None),
            ("nobody", None),
            ("alice", Some(alice.id)),
            ("", None),
        ]
    );
    let too_many = app
        .client()
        .get_users_by_usernames(pb::GetUsersByUsernamesRequest {
            usernames: vec!["a".into(); 501],
        })
        .await;
    assert_invalid(too_many, "usernames");
}

#[tokio::test]
async fn sign_ups_publish_user_created() {
    let app = TestApp::spawn().await;
    let alice = app.try_create_user("alice", "Alice", "hi").await.unwrap();
    let batch = app
        .try_create_users(&[("bob", "Bob", ""), ("carol", "Carol", "")])
        .await
        .unwrap();
    let created: Vec<(u64, u64, String)> = app
        .read_all_events("sign-ups")
        .await
        .into_iter()
        .map(|(key, payload, _)| match payload {
            Payload::UserCreated(user) => (key, user.user_id, user.username),
            other => panic!("expected UserCreated, got {other:?}"),
        })
        .collect();
    assert_eq!(
        created,
        vec![
            (alice.id, alice.id, "alice".to_owned()),
            (batch[0].id, batch[0].id, "bob".to_owned()),
            (batch[1].id, batch[1].id, "carol".to_owned()),
        ]
    );
}
