//! The [`NotificationStore`] contract as executable checks, run against every
//! implementation: the embedded store in `tests/store.rs`, ScyllaDB in
//! `tests/store_scylla.rs` when `SCYLLA_URI` is set.
//!
//! Each case is named, printed as it starts and ends (with its time), and a
//! failing case panics with its name. The cases speak only the trait, so
//! every backend answers the same assertions; they never assume an empty
//! store (recipients, actors and tweets are fresh per case), so a factory
//! that hands out one shared keyspace gives the same verdicts as one with a
//! fresh database per case.
//!
//! Times are near the wall clock: reads without a clock of their own
//! (`get`, `unread`) may judge the retention by it.

use std::future::Future;
use std::hash::{BuildHasher as _, RandomState};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use warble_proto::limits::notify::{MAX_SAMPLE_ACTORS, RETAINED_GROUPS, RETENTION_DAYS};

use super::{
    Applied, Change, GROUP_WINDOW_MS, Group, GroupPage, Item, Kind, ListQuery, NotificationStore,
    Settings, SilenceSource, StrangerPolicy, UNREAD_CAP, Unread, Version,
};
use crate::error::NotifyError;

/// The store under test, as the service holds it.
pub type Store = Arc<dyn NotificationStore>;

type Case = (&'static str, fn(Store) -> BoxFuture<'static, ()>);

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        &[$((stringify!($case), |store| Box::pin($case(store)))),*]
    };
}

/// Every check, in the order run.
const CASES: &[Case] = cases![
    likes_of_one_tweet_gather_in_one_group,
    a_group_shows_its_newest_eight_actors_and_counts_all,
    an_item_a_window_after_the_newest_opens_a_new_group,
    follows_gather_per_recipient,
    mentions_replies_and_quotes_stand_alone,
    positions_increase_and_a_growing_group_moves_to_the_top,
    a_redelivered_add_is_stale,
    an_undo_that_overtakes_its_action_leaves_nothing,
    an_unlike_then_a_newer_like_counts_again,
    removing_the_last_actor_deletes_the_group,
    removing_the_newest_actor_moves_the_group_back,
    a_deleted_tweet_takes_its_groups_and_refuses_items,
    a_silence_removes_the_actors_items_until_lifted_or_lapsed,
    pages_return_every_group_once_newest_first,
    a_kinds_filter_pages_through_matching_groups_only,
    the_filtered_list_is_separate_and_not_counted_unread,
    unread_counts_to_the_cap_and_the_marker_never_moves_back,
    get_keeps_the_order_asked_and_only_the_recipients_groups,
    settings_default_and_round_trip,
    groups_past_the_retention_are_not_listed,
    a_recipient_keeps_at_most_the_retained_groups,
    a_viral_group_reads_its_newest_eight_and_exact_count,
];

/// Runs every case, each on a fresh store from `factory`.
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Store>,
{
    for &(name, case) in CASES {
        let store = factory().await;
        println!("notify store conformance: {name} ...");
        let started = Instant::now();
        if let Err(panic) = AssertUnwindSafe(case(store)).catch_unwind().await {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("notify store conformance case `{name}` failed: {message}");
        }
        println!(
            "notify store conformance: {name} ok in {:?}",
            started.elapsed()
        );
    }
}

const SECOND_MS: i64 = 1_000;
const DAY_MS: i64 = 86_400_000;

/// An id unique in this run (recipients, actors, tweets, event ids): a
/// random base per process plus a counter, so a reused keyspace never
/// holds a previous run's ids.
fn fresh() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: OnceLock<u64> = OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let random = RandomState::new().hash_one(SystemTime::now());
        (1 << 40) + random % (1 << 50)
    });
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Now, in Unix milliseconds: each case's times start here.
fn clock_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("clock fits in i64")
}

fn item(recipient: u64, kind: Kind, tweet_id: u64, actor: u64) -> Item {
    Item {
        recipient,
        kind,
        tweet_id,
        actor,
    }
}

fn version(at_ms: i64) -> Version {
    Version {
        at_ms,
        event_id: fresh(),
    }
}

fn add(item: Item, at_ms: i64) -> Change {
    Change::Add {
        item,
        version: version(at_ms),
        filtered: false,
    }
}

fn remove(item: Item, at_ms: i64) -> Change {
    Change::Remove {
        item,
        version: version(at_ms),
    }
}

async fn apply(store: &Store, change: Change, now_ms: i64) -> Applied {
    match store.apply(change.clone(), now_ms).await {
        Ok(applied) => applied,
        Err(error) => panic!("apply {change:?}: {error:?}"),
    }
}

async fn apply_all(store: &Store, changes: Vec<Change>, now_ms: i64) -> Vec<Applied> {
    let expected = changes.len();
    let applied = store
        .apply_all(changes, now_ms)
        .await
        .unwrap_or_else(|error| panic!("apply_all: {error:?}"));
    assert_eq!(applied.len(), expected, "one outcome per change");
    applied
}

/// The group an add went to, and whether it was created; panics on any
/// other outcome.
#[track_caller]
fn added(applied: Applied) -> (u64, bool) {
    match applied {
        Applied::Added {
            group_id, created, ..
        } => (group_id, created),
        other => panic!("expected Added, got {other:?}"),
    }
}

fn query(recipient: u64, now_ms: i64) -> ListQuery {
    ListQuery {
        recipient,
        before: None,
        limit: 100,
        kinds: vec![],
        filtered: false,
        now_ms,
    }
}

async fn page(store: &Store, query: ListQuery) -> GroupPage {
    match store.list(query.clone()).await {
        Ok(page) => page,
        Err(error) => panic!("list {query:?}: {error:?}"),
    }
}

