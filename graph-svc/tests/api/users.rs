//! CreateUser, GetUsers and GetUserByUsername.

use tonic::Code;
use warble_proto::graph::v1 as pb;

use super::helpers::{MISSING, TestApp, assert_code, assert_invalid};

#[tokio::test]
async fn create_user_stores_the_profile_with_a_trimmed_display_name() {
    let app = TestApp::spawn().await;
    let before = warble_mesh::time::now_ms() as i64;
    let user = app
        .try_create_user("Ada_Lovelace", "  Ada  ", "Analyst of engines")
        .await
        .unwrap();
    assert_ne!(user.id, 0);
    assert_eq!(user.username, "Ada_Lovelace");
    assert_eq!(user.display_name, "Ada");
    assert_eq!(user.bio, "Analyst of engines");
    assert!(
        user.created_at_ms >= before && user.created_at_ms <= warble_mesh::time::now_ms() as i64
    );

    let found = app
        .client()
        .get_users(pb::GetUsersRequest {
            user_ids: vec![user.id],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.results[0].user.as_ref(), Some(&user));
}

#[tokio::test]
async fn usernames_are_unique_and_found_ignoring_case() {
    let app = TestApp::spawn().await;
    let ada = app.try_create_user("Ada", "Ada", "").await.unwrap();
    for taken in ["ada", "ADA", "aDa"] {
        assert_code(
            app.try_create_user(taken, "Someone else", "").await,
            Code::AlreadyExists,
        );
    }
    for lookup in ["ada", "ADA", "Ada"] {
        let found = app
            .client()
            .get_user_by_username(pb::GetUserByUsernameRequest {
                username: lookup.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user;
        assert_eq!(found.as_ref(), Some(&ada), "looking up {lookup}");
    }
}

#[tokio::test]
async fn get_user_by_username_rejects_unknown_and_malformed_names() {
    let app = TestApp::spawn().await;
    let lookup = |username: &str| {
        let mut client = app.client();
        let request = pb::GetUserByUsernameRequest {
            username: username.into(),
        };
        async move { client.get_user_by_username(request).await }
    };
    assert_code(lookup("nobody").await, Code::NotFound);
    assert_invalid(lookup("").await, "username");
    assert_invalid(lookup("no spaces").await, "username");
}

#[tokio::test]
async fn create_user_validates_every_field() {
    let app = TestApp::spawn().await;
    let fifteen = "a".repeat(15);
    let sixteen = "a".repeat(16);
    let fifty = "é".repeat(50);
    let fifty_one = "é".repeat(51);
    let bio_160 = "ü".repeat(160);
    let bio_161 = "ü".repeat(161);
    let invalid: [(&str, &str, &str, &str); 9] = [
        ("", "Name", "", "username"),
        (&sixteen, "Name", "", "username"),
        ("has space", "Name", "", "username"),
        ("dash-ed", "Name", "", "username"),
        ("émile", "Name", "", "username"),
        ("ok_name", "", "", "display_name"),
        ("ok_name", " \t\n ", "", "display_name"),
        ("ok_name", &fifty_one, "", "display_name"),
        ("ok_name", "Name", &bio_161, "bio"),
    ];
    for (username, display_name, bio, field) in invalid {
        assert_invalid(
            app.try_create_user(username, display_name, bio).await,
            field,
        );
    }
    // The limits themselves are accepted, counted in characters not bytes.
    let user = app
        .try_create_user(&fifteen, &format!(" {fifty} "), &bio_160)
        .await
        .unwrap();
    assert_eq!(user.display_name, fifty);
    assert_eq!(user.bio, bio_160);
}

#[tokio::test]
async fn get_users_answers_in_request_order_and_reports_missing_in_place() {
    let app = TestApp::spawn().await;
    let a = app.user("a").await;
    let b = app.user("b").await;
    let missing = MISSING;
    let results = app
        .client()
        .get_users(pb::GetUsersRequest {
            user_ids: vec![b, missing, a, b],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let answered: Vec<(u64, Option<String>)> = results
        .into_iter()
        .map(|lookup| (lookup.user_id, lookup.user.map(|u| u.username)))
        .collect();
    assert_eq!(
        answered,
        vec![
            (b, Some("b".into())),
            (missing, None),
            (a, Some("a".into())),
            (b, Some("b".into())),
        ]
    );
    let empty = app
        .client()
        .get_users(pb::GetUsersRequest { user_ids: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.results.is_empty());
}

#[tokio::test]
async fn batches_are_limited_to_500_non_zero_ids() {
    let app = TestApp::spawn().await;
    let a = app.user("a").await;
    let mut client = app.client();
    let ok = client
        .get_users(pb::GetUsersRequest {
            user_ids: vec![a; 500],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), 500);
    assert_invalid(
        client
            .get_users(pb::GetUsersRequest {
                user_ids: vec![a; 501],
            })
            .await,
        "user_ids",
    );
    assert_invalid(
        client
            .get_users(pb::GetUsersRequest {
                user_ids: vec![a, 0],
            })
            .await,
        "user_ids[1]",
    );
    assert_invalid(
        client
            .get_follow_counts(pb::GetFollowCountsRequest {
                user_ids: vec![a; 501],
            })
            .await,
        "user_ids",
    );
    assert_invalid(
        client
            .get_follow_counts(pb::GetFollowCountsRequest { user_ids: vec![0] })
            .await,
        "user_ids[0]",
    );
    let pair = pb::FollowPair {
        follower_id: a,
        followee_id: a,
    };
    assert_eq!(
        client
            .is_following(pb::IsFollowingRequest {
                pairs: vec![pair; 500],
            })
            .await
            .unwrap()
            .into_inner()
            .following,
        vec![false; 500]
    );
    assert_invalid(
        client
            .is_following(pb::IsFollowingRequest {
                pairs: vec![pair; 501],
            })
            .await,
        "pairs",
    );
    assert_invalid(
        client
            .is_following(pb::IsFollowingRequest {
                pairs: vec![
                    pair,
                    pb::FollowPair {
                        follower_id: a,
                        followee_id: 0,
                    },
                ],
            })
            .await,
        "pairs[1].followee_id",
    );
}
