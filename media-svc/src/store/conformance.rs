//! The contract every [`MediaStore`] passes, run against each
//! implementation by its tests (`tests/store.rs`, `tests/redis.rs`).

use std::future::Future;
use std::sync::Arc;

use super::{Conflict, Kind, MediaRecord, MediaStore, Preview, Removal, State};

/// A point in time the cases count from.
const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;
/// Owners.
const ALICE: u64 = 1_001;
const BOB: u64 = 1_002;

/// Runs every case, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn MediaStore>>,
{
    records_round_trip(make().await.as_ref()).await;
    claims_are_all_or_nothing(make().await.as_ref()).await;
    claims_lapse_and_release(make().await.as_ref()).await;
    attaching_follows_the_tweet(make().await.as_ref()).await;
    avatars_are_own_images(make().await.as_ref()).await;
    deleted_tweets_schedule_their_media(make().await.as_ref()).await;
    the_sweep_keeps_what_is_used(make().await.as_ref()).await;
    removal_survives_a_crash(make().await.as_ref()).await;
}

/// An uploaded image (ids are distinct per case anyway).
pub fn image(id: u64, owner_id: u64) -> MediaRecord {
    MediaRecord {
        id,
        owner_id,
        kind: Kind::Image,
        content_type: "image/png".into(),
        size_bytes: 1_234,
        preview: Some(Preview {
            content_type: "image/jpeg".into(),
            size_bytes: 99,
        }),
        width: 640,
        height: 480,
        blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj".into(),
        alt_text: "a cat, 😺".into(),
        created_at_ms: NOW,
        state: State::Uploaded,
        due_ms: NOW + DAY,
        attached_by_claim: String::new(),
    }
}

fn video(id: u64, owner_id: u64) -> MediaRecord {
    MediaRecord {
        kind: Kind::Video,
        content_type: "video/mp4".into(),
        preview: None,
        width: 0,
        height: 0,
        blurhash: String::new(),
        ..image(id, owner_id)
    }
}

async fn state(store: &dyn MediaStore, id: u64) -> Option<State> {
    store
        .get_many(&[id])
        .await
        .unwrap()
        .pop()
        .unwrap()
        .map(|r| r.state)
}

