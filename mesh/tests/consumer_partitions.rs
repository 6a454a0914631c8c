//! Consumer replicas sharing one group on a real Redis: the group's keys are
//! split into partitions, each consumed by one replica at a time, so every
//! key's events are applied once and in stream order while replicas join
//! and leave.
//!
//! Skipped with a notice when redis-server is not installed, except under
//! `CI=true` (see `warble-testkit`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use warble_mesh::consumer::{
    self, ConsumerConfig, ConsumerCounters, ConsumerSettings, EventHandler,
};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog, RedisEventLog};
use warble_testkit::{RedisServer, unique_prefix};

/// One application: which replica, which key, the key's sequence number.
type Applied = Arc<Mutex<Vec<(&'static str, u64, u64)>>>;

/// Records what it applies, taking a little while (up to 3 ms, varying) so
/// two replicas applying one key's events at once would interleave them.
struct Recorder {
    replica: &'static str,
    applied: Applied,
}

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

#[async_trait]
impl EventHandler for Recorder {
    type Error = Never;

    async fn apply_encoded(&self, payload: &[u8]) -> Result<(), Never> {
        let key = u64::from_be_bytes(payload[..8].try_into().unwrap());
        let seq = u64::from_be_bytes(payload[8..16].try_into().unwrap());
        tokio::time::sleep(Duration::from_micros((key * 7 + seq * 13) % 3_000)).await;
        self.applied.lock().unwrap().push((self.replica, key, seq));
        Ok(())
    }
}

struct Replica {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_replica(log: Arc<dyn EventLog>, name: &'static str, applied: &Applied) -> Replica {
    let mut config = ConsumerConfig::for_group("orders");
    config.name = name.into();
    config.partitions = PARTITIONS;
    config.lease_secs = 2;
    config.workers = 4;
    config.read_batch = 16;
    let settings = ConsumerSettings::from(&config);
    let (stop, stopped) = watch::channel(false);
    let handler = Arc::new(Recorder {
        replica: name,
        applied: applied.clone(),
    });
    let task = tokio::spawn(consumer::run(
        log,
        handler,
        Arc::new(ConsumerCounters::default()),
        settings,
        stopped,
    ));
    Replica { stop, task }
}

const KEYS: u64 = 16;
/// The group's partitions: more than replicas, so each holds several.
const PARTITIONS: u32 = 4;

async fn append_round(log: &dyn EventLog, seq: u64) {
    for key in 0..KEYS {
        let mut payload = key.to_be_bytes().to_vec();
        payload.extend_from_slice(&seq.to_be_bytes());
        log.append(DOMAIN_EVENTS_STREAM, key, &payload)
            .await
            .unwrap();
    }
}

/// Waits until `count` applications are recorded and the group has
/// acknowledged everything (so no entry is left to be applied again).
async fn wait_for_applied(log: &dyn EventLog, applied: &Applied, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while applied.lock().unwrap().len() < count
        || consumer::backlog(log, "orders", PARTITIONS)
            .await
            .unwrap()
            .0
            > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} events applied",
            applied.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every key's events, in the order they were applied.
fn by_key(applied: &Applied) -> BTreeMap<u64, Vec<u64>> {
    let mut keys: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (_, key, seq) in applied.lock().unwrap().iter() {
        keys.entry(*key).or_default().push(*seq);
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_apply_each_keys_events_once_and_in_order_as_they_join_and_leave() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix();
    let connect = || async {
        let log = RedisEventLog::connect(&redis.config())
            .await
            .unwrap()
            .with_key_prefix(prefix.clone());
        Arc::new(log) as Arc<dyn EventLog>
    };
    let (log_a, log_b, producer) = (connect().await, connect().await, connect().await);
    let applied: Applied = Arc::default();

    // One replica alone, then a second joins mid-stream: the partitions are
    // handed over while events keep coming.
    let a = start_replica(log_a, "replica-a", &applied).await;
    for seq in 0..20 {
        append_round(producer.as_ref(), seq).await;
    }
    let b = start_replica(log_b, "replica-b", &applied).await;
    // Events keep coming while partitions are handed over, until the new
    // replica applies some; then both share the rest.
    let mut next = 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !applied
        .lock()
        .unwrap()
        .iter()
        .any(|(by, _, _)| *by == "replica-b")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new replica never got a partition"
        );
        append_round(producer.as_ref(), next).await;
        next += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let shared_from = applied.lock().unwrap().len();
    for _ in 0..20 {
        append_round(producer.as_ref(), next).await;
        next += 1;
    }
    wait_for_applied(producer.as_ref(), &applied, (next * KEYS) as usize).await;
    for (key, seqs) in by_key(&applied) {
        assert_eq!(
            seqs,
            (0..next).collect::<Vec<_>>(),
            "key {key}: applied once each, in order"
        );
    }
    let shared: Vec<_> = applied.lock().unwrap()[shared_from..].to_vec();
    for replica in ["replica-a", "replica-b"] {
        assert!(
            shared.iter().any(|(by, _, _)| *by == replica),
            "{replica} shares the work once both run"
        );
    }

    // The first replica leaves: the second takes every partition, starting
    // with whatever the first left pending.
    a.stop.send(true).unwrap();
    a.task.await.unwrap();
    let before = applied.lock().unwrap().len();
    let end = next + 20;
    for seq in next..end {
        append_round(producer.as_ref(), seq).await;
    }
    wait_for_applied(producer.as_ref(), &applied, (end * KEYS) as usize).await;
    for (key, seqs) in by_key(&applied) {
        assert_eq!(
            seqs,
            (0..end).collect::<Vec<_>>(),
            "key {key}: applied once each, in order"
        );
    }
    assert!(
        applied.lock().unwrap()[before..]
            .iter()
            .all(|(by, _, _)| *by == "replica-b"),
        "the remaining replica applies everything after the other left"
    );
    b.stop.send(true).unwrap();
    b.task.await.unwrap();
}