/// Every group `query` selects, following `next_before` page by page; checks
/// that pages are never longer than asked and come newest first.
async fn list_all(store: &Store, mut query: ListQuery) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let most_pages = RETAINED_GROUPS / query.limit.max(1) + 3;
    for _ in 0..most_pages {
        let page = page(store, query.clone()).await;
        assert!(page.groups.len() <= query.limit, "page longer than asked");
        groups.extend(page.groups);
        match page.next_before {
            Some(before) => query.before = Some(before),
            None => {
                assert_newest_first(&groups);
                return groups;
            }
        }
    }
    panic!("paging did not end within {most_pages} pages");
}

async fn list(store: &Store, recipient: u64, now_ms: i64) -> Vec<Group> {
    list_all(store, query(recipient, now_ms)).await
}

#[track_caller]
fn assert_newest_first(groups: &[Group]) {
    for pair in groups.windows(2) {
        assert!(
            pair[0].position > pair[1].position,
            "groups out of order: {} (position {}) before {} (position {})",
            pair[0].id,
            pair[0].position,
            pair[1].id,
            pair[1].position
        );
    }
}

fn ids(groups: &[Group]) -> Vec<u64> {
    groups.iter().map(|group| group.id).collect()
}

fn newest_first(actors: &[u64]) -> Vec<u64> {
    actors.iter().rev().copied().collect()
}

async fn unread(store: &Store, recipient: u64, cap: u64) -> Unread {
    store
        .unread(recipient, cap)
        .await
        .unwrap_or_else(|error| panic!("unread: {error:?}"))
}

async fn mark_read(store: &Store, recipient: u64, up_to: Option<u64>) -> u64 {
    store
        .mark_read(recipient, up_to)
        .await
        .unwrap_or_else(|error| panic!("mark_read({up_to:?}): {error:?}"))
}

async fn get(store: &Store, recipient: u64, group_ids: &[u64]) -> Vec<Group> {
    store
        .get(recipient, group_ids)
        .await
        .unwrap_or_else(|error| panic!("get: {error:?}"))
}

async fn likes_of_one_tweet_gather_in_one_group(store: Store) {
    let (recipient, other_recipient) = (fresh(), fresh());
    let (tweet, other_tweet) = (fresh(), fresh());
    let actors = [fresh(), fresh(), fresh()];
    let t0 = clock_ms();
    let mut group_id = None;
    for (n, &actor) in actors.iter().enumerate() {
        let at_ms = t0 + n as i64 * SECOND_MS;
        let applied = apply(
            &store,
            add(item(recipient, Kind::Like, tweet, actor), at_ms),
            at_ms,
        )
        .await;
        let Applied::Added {
            recipient: to,
            group_id: id,
            created,
            filtered,
        } = applied
        else {
            panic!("like {n}: expected Added, got {applied:?}");
        };
        assert_eq!(
            (to, created, filtered),
            (recipient, n == 0, false),
            "like {n}"
        );
        assert_eq!(*group_id.get_or_insert(id), id, "like {n} joined the group");
    }
    let group_id = group_id.expect("three likes");
    // Another tweet's likes, and another recipient's, are other groups.
    let now = t0 + 3 * SECOND_MS;
    let (other_tweet_group, created) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, other_tweet, actors[0]), now),
            now,
        )
        .await,
    );
    assert!(created && other_tweet_group != group_id);
    let (other_recipient_group, created) = added(
        apply(
            &store,
            add(item(other_recipient, Kind::Like, tweet, actors[0]), now),
            now,
        )
        .await,
    );
    assert!(created && other_recipient_group != group_id);

    let groups = list(&store, recipient, now).await;
    assert_eq!(ids(&groups), vec![other_tweet_group, group_id]);
    let group = &groups[1];
    assert_eq!(group.recipient, recipient);
    assert_eq!(group.kind, Kind::Like);
    assert_eq!(group.tweet_id, tweet);
    assert_eq!(group.count, 3);
    assert_eq!(group.actors, newest_first(&actors));
    assert_eq!(group.latest_at_ms, t0 + 2 * SECOND_MS);
    assert!(group.unread && !group.filtered);
    let theirs = list(&store, other_recipient, now).await;
    assert_eq!(ids(&theirs), vec![other_recipient_group]);
    assert_eq!(
        (theirs[0].count, theirs[0].actors.clone()),
        (1, vec![actors[0]])
    );
}

async fn a_group_shows_its_newest_eight_actors_and_counts_all(store: Store) {
    let (recipient, tweet) = (fresh(), fresh());
    let actors: Vec<u64> = (0..11).map(|_| fresh()).collect();
    let t0 = clock_ms();
    let changes = actors
        .iter()
        .enumerate()
        .map(|(n, &actor)| add(item(recipient, Kind::Retweet, tweet, actor), t0 + n as i64))
        .collect();
    let applied = apply_all(&store, changes, t0 + 11).await;
    let created: Vec<bool> = applied
        .into_iter()
        .map(|applied| added(applied).1)
        .collect();
    assert_eq!(created.iter().filter(|created| **created).count(), 1);
    assert!(created[0]);
    let groups = list(&store, recipient, t0 + 11).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 11);
    assert_eq!(groups[0].actors.len(), MAX_SAMPLE_ACTORS);
    assert_eq!(
        groups[0].actors,
        newest_first(&actors[11 - MAX_SAMPLE_ACTORS..])
    );
}

