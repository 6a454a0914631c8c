//! What tweet-svc publishes to the event log, and what it does not.

use warble_proto::events::v1::{Event, TweetCreated, TweetDeleted, event::Payload};
use warble_proto::tweet::v1 as pb;

use crate::helpers::{assert_code, new_tweet, next_user_id, spawn_app};

fn created(event: &Event) -> &TweetCreated {
    match &event.payload {
        Some(Payload::TweetCreated(created)) => created,
        other => panic!("expected TweetCreated, got {other:?}"),
    }
}

fn deleted(event: &Event) -> &TweetDeleted {
    match &event.payload {
        Some(Payload::TweetDeleted(deleted)) => deleted,
        other => panic!("expected TweetDeleted, got {other:?}"),
    }
}

#[tokio::test]
async fn creation_publishes_the_full_tweet() {
    let app = spawn_app().await;
    let (author, replied, quoted) = (next_user_id(), next_user_id(), next_user_id());
    let parent = app.post(replied, "parent").await;
    let source = app.post(quoted, "source").await;
    let tweet = app
        .create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(parent.id),
            quote_of_tweet_id: Some(source.id),
            media_ids: vec![5, 6],
            ..new_tweet(author, "@Parent look #Here #here @someone")
        })
        .await;

    let events = app.events().await;
    assert_eq!(events.len(), 3);
    let event = &events[2];
    assert_eq!(
        created(event),
        &TweetCreated {
            tweet_id: tweet.id,
            author_id: author,
            created_at_ms: tweet.created_at_ms,
            text: tweet.text.clone(),
            reply_to_tweet_id: Some(parent.id),
            reply_to_author_id: Some(replied),
            quote_of_tweet_id: Some(source.id),
            quote_of_author_id: Some(quoted),
            hashtags: vec!["here".into()],
            mentions: vec!["parent".into(), "someone".into()],
            media_ids: vec![5, 6],
        }
    );
    assert_eq!(event.occurred_at_ms, tweet.created_at_ms);
    assert_ne!(event.event_id, 0);
    assert_ne!(event.event_id, tweet.id);
    // A plain tweet names no other author.
    let plain = created(&events[0]);
    assert_eq!(plain.tweet_id, parent.id);
    assert_eq!(
        (plain.reply_to_author_id, plain.quote_of_author_id),
        (None, None)
    );
    // Event ids are unique.
    let ids: std::collections::HashSet<u64> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn deletion_publishes_once() {
    let app = spawn_app().await;
    let author = next_user_id();
    let parent = app.post(author, "parent").await;
    let reply = app
        .create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(parent.id),
            ..new_tweet(author, "reply")
        })
        .await;
    let before_ms = warble_mesh::time::now_ms() as i64;
    app.try_delete(reply.id, author).await.unwrap();
    // Deleting again, or failing to, publishes nothing more.
    app.try_delete(reply.id, author).await.unwrap();
    app.try_delete(parent.id, next_user_id()).await.unwrap_err();

    let events = app.events().await;
    assert_eq!(events.len(), 3);
    let event = &events[2];
    let tombstone = deleted(event);
    assert_eq!(
        tombstone,
        &TweetDeleted {
            tweet_id: reply.id,
            author_id: author,
            created_at_ms: reply.created_at_ms,
            deleted_at_ms: tombstone.deleted_at_ms,
            reply_to_tweet_id: Some(parent.id),
            quote_of_tweet_id: None,
            media_ids: Vec::new(),
        }
    );
    assert!(tombstone.deleted_at_ms >= before_ms);
    assert_eq!(event.occurred_at_ms, tombstone.deleted_at_ms);
}

#[tokio::test]
async fn replays_and_rejected_creates_publish_nothing() {
    let app = spawn_app().await;
    let author = next_user_id();
    let request = pb::CreateTweetRequest {
        idempotency_key: "once".into(),
        ..new_tweet(author, "exactly one event")
    };
    let tweet = app.create(request.clone()).await;
    assert!(app.try_create(request.clone()).await.unwrap().replayed);

    // Rejected: same key with other content, missing targets, bad text.
    app.try_create(pb::CreateTweetRequest {
        text: "different".into(),
        ..request.clone()
    })
    .await
    .unwrap_err();
    assert_code(
        app.try_create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(31_337),
            ..new_tweet(author, "reply to nothing")
        })
        .await,
        tonic::Code::NotFound,
    );
    app.try_create(pb::CreateTweetRequest {
        quote_of_tweet_id: Some(31_337),
        idempotency_key: "fresh".into(),
        ..new_tweet(author, "quote of nothing")
    })
    .await
    .unwrap_err();
    app.try_create(new_tweet(author, " ")).await.unwrap_err();
    // A like publishes its own event, once.
    let fan = next_user_id();
    app.like(fan, tweet.id).await.unwrap();
    app.like(fan, tweet.id).await.unwrap();

    let events = app.events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(created(&events[0]).tweet_id, tweet.id);
    match &events[1].payload {
        Some(Payload::Liked(liked)) => {
            assert_eq!((liked.user_id, liked.tweet_id), (fan, tweet.id));
            assert_eq!((liked.tweet_author_id, liked.like_count), (author, 1));
        }
        other => panic!("expected Liked, got {other:?}"),
    }

    // The key of the rejected create was not consumed: it still creates.
    let fresh = app
        .try_create(pb::CreateTweetRequest {
            idempotency_key: "fresh".into(),
            ..new_tweet(author, "now valid")
        })
        .await
        .unwrap();
    assert!(!fresh.replayed);
}
