//! The Redis timeline cache against real redis-server processes: the
//! conformance suite on a single node and on a three-master cluster, plus
//! what the suite cannot see (round trips, commands per push, ids past 2^53).
//!
//! Skipped with a notice when redis-server is not installed, except under
//! `CI=true` (see `warble-testkit`).

use std::time::{Duration, Instant};

use warble_mesh::backends::RedisConfig;
use warble_mesh::redis_client::{Request, key_slot};
use warble_testkit::{
    RedisCluster, RedisServer, Reply, ServerOptions, Topology, run_suite_on, test_each_topology,
    unique_prefix,
};
use warble_timeline_cache::{
    Entry, RecentEntries, RedisTimelineCache, Removal, TIMELINE_CAPACITY, TimelineCache,
    conformance,
};

async fn cache_on(config: &RedisConfig) -> RedisTimelineCache {
    RedisTimelineCache::connect(config)
        .await
        .expect("connecting to the test Redis")
        .with_key_prefix(unique_prefix())
}

fn entry(tweet_id: u64, author_id: u64) -> Entry {
    Entry::tweet(tweet_id, author_id)
}

async fn conformance_on(topology: Topology) {
    run_suite_on(
        topology,
        "timeline cache conformance",
        |config| async move {
            conformance::run_all(|| async { ((), cache_on(&config).await) }).await;
        },
    )
    .await;
}

test_each_topology!(conformance_on => conformance_on_a_single_node, conformance_on_a_three_master_cluster);

