//! The timeline cache contract as executable checks, run against every
//! [`TimelineCache`] implementation. `make` returns a fresh cache plus a guard
//! to keep alive (e.g. a Redis server).

use std::collections::BTreeMap;
use std::future::Future;

use crate::{
    CELEBRITY_CAPACITY, Entry, RETWEET_DEDUP_WINDOW, RecentEntries, Removal, TIMELINE_CAPACITY,
    TimelineCache,
};

/// Runs every check, each on a fresh cache.
pub async fn run_all<G, C, F, Fut>(make: F)
where
    C: TimelineCache,
    F: Fn() -> Fut,
    Fut: Future<Output = (G, C)>,
{
    let (_guard, cache) = make().await;
    pushes_are_ordered_and_idempotent(&cache).await;
    let (_guard, cache) = make().await;
    capacity_holds_and_drops_the_oldest(&cache).await;
    let (_guard, cache) = make().await;
    unbuilt_timelines_read_as_misses_but_keep_pushes(&cache).await;
    let (_guard, cache) = make().await;
    removals_and_eviction(&cache).await;
    let (_guard, cache) = make().await;
    paging_covers_everything_once(&cache).await;
    let (_guard, cache) = make().await;
    celebrity_sets(&cache).await;
    let (_guard, cache) = make().await;
    last_active_marks(&cache).await;
    let (_guard, cache) = make().await;
    last_active_marks_of_many_users_are_each_their_own(&cache).await;
    let (_guard, cache) = make().await;
    matches_a_reference_model_under_random_operations(&cache).await;
    let (_guard, cache) = make().await;
    pushes_to_many_timelines_treat_each_on_its_own(&cache).await;
    let (_guard, cache) = make().await;
    retweets_sit_at_their_own_position(&cache).await;
    let (_guard, cache) = make().await;
    a_retweet_of_a_recently_shown_tweet_is_not_pushed(&cache).await;
    let (_guard, cache) = make().await;
    removing_a_user_takes_what_came_from_them_or_involves_them(&cache).await;
    let (_guard, cache) = make().await;
    followed_celebrity_sets(&cache).await;
}

/// A user's followed-celebrity set: a miss until recorded (an empty record
/// too is a record), replaced by a new record, and changed by adds and
/// removals only where one is recorded.
pub async fn followed_celebrity_sets(cache: &impl TimelineCache) {
    let (ana, ben, cy) = (11, 12, 13);
    assert_eq!(cache.followed_celebrities(ana).await.unwrap(), None);
    cache.set_followed_celebrities(ana, &[]).await.unwrap();
    assert_eq!(cache.followed_celebrities(ana).await.unwrap(), Some(vec![]));
    cache
        .set_followed_celebrities(ben, &[900, 700])
        .await
        .unwrap();
    assert_eq!(
        cache.followed_celebrities(ben).await.unwrap(),
        Some(vec![700, 900])
    );

    cache
        .add_followed_celebrity(&[ana, ben, cy], 800)
        .await
        .unwrap();
    cache.add_followed_celebrity(&[ben], 800).await.unwrap();
    assert_eq!(
        cache.followed_celebrities(ana).await.unwrap(),
        Some(vec![800])
    );
    assert_eq!(
        cache.followed_celebrities(ben).await.unwrap(),
        Some(vec![700, 800, 900])
    );
    assert_eq!(
        cache.followed_celebrities(cy).await.unwrap(),
        None,
        "nothing recorded: an add does not make a record"
    );

    cache
        .remove_followed_celebrity(&[ana, ben, cy], 800)
        .await
        .unwrap();
    assert_eq!(cache.followed_celebrities(ana).await.unwrap(), Some(vec![]));
    assert_eq!(
        cache.followed_celebrities(ben).await.unwrap(),
        Some(vec![700, 900])
    );
    assert_eq!(cache.followed_celebrities(cy).await.unwrap(), None);

    cache.set_followed_celebrities(ben, &[600]).await.unwrap();
    assert_eq!(
        cache.followed_celebrities(ben).await.unwrap(),
        Some(vec![600]),
        "a new record replaces the old"
    );
}

