//! The [`TweetStore`] contract as executable checks, run against every
//! implementation: the embedded store in this crate's unit tests (once as
//! is, once with the trait's default `create_tweets`, which ScyllaDB uses),
//! ScyllaDB in `tests/api/store_scylla.rs` when `SCYLLA_URI` is set.
//!
//! The checks speak only the trait and the store's [`Outbox`] (where its
//! events wait to be published), so every backend answers the same
//! assertions. They never assume an empty store: ids, authors and keys are
//! fresh per check and event assertions filter on them, so a backend whose
//! `make` hands out one shared keyspace per run gives the same verdicts as
//! one with a fresh database per check. The one exception runs first, while
//! even a store shared by the whole run is still empty: a scan of an empty
//! store.
//!
//! `make` must build stores whose idempotency keys live [`IDEMPOTENCY_TTL`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use warble_mesh::event_log::DOMAIN_EVENTS_STREAM;
use warble_mesh::outbox::{Outbox, OutboxEntry};
use warble_mesh::snowflake::{SnowflakeGenerator, WARBLE_EPOCH_MS};
use warble_proto::events::v1::{
    Event, Liked, RetweetUndone, Retweeted, TweetCreated, TweetDeleted, Unliked, event,
};
use warble_proto::limits::tweet::MAX_WRITE_BATCH;

use super::{
    Ancestors, AuthorEntries, AuthorEntry, Bookmark, CreateOutcome, Engagement, EngagementChange,
    EngagementWrite, EntryRef, HydratedTweet, MAX_SKIPPED_BOOKMARKS, NewTweet, ScanPosition,
    ScannedTweet, Tweet, TweetCounts, TweetLookup, TweetScanPage, TweetStore, ViewerState,
};
use crate::error::TweetError;

/// The idempotency window every store under test must be configured with.
/// The TTL check moves time by issuing ids at chosen instants, so a short
/// window costs no waiting.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(60);

/// Most outbox entries one look at the outbox reads; far above what a run writes.
const OUTBOX_SCAN: usize = 100_000;

/// Runs every check, each on what a fresh `make()` returns: a guard to keep
/// alive (a temp dir, a session), the store, and the store's outbox.
pub async fn run_all<G, S, F, Fut>(make: F)
where
    S: TweetStore,
    F: Fn() -> Fut,
    Fut: Future<Output = (G, S, Arc<dyn Outbox>)>,
{
    // First: the only check that needs an empty store (see the module doc).
    let (_guard, store, _outbox) = make().await;
    scanning_an_empty_store_gives_one_empty_last_page(&store).await;
    let (_guard, store, outbox) = make().await;
    created_tweets_read_back_exactly(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    an_idempotency_key_replays_its_tweet_and_rejects_other_content(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    an_idempotency_key_expires_after_its_ttl(&store).await;
    let (_guard, store, _outbox) = make().await;
    a_key_whose_tweet_was_deleted_cannot_be_replayed(&store).await;
    let (_guard, store, _outbox) = make().await;
    deleted_tweets_are_invisible_to_every_read(&store).await;
    let (_guard, store, _outbox) = make().await;
    likes_and_retweets_are_idempotent_and_never_negative(&store).await;
    let (_guard, store, _outbox) = make().await;
    concurrent_likes_count_each_user_once(&store).await;
    let (_guard, store, _outbox) = make().await;
    replies_and_quotes_are_counted_while_live(&store).await;
    let (_guard, store, _outbox) = make().await;
    an_authors_tweets_page_newest_first_below_the_cursor(&store).await;
    let (_guard, store, _outbox) = make().await;
    authors_batch_lists_live_ids_newest_first_with_more_flag(&store).await;
    let (_guard, store, outbox) = make().await;
    every_create_and_delete_leaves_exactly_one_event(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    max_issued_id_covers_tweet_and_event_ids(&store).await;
    let (_guard, store, _outbox) = make().await;
    hydrating_answers_what_the_three_reads_answer(&store).await;
    let (_guard, store, outbox) = make().await;
    a_tweet_batch_creates_in_order_with_one_event_per_tweet(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    a_tweet_batch_replays_keys_of_earlier_calls_and_earlier_entries(&store, outbox.as_ref()).await;
    let (_guard, store, outbox) = make().await;
    a_tweet_batch_with_a_missing_target_creates_nothing(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    tweet_batches_are_limited_in_size(&store).await;
    let (_guard, store, outbox) = make().await;
    engagement_publishes_only_on_change_and_retweets_keep_their_id(&store, outbox.as_ref()).await;
    let (_guard, store, _outbox) = make().await;
    a_users_list_merges_tweets_and_retweets_newest_first(&store).await;
    let (_guard, store, _outbox) = make().await;
    retweets_of_deleted_tweets_are_not_listed(&store).await;
    let (_guard, store, _outbox) = make().await;
    bookmarks_are_idempotent_private_and_newest_first(&store).await;
    let (_guard, store, _outbox) = make().await;
    a_bookmark_list_of_deleted_tweets_pages_short_but_goes_on(&store).await;
    let (_guard, store, _outbox) = make().await;
    replies_list_live_direct_replies_oldest_first(&store).await;
    let (_guard, store, _outbox) = make().await;
    ancestors_come_root_first_through_deleted_tweets(&store).await;
    let (_guard, store, _outbox) = make().await;
    author_counts_follow_creates_and_deletes(&store).await;
    let (_guard, store, _outbox) = make().await;
    a_scan_lists_every_live_tweet_once_in_a_stable_order_with_its_counts(&store).await;
    let (_guard, store, _outbox) = make().await;
    a_scan_leaves_out_tweets_deleted_before_their_page(&store).await;
}

/// Fresh ids for one check: Snowflake ids from a generator on a random
/// worker, and random author/user ids, so checks sharing a store never meet.
struct Fixture {
    ids: SnowflakeGenerator,
}

impl Fixture {
    fn new() -> Self {
        let worker = rand::random_range(0..=u32::from(warble_mesh::snowflake::MAX_WORKER_ID));
        Self {
            ids: SnowflakeGenerator::new(worker).expect("worker id in range"),
        }
    }

    fn id(&self) -> u64 {
        self.ids.next_id().expect("clock usable")
    }

    /// A user id unique to this run (user ids are opaque to the tweet store).
    fn user(&self) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // A random base per process plus a counter: unique within the run,
        // and unlikely to meet a previous run's users in a reused keyspace.
        static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(|| rand::random_range(1u64 << 40..1u64 << 50));
        base + NEXT.fetch_add(1, Ordering::Relaxed)
    }

    fn tweet(&self, author_id: u64, text: &str) -> NewTweet {
        NewTweet {
            tweet: Tweet {
                id: self.id(),
                author_id,
                text: text.to_owned(),
                reply_to_tweet_id: None,
                quote_of_tweet_id: None,
                hashtags: vec![],
                mentions: vec![],
                media_ids: vec![],
            },
            idempotency_key: None,
            event_id: self.id(),
        }
    }
}

async fn create(store: &impl TweetStore, new: NewTweet) -> Tweet {
    match store.create_tweet(new).await.expect("create_tweet") {
        CreateOutcome::Created(tweet) => tweet,
        CreateOutcome::Replayed(tweet) => panic!("expected a new tweet, got a replay of {tweet:?}"),
    }
}

async fn post(store: &impl TweetStore, fixture: &Fixture, author: u64, text: &str) -> Tweet {
    create(store, fixture.tweet(author, text)).await
}

async fn lookup(store: &impl TweetStore, id: u64) -> TweetLookup {
    store
        .get_tweets(vec![id])
        .await
        .expect("get_tweets")
        .pop()
        .expect("one answer per id")
}

async fn counts(store: &impl TweetStore, id: u64) -> Option<TweetCounts> {
    store
        .get_counts(vec![id])
        .await
        .expect("get_counts")
        .pop()
        .expect("one answer per id")
}

/// An id for an engagement write, bookmark or event, unique in the run.
fn fresh_id() -> u64 {
    static IDS: std::sync::OnceLock<SnowflakeGenerator> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        let worker = rand::random_range(0..=u32::from(warble_mesh::snowflake::MAX_WORKER_ID));
        SnowflakeGenerator::new(worker).expect("worker id in range")
    })
    .next_id()
    .expect("clock usable")
}

/// A like or retweet write with fresh ids, as the service issues them.
fn engagement(kind: Engagement, user_id: u64, tweet_id: u64, engaged: bool) -> EngagementWrite {
    EngagementWrite {
        kind,
        user_id,
        tweet_id,
        engaged,
        event_id: fresh_id(),
        retweet_id: fresh_id(),
    }
}

async fn engage(
    store: &impl TweetStore,
    kind: Engagement,
    user: u64,
    tweet: u64,
    engaged: bool,
) -> EngagementChange {
    store
        .set_engagement(engagement(kind, user, tweet, engaged))
        .await
        .expect("set_engagement")
}

/// The events in `outbox` that concern `tweet_ids`, with their entries.
async fn events_about(outbox: &dyn Outbox, tweet_ids: &[u64]) -> Vec<(OutboxEntry, Event)> {
    outbox
        .pending(OUTBOX_SCAN)
        .await
        .expect("outbox pending")
        .into_iter()
        .filter_map(|entry| {
            let event =
                Event::decode(entry.payload.as_slice()).expect("outbox payload is an Event");
            let tweet_id = match &event.payload {
                Some(event::Payload::TweetCreated(created)) => created.tweet_id,
                Some(event::Payload::TweetDeleted(deleted)) => deleted.tweet_id,
                Some(event::Payload::Liked(liked)) => liked.tweet_id,
                Some(event::Payload::Unliked(unliked)) => unliked.tweet_id,
                Some(event::Payload::Retweeted(retweeted)) => retweeted.tweet_id,
                Some(event::Payload::RetweetUndone(undone)) => undone.tweet_id,
                _ => return None,
            };
            tweet_ids.contains(&tweet_id).then_some((entry, event))
        })
        .collect()
}

fn ms(id: u64) -> i64 {
    i64::try_from(warble_mesh::snowflake::decode(id).unix_ms).expect("millis fit")
}

/// A tweet reads back exactly as created; unknown ids are not found; a new
/// tweet has zero counts and no viewer state.
pub async fn created_tweets_read_back_exactly(store: &impl TweetStore, outbox: &dyn Outbox) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let mut new = fixture.tweet(author, "Hello #Rust @Ferris");
    new.tweet.hashtags = vec!["rust".into()];
    new.tweet.mentions = vec!["ferris".into()];
    new.tweet.media_ids = vec![9, 3, 7];
    let expected = new.tweet.clone();
    let tweet = create(store, new).await;
    assert_eq!(tweet, expected);

    let unknown = fixture.id();
    let answers = store
        .get_tweets(vec![unknown, tweet.id, unknown])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            TweetLookup::NotFound,
            TweetLookup::Found(expected.clone()),
            TweetLookup::NotFound
        ],
        "one answer per id, in request order"
    );
    assert_eq!(counts(store, tweet.id).await, Some(TweetCounts::default()));
    assert_eq!(counts(store, unknown).await, None);
    assert_eq!(
        store
            .get_viewer_state(fixture.user(), vec![tweet.id])
            .await
            .unwrap(),
        vec![ViewerState::default()]
    );
    assert_eq!(events_about(outbox, &[tweet.id]).await.len(), 1);
}

