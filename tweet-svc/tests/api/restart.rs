//! Everything durable survives a shutdown and a fresh start on the same data directory.

use warble_proto::tweet::v1 as pb;

use crate::helpers::{new_tweet, next_user_id, spawn_app_in};

#[tokio::test]
async fn data_counts_and_idempotency_keys_survive_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let (author, fan) = (next_user_id(), next_user_id());
    let keyed = pb::CreateTweetRequest {
        idempotency_key: "before-restart".into(),
        ..new_tweet(author, "durable #tweet")
    };

    let app = spawn_app_in(data_dir.path()).await;
    let original = app.create(keyed.clone()).await;
    let reply = app
        .create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(original.id),
            ..new_tweet(fan, "reply")
        })
        .await;
    let gone = app.post(author, "deleted before restart").await;
    app.try_delete(gone.id, author).await.unwrap();
    app.like(fan, original.id).await.unwrap();
    app.retweet(fan, original.id).await.unwrap();
    let counts_before = app.counts(original.id).await;
    let listed_before = app.list_all_ids(author, 10).await;
    let events_before = app.events().await.len();
    app.stop().await;

    let app = spawn_app_in(data_dir.path()).await;
    assert_eq!(app.get(original.id).await.tweet, Some(original.clone()));
    assert_eq!(app.get(reply.id).await.tweet, Some(reply.clone()));
    assert_eq!(
        app.get(gone.id).await.status(),
        pb::TweetLookupStatus::Deleted
    );
    assert_eq!(app.counts(original.id).await, counts_before);
    assert_eq!(
        (
            counts_before.like_count,
            counts_before.retweet_count,
            counts_before.reply_count
        ),
        (1, 1, 1)
    );
    assert_eq!(app.list_all_ids(author, 10).await, listed_before);
    let state = app.try_viewer_state(fan, vec![original.id]).await.unwrap();
    assert!(state[0].liked && state[0].retweeted);
    assert_eq!(app.events().await.len(), events_before);

    // The old key still returns the old tweet, and still guards its content.
    let retry = app.try_create(keyed.clone()).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.tweet, Some(original.clone()));
    app.try_create(pb::CreateTweetRequest {
        text: "changed".into(),
        ..keyed
    })
    .await
    .unwrap_err();

    // New ids continue above every old one.
    let newer = app.post(author, "after restart").await;
    assert!(newer.id > gone.id && newer.id > reply.id);
    assert!(app.like(fan, original.id).await.unwrap().like_count == 1);
    app.stop().await;
}