fn entry(tweet_id: u64, author_id: u64) -> Entry {
    Entry::tweet(tweet_id, author_id)
}

async fn whole(cache: &impl TimelineCache, user: u64) -> Vec<Entry> {
    cache
        .read(user, None, usize::MAX)
        .await
        .unwrap()
        .expect("timeline is built")
        .entries
}

/// Entries come back newest first whatever order they were pushed in; a
/// repeated push changes nothing; a push reaches every listed user.
pub async fn pushes_are_ordered_and_idempotent(cache: &impl TimelineCache) {
    for user in [1, 2] {
        cache.insert(user, &[], true).await.unwrap();
    }
    for id in [20, 10, 30, 20] {
        cache.push(&[1, 2], entry(id, 7)).await.unwrap();
    }
    for user in [1, 2] {
        assert_eq!(
            whole(cache, user).await,
            vec![entry(30, 7), entry(20, 7), entry(10, 7)]
        );
    }
}

/// A timeline never exceeds its capacity; the oldest entries go first.
pub async fn capacity_holds_and_drops_the_oldest(cache: &impl TimelineCache) {
    cache.insert(1, &[], true).await.unwrap();
    let total = TIMELINE_CAPACITY as u64 + 200;
    for id in 1..=total {
        cache.push(&[1], entry(id, 9)).await.unwrap();
    }
    let all = whole(cache, 1).await;
    assert_eq!(all.len(), TIMELINE_CAPACITY);
    assert_eq!(all[0].tweet_id, total);
    assert_eq!(
        all.last().unwrap().tweet_id,
        total - TIMELINE_CAPACITY as u64 + 1
    );
    // An entry older than everything in a full timeline is not kept.
    cache.push(&[1], entry(1, 9)).await.unwrap();
    assert_eq!(whole(cache, 1).await, all);
    // Bulk insert respects the cap too.
    let bulk: Vec<_> = (10_000..10_000 + total).map(|id| entry(id, 3)).collect();
    cache.insert(2, &bulk, true).await.unwrap();
    let page = cache.read(2, None, 5).await.unwrap().unwrap();
    assert_eq!(page.len, TIMELINE_CAPACITY);
    assert_eq!(page.entries[0].tweet_id, 10_000 + total - 1);
}

/// Pushes to a timeline nobody has built are kept, but reads miss until a
/// rebuild marks it built, and the rebuild merges with what was pushed.
pub async fn unbuilt_timelines_read_as_misses_but_keep_pushes(cache: &impl TimelineCache) {
    cache.push(&[5], entry(50, 1)).await.unwrap();
    assert_eq!(cache.read(5, None, 10).await.unwrap(), None);
    cache
        .insert(5, &[entry(40, 2), entry(60, 3)], true)
        .await
        .unwrap();
    assert_eq!(
        whole(cache, 5).await,
        vec![entry(60, 3), entry(50, 1), entry(40, 2)]
    );
    assert_eq!(
        cache.read(6, None, 10).await.unwrap(),
        None,
        "never-seen user is a miss"
    );
}

/// Deletes, unfollows and evictions.
pub async fn removals_and_eviction(cache: &impl TimelineCache) {
    for user in [1, 2] {
        cache
            .insert(
                user,
                &[entry(1, 10), entry(2, 20), entry(3, 10), entry(4, 30)],
                true,
            )
            .await
            .unwrap();
    }
    cache.remove(&[1, 2, 3], 2).await.unwrap();
    cache.remove(&[1], 999).await.unwrap();
    assert_eq!(
        whole(cache, 2).await,
        vec![entry(4, 30), entry(3, 10), entry(1, 10)]
    );
    cache.remove_user(1, 10, Removal::ComingFrom).await.unwrap();
    assert_eq!(whole(cache, 1).await, vec![entry(4, 30)]);
    cache.evict(1).await.unwrap();
    assert_eq!(cache.read(1, None, 10).await.unwrap(), None);
    assert_eq!(whole(cache, 2).await.len(), 3, "other timelines untouched");
}

