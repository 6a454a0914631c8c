//! The event log contract as executable checks, run against every
//! [`EventLog`] implementation (embedded here; Redis Streams in its own crate).
//!
//! Each check takes a fresh log from `make`, which returns a guard to keep
//! alive (e.g. a temp dir or a server) alongside the log.

use std::future::Future;
use std::time::Duration;

use super::{EventId, EventLog};

/// Runs every check, each on a fresh log.
pub async fn run_all<G, L, F, Fut>(make: F)
where
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = (G, L)>,
{
    let (_guard, log) = make().await;
    delivers_in_append_order_with_increasing_ids(&log).await;
    let (_guard, log) = make().await;
    acked_entries_are_never_redelivered(&log).await;
    let (_guard, log) = make().await;
    unacked_entries_go_to_another_consumer_after_the_idle_timeout(&log).await;
    let (_guard, log) = make().await;
    order_per_key_is_preserved_across_consumers(&log).await;
    let (_guard, log) = make().await;
    groups_are_independent_and_start_at_the_beginning(&log).await;
    let (_guard, log) = make().await;
    blocked_reader_wakes_on_append(&log).await;
    let (_guard, log) = make().await;
    lag_counts_unacknowledged_entries(&log).await;
    let (_guard, log) = make().await;
    tailing_reads_every_entry_after_a_position(&log).await;
    let (_guard, log) = make().await;
    capped_appends_reach_tail_readers_in_order(&log).await;
    let (_guard, log) = make().await;
    counting_after_a_position_stops_at_the_cap(&log).await;
    let (_guard, log) = make().await;
    deleted_and_trimmed_entries_are_gone_and_the_rest_stay(&log).await;
    let (_guard, log) = make().await;
    members_and_leases_coordinate_a_groups_replicas(&log).await;
}

/// Waits until `condition` holds, polling, for at most ten seconds (far
/// beyond the short TTLs the checks use); panics naming `what` otherwise.
async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Heartbeats list a group's live members (sorted, a lapsed or departed
/// one gone); a lease has one holder at a time, is renewed by its holder,
/// lapses when not renewed, and is released only by its holder.
pub async fn members_and_leases_coordinate_a_groups_replicas(log: &impl EventLog) {
    let long = Duration::from_secs(60);
    let short = Duration::from_millis(300);
    assert_eq!(log.heartbeat("coord", "g", "b", long).await.unwrap(), ["b"]);
    assert_eq!(
        log.heartbeat("coord", "g", "a", short).await.unwrap(),
        ["a", "b"]
    );
    // Another group's members are its own.
    assert_eq!(log.heartbeat("coord", "h", "c", long).await.unwrap(), ["c"]);
    // a's membership lapses (b's heartbeats renew b's alone).
    eventually("a's membership to lapse", || async {
        log.heartbeat("coord", "g", "b", long).await.unwrap() == ["b"]
    })
    .await;
    log.heartbeat("coord", "g", "a", long).await.unwrap();
    assert_eq!(
        log.heartbeat("coord", "g", "a", Duration::ZERO)
            .await
            .unwrap(),
        ["b"],
        "a zero ttl leaves"
    );

    assert!(log.lease("coord", "p0", "a", short).await.unwrap());
    assert!(
        !log.lease("coord", "p0", "b", long).await.unwrap(),
        "one holder at a time"
    );
    assert!(
        log.lease("coord", "p0", "a", short).await.unwrap(),
        "the holder renews"
    );
    assert!(
        log.lease("coord", "p1", "b", long).await.unwrap(),
        "leases are independent"
    );
    // Unrenewed, a's lease lapses and b takes it.
    eventually("a's unrenewed lease to lapse", || async {
        log.lease("coord", "p0", "b", long).await.unwrap()
    })
    .await;
    log.release("coord", "p0", "a").await.unwrap();
    assert!(
        !log.lease("coord", "p0", "a", long).await.unwrap(),
        "only the holder releases"
    );
    log.release("coord", "p0", "b").await.unwrap();
    assert!(
        log.lease("coord", "p0", "a", long).await.unwrap(),
        "a released lease is free"
    );
}

