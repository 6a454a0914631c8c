//! CreateTweet: content rules, extraction, idempotency, reply and quote targets.

use tonic::Code;
use warble_proto::tweet::v1 as pb;

use crate::helpers::{assert_code, assert_invalid, new_tweet, next_user_id, spawn_app};

#[tokio::test]
async fn stores_normalised_text_entities_and_media() {
    let app = spawn_app().await;
    let author = next_user_id();
    let before_ms = warble_mesh::time::now_ms() as i64;
    let tweet = app
        .create(pb::CreateTweetRequest {
            media_ids: vec![7, 8],
            ..new_tweet(author, "Cafe\u{301} with @Bob and @bob #Rust #rust #Tokio")
        })
        .await;

    assert_eq!(tweet.author_id, author);
    assert_eq!(tweet.text, "Café with @Bob and @bob #Rust #rust #Tokio");
    assert_eq!(tweet.hashtags, ["rust", "tokio"]);
    assert_eq!(tweet.mentions, ["bob"]);
    assert_eq!(tweet.media_ids, [7, 8]);
    assert_eq!(
        tweet.created_at_ms as u64,
        warble_mesh::snowflake::decode(tweet.id).unix_ms
    );
    assert!(tweet.created_at_ms >= before_ms);

    let lookup = app.get(tweet.id).await;
    assert_eq!(lookup.status(), pb::TweetLookupStatus::Found);
    assert_eq!(lookup.tweet, Some(tweet));
}

#[tokio::test]
async fn rejects_invalid_requests_naming_the_field() {
    let app = spawn_app().await;
    let author = next_user_id();

    assert_invalid(app.try_create(new_tweet(0, "hi")).await, "author_id");
    for text in [
        "",
        "   \n\t",
        "a".repeat(281).as_str(),
        "é".repeat(281).as_str(),
    ] {
        assert_invalid(app.try_create(new_tweet(author, text)).await, "text");
    }
    // 280 scalar values fit, however many bytes they take or how they were typed.
    for text in ["a".repeat(280), "😀".repeat(280), "e\u{301}".repeat(280)] {
        app.create(new_tweet(author, &text)).await;
    }
    assert_invalid(
        app.try_create(pb::CreateTweetRequest {
            media_ids: vec![1, 2, 3, 4, 5],
            ..new_tweet(author, "five")
        })
        .await,
        "media_ids",
    );
    app.create(pb::CreateTweetRequest {
        media_ids: vec![1, 2, 3, 4],
        ..new_tweet(author, "four")
    })
    .await;
    assert_invalid(
        app.try_create(pb::CreateTweetRequest {
            idempotency_key: "k".repeat(129),
            ..new_tweet(author, "long key")
        })
        .await,
        "idempotency_key",
    );
    app.create(pb::CreateTweetRequest {
        idempotency_key: "k".repeat(128),
        ..new_tweet(author, "longest key")
    })
    .await;
    assert_invalid(
        app.try_create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(0),
            ..new_tweet(author, "reply")
        })
        .await,
        "reply_to_tweet_id",
    );
    assert_invalid(
        app.try_create(pb::CreateTweetRequest {
            quote_of_tweet_id: Some(0),
            ..new_tweet(author, "quote")
        })
        .await,
        "quote_of_tweet_id",
    );
}

#[tokio::test]
async fn reply_and_quote_targets_must_be_live() {
    let app = spawn_app().await;
    let author = next_user_id();
    let deleted = app.post(author, "soon gone").await;
    app.try_delete(deleted.id, author).await.unwrap();

    for missing in [12_345, deleted.id] {
        let status = assert_code(
            app.try_create(pb::CreateTweetRequest {
                reply_to_tweet_id: Some(missing),
                ..new_tweet(author, "reply")
            })
            .await,
            Code::NotFound,
        );
        assert!(status.message().contains("reply_to_tweet_id"), "{status:?}");
    }
    for missing in [12_345, deleted.id] {
        let status = assert_code(
            app.try_create(pb::CreateTweetRequest {
                quote_of_tweet_id: Some(missing),
                ..new_tweet(author, "quote")
            })
            .await,
            Code::NotFound,
        );
        assert!(status.message().contains("quote_of_tweet_id"), "{status:?}");
    }
    // A live reply target with a missing quote target names the quote.
    let live = app.post(author, "still here").await;
    let status = assert_code(
        app.try_create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(live.id),
            quote_of_tweet_id: Some(12_345),
            ..new_tweet(author, "both")
        })
        .await,
        Code::NotFound,
    );
    assert!(status.message().contains("quote_of_tweet_id"), "{status:?}");
    // Nothing was counted for the rejected reply.
    assert_eq!(app.counts(live.id).await.reply_count, 0);
}

