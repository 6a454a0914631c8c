//! DeleteTweet and what a deletion hides.

use tonic::Code;
use warble_proto::tweet::v1 as pb;

use crate::helpers::{assert_code, assert_invalid, next_user_id, spawn_app};

#[tokio::test]
async fn only_the_author_deletes_and_deleting_twice_succeeds() {
    let app = spawn_app().await;
    let (author, stranger) = (next_user_id(), next_user_id());
    let tweet = app.post(author, "mine").await;

    assert_invalid(app.try_delete(0, author).await, "tweet_id");
    assert_invalid(app.try_delete(tweet.id, 0).await, "requester_id");
    assert_code(
        app.try_delete(tweet.id, stranger).await,
        Code::PermissionDenied,
    );
    assert_code(app.try_delete(987_654, author).await, Code::NotFound);
    assert_eq!(
        app.get(tweet.id).await.status(),
        pb::TweetLookupStatus::Found
    );

    assert!(app.try_delete(tweet.id, author).await.unwrap().deleted);
    assert!(!app.try_delete(tweet.id, author).await.unwrap().deleted);
    // Still not the stranger's to delete, deleted or not.
    assert_code(
        app.try_delete(tweet.id, stranger).await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn deleted_tweets_are_never_read_back() {
    let app = spawn_app().await;
    let (author, fan) = (next_user_id(), next_user_id());
    let kept = app.post(author, "kept").await;
    let gone = app.post(author, "gone").await;
    app.like(fan, gone.id).await.unwrap();
    app.retweet(fan, gone.id).await.unwrap();

    app.try_delete(gone.id, author).await.unwrap();

    let lookup = app.get(gone.id).await;
    assert_eq!(lookup.status(), pb::TweetLookupStatus::Deleted);
    assert_eq!(lookup.tweet, None);
    assert_eq!(app.list_all_ids(author, 10).await, [kept.id]);
    let counts = app.counts(gone.id).await;
    assert_eq!(
        counts,
        pb::TweetCounts {
            tweet_id: gone.id,
            ..pb::TweetCounts::default()
        }
    );
    let state = app.try_viewer_state(fan, vec![gone.id]).await.unwrap();
    assert!(!state[0].liked && !state[0].retweeted);
}