/// A retried key returns the original tweet (whatever new ids the retry
/// carries) and publishes nothing; the same key with other content is
/// refused; keys are scoped to their author.
pub async fn an_idempotency_key_replays_its_tweet_and_rejects_other_content(
    store: &impl TweetStore,
    outbox: &dyn Outbox,
) {
    let fixture = Fixture::new();
    let (author, other_author) = (fixture.user(), fixture.user());
    let keyed = |text: &str, author: u64| NewTweet {
        idempotency_key: Some("retry-1".into()),
        ..fixture.tweet(author, text)
    };
    let original = create(store, keyed("first", author)).await;

    let retry = keyed("first", author);
    let retry_id = retry.tweet.id;
    assert_eq!(
        store.create_tweet(retry).await.unwrap(),
        CreateOutcome::Replayed(original.clone())
    );
    assert_eq!(lookup(store, retry_id).await, TweetLookup::NotFound);
    assert!(matches!(
        store.create_tweet(keyed("second", author)).await,
        Err(TweetError::IdempotencyKeyReused)
    ));
    let other_content = NewTweet {
        tweet: Tweet {
            media_ids: vec![1],
            ..keyed("first", author).tweet
        },
        ..keyed("first", author)
    };
    assert!(
        matches!(
            store.create_tweet(other_content).await,
            Err(TweetError::IdempotencyKeyReused)
        ),
        "media are part of the request's content"
    );

    let theirs = create(store, keyed("first", other_author)).await;
    assert_ne!(theirs.id, original.id, "keys are per author");

    let events = events_about(outbox, &[original.id, retry_id, theirs.id]).await;
    assert_eq!(
        events.len(),
        2,
        "one event per created tweet, none per replay"
    );
}

/// Within the TTL a key replays; from the TTL on it is free for new content.
/// Time is the tweet ids' timestamps, so no check waits.
pub async fn an_idempotency_key_expires_after_its_ttl(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let ttl_ms = u64::try_from(IDEMPOTENCY_TTL.as_millis()).unwrap();
    // A random instant in the past, and a random worker in the id, keep runs apart.
    let t0 = WARBLE_EPOCH_MS + rand::random_range(1_000_000_000..2_000_000_000u64);
    let worker = rand::random_range(0..1024u64);
    let id_at = |unix_ms: u64, sequence: u64| {
        ((unix_ms - WARBLE_EPOCH_MS) << 22) | (worker << 12) | sequence
    };
    let keyed = |id: u64, text: &str| NewTweet {
        tweet: Tweet {
            id,
            ..fixture.tweet(author, text).tweet
        },
        idempotency_key: Some("ttl".into()),
        event_id: id + 1,
    };

    let original = create(store, keyed(id_at(t0, 0), "first")).await;
    let last_moment = t0 + ttl_ms - 1;
    assert_eq!(
        store
            .create_tweet(keyed(id_at(last_moment, 0), "first"))
            .await
            .unwrap(),
        CreateOutcome::Replayed(original.clone())
    );
    assert!(matches!(
        store
            .create_tweet(keyed(id_at(last_moment, 2), "second"))
            .await,
        Err(TweetError::IdempotencyKeyReused)
    ));
    let reused = create(store, keyed(id_at(t0 + ttl_ms, 0), "second")).await;
    assert_ne!(reused.id, original.id);
    // The key now belongs to the new tweet.
    assert_eq!(
        store
            .create_tweet(keyed(id_at(t0 + ttl_ms + 1, 0), "second"))
            .await
            .unwrap(),
        CreateOutcome::Replayed(reused)
    );
}

/// A key whose tweet was deleted neither replays the tweet nor creates a new one.
pub async fn a_key_whose_tweet_was_deleted_cannot_be_replayed(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let keyed = || NewTweet {
        idempotency_key: Some("gone".into()),
        ..fixture.tweet(author, "soon deleted")
    };
    let original = create(store, keyed()).await;
    assert!(
        store
            .delete_tweet(original.id, author, fixture.id())
            .await
            .unwrap()
    );
    match store.create_tweet(keyed()).await {
        Err(TweetError::IdempotentTweetDeleted { tweet_id }) => assert_eq!(tweet_id, original.id),
        other => panic!("expected IdempotentTweetDeleted, got {other:?}"),
    }
}

/// After a soft delete no read returns the tweet's content or counts, it
/// cannot be engaged with, replied to or quoted, and deleting is
/// author-only and happens once.
pub async fn deleted_tweets_are_invisible_to_every_read(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (author, viewer) = (fixture.user(), fixture.user());
    let kept = post(store, &fixture, author, "kept").await;
    let doomed = post(store, &fixture, author, "doomed").await;
    engage(store, Engagement::Like, viewer, doomed.id, true).await;
    engage(store, Engagement::Retweet, viewer, doomed.id, true).await;

    assert!(matches!(
        store.delete_tweet(doomed.id, viewer, fixture.id()).await,
        Err(TweetError::NotAuthor { tweet_id }) if tweet_id == doomed.id
    ));
    let unknown = fixture.id();
    assert!(matches!(
        store.delete_tweet(unknown, author, fixture.id()).await,
        Err(TweetError::TweetNotFound(id)) if id == unknown
    ));
    assert!(
        store
            .delete_tweet(doomed.id, author, fixture.id())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_tweet(doomed.id, author, fixture.id())
            .await
            .unwrap(),
        "a second delete reports it was already deleted"
    );

    assert_eq!(lookup(store, doomed.id).await, TweetLookup::Deleted);
    assert_eq!(counts(store, doomed.id).await, None);
    assert_eq!(
        store
            .get_viewer_state(viewer, vec![doomed.id])
            .await
            .unwrap(),
        vec![ViewerState::default()]
    );
    let listed = store.list_user_tweets(author, None, 10).await.unwrap();
    assert_eq!(listed, vec![kept.clone()]);
    assert_eq!(
        store
            .list_authors_tweet_ids(vec![author], None, 10)
            .await
            .unwrap(),
        vec![(vec![kept.id], false)]
    );
    for kind in [Engagement::Like, Engagement::Retweet] {
        assert!(matches!(
            store.set_engagement(engagement(kind, viewer, doomed.id, true)).await,
            Err(TweetError::TweetNotFound(id)) if id == doomed.id
        ));
    }
    let reply = NewTweet {
        tweet: Tweet {
            reply_to_tweet_id: Some(doomed.id),
            ..fixture.tweet(viewer, "late reply").tweet
        },
        ..fixture.tweet(viewer, "late reply")
    };
    assert!(matches!(
        store.create_tweet(reply).await,
        Err(TweetError::TargetNotFound { field: "reply_to_tweet_id", tweet_id }) if tweet_id == doomed.id
    ));
    let quote = NewTweet {
        tweet: Tweet {
            quote_of_tweet_id: Some(doomed.id),
            ..fixture.tweet(viewer, "late quote").tweet
        },
        ..fixture.tweet(viewer, "late quote")
    };
    assert!(matches!(
        store.create_tweet(quote).await,
        Err(TweetError::TargetNotFound { field: "quote_of_tweet_id", tweet_id }) if tweet_id == doomed.id
    ));
}