/// Walking pages with `before` = last id returns every entry once, in order.
pub async fn paging_covers_everything_once(cache: &impl TimelineCache) {
    let entries: Vec<_> = (1..=57).map(|id| entry(id * 3, id % 4)).collect();
    cache.insert(8, &entries, true).await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = cache.read(8, before, 10).await.unwrap().unwrap();
        assert_eq!(page.len, 57);
        seen.extend(page.entries.iter().copied());
        if !page.has_more {
            break;
        }
        before = Some(page.entries.last().unwrap().tweet_id);
    }
    let mut expected = entries;
    expected.reverse();
    assert_eq!(seen, expected);
    // `before` need not be an id in the timeline.
    let page = cache.read(8, Some(100), 2).await.unwrap().unwrap();
    assert_eq!(page.entries, vec![entry(99, 1), entry(96, 0)]);
}

/// Celebrity recent sets: a miss until filled; a fill unions with entries
/// added before it, so a tweet posted during a fill is not lost; retweets
/// sit among the tweets at their own position. A set below capacity is
/// complete (the celebrity's whole history); a full one is not, and a
/// removal from a full one makes it a miss, to be filled again.
pub async fn celebrity_sets(cache: &impl TimelineCache) {
    let complete = |entries: Vec<Entry>| {
        Some(RecentEntries {
            entries,
            complete: true,
        })
    };
    let own = |id| entry(id, 100);
    cache.celebrity_add(100, own(5)).await.unwrap();
    assert_eq!(
        cache.celebrity_recent(&[100], None, 10).await.unwrap(),
        vec![None]
    );
    cache
        .celebrity_fill(100, &[own(3), own(1), own(2)])
        .await
        .unwrap();
    cache.celebrity_add(100, own(6)).await.unwrap();
    cache.celebrity_add(100, own(6)).await.unwrap();
    let retweet = Entry::retweet(4, 100, 77, 7);
    cache.celebrity_add(100, retweet).await.unwrap();
    cache.celebrity_fill(200, &[]).await.unwrap();
    assert_eq!(
        cache
            .celebrity_recent(&[100, 200, 300], None, 10)
            .await
            .unwrap(),
        vec![
            complete(vec![own(6), own(5), retweet, own(3), own(2), own(1)]),
            complete(vec![]),
            None
        ]
    );
    cache.celebrity_remove(100, 3).await.unwrap();
    cache.celebrity_remove(100, 4).await.unwrap();
    assert_eq!(
        cache.celebrity_recent(&[100], Some(6), 3).await.unwrap(),
        vec![complete(vec![own(5), own(2), own(1)])],
        "a removal from a set below capacity keeps it complete"
    );
    let many: Vec<Entry> = (1..=CELEBRITY_CAPACITY as u64 + 10)
        .map(|id| entry(id, 300))
        .collect();
    cache.celebrity_fill(300, &many).await.unwrap();
    let full = |cache_answer: Vec<Option<RecentEntries>>| {
        let recent = cache_answer[0].clone().expect("filled");
        assert!(!recent.complete, "a full set may have lost older entries");
        recent.entries
    };
    let recent = full(
        cache
            .celebrity_recent(&[300], None, usize::MAX)
            .await
            .unwrap(),
    );
    assert_eq!(recent.len(), CELEBRITY_CAPACITY);
    assert_eq!(
        recent[0],
        entry(CELEBRITY_CAPACITY as u64 + 10, 300),
        "the newest are kept"
    );
    // Removing from the full set leaves it one short of capacity while
    // older entries exist: it must not read as complete, so it is a miss.
    cache
        .celebrity_remove(300, CELEBRITY_CAPACITY as u64)
        .await
        .unwrap();
    assert_eq!(
        cache.celebrity_recent(&[300], None, 10).await.unwrap(),
        vec![None]
    );
    let refill: Vec<Entry> = many
        .iter()
        .copied()
        .filter(|entry| entry.tweet_id != CELEBRITY_CAPACITY as u64)
        .collect();
    cache.celebrity_fill(300, &refill).await.unwrap();
    full(cache.celebrity_recent(&[300], None, 10).await.unwrap());
    // A set that reaches capacity through adds is no longer complete.
    cache.celebrity_fill(400, &[entry(1, 400)]).await.unwrap();
    for id in 2..=CELEBRITY_CAPACITY as u64 + 1 {
        cache.celebrity_add(400, entry(id, 400)).await.unwrap();
    }
    full(cache.celebrity_recent(&[400], None, 10).await.unwrap());
}

