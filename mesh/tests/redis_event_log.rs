//! The Redis Streams event log and the shared Redis client against real
//! redis-server processes: the event log conformance suite on a single node
//! and on a three-master cluster, publish-once, trimming, batching, and
//! fault tests (a killed server, a dead consumer).
//!
//! Skipped with a notice when redis-server is not installed, except under
//! `CI=true` (see `warble-testkit`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use warble_mesh::backends::{RedisConfig, RedisMode};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventId, EventLog, RedisEventLog, conformance};
use warble_mesh::outbox::EventSink;
use warble_mesh::redis_client::{RedisClient, RedisScript, Request, key_slot};
use warble_testkit::{
    RedisCluster, RedisServer, Reply, ServerOptions, Topology, run_suite_on, test_each_topology,
    unique_prefix,
};

async fn log_on(config: &RedisConfig) -> RedisEventLog {
    RedisEventLog::connect(config)
        .await
        .expect("connecting to the test Redis")
        .with_key_prefix(unique_prefix())
}

async fn conformance_on(topology: Topology) {
    run_suite_on(topology, "event log conformance", |config| async move {
        conformance::run_all(|| async { ((), log_on(&config).await) }).await;
    })
    .await;
}

test_each_topology!(conformance_on => conformance_on_a_single_node, conformance_on_a_three_master_cluster);

async fn publish_once_keeps_one_entry_per_event_id(topology: Topology) {
    let Some(config) = topology.shared_config() else {
        return;
    };
    let log = log_on(&config).await;
    for _ in 0..3 {
        log.publish_once("outbox", 7, b"first", 1001).await.unwrap();
    }
    log.publish_once("outbox", 8, b"second", 1002)
        .await
        .unwrap();
    log.publish_once("outbox", 7, b"first again", 1001)
        .await
        .unwrap();
    // Id 0 (undecodable event) is never deduplicated.
    log.publish_once("outbox", 9, b"anonymous", 0)
        .await
        .unwrap();
    log.publish_once("outbox", 9, b"anonymous", 0)
        .await
        .unwrap();
    let got = log
        .read_group("outbox", "g", "c", 100, Duration::ZERO)
        .await
        .unwrap();
    let payloads: Vec<&[u8]> = got.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(
        payloads,
        vec![&b"first"[..], b"second", b"anonymous", b"anonymous"]
    );
    assert_eq!(got[0].key, 7);
}

test_each_topology!(publish_once_keeps_one_entry_per_event_id =>
    publish_once_deduplicates_by_event_id_on_a_single_node,
    publish_once_deduplicates_by_event_id_on_a_cluster);

#[tokio::test]
async fn the_dead_letter_stream_is_a_stream_like_any_other() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let log = log_on(&server.config()).await;
    let stream = format!("{DOMAIN_EVENTS_STREAM}.dead-letter");
    let id = log.append(&stream, 3, b"poison").await.unwrap();
    assert_eq!(log.lag(&stream, "ops").await.unwrap(), 1);
    let got = log
        .read_group(&stream, "ops", "human", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id, got[0].key, got[0].payload.as_slice()),
        (id, 3, &b"poison"[..])
    );
    log.ack(&stream, "ops", &[id]).await.unwrap();
    assert_eq!(log.lag(&stream, "ops").await.unwrap(), 0);
}

async fn stream_len(log: &RedisEventLog, stream: &str) -> u64 {
    log.client()
        .query(Request::new("XLEN", log.stream_key(stream)))
        .await
        .unwrap()
}

/// A live-only stream stays near its cap however much is appended, and
/// keeps its newest entries for tailing readers.
#[tokio::test]
async fn capped_appends_keep_about_the_newest_entries() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let log = log_on(&server.config()).await;
    for batch in 0..20u64 {
        let entries: Vec<(u64, Vec<u8>)> = (batch * 100..(batch + 1) * 100)
            .map(|key| (key, b"x".to_vec()))
            .collect();
        log.append_capped("live", &entries, 100).await.unwrap();
    }
    let length = stream_len(&log, "live").await;
    // `MAXLEN ~` trims whole nodes (100 entries each by default): at least
    // the cap stays, and never much more.
    assert!((100..=300).contains(&length), "length {length}");
    let tail = log
        .read_after("live", None, 10_000, Duration::ZERO)
        .await
        .unwrap();
    let keys: Vec<u64> = tail.iter().map(|entry| entry.key).collect();
    assert_eq!(keys.last(), Some(&1_999));
    assert!(
        keys.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "the newest entries, in append order: {keys:?}"
    );
}