/// Likes and retweets are sets per user: repeating a call changes nothing,
/// clearing what was never set stays at zero, and the two kinds are independent.
pub async fn likes_and_retweets_are_idempotent_and_never_negative(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (author, alice, bob) = (fixture.user(), fixture.user(), fixture.user());
    let tweet = post(store, &fixture, author, "like me").await;

    let change = |changed, count| (changed, count);
    let summary = |change: EngagementChange| (change.changed, change.count);
    assert_eq!(
        summary(engage(store, Engagement::Like, alice, tweet.id, false).await),
        change(false, 0),
        "clearing a like that never was changes nothing"
    );
    assert_eq!(
        summary(engage(store, Engagement::Like, alice, tweet.id, true).await),
        change(true, 1)
    );
    assert_eq!(
        summary(engage(store, Engagement::Like, alice, tweet.id, true).await),
        change(false, 1)
    );
    assert_eq!(
        summary(engage(store, Engagement::Like, bob, tweet.id, true).await),
        change(true, 2)
    );
    assert_eq!(
        summary(engage(store, Engagement::Retweet, bob, tweet.id, true).await),
        change(true, 1)
    );
    assert_eq!(
        store
            .get_viewer_state(alice, vec![tweet.id, fixture.id()])
            .await
            .unwrap(),
        vec![
            ViewerState {
                liked: true,
                ..ViewerState::default()
            },
            ViewerState::default()
        ]
    );
    assert_eq!(
        store.get_viewer_state(bob, vec![tweet.id]).await.unwrap(),
        vec![ViewerState {
            liked: true,
            retweeted: true,
            bookmarked: false,
        }]
    );
    assert_eq!(
        summary(engage(store, Engagement::Like, alice, tweet.id, false).await),
        change(true, 1)
    );
    assert_eq!(
        summary(engage(store, Engagement::Like, alice, tweet.id, false).await),
        change(false, 1)
    );
    assert_eq!(
        summary(engage(store, Engagement::Retweet, alice, tweet.id, false).await),
        change(false, 1),
        "alice never retweeted"
    );
    assert_eq!(
        counts(store, tweet.id).await,
        Some(TweetCounts {
            likes: 1,
            retweets: 1,
            replies: 0,
            quotes: 0
        })
    );
    let unknown = fixture.id();
    assert!(matches!(
        store.set_engagement(engagement(Engagement::Like, alice, unknown, true)).await,
        Err(TweetError::TweetNotFound(id)) if id == unknown
    ));
}

/// Many users liking at once, each several times, count once each.
pub async fn concurrent_likes_count_each_user_once(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let tweet = post(store, &fixture, fixture.user(), "popular").await;
    let users: Vec<u64> = (0..16).map(|_| fixture.user()).collect();
    let attempts = users
        .iter()
        .chain(&users)
        .chain(&users)
        .map(|&user| store.set_engagement(engagement(Engagement::Like, user, tweet.id, true)));
    let changes = futures::future::join_all(attempts).await;
    let changed = changes
        .into_iter()
        .map(|change| change.expect("like").changed)
        .filter(|&changed| changed)
        .count();
    assert_eq!(changed, users.len(), "each user's like takes effect once");
    assert_eq!(
        counts(store, tweet.id).await.map(|c| c.likes),
        Some(users.len() as u64)
    );

    let unlikes = users
        .iter()
        .chain(&users)
        .map(|&user| store.set_engagement(engagement(Engagement::Like, user, tweet.id, false)));
    for change in futures::future::join_all(unlikes).await {
        change.expect("unlike");
    }
    assert_eq!(counts(store, tweet.id).await.map(|c| c.likes), Some(0));
}

/// A live reply or quote raises its target's count; deleting it lowers the
/// count again; a target that does not exist is refused, naming the field.
pub async fn replies_and_quotes_are_counted_while_live(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (author, other) = (fixture.user(), fixture.user());
    let parent = post(store, &fixture, author, "parent").await;
    let with_targets = |text: &str, reply: Option<u64>, quote: Option<u64>| {
        let new = fixture.tweet(other, text);
        NewTweet {
            tweet: Tweet {
                reply_to_tweet_id: reply,
                quote_of_tweet_id: quote,
                ..new.tweet
            },
            ..new
        }
    };
    let reply = create(store, with_targets("reply", Some(parent.id), None)).await;
    let both = create(
        store,
        with_targets("both", Some(parent.id), Some(parent.id)),
    )
    .await;
    let quote = create(store, with_targets("quote", None, Some(parent.id))).await;
    assert_eq!(
        counts(store, parent.id).await,
        Some(TweetCounts {
            replies: 2,
            quotes: 2,
            ..TweetCounts::default()
        })
    );

    assert!(
        store
            .delete_tweet(both.id, other, fixture.id())
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_tweet(reply.id, other, fixture.id())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_tweet(reply.id, other, fixture.id())
            .await
            .unwrap(),
        "deleting twice lowers the count once"
    );
    assert_eq!(
        counts(store, parent.id).await,
        Some(TweetCounts {
            replies: 0,
            quotes: 1,
            ..TweetCounts::default()
        })
    );
    assert_eq!(
        counts(store, quote.id).await,
        Some(TweetCounts::default()),
        "a quote's own counts are its own"
    );

    let missing = fixture.id();
    assert!(matches!(
        store.create_tweet(with_targets("orphan", Some(missing), None)).await,
        Err(TweetError::TargetNotFound { field: "reply_to_tweet_id", tweet_id }) if tweet_id == missing
    ));
    assert!(matches!(
        store.create_tweet(with_targets("orphan", None, Some(missing))).await,
        Err(TweetError::TargetNotFound { field: "quote_of_tweet_id", tweet_id }) if tweet_id == missing
    ));
}