/// Last-active marks only move forward.
pub async fn last_active_marks(cache: &impl TimelineCache) {
    cache.mark_active(1, 1_000).await.unwrap();
    cache.mark_active(1, 500).await.unwrap();
    cache.mark_active(2, 2_000).await.unwrap();
    assert_eq!(
        cache.last_active(&[1, 2, 3]).await.unwrap(),
        vec![Some(1_000), Some(2_000), None]
    );
}

/// Last-active marks read for more users than one command or script call
/// carries (an implementation may group them, e.g. by bucket, hash slot or
/// call), spread over many groups: each user gets their own mark, in the
/// order asked and as often as asked; `None` if never marked; the latest
/// when marked more than once, in whatever order. Fan-out's activity filter
/// rests on this: never-seen users get nothing, idle ones are evicted,
/// active ones get the tweet.
pub async fn last_active_marks_of_many_users_are_each_their_own(cache: &impl TimelineCache) {
    const NOW: u64 = 1_700_000_000_000;
    const DAY: u64 = 86_400_000;
    // Snowflake-shaped ids (low bits nearly constant) and a few past 2^53.
    let users: Vec<u64> = (1..=1_000u64)
        .map(|i| (i << 22) | (i % 3))
        .chain((1..=100).map(|i| u64::MAX - i * 1_000))
        .collect();
    let mut model: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, &user) in users.iter().enumerate() {
        let i = i as u64;
        let marks = match i % 5 {
            // Never seen.
            0 => vec![],
            // Idle for longer than any activity window, or just active.
            1 => vec![NOW - 40 * DAY - i],
            2 => vec![NOW - i],
            // Back from idleness; and a late write of an old mark, ignored.
            3 => vec![NOW - 60 * DAY - i, NOW + i],
            _ => vec![NOW + DAY + i, NOW - 60 * DAY],
        };
        for &at in &marks {
            cache.mark_active(user, at).await.unwrap();
        }
        if let Some(&latest) = marks.iter().max() {
            model.insert(user, latest);
        }
    }
    // Newest first, every seventh user asked twice, and some strangers.
    let mut asked: Vec<u64> = users.iter().rev().copied().collect();
    asked.extend(users.iter().step_by(7).copied());
    asked.extend((1..=50).map(|i| (i << 22) | 3));
    let marks = cache.last_active(&asked).await.unwrap();
    assert_eq!(marks.len(), asked.len());
    for (user, mark) in asked.iter().zip(marks) {
        assert_eq!(mark, model.get(user).copied(), "user {user}");
    }
    assert_eq!(cache.last_active(&[]).await.unwrap(), vec![]);
}

/// A deterministic random walk of pushes, removals, author removals and
/// bulk inserts over a few users, checked against a model after every step.
pub async fn matches_a_reference_model_under_random_operations(cache: &impl TimelineCache) {
    let mut model: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for user in 0..4 {
        cache.insert(user, &[], true).await.unwrap();
        model.insert(user, BTreeMap::new());
    }
    for _ in 0..3_000 {
        let user = next(4);
        match next(10) {
            0..=5 => {
                let (id, author) = (1 + next(1_500), next(6));
                let users: Vec<u64> = (0..4).filter(|_| next(2) == 0).collect();
                for user in &users {
                    model_insert(model.get_mut(user).unwrap(), entry(id, author));
                }
                cache.push(&users, entry(id, author)).await.unwrap();
            }
            6 => {
                let id = 1 + next(1_500);
                for timeline in model.values_mut() {
                    timeline.remove(&id);
                }
                cache.remove(&[0, 1, 2, 3], id).await.unwrap();
            }
            7 => {
                let author = next(6);
                model.get_mut(&user).unwrap().retain(|_, a| *a != author);
                cache
                    .remove_user(user, author, Removal::ComingFrom)
                    .await
                    .unwrap();
            }
            _ => {
                let batch: Vec<_> = (0..next(30))
                    .map(|_| entry(1 + next(1_500), next(6)))
                    .collect();
                for item in &batch {
                    model_insert(model.get_mut(&user).unwrap(), *item);
                }
                cache.insert(user, &batch, true).await.unwrap();
            }
        }
        let expected: Vec<_> = model[&user]
            .iter()
            .rev()
            .map(|(id, author)| entry(*id, *author))
            .collect();
        assert_eq!(whole(cache, user).await, expected);
    }
}