#[tokio::test]
async fn trimming_removes_only_what_every_group_acknowledged() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let log = log_on(&server.config()).await.with_trim_every(1_000_000);
    let mut ids = Vec::new();
    for i in 0..10u64 {
        ids.push(log.append("trim", i, b"x").await.unwrap());
    }
    assert_eq!(log.trim("trim").await.unwrap(), 0, "no group yet: keep all");

    // `fast` is done with everything; `slow` acknowledged 3, holds 2 pending,
    // and has 5 it has not even received.
    let fast = log
        .read_group("trim", "fast", "c", 100, Duration::ZERO)
        .await
        .unwrap();
    log.ack(
        "trim",
        "fast",
        &fast.iter().map(|d| d.id).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let slow = log
        .read_group("trim", "slow", "c", 5, Duration::ZERO)
        .await
        .unwrap();
    log.ack("trim", "slow", &ids[..3]).await.unwrap();
    assert_eq!(log.trim("trim").await.unwrap(), 3);
    assert_eq!(stream_len(&log, "trim").await, 7);
    assert_eq!(log.lag("trim", "slow").await.unwrap(), 7);
    assert_eq!(log.lag("trim", "fast").await.unwrap(), 0);

    // The pending ones are still reclaimable, the undelivered still readable.
    let reclaimed = log
        .reclaim("trim", "slow", "c2", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(
        reclaimed.iter().map(|d| d.id).collect::<Vec<_>>(),
        slow[3..].iter().map(|d| d.id).collect::<Vec<_>>()
    );
    let rest = log
        .read_group("trim", "slow", "c2", 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), ids[5..]);
    log.ack("trim", "slow", &ids[3..]).await.unwrap();
    assert_eq!(log.trim("trim").await.unwrap(), 7);
    assert_eq!(stream_len(&log, "trim").await, 0);

    // New appends after a full trim still flow to both groups.
    let late = log.append("trim", 1, b"late").await.unwrap();
    for group in ["fast", "slow"] {
        let got = log
            .read_group("trim", group, "c", 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![late]);
    }
}

