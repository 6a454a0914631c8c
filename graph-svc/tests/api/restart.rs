//! What a restart on the same data directory keeps.

use std::sync::Arc;

use tonic::Code;
use warble_proto::events::v1::event::Payload;
use warble_proto::graph::v1 as pb;

use super::helpers::{TestApp, assert_code};

#[tokio::test]
async fn data_survives_a_restart_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let before = TestApp::spawn_in(dir.path()).await;
    let alice = before
        .try_create_user("Alice", "Alice A.", "hi")
        .await
        .unwrap();
    let bob = before.user("bob").await;
    let carol = before.user("carol").await;
    before.follow(alice.id, bob).await;
    before.follow(carol, bob).await;
    before.follow(bob, alice.id).await;
    before.follow(carol, alice.id).await;
    before.unfollow(carol, alice.id).await;
    let old_events = before.read_all_events("before-restart").await;
    let last_old_id = old_events
        .iter()
        .map(|(_, _, event)| event.event_id)
        .chain([alice.id, bob, carol])
        .max()
        .unwrap();
    let database = Arc::downgrade(&warble_mesh::embedded::open_shared(dir.path()).unwrap());
    before.stop().await;
    // Every handle is released, so the restart below really reopens the file.
    assert!(database.upgrade().is_none(), "the database is still open");

    let after = TestApp::spawn_in(dir.path()).await;
    let users = after
        .client()
        .get_users(pb::GetUsersRequest {
            user_ids: vec![alice.id],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(users[0].user.as_ref(), Some(&alice));
    assert_code(
        after.try_create_user("ALICE", "Impostor", "").await,
        Code::AlreadyExists,
    );
    assert_eq!(
        after.counts(&[alice.id, bob, carol]).await,
        vec![Some((1, 1)), Some((2, 1)), Some((0, 1))]
    );
    assert_eq!(after.all_followers(bob, 1).await, vec![carol, alice.id]);
    assert_eq!(
        after
            .is_following(&[(alice.id, bob), (carol, alice.id), (bob, alice.id)])
            .await,
        vec![true, false, true]
    );
    // Follows are still idempotent against the stored edges.
    assert!(!after.follow(alice.id, bob).await.changed);

    // New ids (users, follow seqs, events) continue above everything stored.
    let dave = after.user("dave").await;
    assert!(dave > last_old_id);
    after.follow(dave, bob).await;
    let new_events = after.read_events("before-restart").await;
    assert_eq!(new_events.len(), 1);
    let (_, Payload::Followed(followed), event) = &new_events[0] else {
        panic!("expected Followed, got {new_events:?}");
    };
    assert!(event.event_id > last_old_id);
    assert_eq!(followed.followee_followers_count, 3);
    assert_eq!(after.all_followers(bob, 10).await[0], dave);
    after.stop().await;
}