async fn an_item_a_window_after_the_newest_opens_a_new_group(store: Store) {
    let (recipient, tweet) = (fresh(), fresh());
    let actors = [fresh(), fresh(), fresh(), fresh()];
    let like = |n: usize| item(recipient, Kind::Like, tweet, actors[n]);
    let t0 = clock_ms();
    let (first, created) = added(apply(&store, add(like(0), t0), t0).await);
    assert!(created);
    // One millisecond inside the window of the group's newest item: joins.
    let joined_at = t0 + GROUP_WINDOW_MS - 1;
    let (group, created) = added(apply(&store, add(like(1), joined_at), joined_at).await);
    assert_eq!((group, created), (first, false), "12h - 1ms after joins");
    // A full window after the newest item (not the first): a new group.
    let opened_at = joined_at + GROUP_WINDOW_MS;
    let (second, created) = added(apply(&store, add(like(2), opened_at), opened_at).await);
    assert!(
        created && second != first,
        "12h after the newest opens a new group"
    );
    // Later likes join the new group, not the old one.
    let later = opened_at + 5 * SECOND_MS;
    let (group, created) = added(apply(&store, add(like(3), later), later).await);
    assert_eq!((group, created), (second, false));

    let groups = list(&store, recipient, later).await;
    assert_eq!(ids(&groups), vec![second, first]);
    assert_eq!(
        (groups[0].count, groups[0].actors.clone()),
        (2, vec![actors[3], actors[2]])
    );
    assert_eq!(groups[0].latest_at_ms, later);
    assert_eq!(
        (groups[1].count, groups[1].actors.clone()),
        (2, vec![actors[1], actors[0]])
    );
    assert_eq!(groups[1].latest_at_ms, joined_at);
}

async fn follows_gather_per_recipient(store: Store) {
    let (recipient, other_recipient) = (fresh(), fresh());
    let followers = [fresh(), fresh(), fresh()];
    let t0 = clock_ms();
    let changes = followers
        .iter()
        .enumerate()
        .map(|(n, &follower)| add(item(recipient, Kind::Follow, 0, follower), t0 + n as i64))
        .collect();
    let group_ids: Vec<u64> = apply_all(&store, changes, t0 + 3)
        .await
        .into_iter()
        .map(|applied| added(applied).0)
        .collect();
    assert!(
        group_ids.iter().all(|id| *id == group_ids[0]),
        "{group_ids:?}"
    );
    let (theirs, created) = added(
        apply(
            &store,
            add(item(other_recipient, Kind::Follow, 0, followers[0]), t0 + 3),
            t0 + 3,
        )
        .await,
    );
    assert!(created && theirs != group_ids[0]);

    let groups = list(&store, recipient, t0 + 3).await;
    assert_eq!(ids(&groups), vec![group_ids[0]]);
    assert_eq!(groups[0].kind, Kind::Follow);
    assert_eq!(groups[0].tweet_id, 0);
    assert_eq!(groups[0].count, 3);
    assert_eq!(groups[0].actors, newest_first(&followers));
    let groups = list(&store, other_recipient, t0 + 3).await;
    assert_eq!((ids(&groups), groups[0].count), (vec![theirs], 1));
}

async fn mentions_replies_and_quotes_stand_alone(store: Store) {
    let recipient = fresh();
    let (author, other_author) = (fresh(), fresh());
    let mentioning = fresh();
    let items = [
        item(recipient, Kind::Mention, mentioning, author),
        item(recipient, Kind::Mention, fresh(), author),
        item(recipient, Kind::Mention, mentioning, other_author),
        item(recipient, Kind::Reply, fresh(), author),
        item(recipient, Kind::Reply, fresh(), author),
        item(recipient, Kind::Quote, fresh(), other_author),
    ];
    let t0 = clock_ms();
    let mut group_ids = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let (group_id, created) = added(apply(&store, add(*item, t0 + n as i64), t0 + 6).await);
        assert!(created, "{:?} {n} is a group of its own", item.kind);
        assert!(!group_ids.contains(&group_id));
        group_ids.push(group_id);
    }
    let groups = list(&store, recipient, t0 + 6).await;
    assert_eq!(ids(&groups), newest_first(&group_ids));
    for (group, item) in groups.iter().zip(items.iter().rev()) {
        assert_eq!(
            (
                group.kind,
                group.tweet_id,
                group.count,
                group.actors.clone()
            ),
            (item.kind, item.tweet_id, 1, vec![item.actor])
        );
    }
}

async fn positions_increase_and_a_growing_group_moves_to_the_top(store: Store) {
    let recipient = fresh();
    let (tweet_a, tweet_b) = (fresh(), fresh());
    let t0 = clock_ms();
    let (a, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, tweet_a, fresh()), t0),
            t0,
        )
        .await,
    );
    let (b, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, tweet_b, fresh()), t0 + 1),
            t0 + 1,
        )
        .await,
    );
    let (c, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Mention, fresh(), fresh()), t0 + 2),
            t0 + 2,
        )
        .await,
    );
    let before = list(&store, recipient, t0 + 2).await;
    assert_eq!(ids(&before), vec![c, b, a]);

    let (grown, created) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, tweet_a, fresh()), t0 + 3),
            t0 + 3,
        )
        .await,
    );
    assert_eq!((grown, created), (a, false));
    let after = list(&store, recipient, t0 + 3).await;
    assert_eq!(ids(&after), vec![a, c, b]);
    assert!(
        after[0].position > before[0].position,
        "a new item takes a new, higher position"
    );
    assert_eq!(
        after[1].position, before[0].position,
        "the others keep theirs"
    );
    assert_eq!(after[0].count, 2);
}

async fn a_redelivered_add_is_stale(store: Store) {
    let (recipient, tweet, actor) = (fresh(), fresh(), fresh());
    let t0 = clock_ms();
    let like = add(item(recipient, Kind::Like, tweet, actor), t0);
    let (group_id, _) = added(apply(&store, like.clone(), t0).await);
    assert_eq!(apply(&store, like.clone(), t0).await, Applied::Stale);
    assert_eq!(
        apply_all(&store, vec![like], t0).await,
        vec![Applied::Stale]
    );
    // An older action of the same item is stale too.
    let older = add(item(recipient, Kind::Like, tweet, actor), t0 - SECOND_MS);
    assert_eq!(apply(&store, older, t0).await, Applied::Stale);
    let mention = add(item(recipient, Kind::Mention, fresh(), actor), t0 + 1);
    let (mention_group, _) = added(apply(&store, mention.clone(), t0 + 1).await);
    assert_eq!(apply(&store, mention, t0 + 1).await, Applied::Stale);

    let groups = list(&store, recipient, t0 + 1).await;
    assert_eq!(ids(&groups), vec![mention_group, group_id]);
    assert_eq!((groups[0].count, groups[1].count), (1, 1));
}

