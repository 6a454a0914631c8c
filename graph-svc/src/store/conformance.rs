//! The [`GraphStore`] contract as executable checks, run against every
//! implementation: the embedded store in this crate's unit tests (once as
//! is, once with the trait's default batch writes, which Neo4j uses), and
//! the Neo4j adapter in `tests/api/store_neo4j.rs`: over Bolt against
//! ArcadeDB in CI, or a real Neo4j when `NEO4J_URI` is set.
//!
//! The checks speak only the trait and the store's [`Outbox`] (where its
//! events wait to be published). They never assume an empty store:
//! usernames carry a random suffix and event assertions filter on the users
//! a check created, so a backend whose `make` hands out one shared database
//! per run gives the same verdicts as one with a fresh database per check.
//! The one exception runs first, while even a store shared by the whole run
//! is still empty: a scan of an empty store.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use prost::Message as _;
use warble_mesh::event_log::DOMAIN_EVENTS_STREAM;
use warble_mesh::outbox::{Outbox, OutboxEntry};
use warble_proto::events::v1::{
    Blocked, Event, Followed, Muted, ProfileUpdated, Unfollowed, UserCreated, event,
};
use warble_proto::limits::graph::MAX_WRITE_BATCH;

use super::{
    EdgePosition, FollowChange, FollowCounts, FollowPage, GraphStore, Identity, MuteChange,
    NewUser, PageQuery, ProfileUpdate, Registration, Relation, RelationPage, ScannedUser, User,
    UserScanPage,
};
use crate::error::GraphError;

/// Most outbox entries one look at the outbox reads; far above what a run writes.
const OUTBOX_SCAN: usize = 100_000;