/// `delete` removes exactly the named entries (counting those that
/// existed), and `trim_before` every entry older than its id, leaving the
/// rest readable in order.
pub async fn deleted_and_trimmed_entries_are_gone_and_the_rest_stay(log: &impl EventLog) {
    let mut appended = Vec::new();
    for key in 0..6 {
        appended.push(log.append("letters", key, &[key as u8]).await.unwrap());
    }
    let missing = EventId {
        ms: appended[5].ms + 1_000,
        seq: 0,
    };
    assert_eq!(
        log.delete("letters", &[appended[1], appended[3], missing])
            .await
            .unwrap(),
        2
    );
    let all = log
        .read_after("letters", None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        vec![appended[0], appended[2], appended[4], appended[5]]
    );
    assert_eq!(log.trim_before("letters", appended[4]).await.unwrap(), 2);
    let rest = log
        .read_after("letters", None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&rest), vec![appended[4], appended[5]]);
    assert_eq!(rest[0].payload, [4]);
    assert_eq!(log.trim_before("letters", appended[4]).await.unwrap(), 0);
}

/// `count_after` counts the entries after a position (all of them from
/// `None`), never past the cap, and none after the newest.
pub async fn counting_after_a_position_stops_at_the_cap(log: &impl EventLog) {
    assert_eq!(log.count_after("counted", None, 10).await.unwrap(), 0);
    let mut ids = Vec::new();
    for key in 0..5u64 {
        ids.push(log.append("counted", key, b"x").await.unwrap());
    }
    assert_eq!(log.count_after("counted", None, 10).await.unwrap(), 5);
    assert_eq!(
        log.count_after("counted", Some(ids[1]), 10).await.unwrap(),
        3
    );
    assert_eq!(
        log.count_after("counted", Some(ids[1]), 2).await.unwrap(),
        2
    );
    assert_eq!(
        log.count_after("counted", Some(ids[4]), 10).await.unwrap(),
        0
    );
    assert_eq!(log.count_after("counted", None, 0).await.unwrap(), 0);
}