/// An author's tweets come newest first, strictly below `before`, never
/// another author's; paging by the last id returned neither skips nor
/// repeats, even when new tweets arrive in between.
pub async fn an_authors_tweets_page_newest_first_below_the_cursor(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (author, other) = (fixture.user(), fixture.user());
    let mut written = Vec::new();
    for n in 0..7 {
        written.push(post(store, &fixture, author, &format!("tweet {n}")).await);
        post(store, &fixture, other, "noise").await;
    }
    let newest_first: Vec<Tweet> = written.iter().rev().cloned().collect();

    let first = store.list_user_tweets(author, None, 3).await.unwrap();
    assert_eq!(first, newest_first[..3]);
    // A tweet arriving while the author pages sorts above the cursor.
    let late = post(store, &fixture, author, "late").await;
    let second = store
        .list_user_tweets(author, Some(first[2].id), 3)
        .await
        .unwrap();
    assert_eq!(second, newest_first[3..6]);
    let third = store
        .list_user_tweets(author, Some(second[2].id), 3)
        .await
        .unwrap();
    assert_eq!(third, newest_first[6..]);
    assert!(
        store
            .list_user_tweets(author, Some(third[0].id), 3)
            .await
            .unwrap()
            .is_empty()
    );
    let all = store.list_user_tweets(author, None, 100).await.unwrap();
    assert_eq!(all.first(), Some(&late));
    assert_eq!(all.len(), 8);
    assert!(
        store
            .list_user_tweets(fixture.user(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The ListAuthorsTweets batch: per author, in request order, live ids
/// newest first below `before`, and whether more exist below those.
pub async fn authors_batch_lists_live_ids_newest_first_with_more_flag(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (a, b, silent) = (fixture.user(), fixture.user(), fixture.user());
    let mut a_ids = Vec::new();
    for n in 0..5 {
        a_ids.push(post(store, &fixture, a, &format!("a{n}")).await.id);
    }
    let b_only = post(store, &fixture, b, "b0").await.id;
    let deleted = post(store, &fixture, a, "a-deleted").await.id;
    assert!(store.delete_tweet(deleted, a, fixture.id()).await.unwrap());
    a_ids.reverse();

    let answers = store
        .list_authors_tweet_ids(vec![b, a, silent], None, 3)
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            (vec![b_only], false),
            (a_ids[..3].to_vec(), true),
            (vec![], false)
        ]
    );
    let below = store
        .list_authors_tweet_ids(vec![a], Some(a_ids[2]), 2)
        .await
        .unwrap();
    assert_eq!(below, vec![(a_ids[3..].to_vec(), false)]);
    let exact = store
        .list_authors_tweet_ids(vec![a], None, 5)
        .await
        .unwrap();
    assert_eq!(
        exact,
        vec![(a_ids.clone(), false)],
        "exactly `limit` left is not more"
    );
}

/// Each create and each delete leaves exactly one event in the outbox, keyed
/// by the author and carrying everything consumers need; replays, refused
/// writes and repeated deletes leave none; published entries leave the outbox.
pub async fn every_create_and_delete_leaves_exactly_one_event(
    store: &impl TweetStore,
    outbox: &dyn Outbox,
) {
    let fixture = Fixture::new();
    let (author, replied, quoted) = (fixture.user(), fixture.user(), fixture.user());
    let parent = post(store, &fixture, replied, "parent").await;
    let source = post(store, &fixture, quoted, "source").await;
    let new = fixture.tweet(author, "@Parent look #Here");
    let new = NewTweet {
        tweet: Tweet {
            reply_to_tweet_id: Some(parent.id),
            quote_of_tweet_id: Some(source.id),
            hashtags: vec!["here".into()],
            mentions: vec!["parent".into()],
            media_ids: vec![5, 6],
            ..new.tweet
        },
        idempotency_key: Some("event-check".into()),
        ..new
    };
    let created_event_id = new.event_id;
    let tweet = create(store, new.clone()).await;
    // A replay and a refused write publish nothing.
    let replay = NewTweet {
        tweet: Tweet {
            id: fixture.id(),
            ..new.tweet.clone()
        },
        event_id: fixture.id(),
        ..new
    };
    assert!(matches!(
        store.create_tweet(replay).await.unwrap(),
        CreateOutcome::Replayed(_)
    ));
    let refused = NewTweet {
        tweet: Tweet {
            reply_to_tweet_id: Some(fixture.id()),
            ..fixture.tweet(author, "refused").tweet
        },
        ..fixture.tweet(author, "refused")
    };
    let refused_id = refused.tweet.id;
    assert!(store.create_tweet(refused).await.is_err());

    let delete_event_id = fixture.id();
    assert!(
        store
            .delete_tweet(tweet.id, author, delete_event_id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_tweet(tweet.id, author, fixture.id())
            .await
            .unwrap()
    );

    let events = events_about(outbox, &[tweet.id, refused_id]).await;
    assert_eq!(events.len(), 2, "one create and one delete: {events:?}");
    let created = events
        .iter()
        .find(|(_, e)| matches!(e.payload, Some(event::Payload::TweetCreated(_))))
        .expect("a TweetCreated event");
    let deleted = events
        .iter()
        .find(|(_, e)| matches!(e.payload, Some(event::Payload::TweetDeleted(_))))
        .expect("a TweetDeleted event");
    for (entry, _) in [created, deleted] {
        assert_eq!(entry.stream, DOMAIN_EVENTS_STREAM);
        assert_eq!(entry.key, author, "tweet events are keyed by their author");
    }
    assert_eq!(
        created.1,
        Event {
            event_id: created_event_id,
            occurred_at_ms: ms(tweet.id),
            trace_context: Default::default(),
            payload: Some(event::Payload::TweetCreated(TweetCreated {
                tweet_id: tweet.id,
                author_id: author,
                created_at_ms: ms(tweet.id),
                text: tweet.text.clone(),
                reply_to_tweet_id: Some(parent.id),
                reply_to_author_id: Some(replied),
                quote_of_tweet_id: Some(source.id),
                quote_of_author_id: Some(quoted),
                hashtags: vec!["here".into()],
                mentions: vec!["parent".into()],
                media_ids: vec![5, 6],
            })),
        }
    );
    assert_eq!(
        deleted.1,
        Event {
            event_id: delete_event_id,
            occurred_at_ms: ms(delete_event_id),
            trace_context: Default::default(),
            payload: Some(event::Payload::TweetDeleted(TweetDeleted {
                tweet_id: tweet.id,
                author_id: author,
                created_at_ms: ms(tweet.id),
                deleted_at_ms: ms(delete_event_id),
                reply_to_tweet_id: Some(parent.id),
                quote_of_tweet_id: Some(source.id),
                media_ids: vec![5, 6],
            })),
        }
    );
    // The create's entry comes before the delete's.
    let positions: Vec<u64> = events.iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(positions, vec![created_event_id, delete_event_id]);

    // Marked entries are never handed out again.
    let handles: Vec<String> = events
        .iter()
        .map(|(entry, _)| entry.handle.clone())
        .collect();
    outbox.mark_published(&handles).await.unwrap();
    assert!(events_about(outbox, &[tweet.id]).await.is_empty());
}

/// The largest persisted id covers every tweet id and event id written.
pub async fn max_issued_id_covers_tweet_and_event_ids(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let tweet = post(store, &fixture, author, "id check").await;
    let delete_event = fixture.id();
    assert!(
        store
            .delete_tweet(tweet.id, author, delete_event)
            .await
            .unwrap()
    );
    let max = store
        .max_issued_id()
        .await
        .unwrap()
        .expect("ids were stored");
    assert!(
        max >= delete_event,
        "max issued id {max} is below the delete event id {delete_event}"
    );
}

/// `hydrate_tweets` answers, per id and in order, exactly what `get_tweets`,
/// `get_counts` and `get_viewer_state` answer, carrying counts and state
/// only for live tweets and only when asked.
pub async fn hydrating_answers_what_the_three_reads_answer(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (author, viewer, other) = (fixture.user(), fixture.user(), fixture.user());
    let liked = post(store, &fixture, author, "liked").await;
    let plain = post(store, &fixture, author, "plain").await;
    let deleted = post(store, &fixture, author, "deleted").await;
    engage(store, Engagement::Like, viewer, liked.id, true).await;
    engage(store, Engagement::Retweet, other, liked.id, true).await;
    engage(store, Engagement::Retweet, viewer, plain.id, true).await;
    engage(store, Engagement::Like, viewer, deleted.id, true).await;
    assert!(
        store
            .delete_tweet(deleted.id, author, fixture.id())
            .await
            .unwrap()
    );
    let unknown = fixture.id();
    // Duplicates are answered in place, like every batch read.
    let ids = vec![plain.id, unknown, liked.id, deleted.id, liked.id];

    let full = store
        .hydrate_tweets(ids.clone(), true, Some(viewer))
        .await
        .expect("hydrate_tweets");
    let liked_counts = TweetCounts {
        likes: 1,
        retweets: 1,
        replies: 0,
        quotes: 0,
    };
    let plain_counts = TweetCounts {
        retweets: 1,
        ..TweetCounts::default()
    };
    let liked_row = HydratedTweet {
        lookup: TweetLookup::Found(liked.clone()),
        counts: Some(liked_counts),
        viewer_state: Some(ViewerState {
            liked: true,
            ..ViewerState::default()
        }),
    };
    assert_eq!(
        full,
        vec![
            HydratedTweet {
                lookup: TweetLookup::Found(plain.clone()),
                counts: Some(plain_counts),
                viewer_state: Some(ViewerState {
                    retweeted: true,
                    ..ViewerState::default()
                }),
            },
            HydratedTweet::absent(TweetLookup::NotFound),
            liked_row.clone(),
            HydratedTweet::absent(TweetLookup::Deleted),
            liked_row,
        ]
    );

    // The same answers as the three separate reads.
    let lookups = store.get_tweets(ids.clone()).await.unwrap();
    let counts = store.get_counts(ids.clone()).await.unwrap();
    let states = store.get_viewer_state(viewer, ids.clone()).await.unwrap();
    for (index, row) in full.iter().enumerate() {
        assert_eq!(row.lookup, lookups[index], "lookup of ids[{index}]");
        assert_eq!(row.counts, counts[index], "counts of ids[{index}]");
        if row.viewer_state.is_some() {
            assert_eq!(
                row.viewer_state,
                Some(states[index]),
                "state of ids[{index}]"
            );
        }
    }

    // Only what was asked for.
    let bare = store
        .hydrate_tweets(ids.clone(), false, None)
        .await
        .unwrap();
    assert_eq!(
        bare.iter()
            .map(|row| row.lookup.clone())
            .collect::<Vec<_>>(),
        lookups
    );
    assert!(
        bare.iter()
            .all(|row| row.counts.is_none() && row.viewer_state.is_none())
    );
    let state_only = store
        .hydrate_tweets(vec![liked.id], false, Some(other))
        .await
        .unwrap();
    assert_eq!(state_only[0].counts, None);
    assert_eq!(
        state_only[0].viewer_state,
        Some(ViewerState {
            retweeted: true,
            ..ViewerState::default()
        })
    );
}

async fn create_batch(store: &impl TweetStore, batch: Vec<NewTweet>) -> Vec<CreateOutcome> {
    store.create_tweets(batch).await.expect("create_tweets")
}

/// Asserts `result` failed on entry `index` of the batch with an error `expected` accepts.
#[track_caller]
fn assert_entry_failed<T: std::fmt::Debug>(
    result: Result<T, TweetError>,
    index: usize,
    expected: impl FnOnce(&TweetError) -> bool,
) {
    match result {
        Err(TweetError::InBatch {
            list: "tweets",
            index: failed,
            error,
        }) if failed == index && expected(&error) => {}
        other => panic!("expected tweets[{index}] to fail, got {other:?}"),
    }
}

/// A batch creates its tweets in request order, each exactly as
/// `create_tweet` would: one outcome per entry, each created tweet readable
/// and listed, targets counted (an earlier entry of the same batch is a
/// valid target), and exactly one `TweetCreated` per tweet, in request
/// order, keyed by its author. An empty batch does nothing.
pub async fn a_tweet_batch_creates_in_order_with_one_event_per_tweet(
    store: &impl TweetStore,
    outbox: &dyn Outbox,
) {
    let fixture = Fixture::new();
    let (ann, bob) = (fixture.user(), fixture.user());
    let parent = post(store, &fixture, bob, "parent").await;
    let first = fixture.tweet(ann, "first #batch");
    let first = NewTweet {
        tweet: Tweet {
            hashtags: vec!["batch".into()],
            media_ids: vec![4],
            ..first.tweet
        },
        idempotency_key: Some("batch-first".into()),
        ..first
    };
    let reply = fixture.tweet(bob, "a reply");
    let reply = NewTweet {
        tweet: Tweet {
            reply_to_tweet_id: Some(parent.id),
            ..reply.tweet
        },
        ..reply
    };
    // Quotes an entry written earlier in the same batch.
    let quote = fixture.tweet(bob, "quoting ann");
    let quote = NewTweet {
        tweet: Tweet {
            quote_of_tweet_id: Some(first.tweet.id),
            ..quote.tweet
        },
        ..quote
    };
    let last = fixture.tweet(ann, "last");
    let batch = vec![first, reply, quote, last];
    let expected: Vec<Tweet> = batch.iter().map(|new| new.tweet.clone()).collect();
    let event_ids: Vec<u64> = batch.iter().map(|new| new.event_id).collect();

    let outcomes = create_batch(store, batch).await;
    assert_eq!(
        outcomes,
        expected
            .iter()
            .cloned()
            .map(CreateOutcome::Created)
            .collect::<Vec<_>>(),
        "one outcome per entry, in request order"
    );
    let ids: Vec<u64> = expected.iter().map(|tweet| tweet.id).collect();
    assert_eq!(
        store.get_tweets(ids.clone()).await.unwrap(),
        expected
            .iter()
            .cloned()
            .map(TweetLookup::Found)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store.list_user_tweets(ann, None, 10).await.unwrap(),
        vec![expected[3].clone(), expected[0].clone()]
    );
    assert_eq!(counts(store, parent.id).await.map(|c| c.replies), Some(1));
    assert_eq!(
        counts(store, expected[0].id).await.map(|c| c.quotes),
        Some(1),
        "a quote of an earlier entry counts"
    );

    let events = events_about(outbox, &ids).await;
    let summary: Vec<(u64, u64, u64, Option<u64>)> = events
        .iter()
        .map(|(entry, event)| match &event.payload {
            Some(event::Payload::TweetCreated(created)) => {
                assert_eq!(entry.stream, DOMAIN_EVENTS_STREAM);
                assert_eq!(entry.key, created.author_id, "keyed by the author");
                assert_eq!(event.occurred_at_ms, ms(created.tweet_id));
                (
                    event.event_id,
                    created.tweet_id,
                    created.author_id,
                    created.quote_of_author_id.or(created.reply_to_author_id),
                )
            }
            other => panic!("expected TweetCreated, got {other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (event_ids[0], ids[0], ann, None),
            (event_ids[1], ids[1], bob, Some(bob)),
            (event_ids[2], ids[2], bob, Some(ann)),
            (event_ids[3], ids[3], ann, None),
        ],
        "one event per tweet, in request order, naming the targets' authors"
    );
    let Some(event::Payload::TweetCreated(created)) = &events[0].1.payload else {
        unreachable!("checked above")
    };
    assert_eq!(
        (&created.text, &created.hashtags, &created.media_ids),
        (
            &expected[0].text,
            &expected[0].hashtags,
            &expected[0].media_ids
        ),
        "events carry the tweet"
    );

    assert!(create_batch(store, Vec::new()).await.is_empty());
}

/// Idempotency keys behave in a batch as in single creates, in request
/// order: a key used by an earlier call replays its tweet, a key repeated
/// from an earlier entry of the same batch replays that entry's tweet, and
/// neither publishes anything; keys stay per author; the same key with
/// other content fails naming its entry, as does a key whose tweet was deleted.
pub async fn a_tweet_batch_replays_keys_of_earlier_calls_and_earlier_entries(
    store: &impl TweetStore,
    outbox: &dyn Outbox,
) {
    let fixture = Fixture::new();
    let (author, other_author) = (fixture.user(), fixture.user());
    let keyed = |author: u64, text: &str, key: &str| NewTweet {
        idempotency_key: Some(key.into()),
        ..fixture.tweet(author, text)
    };
    let original = create(store, keyed(author, "original", "k-earlier")).await;

    let batch = vec![
        keyed(author, "original", "k-earlier"),
        keyed(author, "new", "k-batch"),
        keyed(author, "new", "k-batch"),
        keyed(other_author, "new", "k-batch"),
    ];
    let new_ids: Vec<u64> = batch.iter().map(|new| new.tweet.id).collect();
    let outcomes = create_batch(store, batch.clone()).await;
    let created = match &outcomes[1] {
        CreateOutcome::Created(tweet) => tweet.clone(),
        other => panic!("expected the first use of k-batch to create, got {other:?}"),
    };
    let theirs = match &outcomes[3] {
        CreateOutcome::Created(tweet) => tweet.clone(),
        other => panic!("keys are per author, got {other:?}"),
    };
    assert_eq!(
        outcomes,
        vec![
            CreateOutcome::Replayed(original.clone()),
            CreateOutcome::Created(created.clone()),
            CreateOutcome::Replayed(created.clone()),
            CreateOutcome::Created(theirs.clone()),
        ]
    );
    assert_eq!(
        (created.id, theirs.id),
        (new_ids[1], new_ids[3]),
        "created tweets keep their issued ids"
    );
    assert_eq!(
        store
            .get_tweets(vec![new_ids[0], new_ids[2]])
            .await
            .unwrap(),
        vec![TweetLookup::NotFound, TweetLookup::NotFound],
        "a replay stores nothing under its own id"
    );

    // The same batch again, with fresh ids as a retrying client's would get: all replays.
    let retried: Vec<NewTweet> = batch
        .iter()
        .map(|new| NewTweet {
            tweet: Tweet {
                id: fixture.id(),
                ..new.tweet.clone()
            },
            event_id: fixture.id(),
            ..new.clone()
        })
        .collect();
    let retried_ids: Vec<u64> = retried.iter().map(|new| new.tweet.id).collect();
    assert_eq!(
        create_batch(store, retried).await,
        vec![
            CreateOutcome::Replayed(original.clone()),
            CreateOutcome::Replayed(created.clone()),
            CreateOutcome::Replayed(created.clone()),
            CreateOutcome::Replayed(theirs.clone()),
        ]
    );

    let mut involved = new_ids.clone();
    involved.extend(&retried_ids);
    involved.push(original.id);
    let events = events_about(outbox, &involved).await;
    let published: Vec<u64> = events
        .iter()
        .map(|(_, event)| match &event.payload {
            Some(event::Payload::TweetCreated(created)) => created.tweet_id,
            other => panic!("expected TweetCreated, got {other:?}"),
        })
        .collect();
    assert_eq!(
        published,
        vec![original.id, created.id, theirs.id],
        "one event per created tweet, none per replay"
    );

    // Other content under a used key fails naming the entry, whether the
    // key was used by an earlier call or an earlier entry. (Whether the
    // entries before a failing one stay is the store's to say: the trait's
    // default keeps them, the embedded store does not.)
    assert_entry_failed(
        store
            .create_tweets(vec![keyed(author, "changed", "k-earlier")])
            .await,
        0,
        |error| matches!(error, TweetError::IdempotencyKeyReused),
    );
    assert_entry_failed(
        store
            .create_tweets(vec![
                keyed(author, "one", "k-conflict"),
                keyed(author, "two", "k-conflict"),
            ])
            .await,
        1,
        |error| matches!(error, TweetError::IdempotencyKeyReused),
    );
    assert!(
        store
            .delete_tweet(original.id, author, fixture.id())
            .await
            .unwrap()
    );
    assert_entry_failed(
        store
            .create_tweets(vec![keyed(author, "original", "k-earlier")])
            .await,
        0,
        |error| matches!(error, TweetError::IdempotentTweetDeleted { tweet_id } if *tweet_id == original.id),
    );
}

/// An entry whose reply or quote target does not exist fails the batch
/// naming the entry (and the error the field), and nothing of the batch is
/// stored: no tweet, no count, no event, no idempotency key.
pub async fn a_tweet_batch_with_a_missing_target_creates_nothing(
    store: &impl TweetStore,
    outbox: &dyn Outbox,
) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let parent = post(store, &fixture, author, "parent").await;
    let missing = fixture.id();
    let with_target = |reply: Option<u64>, quote: Option<u64>| {
        let new = fixture.tweet(author, "pointing");
        NewTweet {
            tweet: Tweet {
                reply_to_tweet_id: reply,
                quote_of_tweet_id: quote,
                ..new.tweet
            },
            ..new
        }
    };
    let keyed = NewTweet {
        idempotency_key: Some("k-rolled-back".into()),
        ..fixture.tweet(author, "keyed")
    };
    for (bad, field) in [
        (with_target(None, Some(missing)), "quote_of_tweet_id"),
        (with_target(Some(missing), None), "reply_to_tweet_id"),
    ] {
        let batch = vec![
            with_target(Some(parent.id), None),
            keyed.clone(),
            bad,
            fixture.tweet(author, "after"),
        ];
        let ids: Vec<u64> = batch.iter().map(|new| new.tweet.id).collect();
        assert_entry_failed(store.create_tweets(batch).await, 2, |error| {
            matches!(error, TweetError::TargetNotFound { field: named, tweet_id }
                if *named == field && *tweet_id == missing)
        });
        assert_eq!(
            store.get_tweets(ids.clone()).await.unwrap(),
            vec![TweetLookup::NotFound; 4]
        );
        assert!(events_about(outbox, &ids).await.is_empty());
    }
    assert_eq!(counts(store, parent.id).await, Some(TweetCounts::default()));
    assert_eq!(
        store.list_user_tweets(author, None, 10).await.unwrap(),
        vec![parent]
    );
    // The key was not taken: using it now creates.
    create(store, keyed).await;
}

/// A batch holds at most [`MAX_WRITE_BATCH`] tweets: one more is `Invalid`
/// on the whole list and stores nothing; a full batch is fine.
pub async fn tweet_batches_are_limited_in_size(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let batch: Vec<NewTweet> = (0..=MAX_WRITE_BATCH)
        .map(|n| fixture.tweet(author, &format!("tweet {n}")))
        .collect();
    match store.create_tweets(batch.clone()).await {
        Err(TweetError::Invalid {
            field: "tweets", ..
        }) => {}
        other => panic!("expected Invalid on tweets, got {other:?}"),
    }
    assert!(
        store
            .list_user_tweets(author, None, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let full = &batch[..MAX_WRITE_BATCH];
    let outcomes = create_batch(store, full.to_vec()).await;
    assert_eq!(outcomes.len(), MAX_WRITE_BATCH);
    assert_eq!(
        store.list_user_tweets(author, None, 1).await.unwrap(),
        vec![full[MAX_WRITE_BATCH - 1].tweet.clone()]
    );
}

/// A retweet by `user` whose ids come from `fixture`, so its retweet id
/// sorts among the fixture's tweets in the order the calls were made.
async fn retweet(
    store: &impl TweetStore,
    fixture: &Fixture,
    user_id: u64,
    tweet_id: u64,
    engaged: bool,
) -> EngagementChange {
    store
        .set_engagement(EngagementWrite {
            kind: Engagement::Retweet,
            user_id,
            tweet_id,
            engaged,
            event_id: fixture.id(),
            retweet_id: fixture.id(),
        })
        .await
        .expect("set_engagement")
}

/// Likes, unlikes, retweets and undos publish `Liked`, `Unliked`,
/// `Retweeted` and `RetweetUndone` exactly when they change something,
/// keyed by the user, naming the tweet's author and the count after. A
/// retweet keeps its id while it stands (a repeat answers it, publishing
/// nothing); an undo answers the id it removed; retweeting again takes a
/// new id.
pub async fn engagement_publishes_only_on_change_and_retweets_keep_their_id(
    store: &impl TweetStore,
    outbox: &dyn Outbox,
) {
    let fixture = Fixture::new();
    let (author, alice, bob) = (fixture.user(), fixture.user(), fixture.user());
    let tweet = post(store, &fixture, author, "engage with me").await;

    let first = engagement(Engagement::Retweet, bob, tweet.id, true);
    let made = store.set_engagement(first).await.unwrap();
    assert_eq!(
        made,
        EngagementChange {
            changed: true,
            count: 1,
            retweet_id: Some(first.retweet_id),
        }
    );
    let repeat = engagement(Engagement::Retweet, bob, tweet.id, true);
    assert_eq!(
        store.set_engagement(repeat).await.unwrap(),
        EngagementChange {
            changed: false,
            count: 1,
            retweet_id: Some(first.retweet_id),
        },
        "a repeated retweet keeps its id"
    );
    let like = engagement(Engagement::Like, alice, tweet.id, true);
    assert_eq!(
        store.set_engagement(like).await.unwrap(),
        EngagementChange {
            changed: true,
            count: 1,
            retweet_id: None,
        }
    );
    engage(store, Engagement::Like, alice, tweet.id, true).await;
    let unlike = engagement(Engagement::Like, alice, tweet.id, false);
    assert!(store.set_engagement(unlike).await.unwrap().changed);
    engage(store, Engagement::Like, alice, tweet.id, false).await;
    let undo = engagement(Engagement::Retweet, bob, tweet.id, false);
    assert_eq!(
        store.set_engagement(undo).await.unwrap(),
        EngagementChange {
            changed: true,
            count: 0,
            retweet_id: Some(first.retweet_id),
        },
        "an undo answers the id it removed"
    );
    assert_eq!(
        engage(store, Engagement::Retweet, bob, tweet.id, false).await,
        EngagementChange {
            changed: false,
            count: 0,
            retweet_id: None,
        }
    );
    let again = engagement(Engagement::Retweet, bob, tweet.id, true);
    assert_eq!(
        store.set_engagement(again).await.unwrap().retweet_id,
        Some(again.retweet_id),
        "retweeting again takes the new id"
    );

    let events = events_about(outbox, &[tweet.id]).await;
    let engagement_events: Vec<(u64, Event)> = events
        .into_iter()
        .filter(|(_, event)| !matches!(event.payload, Some(event::Payload::TweetCreated(_))))
        .map(|(entry, event)| {
            assert_eq!(entry.stream, DOMAIN_EVENTS_STREAM);
            (entry.key, event)
        })
        .collect();
    let at = |id: u64| ms(id);
    assert_eq!(
        engagement_events,
        vec![
            (
                bob,
                Event {
                    event_id: first.event_id,
                    occurred_at_ms: at(first.event_id),
                    trace_context: Default::default(),
                    payload: Some(event::Payload::Retweeted(Retweeted {
                        user_id: bob,
                        tweet_id: tweet.id,
                        tweet_author_id: author,
                        retweet_id: first.retweet_id,
                        retweeted_at_ms: at(first.retweet_id),
                        retweet_count: 1,
                    })),
                }
            ),
            (
                alice,
                Event {
                    event_id: like.event_id,
                    occurred_at_ms: at(like.event_id),
                    trace_context: Default::default(),
                    payload: Some(event::Payload::Liked(Liked {
                        user_id: alice,
                        tweet_id: tweet.id,
                        tweet_author_id: author,
                        liked_at_ms: at(like.event_id),
                        like_count: 1,
                    })),
                }
            ),
            (
                alice,
                Event {
                    event_id: unlike.event_id,
                    occurred_at_ms: at(unlike.event_id),
                    trace_context: Default::default(),
                    payload: Some(event::Payload::Unliked(Unliked {
                        user_id: alice,
                        tweet_id: tweet.id,
                        tweet_author_id: author,
                        unliked_at_ms: at(unlike.event_id),
                        like_count: 0,
                    })),
                }
            ),
            (
                bob,
                Event {
                    event_id: undo.event_id,
                    occurred_at_ms: at(undo.event_id),
                    trace_context: Default::default(),
                    payload: Some(event::Payload::RetweetUndone(RetweetUndone {
                        user_id: bob,
                        tweet_id: tweet.id,
                        tweet_author_id: author,
                        retweet_id: first.retweet_id,
                        undone_at_ms: at(undo.event_id),
                        retweet_count: 0,
                    })),
                }
            ),
            (
                bob,
                Event {
                    event_id: again.event_id,
                    occurred_at_ms: at(again.event_id),
                    trace_context: Default::default(),
                    payload: Some(event::Payload::Retweeted(Retweeted {
                        user_id: bob,
                        tweet_id: tweet.id,
                        tweet_author_id: author,
                        retweet_id: again.retweet_id,
                        retweeted_at_ms: at(again.retweet_id),
                        retweet_count: 1,
                    })),
                }
            ),
        ],
        "one event per change, in order, none for calls that changed nothing"
    );
}

fn own(tweet: &Tweet) -> AuthorEntry {
    AuthorEntry {
        tweet: tweet.clone(),
        retweet_id: None,
    }
}

fn retweeted(tweet: &Tweet, change: EngagementChange) -> AuthorEntry {
    AuthorEntry {
        tweet: tweet.clone(),
        retweet_id: Some(change.retweet_id.expect("a retweet has an id")),
    }
}

fn entry_ref(entry: &AuthorEntry) -> EntryRef {
    EntryRef {
        tweet_id: entry.tweet.id,
        author_id: entry.tweet.author_id,
        retweet_id: entry.retweet_id,
    }
}

/// With retweets, a user's list merges their tweets and their retweets by
/// sort id (the retweet's id for a retweet), newest first; paging below
/// the last sort id neither repeats nor skips, across both kinds. Without
/// retweets the list is their tweets only. The batch read answers the same
/// entries by reference, naming each tweet's own author, and bounds the
/// sort id with `before`. An undone retweet leaves the list.
pub async fn a_users_list_merges_tweets_and_retweets_newest_first(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, bob, carl) = (fixture.user(), fixture.user(), fixture.user());
    let b1 = post(store, &fixture, bob, "bob's").await;
    let t1 = post(store, &fixture, ann, "ann 1").await;
    let c1 = post(store, &fixture, carl, "carl's").await;
    // Retweeted after ann's first tweet, though written before it.
    let r_b1 = retweet(store, &fixture, ann, b1.id, true).await;
    let t2 = post(store, &fixture, ann, "ann 2").await;
    let r_c1 = retweet(store, &fixture, ann, c1.id, true).await;
    let t3 = post(store, &fixture, ann, "ann 3").await;
    // Someone else's retweet is not in ann's list.
    retweet(store, &fixture, bob, t3.id, true).await;

    let expected = vec![
        own(&t3),
        retweeted(&c1, r_c1),
        own(&t2),
        retweeted(&b1, r_b1),
        own(&t1),
    ];
    assert_eq!(
        store.list_user_entries(ann, None, 10, true).await.unwrap(),
        expected
    );
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_user_entries(ann, before, 2, true).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.sort_id());
        paged.extend(page);
    }
    assert_eq!(paged, expected, "pages neither repeat nor skip");
    assert_eq!(
        store.list_user_entries(ann, None, 10, false).await.unwrap(),
        vec![own(&t3), own(&t2), own(&t1)]
    );
    assert_eq!(
        store.list_user_tweets(ann, None, 10).await.unwrap(),
        vec![t3.clone(), t2.clone(), t1.clone()]
    );

    let refs: Vec<EntryRef> = expected.iter().map(entry_ref).collect();
    let answers = store
        .list_authors_entries(vec![ann, carl], None, 3, true)
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            AuthorEntries {
                entries: refs[..3].to_vec(),
                has_more: true,
            },
            AuthorEntries {
                entries: vec![entry_ref(&own(&c1))],
                has_more: false,
            },
        ]
    );
    assert_eq!(
        refs[1].author_id, carl,
        "a retweet's entry names the tweet's author"
    );
    let below = store
        .list_authors_entries(vec![ann], r_c1.retweet_id, 10, true)
        .await
        .unwrap();
    assert_eq!(
        below,
        vec![AuthorEntries {
            entries: refs[2..].to_vec(),
            has_more: false,
        }],
        "`before` bounds the sort id"
    );
    assert_eq!(
        store
            .list_authors_entries(vec![ann], None, 10, false)
            .await
            .unwrap(),
        vec![AuthorEntries {
            entries: [&t3, &t2, &t1]
                .into_iter()
                .map(|tweet| entry_ref(&own(tweet)))
                .collect(),
            has_more: false,
        }]
    );

    retweet(store, &fixture, ann, b1.id, false).await;
    assert_eq!(
        store.list_user_entries(ann, None, 10, true).await.unwrap(),
        vec![own(&t3), retweeted(&c1, r_c1), own(&t2), own(&t1)],
        "an undone retweet leaves the list"
    );
}