/// `calls` of `command` in `INFO commandstats` (0 when never called).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let Reply::Bulk(stats) = server.command(&["INFO", "commandstats"]).unwrap() else {
        panic!("INFO is a bulk string");
    };
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test]
async fn a_push_to_a_follower_page_is_one_round_trip_of_few_commands() {
    // Its own server: the test reads the server's command counters.
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cache = cache_on(&server.config()).await;
    let followers: Vec<u64> = (1..=5_000).collect();
    // 100 followers have full timelines; the rest have a few entries.
    let full: Vec<Entry> = (1..=TIMELINE_CAPACITY as u64)
        .map(|id| entry(id, 9))
        .collect();
    for &user in &followers[..100] {
        cache.insert(user, &full, true).await.unwrap();
    }
    cache.push(&followers, entry(5_000, 1)).await.unwrap();

    assert_eq!(
        server.command(&["CONFIG", "RESETSTAT"]).unwrap(),
        Reply::Status("OK".into())
    );
    let round_trips = cache.client().round_trips();
    let started = Instant::now();
    cache.push(&followers, entry(5_001, 1)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(cache.client().round_trips() - round_trips, 1);
    let commands = calls(&server, "evalsha");
    assert!(
        (1..=5_000 / 64).contains(&commands),
        "many followers per command, not one each: {commands} commands"
    );
    assert_eq!(
        calls(&server, "zrevrangebylex"),
        5_000,
        "each timeline checked"
    );
    assert_eq!(calls(&server, "zadd"), 5_000);
    assert_eq!(
        calls(&server, "zremrangebyrank"),
        100,
        "only full timelines are trimmed"
    );
    eprintln!("push to 5,000 timelines: {elapsed:?} in {commands} commands");

    let page = cache.read(1, None, 3).await.unwrap().unwrap();
    assert_eq!(page.len, TIMELINE_CAPACITY);
    assert_eq!(
        page.entries,
        vec![entry(5_001, 1), entry(5_000, 1), entry(800, 9)]
    );

    // Reading 5,000 last-active marks is one round trip too.
    for &user in &followers[..10] {
        cache
            .mark_active(user, 1_700_000_000_000 + user)
            .await
            .unwrap();
    }
    let round_trips = cache.client().round_trips();
    let marks = cache.last_active(&followers).await.unwrap();
    assert_eq!(cache.client().round_trips() - round_trips, 1);
    assert_eq!(marks[9], Some(1_700_000_000_010));
    assert_eq!(marks[10], None);
}

#[tokio::test]
async fn a_cluster_push_is_one_pipeline_per_node() {
    let Some(redis) = RedisCluster::shared() else {
        return;
    };
    let cache = cache_on(&redis.config()).await;
    let followers: Vec<u64> = (1..=3_000).collect();
    // The first push also loads the script on every node.
    cache.push(&followers, entry(1, 1)).await.unwrap();
    let round_trips = cache.client().round_trips();
    cache.push(&followers, entry(2, 1)).await.unwrap();
    assert_eq!(cache.client().round_trips() - round_trips, 3);
    cache.insert(2_999, &[], true).await.unwrap();
    assert_eq!(
        cache.read(2_999, None, 10).await.unwrap().unwrap().entries,
        vec![entry(2, 1), entry(1, 1)]
    );
}

#[tokio::test]
async fn a_cluster_push_carries_the_timelines_of_one_slot_per_command() {
    // Its own cluster: the test reads the nodes' command counters.
    let Some(redis) = RedisCluster::start(3) else {
        return;
    };
    let prefix = unique_prefix();
    let cache = RedisTimelineCache::connect(&redis.config())
        .await
        .unwrap()
        .with_key_prefix(prefix.clone());
    let slot_of = |user: u64| key_slot(format!("{prefix}tl:{user}").as_bytes());
    // 20 users whose timelines share user 1's slot, among 500 others.
    let crowded: Vec<u64> = (1..)
        .filter(|&user| slot_of(user) == slot_of(1))
        .take(20)
        .collect();
    let mut users: Vec<u64> = (1_000_000..1_000_500).collect();
    for (i, &user) in crowded.iter().enumerate() {
        users.insert(i * 25, user);
    }
    let full: Vec<Entry> = (1..=TIMELINE_CAPACITY as u64)
        .map(|id| entry(id, 9))
        .collect();
    for &user in &users {
        let initial = if crowded[..5].contains(&user) {
            &full[..]
        } else {
            &[]
        };
        cache.insert(user, initial, true).await.unwrap();
    }
    // The first push also loads the script on every node.
    cache.push(&users, entry(5_000, 1)).await.unwrap();

    let total =
        |command: &str| -> u64 { redis.nodes().iter().map(|node| calls(node, command)).sum() };
    let (evalsha, zadd, trimmed) = (total("evalsha"), total("zadd"), total("zremrangebyrank"));
    cache.push(&users, entry(5_001, 1)).await.unwrap();
    let slots: std::collections::HashSet<u16> = users.iter().map(|&user| slot_of(user)).collect();
    assert_eq!(
        total("evalsha") - evalsha,
        slots.len() as u64,
        "one command per slot"
    );
    assert!(slots.len() <= users.len() - 19);
    assert_eq!(total("zadd") - zadd, users.len() as u64);
    assert_eq!(
        total("zremrangebyrank") - trimmed,
        5,
        "only full timelines are trimmed"
    );
    for &user in &crowded {
        let page = cache.read(user, None, 3).await.unwrap().unwrap();
        if crowded[..5].contains(&user) {
            assert_eq!(page.len, TIMELINE_CAPACITY, "user {user}");
            assert_eq!(
                page.entries,
                vec![entry(5_001, 1), entry(5_000, 1), entry(800, 9)]
            );
        } else {
            assert_eq!(page.len, 2, "user {user}");
        }
    }
}

async fn ids_beyond_two_to_the_53_keep_their_exact_order(topology: Topology) {
    let Some(config) = topology.shared_config() else {
        return;
    };
    let cache = cache_on(&config).await;
    // Neighbouring ids that one f64 cannot tell apart.
    let top = (1u64 << 63) - 1;
    let ids: Vec<u64> = (0..5)
        .map(|i| top - i)
        .chain([(1 << 53) + 1, 1 << 53])
        .collect();
    cache.insert(1, &[], true).await.unwrap();
    for (i, &id) in ids.iter().enumerate().rev() {
        cache
            .push(&[1], entry(id, u64::MAX - i as u64))
            .await
            .unwrap();
    }
    let all = cache.read(1, None, 100).await.unwrap().unwrap();
    let expected: Vec<Entry> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| entry(id, u64::MAX - i as u64))
        .collect();
    assert_eq!(all.entries, expected);
    let page = cache.read(1, Some(top - 1), 2).await.unwrap().unwrap();
    assert_eq!(page.entries, expected[2..4]);
    assert!(page.has_more);
    cache.remove(&[1], top - 2).await.unwrap();
    cache
        .remove_user(1, u64::MAX, Removal::ComingFrom)
        .await
        .unwrap();
    let ids_left: Vec<u64> = cache
        .read(1, None, 100)
        .await
        .unwrap()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.tweet_id)
        .collect();
    assert_eq!(
        ids_left,
        vec![top - 1, top - 3, top - 4, (1 << 53) + 1, 1 << 53]
    );

    cache
        .celebrity_fill(7, &[entry(top, 7), entry(top - 1, 7), entry(u64::MAX, 7)])
        .await
        .unwrap();
    assert_eq!(
        cache
            .celebrity_recent(&[7], Some(u64::MAX), 10)
            .await
            .unwrap(),
        vec![Some(RecentEntries {
            entries: vec![entry(top, 7), entry(top - 1, 7)],
            complete: true,
        })]
    );
    assert_eq!(
        cache.celebrity_recent(&[7], None, 1).await.unwrap(),
        vec![Some(RecentEntries {
            entries: vec![entry(u64::MAX, 7)],
            complete: true,
        })]
    );
}

