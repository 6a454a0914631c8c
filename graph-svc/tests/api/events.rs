//! The Followed and Unfollowed events published with each change.

use warble_mesh::snowflake;
use warble_proto::events::v1::event::Payload;
use warble_proto::events::v1::{Followed, Unfollowed};

use super::helpers::TestApp;

#[tokio::test]
async fn follows_and_unfollows_publish_one_event_each_with_counts() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    app.follow(alice, bob).await;
    app.follow(alice, bob).await; // repeat: no event
    app.follow(carol, bob).await;
    app.unfollow(alice, bob).await;
    app.unfollow(alice, bob).await; // repeat: no event
    app.unfollow(bob, carol).await; // never followed: no event

    let events = app.read_events("events-test").await;
    assert_eq!(events.len(), 3, "{events:?}");

    let (key, Payload::Followed(first), envelope) = &events[0] else {
        panic!("expected Followed, got {:?}", events[0]);
    };
    assert_eq!(*key, bob, "follow events are keyed by the followee");
    let followed_at = first.followed_at_ms;
    assert_eq!(
        *first,
        Followed {
            follower_id: alice,
            followee_id: bob,
            followed_at_ms: followed_at,
            followee_followers_count: 1,
            follower_following_count: 1,
        }
    );
    assert_eq!(envelope.occurred_at_ms, followed_at);
    // The listed follow time is the one the event announced.
    let carol_edge = app.try_followers_page(bob, "", 10).await.unwrap().followers[0].clone();

    let (key, Payload::Followed(second), _) = &events[1] else {
        panic!("expected Followed, got {:?}", events[1]);
    };
    assert_eq!(*key, bob);
    assert_eq!(
        (
            second.follower_id,
            second.followee_id,
            second.followee_followers_count,
            second.follower_following_count
        ),
        (carol, bob, 2, 1)
    );
    assert_eq!(second.followed_at_ms, carol_edge.followed_at_ms);

    let (key, Payload::Unfollowed(third), envelope) = &events[2] else {
        panic!("expected Unfollowed, got {:?}", events[2]);
    };
    assert_eq!(*key, bob);
    assert_eq!(
        *third,
        Unfollowed {
            follower_id: alice,
            followee_id: bob,
            unfollowed_at_ms: envelope.occurred_at_ms,
            followee_followers_count: 1,
            follower_following_count: 0,
        }
    );

    // Event ids are distinct Snowflakes of this service's worker, in publish order.
    let ids: Vec<u64> = events.iter().map(|(_, _, event)| event.event_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids.iter().all(|&id| snowflake::decode(id).worker_id == 2));

    // Nothing more was published, and a new change is picked up by the same group.
    assert!(app.read_events("events-test").await.is_empty());
    app.follow(bob, alice).await;
    let later = app.read_events("events-test").await;
    assert_eq!(later.len(), 1);
    assert!(
        matches!(&later[0].1, Payload::Followed(f) if f.follower_id == bob && f.followee_id == alice)
    );
}

#[tokio::test]
async fn rejected_changes_publish_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    assert!(app.try_follow(alice, alice).await.is_err());
    assert!(
        app.try_follow(alice, super::helpers::MISSING)
            .await
            .is_err()
    );
    assert!(
        app.try_unfollow(super::helpers::MISSING, alice)
            .await
            .is_err()
    );
    assert!(app.read_events("rejected-test").await.is_empty());
}
