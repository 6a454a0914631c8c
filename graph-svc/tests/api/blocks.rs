//! Blocks and mutes over gRPC: the refusals and codes callers see, the
//! lists and their cursors, relations, and the events.

use tonic::Code;
use warble_proto::events::v1::event::Payload;
use warble_proto::graph::v1 as pb;
use warble_proto::limits::graph::MAX_MUTE_DURATION_SECS;

use super::helpers::{MISSING, TestApp, assert_code, assert_invalid, next_cursor, page};

impl TestApp {
    async fn try_block(&self, blocker: u64, blocked: u64) -> Result<bool, tonic::Status> {
        Ok(self
            .client()
            .block(pb::BlockRequest {
                blocker_id: blocker,
                blocked_id: blocked,
            })
            .await?
            .into_inner()
            .changed)
    }

    async fn try_unblock(&self, blocker: u64, blocked: u64) -> Result<bool, tonic::Status> {
        Ok(self
            .client()
            .unblock(pb::UnblockRequest {
                blocker_id: blocker,
                blocked_id: blocked,
            })
            .await?
            .into_inner()
            .changed)
    }

    async fn try_mute(
        &self,
        muter: u64,
        muted: u64,
        duration_secs: u64,
        hide_notifications: bool,
    ) -> Result<pb::MuteResponse, tonic::Status> {
        Ok(self
            .client()
            .mute(pb::MuteRequest {
                muter_id: muter,
                muted_id: muted,
                duration_secs,
                hide_notifications,
            })
            .await?
            .into_inner())
    }

    async fn relations(&self, viewer: u64, users: &[u64]) -> Vec<pb::Relation> {
        self.client()
            .get_relations(pb::GetRelationsRequest {
                viewer_id: viewer,
                user_ids: users.to_vec(),
            })
            .await
            .expect("get relations")
            .into_inner()
            .relations
    }
}

#[tokio::test]
async fn a_block_removes_follows_and_refuses_new_ones_without_saying_who_blocked() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.follow(alice, bob).await;
    app.follow(bob, alice).await;
    app.read_events("blocks").await;

    assert!(app.try_block(alice, bob).await.unwrap());
    assert!(!app.try_block(alice, bob).await.unwrap(), "idempotent");
    assert_eq!(app.counts(&[alice, bob]).await, vec![Some((0, 0)); 2]);
    for (follower, followee) in [(bob, alice), (alice, bob)] {
        let status = app.try_follow(follower, followee).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), "you cannot follow this user");
    }
    let status = app.try_follow_many(&[(bob, alice)]).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "pairs[0]: you cannot follow this user");

    let kinds: Vec<&str> = app
        .read_events("blocks")
        .await
        .iter()
        .map(|(_, payload, _)| match payload {
            Payload::Unfollowed(_) => "unfollowed",
            Payload::Blocked(_) => "blocked",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["unfollowed", "unfollowed", "blocked"]);

    assert!(app.try_unblock(alice, bob).await.unwrap());
    assert!(!app.try_unblock(alice, bob).await.unwrap());
    assert!(app.follow(bob, alice).await.changed);
}

#[tokio::test]
async fn blocks_and_mutes_name_the_bad_field() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    assert_invalid(app.try_block(alice, alice).await, "blocked_id");
    assert_invalid(app.try_block(0, alice).await, "blocker_id");
    assert_invalid(app.try_unblock(alice, 0).await, "blocked_id");
    assert_invalid(app.try_mute(alice, alice, 0, false).await, "muted_id");
    assert_invalid(
        app.try_mute(alice, bob, MAX_MUTE_DURATION_SECS + 1, false)
            .await,
        "duration_secs",
    );
    assert_code(app.try_block(alice, MISSING).await, Code::NotFound);
    assert_code(app.try_mute(MISSING, alice, 0, false).await, Code::NotFound);
    let relations = app
        .client()
        .get_relations(pb::GetRelationsRequest {
            viewer_id: alice,
            user_ids: vec![bob, 0],
        })
        .await;
    assert_invalid(relations, "user_ids[1]");
    // Nothing was written, nothing published.
    assert!(!app.relations(alice, &[bob]).await[0].viewer_mutes);
    assert!(app.read_events("rejected").await.is_empty());
}

