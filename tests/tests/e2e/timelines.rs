//! Hybrid fan-out and home timelines, end to end: all four services in one
//! process over real gRPC, as `warble dev` runs them.

use std::time::Duration;

use prost::Message as _;
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog as _};
use warble_proto::events::v1::DeadLetter;
use warble_stack::DevConfig;
use warble_tests::{TestStack, eventually};
use warble_timeline_cache::{CELEBRITY_CAPACITY, TIMELINE_CAPACITY};

/// Followers from which an author counts as a celebrity in these tests.
const THRESHOLD: u64 = 3;

fn small_world(config: &mut DevConfig) {
    config.fanout.celebrity_threshold = THRESHOLD;
    config.consumer.max_attempts = 3;
    config.consumer.retry_backoff_ms = 5;
    config.consumer.max_retry_backoff_ms = 20;
    config.consumer.lease_secs = 2;
}

async fn start() -> TestStack {
    TestStack::start_with(small_world).await
}

/// Users and their usernames, created in one go.
async fn users(stack: &TestStack, names: &[&str]) -> Vec<u64> {
    let mut ids = Vec::new();
    for name in names {
        ids.push(stack.create_user(name).await);
    }
    ids
}

/// Whether `tweet_id` is in `user`'s cached timeline (not counting the read-time merge).
async fn cached(stack: &TestStack, user: u64, tweet_id: u64) -> bool {
    copies(stack, user, tweet_id)
        .await
        .is_some_and(|copies| copies > 0)
}

#[tokio::test]
async fn a_normal_authors_tweet_reaches_every_active_follower() {
    // Four followers stay under this threshold: the author is a normal author.
    let stack = TestStack::start_with(|config| {
        small_world(config);
        config.fanout.celebrity_threshold = 10;
    })
    .await;
    let ids = users(&stack, &["author", "fan1", "fan2", "fan3", "lurker"]).await;
    let (author, fans, lurker) = (ids[0], [ids[1], ids[2], ids[3]], ids[4]);
    for fan in fans {
        stack.follow(fan, author).await;
        // Reading marks them active and builds their cached timeline.
        assert!(stack.home_all(fan, 20).await.is_empty());
    }
    stack.follow(lurker, author).await;
    stack.settle().await;

    let tweet = stack.post(author, "hello followers").await;
    stack.settle().await;
    for fan in fans {
        assert!(
            cached(&stack, fan, tweet).await,
            "pushed into an active follower's cache"
        );
        assert_eq!(stack.home_all(fan, 20).await, vec![tweet]);
    }
    // The lurker never read a timeline: no push, but the first read has it.
    assert!(!cached(&stack, lurker, tweet).await);
    assert_eq!(stack.home_all(lurker, 20).await, vec![tweet]);
    // The author sees their own tweet.
    assert_eq!(stack.home_all(author, 20).await, vec![tweet]);
    stack.stop().await;
}

