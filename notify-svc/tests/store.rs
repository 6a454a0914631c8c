//! The embedded notification store: the conformance suite, each case on a
//! database of its own, and what survives closing and reopening the database.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use warble_notify_svc::store::{
    Applied, Change, EmbeddedNotificationStore, Item, Kind, ListQuery, NotificationStore, Settings,
    SilenceSource, StrangerPolicy, Version, conformance,
};

fn open_in(data_dir: &Path) -> EmbeddedNotificationStore {
    let database = warble_mesh::embedded::open_shared(data_dir).expect("open the database");
    EmbeddedNotificationStore::open(database).expect("open the notification store")
}

#[tokio::test]
async fn embedded_store_passes_the_conformance_suite() {
    // The directories live until the suite is done.
    let data_dirs = Mutex::new(Vec::new());
    conformance::run_all(|| {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn NotificationStore> = Arc::new(open_in(data_dir.path()));
        data_dirs.lock().expect("not poisoned").push(data_dir);
        std::future::ready(store)
    })
    .await;
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("fits")
}

fn like(recipient: u64, tweet_id: u64, actor: u64, at_ms: i64, event_id: u64) -> Change {
    Change::Add {
        item: Item {
            recipient,
            kind: Kind::Like,
            tweet_id,
            actor,
        },
        version: Version { at_ms, event_id },
        filtered: false,
    }
}

fn first_page(recipient: u64, now_ms: i64) -> ListQuery {
    ListQuery {
        recipient,
        before: None,
        limit: 100,
        kinds: vec![],
        filtered: false,
        now_ms,
    }
}

#[tokio::test]
async fn groups_versions_markers_and_settings_survive_reopening() {
    let data_dir = tempfile::tempdir().unwrap();
    let (recipient, tweet, other_tweet) = (7, 100, 200);
    let t0 = now_ms();
    let settings = Settings {
        mentions_from_strangers: StrangerPolicy::Filter,
        new_accounts_days: 30,
    };

    let database = warble_mesh::embedded::open_shared(data_dir.path()).unwrap();
    let handle = Arc::downgrade(&database);
    let store = EmbeddedNotificationStore::open(database).unwrap();
    let first_like = like(recipient, tweet, 1, t0, 1);
    store
        .apply_all(
            vec![
                first_like.clone(),
                like(recipient, tweet, 2, t0 + 1, 2),
                like(recipient, other_tweet, 3, t0 + 2, 3),
                Change::Silence {
                    recipient,
                    actor: 4,
                    source: SilenceSource::Mute,
                    version: Version {
                        at_ms: t0 + 3,
                        event_id: 4,
                    },
                    until_ms: None,
                },
            ],
            t0 + 3,
        )
        .await
        .unwrap();
    let older_group = store
        .list(first_page(recipient, t0 + 3))
        .await
        .unwrap()
        .groups[1]
        .id;
    let marker = store.mark_read(recipient, Some(older_group)).await.unwrap();
    store.set_settings(recipient, settings).await.unwrap();
    let before = store.list(first_page(recipient, t0 + 3)).await.unwrap();
    let unread_before = store.unread(recipient, 100).await.unwrap();
    drop(store);
    assert!(
        handle.upgrade().is_none(),
        "every handle on the database is gone"
    );

    let store = open_in(data_dir.path());
    assert_eq!(
        store.list(first_page(recipient, t0 + 3)).await.unwrap(),
        before
    );
    assert_eq!(store.unread(recipient, 100).await.unwrap(), unread_before);
    assert_eq!(unread_before.read_up_to, marker);
    assert_eq!(store.settings(recipient).await.unwrap(), settings);
    // Versions, silences, open groups and the position counter survived too.
    assert_eq!(
        store.apply(first_like, t0 + 4).await.unwrap(),
        Applied::Stale
    );
    assert_eq!(
        store
            .apply(like(recipient, tweet, 4, t0 + 4, 5), t0 + 4)
            .await
            .unwrap(),
        Applied::Stale,
        "the silence holds"
    );
    let Applied::Added {
        group_id, created, ..
    } = store
        .apply(like(recipient, tweet, 5, t0 + 5, 6), t0 + 5)
        .await
        .unwrap()
    else {
        panic!("a new like is added");
    };
    assert_eq!(
        (group_id, created),
        (older_group, false),
        "it joins the open group"
    );
    let after = store.list(first_page(recipient, t0 + 5)).await.unwrap();
    assert_eq!(after.groups[0].id, older_group);
    assert!(after.groups[0].position > before.groups[0].position);
    assert_eq!(after.groups[0].count, 3);
}
