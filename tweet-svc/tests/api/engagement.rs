//! Likes, retweets, counts and viewer state.

use tonic::Code;
use warble_proto::tweet::v1 as pb;

use crate::helpers::{assert_code, assert_invalid, next_user_id, spawn_app};

#[tokio::test]
async fn likes_are_idempotent_per_user_and_never_negative() {
    let app = spawn_app().await;
    let (author, alice, bob) = (next_user_id(), next_user_id(), next_user_id());
    let tweet = app.post(author, "like me").await;

    let like = |user| app.like(user, tweet.id);
    let unlike = |user| app.unlike(user, tweet.id);
    let liked = |r: pb::LikeTweetResponse| (r.changed, r.like_count);
    let unliked = |r: pb::UnlikeTweetResponse| (r.changed, r.like_count);

    assert_eq!(unliked(unlike(alice).await.unwrap()), (false, 0));
    assert_eq!(liked(like(alice).await.unwrap()), (true, 1));
    assert_eq!(liked(like(alice).await.unwrap()), (false, 1));
    assert_eq!(liked(like(bob).await.unwrap()), (true, 2));
    assert_eq!(unliked(unlike(alice).await.unwrap()), (true, 1));
    assert_eq!(unliked(unlike(alice).await.unwrap()), (false, 1));
    assert_eq!(unliked(unlike(bob).await.unwrap()), (true, 0));
    assert_eq!(unliked(unlike(bob).await.unwrap()), (false, 0));
    assert_eq!(app.counts(tweet.id).await.like_count, 0);
}

#[tokio::test]
async fn retweets_are_idempotent_per_user_and_never_negative() {
    let app = spawn_app().await;
    let (author, alice, bob) = (next_user_id(), next_user_id(), next_user_id());
    let tweet = app.post(author, "retweet me").await;

    let retweeted = |r: pb::RetweetResponse| (r.changed, r.retweet_count);
    let undone = |r: pb::UndoRetweetResponse| (r.changed, r.retweet_count);

    assert_eq!(
        undone(app.undo_retweet(alice, tweet.id).await.unwrap()),
        (false, 0)
    );
    assert_eq!(
        retweeted(app.retweet(alice, tweet.id).await.unwrap()),
        (true, 1)
    );
    assert_eq!(
        retweeted(app.retweet(alice, tweet.id).await.unwrap()),
        (false, 1)
    );
    assert_eq!(
        retweeted(app.retweet(bob, tweet.id).await.unwrap()),
        (true, 2)
    );
    assert_eq!(
        undone(app.undo_retweet(bob, tweet.id).await.unwrap()),
        (true, 1)
    );
    assert_eq!(
        undone(app.undo_retweet(bob, tweet.id).await.unwrap()),
        (false, 1)
    );
    assert_eq!(app.counts(tweet.id).await.retweet_count, 1);
}

#[tokio::test]
async fn counts_and_viewer_state_answer_in_request_order() {
    let app = spawn_app().await;
    let (author, viewer, other) = (next_user_id(), next_user_id(), next_user_id());
    let a = app.post(author, "a").await;
    let b = app.post(author, "b").await;
    app.like(viewer, a.id).await.unwrap();
    app.like(other, a.id).await.unwrap();
    app.retweet(viewer, b.id).await.unwrap();
    app.retweet(other, a.id).await.unwrap();

    let ids = vec![b.id, 77, a.id, b.id];
    let counts = app.try_counts(ids.clone()).await.unwrap();
    assert_eq!(
        counts,
        [
            pb::TweetCounts {
                tweet_id: b.id,
                found: true,
                retweet_count: 1,
                ..Default::default()
            },
            pb::TweetCounts {
                tweet_id: 77,
                ..Default::default()
            },
            pb::TweetCounts {
                tweet_id: a.id,
                found: true,
                like_count: 2,
                retweet_count: 1,
                ..Default::default()
            },
            pb::TweetCounts {
                tweet_id: b.id,
                found: true,
                retweet_count: 1,
                ..Default::default()
            },
        ]
    );

    let states = app.try_viewer_state(viewer, ids).await.unwrap();
    let flags: Vec<_> = states
        .iter()
        .map(|s| (s.tweet_id, s.liked, s.retweeted))
        .collect();
    assert_eq!(
        flags,
        [
            (b.id, false, true),
            (77, false, false),
            (a.id, true, false),
            (b.id, false, true)
        ]
    );

    assert_invalid(app.try_viewer_state(0, vec![a.id]).await, "viewer_id");
    assert_invalid(
        app.try_viewer_state(viewer, vec![a.id; 501]).await,
        "tweet_ids",
    );
    assert_eq!(
        app.try_viewer_state(viewer, vec![a.id; 500])
            .await
            .unwrap()
            .len(),
        500
    );
    assert_invalid(app.try_counts(vec![a.id; 501]).await, "tweet_ids");
    assert_eq!(app.try_counts(vec![a.id; 500]).await.unwrap().len(), 500);
    assert!(app.try_counts(vec![]).await.unwrap().is_empty());
}

