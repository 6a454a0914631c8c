//! The [`GraphStore`] contract as executable checks, run against every
//! implementation: the embedded store in this crate's unit tests (once as
//! is, once with the trait's default batch writes, which Neo4j uses), Neo4j
//! in `tests/api/store_neo4j.rs` when `NEO4J_URI` is set.
//!
//! The checks speak only the trait and the store's [`Outbox`] (where its
//! events wait to be published). They never assume an empty store:
//! usernames carry a random suffix and event assertions filter on the users
//! a check created, so a backend whose `make` hands out one shared database
//! per run gives the same verdicts as one with a fresh database per check.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use prost::Message as _;
use warble_mesh::event_log::DOMAIN_EVENTS_STREAM;
use warble_mesh::outbox::{Outbox, OutboxEntry};
use warble_proto::events::v1::{Event, Followed, Unfollowed, event};
use warble_proto::limits::graph::MAX_WRITE_BATCH;

use super::{
    EdgePosition, FollowChange, FollowCounts, FollowPage, GraphStore, NewUser, PageQuery, User,
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