async fn an_undo_that_overtakes_its_action_leaves_nothing(store: Store) {
    let (recipient, tweet, actor) = (fresh(), fresh(), fresh());
    let like = item(recipient, Kind::Like, tweet, actor);
    let t0 = clock_ms();
    let unlike = remove(like, t0 + SECOND_MS);
    assert_eq!(
        apply(&store, unlike.clone(), t0 + SECOND_MS).await,
        Applied::Recorded
    );
    assert_eq!(
        apply(&store, add(like, t0), t0 + SECOND_MS).await,
        Applied::Stale
    );
    assert_eq!(
        apply(&store, unlike, t0 + SECOND_MS).await,
        Applied::Stale,
        "a redelivered undo"
    );
    assert!(list(&store, recipient, t0 + SECOND_MS).await.is_empty());
    assert_eq!(
        unread(&store, recipient, UNREAD_CAP).await,
        Unread {
            count: 0,
            capped: false,
            read_up_to: 0
        }
    );
}

async fn an_unlike_then_a_newer_like_counts_again(store: Store) {
    let (recipient, tweet) = (fresh(), fresh());
    let (liker, other) = (fresh(), fresh());
    let like = item(recipient, Kind::Like, tweet, liker);
    let t0 = clock_ms();
    let (group_id, _) = added(apply(&store, add(like, t0), t0).await);
    added(
        apply(
            &store,
            add(item(recipient, Kind::Like, tweet, other), t0 + 1),
            t0 + 1,
        )
        .await,
    );
    let unlike = remove(like, t0 + 2);
    assert_eq!(
        apply(&store, unlike.clone(), t0 + 2).await,
        Applied::Removed { items: 1 }
    );
    let groups = list(&store, recipient, t0 + 2).await;
    assert_eq!((groups[0].id, groups[0].count), (group_id, 1));
    assert_eq!(groups[0].actors, vec![other]);

    let (again, created) = added(apply(&store, add(like, t0 + 3), t0 + 3).await);
    assert_eq!((again, created), (group_id, false));
    assert_eq!(
        apply(&store, unlike, t0 + 3).await,
        Applied::Stale,
        "the old undo cannot pass"
    );
    let groups = list(&store, recipient, t0 + 3).await;
    assert_eq!(ids(&groups), vec![group_id]);
    assert_eq!(
        (groups[0].count, groups[0].actors.clone()),
        (2, vec![liker, other])
    );
}

async fn removing_the_last_actor_deletes_the_group(store: Store) {
    let (recipient, tweet) = (fresh(), fresh());
    let likes = [
        item(recipient, Kind::Like, tweet, fresh()),
        item(recipient, Kind::Like, tweet, fresh()),
    ];
    let t0 = clock_ms();
    let (group_id, _) = added(apply(&store, add(likes[0], t0), t0).await);
    added(apply(&store, add(likes[1], t0 + 1), t0 + 1).await);
    assert_eq!(
        apply(&store, remove(likes[0], t0 + 2), t0 + 2).await,
        Applied::Removed { items: 1 }
    );
    assert_eq!(list(&store, recipient, t0 + 2).await.len(), 1);
    assert_eq!(
        apply(&store, remove(likes[1], t0 + 3), t0 + 3).await,
        Applied::Removed { items: 1 }
    );

    assert!(list(&store, recipient, t0 + 3).await.is_empty());
    assert!(get(&store, recipient, &[group_id]).await.is_empty());
    assert_eq!(unread(&store, recipient, UNREAD_CAP).await.count, 0);
    match store.mark_read(recipient, Some(group_id)).await {
        Err(NotifyError::GroupNotFound(id)) => assert_eq!(id, group_id),
        other => panic!("mark_read of a deleted group: {other:?}"),
    }
    let again = item(recipient, Kind::Like, tweet, fresh());
    let (_, created) = added(apply(&store, add(again, t0 + 4), t0 + 4).await);
    assert!(created, "a like after the group went opens a new one");
}

async fn removing_the_newest_actor_moves_the_group_back(store: Store) {
    let recipient = fresh();
    let (tweet_a, tweet_b) = (fresh(), fresh());
    let (first, newest) = (fresh(), fresh());
    let t0 = clock_ms();
    let (a, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, tweet_a, first), t0),
            t0,
        )
        .await,
    );
    let b_at = t0 + SECOND_MS;
    let (b, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, tweet_b, fresh()), b_at),
            b_at,
        )
        .await,
    );
    let newest_like = item(recipient, Kind::Like, tweet_a, newest);
    added(
        apply(
            &store,
            add(newest_like, t0 + 2 * SECOND_MS),
            t0 + 2 * SECOND_MS,
        )
        .await,
    );
    assert_eq!(
        ids(&list(&store, recipient, t0 + 2 * SECOND_MS).await),
        vec![a, b]
    );

    let undo_at = t0 + 3 * SECOND_MS;
    assert_eq!(
        apply(&store, remove(newest_like, undo_at), undo_at).await,
        Applied::Removed { items: 1 }
    );
    let groups = list(&store, recipient, undo_at).await;
    assert_eq!(
        ids(&groups),
        vec![b, a],
        "the group falls back to its newest remaining item"
    );
    assert_eq!(groups[1].count, 1);
    assert_eq!(groups[1].actors, vec![first]);
    assert_eq!(groups[1].latest_at_ms, t0);
}

