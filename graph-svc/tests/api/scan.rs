//! ScanUsers over gRPC: ascending ids with parallel follower counts, and
//! the request rules (which users a scan lists is the conformance suite's).

use warble_proto::graph::v1 as pb;
use warble_proto::limits::graph::MAX_SCAN_LIMIT;

use super::helpers::{TestApp, assert_invalid, next_cursor, page};

impl TestApp {
    async fn try_scan(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ScanUsersResponse, tonic::Status> {
        Ok(self
            .client()
            .scan_users(pb::ScanUsersRequest {
                page: Some(page(cursor, limit)),
            })
            .await?
            .into_inner())
    }
}

#[tokio::test]
async fn a_scan_pages_every_user_in_ascending_id_order_with_follower_counts() {
    let app = TestApp::spawn().await;
    let empty = app.try_scan("", 0).await.expect("scan an empty store");
    assert!(empty.users.is_empty() && empty.followers_counts.is_empty());
    assert_eq!(next_cursor(empty.page), "");

    let ids = app.users("scanned", 5).await;
    app.follow(ids[1], ids[0]).await;
    app.follow(ids[2], ids[0]).await;
    app.follow(ids[0], ids[3]).await;

    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let scanned = app.try_scan(&cursor, 2).await.expect("scan users");
        assert_eq!(scanned.users.len(), scanned.followers_counts.len());
        cursor = next_cursor(scanned.page.clone());
        pages.push(scanned);
        if cursor.is_empty() {
            break;
        }
        assert!(pages.len() < 100, "the scan does not terminate");
    }
    assert_eq!(
        pages
            .iter()
            .map(|page| page.users.len())
            .collect::<Vec<_>>(),
        [2, 2, 1]
    );
    let users: Vec<&pb::User> = pages.iter().flat_map(|page| &page.users).collect();
    assert_eq!(users.iter().map(|user| user.id).collect::<Vec<_>>(), ids);
    assert_eq!(users[0].username, "scanned0");
    let followers: Vec<u64> = pages
        .iter()
        .flat_map(|page| page.followers_counts.iter().copied())
        .collect();
    assert_eq!(followers, [2, 0, 0, 1, 0]);

    // Limit 0 is the largest page: everyone at once.
    let whole = app.try_scan("", 0).await.expect("scan");
    assert_eq!(
        whole.users.iter().map(|user| user.id).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(next_cursor(whole.page), "");
    app.stop().await;
}

#[tokio::test]
async fn a_scan_rejects_a_limit_above_the_maximum_and_cursors_it_did_not_issue() {
    let app = TestApp::spawn().await;
    let ids = app.users("someone", 3).await;
    app.follow(ids[1], ids[0]).await;
    app.follow(ids[2], ids[0]).await;
    assert_invalid(app.try_scan("", MAX_SCAN_LIMIT + 1).await, "page.limit");
    app.try_scan("", MAX_SCAN_LIMIT)
        .await
        .expect("the maximum itself is fine");
    for garbage in ["garbage", "%%%", "AQ", &"A".repeat(300)] {
        assert_invalid(app.try_scan(garbage, 1).await, "page.cursor");
    }
    // Another list's cursor is not a scan's, nor the other way round.
    let followers = app
        .try_followers_page(ids[0], "", 1)
        .await
        .expect("followers");
    let foreign = next_cursor(followers.page);
    assert!(!foreign.is_empty());
    assert_invalid(app.try_scan(&foreign, 1).await, "page.cursor");
    let scanned = app.try_scan("", 1).await.expect("scan");
    let cursor = next_cursor(scanned.page);
    assert!(!cursor.is_empty());
    assert_invalid(
        app.try_followers_page(ids[0], &cursor, 1).await,
        "page.cursor",
    );
    app.try_scan(&cursor, 1)
        .await
        .expect("its own cursor is fine");
    app.stop().await;
}
