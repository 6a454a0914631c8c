//! GetTweets, ListUserTweets and ListAuthorsTweets.

use warble_proto::tweet::v1 as pb;

use crate::helpers::{assert_invalid, next_user_id, spawn_app};

#[tokio::test]
async fn get_tweets_keeps_order_answers_duplicates_and_hides_deleted_content() {
    let app = spawn_app().await;
    let author = next_user_id();
    let live = app.post(author, "live").await;
    let deleted = app.post(author, "deleted").await;
    assert!(app.try_delete(deleted.id, author).await.unwrap().deleted);

    let ids = vec![deleted.id, live.id, 42, live.id, 0];
    let results = app.try_get(ids.clone()).await.unwrap();
    assert_eq!(results.iter().map(|r| r.tweet_id).collect::<Vec<_>>(), ids);
    let statuses: Vec<_> = results.iter().map(pb::TweetLookup::status).collect();
    use pb::TweetLookupStatus::{Deleted, Found, NotFound};
    assert_eq!(statuses, [Deleted, Found, NotFound, Found, NotFound]);
    assert_eq!(results[0].tweet, None);
    assert_eq!(results[1].tweet.as_ref(), Some(&live));
    assert_eq!(results[3].tweet.as_ref(), Some(&live));
    assert_eq!(results[2].tweet, None);

    assert!(app.try_get(vec![]).await.unwrap().is_empty());
    assert_eq!(app.try_get(vec![live.id; 500]).await.unwrap().len(), 500);
    assert_invalid(app.try_get(vec![live.id; 501]).await, "tweet_ids");
}

#[tokio::test]
async fn list_user_tweets_pages_newest_first_without_deleted() {
    let app = spawn_app().await;
    let (author, other) = (next_user_id(), next_user_id());
    let mut created = Vec::new();
    for n in 0..25 {
        created.push(app.post(author, &format!("tweet {n}")).await.id);
    }
    app.post(other, "someone else's").await;
    let deleted = created.remove(3);
    app.try_delete(deleted, author).await.unwrap();
    created.reverse();

    // Limit 0 selects the default page of 20; the last page has no cursor.
    let first = app.try_list(author, "", 0).await.unwrap();
    let first_ids: Vec<u64> = first.tweets.iter().map(|t| t.id).collect();
    assert_eq!(first_ids, created[..20]);
    assert!(first.tweets.iter().all(|t| t.author_id == author));
    let cursor = first.page.unwrap().next_cursor;
    assert!(!cursor.is_empty());
    let second = app.try_list(author, &cursor, 0).await.unwrap();
    let second_ids: Vec<u64> = second.tweets.iter().map(|t| t.id).collect();
    assert_eq!(second_ids, created[20..]);
    assert!(second.page.unwrap().next_cursor.is_empty());

    // An exact fit ends without a cursor to an empty page.
    let all = app.try_list(author, "", 24).await.unwrap();
    assert_eq!(all.tweets.len(), 24);
    assert!(all.page.unwrap().next_cursor.is_empty());
    assert_eq!(app.list_all_ids(author, 100).await, created);
    assert_eq!(app.list_all_ids(author, 1).await, created);

    // A user with no tweets gets an empty last page.
    let empty = app.try_list(next_user_id(), "", 10).await.unwrap();
    assert!(empty.tweets.is_empty());
    assert!(empty.page.unwrap().next_cursor.is_empty());
}

#[tokio::test]
async fn list_user_tweets_validates_paging() {
    let app = spawn_app().await;
    let (author, other) = (next_user_id(), next_user_id());
    for n in 0..3 {
        app.post(author, &format!("tweet {n}")).await;
        app.post(other, &format!("tweet {n}")).await;
    }

    assert_invalid(app.try_list(0, "", 10).await, "author_id");
    assert_invalid(app.try_list(author, "", 101).await, "page.limit");
    app.try_list(author, "", 100).await.unwrap();
    for garbage in ["not a cursor", "AAAA", "%%%", "A".repeat(500).as_str()] {
        assert_invalid(app.try_list(author, garbage, 10).await, "page.cursor");
    }
    // A cursor belongs to the list that issued it.
    let page = app.try_list(other, "", 1).await.unwrap();
    let others_cursor = page.page.unwrap().next_cursor;
    assert_invalid(app.try_list(author, &others_cursor, 1).await, "page.cursor");
    app.try_list(other, &others_cursor, 1).await.unwrap();
    // No page request at all means the first page at the default size.
    let response = app
        .client
        .clone()
        .list_user_tweets(pb::ListUserTweetsRequest {
            author_id: author,
            page: None,
            include_retweets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.tweets.len(), 3);
}

#[tokio::test]
async fn list_authors_tweets_answers_every_author_in_one_call() {
    let app = spawn_app().await;
    let (busy, quiet, silent) = (next_user_id(), next_user_id(), next_user_id());
    let mut busy_ids = Vec::new();
    for n in 0..7 {
        busy_ids.push(app.post(busy, &format!("busy {n}")).await.id);
    }
    let quiet_id = app.post(quiet, "only one").await.id;
    let deleted = app.post(quiet, "gone").await.id;
    app.try_delete(deleted, quiet).await.unwrap();
    busy_ids.reverse();

    let answers = app
        .try_authors_tweets(vec![busy, silent, quiet, busy], 0, 3)
        .await
        .unwrap();
    let summary: Vec<_> = answers
        .iter()
        .map(|a| (a.author_id, a.tweet_ids.clone(), a.has_more))
        .collect();
    assert_eq!(
        summary,
        vec![
            (busy, busy_ids[..3].to_vec(), true),
            (silent, vec![], false),
            (quiet, vec![quiet_id], false),
            (busy, busy_ids[..3].to_vec(), true),
        ]
    );

    // The bound is exclusive and applies to every author.
    let older = app
        .try_authors_tweets(vec![busy], busy_ids[4], 10)
        .await
        .unwrap();
    assert_eq!(older[0].tweet_ids, busy_ids[5..]);
    assert!(!older[0].has_more);

    // Exactly `limit` left: no more below them.
    let exact = app.try_authors_tweets(vec![busy], 0, 7).await.unwrap();
    assert_eq!(exact[0].tweet_ids, busy_ids);
    assert!(!exact[0].has_more);

    assert_eq!(
        app.try_authors_tweets(vec![busy], 0, 0).await.unwrap()[0]
            .tweet_ids
            .len(),
        7
    );
    assert_invalid(
        app.try_authors_tweets(vec![busy], 0, 801).await,
        "limit_per_author",
    );
    assert_invalid(
        app.try_authors_tweets(vec![busy, 0], 0, 1).await,
        "author_ids",
    );
    assert_invalid(
        app.try_authors_tweets(vec![busy; 1001], 0, 1).await,
        "author_ids",
    );
    assert_eq!(
        app.try_authors_tweets(vec![busy; 1000], 0, 1)
            .await
            .unwrap()
            .len(),
        1000
    );
}