async fn a_deleted_tweet_takes_its_groups_and_refuses_items(store: Store) {
    let (liked, mentioned, replied_to) = (fresh(), fresh(), fresh());
    let (tweet, kept_tweet, author) = (fresh(), fresh(), fresh());
    let t0 = clock_ms();
    let changes = vec![
        add(item(liked, Kind::Like, tweet, fresh()), t0),
        add(item(liked, Kind::Like, tweet, fresh()), t0 + 1),
        add(item(liked, Kind::Retweet, tweet, fresh()), t0 + 2),
        add(item(liked, Kind::Like, kept_tweet, fresh()), t0 + 3),
        // `tweet` mentions one recipient and replies to another's tweet.
        add(item(mentioned, Kind::Mention, tweet, author), t0 + 4),
        add(item(replied_to, Kind::Reply, tweet, author), t0 + 5),
    ];
    let applied = apply_all(&store, changes, t0 + 5).await;
    let kept_group = added(applied[3].clone()).0;

    let deletion = Change::TweetDeleted { tweet_id: tweet };
    assert_eq!(
        apply(&store, deletion.clone(), t0 + 6).await,
        Applied::Removed { items: 5 }
    );
    assert_eq!(ids(&list(&store, liked, t0 + 6).await), vec![kept_group]);
    assert!(list(&store, mentioned, t0 + 6).await.is_empty());
    assert!(list(&store, replied_to, t0 + 6).await.is_empty());
    assert_eq!(unread(&store, mentioned, UNREAD_CAP).await.count, 0);

    // Whatever arrives about it afterwards (late or redelivered) is refused.
    let late = [
        add(item(liked, Kind::Like, tweet, fresh()), t0 + 7),
        add(item(mentioned, Kind::Mention, tweet, author), t0 + 7),
        add(item(fresh(), Kind::Quote, tweet, author), t0 + 7),
    ];
    for change in late {
        assert_eq!(apply(&store, change, t0 + 7).await, Applied::Stale);
    }
    assert_eq!(
        apply(&store, deletion, t0 + 8).await,
        Applied::Stale,
        "a redelivered deletion"
    );
    assert_eq!(ids(&list(&store, liked, t0 + 8).await), vec![kept_group]);
    assert!(list(&store, mentioned, t0 + 8).await.is_empty());
}

async fn a_silence_removes_the_actors_items_until_lifted_or_lapsed(store: Store) {
    let (recipient, other_recipient) = (fresh(), fresh());
    let (silenced, other) = (fresh(), fresh());
    let (shared_tweet, own_tweet) = (fresh(), fresh());
    let t0 = clock_ms();
    let at = |seconds: i64| t0 + seconds * SECOND_MS;
    let first_like = add(item(recipient, Kind::Like, shared_tweet, silenced), at(0));
    let changes = vec![
        first_like.clone(),
        add(item(recipient, Kind::Like, shared_tweet, other), at(1)),
        add(item(recipient, Kind::Like, own_tweet, silenced), at(2)),
        add(item(recipient, Kind::Mention, fresh(), silenced), at(3)),
        add(item(other_recipient, Kind::Like, fresh(), silenced), at(4)),
    ];
    let applied = apply_all(&store, changes, at(4)).await;
    let shared_group = added(applied[0].clone()).0;

    let silence = |version: Version, until_ms: Option<i64>| Change::Silence {
        recipient,
        actor: silenced,
        source: SilenceSource::Block,
        version,
        until_ms,
    };
    let unsilence = |version: Version| Change::Unsilence {
        recipient,
        actor: silenced,
        source: SilenceSource::Block,
        version,
    };
    let block = silence(version(at(10)), None);
    assert_eq!(
        apply(&store, block.clone(), at(10)).await,
        Applied::Removed { items: 3 }
    );
    let groups = list(&store, recipient, at(10)).await;
    assert_eq!(ids(&groups), vec![shared_group]);
    assert_eq!(
        (groups[0].count, groups[0].actors.clone()),
        (1, vec![other])
    );
    assert_eq!(
        list(&store, other_recipient, at(10)).await.len(),
        1,
        "only this recipient's"
    );

    let refused = add(item(recipient, Kind::Like, fresh(), silenced), at(20));
    assert_eq!(apply(&store, refused, at(20)).await, Applied::Stale);
    assert_eq!(
        apply(&store, block, at(20)).await,
        Applied::Stale,
        "a redelivered silence"
    );
    assert_eq!(
        apply(&store, silence(version(at(5)), None), at(20)).await,
        Applied::Stale,
        "an older silence"
    );
    assert_eq!(
        apply(&store, unsilence(version(at(9))), at(20)).await,
        Applied::Stale
    );

    assert_eq!(
        apply(&store, unsilence(version(at(30))), at(30)).await,
        Applied::Recorded
    );
    assert_eq!(
        apply(&store, first_like, at(30)).await,
        Applied::Stale,
        "removed items do not come back"
    );
    let accepted = add(item(recipient, Kind::Like, fresh(), silenced), at(40));
    let (muted_group, created) = added(apply(&store, accepted, at(40)).await);
    assert!(created);

    // A mute that lapses: refused before `until_ms`, accepted from it on.
    let until_ms = at(60);
    let mute = silence(version(at(50)), Some(until_ms));
    assert_eq!(
        apply(&store, mute, at(50)).await,
        Applied::Removed { items: 1 }
    );
    assert!(!ids(&list(&store, recipient, at(50)).await).contains(&muted_group));
    let during = add(item(recipient, Kind::Like, fresh(), silenced), at(55));
    assert_eq!(apply(&store, during, at(55)).await, Applied::Stale);
    let after = add(item(recipient, Kind::Like, fresh(), silenced), until_ms);
    let (_, created) = added(apply(&store, after, until_ms).await);
    assert!(created, "accepted once until_ms <= now_ms");
    assert_eq!(
        apply(&store, unsilence(version(at(45))), at(61)).await,
        Applied::Stale
    );

    // A block and a mute are lifted separately: unblocking someone who is
    // still muted (hiding notifications) keeps them silenced.
    let by_source = |source: SilenceSource, at_ms: i64, active: bool| {
        if active {
            Change::Silence {
                recipient,
                actor: silenced,
                source,
                version: version(at_ms),
                until_ms: None,
            }
        } else {
            Change::Unsilence {
                recipient,
                actor: silenced,
                source,
                version: version(at_ms),
            }
        }
    };
    apply(
        &store,
        by_source(SilenceSource::Block, at(70), true),
        at(70),
    )
    .await;
    apply(&store, by_source(SilenceSource::Mute, at(71), true), at(71)).await;
    assert_eq!(
        apply(
            &store,
            by_source(SilenceSource::Block, at(72), false),
            at(72)
        )
        .await,
        Applied::Recorded
    );
    let still_muted = add(item(recipient, Kind::Like, fresh(), silenced), at(73));
    assert_eq!(
        apply(&store, still_muted, at(73)).await,
        Applied::Stale,
        "unblocked, but the mute still silences"
    );
    apply(
        &store,
        by_source(SilenceSource::Mute, at(74), false),
        at(74),
    )
    .await;
    let heard = add(item(recipient, Kind::Like, fresh(), silenced), at(75));
    let (_, created) = added(apply(&store, heard, at(75)).await);
    assert!(created, "heard again once neither silences");
}