/// A retweet of a tweet deleted later is never listed, by either read,
/// and does not count as "more".
pub async fn retweets_of_deleted_tweets_are_not_listed(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, bob) = (fixture.user(), fixture.user());
    let kept = post(store, &fixture, bob, "kept").await;
    let doomed = post(store, &fixture, bob, "doomed").await;
    let r_kept = retweet(store, &fixture, ann, kept.id, true).await;
    retweet(store, &fixture, ann, doomed.id, true).await;
    assert!(
        store
            .delete_tweet(doomed.id, bob, fixture.id())
            .await
            .unwrap()
    );

    assert_eq!(
        store.list_user_entries(ann, None, 10, true).await.unwrap(),
        vec![retweeted(&kept, r_kept)]
    );
    let first = store.list_user_entries(ann, None, 1, true).await.unwrap();
    assert_eq!(first, vec![retweeted(&kept, r_kept)]);
    assert!(
        store
            .list_user_entries(ann, Some(first[0].sort_id()), 1, true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .list_authors_entries(vec![ann], None, 1, true)
            .await
            .unwrap(),
        vec![AuthorEntries {
            entries: vec![entry_ref(&retweeted(&kept, r_kept))],
            has_more: false,
        }]
    );
}

async fn all_bookmarks(store: &impl TweetStore, user: u64, limit: usize) -> Vec<Bookmark> {
    let mut all = Vec::new();
    let mut before = None;
    for _ in 0..1_000 {
        let page = store
            .list_bookmarks(user, before, limit)
            .await
            .expect("list_bookmarks");
        assert!(page.bookmarks.len() <= limit);
        all.extend(page.bookmarks);
        match page.next_before {
            Some(next) => before = Some(next),
            None => return all,
        }
    }
    panic!("bookmark paging never ended");
}