#[tokio::test]
async fn a_celebrity_reaches_followers_through_the_read_time_merge_only() {
    let stack = start().await;
    let ids = users(&stack, &["celeb", "f1", "f2", "f3"]).await;
    let (celebrity, fans) = (ids[0], &ids[1..]);
    for fan in fans {
        stack.follow(*fan, celebrity).await;
        stack.home_all(*fan, 20).await;
    }
    stack.settle().await;
    let before = stack.fanout_status().await.deliveries_written;

    let tweet = stack.post(celebrity, "a word to my many fans").await;
    stack.settle().await;
    assert_eq!(
        stack.fanout_status().await.deliveries_written - before,
        1,
        "only the celebrity's own timeline is written"
    );
    for fan in fans {
        assert!(!cached(&stack, *fan, tweet).await, "no per-follower write");
        assert_eq!(
            stack.home_all(*fan, 20).await,
            vec![tweet],
            "merged at read time"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn the_cap_holds_and_older_pages_come_from_the_pull_path() {
    let stack = start().await;
    let ids = users(&stack, &["prolific", "reader"]).await;
    let (author, reader) = (ids[0], ids[1]);
    stack.follow(reader, author).await;
    stack.home_all(reader, 20).await;
    let total = TIMELINE_CAPACITY + 60;
    let mut posted = Vec::with_capacity(total);
    for n in 0..total {
        posted.push(stack.post(author, &format!("tweet number {n}")).await);
    }
    stack.settle().await;
    let page = stack
        .stack
        .timeline_cache
        .read(reader, None, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.len, TIMELINE_CAPACITY, "the cached timeline is capped");

    posted.reverse();
    assert_eq!(
        stack.home_all(reader, 100).await,
        posted,
        "every tweet, newest first, once"
    );
    assert_eq!(
        stack.home_all(reader, 37).await,
        posted,
        "page size does not matter"
    );
    stack.stop().await;
}

/// A celebrity's recent set keeps their newest `CELEBRITY_CAPACITY`
/// entries; a reader paging past them gets the rest from the tweet store,
/// interleaved with the older cached tweets of a normal author they follow.
/// (A set holding fewer is the celebrity's whole history, and pages stop
/// asking the store: were a full set taken for complete, the celebrity's
/// oldest tweets would go missing here.)
#[tokio::test]
async fn a_celebritys_tweets_past_the_recent_set_page_from_the_store() {
    let stack = start().await;
    let ids = users(&stack, &["celeb", "f1", "f2", "plain", "reader"]).await;
    let (celebrity, plain, reader) = (ids[0], ids[3], ids[4]);
    for fan in [ids[1], ids[2], reader] {
        stack.follow(fan, celebrity).await;
    }
    stack.follow(reader, plain).await;
    // Active: the plain author's tweets are pushed into the reader's cache.
    stack.home_all(reader, 20).await;
    stack.settle().await;
    let total = CELEBRITY_CAPACITY + 30;
    let mut posted = Vec::with_capacity(total + 60);
    for n in 0..total {
        // The plain author's tweets sit among the celebrity's oldest ones,
        // those the recent set cannot hold.
        if n < 60 {
            posted.push(stack.post(plain, &format!("plain number {n}")).await);
        }
        posted.push(stack.post(celebrity, &format!("word number {n}")).await);
    }
    stack.settle().await;
    posted.reverse();
    assert_eq!(
        stack.home_all(reader, 50).await,
        posted,
        "every tweet, newest first, once"
    );
    let recent = stack
        .stack
        .timeline_cache
        .celebrity_recent(&[celebrity], None, usize::MAX)
        .await
        .unwrap()
        .remove(0)
        .expect("the reads filled the set");
    assert_eq!(recent.entries.len(), CELEBRITY_CAPACITY);
    assert!(!recent.complete);
    stack.stop().await;
}

#[tokio::test]
async fn a_delete_removes_the_tweet_everywhere() {
    let stack = start().await;
    let ids = users(&stack, &["normal", "celebrity", "a", "b", "c"]).await;
    let (normal, celebrity, fans) = (ids[0], ids[1], &ids[2..]);
    for fan in fans {
        stack.follow(*fan, normal).await;
        stack.follow(*fan, celebrity).await;
        stack.home_all(*fan, 20).await;
    }
    stack.settle().await;
    let pushed = stack.post(normal, "pushed then deleted").await;
    let merged = stack.post(celebrity, "merged then deleted").await;
    let kept = stack.post(normal, "kept").await;
    stack.settle().await;
    for fan in fans {
        assert_eq!(stack.home_all(*fan, 20).await, vec![kept, merged, pushed]);
    }
    stack.delete(pushed, normal).await;
    stack.delete(merged, celebrity).await;
    stack.settle().await;
    for user in fans.iter().chain([&normal, &celebrity]) {
        assert!(!cached(&stack, *user, pushed).await);
        let timeline = stack.home_all(*user, 20).await;
        assert!(
            !timeline.contains(&pushed) && !timeline.contains(&merged),
            "{timeline:?}"
        );
    }
    let recent = stack
        .stack
        .timeline_cache
        .celebrity_recent(&[celebrity], None, 10)
        .await
        .unwrap();
    assert!(
        !recent[0]
            .clone()
            .unwrap_or_default()
            .entries
            .iter()
            .any(|entry| entry.tweet_id == merged)
    );
    stack.stop().await;
}

#[tokio::test]
async fn follow_backfills_and_unfollow_removes() {
    let stack = start().await;
    let ids = users(&stack, &["writer", "newfan"]).await;
    let (writer, fan) = (ids[0], ids[1]);
    let older = stack.post(writer, "before the follow").await;
    stack.home_all(fan, 20).await;
    stack.follow(fan, writer).await;
    stack.settle().await;
    assert!(
        cached(&stack, fan, older).await,
        "backfilled into the cache"
    );
    assert_eq!(stack.home_all(fan, 20).await, vec![older]);

    let newer = stack.post(writer, "after the follow").await;
    stack.settle().await;
    assert_eq!(stack.home_all(fan, 20).await, vec![newer, older]);

    stack.unfollow(fan, writer).await;
    stack.settle().await;
    assert!(!cached(&stack, fan, newer).await && !cached(&stack, fan, older).await);
    assert!(stack.home_all(fan, 20).await.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn redelivered_and_duplicated_events_change_nothing() {
    let stack = start().await;
    let ids = users(&stack, &["source", "sink"]).await;
    let (author, fan) = (ids[0], ids[1]);
    stack.follow(fan, author).await;
    stack.home_all(fan, 20).await;
    let first = stack.post(author, "one").await;
    let second = stack.post(author, "two").await;
    stack.delete(first, author).await;
    stack.settle().await;
    let expected = stack.home_all(fan, 20).await;
    assert_eq!(expected, vec![second]);
    let processed = stack.fanout_status().await.events_processed;

    // Append every event again, as a redelivery would: follow, both creates and the delete.
    let log = &stack.stack.event_log;
    let entries = log
        .read_group(DOMAIN_EVENTS_STREAM, "replay", "test", 100, Duration::ZERO)
        .await
        .unwrap();
    assert!(entries.len() >= 4);
    for entry in &entries {
        log.append(DOMAIN_EVENTS_STREAM, entry.key, &entry.payload)
            .await
            .unwrap();
    }
    stack.settle().await;
    let status = stack.fanout_status().await;
    assert_eq!(status.events_processed, processed + entries.len() as u64);
    assert_eq!(
        stack.home_all(fan, 20).await,
        expected,
        "the deleted tweet did not come back"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_event_that_keeps_failing_ends_in_the_dead_letter() {
    let stack = start().await;
    let log = &stack.stack.event_log;
    log.append(DOMAIN_EVENTS_STREAM, 42, b"\xff\xffnot a protobuf event")
        .await
        .unwrap();
    // Dead-lettered, then acknowledged: the ack goes through the consumer's
    // ack batcher just after the dead letter is counted, so wait for both.
    eventually(
        "the poison event to be dead-lettered and acknowledged",
        || async {
            let status = stack.fanout_status().await;
            status.dead_letters == 1 && status.consumer_lag == 0
        },
    )
    .await;
    let status = stack.fanout_status().await;
    assert_eq!(status.consumer_lag, 0, "acknowledged once dead-lettered");
    assert_eq!(status.events_failed, 1);
    assert_eq!(
        status.retries,
        u64::from(stack.config().consumer.max_attempts) - 1
    );

    // notify-svc's and media-svc's groups meet the same poison event and
    // dead-letter it too, each on its own record: wait for them, then read all.
    eventually("notify-svc and media-svc to dead-letter it too", || async {
        use warble_mesh::consumer::ConsumerCounters;
        ConsumerCounters::get(&stack.stack.notify_stats.consumer.dead_letters) == 1
            && stack.stack.notify_lag().await.is_ok_and(|lag| lag == 0)
            && ConsumerCounters::get(&stack.stack.media_stats.consumer.dead_letters) == 1
            && stack.stack.media_lag().await.is_ok_and(|lag| lag == 0)
    })
    .await;
    let dead = log
        .read_group(
            warble_mesh::consumer::DEAD_LETTER_STREAM,
            "ops",
            "test",
            10,
            Duration::ZERO,
        )
        .await
        .unwrap();
    let records: Vec<DeadLetter> = dead
        .iter()
        .map(|entry| DeadLetter::decode(entry.payload.as_slice()).unwrap())
        .collect();
    let mut groups: Vec<&str> = records
        .iter()
        .map(|record| record.consumer_group.as_str())
        .collect();
    groups.sort_unstable();
    assert_eq!(
        groups,
        ["fanout", "media", "notify"],
        "one record per consumer group"
    );
    let record = records
        .iter()
        .find(|record| record.consumer_group == "fanout")
        .unwrap();
    assert_eq!(record.key, 42);
    assert_eq!(record.payload, b"\xff\xffnot a protobuf event");
    assert_eq!(record.attempts, stack.config().consumer.max_attempts);
    assert!(
        record.last_error.contains("undecodable"),
        "{}",
        record.last_error
    );

    // The consumer is not stuck: later events still flow.
    let ids = users(&stack, &["after"]).await;
    let tweet = stack.post(ids[0], "still flowing").await;
    stack.settle().await;
    assert_eq!(stack.home_all(ids[0], 20).await, vec![tweet]);
    stack.stop().await;
}

#[tokio::test]
async fn an_inactive_users_timeline_is_rebuilt_to_what_push_would_have_built() {
    let stack = start().await;
    let ids = users(&stack, &["w1", "w2", "w3", "active", "away"]).await;
    let (writers, active, away) = (&ids[..3], ids[3], ids[4]);
    for writer in writers {
        stack.follow(active, *writer).await;
        stack.follow(away, *writer).await;
    }
    stack.home_all(active, 20).await;
    stack.settle().await;
    for round in 0..5 {
        for writer in writers {
            stack.post(*writer, &format!("round {round}")).await;
        }
    }
    stack.post(away, "my own tweet").await;
    stack.settle().await;
    // `away` never read, so fan-out skipped them; their first read rebuilds.
    let rebuilds = stack.stack.home_timelines.rebuilds();
    let pushed = stack
        .stack
        .timeline_cache
        .read(active, None, usize::MAX)
        .await
        .unwrap()
        .unwrap();
    let rebuilt = stack.home_all(away, 100).await;
    assert_eq!(stack.stack.home_timelines.rebuilds(), rebuilds + 1);
    let mut expected: Vec<u64> = pushed.entries.iter().map(|entry| entry.tweet_id).collect();
    let own = stack.home_all(away, 100).await[0];
    expected.insert(0, own);
    assert_eq!(
        rebuilt, expected,
        "rebuild equals the push-built timeline plus their own tweet"
    );
    assert_eq!(stack.home_all(active, 100).await, expected[1..]);
    stack.stop().await;
}

/// How often `tweet_id` is in `user`'s cached timeline; `None` when it is
/// not built (never built, or evicted).
async fn copies(stack: &TestStack, user: u64, tweet_id: u64) -> Option<usize> {
    stack
        .stack
        .timeline_cache
        .read(user, None, usize::MAX)
        .await
        .unwrap()
        .map(|page| {
            page.entries
                .iter()
                .filter(|entry| entry.tweet_id == tweet_id)
                .count()
        })
}

#[tokio::test]
async fn fan_out_pushes_to_active_followers_only_page_after_page_tweet_after_tweet() {
    // 300 followers in pages of 64: several pages, more followers than one
    // cache call carries, read again for every tweet.
    let stack = TestStack::start_with(|config| {
        small_world(config);
        config.fanout.celebrity_threshold = 1_000;
        config.fanout.follower_page_size = 64;
    })
    .await;
    let cache = &stack.stack.timeline_cache;
    let author = stack.create_user("author").await;
    let mut followers = Vec::new();
    for n in 0..300 {
        let follower = stack.create_user(&format!("follower{n}")).await;
        stack.follow(follower, author).await;
        followers.push(follower);
    }
    let now = warble_mesh::time::now_ms();
    let long_ago = now - 40 * 86_400_000;
    let (mut active, mut idle, mut unseen) = (Vec::new(), Vec::new(), Vec::new());
    for (n, &follower) in followers.iter().enumerate() {
        match n % 3 {
            0 => unseen.push(follower),
            1 => {
                // Read their timeline 40 days ago (the policy's limit is 30).
                cache.mark_active(follower, long_ago).await.unwrap();
                cache.insert(follower, &[], true).await.unwrap();
                idle.push(follower);
            }
            _ => {
                stack.home_all(follower, 20).await;
                active.push(follower);
            }
        }
    }
    stack.settle().await;

    let first = stack.post(author, "first").await;
    stack.settle().await;
    for &follower in &active {
        assert_eq!(
            copies(&stack, follower, first).await,
            Some(1),
            "active {follower}"
        );
    }
    for &follower in idle.iter().chain(&unseen) {
        assert_eq!(copies(&stack, follower, first).await, None, "{follower}");
        // Built empty now: anything pushed from here on would show.
        cache.insert(follower, &[], true).await.unwrap();
    }

    // Half the idle come back, and half the never seen show up.
    let (back, still_idle) = idle.split_at(idle.len() / 2);
    let (arrived, still_unseen) = unseen.split_at(unseen.len() / 2);
    for &follower in back.iter().chain(arrived) {
        cache.mark_active(follower, now).await.unwrap();
    }
    let second = stack.post(author, "second").await;
    stack.settle().await;
    for &follower in active.iter().chain(back).chain(arrived) {
        assert_eq!(
            copies(&stack, follower, second).await,
            Some(1),
            "active {follower}"
        );
    }
    for &follower in &active {
        assert_eq!(
            copies(&stack, follower, first).await,
            Some(1),
            "active {follower}"
        );
    }
    for &follower in still_idle {
        assert_eq!(
            copies(&stack, follower, second).await,
            None,
            "idle {follower} evicted again"
        );
    }
    for &follower in still_unseen {
        assert_eq!(
            copies(&stack, follower, second).await,
            Some(0),
            "never seen {follower}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn concurrent_misses_for_one_user_cause_one_rebuild() {
    let stack = start().await;
    let ids = users(&stack, &["popular", "crowd"]).await;
    let (author, user) = (ids[0], ids[1]);
    stack.follow(user, author).await;
    for n in 0..30 {
        stack.post(author, &format!("post {n}")).await;
    }
    stack.settle().await;
    let rebuilds = stack.stack.home_timelines.rebuilds();
    let reads: Vec<_> = (0..1_000)
        .map(|_| {
            let client = stack.timeline();
            tokio::spawn(async move {
                let mut client = client;
                client
                    .get_home_timeline(warble_proto::timeline::v1::GetHomeTimelineRequest {
                        user_id: user,
                        page: None,
                    })
                    .await
                    .map(|response| response.into_inner().entries.len())
            })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), 20);
    }
    assert_eq!(
        stack.stack.home_timelines.rebuilds(),
        rebuilds + 1,
        "one rebuild for a thousand misses"
    );
    stack.stop().await;
}

#[tokio::test]
async fn home_timeline_requests_are_validated() {
    let stack = start().await;
    let user = users(&stack, &["valid"]).await[0];
    let other = users(&stack, &["other"]).await[0];
    assert_eq!(
        stack.home_page(0, "", 10).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        stack.home_page(user, "", 101).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        stack
            .home_page(user, "garbage!", 10)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        stack.home_page(987_654, "", 10).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    // A cursor from one user's timeline is refused on another's.
    for n in 0..3 {
        stack.post(user, &format!("n{n}")).await;
    }
    let (_, cursor) = stack.home_page(user, "", 1).await.unwrap();
    assert!(!cursor.is_empty());
    let refused = stack.home_page(other, &cursor, 1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        warble_mesh::status::violated_field(&refused).as_deref(),
        Some("page.cursor")
    );
    stack.stop().await;
}

/// A reader's recorded set of followed celebrities follows the threshold
/// both ways: an author who reaches it while the reader follows them is
/// merged into the reader's pages from then on (their new tweets are no
/// longer pushed), and one who falls below it is pushed again. The reader
/// reads before each change, so the set is recorded each time, not read
/// fresh from the graph.
#[tokio::test]
async fn a_readers_followed_celebrities_follow_the_threshold_both_ways() {
    let stack = TestStack::start_with(|config| config.fanout.celebrity_threshold = 3).await;
    let ids = users(&stack, &["reader", "author", "fan1", "fan2"]).await;
    let (reader, author, fan1, fan2) = (ids[0], ids[1], ids[2], ids[3]);
    stack.follow(reader, author).await;
    let before = stack.post(author, "before the threshold").await;
    stack.settle().await;
    assert_eq!(stack.home_all(reader, 20).await, vec![before]);

    // Two more followers: the author reaches 3 and is merged from now on.
    stack.follow(fan1, author).await;
    stack.follow(fan2, author).await;
    stack.settle().await;
    let as_celebrity = stack.post(author, "a celebrity now").await;
    stack.settle().await;
    assert!(
        !cached(&stack, reader, as_celebrity).await,
        "a celebrity's tweet is not pushed"
    );
    assert_eq!(
        stack.home_all(reader, 20).await,
        vec![as_celebrity, before],
        "merged at read time: the reader's recorded set gained the author"
    );

    // Back below the threshold: pushed again.
    stack.unfollow(fan2, author).await;
    stack.settle().await;
    let pushed_again = stack.post(author, "below the threshold again").await;
    stack.settle().await;
    assert_eq!(
        stack.home_all(reader, 20).await,
        vec![pushed_again, as_celebrity, before]
    );
    assert!(cached(&stack, reader, pushed_again).await);
    stack.stop().await;
}