async fn records_round_trip(store: &dyn MediaStore) {
    // Snowflake-sized ids: above 2^53, where a careless double loses digits.
    let first = image(1_u64 << 60 | 7, ALICE);
    let second = video((1_u64 << 60) + 8, BOB);
    store.insert(&first).await.unwrap();
    store.insert(&second).await.unwrap();
    let got = store.get_many(&[second.id, 42, first.id]).await.unwrap();
    assert_eq!(got, vec![Some(second), None, Some(first)]);
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

async fn claims_are_all_or_nothing(store: &dyn MediaStore) {
    for record in [image(1, ALICE), image(2, ALICE), image(3, BOB)] {
        store.insert(&record).await.unwrap();
    }
    let until = NOW + 600_000;
    // Bob's image among Alice's: nothing is claimed, the culprit is named.
    assert_eq!(
        store
            .claim(ALICE, &[1, 2, 3], "post-a", NOW, until)
            .await
            .unwrap(),
        Err((3, Conflict::NotOwner))
    );
    assert_eq!(state(store, 1).await, Some(State::Uploaded));
    assert_eq!(state(store, 2).await, Some(State::Uploaded));
    assert_eq!(
        store
            .claim(ALICE, &[1, 99], "post-a", NOW, until)
            .await
            .unwrap(),
        Err((99, Conflict::Missing))
    );
    assert_eq!(state(store, 1).await, Some(State::Uploaded));
    store
        .claim(ALICE, &[1, 2], "post-a", NOW, until)
        .await
        .unwrap()
        .unwrap();
    // The same key again (a retried post) succeeds; another key does not.
    store
        .claim(ALICE, &[2, 1], "post-a", NOW, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .claim(ALICE, &[2], "post-b", NOW, until)
            .await
            .unwrap(),
        Err((2, Conflict::Claimed))
    );
    assert_eq!(
        state(store, 2).await,
        Some(State::Claimed {
            key: "post-a".into(),
            until_ms: until
        })
    );
}

async fn claims_lapse_and_release(store: &dyn MediaStore) {
    store.insert(&image(1, ALICE)).await.unwrap();
    store.insert(&image(2, ALICE)).await.unwrap();
    store
        .claim(ALICE, &[1, 2], "post-a", NOW, NOW + 1_000)
        .await
        .unwrap()
        .unwrap();
    // Past its time, a claim no longer holds the media.
    store
        .claim(ALICE, &[1], "post-b", NOW + 1_000, NOW + 2_000)
        .await
        .unwrap()
        .unwrap();
    // Releasing post-a frees only what post-a still holds.
    store.release(ALICE, &[1, 2], "post-a").await.unwrap();
    assert_eq!(state(store, 2).await, Some(State::Uploaded));
    assert!(matches!(state(store, 1).await, Some(State::Claimed { key, .. }) if key == "post-b"));
    // Nobody else releases a claim.
    store.release(BOB, &[1], "post-b").await.unwrap();
    assert!(matches!(state(store, 1).await, Some(State::Claimed { .. })));
    store.release(ALICE, &[1, 77], "post-b").await.unwrap();
    assert_eq!(state(store, 1).await, Some(State::Uploaded));
}

async fn attaching_follows_the_tweet(store: &dyn MediaStore) {
    for record in [image(1, ALICE), image(2, ALICE), image(3, BOB)] {
        store.insert(&record).await.unwrap();
    }
    store
        .claim(ALICE, &[1], "post", NOW, NOW + 600_000)
        .await
        .unwrap()
        .unwrap();
    // Claimed or merely uploaded, both attach; Bob's and a missing id are skipped.
    let skipped = store.attach(500, ALICE, &[1, 2, 3, 4]).await.unwrap();
    assert_eq!(
        skipped,
        vec![(3, Conflict::NotOwner), (4, Conflict::Missing)]
    );
    assert_eq!(
        state(store, 1).await,
        Some(State::Attached { tweet_id: 500 })
    );
    assert_eq!(
        state(store, 2).await,
        Some(State::Attached { tweet_id: 500 })
    );
    // A redelivered event changes nothing; another tweet cannot take them.
    assert!(store.attach(500, ALICE, &[1, 2]).await.unwrap().is_empty());
    assert_eq!(
        store.attach(501, ALICE, &[1]).await.unwrap(),
        vec![(1, Conflict::Attached)]
    );
    assert_eq!(
        store
            .claim(ALICE, &[2], "later", NOW, NOW + 1)
            .await
            .unwrap(),
        Err((2, Conflict::Attached))
    );
    // The post that claimed id 1, retried with its key after the tweet was
    // created, claims it again and it stays attached; id 2 was attached
    // without a claim, so that key does not reach it.
    store
        .claim(ALICE, &[1], "post", NOW, NOW + 600_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state(store, 1).await,
        Some(State::Attached { tweet_id: 500 })
    );
    assert_eq!(
        store
            .claim(ALICE, &[1, 2], "post", NOW, NOW + 1)
            .await
            .unwrap(),
        Err((2, Conflict::Attached))
    );
    assert_eq!(
        state(store, 1).await,
        Some(State::Attached { tweet_id: 500 })
    );
    // Attached media are never due, however late it gets; Bob's unused upload is.
    assert_eq!(store.due(NOW + 365 * DAY, 100).await.unwrap(), vec![3]);
}

async fn avatars_are_own_images(store: &dyn MediaStore) {
    for record in [
        image(1, ALICE),
        video(2, ALICE),
        image(3, ALICE),
        image(4, ALICE),
    ] {
        store.insert(&record).await.unwrap();
    }
    let avatar = store.use_as_avatar(ALICE, 1).await.unwrap().unwrap();
    assert_eq!(avatar.state, State::Attached { tweet_id: 0 });
    assert_eq!(avatar.id, 1);
    // Again is fine; Bob cannot; a video cannot; a tweet's image cannot.
    store.use_as_avatar(ALICE, 1).await.unwrap().unwrap();
    assert_eq!(
        store.use_as_avatar(BOB, 1).await.unwrap(),
        Err(Conflict::NotOwner)
    );
    assert_eq!(
        store.use_as_avatar(ALICE, 2).await.unwrap(),
        Err(Conflict::NotImage)
    );
    store.attach(600, ALICE, &[3]).await.unwrap();
    assert_eq!(
        store.use_as_avatar(ALICE, 3).await.unwrap(),
        Err(Conflict::Attached)
    );
    store
        .claim(ALICE, &[4], "post", NOW, NOW + 600_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.use_as_avatar(ALICE, 4).await.unwrap(),
        Err(Conflict::Claimed)
    );
    assert_eq!(
        store.use_as_avatar(ALICE, 9).await.unwrap(),
        Err(Conflict::Missing)
    );
    // An avatar is kept; the unused video goes when its day is over.
    assert_eq!(store.due(NOW + 2 * DAY, 100).await.unwrap(), vec![2, 4]);
}

async fn deleted_tweets_schedule_their_media(store: &dyn MediaStore) {
    for record in [image(1, ALICE), image(2, ALICE), image(3, ALICE)] {
        store.insert(&record).await.unwrap();
    }
    store.attach(700, ALICE, &[1, 2]).await.unwrap();
    store.attach(701, ALICE, &[3]).await.unwrap();
    let due_at = NOW + 3_600_000;
    // Id 3 belongs to another tweet and stays.
    store
        .schedule_deletion(700, &[1, 2, 3], due_at)
        .await
        .unwrap();
    store
        .schedule_deletion(700, &[1, 2, 3], due_at + 5)
        .await
        .unwrap();
    assert_eq!(state(store, 1).await, Some(State::Deleting));
    assert_eq!(
        state(store, 3).await,
        Some(State::Attached { tweet_id: 701 })
    );
    assert_eq!(store.due(due_at - 1, 100).await.unwrap(), Vec::<u64>::new());
    let mut due = store.due(due_at + 10, 100).await.unwrap();
    due.sort_unstable();
    assert_eq!(due, vec![1, 2]);
    // Deleting media cannot be claimed or attached.
    assert_eq!(
        store
            .claim(ALICE, &[1], "post", NOW, NOW + 1)
            .await
            .unwrap(),
        Err((1, Conflict::Gone))
    );
    assert_eq!(
        store.attach(702, ALICE, &[1]).await.unwrap(),
        vec![(1, Conflict::Gone)]
    );
}

async fn the_sweep_keeps_what_is_used(store: &dyn MediaStore) {
    for id in 1..=4 {
        store.insert(&image(id, ALICE)).await.unwrap();
    }
    let late = NOW + DAY + 1;
    // Attached after it was listed as due (the race the re-check is for).
    let listed = store.due(late, 100).await.unwrap();
    assert_eq!(listed, vec![1, 2, 3, 4]);
    assert_eq!(store.due(late, 2).await.unwrap().len(), 2);
    store.attach(800, ALICE, &[2]).await.unwrap();
    store
        .claim(ALICE, &[3], "post", late, late + 600_000)
        .await
        .unwrap()
        .unwrap();
    let removed = match store.begin_removal(1, late).await.unwrap() {
        Removal::Remove(record) => record,
        Removal::Keep => panic!("an unattached upload past its day is removed"),
    };
    assert_eq!((removed.id, removed.state), (1, State::Removing));
    assert_eq!(store.begin_removal(2, late).await.unwrap(), Removal::Keep);
    // A live claim keeps it until the claim lapses, then it is due again.
    assert_eq!(store.begin_removal(3, late).await.unwrap(), Removal::Keep);
    assert_eq!(store.due(late, 100).await.unwrap(), vec![1, 4]);
    assert_eq!(store.due(late + 600_000, 100).await.unwrap(), vec![1, 4, 3]);
    // Not yet due: kept.
    store
        .insert(&MediaRecord {
            due_ms: late + DAY,
            ..image(5, ALICE)
        })
        .await
        .unwrap();
    assert_eq!(store.begin_removal(5, late).await.unwrap(), Removal::Keep);
    store.finish_removal(1).await.unwrap();
    store.finish_removal(1).await.unwrap();
    assert_eq!(state(store, 1).await, None);
    assert_eq!(store.due(late, 100).await.unwrap(), vec![4]);
    assert_eq!(store.begin_removal(1, late).await.unwrap(), Removal::Keep);
    assert_eq!(
        state(store, 2).await,
        Some(State::Attached { tweet_id: 800 })
    );
}

async fn removal_survives_a_crash(store: &dyn MediaStore) {
    store.insert(&image(1, ALICE)).await.unwrap();
    let late = NOW + DAY;
    assert!(matches!(
        store.begin_removal(1, late).await.unwrap(),
        Removal::Remove(_)
    ));
    // The sweeper died before deleting the files: the record is still due,
    // still `Removing`, and the next sweep removes it again.
    assert_eq!(store.due(late, 100).await.unwrap(), vec![1]);
    assert!(matches!(
        store.begin_removal(1, late + 1).await.unwrap(),
        Removal::Remove(record) if record.state == State::Removing
    ));
    // Nothing can take it meanwhile.
    assert_eq!(
        store.use_as_avatar(ALICE, 1).await.unwrap(),
        Err(Conflict::Gone)
    );
    store.finish_removal(1).await.unwrap();
    assert_eq!(store.due(late, 100).await.unwrap(), Vec::<u64>::new());
}
