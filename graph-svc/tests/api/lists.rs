//! ListFollowers and ListFollowing: order, paging, the celebrity filter and validation.

use tonic::Code;
use warble_proto::graph::v1 as pb;

use super::helpers::{MISSING, TestApp, assert_code, assert_invalid, next_cursor};

#[tokio::test]
async fn followers_are_listed_most_recent_first_across_pages() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    let fans = app.users("fan", 5).await;
    let before = warble_mesh::time::now_ms() as i64;
    for &fan in &fans {
        app.follow(fan, star).await;
    }
    let after = warble_mesh::time::now_ms() as i64;

    let first = app.try_followers_page(star, "", 2).await.unwrap();
    let ids: Vec<u64> = first.followers.iter().map(|e| e.user_id).collect();
    assert_eq!(ids, vec![fans[4], fans[3]]);
    let second = app
        .try_followers_page(star, &next_cursor(first.page.clone()), 2)
        .await
        .unwrap();
    let ids: Vec<u64> = second.followers.iter().map(|e| e.user_id).collect();
    assert_eq!(ids, vec![fans[2], fans[1]]);
    let third = app
        .try_followers_page(star, &next_cursor(second.page.clone()), 2)
        .await
        .unwrap();
    let ids: Vec<u64> = third.followers.iter().map(|e| e.user_id).collect();
    assert_eq!(ids, vec![fans[0]]);
    assert_eq!(next_cursor(third.page), "");

    let times: Vec<i64> = [first.followers, second.followers, third.followers]
        .concat()
        .iter()
        .map(|e| e.followed_at_ms)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert!(
        times.iter().all(|t| (before..=after).contains(t)),
        "{times:?}"
    );

    // A page that ends exactly at the end of the list says so.
    let whole = app.try_followers_page(star, "", 5).await.unwrap();
    assert_eq!(whole.followers.len(), 5);
    assert_eq!(next_cursor(whole.page), "");
    // So does the list of someone without followers.
    let lonely = app.try_followers_page(fans[0], "", 5).await.unwrap();
    assert!(lonely.followers.is_empty());
    assert_eq!(next_cursor(lonely.page), "");
}

#[tokio::test]
async fn a_refollow_counts_as_the_most_recent_follow() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    let fans = app.users("fan", 3).await;
    for &fan in &fans {
        app.follow(fan, star).await;
    }
    app.unfollow(fans[0], star).await;
    app.follow(fans[0], star).await;
    assert_eq!(
        app.all_followers(star, 10).await,
        vec![fans[0], fans[2], fans[1]]
    );
    assert_eq!(app.all_following(fans[0], 10, 0).await, vec![star]);
}

#[tokio::test]
async fn following_lists_followees_and_filters_by_follower_count() {
    let app = TestApp::spawn().await;
    let reader = app.user("reader").await;
    let celebrity = app.user("celebrity").await;
    let niche = app.user("niche").await;
    let rising = app.user("rising").await;
    let quiet = app.user("quiet").await;
    let fans = app.users("fan", 2).await;
    for &fan in &fans {
        app.follow(fan, celebrity).await;
    }
    app.follow(fans[0], rising).await;
    for followee in [celebrity, niche, rising, quiet] {
        app.follow(reader, followee).await;
    }
    // Followers now: celebrity 3, niche 1, rising 2, quiet 1.

    assert_eq!(
        app.all_following(reader, 10, 0).await,
        vec![quiet, rising, niche, celebrity]
    );
    assert_eq!(
        app.all_following(reader, 10, 2).await,
        vec![rising, celebrity]
    );
    assert_eq!(app.all_following(reader, 10, 3).await, vec![celebrity]);
    assert_eq!(app.all_following(reader, 10, 4).await, Vec::<u64>::new());

    // Filtered pages of one skip the non-matching followees between matches
    // and still end with an empty cursor.
    let first = app.try_following_page(reader, "", 1, 2).await.unwrap();
    assert_eq!(first.following[0].user_id, rising);
    let cursor = next_cursor(first.page);
    assert!(!cursor.is_empty());
    let second = app.try_following_page(reader, &cursor, 1, 2).await.unwrap();
    assert_eq!(second.following[0].user_id, celebrity);
    assert_eq!(next_cursor(second.page), "");
    assert_eq!(
        app.all_following(reader, 1, 2).await,
        vec![rising, celebrity]
    );
}

#[tokio::test]
async fn page_limit_defaults_to_100_and_is_capped_at_5000() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    for fan in app.users("fan", 101).await {
        app.follow(fan, star).await;
    }
    let default = app.try_followers_page(star, "", 0).await.unwrap();
    assert_eq!(default.followers.len(), 100);
    let rest = app
        .try_followers_page(star, &next_cursor(default.page), 0)
        .await
        .unwrap();
    assert_eq!(rest.followers.len(), 1);
    assert_eq!(next_cursor(rest.page), "");

    // No page at all means the defaults too.
    let unset = app
        .client()
        .list_followers(pb::ListFollowersRequest {
            user_id: star,
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unset.followers.len(), 100);

    assert_eq!(
        app.try_followers_page(star, "", 5000)
            .await
            .unwrap()
            .followers
            .len(),
        101
    );
    assert_invalid(app.try_followers_page(star, "", 5001).await, "page.limit");
    assert_invalid(
        app.try_following_page(star, "", 5001, 0).await,
        "page.limit",
    );
}

#[tokio::test]
async fn cursors_are_checked_against_their_list() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    let fans = app.users("fan", 3).await;
    for &fan in &fans {
        app.follow(fan, star).await;
        app.follow(star, fan).await;
    }
    let followers_cursor = next_cursor(app.try_followers_page(star, "", 1).await.unwrap().page);
    let following_cursor = next_cursor(app.try_following_page(star, "", 1, 0).await.unwrap().page);

    for garbage in ["not a cursor", "AAAA", "%%%", &"A".repeat(300)] {
        assert_invalid(
            app.try_followers_page(star, garbage, 1).await,
            "page.cursor",
        );
        assert_invalid(
            app.try_following_page(star, garbage, 1, 0).await,
            "page.cursor",
        );
    }
    // A cursor only works on the list that issued it.
    assert_invalid(
        app.try_following_page(star, &followers_cursor, 1, 0).await,
        "page.cursor",
    );
    assert_invalid(
        app.try_followers_page(star, &following_cursor, 1).await,
        "page.cursor",
    );
    assert_invalid(
        app.try_followers_page(fans[0], &followers_cursor, 1).await,
        "page.cursor",
    );
    assert!(
        app.try_followers_page(star, &followers_cursor, 1)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn lists_of_unknown_or_unset_users_are_rejected() {
    let app = TestApp::spawn().await;
    assert_code(
        app.try_followers_page(MISSING, "", 10).await,
        Code::NotFound,
    );
    assert_code(
        app.try_following_page(MISSING, "", 10, 0).await,
        Code::NotFound,
    );
    assert_invalid(app.try_followers_page(0, "", 10).await, "user_id");
    assert_invalid(app.try_following_page(0, "", 10, 0).await, "user_id");
}