/// A push and a removal reaching a thousand timelines of every kind (an
/// implementation may handle them in groups, e.g. several per Redis script
/// call): each timeline is capped, deduplicated and built or not on its own,
/// whatever the others in its group, and a user listed twice gets the entry
/// once.
pub async fn pushes_to_many_timelines_treat_each_on_its_own(cache: &impl TimelineCache) {
    const TWEET: u64 = 5_000;
    let users: Vec<u64> = (1..=1_000).collect();
    let full: Vec<Entry> = (1..=TIMELINE_CAPACITY as u64)
        .map(|id| entry(id, 9))
        .collect();
    let unbuilt = |user: u64| user % 10 == 1;
    let mut model: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    for &user in &users {
        let initial = match user % 10 {
            0 => full.clone(),
            1 => Vec::new(),
            // Already holds the tweet, under another author.
            2 => vec![entry(TWEET, 2)],
            _ => vec![entry(user, 3)],
        };
        if !unbuilt(user) {
            cache.insert(user, &initial, true).await.unwrap();
        }
        let timeline = model.entry(user).or_default();
        for item in initial {
            model_insert(timeline, item);
        }
    }
    // Newest users first, and one of them twice.
    let mut audience: Vec<u64> = users.iter().rev().copied().collect();
    audience.push(500);
    // A new tweet, then one older than every full timeline's oldest entry
    // once the new tweet has pushed tweet 1 out.
    for pushed in [entry(TWEET, 1), entry(1, 1)] {
        cache.push(&audience, pushed).await.unwrap();
        for timeline in model.values_mut() {
            model_insert(timeline, pushed);
        }
    }
    let expected = |model: &BTreeMap<u64, BTreeMap<u64, u64>>, user: u64| -> Vec<Entry> {
        model[&user]
            .iter()
            .rev()
            .map(|(id, author)| entry(*id, *author))
            .collect()
    };
    for &user in &users {
        if unbuilt(user) {
            assert_eq!(
                cache.read(user, None, 10).await.unwrap(),
                None,
                "user {user}"
            );
            cache.insert(user, &[], true).await.unwrap();
        }
        assert_eq!(
            whole(cache, user).await,
            expected(&model, user),
            "user {user}"
        );
    }
    assert_eq!(
        whole(cache, 10).await.len(),
        TIMELINE_CAPACITY,
        "a full timeline stays full"
    );
    assert_eq!(
        whole(cache, 12).await[0],
        entry(TWEET, 2),
        "the first author stays"
    );

    cache.remove(&audience, TWEET).await.unwrap();
    for timeline in model.values_mut() {
        timeline.remove(&TWEET);
    }
    for &user in &users {
        assert_eq!(
            whole(cache, user).await,
            expected(&model, user),
            "user {user}"
        );
    }
}

/// The reference behaviour of adding one entry to a capped timeline: a
/// repeat changes nothing, an entry older than a full timeline's oldest is
/// not kept, and otherwise the oldest entry makes room.
fn model_insert(timeline: &mut BTreeMap<u64, u64>, item: Entry) {
    let full = timeline.len() >= TIMELINE_CAPACITY;
    let older_than_all = timeline
        .keys()
        .next()
        .is_some_and(|oldest| item.tweet_id < *oldest);
    if timeline.contains_key(&item.tweet_id) || (full && older_than_all) {
        return;
    }
    timeline.insert(item.tweet_id, item.author_id);
    if timeline.len() > TIMELINE_CAPACITY {
        timeline.pop_first();
    }
}