/// Runs every check, each on what a fresh `make()` returns: a guard to keep
/// alive (a temp dir, a connection), the store, and the store's outbox.
pub async fn run_all<G, S, F, Fut>(make: F)
where
    S: GraphStore,
    F: Fn() -> Fut,
    Fut: Future<Output = (G, S, Arc<dyn Outbox>)>,
{
    // First: the only check that needs an empty store (see the module doc).
    let (_guard, store, _outbox) = make().await;
    scanning_an_empty_store_gives_one_empty_last_page(&store).await;
    let (_guard, store, _outbox) = make().await;
    usernames_are_unique_ignoring_case(&store).await;
    let (_guard, store, _outbox) = make().await;
    batch_lookups_answer_in_request_order(&store).await;
    let (_guard, store, _outbox) = make().await;
    follow_and_unfollow_are_idempotent_with_exact_counts(&store).await;
    let (_guard, store, _outbox) = make().await;
    follows_need_both_users_and_two_different_ones(&store).await;
    let (_guard, store, _outbox) = make().await;
    concurrent_follows_count_exactly(&store).await;
    let (_guard, store, _outbox) = make().await;
    paging_is_stable_while_the_list_changes(&store).await;
    let (_guard, store, _outbox) = make().await;
    following_filtered_by_min_followers_returns_each_match_once(&store).await;
    let (_guard, store, _outbox) = make().await;
    is_following_answers_each_pair_in_order(&store).await;
    let (_guard, store, outbox) = make().await;
    every_follow_change_leaves_exactly_one_event(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    a_user_batch_creates_everyone_in_order_or_no_one(&store).await;
    let (_guard, store, outbox) = make().await;
    a_follow_batch_counts_and_publishes_like_single_follows(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    a_follow_batch_with_a_bad_pair_follows_nothing(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    write_batches_are_limited_in_size(&store).await;
    let (_guard, store, outbox) = make().await;
    every_new_user_publishes_user_created(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    usernames_resolve_in_a_batch_ignoring_case(&store).await;
    let (_guard, store, outbox) = make().await;
    profile_edits_change_only_the_fields_set_and_publish_when_changed(&store, outbox.as_ref())
        .await;
    let (_guard, store, outbox) = make().await;
    the_verified_mark_changes_only_through_set_verified(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    an_avatar_is_set_changed_and_cleared_publishing_only_on_change(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    a_block_removes_follows_both_ways_with_exact_counts_and_events(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    follows_are_refused_both_ways_while_a_block_stands(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    blocks_and_mutes_are_idempotent_with_events_only_on_change(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    blocks_and_mutes_need_two_different_existing_users(&store).await;
    let (_guard, store, _outbox) = make().await;
    a_mute_lapses_at_its_expiry(&store).await;
    let (_guard, store, _outbox) = make().await;
    relations_answer_each_id_in_order(&store).await;
    let (_guard, store, _outbox) = make().await;
    block_lists_page_stably_newest_first(&store).await;
    let (_guard, store, _outbox) = make().await;
    mute_lists_skip_lapsed_mutes_and_page_stably(&store).await;
    let (_guard, store, _outbox) = make().await;
    a_scan_lists_every_user_once_in_id_order_with_their_counts(&store).await;
    let (_guard, store, _outbox) = make().await;
    an_identity_registers_once_and_resolves_to_its_user(&store).await;
    let (_guard, store, outbox) = make().await;
    a_registration_publishes_user_created_once(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    racing_registrations_of_one_identity_create_one_user(&store).await;
}

/// A username unique to this run: 15 characters at most, as the service allows.
fn username(prefix: &str) -> String {
    let suffix: String = (0..8)
        .map(|_| {
            let n = rand::random_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    format!("{}_{suffix}", &prefix[..prefix.len().min(6)])
}

async fn user(store: &impl GraphStore, prefix: &str) -> User {
    store
        .create_user(NewUser {
            username: username(prefix),
            display_name: format!("{prefix} display"),
            bio: format!("bio of {prefix}"),
        })
        .await
        .expect("create_user")
}

async fn users(store: &impl GraphStore, prefix: &str, count: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(user(store, prefix).await.id);
    }
    ids
}

fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.into(),
        display_name: format!("{username} display"),
        bio: String::new(),
    }
}

/// Asserts `result` failed with `InvalidArgument` naming `field`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, GraphError>, field: &str) {
    match result {
        Err(GraphError::InvalidArgument { field: named, .. }) => assert_eq!(named, field),
        other => panic!("expected InvalidArgument on {field}, got {other:?}"),
    }
}

/// Whether each username resolves to a user.
async fn exist(store: &impl GraphStore, usernames: &[String]) -> Vec<bool> {
    let mut found = Vec::with_capacity(usernames.len());
    for name in usernames {
        found.push(
            store
                .get_user_by_username(name)
                .await
                .expect("get_user_by_username")
                .is_some(),
        );
    }
    found
}

async fn follow(store: &impl GraphStore, follower: u64, followee: u64) -> FollowChange {
    store.follow(follower, followee).await.expect("follow")
}

async fn unfollow(store: &impl GraphStore, follower: u64, followee: u64) -> FollowChange {
    store.unfollow(follower, followee).await.expect("unfollow")
}

async fn counts(store: &impl GraphStore, id: u64) -> FollowCounts {
    store
        .follow_counts(&[id])
        .await
        .expect("follow_counts")
        .pop()
        .flatten()
        .expect("the user exists")
}

/// Every page of `user`'s followers (or, with `Some(min)`, following) in `limit`s.
async fn all_pages(
    store: &impl GraphStore,
    user: u64,
    limit: usize,
    following_min: Option<u64>,
) -> Vec<FollowPage> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let query = PageQuery { after, limit };
        let page = match following_min {
            None => store.list_followers(user, query).await,
            Some(min) => store.list_following(user, query, min).await,
        }
        .expect("list");
        assert!(
            page.edges.len() <= limit,
            "a page holds at most `limit` edges"
        );
        let next = page.next;
        pages.push(page);
        match next {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 10_000, "paging does not terminate");
    }
}

fn user_ids(pages: &[FollowPage]) -> Vec<u64> {
    pages
        .iter()
        .flat_map(|page| page.edges.iter().map(|edge| edge.user_id))
        .collect()
}

/// The follow events in `outbox` between users of `involved`, with their entries.
async fn follow_events(outbox: &dyn Outbox, involved: &[u64]) -> Vec<(OutboxEntry, Event)> {
    outbox
        .pending(OUTBOX_SCAN)
        .await
        .expect("outbox pending")
        .into_iter()
        .filter_map(|entry| {
            let event =
                Event::decode(entry.payload.as_slice()).expect("outbox payload is an Event");
            let pair = match &event.payload {
                Some(event::Payload::Followed(e)) => (e.follower_id, e.followee_id),
                Some(event::Payload::Unfollowed(e)) => (e.follower_id, e.followee_id),
                _ => return None,
            };
            (involved.contains(&pair.0) && involved.contains(&pair.1)).then_some((entry, event))
        })
        .collect()
}

/// Usernames are unique ignoring ASCII case and looked up ignoring case; a
/// user reads back as created, its creation time taken from its id.
pub async fn usernames_are_unique_ignoring_case(store: &impl GraphStore) {
    let name = username("Alice");
    let alice = store
        .create_user(NewUser {
            username: name.clone(),
            display_name: "Alice A.".into(),
            bio: "likes graphs".into(),
        })
        .await
        .unwrap();
    assert_eq!(alice.username, name, "kept as typed");
    assert_eq!(
        alice.created_at_ms,
        warble_mesh::snowflake::decode(alice.id).unix_ms as i64
    );
    let shouted = store
        .create_user(NewUser {
            username: name.to_ascii_uppercase(),
            display_name: "Impostor".into(),
            bio: String::new(),
        })
        .await;
    assert!(
        matches!(shouted, Err(GraphError::AlreadyExists(_))),
        "{shouted:?}"
    );
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    assert_eq!(
        store.get_user_by_username(&mixed).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .get_user_by_username(&username("nobody"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(counts(store, alice.id).await, FollowCounts::default());
}

/// Batch lookups answer once per requested id, in order, repeats included,
/// `None` for ids that are no user.
pub async fn batch_lookups_answer_in_request_order(store: &impl GraphStore) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let missing = b.id.wrapping_add(1_000_003);
    assert_eq!(
        store.get_users(&[b.id, missing, a.id, b.id]).await.unwrap(),
        vec![Some(b.clone()), None, Some(a.clone()), Some(b.clone())]
    );
    assert!(store.get_users(&[]).await.unwrap().is_empty());
    follow(store, a.id, b.id).await;
    assert_eq!(
        store.follow_counts(&[b.id, missing, a.id]).await.unwrap(),
        vec![
            Some(FollowCounts {
                followers: 1,
                following: 0
            }),
            None,
            Some(FollowCounts {
                followers: 0,
                following: 1
            })
        ]
    );
}

/// Following twice changes nothing the second time; unfollowing likewise;
/// counts are exact after every call and never negative.
pub async fn follow_and_unfollow_are_idempotent_with_exact_counts(store: &impl GraphStore) {
    let alice = user(store, "alice").await.id;
    let bob = user(store, "bob").await.id;
    let carol = user(store, "carol").await.id;
    let change = |changed, followee_followers, follower_following| FollowChange {
        changed,
        followee_followers,
        follower_following,
    };
    assert_eq!(
        unfollow(store, alice, bob).await,
        change(false, 0, 0),
        "unfollowing someone never followed changes nothing"
    );
    assert_eq!(follow(store, alice, bob).await, change(true, 1, 1));
    assert_eq!(follow(store, alice, bob).await, change(false, 1, 1));
    assert_eq!(follow(store, carol, bob).await, change(true, 2, 1));
    assert_eq!(follow(store, alice, carol).await, change(true, 1, 2));
    assert_eq!(unfollow(store, alice, bob).await, change(true, 1, 1));
    assert_eq!(unfollow(store, alice, bob).await, change(false, 1, 1));
    assert_eq!(
        counts(store, bob).await,
        FollowCounts {
            followers: 1,
            following: 0
        }
    );
    assert_eq!(
        counts(store, alice).await,
        FollowCounts {
            followers: 0,
            following: 1
        }
    );
    // Re-following after an unfollow is a new follow.
    assert_eq!(follow(store, alice, bob).await, change(true, 2, 2));
}

/// A follow or unfollow naming a missing user is `NotFound`, as are the
/// lists of a missing user; no one follows themself.
pub async fn follows_need_both_users_and_two_different_ones(store: &impl GraphStore) {
    let alice = user(store, "alice").await.id;
    let ghost = alice.wrapping_add(7_777_777);
    for result in [
        store.follow(alice, ghost).await,
        store.follow(ghost, alice).await,
        store.unfollow(alice, ghost).await,
        store.unfollow(ghost, alice).await,
    ] {
        assert!(matches!(result, Err(GraphError::NotFound(_))), "{result:?}");
    }
    let page = PageQuery {
        after: None,
        limit: 10,
    };
    assert!(matches!(
        store.list_followers(ghost, page).await,
        Err(GraphError::NotFound(_))
    ));
    assert!(matches!(
        store.list_following(ghost, page, 0).await,
        Err(GraphError::NotFound(_))
    ));
    assert!(store.follow(alice, alice).await.is_err(), "no self-follows");
    assert_eq!(counts(store, alice).await, FollowCounts::default());
}

/// Many follows of one user at once, each repeated, and follows in both
/// directions between the same two users, leave exact counts.
pub async fn concurrent_follows_count_exactly(store: &impl GraphStore) {
    let star = user(store, "star").await.id;
    let fans = users(store, "fan", 12).await;
    let follows = fans.iter().chain(&fans).map(|&fan| store.follow(fan, star));
    let changed = futures::future::join_all(follows)
        .await
        .into_iter()
        .map(|result| result.expect("follow").changed)
        .filter(|&changed| changed)
        .count();
    assert_eq!(changed, fans.len(), "each fan's follow takes effect once");
    assert_eq!(counts(store, star).await.followers, fans.len() as u64);

    // Two users following each other at the same moment (a lock-order trap).
    let (a, b) = (fans[0], fans[1]);
    let (ab, ba) = tokio::join!(store.follow(a, b), store.follow(b, a));
    assert!(ab.unwrap().changed && ba.unwrap().changed);
    assert_eq!(
        counts(store, a).await,
        FollowCounts {
            followers: 1,
            following: 2
        }
    );

    let unfollows = fans
        .iter()
        .chain(&fans)
        .map(|&fan| store.unfollow(fan, star));
    for result in futures::future::join_all(unfollows).await {
        result.expect("unfollow");
    }
    assert_eq!(counts(store, star).await.followers, 0);
    for &fan in &fans[2..] {
        assert_eq!(counts(store, fan).await.following, 0);
    }
}

/// Followers page newest follow first; paging while others follow,
/// unfollow and re-follow returns every steady follower exactly once, never
/// anyone twice, no one who left before being reached, and no one who
/// followed after paging began; positions strictly decrease.
pub async fn paging_is_stable_while_the_list_changes(store: &impl GraphStore) {
    let target = user(store, "target").await.id;
    let leaving = users(store, "leave", 3).await;
    let steady = users(store, "steady", 9).await;
    let newcomers = users(store, "new", 4).await;
    // The leavers follow first, so they sit at the end of the list, unseen
    // until the last page.
    for &follower in leaving.iter().chain(&steady) {
        follow(store, follower, target).await;
    }
    let first = store
        .list_followers(
            target,
            PageQuery {
                after: None,
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.edges.iter().map(|e| e.user_id).collect::<Vec<_>>(),
        vec![steady[8], steady[7], steady[6]],
        "most recent follow first"
    );
    let mut seen: Vec<u64> = first.edges.iter().map(|e| e.user_id).collect();
    let mut positions: Vec<EdgePosition> = first.edges.iter().map(|e| e.position).collect();
    let mut joined = Vec::new();
    let mut after = first.next;
    let mut step = 0;
    while let Some(cursor) = after {
        // Between pages: someone new follows, a follower not reached yet
        // leaves, and (once) someone already seen unfollows and follows
        // again, which makes theirs the newest follow.
        if let Some(&newcomer) = newcomers.get(step) {
            follow(store, newcomer, target).await;
            joined.push(newcomer);
        }
        if let Some(&leaver) = leaving.get(step) {
            unfollow(store, leaver, target).await;
        }
        if step == 1 {
            unfollow(store, seen[0], target).await;
            follow(store, seen[0], target).await;
        }
        step += 1;
        let page = store
            .list_followers(
                target,
                PageQuery {
                    after: Some(cursor),
                    limit: 3,
                },
            )
            .await
            .unwrap();
        seen.extend(page.edges.iter().map(|e| e.user_id));
        positions.extend(page.edges.iter().map(|e| e.position));
        after = page.next;
        assert!(step < 100, "paging does not terminate");
    }
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no one twice: {seen:?}");
    for follower in &steady {
        assert!(unique.contains(follower), "{follower} was skipped");
    }
    for gone in leaving.iter().chain(&joined) {
        assert!(
            !unique.contains(gone),
            "{gone} left before being reached, or followed after paging began"
        );
    }
    assert!(
        positions.windows(2).all(|pair| pair[0] > pair[1]),
        "positions strictly decrease"
    );

    // A fresh listing has everyone who follows now, each edge carrying the
    // follow time taken from its sequence id.
    let fresh = all_pages(store, target, 4, None).await;
    let now: HashSet<u64> = user_ids(&fresh).into_iter().collect();
    let expected: HashSet<u64> = steady.iter().chain(&joined).copied().collect();
    assert_eq!(now, expected);
    for edge in fresh.iter().flat_map(|page| &page.edges) {
        assert_eq!(
            edge.followed_at_ms,
            warble_mesh::snowflake::decode(edge.position.follow_seq).unix_ms as i64
        );
    }
}

/// A following list keeps only followees with at least `min_followers`
/// followers; paged in any size it returns each match exactly once,
/// newest follow first, even when pages come back short.
pub async fn following_filtered_by_min_followers_returns_each_match_once(store: &impl GraphStore) {
    let reader = user(store, "reader").await.id;
    let fans = users(store, "fan", 3).await;
    let authors = users(store, "author", 8).await;
    // Author i has i % 4 followers besides the reader.
    for (i, &author) in authors.iter().enumerate() {
        for &fan in fans.iter().take(i % 4) {
            follow(store, fan, author).await;
        }
    }
    for &author in &authors {
        follow(store, reader, author).await;
    }
    let newest_first: Vec<u64> = authors.iter().rev().copied().collect();
    let followers_of: HashMap<u64, u64> = authors
        .iter()
        .enumerate()
        .map(|(i, &author)| (author, (i % 4) as u64 + 1))
        .collect();
    for min in [0, 1, 3, 4, 5] {
        let expected: Vec<u64> = newest_first
            .iter()
            .copied()
            .filter(|author| followers_of[author] >= min)
            .collect();
        for limit in [1, 2, 5, 100] {
            let pages = all_pages(store, reader, limit, Some(min)).await;
            assert_eq!(user_ids(&pages), expected, "min {min}, limit {limit}");
        }
    }
}

/// `is_following` answers each (follower, followee) pair in order,
/// directions distinct, missing users simply not following.
pub async fn is_following_answers_each_pair_in_order(store: &impl GraphStore) {
    let a = user(store, "a").await.id;
    let b = user(store, "b").await.id;
    let c = user(store, "c").await.id;
    follow(store, a, b).await;
    follow(store, c, b).await;
    let ghost = c.wrapping_add(99_999_989);
    assert_eq!(
        store
            .is_following(&[(a, b), (b, a), (c, b), (a, c), (ghost, b), (a, b)])
            .await
            .unwrap(),
        vec![true, false, true, false, false, true]
    );
    assert!(store.is_following(&[]).await.unwrap().is_empty());
}

/// Every follow and unfollow that changed the graph leaves exactly one
/// event in the outbox, keyed by the followee, carrying the counts after
/// it; calls that changed nothing leave none; published entries leave.
pub async fn every_follow_change_leaves_exactly_one_event(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let alice = user(store, "alice").await.id;
    let bob = user(store, "bob").await.id;
    let carol = user(store, "carol").await.id;
    follow(store, carol, bob).await;
    follow(store, alice, bob).await;
    follow(store, alice, bob).await;
    unfollow(store, alice, bob).await;
    unfollow(store, alice, bob).await;
    assert!(store.follow(alice, alice).await.is_err());

    let events = follow_events(outbox, &[alice, bob, carol]).await;
    assert_eq!(events.len(), 3, "{events:?}");
    for (entry, _) in &events {
        assert_eq!(entry.stream, DOMAIN_EVENTS_STREAM);
        assert_eq!(entry.key, bob, "follow events are keyed by the followee");
    }
    let edges = store
        .list_followers(
            bob,
            PageQuery {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .edges;
    let carol_edge = edges.iter().find(|e| e.user_id == carol).unwrap();
    let ids: HashSet<u64> = events.iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(ids.len(), 3, "event ids are unique");

    let by_pair = |follower: u64| {
        events
            .iter()
            .filter(move |(_, e)| match &e.payload {
                Some(event::Payload::Followed(f)) => f.follower_id == follower,
                Some(event::Payload::Unfollowed(u)) => u.follower_id == follower,
                _ => false,
            })
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
    };
    let carols = by_pair(carol);
    assert_eq!(carols.len(), 1);
    assert_eq!(
        carols[0].payload,
        Some(event::Payload::Followed(Followed {
            follower_id: carol,
            followee_id: bob,
            followed_at_ms: carol_edge.followed_at_ms,
            followee_followers_count: 1,
            follower_following_count: 1,
        }))
    );
    assert_eq!(carols[0].occurred_at_ms, carol_edge.followed_at_ms);
    let alices = by_pair(alice);
    assert_eq!(alices.len(), 2, "one follow and one unfollow");
    assert!(
        matches!(
            &alices[0].payload,
            Some(event::Payload::Followed(Followed {
                followee_followers_count: 2,
                follower_following_count: 1,
                ..
            }))
        ),
        "{:?}",
        alices[0]
    );
    match &alices[1].payload {
        Some(event::Payload::Unfollowed(Unfollowed {
            follower_id,
            followee_id,
            unfollowed_at_ms,
            followee_followers_count,
            follower_following_count,
        })) => {
            assert_eq!((*follower_id, *followee_id), (alice, bob));
            assert_eq!(
                (*followee_followers_count, *follower_following_count),
                (1, 0)
            );
            assert_eq!(*unfollowed_at_ms, alices[1].occurred_at_ms);
        }
        other => panic!("expected Unfollowed, got {other:?}"),
    }
    assert!(
        alices[0].event_id < alices[1].event_id,
        "one followee's events come in the order they happened"
    );

    let handles: Vec<String> = events
        .iter()
        .map(|(entry, _)| entry.handle.clone())
        .collect();
    outbox.mark_published(&handles).await.unwrap();
    assert!(follow_events(outbox, &[alice, bob, carol]).await.is_empty());
}

/// A user batch creates every user, in request order, each as
/// `create_user` would; a username taken by an existing user or repeated
/// within the batch (ignoring case) fails the batch naming that entry and
/// creates no one; an empty batch is fine.
pub async fn a_user_batch_creates_everyone_in_order_or_no_one(store: &impl GraphStore) {
    let names: Vec<String> = ["ann", "ben", "cat"].map(username).to_vec();
    let created = store
        .create_users(names.iter().map(|name| new_user(name)).collect())
        .await
        .expect("create_users");
    assert_eq!(
        created
            .iter()
            .map(|u| u.username.clone())
            .collect::<Vec<_>>(),
        names,
        "in request order"
    );
    let ids: Vec<u64> = created.iter().map(|u| u.id).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        3,
        "distinct ids: {ids:?}"
    );
    assert_eq!(
        store.get_users(&ids).await.unwrap(),
        created.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    for user in &created {
        assert_eq!(
            user.created_at_ms,
            warble_mesh::snowflake::decode(user.id).unix_ms as i64
        );
        assert_eq!(user.display_name, format!("{} display", user.username));
        assert_eq!(counts(store, user.id).await, FollowCounts::default());
    }

    // Entry 2 repeats entry 0 in another case: nothing is created.
    let fresh: Vec<String> = ["dan", "eve"].map(username).to_vec();
    let repeated = store
        .create_users(vec![
            new_user(&fresh[0]),
            new_user(&fresh[1]),
            new_user(&fresh[0].to_ascii_uppercase()),
        ])
        .await;
    match repeated {
        Err(GraphError::AlreadyExists(message)) => {
            assert!(message.starts_with("users[2]: "), "{message}")
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(exist(store, &fresh).await, vec![false, false]);

    // Entry 1 is an existing user's name: nothing is created either.
    let taken = store
        .create_users(vec![
            new_user(&fresh[0]),
            new_user(&names[1].to_ascii_uppercase()),
            new_user(&fresh[1]),
        ])
        .await;
    match taken {
        Err(GraphError::AlreadyExists(message)) => {
            assert!(message.starts_with("users[1]: "), "{message}")
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(exist(store, &fresh).await, vec![false, false]);

    assert!(store.create_users(Vec::new()).await.unwrap().is_empty());
}

/// A follow batch applies its pairs in order: each answer is what a single
/// follow would have answered at that point (an existing or repeated follow
/// is unchanged), counts end exact, each follow made leaves exactly one
/// `Followed` carrying the counts after it, and the follows list newest
/// (latest in the batch) first.
pub async fn a_follow_batch_counts_and_publishes_like_single_follows(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let star = user(store, "star").await.id;
    let fans = users(store, "fan", 3).await;
    let (a, b) = (user(store, "a").await.id, user(store, "b").await.id);
    follow(store, fans[0], star).await;
    let changes = store
        .follow_many(&[
            (fans[0], star), // already a follow
            (fans[1], star),
            (fans[2], star),
            (fans[1], star), // repeats an earlier pair
            (star, fans[1]),
            (a, b),
        ])
        .await
        .expect("follow_many");
    let change = |changed, followee_followers, follower_following| FollowChange {
        changed,
        followee_followers,
        follower_following,
    };
    assert_eq!(
        changes,
        vec![
            change(false, 1, 1),
            change(true, 2, 1),
            change(true, 3, 1),
            change(false, 3, 1),
            change(true, 1, 1),
            change(true, 1, 1),
        ]
    );
    let expected_counts = |followers, following| FollowCounts {
        followers,
        following,
    };
    assert_eq!(counts(store, star).await, expected_counts(3, 1));
    assert_eq!(counts(store, fans[1]).await, expected_counts(1, 1));
    assert_eq!(counts(store, fans[2]).await, expected_counts(0, 1));
    assert_eq!(counts(store, b).await, expected_counts(1, 0));
    assert_eq!(
        store
            .is_following(&[(fans[1], star), (star, fans[1]), (b, a)])
            .await
            .unwrap(),
        vec![true, true, false]
    );
    let listed = all_pages(store, star, 10, None).await;
    assert_eq!(user_ids(&listed), vec![fans[2], fans[1], fans[0]]);

    // One event for the single follow, one per follow the batch made.
    let mut involved = fans.clone();
    involved.extend([star, a, b]);
    let events = follow_events(outbox, &involved).await;
    let followed: Vec<(u64, Followed)> = events
        .iter()
        .map(|(entry, event)| match &event.payload {
            Some(event::Payload::Followed(f)) => {
                assert_eq!(event.occurred_at_ms, f.followed_at_ms);
                (entry.key, *f)
            }
            other => panic!("expected Followed, got {other:?}"),
        })
        .collect();
    let summary: Vec<(u64, u64, u64, u64, u64)> = followed
        .iter()
        .map(|(key, f)| {
            (
                *key,
                f.follower_id,
                f.followee_id,
                f.followee_followers_count,
                f.follower_following_count,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (star, fans[0], star, 1, 1),
            (star, fans[1], star, 2, 1),
            (star, fans[2], star, 3, 1),
            (fans[1], star, fans[1], 1, 1),
            (b, a, b, 1, 1),
        ],
        "keyed by the followee, in the order the follows happened"
    );
    let ids: HashSet<u64> = events.iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    for edge in listed.iter().flat_map(|page| &page.edges) {
        let (_, event) = followed
            .iter()
            .find(|(_, f)| f.follower_id == edge.user_id && f.followee_id == star)
            .expect("an event per follow");
        assert_eq!(event.followed_at_ms, edge.followed_at_ms);
    }
}

/// A follow batch naming a missing user, or holding a self-follow, fails
/// naming the first bad pair and changes nothing: no edge, no count, no event.
pub async fn a_follow_batch_with_a_bad_pair_follows_nothing(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let a = user(store, "a").await.id;
    let b = user(store, "b").await.id;
    let c = user(store, "c").await.id;
    let ghost = c.wrapping_add(5_555_557);
    for bad in [(a, ghost), (ghost, a)] {
        match store.follow_many(&[(a, b), (b, c), bad, (c, a)]).await {
            Err(GraphError::NotFound(message)) => {
                assert!(message.starts_with("pairs[2]: "), "{message}")
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_invalid(
        store.follow_many(&[(a, b), (c, c), (b, b)]).await,
        "pairs[1].followee_id",
    );
    for user in [a, b, c] {
        assert_eq!(counts(store, user).await, FollowCounts::default());
    }
    assert_eq!(
        store.is_following(&[(a, b), (b, c)]).await.unwrap(),
        vec![false, false]
    );
    assert!(follow_events(outbox, &[a, b, c, ghost]).await.is_empty());
    assert!(store.follow_many(&[]).await.unwrap().is_empty());
}

/// A write batch holds at most [`MAX_WRITE_BATCH`] entries: one more is
/// `InvalidArgument` on the whole list and writes nothing.
pub async fn write_batches_are_limited_in_size(store: &impl GraphStore) {
    let names: Vec<String> = (0..=MAX_WRITE_BATCH).map(|_| username("many")).collect();
    assert_invalid(
        store
            .create_users(names.iter().map(|name| new_user(name)).collect())
            .await,
        "users",
    );
    assert_eq!(
        exist(store, &[names[0].clone(), names[MAX_WRITE_BATCH].clone()]).await,
        vec![false, false]
    );
    let created = store
        .create_users(
            names[..MAX_WRITE_BATCH]
                .iter()
                .map(|name| new_user(name))
                .collect(),
        )
        .await
        .expect("a full batch");
    assert_eq!(created.len(), MAX_WRITE_BATCH);

    let (a, b) = (created[0].id, created[1].id);
    assert_invalid(
        store.follow_many(&vec![(a, b); MAX_WRITE_BATCH + 1]).await,
        "pairs",
    );
    assert_eq!(counts(store, b).await, FollowCounts::default());
    let changes = store
        .follow_many(&vec![(a, b); MAX_WRITE_BATCH])
        .await
        .expect("a full batch");
    assert_eq!(changes.len(), MAX_WRITE_BATCH);
    assert_eq!(
        changes.iter().filter(|change| change.changed).count(),
        1,
        "only the first of a repeated pair changes anything"
    );
    assert_eq!(counts(store, b).await.followers, 1);
}

/// The clock the mute checks start from; each check moves `now` forward by
/// hand rather than waiting.
fn now() -> i64 {
    warble_mesh::time::now_ms() as i64
}

/// The users an event is about.
fn users_of(event: &Event) -> Vec<u64> {
    use event::Payload;
    match &event.payload {
        Some(Payload::Followed(e)) => vec![e.follower_id, e.followee_id],
        Some(Payload::Unfollowed(e)) => vec![e.follower_id, e.followee_id],
        Some(Payload::UserCreated(e)) => vec![e.user_id],
        Some(Payload::ProfileUpdated(e)) => vec![e.user_id],
        Some(Payload::Blocked(e)) => vec![e.blocker_id, e.blocked_id],
        Some(Payload::Unblocked(e)) => vec![e.blocker_id, e.blocked_id],
        Some(Payload::Muted(e)) => vec![e.muter_id, e.muted_id],
        Some(Payload::Unmuted(e)) => vec![e.muter_id, e.muted_id],
        _ => Vec::new(),
    }
}

/// Takes the events in `outbox` about users of `involved` only, in
/// publication order, with their keys, and marks them published, so the
/// next call sees only events published after this one.
async fn take_events(outbox: &dyn Outbox, involved: &[u64]) -> Vec<(u64, Event)> {
    let mut taken: Vec<(OutboxEntry, Event)> = outbox
        .pending(OUTBOX_SCAN)
        .await
        .expect("outbox pending")
        .into_iter()
        .filter_map(|entry| {
            let event =
                Event::decode(entry.payload.as_slice()).expect("outbox payload is an Event");
            let users = users_of(&event);
            (!users.is_empty() && users.iter().all(|user| involved.contains(user)))
                .then_some((entry, event))
        })
        .collect();
    // Both outboxes hand entries out in publication order; sorting by event
    // id (drawn in that order within a store) makes it explicit.
    taken.sort_by_key(|(_, event)| event.event_id);
    let handles: Vec<String> = taken
        .iter()
        .map(|(entry, _)| entry.handle.clone())
        .collect();
    if !handles.is_empty() {
        outbox.mark_published(&handles).await.unwrap();
    }
    taken
        .into_iter()
        .map(|(entry, event)| (entry.key, event))
        .collect()
}

/// Users created for a check whose `UserCreated` events are already taken,
/// so the check sees only the events it causes.
async fn quiet_users(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
    prefix: &str,
    count: usize,
) -> Vec<u64> {
    let ids = users(store, prefix, count).await;
    take_events(outbox, &ids).await;
    ids
}

/// Asserts `result` failed with `PermissionDenied`, its message revealing
/// no more than that the follow is refused.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, GraphError>) {
    match result {
        Err(GraphError::PermissionDenied(message)) => {
            assert!(message.contains("cannot follow"), "{message}");
            assert!(!message.contains("block"), "says who blocked: {message}");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

fn everything(limit: usize) -> PageQuery {
    PageQuery { after: None, limit }
}

/// Every page of `user`'s block list (or, with `Some(now)`, mute list) in `limit`s.
async fn all_relation_pages(
    store: &impl GraphStore,
    user: u64,
    limit: usize,
    mutes_at: Option<i64>,
) -> Vec<RelationPage> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let query = PageQuery { after, limit };
        let page = match mutes_at {
            None => store.list_blocked(user, query).await,
            Some(now) => store.list_muted(user, query, now).await,
        }
        .expect("list");
        assert!(
            page.edges.len() <= limit,
            "a page holds at most `limit` edges"
        );
        let next = page.next;
        pages.push(page);
        match next {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 10_000, "paging does not terminate");
    }
}

fn relation_ids(pages: &[RelationPage]) -> Vec<u64> {
    pages
        .iter()
        .flat_map(|page| page.edges.iter().map(|edge| edge.user_id))
        .collect()
}

/// `create_user` and each user of `create_users` publish `UserCreated`,
/// keyed by the new user, carrying the profile as created; a batch that
/// fails publishes nothing.
pub async fn every_new_user_publishes_user_created(store: &impl GraphStore, outbox: &dyn Outbox) {
    let alice = user(store, "alice").await;
    let batch = store
        .create_users(
            ["ann", "ben"]
                .map(username)
                .map(|name| new_user(&name))
                .to_vec(),
        )
        .await
        .expect("create_users");
    let mut created = vec![alice.clone()];
    created.extend(batch.iter().cloned());
    let ids: Vec<u64> = created.iter().map(|u| u.id).collect();
    let events = take_events(outbox, &ids).await;
    assert_eq!(events.len(), 3, "{events:?}");
    for ((key, event), user) in events.iter().zip(&created) {
        assert_eq!(*key, user.id, "keyed by the new user");
        assert_eq!(event.occurred_at_ms, user.created_at_ms);
        assert_eq!(
            event.payload,
            Some(event::Payload::UserCreated(UserCreated {
                user_id: user.id,
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                bio: user.bio.clone(),
                created_at_ms: user.created_at_ms,
            }))
        );
    }
    let ids: HashSet<u64> = events.iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(ids.len(), 3, "event ids are unique");

    // A batch repeating a username creates no one and publishes nothing.
    let fresh = username("cat");
    let failed = store
        .create_users(vec![
            new_user(&fresh),
            new_user(&fresh.to_ascii_uppercase()),
        ])
        .await;
    assert!(
        matches!(failed, Err(GraphError::AlreadyExists(_))),
        "{failed:?}"
    );
    let left = outbox.pending(OUTBOX_SCAN).await.unwrap();
    assert!(
        !left.iter().any(|entry| {
            let event = Event::decode(entry.payload.as_slice()).unwrap();
            matches!(&event.payload, Some(event::Payload::UserCreated(e)) if e.username.eq_ignore_ascii_case(&fresh))
        }),
        "a failed batch publishes nothing"
    );
}

/// Usernames resolve in one batch, ignoring case, one answer per name in
/// request order, repeats answered in place, unknown names `None`.
pub async fn usernames_resolve_in_a_batch_ignoring_case(store: &impl GraphStore) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let names = vec![
        a.username.to_ascii_uppercase(),
        username("nobody"),
        b.username.clone(),
        a.username.to_ascii_lowercase(),
    ];
    assert_eq!(
        store.get_users_by_usernames(&names).await.unwrap(),
        vec![Some(a.clone()), None, Some(b), Some(a)]
    );
    assert!(store.get_users_by_usernames(&[]).await.unwrap().is_empty());
}

/// A profile edit changes only the fields it sets, answers the whole
/// profile after, says whether anything changed, and publishes
/// `ProfileUpdated` with the whole profile only then; reads see the edit.
pub async fn profile_edits_change_only_the_fields_set_and_publish_when_changed(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let original = user(store, "ada").await;
    assert_eq!(
        (
            original.location.as_str(),
            original.website.as_str(),
            original.verified,
            original.avatar_media_id
        ),
        ("", "", false, 0),
        "new users have no location, website, mark or avatar"
    );
    take_events(outbox, &[original.id]).await;

    let edit = ProfileUpdate {
        bio: Some("counts things".into()),
        location: Some("London".into()),
        ..ProfileUpdate::default()
    };
    let change = store
        .update_profile(original.id, edit.clone())
        .await
        .unwrap();
    let expected = User {
        bio: "counts things".into(),
        location: "London".into(),
        ..original.clone()
    };
    assert!(change.changed);
    assert_eq!(change.user, expected, "only the fields set change");
    assert_eq!(
        store.get_users(&[original.id]).await.unwrap(),
        vec![Some(expected.clone())]
    );
    assert_eq!(
        store
            .get_user_by_username(&original.username)
            .await
            .unwrap(),
        Some(expected.clone())
    );

    // The same values again, or nothing set: unchanged, no event.
    let again = store.update_profile(original.id, edit).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.user, expected);
    let nothing = store
        .update_profile(original.id, ProfileUpdate::default())
        .await
        .unwrap();
    assert!(!nothing.changed);

    // Clearing a field and setting another.
    let cleared = store
        .update_profile(
            original.id,
            ProfileUpdate {
                display_name: Some("Ada L.".into()),
                location: Some(String::new()),
                website: Some("https://ada.example".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    let final_profile = User {
        display_name: "Ada L.".into(),
        location: String::new(),
        website: "https://ada.example".into(),
        ..expected.clone()
    };
    assert!(cleared.changed);
    assert_eq!(cleared.user, final_profile);

    let events = take_events(outbox, &[original.id]).await;
    let updates: Vec<ProfileUpdated> = events
        .iter()
        .map(|(key, event)| {
            assert_eq!(*key, original.id, "keyed by the user");
            match &event.payload {
                Some(event::Payload::ProfileUpdated(update)) => {
                    assert_eq!(update.updated_at_ms, event.occurred_at_ms);
                    update.clone()
                }
                other => panic!("expected ProfileUpdated, got {other:?}"),
            }
        })
        .collect();
    let whole = |user: &User, updated_at_ms| ProfileUpdated {
        user_id: user.id,
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        bio: user.bio.clone(),
        location: user.location.clone(),
        website: user.website.clone(),
        verified: user.verified,
        updated_at_ms,
        avatar_media_id: user.avatar_media_id,
    };
    assert_eq!(
        updates.len(),
        2,
        "one per edit that changed something: {updates:?}"
    );
    assert_eq!(updates[0], whole(&expected, updates[0].updated_at_ms));
    assert_eq!(updates[1], whole(&final_profile, updates[1].updated_at_ms));

    let ghost = original.id.wrapping_add(3_333_331);
    let missing = store.update_profile(ghost, ProfileUpdate::default()).await;
    assert!(
        matches!(missing, Err(GraphError::NotFound(_))),
        "{missing:?}"
    );
}

/// `set_verified` sets and clears the mark, says whether it changed and
/// publishes `ProfileUpdated` only then; profile edits never touch it.
pub async fn the_verified_mark_changes_only_through_set_verified(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let user = user(store, "vip").await;
    take_events(outbox, &[user.id]).await;
    let set = store.set_verified(user.id, true).await.unwrap();
    assert!(set.changed);
    assert_eq!(
        set.user,
        User {
            verified: true,
            ..user.clone()
        }
    );
    assert!(!store.set_verified(user.id, true).await.unwrap().changed);
    let edited = store
        .update_profile(
            user.id,
            ProfileUpdate {
                bio: Some("verified".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(edited.user.verified, "an edit keeps the mark");
    let cleared = store.set_verified(user.id, false).await.unwrap();
    assert!(cleared.changed && !cleared.user.verified);
    assert_eq!(
        store.get_users(&[user.id]).await.unwrap()[0]
            .as_ref()
            .map(|u| u.verified),
        Some(false)
    );
    let marks: Vec<bool> = take_events(outbox, &[user.id])
        .await
        .into_iter()
        .map(|(_, event)| match event.payload {
            Some(event::Payload::ProfileUpdated(update)) => update.verified,
            other => panic!("expected ProfileUpdated, got {other:?}"),
        })
        .collect();
    assert_eq!(
        marks,
        vec![true, true, false],
        "set, edit, clear; the repeat published nothing"
    );
    let ghost = user.id.wrapping_add(3_333_331);
    let missing = store.set_verified(ghost, true).await;
    assert!(
        matches!(missing, Err(GraphError::NotFound(_))),
        "{missing:?}"
    );
}

/// An avatar is a media id set through a profile edit: every read sees it,
/// other edits keep it, a new id replaces it and 0 clears it. Setting the
/// avatar it already has changes nothing and publishes nothing; every edit
/// that changed something publishes `ProfileUpdated` carrying the avatar
/// after it. Ids round-trip bit for bit, the top bit included.
pub async fn an_avatar_is_set_changed_and_cleared_publishing_only_on_change(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let original = user(store, "face").await;
    let other = user(store, "other").await;
    take_events(outbox, &[original.id, other.id]).await;
    let avatar = |avatar_media_id| ProfileUpdate {
        avatar_media_id: Some(avatar_media_id),
        ..ProfileUpdate::default()
    };
    let (first, second) = (0x0123_4567_89ab_cdef_u64, 0xfedc_ba98_7654_3210_u64);

    let set = store
        .update_profile(original.id, avatar(first))
        .await
        .unwrap();
    let expected = User {
        avatar_media_id: first,
        ..original.clone()
    };
    assert!(set.changed);
    assert_eq!(set.user, expected, "only the avatar changes");
    assert_eq!(
        store.get_users(&[other.id, original.id]).await.unwrap(),
        vec![Some(other.clone()), Some(expected.clone())],
        "one user's avatar is not another's"
    );
    assert_eq!(
        store
            .get_user_by_username(&original.username.to_ascii_uppercase())
            .await
            .unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        store
            .get_users_by_usernames(&[original.username.clone(), other.username.clone()])
            .await
            .unwrap(),
        vec![Some(expected.clone()), Some(other.clone())]
    );
    let scanned = store
        .scan_users(Some(original.id - 1), 1)
        .await
        .expect("scan_users");
    assert_eq!(
        scanned.users.first().map(|entry| &entry.user),
        Some(&expected),
        "a scan reads the avatar too"
    );

    // The same avatar again: unchanged, no event.
    let again = store
        .update_profile(original.id, avatar(first))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.user, expected);

    // An edit of another field keeps the avatar.
    let edited = store
        .update_profile(
            original.id,
            ProfileUpdate {
                bio: Some("has a face".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    let expected = User {
        bio: "has a face".into(),
        ..expected
    };
    assert!(edited.changed);
    assert_eq!(edited.user, expected, "an edit keeps the avatar");

    // A new avatar replaces it, read back bit for bit.
    let changed = store
        .update_profile(original.id, avatar(second))
        .await
        .unwrap();
    let expected = User {
        avatar_media_id: second,
        ..expected
    };
    assert!(changed.changed);
    assert_eq!(changed.user, expected);
    assert_eq!(
        store.get_users(&[original.id]).await.unwrap(),
        vec![Some(expected.clone())]
    );

    // 0 clears it; clearing again changes nothing.
    let cleared = store.update_profile(original.id, avatar(0)).await.unwrap();
    let expected = User {
        avatar_media_id: 0,
        ..expected
    };
    assert!(cleared.changed);
    assert_eq!(cleared.user, expected);
    assert_eq!(
        store.get_users(&[original.id]).await.unwrap(),
        vec![Some(expected.clone())]
    );
    let cleared_again = store.update_profile(original.id, avatar(0)).await.unwrap();
    assert!(!cleared_again.changed);
    assert_eq!(cleared_again.user, expected);

    let avatars: Vec<u64> = take_events(outbox, &[original.id, other.id])
        .await
        .into_iter()
        .map(|(key, event)| {
            assert_eq!(key, original.id, "keyed by the user");
            match event.payload {
                Some(event::Payload::ProfileUpdated(update)) => {
                    assert_eq!(update.user_id, original.id);
                    update.avatar_media_id
                }
                other => panic!("expected ProfileUpdated, got {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        avatars,
        vec![first, first, second, 0],
        "set, edit, change, clear; the repeats published nothing"
    );
}

/// A block removes the follows between the two users, both ways, with
/// exact counts, in the same step: one `Unfollowed` per follow removed
/// (keyed by its followee, with the counts after it), then `Blocked`
/// (keyed by the blocked user). Follows with others are untouched.
pub async fn a_block_removes_follows_both_ways_with_exact_counts_and_events(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let ids = quiet_users(store, outbox, "u", 4).await;
    let (alice, bob, carol, dave) = (ids[0], ids[1], ids[2], ids[3]);
    for (follower, followee) in [
        (alice, bob),
        (bob, alice),
        (carol, alice),
        (alice, carol),
        (carol, bob),
        (bob, dave),
    ] {
        follow(store, follower, followee).await;
    }
    take_events(outbox, &ids).await;

    assert!(store.block(alice, bob).await.unwrap(), "a new block");
    assert_eq!(
        counts(store, alice).await,
        FollowCounts {
            followers: 1,
            following: 1
        }
    );
    assert_eq!(
        counts(store, bob).await,
        FollowCounts {
            followers: 1,
            following: 1
        }
    );
    assert_eq!(
        counts(store, carol).await,
        FollowCounts {
            followers: 1,
            following: 2
        }
    );
    assert_eq!(
        store
            .is_following(&[
                (alice, bob),
                (bob, alice),
                (carol, alice),
                (alice, carol),
                (carol, bob),
                (bob, dave)
            ])
            .await
            .unwrap(),
        vec![false, false, true, true, true, true]
    );
    assert_eq!(
        user_ids(&all_pages(store, alice, 10, None).await),
        vec![carol]
    );
    assert_eq!(
        user_ids(&all_pages(store, bob, 10, None).await),
        vec![carol]
    );

    let events = take_events(outbox, &ids).await;
    let summary: Vec<(u64, event::Payload)> = events
        .iter()
        .map(|(key, event)| (*key, event.payload.clone().expect("a payload")))
        .collect();
    assert_eq!(summary.len(), 3, "{summary:?}");
    let unfollowed = |key_and_payload: &(u64, event::Payload)| match key_and_payload {
        (key, event::Payload::Unfollowed(u)) => (
            *key,
            u.follower_id,
            u.followee_id,
            u.followee_followers_count,
            u.follower_following_count,
        ),
        other => panic!("expected Unfollowed, got {other:?}"),
    };
    let first = unfollowed(&summary[0]);
    let second = unfollowed(&summary[1]);
    // Either direction may go first: each follow moves its own two
    // counters, so each event carries the same counts either way.
    let mut removed = [first, second];
    removed.sort();
    let mut expected = [(bob, alice, bob, 1, 1), (alice, bob, alice, 1, 1)];
    expected.sort();
    assert_eq!(removed, expected, "{summary:?}");
    let (key, event::Payload::Blocked(blocked)) = &summary[2] else {
        panic!("expected Blocked last, got {:?}", summary[2]);
    };
    assert_eq!(*key, bob, "keyed by the blocked user");
    assert_eq!((blocked.blocker_id, blocked.blocked_id), (alice, bob));
    assert_eq!(blocked.blocked_at_ms, events[2].1.occurred_at_ms);
    let listed = store.list_blocked(alice, everything(10)).await.unwrap();
    assert_eq!(listed.edges.len(), 1);
    assert_eq!(listed.edges[0].user_id, bob);
    assert_eq!(
        listed.edges[0].since_ms, blocked.blocked_at_ms,
        "the list and the event agree"
    );
    assert_eq!(
        *blocked,
        Blocked {
            blocker_id: alice,
            blocked_id: bob,
            blocked_at_ms: blocked.blocked_at_ms
        }
    );

    // A block between users who follow neither way publishes only Blocked.
    assert!(store.block(dave, carol).await.unwrap());
    let events = take_events(outbox, &ids).await;
    assert!(
        matches!(events.as_slice(), [(key, Event { payload: Some(event::Payload::Blocked(_)), .. })] if *key == carol),
        "{events:?}"
    );
    assert_eq!(
        counts(store, carol).await,
        FollowCounts {
            followers: 1,
            following: 2
        }
    );
}

/// While either user blocks the other, neither can follow the other,
/// alone or in a batch (which then follows no one); nothing is written or
/// published. After an unblock they can follow again, but the follows the
/// block removed stay removed.
pub async fn follows_are_refused_both_ways_while_a_block_stands(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let ids = quiet_users(store, outbox, "u", 3).await;
    let (alice, bob, carol) = (ids[0], ids[1], ids[2]);
    follow(store, bob, alice).await;
    assert!(store.block(alice, bob).await.unwrap());
    take_events(outbox, &ids).await;

    assert_refused(store.follow(bob, alice).await);
    assert_refused(store.follow(alice, bob).await);
    match store
        .follow_many(&[(carol, alice), (bob, alice), (carol, bob)])
        .await
    {
        Err(GraphError::PermissionDenied(message)) => {
            assert!(message.starts_with("pairs[1]: "), "{message}")
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    match store.follow_many(&[(carol, bob), (alice, bob)]).await {
        Err(GraphError::PermissionDenied(message)) => {
            assert!(message.starts_with("pairs[1]: "), "{message}")
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    for user in [alice, bob, carol] {
        assert_eq!(counts(store, user).await, FollowCounts::default());
    }
    assert!(
        take_events(outbox, &ids).await.is_empty(),
        "nothing published"
    );
    // Unfollowing across a block is harmless: there is nothing to remove.
    assert!(!unfollow(store, bob, alice).await.changed);
    assert_eq!(
        store
            .blocks_between(&[(alice, bob), (bob, alice), (alice, carol)])
            .await
            .unwrap(),
        vec![true, true, false]
    );

    assert!(store.unblock(alice, bob).await.unwrap());
    assert_eq!(
        store.is_following(&[(bob, alice)]).await.unwrap(),
        vec![false],
        "follows removed by the block stay removed"
    );
    assert_eq!(
        store
            .blocks_between(&[(alice, bob), (bob, alice)])
            .await
            .unwrap(),
        vec![false, false]
    );
    assert!(follow(store, bob, alice).await.changed);
    assert!(follow(store, alice, bob).await.changed);
    let changes = store
        .follow_many(&[(carol, alice), (carol, bob)])
        .await
        .unwrap();
    assert!(changes.iter().all(|change| change.changed));
    assert_eq!(
        counts(store, alice).await,
        FollowCounts {
            followers: 2,
            following: 1
        }
    );
}

/// Block, unblock, mute and unmute are idempotent: each repeat answers
/// "unchanged" and publishes nothing; each change publishes exactly one
/// event, keyed by the blocked or muted user.
pub async fn blocks_and_mutes_are_idempotent_with_events_only_on_change(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let ids = quiet_users(store, outbox, "u", 2).await;
    let (alice, bob) = (ids[0], ids[1]);
    let now = now();
    assert!(
        !store.unblock(alice, bob).await.unwrap(),
        "no block to remove"
    );
    assert!(store.block(alice, bob).await.unwrap());
    assert!(!store.block(alice, bob).await.unwrap());
    assert!(store.unblock(alice, bob).await.unwrap());
    assert!(!store.unblock(alice, bob).await.unwrap());

    assert!(
        !store.unmute(alice, bob, now).await.unwrap(),
        "no mute to remove"
    );
    let indefinite = MuteChange {
        changed: true,
        expires_at_ms: None,
    };
    assert_eq!(
        store.mute(alice, bob, None, false, now).await.unwrap(),
        indefinite
    );
    assert_eq!(
        store.mute(alice, bob, None, false, now).await.unwrap(),
        MuteChange {
            changed: false,
            ..indefinite
        }
    );
    // Another setting, then a duration: each a change.
    assert!(
        store
            .mute(alice, bob, None, true, now)
            .await
            .unwrap()
            .changed
    );
    let until = now + 60_000;
    assert_eq!(
        store
            .mute(alice, bob, Some(until), true, now)
            .await
            .unwrap(),
        MuteChange {
            changed: true,
            expires_at_ms: Some(until)
        }
    );
    assert!(
        !store
            .mute(alice, bob, Some(until), true, now + 1)
            .await
            .unwrap()
            .changed
    );
    assert!(store.unmute(alice, bob, now).await.unwrap());
    assert!(!store.unmute(alice, bob, now).await.unwrap());

    let events = take_events(outbox, &ids).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|(key, event)| {
            assert_eq!(*key, bob, "keyed by the blocked or muted user");
            match &event.payload {
                Some(event::Payload::Blocked(_)) => "blocked",
                Some(event::Payload::Unblocked(e)) => {
                    assert_eq!((e.blocker_id, e.blocked_id), (alice, bob));
                    assert_eq!(e.unblocked_at_ms, event.occurred_at_ms);
                    "unblocked"
                }
                Some(event::Payload::Muted(_)) => "muted",
                Some(event::Payload::Unmuted(e)) => {
                    assert_eq!((e.muter_id, e.muted_id), (alice, bob));
                    assert_eq!(e.unmuted_at_ms, event.occurred_at_ms);
                    "unmuted"
                }
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        ["blocked", "unblocked", "muted", "muted", "muted", "unmuted"]
    );
    let mutes: Vec<Muted> = events
        .iter()
        .filter_map(|(_, event)| match &event.payload {
            Some(event::Payload::Muted(muted)) => {
                assert_eq!(muted.muted_at_ms, event.occurred_at_ms);
                Some(*muted)
            }
            _ => None,
        })
        .map(|muted| Muted {
            muted_at_ms: 0,
            ..muted
        })
        .collect();
    let muted = |expires_at_ms, hide_notifications| Muted {
        muter_id: alice,
        muted_id: bob,
        muted_at_ms: 0,
        expires_at_ms,
        hide_notifications,
    };
    assert_eq!(
        mutes,
        vec![muted(0, false), muted(0, true), muted(until, true)]
    );
}

/// Blocks and mutes relate two different existing users: oneself is
/// `InvalidArgument`, a missing user `NotFound`, a mute already lapsed
/// `InvalidArgument`; none writes anything.
pub async fn blocks_and_mutes_need_two_different_existing_users(store: &impl GraphStore) {
    let alice = user(store, "alice").await.id;
    let ghost = alice.wrapping_add(7_777_777);
    let now = now();
    assert_invalid(store.block(alice, alice).await, "blocked_id");
    assert_invalid(store.unblock(alice, alice).await, "blocked_id");
    assert_invalid(store.mute(alice, alice, None, false, now).await, "muted_id");
    assert_invalid(store.unmute(alice, alice, now).await, "muted_id");
    let results = [
        store.block(alice, ghost).await,
        store.block(ghost, alice).await,
        store.unblock(alice, ghost).await,
        store.unmute(ghost, alice, now).await,
        store
            .mute(alice, ghost, None, false, now)
            .await
            .map(|c| c.changed),
        store
            .mute(ghost, alice, None, false, now)
            .await
            .map(|c| c.changed),
    ];
    for result in results {
        assert!(matches!(result, Err(GraphError::NotFound(_))), "{result:?}");
    }
    let bob = user(store, "bob").await.id;
    assert_invalid(
        store.mute(alice, bob, Some(now), false, now).await,
        "expires_at_ms",
    );
    assert_eq!(
        store.relations(alice, &[bob], now).await.unwrap(),
        vec![Relation::default()]
    );
    for list in [
        store.list_blocked(ghost, everything(10)).await,
        store.list_muted(ghost, everything(10), now).await,
    ] {
        assert!(matches!(list, Err(GraphError::NotFound(_))), "{list:?}");
    }
}

/// A mute with an expiry holds until the given `now_ms` reaches it, then
/// counts as no mute everywhere: relations, the list, unmute (unchanged),
/// and muting again is a change that makes a new mute.
pub async fn a_mute_lapses_at_its_expiry(store: &impl GraphStore) {
    let alice = user(store, "alice").await.id;
    let bob = user(store, "bob").await.id;
    let t0 = now();
    let expires = t0 + 1_000;
    assert_eq!(
        store
            .mute(alice, bob, Some(expires), true, t0)
            .await
            .unwrap(),
        MuteChange {
            changed: true,
            expires_at_ms: Some(expires)
        }
    );
    let muted = Relation {
        viewer_mutes: true,
        mute_hides_notifications: true,
        mute_expires_at_ms: Some(expires),
        ..Relation::default()
    };
    for at in [t0, expires - 1] {
        assert_eq!(
            store.relations(alice, &[bob], at).await.unwrap(),
            vec![muted],
            "at {at}"
        );
        assert_eq!(
            relation_ids(&all_relation_pages(store, alice, 10, Some(at)).await),
            vec![bob]
        );
    }
    let first = store
        .list_muted(alice, everything(10), t0)
        .await
        .unwrap()
        .edges[0];
    assert_eq!(first.expires_at_ms, Some(expires));
    assert!(first.hide_notifications);

    for at in [expires, expires + 86_400_000] {
        assert_eq!(
            store.relations(alice, &[bob], at).await.unwrap(),
            vec![Relation::default()],
            "lapsed at {at}"
        );
        assert!(relation_ids(&all_relation_pages(store, alice, 10, Some(at)).await).is_empty());
    }
    assert!(
        !store.unmute(alice, bob, expires).await.unwrap(),
        "a lapsed mute is no mute"
    );
    // The same settings again, once lapsed, make a new mute.
    let later = expires + 5_000;
    assert!(
        store
            .mute(alice, bob, Some(later + 1_000), true, later)
            .await
            .unwrap()
            .changed
    );
    assert_eq!(
        store.relations(alice, &[bob], later).await.unwrap(),
        vec![Relation {
            mute_expires_at_ms: Some(later + 1_000),
            ..muted
        }]
    );
    let renewed = store
        .list_muted(alice, everything(10), later)
        .await
        .unwrap()
        .edges;
    assert_eq!(renewed.len(), 1);
    assert!(
        renewed[0].position > first.position,
        "a new mute sorts first"
    );
    // An indefinite mute never lapses.
    assert!(
        store
            .mute(alice, bob, None, false, later)
            .await
            .unwrap()
            .changed
    );
    assert!(store.relations(alice, &[bob], i64::MAX).await.unwrap()[0].viewer_mutes);
    assert_eq!(
        store
            .list_muted(alice, everything(10), later)
            .await
            .unwrap()
            .edges[0]
            .position,
        renewed[0].position,
        "changing an active mute keeps its place"
    );
}

/// Relations answer each id in request order, repeats in place, unknown
/// users (and the viewer themself) unrelated, every id unrelated for the
/// anonymous viewer 0.
pub async fn relations_answer_each_id_in_order(store: &impl GraphStore) {
    let ids = users(store, "u", 6).await;
    let (viewer, blocked, blocker, muted, lapsed, plain) =
        (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
    let now = now();
    assert!(store.block(viewer, blocked).await.unwrap());
    assert!(store.block(blocker, viewer).await.unwrap());
    store.mute(viewer, muted, None, true, now).await.unwrap();
    store
        .mute(viewer, lapsed, Some(now + 10), false, now)
        .await
        .unwrap();
    // Relations of others do not leak into the viewer's.
    store.mute(plain, viewer, None, true, now).await.unwrap();
    store.block(blocked, plain).await.unwrap();
    let ghost = plain.wrapping_add(99_999_989);
    let asked = [
        blocked, blocker, muted, ghost, lapsed, plain, viewer, blocked,
    ];
    let at = now + 10;
    let viewer_blocks = Relation {
        viewer_blocks: true,
        ..Relation::default()
    };
    let blocks_viewer = Relation {
        blocks_viewer: true,
        ..Relation::default()
    };
    let mutes = Relation {
        viewer_mutes: true,
        mute_hides_notifications: true,
        ..Relation::default()
    };
    let none = Relation::default();
    assert_eq!(
        store.relations(viewer, &asked, at).await.unwrap(),
        vec![
            viewer_blocks,
            blocks_viewer,
            mutes,
            none,
            none,
            none,
            none,
            viewer_blocks
        ]
    );
    assert_eq!(
        store.relations(viewer, &[lapsed], now).await.unwrap(),
        vec![Relation {
            viewer_mutes: true,
            mute_expires_at_ms: Some(now + 10),
            ..none
        }],
        "before it lapses"
    );
    assert_eq!(
        store.relations(0, &asked, at).await.unwrap(),
        vec![none; asked.len()]
    );
    assert!(store.relations(viewer, &[], at).await.unwrap().is_empty());
    // Both ways between two users who block each other.
    assert!(store.block(blocked, viewer).await.unwrap());
    assert_eq!(
        store.relations(viewer, &[blocked], at).await.unwrap(),
        vec![Relation {
            viewer_blocks: true,
            blocks_viewer: true,
            ..none
        }]
    );
}

/// A block list pages newest block first; paging while others are blocked
/// and unblocked returns every steady block exactly once, no one twice, no
/// one unblocked before being reached, no one blocked after paging began.
pub async fn block_lists_page_stably_newest_first(store: &impl GraphStore) {
    let owner = user(store, "owner").await.id;
    let leaving = users(store, "leave", 3).await;
    // Enough that the leavers, blocked first, are reached only after the
    // third page, by which time all of them have left.
    let steady = users(store, "steady", 9).await;
    let newcomers = users(store, "new", 4).await;
    for &blocked in leaving.iter().chain(&steady) {
        assert!(store.block(owner, blocked).await.unwrap());
    }
    let newest_first: Vec<u64> = leaving.iter().chain(&steady).rev().copied().collect();
    for limit in [1, 3, 10, 100] {
        let pages = all_relation_pages(store, owner, limit, None).await;
        assert_eq!(relation_ids(&pages), newest_first, "limit {limit}");
        for edge in pages.iter().flat_map(|page| &page.edges) {
            assert_eq!(
                edge.since_ms,
                warble_mesh::snowflake::decode(edge.position.follow_seq).unix_ms as i64
            );
            assert_eq!((edge.expires_at_ms, edge.hide_notifications), (None, false));
        }
    }

    let first = store.list_blocked(owner, everything(3)).await.unwrap();
    let mut seen = relation_ids(std::slice::from_ref(&first));
    let mut positions: Vec<EdgePosition> = first.edges.iter().map(|e| e.position).collect();
    let mut after = first.next;
    let mut step = 0;
    while let Some(cursor) = after {
        if let Some(&newcomer) = newcomers.get(step) {
            store.block(owner, newcomer).await.unwrap();
        }
        if let Some(&leaver) = leaving.get(step) {
            store.unblock(owner, leaver).await.unwrap();
        }
        step += 1;
        let page = store
            .list_blocked(
                owner,
                PageQuery {
                    after: Some(cursor),
                    limit: 3,
                },
            )
            .await
            .unwrap();
        seen.extend(page.edges.iter().map(|e| e.user_id));
        positions.extend(page.edges.iter().map(|e| e.position));
        after = page.next;
        assert!(step < 100, "paging does not terminate");
    }
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no one twice: {seen:?}");
    for blocked in &steady {
        assert!(unique.contains(blocked), "{blocked} was skipped");
    }
    for gone in leaving.iter().chain(&newcomers) {
        assert!(
            !unique.contains(gone),
            "{gone} left before being reached, or came after paging began"
        );
    }
    assert!(
        positions.windows(2).all(|pair| pair[0] > pair[1]),
        "positions strictly decrease"
    );
}

/// A mute list pages newest mute first with each mute's expiry and
/// setting, skipping mutes lapsed at the given time: paged in any size it
/// returns each active mute exactly once.
pub async fn mute_lists_skip_lapsed_mutes_and_page_stably(store: &impl GraphStore) {
    let owner = user(store, "owner").await.id;
    let muted = users(store, "muted", 9).await;
    let t0 = now();
    // Every third mute lapses at t0 + 100; the others never or much later.
    let expiry = |i: usize| match i % 3 {
        0 => Some(t0 + 100),
        1 => None,
        _ => Some(t0 + 1_000_000),
    };
    for (i, &user) in muted.iter().enumerate() {
        store
            .mute(owner, user, expiry(i), i % 2 == 0, t0)
            .await
            .unwrap();
    }
    let at = t0 + 100;
    let expected: Vec<u64> = muted
        .iter()
        .enumerate()
        .rev()
        .filter(|&(i, _)| i % 3 != 0)
        .map(|(_, &user)| user)
        .collect();
    for limit in [1, 2, 4, 100] {
        let pages = all_relation_pages(store, owner, limit, Some(at)).await;
        assert_eq!(relation_ids(&pages), expected, "limit {limit}");
        for edge in pages.iter().flat_map(|page| &page.edges) {
            let i = muted.iter().position(|&user| user == edge.user_id).unwrap();
            assert_eq!(edge.expires_at_ms, expiry(i));
            assert_eq!(edge.hide_notifications, i % 2 == 0);
            assert_eq!(
                edge.since_ms,
                warble_mesh::snowflake::decode(edge.position.follow_seq).unix_ms as i64
            );
        }
    }
    let all: Vec<u64> = muted.iter().rev().copied().collect();
    assert_eq!(
        relation_ids(&all_relation_pages(store, owner, 4, Some(t0)).await),
        all,
        "none lapsed yet"
    );
    // Unmuting one mid-list and changing another's setting leave the rest in place.
    assert!(store.unmute(owner, muted[4], at).await.unwrap());
    assert!(
        store
            .mute(owner, muted[5], None, true, at)
            .await
            .unwrap()
            .changed
    );
    let expected: Vec<u64> = expected
        .into_iter()
        .filter(|&user| user != muted[4])
        .collect();
    assert_eq!(
        relation_ids(&all_relation_pages(store, owner, 2, Some(at)).await),
        expected
    );
    // Everyone lapsed but the indefinite ones (and the one made indefinite).
    let late = t0 + 2_000_000;
    let indefinite: Vec<u64> = [7, 5, 1].iter().map(|&i| muted[i]).collect();
    for limit in [1, 2, 100] {
        assert_eq!(
            relation_ids(&all_relation_pages(store, owner, limit, Some(late)).await),
            indefinite,
            "limit {limit}"
        );
    }
}

/// Every page of a scan after `after`, `limit` at a time (each page at most
/// `limit` long), and the scan's users in order.
async fn scan_all(
    store: &impl GraphStore,
    after: Option<u64>,
    limit: usize,
) -> (Vec<UserScanPage>, Vec<ScannedUser>) {
    let mut pages = Vec::new();
    let mut after = after;
    loop {
        let page = store.scan_users(after, limit).await.expect("scan_users");
        assert!(
            page.users.len() <= limit,
            "a page holds at most `limit` users"
        );
        after = page.next;
        pages.push(page);
        if after.is_none() {
            break;
        }
        assert!(pages.len() < 100_000, "the scan does not terminate");
    }
    let users = pages.iter().flat_map(|page| page.users.clone()).collect();
    (pages, users)
}

/// A scan of a store without users is one empty page, the last.
pub async fn scanning_an_empty_store_gives_one_empty_last_page(store: &impl GraphStore) {
    for limit in [1, 3, 1_000] {
        assert_eq!(
            store.scan_users(None, limit).await.expect("scan_users"),
            UserScanPage::default(),
            "limit {limit}"
        );
    }
}

/// A scan in small pages lists every user exactly once, strictly ascending
/// by id, as stored, with their follow counts; every page but the last is
/// full; a scan resumed from a page's `next` continues it.
pub async fn a_scan_lists_every_user_once_in_id_order_with_their_counts(store: &impl GraphStore) {
    let star = user(store, "star").await;
    let fan = user(store, "fan").await;
    let other = user(store, "other").await;
    let quiet = user(store, "quiet").await;
    let edited = user(store, "edited").await;
    follow(store, fan.id, star.id).await;
    follow(store, other.id, star.id).await;
    follow(store, star.id, fan.id).await;
    let edited = store
        .update_profile(
            edited.id,
            ProfileUpdate {
                bio: Some("new bio".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .expect("update_profile")
        .user;

    let (pages, scanned) = scan_all(store, None, 2).await;
    let ids: Vec<u64> = scanned.iter().map(|entry| entry.user.id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "strictly ascending ids, so each user once: {ids:?}"
    );
    let (last, full) = pages.split_last().expect("at least one page");
    assert!(
        full.iter().all(|page| page.users.len() == 2),
        "only the last page is short"
    );
    assert!(last.users.len() <= 2);
    let counts = |followers, following| FollowCounts {
        followers,
        following,
    };
    for (user, counts) in [
        (&star, counts(2, 1)),
        (&fan, counts(1, 1)),
        (&other, counts(0, 1)),
        (&quiet, counts(0, 0)),
        (&edited, counts(0, 0)),
    ] {
        let found: Vec<&ScannedUser> = scanned
            .iter()
            .filter(|entry| entry.user.id == user.id)
            .collect();
        assert_eq!(
            found,
            vec![&ScannedUser {
                user: user.clone(),
                counts
            }],
            "{}",
            user.username
        );
    }

    let middle = pages[0].next.expect("five users in pages of two");
    let (_, rest) = scan_all(store, Some(middle), 3).await;
    let resumed: Vec<u64> = rest.iter().map(|entry| entry.user.id).collect();
    assert_eq!(resumed, ids[2..], "resumed after the first page");
    let newcomer = user(store, "late").await;
    let (_, again) = scan_all(store, None, 4).await;
    let again: Vec<u64> = again.iter().map(|entry| entry.user.id).collect();
    assert_eq!(
        again
            .iter()
            .filter(|id| **id != newcomer.id)
            .copied()
            .collect::<Vec<_>>(),
        ids,
        "the same order at another page size"
    );
}

/// An identity of an issuer unique to this run, so runs sharing a store
/// never meet.
fn identity(subject: &str) -> Identity {
    Identity {
        issuer: format!("https://{}.id.example/", username("idp")),
        subject: subject.into(),
    }
}

async fn register(
    store: &impl GraphStore,
    identity: &Identity,
    username: &str,
) -> Result<Registration, GraphError> {
    store
        .register_user(
            identity.clone(),
            NewUser {
                username: username.into(),
                display_name: format!("{username} display"),
                bio: String::new(),
            },
        )
        .await
}

/// Asserts `result` failed with `AlreadyExists` saying `says`.
#[track_caller]
fn assert_exists<T: std::fmt::Debug>(result: Result<T, GraphError>, says: &str) {
    match result {
        Err(GraphError::AlreadyExists(message)) => assert!(message.contains(says), "{message}"),
        other => panic!("expected AlreadyExists ({says}), got {other:?}"),
    }
}

/// A registration creates a user bound to the identity, which then
/// resolves to it; the same identity with the same username (any case)
/// gets the same user again, with another username is refused naming the
/// one it has; a username taken by anyone else is refused as at sign-up,
/// binding nothing. Issuer and subject together are the identity, each
/// compared exactly.
pub async fn an_identity_registers_once_and_resolves_to_its_user(store: &impl GraphStore) {
    let ada = identity("auth0|5f7c8ec7c33c6c004bbafe82");
    assert_eq!(store.resolve_identity(&ada).await.unwrap(), None);
    let name = username("ada");
    let first = register(store, &ada, &name).await.expect("register");
    assert!(first.created);
    assert_eq!(first.user.username, name);
    assert_eq!(first.user.display_name, format!("{name} display"));
    assert_eq!(
        first.user.created_at_ms,
        warble_mesh::snowflake::decode(first.user.id).unix_ms as i64
    );
    assert_eq!(
        store.resolve_identity(&ada).await.unwrap(),
        Some(first.user.id)
    );
    assert_eq!(
        store.get_users(&[first.user.id]).await.unwrap(),
        vec![Some(first.user.clone())]
    );
    assert_eq!(
        store.get_user_by_username(&name).await.unwrap(),
        Some(first.user.clone())
    );
    assert_eq!(counts(store, first.user.id).await, FollowCounts::default());

    // A retry, whatever the case of the username, is the same user.
    let again = register(store, &ada, &name.to_ascii_uppercase())
        .await
        .expect("register again");
    assert_eq!(
        again,
        Registration {
            user: first.user.clone(),
            created: false,
        }
    );
    // Another username for the same identity says which one it has.
    assert_exists(
        register(store, &ada, &username("other")).await,
        &format!("already registered as @{name}"),
    );

    // Another identity asking for that username, or for one taken at
    // sign-up, is refused and stays unbound.
    let grace = identity("auth0|grace");
    assert_exists(register(store, &grace, &name).await, "taken");
    let signed_up = user(store, "bob").await;
    assert_exists(
        register(store, &grace, &signed_up.username.to_ascii_uppercase()).await,
        "taken",
    );
    assert_eq!(store.resolve_identity(&grace).await.unwrap(), None);

    // The same subject at another issuer, or another subject at the same
    // issuer (differing in case only), is another identity.
    let elsewhere = Identity {
        issuer: format!("{}other/", ada.issuer),
        ..ada.clone()
    };
    let shouted = Identity {
        subject: ada.subject.to_ascii_uppercase(),
        ..ada.clone()
    };
    for other in [&elsewhere, &shouted] {
        assert_eq!(store.resolve_identity(other).await.unwrap(), None);
    }
    let second = register(store, &elsewhere, &username("ada2"))
        .await
        .expect("another identity registers");
    assert!(second.created);
    assert_ne!(second.user.id, first.user.id);
    assert_eq!(
        store.resolve_identity(&elsewhere).await.unwrap(),
        Some(second.user.id)
    );
    assert_eq!(
        store.resolve_identity(&ada).await.unwrap(),
        Some(first.user.id)
    );
    assert_eq!(store.resolve_identity(&shouted).await.unwrap(), None);
}

/// A registration publishes `UserCreated` as a sign-up does, keyed by the
/// new user, in the same step; a repeat, or a refused registration,
/// publishes nothing.
pub async fn a_registration_publishes_user_created_once(
    store: &impl GraphStore,
    outbox: &dyn Outbox,
) {
    let ada = identity("ada");
    let registered = register(store, &ada, &username("ada")).await.unwrap().user;
    register(store, &ada, &registered.username).await.unwrap();
    assert_exists(
        register(store, &identity("grace"), &registered.username).await,
        "taken",
    );
    let events = take_events(outbox, &[registered.id]).await;
    assert_eq!(
        events,
        vec![(
            registered.id,
            Event {
                event_id: events.first().map_or(0, |(_, event)| event.event_id),
                occurred_at_ms: registered.created_at_ms,
                trace_context: Default::default(),
                payload: Some(event::Payload::UserCreated(UserCreated {
                    user_id: registered.id,
                    username: registered.username.clone(),
                    display_name: registered.display_name.clone(),
                    bio: String::new(),
                    created_at_ms: registered.created_at_ms,
                })),
            }
        )],
        "one UserCreated, from the first registration"
    );
}

/// One identity registering from several places at once (a double click,
/// two tabs) creates one user: every call answers it, exactly one with
/// `created`.
pub async fn racing_registrations_of_one_identity_create_one_user(store: &impl GraphStore) {
    let ada = identity("racer");
    let name = username("racer");
    let racing = (0..8).map(|_| register(store, &ada, &name));
    let registrations: Vec<Registration> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|result| result.expect("every racing registration answers the user"))
        .collect();
    let users: HashSet<u64> = registrations.iter().map(|r| r.user.id).collect();
    assert_eq!(users.len(), 1, "{registrations:?}");
    assert_eq!(
        registrations.iter().filter(|r| r.created).count(),
        1,
        "{registrations:?}"
    );
    assert_eq!(
        store.resolve_identity(&ada).await.unwrap(),
        users.iter().next().copied()
    );
}
