//! ScanTweets over gRPC: the request rules, and the embedded store's order
//! (ascending id) and parallel counts on the wire (which tweets a scan
//! lists is the conformance suite's).

use warble_proto::common::v1::PageRequest;
use warble_proto::limits::tweet::MAX_SCAN_LIMIT;
use warble_proto::tweet::v1 as pb;

use crate::helpers::{TestApp, assert_invalid, next_user_id, spawn_app};

impl TestApp {
    async fn try_scan(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<pb::ScanTweetsResponse, tonic::Status> {
        Ok(self
            .client
            .clone()
            .scan_tweets(pb::ScanTweetsRequest {
                page: Some(PageRequest {
                    cursor: cursor.to_owned(),
                    limit,
                }),
            })
            .await?
            .into_inner())
    }

    /// Every page of a scan, `limit` at a time.
    async fn scan_pages(&self, limit: u32) -> Vec<pb::ScanTweetsResponse> {
        let mut pages = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.try_scan(&cursor, limit).await.expect("scan tweets");
            cursor = page.page.clone().expect("page info").next_cursor;
            pages.push(page);
            if cursor.is_empty() {
                return pages;
            }
            assert!(pages.len() < 1_000, "the scan does not terminate");
        }
    }
}

#[tokio::test]
async fn a_scan_pages_live_tweets_in_ascending_id_order_with_their_counts() {
    let app = spawn_app().await;
    let empty = app.try_scan("", 0).await.expect("scan an empty store");
    assert!(empty.tweets.is_empty() && empty.counts.is_empty());
    assert_eq!(empty.page.expect("page info").next_cursor, "");

    let (author, fan) = (next_user_id(), next_user_id());
    let mut live = Vec::new();
    for n in 0..5 {
        live.push(app.post(author, &format!("tweet {n}")).await);
    }
    let doomed = live.remove(2);
    app.try_delete(doomed.id, author).await.expect("delete");
    app.like(fan, live[0].id).await.expect("like");
    let retweet = app.retweet(fan, live[1].id).await.expect("retweet");

    let pages = app.scan_pages(2).await;
    assert_eq!(
        pages
            .iter()
            .map(|page| page.tweets.len())
            .collect::<Vec<_>>(),
        [2, 2],
        "four live tweets in pages of two, the last saying so"
    );
    let tweets: Vec<pb::Tweet> = pages.iter().flat_map(|page| page.tweets.clone()).collect();
    assert_eq!(tweets, live, "ascending id order, as created");
    assert!(!tweets.iter().any(|tweet| tweet.id == retweet.retweet_id));
    let counts: Vec<pb::TweetCounts> = pages.iter().flat_map(|page| page.counts.clone()).collect();
    assert_eq!(
        counts
            .iter()
            .map(|counts| counts.tweet_id)
            .collect::<Vec<_>>(),
        live.iter().map(|tweet| tweet.id).collect::<Vec<_>>(),
        "counts run parallel to tweets"
    );
    assert!(counts.iter().all(|counts| counts.found));
    assert_eq!(
        counts
            .iter()
            .map(|counts| (counts.like_count, counts.retweet_count))
            .collect::<Vec<_>>(),
        [(1, 0), (0, 1), (0, 0), (0, 0)]
    );

    // Limit 0 is the largest page: everything at once.
    let whole = app.try_scan("", 0).await.expect("scan");
    assert_eq!(whole.tweets, live);
    assert_eq!(whole.page.expect("page info").next_cursor, "");
    app.stop().await;
}

#[tokio::test]
async fn a_scan_rejects_a_limit_above_the_maximum_and_cursors_it_did_not_issue() {
    let app = spawn_app().await;
    let author = next_user_id();
    for n in 0..3 {
        app.post(author, &format!("tweet {n}")).await;
    }
    assert_invalid(app.try_scan("", MAX_SCAN_LIMIT + 1).await, "page.limit");
    app.try_scan("", MAX_SCAN_LIMIT)
        .await
        .expect("the maximum itself is fine");
    for garbage in ["garbage", "%%%", "AQ", &"A".repeat(300)] {
        assert_invalid(app.try_scan(garbage, 1).await, "page.cursor");
    }
    // Another list's cursor is not a scan's.
    let listed = app.try_list(author, "", 1).await.expect("list");
    let foreign = listed.page.expect("page info").next_cursor;
    assert!(!foreign.is_empty());
    assert_invalid(app.try_scan(&foreign, 1).await, "page.cursor");
    // And a scan's cursor is not another list's.
    let scanned = app.try_scan("", 1).await.expect("scan");
    let cursor = scanned.page.expect("page info").next_cursor;
    assert!(!cursor.is_empty());
    assert_invalid(app.try_list(author, &cursor, 1).await, "page.cursor");
    app.try_scan(&cursor, 1)
        .await
        .expect("its own cursor is fine");
    app.stop().await;
}