/// A batch of capped appends reaches tail readers whole, in order, with
/// keys and payloads. (Waking a blocked tail read is
/// [`tailing_reads_every_entry_after_a_position`]'s.)
pub async fn capped_appends_reach_tail_readers_in_order(log: &impl EventLog) {
    let start = log.last_id("live").await.unwrap();
    let entries = vec![(7, b"a".to_vec()), (8, b"b".to_vec()), (7, b"c".to_vec())];
    log.append_capped("live", &entries, 1_000).await.unwrap();
    let read = log
        .read_after("live", start, 10, Duration::ZERO)
        .await
        .unwrap();
    let seen: Vec<(u64, Vec<u8>)> = read
        .iter()
        .map(|entry| (entry.key, entry.payload.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![(7, b"a".to_vec()), (8, b"b".to_vec()), (7, b"c".to_vec())]
    );
    assert!(read.windows(2).all(|pair| pair[0].id < pair[1].id));
    log.append_capped("live", &[], 1_000).await.unwrap();
    assert_eq!(
        log.last_id("live").await.unwrap(),
        read.last().map(|entry| entry.id)
    );
}

fn ids(deliveries: &[super::Delivery]) -> Vec<EventId> {
    deliveries.iter().map(|delivery| delivery.id).collect()
}

/// Entries come back in append order with their key and payload, ids increasing.
pub async fn delivers_in_append_order_with_increasing_ids(log: &impl EventLog) {
    let mut appended = Vec::new();
    for i in 0..20u64 {
        appended.push(
            log.append("order", i % 3, format!("e{i}").as_bytes())
                .await
                .unwrap(),
        );
    }
    assert!(
        appended.windows(2).all(|pair| pair[0] < pair[1]),
        "ids must increase"
    );
    let first = log
        .read_group("order", "g", "c", 15, Duration::ZERO)
        .await
        .unwrap();
    let rest = log
        .read_group("order", "g", "c", 15, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(first.len(), 15);
    assert_eq!(rest.len(), 5);
    let all: Vec<_> = first.iter().chain(&rest).collect();
    for (i, delivery) in all.iter().enumerate() {
        assert_eq!(delivery.id, appended[i]);
        assert_eq!(delivery.key, i as u64 % 3);
        assert_eq!(delivery.payload, format!("e{i}").as_bytes());
        assert_eq!(delivery.delivery_count, 1);
    }
    assert!(
        log.read_group("order", "g", "c", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Once acknowledged, an entry is never delivered again, by read or reclaim.
pub async fn acked_entries_are_never_redelivered(log: &impl EventLog) {
    for i in 0..5u64 {
        log.append("acked", i, b"x").await.unwrap();
    }
    let got = log
        .read_group("acked", "g", "c1", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(log.ack("acked", "g", &ids(&got)).await.unwrap(), 5);
    // Acking again changes nothing.
    assert_eq!(log.ack("acked", "g", &ids(&got)).await.unwrap(), 0);
    assert!(
        log.reclaim("acked", "g", "c2", Duration::ZERO, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        log.read_group("acked", "g", "c2", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An entry left unacked (its consumer died) is not reclaimable before the
/// idle timeout, and is handed to another consumer after it.
pub async fn unacked_entries_go_to_another_consumer_after_the_idle_timeout(log: &impl EventLog) {
    let a = log.append("reclaim", 1, b"a").await.unwrap();
    let b = log.append("reclaim", 2, b"b").await.unwrap();
    let got = log
        .read_group("reclaim", "g", "dead", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&got), vec![a, b]);
    // The consumer acks `a`, then dies before acking `b`.
    log.ack("reclaim", "g", &[a]).await.unwrap();

    // "Not yet" is checked with a timeout no stall on a loaded machine can
    // reach; the reclaim itself waits out a one-second timeout.
    let never_yet = Duration::from_secs(600);
    assert!(
        log.reclaim("reclaim", "g", "alive", never_yet, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is idle long enough yet"
    );
    let idle = Duration::from_secs(1);
    tokio::time::sleep(idle + Duration::from_millis(50)).await;
    let reclaimed = log
        .reclaim("reclaim", "g", "alive", idle, 10)
        .await
        .unwrap();
    assert_eq!(ids(&reclaimed), vec![b]);
    assert_eq!(reclaimed[0].payload, b"b");
    assert_eq!(reclaimed[0].delivery_count, 2);
    // Reclaiming resets the idle clock: without the reset `b` would have
    // been idle for more than `idle` already, so a second reclaim right away
    // would take it again.
    assert!(
        log.reclaim("reclaim", "g", "other", idle, 10)
            .await
            .unwrap()
            .is_empty()
    );
    log.ack("reclaim", "g", &[b]).await.unwrap();
    assert_eq!(log.lag("reclaim", "g").await.unwrap(), 0);
}

/// Deliveries to consumers sharing a group keep each key's append order.
pub async fn order_per_key_is_preserved_across_consumers(log: &impl EventLog) {
    let mut expected: std::collections::HashMap<u64, Vec<EventId>> = Default::default();
    for i in 0..30u64 {
        let key = i % 4;
        let id = log.append("keys", key, &i.to_be_bytes()).await.unwrap();
        expected.entry(key).or_default().push(id);
    }
    let mut seen: std::collections::HashMap<u64, Vec<EventId>> = Default::default();
    for consumer in ["c1", "c2", "c1", "c2", "c1", "c2", "c1", "c2"] {
        for delivery in log
            .read_group("keys", "g", consumer, 4, Duration::ZERO)
            .await
            .unwrap()
        {
            seen.entry(delivery.key).or_default().push(delivery.id);
        }
    }
    assert_eq!(seen, expected);
}

/// Every group sees every entry, including entries appended before the group first read.
pub async fn groups_are_independent_and_start_at_the_beginning(log: &impl EventLog) {
    let first = log.append("groups", 1, b"early").await.unwrap();
    let one = log
        .read_group("groups", "fanout", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&one), vec![first]);
    let second = log.append("groups", 1, b"late").await.unwrap();
    let other = log
        .read_group("groups", "search", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&other), vec![first, second]);
    let one_more = log
        .read_group("groups", "fanout", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&one_more), vec![second]);
}

/// A reader blocked on an empty stream returns as soon as an entry is appended.
pub async fn blocked_reader_wakes_on_append(log: &impl EventLog) {
    assert!(
        log.read_group("block", "g", "c", 1, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    let started = std::time::Instant::now();
    let (deliveries, appended) = tokio::join!(
        log.read_group("block", "g", "c", 10, Duration::from_secs(20)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.append("block", 9, b"wake").await.unwrap()
        }
    );
    assert_eq!(ids(&deliveries.unwrap()), vec![appended]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "reader must wake on append, not on timeout"
    );
}

/// Lag counts entries appended and not yet acknowledged, delivered or not,
/// and the oldest of them is the oldest pending or undelivered entry.
pub async fn lag_counts_unacknowledged_entries(log: &impl EventLog) {
    assert_eq!(log.lag("lag", "g").await.unwrap(), 0);
    assert_eq!(log.oldest_unacked("lag", "g").await.unwrap(), None);
    let mut appended = Vec::new();
    for i in 0..6u64 {
        appended.push(log.append("lag", i, b"x").await.unwrap());
    }
    assert_eq!(log.lag("lag", "g").await.unwrap(), 6);
    assert_eq!(
        log.oldest_unacked("lag", "g").await.unwrap(),
        Some(appended[0])
    );
    let got = log
        .read_group("lag", "g", "c", 4, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(log.lag("lag", "g").await.unwrap(), 6);
    assert_eq!(
        log.oldest_unacked("lag", "g").await.unwrap(),
        Some(appended[0])
    );
    log.ack("lag", "g", &ids(&got[..3])).await.unwrap();
    assert_eq!(log.lag("lag", "g").await.unwrap(), 3);
    // The oldest is still pending...
    assert_eq!(
        log.oldest_unacked("lag", "g").await.unwrap(),
        Some(appended[3])
    );
    log.ack("lag", "g", &ids(&got[3..])).await.unwrap();
    // ...then not yet delivered...
    assert_eq!(
        log.oldest_unacked("lag", "g").await.unwrap(),
        Some(appended[4])
    );
    let rest = log
        .read_group("lag", "g", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    log.ack("lag", "g", &ids(&rest)).await.unwrap();
    // ...then nothing.
    assert_eq!(log.lag("lag", "g").await.unwrap(), 0);
    assert_eq!(log.oldest_unacked("lag", "g").await.unwrap(), None);
}

/// A tail reader (no group) sees every entry after its position, in order,
/// whatever consumer groups do, and can start from "now".
pub async fn tailing_reads_every_entry_after_a_position(log: &impl EventLog) {
    assert_eq!(log.last_id("tail").await.unwrap(), None);
    let old = log.append("tail", 1, b"before").await.unwrap();
    let now = log.last_id("tail").await.unwrap();
    assert_eq!(now, Some(old));
    let a = log.append("tail", 2, b"a").await.unwrap();
    let b = log.append("tail", 3, b"b").await.unwrap();
    // A consumer group taking entries does not hide them from tail readers.
    log.read_group("tail", "g", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    let seen = log
        .read_after("tail", now, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&seen), vec![a, b]);
    assert_eq!(seen[1].payload, b"b");
    let all = log
        .read_after("tail", None, 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&all), vec![old, a, b]);
    let first = log
        .read_after("tail", None, 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(ids(&first), vec![old]);
    // A blocked tail read wakes on append.
    let (woken, c) = tokio::join!(
        log.read_after("tail", Some(b), 10, Duration::from_secs(20)),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            log.append("tail", 4, b"c").await.unwrap()
        }
    );
    assert_eq!(ids(&woken.unwrap()), vec![c]);
}