async fn pages_return_every_group_once_newest_first(store: Store) {
    let recipient = fresh();
    let t0 = clock_ms();
    let changes = (0..25)
        .map(|n| add(item(recipient, Kind::Like, fresh(), fresh()), t0 + n))
        .collect();
    let created: Vec<u64> = apply_all(&store, changes, t0 + 25)
        .await
        .into_iter()
        .map(|applied| added(applied).0)
        .collect();
    let all = list(&store, recipient, t0 + 25).await;
    assert_eq!(ids(&all), newest_first(&created));

    let paged = list_all(
        &store,
        ListQuery {
            limit: 7,
            ..query(recipient, t0 + 25)
        },
    )
    .await;
    assert_eq!(
        ids(&paged),
        ids(&all),
        "pages of 7 cover every group exactly once"
    );
    let first_page = page(
        &store,
        ListQuery {
            limit: 7,
            ..query(recipient, t0 + 25)
        },
    )
    .await;
    assert_eq!(ids(&first_page.groups), ids(&all[..7]));
    assert!(first_page.next_before.is_some());

    let below = page(
        &store,
        ListQuery {
            before: Some(all[9].position),
            limit: 3,
            ..query(recipient, t0 + 25)
        },
    )
    .await;
    assert_eq!(ids(&below.groups), ids(&all[10..13]));
    let last = page(
        &store,
        ListQuery {
            before: Some(all[20].position),
            ..query(recipient, t0 + 25)
        },
    )
    .await;
    assert_eq!(ids(&last.groups), ids(&all[21..]));
    assert_eq!(last.next_before, None, "nothing below the last page");
}

async fn a_kinds_filter_pages_through_matching_groups_only(store: Store) {
    let recipient = fresh();
    let t0 = clock_ms();
    let changes = vec![
        add(item(recipient, Kind::Like, fresh(), fresh()), t0),
        add(item(recipient, Kind::Mention, fresh(), fresh()), t0 + 1),
        add(item(recipient, Kind::Follow, 0, fresh()), t0 + 2),
        add(item(recipient, Kind::Like, fresh(), fresh()), t0 + 3),
        add(item(recipient, Kind::Reply, fresh(), fresh()), t0 + 4),
        add(item(recipient, Kind::Like, fresh(), fresh()), t0 + 5),
        add(item(recipient, Kind::Mention, fresh(), fresh()), t0 + 6),
    ];
    let kinds: Vec<Kind> = changes
        .iter()
        .map(|change| match change {
            Change::Add { item, .. } => item.kind,
            _ => unreachable!("only adds"),
        })
        .collect();
    let created: Vec<u64> = apply_all(&store, changes, t0 + 6)
        .await
        .into_iter()
        .map(|applied| added(applied).0)
        .collect();
    let of = |wanted: &[Kind]| -> Vec<u64> {
        let mut matching: Vec<u64> = created
            .iter()
            .zip(&kinds)
            .filter(|(_, kind)| wanted.contains(kind))
            .map(|(id, _)| *id)
            .collect();
        matching.reverse();
        matching
    };
    let filtered_by = |kinds: Vec<Kind>, limit: usize| ListQuery {
        kinds,
        limit,
        ..query(recipient, t0 + 6)
    };

    let likes = list_all(&store, filtered_by(vec![Kind::Like], 100)).await;
    assert_eq!(ids(&likes), of(&[Kind::Like]));
    assert!(likes.iter().all(|group| group.kind == Kind::Like));
    let likes_one_by_one = list_all(&store, filtered_by(vec![Kind::Like], 1)).await;
    assert_eq!(ids(&likes_one_by_one), of(&[Kind::Like]));
    let wanted = [Kind::Mention, Kind::Follow];
    let mixed = list_all(&store, filtered_by(wanted.to_vec(), 2)).await;
    assert_eq!(ids(&mixed), of(&wanted));
    let none = page(&store, filtered_by(vec![Kind::Quote], 100)).await;
    assert!(none.groups.is_empty());
    assert_eq!(none.next_before, None);
    assert_eq!(
        list(&store, recipient, t0 + 6).await.len(),
        7,
        "no filter: every kind"
    );
}