test_each_topology!(ids_beyond_two_to_the_53_keep_their_exact_order =>
    snowflake_ids_beyond_two_to_the_53_stay_exact_on_a_single_node,
    snowflake_ids_beyond_two_to_the_53_stay_exact_on_a_cluster);

#[tokio::test]
async fn an_evicted_timeline_takes_its_built_flag_with_it() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = unique_prefix();
    let cache = RedisTimelineCache::connect(&server.config())
        .await
        .unwrap()
        .with_key_prefix(prefix.clone());
    cache.insert(4, &[entry(10, 1)], true).await.unwrap();
    // What a maxmemory eviction or an expiry does: the key goes, whole.
    assert_eq!(
        server.command(&["DEL", &format!("{prefix}tl:4")]).unwrap(),
        Reply::Integer(1)
    );
    assert_eq!(
        cache.read(4, None, 10).await.unwrap(),
        None,
        "a miss, not an empty hit"
    );
}

#[tokio::test]
async fn pushes_land_exactly_once_across_a_reshard() {
    // Its own cluster: the test moves slots. Its rare failures in
    // full-suite runs (never reproduced alone or under CPU load) most likely
    // came from outside it, now closed in testkit: a node that lost the race
    // for its port passed for another test's server (each node must now
    // answer with its own pid), `redis-cli --cluster` had no time limit, and
    // 2 s client timeouts were short on a busy machine while the client also
    // retries MOVED pipelines (test configs now wait 10 s).
    let Some(redis) = RedisCluster::start(3) else {
        return;
    };
    let cache = cache_on(&redis.config()).await;
    let users: Vec<u64> = (1..=3_000).collect();
    for chunk in users.chunks(500) {
        for built in
            futures::future::join_all(chunk.iter().map(|&user| cache.insert(user, &[], true))).await
        {
            built.unwrap();
        }
    }
    cache.push(&users, entry(1, 1)).await.unwrap();
    // Slots (and their timelines) move between nodes; the client's slot
    // maps are now stale, so its first per-node pipelines meet MOVED.
    redis.move_slots(0, 1, 600);
    redis.move_slots(2, 0, 400);
    let round_trips = cache.client().round_trips();
    let started = Instant::now();
    cache.push(&users, entry(2, 1)).await.unwrap();
    eprintln!(
        "push after a reshard: {} round trips, {:?}",
        cache.client().round_trips() - round_trips,
        started.elapsed()
    );
    assert!(
        cache.client().round_trips() - round_trips > 3,
        "stale pipelines were regrouped and sent again"
    );
    cache.remove(&users, 1).await.unwrap();
    cache.push(&users, entry(3, 1)).await.unwrap();
    // With the map refreshed, a push is one pipeline per node again.
    let round_trips = cache.client().round_trips();
    cache.push(&users, entry(4, 1)).await.unwrap();
    assert_eq!(cache.client().round_trips() - round_trips, 3);
    for &user in &users {
        assert_eq!(
            cache.read(user, None, 10).await.unwrap().unwrap().entries,
            vec![entry(4, 1), entry(3, 1), entry(2, 1)],
            "user {user}"
        );
    }
}