#[tokio::test]
async fn reply_and_quote_counts_follow_live_replies_and_quotes() {
    let app = spawn_app().await;
    let (author, other) = (next_user_id(), next_user_id());
    let original = app.post(author, "original").await;

    let reply = app
        .create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(original.id),
            ..new_tweet(other, "a reply")
        })
        .await;
    let both = app
        .create(pb::CreateTweetRequest {
            reply_to_tweet_id: Some(original.id),
            quote_of_tweet_id: Some(original.id),
            ..new_tweet(other, "reply and quote at once")
        })
        .await;
    assert_eq!(both.reply_to_tweet_id, Some(original.id));
    assert_eq!(both.quote_of_tweet_id, Some(original.id));
    let counts = app.counts(original.id).await;
    assert_eq!((counts.reply_count, counts.quote_count), (2, 1));

    assert!(app.try_delete(both.id, other).await.unwrap().deleted);
    let counts = app.counts(original.id).await;
    assert_eq!((counts.reply_count, counts.quote_count), (1, 0));
    assert!(app.try_delete(reply.id, other).await.unwrap().deleted);
    // Deleting again changes nothing and never goes below zero.
    assert!(!app.try_delete(reply.id, other).await.unwrap().deleted);
    let counts = app.counts(original.id).await;
    assert_eq!((counts.reply_count, counts.quote_count), (0, 0));
}

#[tokio::test]
async fn idempotency_key_retry_returns_the_original() {
    let app = spawn_app().await;
    let author = next_user_id();
    let request = pb::CreateTweetRequest {
        idempotency_key: "retry-1".into(),
        media_ids: vec![3],
        ..new_tweet(author, "cafe\u{301} once")
    };
    let first = app.try_create(request.clone()).await.unwrap();
    assert!(!first.replayed);

    let retry = app.try_create(request.clone()).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.tweet, first.tweet);

    // The same content typed precomposed normalises to the same text: still a retry.
    let precomposed = app
        .try_create(pb::CreateTweetRequest {
            text: "café once".into(),
            ..request.clone()
        })
        .await
        .unwrap();
    assert!(precomposed.replayed);
    assert_eq!(precomposed.tweet, first.tweet);

    // Same key, different content: rejected.
    for changed in [
        pb::CreateTweetRequest {
            text: "something else".into(),
            ..request.clone()
        },
        pb::CreateTweetRequest {
            media_ids: vec![],
            ..request.clone()
        },
    ] {
        assert_invalid(app.try_create(changed).await, "idempotency_key");
    }

    // Keys are scoped to the author.
    let other = app
        .try_create(pb::CreateTweetRequest {
            author_id: next_user_id(),
            ..request.clone()
        })
        .await
        .unwrap();
    assert!(!other.replayed);
    assert_ne!(other.tweet.unwrap().id, first.tweet.as_ref().unwrap().id);

    // Without a key every request creates a tweet.
    let a = app.post(author, "no key").await;
    let b = app.post(author, "no key").await;
    assert_ne!(a.id, b.id);
    assert_eq!(app.list_all_ids(author, 100).await.len(), 3);
}

#[tokio::test]
async fn retry_of_a_deleted_tweet_fails_precondition() {
    let app = spawn_app().await;
    let author = next_user_id();
    let request = pb::CreateTweetRequest {
        idempotency_key: "gone".into(),
        ..new_tweet(author, "will be deleted")
    };
    let tweet = app.create(request.clone()).await;
    app.try_delete(tweet.id, author).await.unwrap();
    assert_code(app.try_create(request).await, Code::FailedPrecondition);
    assert!(app.list_all_ids(author, 10).await.is_empty());
}