/// With a retention, entries older than it go even when a group has not
/// acknowledged them (a dead consumer cannot fill the server), and appends
/// alone trigger that trim; younger entries stay for the group.
#[tokio::test]
async fn retention_trims_old_entries_a_stalled_group_never_acknowledged() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let retention = Duration::from_millis(400);
    let log = log_on(&server.config())
        .await
        .with_retention(Some(retention))
        .with_trim_every(1);
    // A group that reads one entry and then stalls.
    let old = log.append("kept", 1, b"old").await.unwrap();
    log.read_group("kept", "stalled", "c", 1, Duration::ZERO)
        .await
        .unwrap();
    log.append("kept", 2, b"old too").await.unwrap();
    assert_eq!(
        log.trim("kept").await.unwrap(),
        0,
        "nothing is older than the retention yet"
    );
    // Appends alone trigger the trim (in the background): keep appending
    // until the old entries have aged past the retention and gone.
    let mut young = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.max_trimmed_id("kept").await.unwrap() <= Some(old) {
        assert!(
            Instant::now() < deadline,
            "the old entries were never trimmed"
        );
        young.push(log.append("kept", 3, b"young").await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The group still gets what is left: young entries only, none lost
    // after the first it finds.
    let rest: Vec<_> = log
        .read_group("kept", "stalled", "c", 1_000, Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    let first = young
        .iter()
        .position(|id| Some(id) == rest.first())
        .expect("the stalled group finds young entries");
    assert_eq!(rest, young[first..]);

    // Without a retention the same stall keeps everything.
    let keeping = log_on(&server.config()).await.with_retention(None);
    keeping.append("kept", 1, b"old").await.unwrap();
    keeping
        .read_group("kept", "stalled", "c", 1, Duration::ZERO)
        .await
        .unwrap();
    // Age plays no part without a retention: the unacknowledged entry stays.
    keeping.append("kept", 2, b"young").await.unwrap();
    assert_eq!(keeping.trim("kept").await.unwrap(), 0);
    assert_eq!(stream_len(&keeping, "kept").await, 2);
}

#[tokio::test]
async fn acknowledgements_trigger_trimming_in_the_background() {
    let Some(redis) = RedisCluster::shared() else {
        return;
    };
    let log = log_on(&redis.config()).await.with_trim_every(50);
    for i in 0..120u64 {
        log.append("auto", i, b"x").await.unwrap();
    }
    let got = log
        .read_group("auto", "g", "c", 200, Duration::ZERO)
        .await
        .unwrap();
    log.ack(
        "auto",
        "g",
        &got.iter().map(|d| d.id).collect::<Vec<_>>()[..100],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream_len(&log, "auto").await != 20 {
        assert!(Instant::now() < deadline, "the background trim never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn start_up_failures_name_the_address() {
    let Some(server) = RedisServer::start_with(ServerOptions {
        password: Some("s3cret".into()),
        ..ServerOptions::default()
    }) else {
        return;
    };
    // Nothing listens on port 1 (tcpmux, privileged, unused). A port freed
    // a moment ago would do only by luck: another test's server may take it.
    let closed = RedisConfig {
        url: "redis://127.0.0.1:1/0".into(),
        ..server.config()
    };
    let error = RedisClient::connect(&closed).await.unwrap_err().to_string();
    assert!(error.contains("redis://127.0.0.1:1/0"), "{error}");

    let mut wrong = server.config();
    wrong.password = "nope".into();
    let error = RedisClient::connect(&wrong).await.unwrap_err().to_string();
    assert!(error.contains(&server.url()), "{error}");
    assert!(!error.contains("nope"), "the password never shows: {error}");

    let client = RedisClient::connect(&server.config()).await.unwrap();
    let pong: String = client
        .query(Request::routed_by("PING", "any"))
        .await
        .unwrap();
    assert_eq!(pong, "PONG");

    let closed_cluster = RedisConfig {
        mode: RedisMode::Cluster,
        cluster_nodes: "redis://127.0.0.1:1".into(),
        ..RedisConfig::default()
    };
    let error = RedisClient::connect(&closed_cluster)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("127.0.0.1:1"), "{error}");
}

static ECHO_KEY: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])")
});

#[tokio::test]
async fn cluster_batches_go_as_one_pipeline_per_node() {
    let Some(redis) = RedisCluster::shared() else {
        return;
    };
    let client = RedisClient::connect(&redis.config()).await.unwrap();
    let prefix = unique_prefix();
    // Our slot computation agrees with the server's.
    for key in ["tl:1", "{warble.events.v1}:dedupe:9", "la:77", "x{}y"] {
        let Reply::Integer(slot) = redis.nodes()[0]
            .command(&["CLUSTER", "KEYSLOT", key])
            .unwrap()
        else {
            panic!("CLUSTER KEYSLOT answers an integer");
        };
        assert_eq!(i64::from(key_slot(key.as_bytes())), slot, "{key}");
    }

    let keys: Vec<String> = (0..6_000).map(|i| format!("{prefix}k{i}")).collect();
    let before = client.round_trips();
    let replies = client
        .batch(
            &keys
                .iter()
                .enumerate()
                .map(|(i, key)| ECHO_KEY.call(&[key]).arg(i))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(replies.len(), keys.len());
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(redis::from_redis_value::<usize>(reply).unwrap(), i);
    }
    // 6,000 keys over three nodes: one pipeline each, plus (the script
    // being new) one load and one resend per node.
    let used = client.round_trips() - before;
    assert!(used <= 3 + 1 + 3, "{used} round trips");

    let before = client.round_trips();
    let values: Vec<String> = client
        .batch(
            &keys
                .iter()
                .map(|key| Request::new("GET", key))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|value| redis::from_redis_value(value).unwrap())
        .collect();
    assert_eq!(client.round_trips() - before, 3);
    assert_eq!(values[5_999], "5999");
}

