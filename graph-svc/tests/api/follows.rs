//! Follow, Unfollow, GetFollowCounts and IsFollowing.

use std::collections::BTreeSet;

use tonic::Code;

use super::helpers::{MISSING, TestApp, assert_code, assert_invalid};

#[tokio::test]
async fn follow_and_unfollow_are_idempotent_with_exact_counts() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    let first = app.follow(alice, bob).await;
    assert!(first.changed);
    assert_eq!(first.followee_followers_count, 1);
    let repeat = app.follow(alice, bob).await;
    assert!(!repeat.changed);
    assert_eq!(repeat.followee_followers_count, 1);
    assert_eq!(app.follow(carol, bob).await.followee_followers_count, 2);
    assert_eq!(
        app.counts(&[alice, bob, carol]).await,
        vec![Some((0, 1)), Some((2, 0)), Some((0, 1))]
    );

    let removed = app.unfollow(alice, bob).await;
    assert!(removed.changed);
    assert_eq!(removed.followee_followers_count, 1);
    let again = app.unfollow(alice, bob).await;
    assert!(!again.changed);
    assert_eq!(again.followee_followers_count, 1);
    let never = app.unfollow(bob, alice).await;
    assert!(!never.changed);
    assert_eq!(never.followee_followers_count, 0);
    assert_eq!(
        app.counts(&[alice, bob, carol]).await,
        vec![Some((0, 0)), Some((1, 0)), Some((0, 1))]
    );
}

#[tokio::test]
async fn follow_and_unfollow_validate_ids() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let missing = MISSING;

    assert_invalid(app.try_follow(0, alice).await, "follower_id");
    assert_invalid(app.try_follow(alice, 0).await, "followee_id");
    assert_invalid(app.try_follow(alice, alice).await, "followee_id");
    assert_invalid(app.try_unfollow(0, alice).await, "follower_id");
    assert_invalid(app.try_unfollow(alice, 0).await, "followee_id");
    assert_invalid(app.try_unfollow(alice, alice).await, "followee_id");

    assert_code(app.try_follow(alice, missing).await, Code::NotFound);
    assert_code(app.try_follow(missing, alice).await, Code::NotFound);
    assert_code(app.try_unfollow(alice, missing).await, Code::NotFound);
    assert_code(app.try_unfollow(missing, alice).await, Code::NotFound);
    assert_eq!(app.counts(&[alice]).await, vec![Some((0, 0))]);
}

/// A small deterministic generator, so the sequence is reproducible without a dependency.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[tokio::test]
async fn counts_and_answers_stay_exact_after_many_follows_and_unfollows() {
    let app = TestApp::spawn().await;
    let users = app.users("u", 8).await;
    let mut edges = BTreeSet::new();
    let mut state = 7;
    for _ in 0..150 {
        let follower = users[(lcg(&mut state) % 8) as usize];
        let followee = users[(lcg(&mut state) % 8) as usize];
        if follower == followee {
            continue;
        }
        let expected_changed;
        let count;
        if lcg(&mut state).is_multiple_of(3) {
            expected_changed = edges.remove(&(follower, followee));
            let response = app.unfollow(follower, followee).await;
            assert_eq!(response.changed, expected_changed);
            count = response.followee_followers_count;
        } else {
            expected_changed = edges.insert((follower, followee));
            let response = app.follow(follower, followee).await;
            assert_eq!(response.changed, expected_changed);
            count = response.followee_followers_count;
        }
        let expected = edges.iter().filter(|(_, e)| *e == followee).count() as u64;
        assert_eq!(count, expected);
    }

    let counts = app.counts(&users).await;
    let mut pairs = Vec::new();
    for (i, &user) in users.iter().enumerate() {
        let followers = edges.iter().filter(|(_, e)| *e == user).count() as u64;
        let following = edges.iter().filter(|(f, _)| *f == user).count() as u64;
        assert_eq!(counts[i], Some((followers, following)), "user {i}");
        let mut listed = app.all_followers(user, 3).await;
        listed.sort_unstable();
        let expected: Vec<u64> = edges
            .iter()
            .filter(|(_, e)| *e == user)
            .map(|(f, _)| *f)
            .collect();
        assert_eq!(listed, expected, "followers of user {i}");
        for &other in &users {
            pairs.push((user, other));
        }
    }
    let answers = app.is_following(&pairs).await;
    let expected: Vec<bool> = pairs.iter().map(|pair| edges.contains(pair)).collect();
    assert_eq!(answers, expected);
}

#[tokio::test]
async fn batches_answer_in_request_order_with_missing_users_in_place() {
    let app = TestApp::spawn().await;
    let a = app.user("a").await;
    let b = app.user("b").await;
    let missing = MISSING;
    app.follow(a, b).await;

    assert_eq!(
        app.counts(&[b, missing, a, b]).await,
        vec![Some((1, 0)), None, Some((0, 1)), Some((1, 0))]
    );
    assert_eq!(
        app.is_following(&[(a, b), (b, a), (a, missing), (a, b), (a, a)])
            .await,
        vec![true, false, false, true, false]
    );
    assert_eq!(app.counts(&[]).await, vec![]);
}