async fn the_filtered_list_is_separate_and_not_counted_unread(store: Store) {
    let recipient = fresh();
    let t0 = clock_ms();
    let (like_group, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, fresh(), fresh()), t0),
            t0,
        )
        .await,
    );
    let stranger = Change::Add {
        item: item(recipient, Kind::Mention, fresh(), fresh()),
        version: version(t0 + 1),
        filtered: true,
    };
    let Applied::Added {
        group_id: filtered_group,
        created: true,
        filtered: true,
        ..
    } = apply(&store, stranger, t0 + 1).await
    else {
        panic!("a filtered mention makes a new filtered group");
    };

    let main = list(&store, recipient, t0 + 1).await;
    assert_eq!(ids(&main), vec![like_group]);
    assert!(!main[0].filtered);
    let filtered = list_all(
        &store,
        ListQuery {
            filtered: true,
            ..query(recipient, t0 + 1)
        },
    )
    .await;
    assert_eq!(ids(&filtered), vec![filtered_group]);
    assert!(filtered[0].filtered && filtered[0].kind == Kind::Mention);
    assert!(filtered[0].position > main[0].position);

    assert_eq!(
        unread(&store, recipient, UNREAD_CAP).await.count,
        1,
        "the main list only"
    );
    let marker = mark_read(&store, recipient, None).await;
    assert_eq!(marker, main[0].position, "the newest of the main list");
    assert_eq!(unread(&store, recipient, UNREAD_CAP).await.count, 0);
    assert_eq!(get(&store, recipient, &[filtered_group]).await, filtered);
}

async fn unread_counts_to_the_cap_and_the_marker_never_moves_back(store: Store) {
    let (recipient, other_recipient) = (fresh(), fresh());
    let t0 = clock_ms();
    assert_eq!(
        unread(&store, recipient, UNREAD_CAP).await,
        Unread {
            count: 0,
            capped: false,
            read_up_to: 0
        }
    );
    let changes = (0..5)
        .map(|n| add(item(recipient, Kind::Mention, fresh(), fresh()), t0 + n))
        .collect();
    let created: Vec<u64> = apply_all(&store, changes, t0 + 5)
        .await
        .into_iter()
        .map(|applied| added(applied).0)
        .collect();
    let (theirs, _) = added(
        apply(
            &store,
            add(
                item(other_recipient, Kind::Mention, fresh(), fresh()),
                t0 + 5,
            ),
            t0 + 5,
        )
        .await,
    );
    let groups = list(&store, recipient, t0 + 5).await;
    assert_eq!(ids(&groups), newest_first(&created));
    assert!(groups.iter().all(|group| group.unread));

    let counted = |count, capped| Unread {
        count,
        capped,
        read_up_to: 0,
    };
    assert_eq!(
        unread(&store, recipient, UNREAD_CAP).await,
        counted(5, false)
    );
    assert_eq!(unread(&store, recipient, 5).await, counted(5, false));
    assert_eq!(unread(&store, recipient, 3).await, counted(3, true));

    let third = groups[2].clone();
    assert_eq!(third.id, created[2]);
    assert_eq!(
        mark_read(&store, recipient, Some(third.id)).await,
        third.position
    );
    assert_eq!(
        unread(&store, recipient, UNREAD_CAP).await,
        Unread {
            count: 2,
            capped: false,
            read_up_to: third.position
        }
    );
    let flags: Vec<bool> = list(&store, recipient, t0 + 5)
        .await
        .iter()
        .map(|group| group.unread)
        .collect();
    assert_eq!(flags, vec![true, true, false, false, false]);

    assert_eq!(
        mark_read(&store, recipient, Some(created[0])).await,
        third.position,
        "never backwards"
    );
    assert_eq!(mark_read(&store, recipient, None).await, groups[0].position);
    assert_eq!(unread(&store, recipient, UNREAD_CAP).await.count, 0);
    assert_eq!(
        mark_read(&store, recipient, Some(created[1])).await,
        groups[0].position
    );

    added(
        apply(
            &store,
            add(item(recipient, Kind::Quote, fresh(), fresh()), t0 + 6),
            t0 + 6,
        )
        .await,
    );
    assert_eq!(unread(&store, recipient, UNREAD_CAP).await.count, 1);

    let unknown = fresh();
    for group_id in [unknown, theirs] {
        match store.mark_read(recipient, Some(group_id)).await {
            Err(NotifyError::GroupNotFound(id)) => assert_eq!(id, group_id),
            other => panic!("mark_read of group {group_id}, not the recipient's: {other:?}"),
        }
    }
    assert_eq!(
        unread(&store, other_recipient, UNREAD_CAP).await.count,
        1,
        "a marker per recipient"
    );
}

async fn get_keeps_the_order_asked_and_only_the_recipients_groups(store: Store) {
    let (recipient, other_recipient) = (fresh(), fresh());
    let t0 = clock_ms();
    let changes = (0..3)
        .map(|n| add(item(recipient, Kind::Like, fresh(), fresh()), t0 + n))
        .collect();
    let created: Vec<u64> = apply_all(&store, changes, t0 + 3)
        .await
        .into_iter()
        .map(|applied| added(applied).0)
        .collect();
    let (theirs, _) = added(
        apply(
            &store,
            add(item(other_recipient, Kind::Like, fresh(), fresh()), t0 + 3),
            t0 + 3,
        )
        .await,
    );
    let listed = list(&store, recipient, t0 + 3).await;

    let asked = [created[2], theirs, fresh(), created[0], created[1]];
    let got = get(&store, recipient, &asked).await;
    assert_eq!(ids(&got), vec![created[2], created[0], created[1]]);
    for group in &got {
        let same = listed.iter().find(|listed| listed.id == group.id);
        assert_eq!(Some(group), same, "get and list agree");
    }
    assert!(get(&store, recipient, &[]).await.is_empty());
    assert_eq!(
        ids(&get(&store, other_recipient, &asked).await),
        vec![theirs]
    );
}