#[tokio::test]
async fn scripts_survive_a_script_flush() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let client = RedisClient::connect(&server.config()).await.unwrap();
    let key = format!("{}echo", unique_prefix());
    let first: String = client.query(ECHO_KEY.call(&[&key]).arg("a")).await.unwrap();
    assert_eq!(first, "a");
    assert_eq!(
        server.command(&["SCRIPT", "FLUSH"]).unwrap(),
        Reply::Status("OK".into())
    );
    let second: String = client.query(ECHO_KEY.call(&[&key]).arg("b")).await.unwrap();
    assert_eq!(second, "b");
}

#[tokio::test]
async fn a_blocked_reader_does_not_stall_other_commands() {
    // Its own server: the test watches the server's count of blocked clients.
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = log_on(&server.config()).await;
    // Blocks far longer than any run of this test, so only the appends can
    // win the race below; the read is dropped unanswered at the end.
    let blocked = log.read_group("idle", "g", "c", 10, Duration::from_secs(600));
    tokio::pin!(blocked);
    // The appends start once the server holds the read (not after a sleep
    // that may or may not have let it arrive) and must all finish while it
    // still holds it: an order, not a duration, so a slow machine cannot
    // fail the test and a stalled client cannot pass it.
    let appends = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(server.command(&["INFO", "clients"]),
            Ok(Reply::Bulk(info)) if info.contains("blocked_clients:1"))
        {
            assert!(Instant::now() < deadline, "the read never blocked");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for i in 0..20u64 {
            log.append("busy", i, b"x").await.unwrap();
        }
    };
    tokio::select! {
        () = appends => {}
        read = &mut blocked => panic!("the blocked read ended first ({read:?}): the appends waited behind it"),
    }
}

/// Retries `attempt` until it succeeds: the client reconnects on its own
/// after a server restart, but the first calls may fail while it does.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, warble_mesh::event_log::EventLogError>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) if Instant::now() < deadline => {
                eprintln!("{what}: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("{what} never recovered: {error}"),
        }
    }
}

