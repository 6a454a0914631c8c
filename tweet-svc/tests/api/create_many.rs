//! CreateTweets: many tweets in one call, each as CreateTweet would create
//! it, all or none.

use tonic::Code;
use warble_proto::events::v1::event::Payload;
use warble_proto::tweet::v1 as pb;

use crate::helpers::{TestApp, assert_code, assert_invalid, new_tweet, next_user_id, spawn_app};

/// The ids of the tweets whose TweetCreated events were published, in order.
async fn created_events(app: &TestApp) -> Vec<u64> {
    app.events()
        .await
        .iter()
        .filter_map(|event| match &event.payload {
            Some(Payload::TweetCreated(created)) => Some(created.tweet_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn creates_every_tweet_in_request_order_with_one_event_each() {
    let app = spawn_app().await;
    let (ann, bob) = (next_user_id(), next_user_id());
    let parent = app.post(bob, "parent").await;
    let results = app
        .try_create_many(vec![
            pb::CreateTweetRequest {
                media_ids: vec![7],
                ..new_tweet(ann, "Cafe\u{301} with @Bob #Rust")
            },
            pb::CreateTweetRequest {
                reply_to_tweet_id: Some(parent.id),
                ..new_tweet(bob, "a reply")
            },
            new_tweet(ann, "third"),
        ])
        .await
        .unwrap();
    assert!(results.iter().all(|result| !result.replayed));
    let tweets: Vec<pb::Tweet> = results
        .into_iter()
        .map(|result| result.tweet.expect("tweet"))
        .collect();
    let summary: Vec<(u64, &str)> = tweets
        .iter()
        .map(|tweet| (tweet.author_id, tweet.text.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (ann, "Café with @Bob #Rust"),
            (bob, "a reply"),
            (ann, "third")
        ],
        "in request order, normalised as CreateTweet does"
    );
    assert_eq!(tweets[0].hashtags, ["rust"]);
    assert_eq!(tweets[0].mentions, ["bob"]);
    assert_eq!(tweets[0].media_ids, [7]);
    assert_eq!(tweets[1].reply_to_tweet_id, Some(parent.id));
    assert!(
        tweets.windows(2).all(|pair| pair[0].id < pair[1].id),
        "ids from the service's Snowflake generator, in order"
    );
    for tweet in &tweets {
        let lookup = app.get(tweet.id).await;
        assert_eq!(lookup.status(), pb::TweetLookupStatus::Found);
        assert_eq!(lookup.tweet.as_ref(), Some(tweet));
    }
    assert_eq!(app.counts(parent.id).await.reply_count, 1);
    let mut expected = vec![parent.id];
    expected.extend(tweets.iter().map(|tweet| tweet.id));
    assert_eq!(created_events(&app).await, expected);

    assert!(app.try_create_many(Vec::new()).await.unwrap().is_empty());
    assert_eq!(
        app.events().await.len(),
        4,
        "an empty batch publishes nothing"
    );
}

#[tokio::test]
async fn an_invalid_entry_is_named_by_index_and_nothing_is_created() {
    let app = spawn_app().await;
    let author = next_user_id();
    let batch_with = |bad: pb::CreateTweetRequest| {
        vec![new_tweet(author, "first"), bad, new_tweet(author, "third")]
    };
    let invalid = [
        (new_tweet(0, "no author"), "tweets[1].author_id"),
        (new_tweet(author, ""), "tweets[1].text"),
        (new_tweet(author, " \n\t"), "tweets[1].text"),
        (new_tweet(author, &"a".repeat(281)), "tweets[1].text"),
        (
            pb::CreateTweetRequest {
                media_ids: vec![1, 2, 3, 4, 5],
                ..new_tweet(author, "five")
            },
            "tweets[1].media_ids",
        ),
        (
            pb::CreateTweetRequest {
                idempotency_key: "k".repeat(129),
                ..new_tweet(author, "long key")
            },
            "tweets[1].idempotency_key",
        ),
        (
            pb::CreateTweetRequest {
                reply_to_tweet_id: Some(0),
                ..new_tweet(author, "reply")
            },
            "tweets[1].reply_to_tweet_id",
        ),
        (
            pb::CreateTweetRequest {
                quote_of_tweet_id: Some(0),
                ..new_tweet(author, "quote")
            },
            "tweets[1].quote_of_tweet_id",
        ),
    ];
    for (bad, field) in invalid {
        assert_invalid(app.try_create_many(batch_with(bad)).await, field);
    }
    let status = assert_code(
        app.try_create_many(batch_with(new_tweet(author, ""))).await,
        Code::InvalidArgument,
    );
    assert!(
        status.message().starts_with("tweets[1].text: "),
        "{status:?}"
    );

    // A missing target is the store's to find: NOT_FOUND, as CreateTweet says, naming the entry.
    for bad in [
        pb::CreateTweetRequest {
            reply_to_tweet_id: Some(12_345),
            ..new_tweet(author, "reply")
        },
        pb::CreateTweetRequest {
            quote_of_tweet_id: Some(12_345),
            ..new_tweet(author, "quote")
        },
    ] {
        let field = if bad.reply_to_tweet_id.is_some() {
            "reply_to_tweet_id"
        } else {
            "quote_of_tweet_id"
        };
        let status = assert_code(app.try_create_many(batch_with(bad)).await, Code::NotFound);
        assert!(
            status
                .message()
                .starts_with(&format!("tweets[1].{field}: tweet 12345")),
            "{status:?}"
        );
    }
    assert!(app.list_all_ids(author, 10).await.is_empty());
    assert!(app.events().await.is_empty());
}

#[tokio::test]
async fn takes_at_most_1000_tweets() {
    let app = spawn_app().await;
    let author = next_user_id();
    let batch: Vec<pb::CreateTweetRequest> = (0..=1000)
        .map(|n| new_tweet(author, &format!("tweet {n}")))
        .collect();
    assert_invalid(app.try_create_many(batch.clone()).await, "tweets");
    assert!(app.list_all_ids(author, 10).await.is_empty());

    let results = app.try_create_many(batch[..1000].to_vec()).await.unwrap();
    assert_eq!(results.len(), 1000);
    assert_eq!(
        results[999].tweet.as_ref().map(|tweet| tweet.text.as_str()),
        Some("tweet 999")
    );
    assert_eq!(app.list_all_ids(author, 100).await.len(), 1000);
    assert_eq!(created_events(&app).await.len(), 1000);
}

#[tokio::test]
async fn idempotency_keys_replay_and_conflict_as_in_create_tweet() {
    let app = spawn_app().await;
    let author = next_user_id();
    let keyed = |text: &str, key: &str| pb::CreateTweetRequest {
        idempotency_key: key.into(),
        ..new_tweet(author, text)
    };
    let original = app.create(keyed("original", "k-single")).await;

    let results = app
        .try_create_many(vec![
            keyed("original", "k-single"),
            keyed("new", "k-batch"),
            keyed("new", "k-batch"),
        ])
        .await
        .unwrap();
    let answered: Vec<(bool, Option<&pb::Tweet>)> = results
        .iter()
        .map(|result| (result.replayed, result.tweet.as_ref()))
        .collect();
    let created = results[1].tweet.clone().expect("tweet");
    assert_eq!(
        answered,
        vec![
            (true, Some(&original)),
            (false, Some(&created)),
            (true, Some(&created))
        ],
        "a key from an earlier call or an earlier entry replays its tweet"
    );
    // Retrying the whole batch replays every entry and publishes nothing.
    let retried = app
        .try_create_many(vec![keyed("original", "k-single"), keyed("new", "k-batch")])
        .await
        .unwrap();
    assert!(retried.iter().all(|result| result.replayed));
    assert_eq!(created_events(&app).await, vec![original.id, created.id]);

    // Other content under a used key: the code CreateTweet answers, on the entry's field.
    assert_invalid(
        app.try_create(keyed("changed", "k-batch")).await,
        "idempotency_key",
    );
    assert_invalid(
        app.try_create_many(vec![new_tweet(author, "fine"), keyed("changed", "k-batch")])
            .await,
        "tweets[1].idempotency_key",
    );
    assert_invalid(
        app.try_create_many(vec![keyed("one", "k-new"), keyed("two", "k-new")])
            .await,
        "tweets[1].idempotency_key",
    );
    // A deleted original: FAILED_PRECONDITION, as CreateTweet answers.
    app.try_delete(original.id, author).await.unwrap();
    assert_code(
        app.try_create(keyed("original", "k-single")).await,
        Code::FailedPrecondition,
    );
    let status = assert_code(
        app.try_create_many(vec![keyed("original", "k-single")])
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().starts_with("tweets[0]: "), "{status:?}");
    // The failed batches created nothing.
    assert_eq!(app.list_all_ids(author, 10).await, vec![created.id]);
}