/// Bookmarks are per user and idempotent (a repeat keeps the first
/// bookmark's place), listed most recent first with their tweets' authors,
/// paged without repeats or skips; bookmarking needs a live tweet;
/// bookmarks of deleted tweets vanish from the list and can still be
/// removed; the viewer's state and hydration report them.
pub async fn bookmarks_are_idempotent_private_and_newest_first(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, bob, author) = (fixture.user(), fixture.user(), fixture.user());
    let tweets = [
        post(store, &fixture, author, "one").await,
        post(store, &fixture, bob, "two").await,
        post(store, &fixture, author, "three").await,
    ];
    let mut marks = Vec::new();
    for tweet in &tweets {
        let bookmark_id = fixture.id();
        assert!(store.bookmark(ann, tweet.id, bookmark_id).await.unwrap());
        marks.push(Bookmark {
            tweet_id: tweet.id,
            author_id: tweet.author_id,
            bookmark_id,
        });
    }
    assert!(
        !store
            .bookmark(ann, tweets[0].id, fixture.id())
            .await
            .unwrap(),
        "bookmarking twice changes nothing"
    );
    let newest_first: Vec<Bookmark> = marks.iter().rev().copied().collect();
    let page = store.list_bookmarks(ann, None, 10).await.unwrap();
    assert_eq!(page.bookmarks, newest_first);
    assert_eq!(page.next_before, None);
    assert_eq!(all_bookmarks(store, ann, 2).await, newest_first);
    assert_eq!(all_bookmarks(store, ann, 1).await, newest_first);
    assert!(
        store
            .list_bookmarks(bob, None, 10)
            .await
            .unwrap()
            .bookmarks
            .is_empty(),
        "bookmarks are the user's own"
    );

    let unknown = fixture.id();
    assert!(matches!(
        store.bookmark(ann, unknown, fixture.id()).await,
        Err(TweetError::TweetNotFound(id)) if id == unknown
    ));
    let gone = post(store, &fixture, author, "gone").await;
    assert!(
        store
            .delete_tweet(gone.id, author, fixture.id())
            .await
            .unwrap()
    );
    assert!(matches!(
        store.bookmark(ann, gone.id, fixture.id()).await,
        Err(TweetError::TweetNotFound(id)) if id == gone.id
    ));

    let states = store
        .get_viewer_state(ann, vec![tweets[0].id, unknown])
        .await
        .unwrap();
    assert_eq!(
        states,
        vec![
            ViewerState {
                bookmarked: true,
                ..ViewerState::default()
            },
            ViewerState::default()
        ]
    );
    assert_eq!(
        store
            .get_viewer_state(bob, vec![tweets[0].id])
            .await
            .unwrap(),
        vec![ViewerState::default()]
    );
    let hydrated = store
        .hydrate_tweets(vec![tweets[1].id], false, Some(ann))
        .await
        .unwrap();
    assert_eq!(
        hydrated[0].viewer_state,
        Some(ViewerState {
            bookmarked: true,
            ..ViewerState::default()
        })
    );

    // A deleted tweet's bookmark vanishes, and can still be removed.
    assert!(
        store
            .delete_tweet(tweets[1].id, bob, fixture.id())
            .await
            .unwrap()
    );
    assert_eq!(
        all_bookmarks(store, ann, 10).await,
        vec![newest_first[0], newest_first[2]]
    );
    assert!(store.unbookmark(ann, tweets[1].id).await.unwrap());
    assert!(!store.unbookmark(ann, tweets[1].id).await.unwrap());
    assert!(store.unbookmark(ann, tweets[2].id).await.unwrap());
    assert!(!store.unbookmark(bob, tweets[0].id).await.unwrap());
    assert_eq!(all_bookmarks(store, ann, 10).await, vec![newest_first[2]]);
    assert_eq!(
        store
            .get_viewer_state(ann, vec![tweets[2].id])
            .await
            .unwrap(),
        vec![ViewerState::default()]
    );
    // Bookmarking again puts it first.
    let again = fixture.id();
    assert!(store.bookmark(ann, tweets[2].id, again).await.unwrap());
    assert_eq!(
        all_bookmarks(store, ann, 10).await,
        vec![
            Bookmark {
                bookmark_id: again,
                ..newest_first[0]
            },
            newest_first[2]
        ]
    );
}