#[tokio::test]
async fn acknowledged_appends_survive_kill_9_and_reads_resume() {
    let Some(mut server) = RedisServer::start_with(ServerOptions {
        appendonly: true,
        ..ServerOptions::default()
    }) else {
        return;
    };
    let log = log_on(&server.config()).await;
    // Concurrent appenders, as several publishing services would be.
    let mut appended = BTreeSet::new();
    for round in 0..20u64 {
        let batch = futures::future::join_all(
            (0..100u64).map(|i| log.append("durable", round * 100 + i, b"event")),
        )
        .await;
        for id in batch {
            appended.insert(id.unwrap());
        }
    }
    assert_eq!(appended.len(), 2_000);
    // The consumer got half way: 800 done, 200 in hand, 1000 unread.
    let first = log
        .read_group("durable", "fanout", "c1", 1_000, Duration::ZERO)
        .await
        .unwrap();
    let done: Vec<EventId> = first[..800].iter().map(|d| d.id).collect();
    assert_eq!(log.ack("durable", "fanout", &done).await.unwrap(), 800);

    // A blocking read parks a dedicated connection in the pool; the crash kills it.
    assert!(
        log.read_group("warm-up", "g", "c", 1, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty()
    );

    server.kill();
    server.restart();

    // Every acknowledged append is there, in order.
    let audit: Vec<EventId> = eventually("reading after restart", || {
        log.read_group("durable", "audit", "a", 10_000, Duration::ZERO)
    })
    .await
    .iter()
    .map(|d| d.id)
    .collect();
    assert_eq!(audit, appended.iter().copied().collect::<Vec<_>>());
    // The group's state survived: the 200 in hand are pending (reclaimable),
    // the 1000 unread come next, the 800 done never come back.
    assert_eq!(log.lag("durable", "fanout").await.unwrap(), 1_200);
    let in_hand = log
        .reclaim("durable", "fanout", "c2", Duration::ZERO, 1_000)
        .await
        .unwrap();
    assert_eq!(
        in_hand.iter().map(|d| d.id).collect::<Vec<_>>(),
        first[800..].iter().map(|d| d.id).collect::<Vec<_>>()
    );
    let unread = log
        .read_group("durable", "fanout", "c2", 10_000, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(unread.len(), 1_000);
    assert_eq!(unread[0].id, *appended.iter().nth(1_000).unwrap());
    // Blocking reads work again at once: the dead pooled connection is replaced.
    let (woken, _) = tokio::join!(
        log.read_group("durable", "fanout", "c2", 10, Duration::from_secs(10)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.append("durable", 1, b"after").await.unwrap()
        }
    );
    assert_eq!(woken.unwrap().len(), 1);
}

#[tokio::test]
async fn a_dead_consumers_batch_is_finished_by_another() {
    let Some(redis) = RedisCluster::shared() else {
        return;
    };
    let config = redis.config();
    let prefix = unique_prefix();
    let dead = RedisEventLog::connect(&config)
        .await
        .unwrap()
        .with_key_prefix(prefix.clone());
    let alive = RedisEventLog::connect(&config)
        .await
        .unwrap()
        .with_key_prefix(prefix);
    for i in 0..60u64 {
        dead.append("work", i, &i.to_be_bytes()).await.unwrap();
    }
    // The first consumer takes a batch and dies without acknowledging it.
    let taken = dead
        .read_group("work", "fanout", "worker-1", 50, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(taken.len(), 50);
    drop(dead);

    // The survivor first gets only what nobody holds: nothing has been idle
    // for a minute. (Checked with a minute, not with the 200 ms used below:
    // a busy machine may well take 200 ms to get here.)
    let idle = Duration::from_millis(200);
    let fresh = alive
        .read_group("work", "fanout", "worker-2", 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(fresh.len(), 10);
    assert!(
        alive
            .reclaim("work", "fanout", "worker-2", Duration::from_secs(60), 100)
            .await
            .unwrap()
            .is_empty()
    );
    alive
        .ack(
            "work",
            "fanout",
            &fresh.iter().map(|d| d.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    // ...and after the idle timeout takes over the dead one's batch, in order.
    // (The sleep only makes the entries old enough: it cannot be too long.)
    tokio::time::sleep(idle + Duration::from_millis(50)).await;
    let mut reclaimed = Vec::new();
    while reclaimed.len() < 50 {
        let page = alive
            .reclaim("work", "fanout", "worker-2", idle, 20)
            .await
            .unwrap();
        assert!(!page.is_empty());
        reclaimed.extend(page);
    }
    assert_eq!(
        reclaimed.iter().map(|d| d.id).collect::<Vec<_>>(),
        taken.iter().map(|d| d.id).collect::<Vec<_>>()
    );
    assert!(reclaimed.iter().all(|d| d.delivery_count == 2));
    assert_eq!(reclaimed[49].payload, 49u64.to_be_bytes());
    alive
        .ack(
            "work",
            "fanout",
            &reclaimed.iter().map(|d| d.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(alive.lag("work", "fanout").await.unwrap(), 0);
}

/// A pinned reader outside groups holds exactly the entries after its pin:
/// trimming stops there, moving the pin on lets trimming go further,
/// unpinning releases the rest, and `max_trimmed_id` tells a reader whose
/// position is older that it missed entries.
async fn pins_hold_what_a_reader_has_not_applied(topology: Topology) {
    let Some(config) = topology.shared_config() else {
        return;
    };
    let log = log_on(&config).await;
    let mut ids = Vec::new();
    for key in 0..6u64 {
        ids.push(log.append("pinned", key, b"x").await.unwrap());
    }
    assert_eq!(log.max_trimmed_id("pinned").await.unwrap(), None);
    // A group consumer that has acknowledged everything would let it all go.
    let all = log
        .read_group("pinned", "done", "c", 100, Duration::ZERO)
        .await
        .unwrap();
    let acked: Vec<_> = all.iter().map(|delivery| delivery.id).collect();
    log.ack("pinned", "done", &acked).await.unwrap();
    log.pin("pinned", "search-0", Some(ids[1])).await.unwrap();
    log.trim("pinned").await.unwrap();
    let left = log
        .read_after("pinned", None, 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(left.first().map(|delivery| delivery.id), Some(ids[2]));
    assert_eq!(log.max_trimmed_id("pinned").await.unwrap(), Some(ids[1]));
    // Moving the pin on (and pinning again at the same place) trims further.
    log.pin("pinned", "search-0", Some(ids[3])).await.unwrap();
    log.pin("pinned", "search-0", Some(ids[3])).await.unwrap();
    log.trim("pinned").await.unwrap();
    let left = log
        .read_after("pinned", None, 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(left.first().map(|delivery| delivery.id), Some(ids[4]));
    assert_eq!(
        log.count_after("pinned", Some(ids[3]), 100).await.unwrap(),
        2
    );
    // A reader gone for good is unpinned: nothing holds the rest.
    log.unpin("pinned", "search-0").await.unwrap();
    log.unpin("pinned", "search-0").await.unwrap();
    log.trim("pinned").await.unwrap();
    let left = log
        .read_after("pinned", None, 100, Duration::ZERO)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(log.max_trimmed_id("pinned").await.unwrap(), Some(ids[5]));
}

test_each_topology!(pins_hold_what_a_reader_has_not_applied =>
    pins_hold_entries_on_a_single_node,
    pins_hold_entries_on_a_cluster);

/// A consumer group destroyed under a running consumer, or found gone by a
/// restarted one, is counted as vanished (an alarm) and created again at the
/// oldest retained entry, which is redelivered; a group created for the
/// first time, and a pin removed on purpose, are not alarms.
async fn a_vanished_group_is_an_alarm_not_a_quiet_re_create(topology: Topology) {
    let Some(config) = topology.shared_config() else {
        return;
    };
    let prefix = unique_prefix();
    let log = RedisEventLog::connect(&config)
        .await
        .unwrap()
        .with_key_prefix(prefix.clone());
    log.append(DOMAIN_EVENTS_STREAM, 1, b"one").await.unwrap();
    let first = log
        .read_group(DOMAIN_EVENTS_STREAM, "fanout", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    log.ack(DOMAIN_EVENTS_STREAM, "fanout", &[first[0].id])
        .await
        .unwrap();
    assert_eq!(log.groups_vanished(), 0, "a new group is no alarm");
    // A pin created and removed on purpose is no alarm either.
    log.pin(DOMAIN_EVENTS_STREAM, "replica-a", None)
        .await
        .unwrap();
    log.unpin(DOMAIN_EVENTS_STREAM, "replica-a").await.unwrap();

    let destroy = |log: &RedisEventLog| {
        let key = log.stream_key(DOMAIN_EVENTS_STREAM);
        Request::routed_by("XGROUP", &key)
            .arg("DESTROY")
            .arg(key)
            .arg("fanout")
    };
    log.client().query::<u64>(destroy(&log)).await.unwrap();
    // The running consumer's next read finds it gone: counted, created
    // again at the start, the retained entry delivered again.
    let again = log
        .read_group(DOMAIN_EVENTS_STREAM, "fanout", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "redelivered from the oldest retained entry");
    assert_eq!(log.groups_vanished(), 1);

    // A restarted consumer (a new log) finds it gone too.
    log.client().query::<u64>(destroy(&log)).await.unwrap();
    let restarted = RedisEventLog::connect(&config)
        .await
        .unwrap()
        .with_key_prefix(prefix);
    restarted
        .read_group(DOMAIN_EVENTS_STREAM, "fanout", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(restarted.groups_vanished(), 1);
    restarted
        .read_group(DOMAIN_EVENTS_STREAM, "notify", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        restarted.groups_vanished(),
        1,
        "another group's first use is no alarm"
    );
    assert_eq!(log.groups_vanished(), 1);
}

test_each_topology!(
    a_vanished_group_is_an_alarm_not_a_quiet_re_create =>
        a_vanished_group_is_an_alarm_on_a_single_node,
        a_vanished_group_is_an_alarm_on_a_three_master_cluster
);
