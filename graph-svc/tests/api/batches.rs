//! CreateUsers and FollowMany: many users or follows in one call, all or none.

use tonic::Code;
use warble_proto::events::v1::event::Payload;
use warble_proto::graph::v1 as pb;

use super::helpers::{MISSING, TestApp, assert_code, assert_invalid};

/// Whether each username resolves to a user.
async fn exist(app: &TestApp, usernames: &[&str]) -> Vec<bool> {
    let mut found = Vec::new();
    for username in usernames {
        let lookup = app
            .client()
            .get_user_by_username(pb::GetUserByUsernameRequest {
                username: (*username).into(),
            })
            .await;
        match lookup {
            Ok(_) => found.push(true),
            Err(status) if status.code() == Code::NotFound => found.push(false),
            Err(status) => panic!("lookup of {username} failed: {status:?}"),
        }
    }
    found
}

#[tokio::test]
async fn create_users_returns_every_user_in_request_order() {
    let app = TestApp::spawn().await;
    let users = app
        .try_create_users(&[
            ("Ada", "  Ada L.  ", "engines"),
            ("grace", "Grace", ""),
            ("linus", "Linus", "kernels"),
        ])
        .await
        .unwrap();
    let summary: Vec<(&str, &str, &str)> = users
        .iter()
        .map(|u| (u.username.as_str(), u.display_name.as_str(), u.bio.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Ada", "Ada L.", "engines"),
            ("grace", "Grace", ""),
            ("linus", "Linus", "kernels")
        ]
    );
    let ids: Vec<u64> = users.iter().map(|u| u.id).collect();
    let stored: Vec<Option<pb::User>> = app
        .client()
        .get_users(pb::GetUsersRequest {
            user_ids: ids.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|lookup| lookup.user)
        .collect();
    assert_eq!(stored, users.into_iter().map(Some).collect::<Vec<_>>());
    assert_eq!(
        app.counts(&ids).await,
        vec![Some((0, 0)), Some((0, 0)), Some((0, 0))]
    );
    assert!(app.try_create_users(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn create_users_names_the_failing_entry_and_creates_no_one() {
    let app = TestApp::spawn().await;
    app.user("taken").await;
    let sixteen = "a".repeat(16);
    let bio_161 = "ü".repeat(161);
    let invalid: [(&str, &str, &str, &str); 4] = [
        (&sixteen, "Name", "", "users[1].username"),
        ("dash-ed", "Name", "", "users[1].username"),
        ("ok_name", " ", "", "users[1].display_name"),
        ("ok_name", "Name", &bio_161, "users[1].bio"),
    ];
    for (username, display_name, bio, field) in invalid {
        assert_invalid(
            app.try_create_users(&[
                ("first", "First", ""),
                (username, display_name, bio),
                ("third", "Third", ""),
            ])
            .await,
            field,
        );
    }
    for conflict in [
        [("first", "First", ""), ("TAKEN", "Impostor", "")],
        [("first", "First", ""), ("FIRST", "Again", "")],
    ] {
        let status = app.try_create_users(&conflict).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(status.message().starts_with("users[1]: "), "{status:?}");
    }
    assert_eq!(
        exist(&app, &["first", "third", "ok_name"]).await,
        vec![false, false, false]
    );
}

#[tokio::test]
async fn create_users_takes_at_most_1000() {
    let app = TestApp::spawn().await;
    let names: Vec<String> = (0..=1000).map(|i| format!("user{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), "Someone", ""))
        .collect();
    assert_invalid(app.try_create_users(&entries).await, "users");
    assert_eq!(exist(&app, &["user0"]).await, vec![false]);
    let created = app.try_create_users(&entries[..1000]).await.unwrap();
    assert_eq!(created.len(), 1000);
    assert_eq!(created[999].username, "user999");
}

#[tokio::test]
async fn follow_many_follows_in_order_with_exact_counts_and_one_event_each() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    let fans = app.users("fan", 3).await;
    app.follow(fans[0], star).await;
    let outcomes = app
        .try_follow_many(&[
            (fans[0], star),
            (fans[1], star),
            (fans[2], star),
            (fans[1], star),
            (star, fans[2]),
        ])
        .await
        .unwrap();
    let answered: Vec<(bool, u64)> = outcomes
        .iter()
        .map(|o| (o.changed, o.followee_followers_count))
        .collect();
    assert_eq!(
        answered,
        vec![(false, 1), (true, 2), (true, 3), (false, 3), (true, 1)]
    );
    assert_eq!(
        app.counts(&[star, fans[0], fans[1], fans[2]]).await,
        vec![Some((3, 1)), Some((0, 1)), Some((0, 1)), Some((1, 1))]
    );
    assert_eq!(
        app.all_followers(star, 2).await,
        vec![fans[2], fans[1], fans[0]]
    );

    let events = app.read_events("batch-test").await;
    let follows: Vec<(u64, u64, u64, u64)> = events
        .iter()
        .map(|(key, payload, _)| match payload {
            Payload::Followed(f) => (
                *key,
                f.follower_id,
                f.followee_id,
                f.followee_followers_count,
            ),
            other => panic!("expected Followed, got {other:?}"),
        })
        .collect();
    assert_eq!(
        follows,
        vec![
            (star, fans[0], star, 1),
            (star, fans[1], star, 2),
            (star, fans[2], star, 3),
            (fans[2], star, fans[2], 1),
        ]
    );
    assert!(app.try_follow_many(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn follow_many_names_the_failing_pair_and_follows_nothing() {
    let app = TestApp::spawn().await;
    let a = app.user("a").await;
    let b = app.user("b").await;
    assert_invalid(
        app.try_follow_many(&[(a, b), (0, a)]).await,
        "pairs[1].follower_id",
    );
    assert_invalid(
        app.try_follow_many(&[(a, b), (a, 0)]).await,
        "pairs[1].followee_id",
    );
    assert_invalid(
        app.try_follow_many(&[(a, b), (b, b)]).await,
        "pairs[1].followee_id",
    );
    for missing in [(a, MISSING), (MISSING, a)] {
        let status = app
            .try_follow_many(&[(a, b), (b, a), missing])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().starts_with("pairs[2]: "), "{status:?}");
    }
    assert_invalid(app.try_follow_many(&vec![(a, b); 1001]).await, "pairs");
    assert_eq!(app.counts(&[a, b]).await, vec![Some((0, 0)), Some((0, 0))]);
    assert!(app.read_events("rejected-batch").await.is_empty());

    assert_eq!(
        app.try_follow_many(&vec![(a, b); 1000])
            .await
            .unwrap()
            .len(),
        1000
    );
    assert_code(app.try_follow_many(&[(a, MISSING)]).await, Code::NotFound);
    assert_eq!(app.counts(&[a, b]).await, vec![Some((0, 1)), Some((1, 0))]);
}