/// Bookmarks of deleted tweets are skipped, at most
/// [`MAX_SKIPPED_BOOKMARKS`] per call: a page may come back short, even
/// empty, with a next cursor, and paging on reaches the live ones.
pub async fn a_bookmark_list_of_deleted_tweets_pages_short_but_goes_on(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, author) = (fixture.user(), fixture.user());
    let oldest = post(store, &fixture, author, "kept").await;
    let oldest_mark = fixture.id();
    assert!(store.bookmark(ann, oldest.id, oldest_mark).await.unwrap());
    let doomed: Vec<NewTweet> = (0..=MAX_SKIPPED_BOOKMARKS)
        .map(|n| fixture.tweet(author, &format!("doomed {n}")))
        .collect();
    create_batch(store, doomed.clone()).await;
    for new in &doomed {
        assert!(
            store
                .bookmark(ann, new.tweet.id, fixture.id())
                .await
                .unwrap()
        );
        assert!(
            store
                .delete_tweet(new.tweet.id, author, fixture.id())
                .await
                .unwrap()
        );
    }
    let first = store.list_bookmarks(ann, None, 10).await.unwrap();
    assert!(first.bookmarks.is_empty(), "{first:?}");
    assert!(first.next_before.is_some(), "the list goes on");
    assert_eq!(
        all_bookmarks(store, ann, 10).await,
        vec![Bookmark {
            tweet_id: oldest.id,
            author_id: author,
            bookmark_id: oldest_mark,
        }]
    );
}

fn reply_to(fixture: &Fixture, author: u64, parent: u64, text: &str) -> NewTweet {
    let new = fixture.tweet(author, text);
    NewTweet {
        tweet: Tweet {
            reply_to_tweet_id: Some(parent),
            ..new.tweet
        },
        ..new
    }
}

/// A tweet's replies are its live direct replies, oldest first, paged
/// above the last id without repeats or skips; deleted replies and replies
/// to replies are not listed; a deleted tweet's replies still are; a tweet
/// that never existed is not found.
pub async fn replies_list_live_direct_replies_oldest_first(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, bob) = (fixture.user(), fixture.user());
    let root = post(store, &fixture, ann, "root").await;
    let mut replies = Vec::new();
    for n in 0..5 {
        let author = if n % 2 == 0 { bob } else { ann };
        replies.push(
            create(
                store,
                reply_to(&fixture, author, root.id, &format!("reply {n}")),
            )
            .await,
        );
    }
    create(store, reply_to(&fixture, ann, replies[0].id, "nested")).await;
    assert!(
        store
            .delete_tweet(replies[2].id, bob, fixture.id())
            .await
            .unwrap()
    );
    let live: Vec<Tweet> = [0, 1, 3, 4].iter().map(|&i| replies[i].clone()).collect();

    assert_eq!(store.list_replies(root.id, None, 10).await.unwrap(), live);
    let first = store.list_replies(root.id, None, 2).await.unwrap();
    assert_eq!(first, live[..2]);
    let second = store
        .list_replies(root.id, Some(first[1].id), 2)
        .await
        .unwrap();
    assert_eq!(second, live[2..]);
    assert!(
        store
            .list_replies(root.id, Some(second[1].id), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_replies(replies[4].id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .delete_tweet(root.id, ann, fixture.id())
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_replies(root.id, None, 10).await.unwrap(),
        live,
        "a deleted tweet's live replies are still listed"
    );
    let unknown = fixture.id();
    assert!(matches!(
        store.list_replies(unknown, None, 10).await,
        Err(TweetError::TweetNotFound(id)) if id == unknown
    ));
}

/// The ancestors of a tweet are the live tweets up its reply chain, root
/// first; the walk goes through deleted tweets; a limit keeps the nearest
/// and says the chain was cut (only when a live tweet was left out); a
/// root has none; a tweet that never existed is not found.
pub async fn ancestors_come_root_first_through_deleted_tweets(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, bob) = (fixture.user(), fixture.user());
    let mut chain = vec![post(store, &fixture, ann, "root").await];
    for n in 1..5 {
        let author = if n % 2 == 0 { ann } else { bob };
        let parent = chain[n - 1].id;
        chain.push(
            create(
                store,
                reply_to(&fixture, author, parent, &format!("hop {n}")),
            )
            .await,
        );
    }
    // root <- 1 <- 2 (deleted) <- 3 <- 4
    assert!(
        store
            .delete_tweet(chain[2].id, ann, fixture.id())
            .await
            .unwrap()
    );
    let ancestors = |tweets: &[usize], truncated: bool| Ancestors {
        tweets: tweets.iter().map(|&i| chain[i].clone()).collect(),
        truncated,
    };

    assert_eq!(
        store.get_ancestors(chain[4].id, 80).await.unwrap(),
        ancestors(&[0, 1, 3], false)
    );
    assert_eq!(
        store.get_ancestors(chain[4].id, 3).await.unwrap(),
        ancestors(&[0, 1, 3], false),
        "exactly the limit is not cut"
    );
    assert_eq!(
        store.get_ancestors(chain[4].id, 2).await.unwrap(),
        ancestors(&[1, 3], true)
    );
    assert_eq!(
        store.get_ancestors(chain[2].id, 80).await.unwrap(),
        ancestors(&[0, 1], false),
        "a deleted tweet's ancestors are answered"
    );
    assert_eq!(
        store.get_ancestors(chain[0].id, 80).await.unwrap(),
        Ancestors::default()
    );

    assert!(
        store
            .delete_tweet(chain[0].id, ann, fixture.id())
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_ancestors(chain[4].id, 2).await.unwrap(),
        ancestors(&[1, 3], false),
        "only deleted tweets above: nothing was cut"
    );
    let unknown = fixture.id();
    assert!(matches!(
        store.get_ancestors(unknown, 80).await,
        Err(TweetError::TweetNotFound(id)) if id == unknown
    ));
}