async fn settings_default_and_round_trip(store: Store) {
    let (recipient, other_recipient) = (fresh(), fresh());
    let read = |recipient| {
        let store = Arc::clone(&store);
        async move {
            store
                .settings(recipient)
                .await
                .unwrap_or_else(|error| panic!("settings: {error:?}"))
        }
    };
    assert_eq!(read(recipient).await, Settings::default());
    for settings in [
        Settings {
            mentions_from_strangers: StrangerPolicy::Filter,
            new_accounts_days: 30,
        },
        Settings {
            mentions_from_strangers: StrangerPolicy::Accept,
            new_accounts_days: 365,
        },
        Settings::default(),
    ] {
        store
            .set_settings(recipient, settings)
            .await
            .unwrap_or_else(|error| panic!("set_settings: {error:?}"));
        assert_eq!(read(recipient).await, settings);
    }
    store
        .set_settings(
            recipient,
            Settings {
                mentions_from_strangers: StrangerPolicy::Filter,
                new_accounts_days: 0,
            },
        )
        .await
        .expect("set_settings");
    assert_eq!(
        read(other_recipient).await,
        Settings::default(),
        "a policy per recipient"
    );
}

async fn groups_past_the_retention_are_not_listed(store: Store) {
    let recipient = fresh();
    let retention_ms = RETENTION_DAYS as i64 * DAY_MS;
    let t0 = clock_ms();
    let (old, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, fresh(), fresh()), t0),
            t0,
        )
        .await,
    );
    let newer_at = t0 + 2 * DAY_MS;
    let (newer, _) = added(
        apply(
            &store,
            add(item(recipient, Kind::Like, fresh(), fresh()), newer_at),
            newer_at,
        )
        .await,
    );

    assert_eq!(
        ids(&list(&store, recipient, newer_at).await),
        vec![newer, old]
    );
    let just_inside = t0 + retention_ms;
    assert_eq!(
        ids(&list(&store, recipient, just_inside).await),
        vec![newer, old]
    );
    let day_after = t0 + retention_ms + DAY_MS;
    assert_eq!(ids(&list(&store, recipient, day_after).await), vec![newer]);
    let kinds = ListQuery {
        kinds: vec![Kind::Like],
        limit: 1,
        ..query(recipient, day_after)
    };
    assert_eq!(ids(&list_all(&store, kinds).await), vec![newer]);
    let long_after = newer_at + retention_ms + DAY_MS;
    assert!(list(&store, recipient, long_after).await.is_empty());
}

async fn a_recipient_keeps_at_most_the_retained_groups(store: Store) {
    const BATCH: usize = 1_000;
    let recipient = fresh();
    let t0 = clock_ms();
    let total = RETAINED_GROUPS + 1;
    let started = Instant::now();
    let mut created = Vec::with_capacity(total);
    let mut written = 0;
    while written < total {
        let batch = (written..total.min(written + BATCH))
            .map(|n| add(item(recipient, Kind::Like, fresh(), fresh()), t0 + n as i64))
            .collect::<Vec<_>>();
        written += batch.len();
        let applied = apply_all(&store, batch, t0 + written as i64).await;
        created.extend(applied.into_iter().map(|applied| added(applied).0));
    }
    let written_in = started.elapsed();

    let started = Instant::now();
    let now = t0 + total as i64;
    let listed = list_all(
        &store,
        ListQuery {
            limit: 1_000,
            ..query(recipient, now)
        },
    )
    .await;
    println!(
        "notify store conformance: {total} groups written in {written_in:?}, listed in {:?}",
        started.elapsed()
    );
    assert_eq!(listed.len(), RETAINED_GROUPS);
    assert_eq!(
        ids(&listed),
        newest_first(&created[1..]),
        "the oldest group went"
    );
    assert_eq!(
        ids(&get(&store, recipient, &[created[0], created[1]]).await),
        vec![created[1]]
    );
}

async fn a_viral_group_reads_its_newest_eight_and_exact_count(store: Store) {
    const LIKES: usize = 5_000;
    const BATCH: usize = 1_000;
    let (recipient, tweet) = (fresh(), fresh());
    let t0 = clock_ms();
    let actors: Vec<u64> = (0..LIKES).map(|_| fresh()).collect();
    let mut group_ids = Vec::with_capacity(LIKES);
    for (chunk, batch) in actors.chunks(BATCH).enumerate() {
        let changes = batch
            .iter()
            .enumerate()
            .map(|(n, &actor)| {
                let at_ms = t0 + (chunk * BATCH + n) as i64;
                add(item(recipient, Kind::Like, tweet, actor), at_ms)
            })
            .collect();
        let applied = apply_all(&store, changes, t0 + LIKES as i64).await;
        group_ids.extend(applied.into_iter().map(|applied| added(applied).0));
    }
    assert!(group_ids.iter().all(|id| *id == group_ids[0]), "one group");

    let started = Instant::now();
    let groups = list(&store, recipient, t0 + LIKES as i64).await;
    let read_in = started.elapsed();
    println!("notify store conformance: a {LIKES}-like group read in {read_in:?}");
    assert_eq!(ids(&groups), vec![group_ids[0]]);
    assert_eq!(groups[0].count, LIKES as u64);
    assert_eq!(
        groups[0].actors,
        newest_first(&actors[LIKES - MAX_SAMPLE_ACTORS..])
    );
    assert_eq!(get(&store, recipient, &[group_ids[0]]).await, groups);
    assert_eq!(unread(&store, recipient, UNREAD_CAP).await.count, 1);
}