#[tokio::test]
async fn get_tweets_brings_counts_and_viewer_state_only_when_asked() {
    let app = spawn_app().await;
    let (author, viewer, other) = (next_user_id(), next_user_id(), next_user_id());
    let a = app.post(author, "a").await;
    let gone = app.post(author, "gone").await;
    app.like(viewer, a.id).await.unwrap();
    app.retweet(other, a.id).await.unwrap();
    app.like(viewer, gone.id).await.unwrap();
    app.try_delete(gone.id, author).await.unwrap();
    let ids = vec![a.id, 77, gone.id];

    let hydrated = app
        .client
        .clone()
        .get_tweets(pb::GetTweetsRequest {
            tweet_ids: ids.clone(),
            include_counts: true,
            viewer_id: viewer,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let extras: Vec<_> = hydrated
        .iter()
        .map(|lookup| (lookup.tweet_id, lookup.counts, lookup.viewer_state))
        .collect();
    assert_eq!(
        extras,
        [
            (
                a.id,
                Some(pb::TweetCounts {
                    tweet_id: a.id,
                    found: true,
                    like_count: 1,
                    retweet_count: 1,
                    ..Default::default()
                }),
                Some(pb::ViewerTweetState {
                    tweet_id: a.id,
                    liked: true,
                    retweeted: false,
                    bookmarked: false,
                })
            ),
            (77, None, None),
            (gone.id, None, None),
        ]
    );
    // The tweets themselves are what a plain GetTweets answers.
    let plain = app.try_get(ids).await.unwrap();
    assert!(
        plain
            .iter()
            .all(|lookup| lookup.counts.is_none() && lookup.viewer_state.is_none())
    );
    let strip = |lookups: &[pb::TweetLookup]| {
        lookups
            .iter()
            .map(|lookup| (lookup.tweet_id, lookup.status, lookup.tweet.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&hydrated), strip(&plain));
}

#[tokio::test]
async fn engagement_needs_a_live_tweet_and_non_zero_ids() {
    let app = spawn_app().await;
    let (author, user) = (next_user_id(), next_user_id());
    let deleted = app.post(author, "deleted").await;
    app.like(user, deleted.id).await.unwrap();
    app.try_delete(deleted.id, author).await.unwrap();

    for tweet_id in [424_242, deleted.id] {
        assert_code(app.like(user, tweet_id).await, Code::NotFound);
        assert_code(app.unlike(user, tweet_id).await, Code::NotFound);
        assert_code(app.retweet(user, tweet_id).await, Code::NotFound);
        assert_code(app.undo_retweet(user, tweet_id).await, Code::NotFound);
    }

    let live = app.post(author, "live").await;
    assert_invalid(app.like(0, live.id).await, "user_id");
    assert_invalid(app.like(user, 0).await, "tweet_id");
    assert_invalid(app.unlike(0, live.id).await, "user_id");
    assert_invalid(app.unlike(user, 0).await, "tweet_id");
    assert_invalid(app.retweet(0, live.id).await, "user_id");
    assert_invalid(app.retweet(user, 0).await, "tweet_id");
    assert_invalid(app.undo_retweet(0, live.id).await, "user_id");
    assert_invalid(app.undo_retweet(user, 0).await, "tweet_id");
}