/// An author's count is their live tweets, replies and quotes included,
/// retweets not: raised by every create (single or batch), lowered by a
/// delete, once. Unknown authors count 0; answers keep request order.
pub async fn author_counts_follow_creates_and_deletes(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let (ann, bob, nobody) = (fixture.user(), fixture.user(), fixture.user());
    let first = post(store, &fixture, ann, "first").await;
    let bobs = post(store, &fixture, bob, "bob's").await;
    create(store, reply_to(&fixture, ann, bobs.id, "a reply")).await;
    let quote = fixture.tweet(ann, "a quote");
    let quote = NewTweet {
        tweet: Tweet {
            quote_of_tweet_id: Some(bobs.id),
            ..quote.tweet
        },
        ..quote
    };
    create(store, quote).await;
    create_batch(
        store,
        vec![fixture.tweet(bob, "batch 1"), fixture.tweet(bob, "batch 2")],
    )
    .await;
    retweet(store, &fixture, ann, bobs.id, true).await;
    assert_eq!(
        store
            .get_author_counts(vec![ann, nobody, bob, ann])
            .await
            .unwrap(),
        vec![3, 0, 3, 3]
    );

    assert!(
        store
            .delete_tweet(first.id, ann, fixture.id())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_tweet(first.id, ann, fixture.id())
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_author_counts(vec![ann, bob]).await.unwrap(),
        vec![2, 3]
    );
    assert!(store.get_author_counts(vec![]).await.unwrap().is_empty());
}

/// Every page of a scan after `after` (from the start when `None`),
/// `limit` at a time (each page at most `limit` long), and the scan's
/// tweets in order.
async fn scan_all(
    store: &impl TweetStore,
    after: Option<ScanPosition>,
    limit: usize,
) -> (Vec<TweetScanPage>, Vec<ScannedTweet>) {
    let mut pages = Vec::new();
    let mut after = after;
    loop {
        let page = store.scan_tweets(after, limit).await.expect("scan_tweets");
        assert!(
            page.tweets.len() <= limit,
            "a page holds at most `limit` tweets"
        );
        if let (Some(before), Some(next)) = (after, page.next) {
            assert!(
                next > before,
                "a scan only moves forward: {before:?}, then {next:?}"
            );
        }
        after = page.next;
        pages.push(page);
        if after.is_none() {
            break;
        }
        assert!(pages.len() < 100_000, "the scan does not terminate");
    }
    let tweets = pages.iter().flat_map(|page| page.tweets.clone()).collect();
    (pages, tweets)
}

/// The ids of `scanned`, asserting none is listed twice.
#[track_caller]
fn distinct_ids(scanned: &[ScannedTweet]) -> Vec<u64> {
    let ids: Vec<u64> = scanned.iter().map(|entry| entry.tweet.id).collect();
    let unique: std::collections::HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a scan lists each tweet once");
    ids
}

/// A scan of a store without tweets is one empty page, the last.
pub async fn scanning_an_empty_store_gives_one_empty_last_page(store: &impl TweetStore) {
    for limit in [1, 3, 1_000] {
        assert_eq!(
            store.scan_tweets(None, limit).await.expect("scan_tweets"),
            TweetScanPage::default(),
            "limit {limit}"
        );
    }
}

/// A scan in small pages lists every live tweet (replies and quotes
/// included) exactly once, as stored, with its counts; deleted tweets and
/// retweets are not listed; and the order does not depend on the page size.
pub async fn a_scan_lists_every_live_tweet_once_in_a_stable_order_with_its_counts(
    store: &impl TweetStore,
) {
    let fixture = Fixture::new();
    let (author, fan, retweeter) = (fixture.user(), fixture.user(), fixture.user());
    let root = post(store, &fixture, author, "root").await;
    let liked = post(store, &fixture, author, "liked").await;
    let retweeted = post(store, &fixture, author, "retweeted").await;
    let doomed = post(store, &fixture, author, "doomed").await;
    let reply = create(store, reply_to(&fixture, fan, root.id, "reply")).await;
    let quote = {
        let new = fixture.tweet(fan, "quote");
        let new = NewTweet {
            tweet: Tweet {
                quote_of_tweet_id: Some(liked.id),
                ..new.tweet
            },
            ..new
        };
        create(store, new).await
    };
    engage(store, Engagement::Like, fan, liked.id, true).await;
    let retweet = retweet(store, &fixture, retweeter, retweeted.id, true).await;
    let retweet_id = retweet.retweet_id.expect("a retweet has an id");
    assert!(
        store
            .delete_tweet(doomed.id, author, fixture.id())
            .await
            .expect("delete_tweet")
    );

    let (pages, scanned) = scan_all(store, None, 2).await;
    let ids = distinct_ids(&scanned);
    let expected = [
        (
            &root,
            TweetCounts {
                replies: 1,
                ..TweetCounts::default()
            },
        ),
        (
            &liked,
            TweetCounts {
                likes: 1,
                quotes: 1,
                ..TweetCounts::default()
            },
        ),
        (
            &retweeted,
            TweetCounts {
                retweets: 1,
                ..TweetCounts::default()
            },
        ),
        (&reply, TweetCounts::default()),
        (&quote, TweetCounts::default()),
    ];
    for (tweet, counts) in expected {
        let found: Vec<&ScannedTweet> = scanned
            .iter()
            .filter(|entry| entry.tweet.id == tweet.id)
            .collect();
        assert_eq!(
            found,
            vec![&ScannedTweet {
                tweet: tweet.clone(),
                counts
            }],
            "{}",
            tweet.text
        );
    }
    assert!(!ids.contains(&doomed.id), "a deleted tweet is not scanned");
    assert!(!ids.contains(&retweet_id), "a retweet is not a tweet");
    assert!(
        scanned
            .iter()
            .all(|entry| entry.tweet.author_id != retweeter),
        "the retweeter wrote nothing: nothing of theirs is scanned"
    );
    assert!(pages.len() >= 3, "six tweets (five live) in pages of two");

    // Another page size, the same order; and a scan resumed from a page's
    // `next` continues it.
    let (_, again) = scan_all(store, None, 5).await;
    assert_eq!(distinct_ids(&again), ids, "the scan order is stable");
    let read: usize = pages[..2].iter().map(|page| page.tweets.len()).sum();
    let (_, rest) = scan_all(store, pages[1].next, 3).await;
    assert_eq!(distinct_ids(&rest), ids[read..], "resumed after page 2");
}

/// A tweet deleted after a scan began but before its page was read is not
/// listed; the tweets that stayed are each listed once; a tweet created
/// meanwhile may or may not be (but once at most).
pub async fn a_scan_leaves_out_tweets_deleted_before_their_page(store: &impl TweetStore) {
    let fixture = Fixture::new();
    let author = fixture.user();
    let mut ours = Vec::new();
    for n in 0..5 {
        ours.push(post(store, &fixture, author, &format!("scanned {n}")).await);
    }
    // Which of ours the scan reaches last: the one to delete mid-scan.
    let (_, before) = scan_all(store, None, 1_000).await;
    let order = distinct_ids(&before);
    let last = *order
        .iter()
        .rev()
        .find(|id| ours.iter().any(|tweet| tweet.id == **id))
        .expect("our tweets are scanned");

    let first = store.scan_tweets(None, 1).await.expect("scan_tweets");
    assert_eq!(first.tweets.len(), 1, "the store holds tweets");
    assert_ne!(
        first.tweets[0].tweet.id, last,
        "five of ours: not the first"
    );
    assert!(
        store
            .delete_tweet(last, author, fixture.id())
            .await
            .expect("delete_tweet")
    );
    let newcomer = post(store, &fixture, author, "created mid-scan").await;
    let (_, rest) = scan_all(store, first.next, 2).await;
    let mut scanned = first.tweets;
    scanned.extend(rest);
    let ids = distinct_ids(&scanned);
    assert!(!ids.contains(&last), "deleted before its page was read");
    for tweet in ours.iter().filter(|tweet| tweet.id != last) {
        assert_eq!(
            ids.iter().filter(|id| **id == tweet.id).count(),
            1,
            "{}",
            tweet.text
        );
    }
    assert!(ids.iter().filter(|id| **id == newcomer.id).count() <= 1);
}