/// A retweet sits at its retweet's position, next to the tweet's own entry
/// and other retweets of it; pages by position cover each once, and
/// removing one position leaves the others.
pub async fn retweets_sit_at_their_own_position(cache: &impl TimelineCache) {
    let tweet = entry(10, 1);
    let first = Entry::retweet(20, 2, 10, 1);
    let second = Entry::retweet(30, 3, 10, 1);
    cache
        .insert(5, &[tweet, first, second, entry(25, 4)], true)
        .await
        .unwrap();
    assert_eq!(
        whole(cache, 5).await,
        vec![second, entry(25, 4), first, tweet]
    );
    let page = cache.read(5, Some(25), 10).await.unwrap().unwrap();
    assert_eq!(page.entries, vec![first, tweet], "below position 25");
    cache.remove(&[5], 20).await.unwrap();
    assert_eq!(whole(cache, 5).await, vec![second, entry(25, 4), tweet]);
    cache.remove(&[5], 10).await.unwrap();
    assert_eq!(
        whole(cache, 5).await,
        vec![second, entry(25, 4)],
        "removing the tweet's own entry leaves the retweets (readers check the tweet is live)"
    );
}

/// A pushed retweet is not added where the tweet, or another retweet of
/// it, is among the newest [`RETWEET_DEDUP_WINDOW`] entries; further down,
/// or in another timeline, it is.
pub async fn a_retweet_of_a_recently_shown_tweet_is_not_pushed(cache: &impl TimelineCache) {
    let window = RETWEET_DEDUP_WINDOW as u64;
    // User 1: the tweet is the newest entry. User 2: another retweet of it
    // is. User 3: the tweet sits just past the window. User 4: never saw it.
    cache.insert(1, &[entry(1_000, 9)], true).await.unwrap();
    cache
        .insert(2, &[Entry::retweet(1_001, 8, 1_000, 9)], true)
        .await
        .unwrap();
    let mut third = vec![entry(1_000, 9)];
    third.extend((0..window).map(|n| entry(2_000 + n, 7)));
    cache.insert(3, &third, true).await.unwrap();
    cache.insert(4, &[entry(5, 6)], true).await.unwrap();

    let retweet = Entry::retweet(5_000, 3, 1_000, 9);
    cache.push(&[1, 2, 3, 4], retweet).await.unwrap();
    assert_eq!(whole(cache, 1).await, vec![entry(1_000, 9)]);
    assert_eq!(
        whole(cache, 2).await,
        vec![Entry::retweet(1_001, 8, 1_000, 9)]
    );
    assert_eq!(whole(cache, 3).await[0], retweet, "past the window");
    assert_eq!(whole(cache, 4).await, vec![retweet, entry(5, 6)]);
    // A tweet's own entry is never held back by the window.
    cache.push(&[2], entry(1_000, 9)).await.unwrap();
    assert_eq!(whole(cache, 2).await.len(), 2);
}

/// Unfollowing removes what came through the user (their tweets, their
/// retweets) and keeps others' retweets of their tweets; blocking removes
/// everything the user is part of.
pub async fn removing_a_user_takes_what_came_from_them_or_involves_them(
    cache: &impl TimelineCache,
) {
    let entries = [
        entry(1, 7),                 // 7's tweet
        Entry::retweet(2, 7, 50, 8), // 7 retweets 8's tweet
        Entry::retweet(3, 8, 60, 7), // 8 retweets 7's tweet
        entry(4, 8),                 // 8's tweet
        Entry::retweet(5, 9, 70, 6), // unrelated
    ];
    for user in [1, 2] {
        cache.insert(user, &entries, true).await.unwrap();
    }
    cache.remove_user(1, 7, Removal::ComingFrom).await.unwrap();
    assert_eq!(
        whole(cache, 1).await,
        vec![entries[4], entries[3], entries[2]]
    );
    cache.remove_user(2, 7, Removal::Involving).await.unwrap();
    assert_eq!(whole(cache, 2).await, vec![entries[4], entries[3]]);
}