#[tokio::test]
async fn mutes_answer_their_expiry_and_show_in_relations() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let before = warble_mesh::time::now_ms() as i64;
    let timed = app.try_mute(alice, bob, 3600, true).await.unwrap();
    let after = warble_mesh::time::now_ms() as i64;
    assert!(timed.changed);
    assert!(
        (before + 3_600_000..=after + 3_600_000).contains(&timed.expires_at_ms),
        "{timed:?}"
    );
    let forever = app.try_mute(alice, carol, 0, false).await.unwrap();
    assert_eq!((forever.changed, forever.expires_at_ms), (true, 0));
    assert!(!app.try_mute(alice, carol, 0, false).await.unwrap().changed);
    app.try_block(carol, alice).await.unwrap();

    let relations = app.relations(alice, &[bob, carol, MISSING, bob]).await;
    let summary: Vec<(u64, bool, bool, bool, bool, i64)> = relations
        .iter()
        .map(|r| {
            (
                r.user_id,
                r.viewer_blocks,
                r.blocks_viewer,
                r.viewer_mutes,
                r.mute_hides_notifications,
                r.mute_expires_at_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (bob, false, false, true, true, timed.expires_at_ms),
            (carol, false, true, true, false, 0),
            (MISSING, false, false, false, false, 0),
            (bob, false, false, true, true, timed.expires_at_ms),
        ]
    );
    assert!(
        app.relations(0, &[bob, carol])
            .await
            .iter()
            .all(|r| !r.viewer_mutes && !r.blocks_viewer && !r.viewer_blocks),
        "the anonymous viewer relates to no one"
    );

    let unmuted = app
        .client()
        .unmute(pb::UnmuteRequest {
            muter_id: alice,
            muted_id: bob,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unmuted.changed);
    let events: Vec<(u64, Payload)> = app
        .read_events("mutes")
        .await
        .into_iter()
        .map(|(key, payload, _)| (key, payload))
        .collect();
    assert!(
        matches!(&events[0], (key, Payload::Muted(m)) if *key == bob && m.expires_at_ms == timed.expires_at_ms && m.hide_notifications)
    );
    assert!(
        matches!(&events[1], (key, Payload::Muted(m)) if *key == carol && m.expires_at_ms == 0)
    );
    assert!(matches!(&events[2], (key, Payload::Blocked(_)) if *key == alice));
    assert!(matches!(&events[3], (key, Payload::Unmuted(_)) if *key == bob));
    assert_eq!(events.len(), 4);
}

#[tokio::test]
async fn block_and_mute_lists_page_with_their_own_cursors() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let others = app.users("other", 5).await;
    for &other in &others {
        app.try_block(owner, other).await.unwrap();
        app.try_mute(owner, other, 0, false).await.unwrap();
    }
    let mut blocked = Vec::new();
    let mut cursor = String::new();
    let first_cursor = loop {
        let response = app
            .client()
            .list_blocked(pb::ListBlockedRequest {
                user_id: owner,
                page: Some(page(&cursor, 2)),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response.blocked.len() <= 2);
        for edge in &response.blocked {
            assert_eq!((edge.expires_at_ms, edge.hide_notifications), (0, false));
            assert!(edge.since_ms > 0);
        }
        blocked.extend(response.blocked.iter().map(|edge| edge.user_id));
        let first = blocked.len() == 2;
        cursor = next_cursor(response.page);
        if first {
            break cursor.clone();
        }
    };
    loop {
        let response = app
            .client()
            .list_blocked(pb::ListBlockedRequest {
                user_id: owner,
                page: Some(page(&cursor, 2)),
            })
            .await
            .unwrap()
            .into_inner();
        blocked.extend(response.blocked.iter().map(|edge| edge.user_id));
        cursor = next_cursor(response.page);
        if cursor.is_empty() {
            break;
        }
    }
    let newest_first: Vec<u64> = others.iter().rev().copied().collect();
    assert_eq!(blocked, newest_first);

    // A block-list cursor is not a mute-list or follow-list cursor.
    let muted = app
        .client()
        .list_muted(pb::ListMutedRequest {
            user_id: owner,
            page: Some(page(&first_cursor, 2)),
        })
        .await;
    assert_invalid(muted, "page.cursor");
    assert_invalid(
        app.try_followers_page(owner, &first_cursor, 2).await,
        "page.cursor",
    );
    let muted = app
        .client()
        .list_muted(pb::ListMutedRequest {
            user_id: owner,
            page: Some(page("", 100)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        muted.muted.iter().map(|e| e.user_id).collect::<Vec<_>>(),
        newest_first
    );
    assert!(next_cursor(muted.page).is_empty());
    let too_big = app
        .client()
        .list_blocked(pb::ListBlockedRequest {
            user_id: owner,
            page: Some(page("", 5001)),
        })
        .await;
    assert_invalid(too_big, "page.limit");
    let missing = app
        .client()
        .list_muted(pb::ListMutedRequest {
            user_id: MISSING,
            page: None,
        })
        .await;
    assert_code(missing, Code::NotFound);
}