#[tokio::test]
async fn a_fan_out_cut_by_a_redis_crash_completes_exactly_once() {
    let Some(mut server) = RedisServer::start_with(ServerOptions {
        appendonly: true,
        ..ServerOptions::default()
    }) else {
        return;
    };
    let prefix = unique_prefix();
    let cache = RedisTimelineCache::connect(&server.config())
        .await
        .unwrap()
        .with_key_prefix(prefix.clone());
    let followers: Vec<u64> = (1..=10_000).collect();
    for chunk in followers.chunks(1_000) {
        for built in
            futures::future::join_all(chunk.iter().map(|&user| cache.insert(user, &[], true))).await
        {
            built.unwrap();
        }
    }
    // Redis dies mid-fan-out and comes back on its append-only file. The
    // fan-out itself says when, not a timer: the server is killed as the
    // third tweet's pushes start, so on a fast or a slow machine alike two
    // tweets are fully out before the crash and the rest meet it.
    let (crash_now, crash_requested) = std::sync::mpsc::channel::<()>();
    let crash = std::thread::spawn(move || {
        if crash_requested.recv().is_ok() {
            server.kill();
            // An outage the pushes run into (its length does not matter).
            std::thread::sleep(Duration::from_millis(300));
            server.restart();
        }
        server
    });
    // Fan out tweet after tweet, each page retried until it succeeds, as
    // fanout-svc's consumer retries an event, until the crash is over. (The
    // connection manager usually rides out the restart itself, so a page
    // rarely fails; what matters is what the timelines hold afterwards.)
    // Retries stop at a deadline, so a server that never returns fails the
    // test instead of hanging it.
    const CRASH_AT_TWEET: u64 = 3;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut tweets, mut failed_pages) = (0u64, 0u64);
    while !crash.is_finished() || tweets < 5 {
        tweets += 1;
        if tweets == CRASH_AT_TWEET {
            crash_now
                .send(())
                .expect("the crash thread waits for its cue");
        }
        for page in followers.chunks(5_000) {
            while let Err(error) = cache.push(page, entry(tweets, 1)).await {
                assert!(
                    Instant::now() < deadline,
                    "Redis never came back after the crash: {error}"
                );
                failed_pages += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let server = crash.join().unwrap();
    assert!(tweets > CRASH_AT_TWEET, "tweets went out after the restart");
    // Every timeline holds every tweet exactly once: only tweets 1..=n were
    // pushed, a tweet id is never added twice, so n members (plus the built
    // sentinel) means each is there once.
    let counts = cache
        .client()
        .batch(
            &followers
                .iter()
                .map(|user| Request::new("ZCARD", format!("{prefix}tl:{user}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    for (user, count) in followers.iter().zip(counts) {
        assert_eq!(
            redis::from_redis_value::<u64>(count).unwrap(),
            tweets + 1,
            "user {user}"
        );
    }
    let page = cache.read(10_000, None, 3).await.unwrap().unwrap();
    assert_eq!(page.len as u64, tweets);
    assert_eq!(page.entries[0], entry(tweets, 1));
    eprintln!(
        "fan-out of {tweets} tweets to 10,000 timelines survived a kill -9 at tweet {CRASH_AT_TWEET} ({failed_pages} pages retried)"
    );
    drop(server);
}

/// With an idle expiry, a built timeline lives that long after its last
/// build or read (reads renew it; pushes do not), a user who stops reading
/// loses it (the next read is a miss, which rebuilds), and activity marks
/// older than the window leave their bucket when it gets a new mark.
#[tokio::test]
async fn idle_users_timelines_and_marks_expire() {
    let Some(server) = RedisServer::shared() else {
        return;
    };
    let prefix = unique_prefix();
    let window = Duration::from_secs(3_600);
    let cache = RedisTimelineCache::connect(&server.config())
        .await
        .unwrap()
        .with_key_prefix(prefix.clone())
        .with_idle_expiry(window);
    let ttl = |user: u64| match server
        .command(&["PTTL", &format!("{prefix}tl:{user}")])
        .unwrap()
    {
        Reply::Integer(ms) => ms,
        other => panic!("PTTL answered {other:?}"),
    };
    cache.insert(4, &[entry(10, 1)], true).await.unwrap();
    let built = ttl(4);
    assert!(
        built > 3_590_000 && built <= 3_600_000,
        "a build starts the timeline's life: {built} ms"
    );
    // A push does not renew it; a read does.
    server
        .command(&["PEXPIRE", &format!("{prefix}tl:4"), "60000"])
        .unwrap();
    cache.push(&[4], entry(11, 1)).await.unwrap();
    assert!(ttl(4) <= 60_000, "a push leaves the lifetime alone");
    assert!(cache.read(4, None, 10).await.unwrap().is_some());
    assert!(ttl(4) > 3_590_000, "a read renews it");
    // Its time up, the timeline is gone: a miss, not an empty hit.
    server
        .command(&["PEXPIRE", &format!("{prefix}tl:4"), "1"])
        .unwrap();
    // (Watched from outside: a read before the key is gone would renew it.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .command(&["EXISTS", &format!("{prefix}tl:4")])
        .unwrap()
        != Reply::Integer(0)
    {
        assert!(Instant::now() < deadline, "the timeline never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cache.read(4, None, 10).await.unwrap(), None);

    // Marks: one from two hours ago leaves when its bucket gets a new one,
    // and one written that old is pruned as it is written.
    let now = warble_mesh::time::now_ms();
    let two_hours_ago = now - 2 * 3_600_000;
    let old = 7;
    let bucket = cache.last_active_key(old);
    server
        .command(&[
            "ZADD",
            &bucket,
            &two_hours_ago.to_string(),
            &old.to_string(),
        ])
        .unwrap();
    assert_eq!(
        cache.last_active(&[old]).await.unwrap(),
        vec![Some(two_hours_ago)]
    );
    let neighbour = (8..1_000_000)
        .find(|&user| cache.last_active_key(user) == bucket)
        .expect("another user in the bucket");
    cache.mark_active(neighbour, now).await.unwrap();
    assert_eq!(
        cache.last_active(&[old, neighbour]).await.unwrap(),
        vec![None, Some(now)]
    );
    cache.mark_active(old, two_hours_ago).await.unwrap();
    assert_eq!(cache.last_active(&[old]).await.unwrap(), vec![None]);
}
