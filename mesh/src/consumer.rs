//! Consuming the domain event log in a consumer group (fanout-svc,
//! notify-svc, media-svc): at-least-once delivery, per-key order across
//! replicas, retries with backoff, dead letters, and taking over a dead
//! replica's events.
//!
//! **Partitions.** A consumer group reading one stream hands entries to
//! whichever replica asks next, so two replicas could apply one key's events
//! out of order (a follow's backfill after its unfollow). Instead the keys
//! are split into `consumer.partitions` partitions; each is a consumer group
//! of its own (`<group>.p<i>`, or `<group>` with one partition) that reads
//! every entry, applies those of its keys and acknowledges the rest unapplied.
//! A replica consumes a partition only while it holds the partition's lease
//! in the event log. Replicas heartbeat their membership; with the live
//! members sorted, the one at position i takes the partitions p with
//! p mod members = i, so the work spreads as replicas come and go. A
//! replica hands a partition over by halting it, renewing its lease until
//! the events in flight are done, then releasing it; one that cannot renew
//! stops before the lease can lapse. A new holder first takes over
//! everything left pending in the partition's group, in order, then reads
//! on, so one key's events are applied in stream order by one replica at a
//! time.
//!
//! Inside a partition one dispatcher reads batches and routes each entry
//! to a worker by its key, so one author's events are applied in order while
//! different authors proceed in parallel. A worker retries a failing event
//! with exponential backoff; after `max_attempts` it writes a `DeadLetter`
//! record to [`DEAD_LETTER_STREAM`] and acknowledges the entry, so a poison
//! event never blocks its key forever and is never silently dropped.
//! Acknowledgements are batched by one acker task per partition.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use warble_proto::events::v1::DeadLetter;

use crate::config::ConfigError;
use crate::event_log::{DOMAIN_EVENTS_STREAM, Delivery, EventId, EventLog};
use crate::status::ErrorChain;

/// What a consumer does with each entry: applies it, idempotently (an entry
/// can be delivered more than once).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Why applying failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Most entries a worker hands to [`EventHandler::apply_batch`] at once;
    /// 1 (the default) applies them one by one.
    const MAX_BATCH: usize = 1;

    /// Decodes and applies one entry's payload.
    async fn apply_encoded(&self, payload: &[u8]) -> Result<(), Self::Error>;

    /// Applies several entries of one worker, in order (a handler that can
    /// commit them together overrides this and raises
    /// [`EventHandler::MAX_BATCH`]). When it fails, the worker applies the
    /// same entries one by one with [`EventHandler::apply_encoded`], with
    /// retries and dead letters as usual, so a batch may be applied partly
    /// twice: handlers are idempotent anyway.
    async fn apply_batch(&self, payloads: &[&[u8]]) -> Result<(), Self::Error> {
        for payload in payloads {
            self.apply_encoded(payload).await?;
        }
        Ok(())
    }
}

/// A consumer's counters since start.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// Events applied and acknowledged.
    pub events_processed: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Events moved to the dead-letter stream.
    pub dead_letters: AtomicU64,
    /// Events that failed at least once.
    pub events_failed: AtomicU64,
    /// Times the consumer group was found gone and created again (see
    /// [`EventLog::groups_vanished`]): an alarm.
    pub groups_vanished: AtomicU64,
}

impl ConsumerCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Where events that failed every attempt are kept.
pub const DEAD_LETTER_STREAM: &str = "warble.events.v1.dead-letter";

/// How long one read waits for new entries before checking for shutdown and reclaim.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Entries queued per worker before the dispatcher waits (backpressure).
const WORKER_QUEUE: usize = 1_024;
/// Most pending entries a new holder of a partition takes over at once: far
/// more than a holder has unacknowledged (its workers' queues and a read).
const TAKEOVER_MAX: usize = 100_000;

/// `consumer.*`: how the event log is consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    /// Consumer group name on the event stream (all replicas of one service share it).
    pub group: String,
    /// This process's consumer name; empty derives one from the host name and process id.
    pub name: String,
    /// Worker tasks applying events in parallel (events with the same key stay in order).
    pub workers: u32,
    /// Events read from the log per batch.
    pub read_batch: u32,
    /// Attempts per event before it is moved to the dead-letter stream.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles per attempt.
    pub retry_backoff_ms: u64,
    /// Cap on the retry delay, in milliseconds.
    pub max_retry_backoff_ms: u64,
    /// Partitions of the group's events by key: each is consumed by one
    /// replica at a time (by lease), so one key's events are applied in
    /// order however many replicas run. At most this many replicas share
    /// the work; each partition reads every event and skips the others'.
    pub partitions: u32,
    /// Seconds a replica's hold on its partitions lasts without renewal
    /// (renewed every third of it): how long a dead replica's partitions
    /// wait for another to take them over.
    pub lease_secs: u64,
    /// Days a dead letter is kept before it is trimmed (each new dead
    /// letter trims the older ones): time for an operator to look at it
    /// and replay it with `warble dlq`.
    pub dead_letter_retention_days: u32,
}

impl ConsumerConfig {
    /// The defaults, consuming in `group`.
    pub fn for_group(group: &str) -> Self {
        Self {
            group: group.into(),
            name: String::new(),
            workers: 4,
            read_batch: 256,
            max_attempts: 5,
            retry_backoff_ms: 100,
            max_retry_backoff_ms: 5_000,
            partitions: 1,
            lease_secs: 15,
            dead_letter_retention_days: 14,
        }
    }
}

impl ConsumerConfig {
    /// Checks every key (named `consumer.*` in errors).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group.trim().is_empty() {
            return Err(ConfigError::invalid("consumer.group", "must not be empty"));
        }
        if !(1..=256).contains(&self.workers) {
            return Err(ConfigError::invalid(
                "consumer.workers",
                "must be between 1 and 256",
            ));
        }
        if !(1..=10_000).contains(&self.read_batch) {
            return Err(ConfigError::invalid(
                "consumer.read_batch",
                "must be between 1 and 10000",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "consumer.max_attempts",
                "must be at least 1",
            ));
        }
        if self.max_retry_backoff_ms < self.retry_backoff_ms {
            return Err(ConfigError::invalid(
                "consumer.max_retry_backoff_ms",
                "must be at least consumer.retry_backoff_ms",
            ));
        }
        if !(1..=256).contains(&self.partitions) {
            return Err(ConfigError::invalid(
                "consumer.partitions",
                "must be between 1 and 256",
            ));
        }
        if !(2..=600).contains(&self.lease_secs) {
            return Err(ConfigError::invalid(
                "consumer.lease_secs",
                "must be between 2 and 600",
            ));
        }
        if !(1..=3650).contains(&self.dead_letter_retention_days) {
            return Err(ConfigError::invalid(
                "consumer.dead_letter_retention_days",
                "must be between 1 and 3650",
            ));
        }
        Ok(())
    }

    /// The consumer name to register under.
    pub fn consumer_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| self.group.clone());
        format!("{host}-{}", std::process::id())
    }
}

/// Consumer settings resolved from config.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer group.
    pub group: String,
    /// This consumer's name.
    pub consumer: String,
    /// Worker count.
    pub workers: usize,
    /// Entries per read.
    pub read_batch: usize,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_backoff: Duration,
    /// Longest retry delay.
    pub max_retry_backoff: Duration,
    /// Partitions of the group.
    pub partitions: u32,
    /// How long a partition lease lasts without renewal.
    pub lease: Duration,
    /// How long dead letters are kept.
    pub dead_letter_retention: Duration,
}

impl From<&ConsumerConfig> for ConsumerSettings {
    fn from(config: &ConsumerConfig) -> Self {
        Self {
            group: config.group.clone(),
            consumer: config.consumer_name(),
            workers: config.workers as usize,
            read_batch: config.read_batch as usize,
            max_attempts: config.max_attempts,
            retry_backoff: Duration::from_millis(config.retry_backoff_ms),
            max_retry_backoff: Duration::from_millis(config.max_retry_backoff_ms),
            partitions: config.partitions,
            lease: Duration::from_secs(config.lease_secs),
            dead_letter_retention: Duration::from_secs(
                u64::from(config.dead_letter_retention_days) * 86_400,
            ),
        }
    }
}

/// What a consumer needs: the log, what applies each entry, the counters
/// it keeps and its settings.
pub struct Consumer<H> {
    /// The log read in the group.
    pub log: Arc<dyn EventLog>,
    /// Applies each entry.
    pub handler: Arc<H>,
    /// Counted as entries are applied.
    pub counters: Arc<ConsumerCounters>,
    /// Group, name, workers, batches, retries.
    pub settings: ConsumerSettings,
}

/// Serves `grpc` on `listener` while `consumer` runs, until `shutdown`
/// resolves: then the consumer stops reading and finishes its in-flight
/// events while the server drains, each within `drain_timeout`. The serve
/// loop of every service that consumes the log (fanout-svc, notify-svc).
pub async fn serve_while_consuming<H: EventHandler>(
    grpc: crate::grpc::GrpcServer,
    listener: tokio::net::TcpListener,
    shutdown: crate::scaffold::Shutdown,
    drain_timeout: Duration,
    consumer: Consumer<H>,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let group = consumer.settings.group.clone();
    let consuming = tokio::spawn(run(
        consumer.log,
        consumer.handler,
        consumer.counters,
        consumer.settings,
        stopped,
    ));
    let served = grpc
        .serve(listener, async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    if tokio::time::timeout(drain_timeout, consuming)
        .await
        .is_err()
    {
        tracing::warn!(
            group,
            "the consumer did not finish within the drain deadline; unacknowledged events will be redelivered"
        );
    }
    Ok(served?)
}

/// Runs the consumer until `stop` turns true: takes this replica's share of
/// the group's partitions (see the module docs) and consumes each it holds
/// the lease of, until it must let one go. On stop, in-flight events
/// finish, the leases are released and the replica leaves the group, so
/// the others take its partitions at once.
pub async fn run<H: EventHandler>(
    log: Arc<dyn EventLog>,
    engine: Arc<H>,
    stats: Arc<ConsumerCounters>,
    settings: ConsumerSettings,
    mut stop: watch::Receiver<bool>,
) {
    register_metrics(&settings.group, &stats);
    let backlog = tokio::spawn(report_backlog(log.clone(), settings.clone(), stop.clone()));
    let mut partitions = Partitions::default();
    while !*stop.borrow() {
        partitions
            .coordinate(&log, &engine, &stats, &settings)
            .await;
        tokio::select! {
            _ = tokio::time::sleep(settings.lease / 3) => {}
            _ = stop.changed() => {}
        }
    }
    partitions.stop_all(&log, &settings).await;
    if let Err(error) = log
        .heartbeat(
            DOMAIN_EVENTS_STREAM,
            &settings.group,
            &settings.consumer,
            Duration::ZERO,
        )
        .await
    {
        tracing::warn!(error = %ErrorChain(&error), "cannot leave the consumer group; the others take over when its membership lapses");
    }
    let _ = backlog.await;
}

/// The consumer group holding partition `index` of `count`: the group
/// itself when there is one partition.
pub fn partition_group(group: &str, index: u32, count: u32) -> String {
    if count <= 1 {
        group.to_owned()
    } else {
        format!("{group}.p{index}")
    }
}

/// The partition of `key` among `count` (hashed apart from the worker
/// choice, so a partition's keys still spread over its workers).
pub fn partition_of(key: u64, count: u32) -> u32 {
    let mixed = key.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_right(29);
    (mixed % u64::from(count.max(1))) as u32
}

/// The lease naming who consumes partition `index` of `group`.
fn lease_name(group: &str, index: u32) -> String {
    format!("{group}.partition.{index}")
}

/// The partitions `me` should own: with the live members sorted, the
/// member at position i owns every partition p with p mod members = i.
fn assigned_partitions(members: &[String], me: &str, count: u32) -> Vec<u32> {
    let Some(position) = members.iter().position(|member| member == me) else {
        return Vec::new();
    };
    (0..count)
        .filter(|partition| *partition as usize % members.len() == position)
        .collect()
}

/// The unacknowledged events of the group (the most of any partition's)
/// and the oldest of them: how far behind the consumers are.
pub async fn backlog(
    log: &dyn EventLog,
    group: &str,
    partitions: u32,
) -> Result<(u64, Option<EventId>), crate::event_log::EventLogError> {
    let mut most = 0;
    let mut oldest: Option<EventId> = None;
    for index in 0..partitions.max(1) {
        let group = partition_group(group, index, partitions);
        most = most.max(log.lag(DOMAIN_EVENTS_STREAM, &group).await?);
        if let Some(id) = log.oldest_unacked(DOMAIN_EVENTS_STREAM, &group).await? {
            oldest = Some(oldest.map_or(id, |known| known.min(id)));
        }
    }
    Ok((most, oldest))
}

/// A partition this replica consumes.
struct Owned {
    halt: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    renewed: tokio::time::Instant,
}

/// The partitions this replica consumes, and those it is letting go of.
#[derive(Default)]
struct Partitions {
    owned: std::collections::BTreeMap<u32, Owned>,
    /// Halted, finishing their in-flight events; `true` while the lease is
    /// still ours (renewed until they finish, then released).
    stopping: Vec<(u32, Owned, bool)>,
}

impl Partitions {
    /// One round: heartbeat, let go of partitions no longer ours, renew
    /// the leases of the rest, take the free ones assigned to us.
    async fn coordinate<H: EventHandler>(
        &mut self,
        log: &Arc<dyn EventLog>,
        engine: &Arc<H>,
        stats: &Arc<ConsumerCounters>,
        settings: &ConsumerSettings,
    ) {
        let group = &settings.group;
        let me = &settings.consumer;
        self.release_stopped(log, settings).await;
        // A partition task that ended by itself (a worker gone) is let go
        // and taken again below.
        let ended: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, owned)| owned.task.is_finished())
            .map(|(index, _)| *index)
            .collect();
        for index in ended {
            if let Some(owned) = self.owned.remove(&index) {
                self.stopping.push((index, owned, true));
            }
        }
        let assigned = match log
            .heartbeat(DOMAIN_EVENTS_STREAM, group, me, settings.lease)
            .await
        {
            Ok(members) => Some(assigned_partitions(&members, me, settings.partitions)),
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "consumer heartbeat failed; keeping the partitions held");
                None
            }
        };
        for (index, owned, ours) in &mut self.stopping {
            if *ours {
                let name = lease_name(group, *index);
                *ours = matches!(
                    log.lease(DOMAIN_EVENTS_STREAM, &name, me, settings.lease)
                        .await,
                    Ok(true)
                );
                if *ours {
                    owned.renewed = tokio::time::Instant::now();
                }
            }
        }
        for index in 0..settings.partitions {
            let name = lease_name(group, index);
            let wanted = assigned
                .as_ref()
                .map_or(self.owned.contains_key(&index), |assigned| {
                    assigned.contains(&index)
                });
            if let Some(owned) = self.owned.get_mut(&index) {
                if !wanted {
                    tracing::info!(
                        partition = index,
                        "handing a partition over to another replica"
                    );
                    self.halt(index, true);
                    continue;
                }
                match log
                    .lease(DOMAIN_EVENTS_STREAM, &name, me, settings.lease)
                    .await
                {
                    Ok(true) => owned.renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::warn!(partition = index, "lost a partition's lease; stopping it");
                        self.halt(index, false);
                    }
                    Err(error) => {
                        // Stop before the lease can lapse, so two replicas
                        // never apply one partition's events at once.
                        if owned.renewed.elapsed() > settings.lease * 2 / 3 {
                            tracing::warn!(partition = index, error = %ErrorChain(&error), "cannot renew a partition's lease; stopping it");
                            self.halt(index, false);
                        }
                    }
                }
                continue;
            }
            let busy = self
                .stopping
                .iter()
                .any(|(stopping, _, _)| *stopping == index);
            if !wanted || busy {
                continue;
            }
            match log
                .lease(DOMAIN_EVENTS_STREAM, &name, me, settings.lease)
                .await
            {
                Ok(true) => {
                    let (halt, halted) = watch::channel(false);
                    let task = tokio::spawn(run_partition(
                        log.clone(),
                        engine.clone(),
                        stats.clone(),
                        settings.clone(),
                        index,
                        halted,
                    ));
                    tracing::info!(
                        partition = index,
                        of = settings.partitions,
                        "consuming a partition"
                    );
                    self.owned.insert(
                        index,
                        Owned {
                            halt,
                            task,
                            renewed: tokio::time::Instant::now(),
                        },
                    );
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(partition = index, error = %ErrorChain(&error), "cannot take a partition's lease")
                }
            }
        }
    }

    /// Halts partition `index`; `ours` keeps renewing its lease until it
    /// has stopped (a handover), else it is left to lapse.
    fn halt(&mut self, index: u32, ours: bool) {
        if let Some(owned) = self.owned.remove(&index) {
            let _ = owned.halt.send(true);
            self.stopping.push((index, owned, ours));
        }
    }

    /// Releases the leases of the partitions that have stopped.
    async fn release_stopped(&mut self, log: &Arc<dyn EventLog>, settings: &ConsumerSettings) {
        let mut still = Vec::new();
        for (index, owned, ours) in self.stopping.drain(..) {
            if !owned.task.is_finished() {
                still.push((index, owned, ours));
                continue;
            }
            if ours {
                let name = lease_name(&settings.group, index);
                if let Err(error) = log
                    .release(DOMAIN_EVENTS_STREAM, &name, &settings.consumer)
                    .await
                {
                    tracing::warn!(partition = index, error = %ErrorChain(&error), "cannot release a partition's lease; it lapses instead");
                }
            }
        }
        self.stopping = still;
    }

    /// Halts every partition, waits for their in-flight events, and
    /// releases their leases.
    async fn stop_all(mut self, log: &Arc<dyn EventLog>, settings: &ConsumerSettings) {
        let held: Vec<u32> = self.owned.keys().copied().collect();
        for index in held {
            self.halt(index, true);
        }
        for (_, owned, _) in &mut self.stopping {
            if let Err(error) = (&mut owned.task).await {
                tracing::error!(%error, "a consumer partition task panicked");
            }
        }
        self.release_stopped(log, settings).await;
    }
}

/// Consumes partition `index` of the group until `halt`: first everything
/// left pending in its consumer group (by a replica that held it before),
/// in order, then new entries; entries of other partitions' keys are
/// acknowledged unapplied. Halting stops at once: queued entries stay
/// pending for the next owner, which starts with them.
async fn run_partition<H: EventHandler>(
    log: Arc<dyn EventLog>,
    engine: Arc<H>,
    stats: Arc<ConsumerCounters>,
    settings: ConsumerSettings,
    index: u32,
    mut halt: watch::Receiver<bool>,
) {
    let count = settings.partitions;
    let group = partition_group(&settings.group, index, count);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<EventId>();
    let mut tasks = JoinSet::new();
    tasks.spawn(acker(log.clone(), group.clone(), ack_rx));
    let workers = settings.workers.div_ceil(count as usize).max(1);
    let mut queues = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (queue, deliveries) = mpsc::channel::<Delivery>(WORKER_QUEUE);
        queues.push(queue);
        tasks.spawn(worker(
            log.clone(),
            engine.clone(),
            stats.clone(),
            settings.clone(),
            deliveries,
            ack_tx.clone(),
            halt.clone(),
        ));
    }

    // What the previous holder left unacknowledged comes first, in order.
    let mut batch = loop {
        match log
            .reclaim(
                DOMAIN_EVENTS_STREAM,
                &group,
                &settings.consumer,
                Duration::ZERO,
                TAKEOVER_MAX,
            )
            .await
        {
            Ok(pending) => break pending,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot take over the partition's pending events; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(settings.retry_backoff) => {}
                    _ = halt.changed() => {}
                }
                if *halt.borrow() {
                    break Vec::new();
                }
            }
        }
    };
    if !batch.is_empty() {
        tracing::info!(
            partition = index,
            count = batch.len(),
            "took over events left pending by the partition's previous holder"
        );
    }
    while !*halt.borrow() {
        if batch.is_empty() {
            let read = log.read_group(
                DOMAIN_EVENTS_STREAM,
                &group,
                &settings.consumer,
                settings.read_batch,
                READ_BLOCK,
            );
            batch = tokio::select! {
                result = read => match result {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(error = %ErrorChain(&error), "reading the event log failed; retrying");
                        tokio::time::sleep(settings.retry_backoff).await;
                        continue;
                    }
                },
                _ = halt.changed() => break,
            };
            stats
                .groups_vanished
                .store(log.groups_vanished(), Ordering::Relaxed);
        }
        for delivery in batch.drain(..) {
            if count > 1 && partition_of(delivery.key, count) != index {
                let _ = ack_tx.send(delivery.id);
                continue;
            }
            let worker = (mix(delivery.key) % queues.len() as u64) as usize;
            let sent = tokio::select! {
                sent = queues[worker].send(delivery) => sent.is_ok(),
                _ = halt.wait_for(|halted| *halted) => break,
            };
            if !sent {
                tracing::error!("a consumer worker stopped; stopping the partition");
                let _ = tasks.shutdown().await;
                return;
            }
        }
    }
    drop(queues);
    drop(ack_tx);
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result {
            tracing::error!(%error, "a consumer task panicked");
        }
    }
}

/// How often the group's backlog gauges are refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

/// Shows the consumer's counters in `/metrics`, read when scraped.
fn register_metrics(group: &str, stats: &Arc<ConsumerCounters>) {
    let labels = [("group", group)];
    type Field = fn(&ConsumerCounters) -> &AtomicU64;
    let counters: [(&'static str, &'static str, Field); 4] = [
        (
            "warble_consumer_events_processed_total",
            "Events the consumer group applied and acknowledged.",
            |stats| &stats.events_processed,
        ),
        (
            "warble_consumer_retries_total",
            "Failed attempts to apply an event that were retried.",
            |stats| &stats.retries,
        ),
        (
            "warble_consumer_dead_letters_total",
            "Events that failed every attempt and went to the dead-letter stream.",
            |stats| &stats.dead_letters,
        ),
        (
            "warble_consumer_groups_vanished_total",
            "Times the consumer group was found gone from the event log (an alarm: entries may have been skipped).",
            |stats| &stats.groups_vanished,
        ),
    ];
    for (name, help, counter) in counters {
        let stats = Arc::downgrade(stats);
        crate::metrics::counter_fn(name, help, &labels, move || {
            stats
                .upgrade()
                .map_or(0, |stats| ConsumerCounters::get(counter(&stats)))
        });
    }
}

/// Refreshes the group's backlog gauges (events not acknowledged, and the
/// age of the oldest) until `stop`: fan-out lag as operators watch it.
async fn report_backlog(
    log: Arc<dyn EventLog>,
    settings: ConsumerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let group = settings.group.as_str();
    let labels = [("group", group)];
    let unacked = crate::metrics::gauge(
        "warble_consumer_lag_events",
        "Events of the domain event log the consumer group has not acknowledged yet.",
        &labels,
    );
    let oldest_age = crate::metrics::gauge(
        "warble_consumer_oldest_unacked_age_seconds",
        "Age of the oldest event the consumer group has not acknowledged (0 when caught up).",
        &labels,
    );
    while !*stop.borrow() {
        match backlog(log.as_ref(), group, settings.partitions).await {
            Ok((lag, oldest)) => {
                unacked.set(i64::try_from(lag).unwrap_or(i64::MAX));
                let age_ms = oldest.map_or(0, |id| crate::time::now_ms().saturating_sub(id.ms));
                oldest_age.set(i64::try_from(age_ms / 1_000).unwrap_or(i64::MAX));
            }
            Err(error) => {
                tracing::debug!(error = %ErrorChain(&error), "cannot read the group's backlog");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKLOG_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Spreads Snowflake-shaped keys (low bits often equal) over the workers.
fn mix(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
}

async fn worker<H: EventHandler>(
    log: Arc<dyn EventLog>,
    engine: Arc<H>,
    stats: Arc<ConsumerCounters>,
    settings: ConsumerSettings,
    mut deliveries: mpsc::Receiver<Delivery>,
    acks: mpsc::UnboundedSender<EventId>,
    mut halt: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(H::MAX_BATCH.max(1));
    loop {
        // A halted partition stops between events; what is still queued
        // stays pending for the partition's next holder.
        let received = tokio::select! {
            biased;
            _ = halt.wait_for(|halted| *halted) => 0,
            received = deliveries.recv_many(&mut batch, H::MAX_BATCH.max(1)) => received,
        };
        if received == 0 {
            break;
        }
        if batch.len() > 1 {
            let payloads: Vec<&[u8]> = batch
                .iter()
                .map(|delivery| delivery.payload.as_slice())
                .collect();
            let span = crate::telemetry::consumer_span(&settings.group, &payloads);
            match engine.apply_batch(&payloads).instrument(span).await {
                Ok(()) => {
                    ConsumerCounters::add(&stats.events_processed, batch.len() as u64);
                    for delivery in batch.drain(..) {
                        let _ = acks.send(delivery.id);
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(entries = batch.len(), error = %ErrorChain(&error), "a batch failed; applying its events one by one");
                }
            }
        }
        for delivery in batch.drain(..) {
            if *halt.borrow() {
                break;
            }
            let span = crate::telemetry::consumer_span(&settings.group, &[&delivery.payload]);
            let applied = apply_one(
                &log,
                engine.as_ref(),
                &stats,
                &settings,
                &delivery,
                &mut halt,
            )
            .instrument(span)
            .await;
            if applied {
                let _ = acks.send(delivery.id);
            }
        }
    }
}

/// Applies one entry with retries, dead-lettering it after the last
/// attempt; returns whether it may be acknowledged (false when its dead
/// letter could not be written, or the partition halted between attempts:
/// it stays pending for the partition's next holder).
async fn apply_one<H: EventHandler>(
    log: &Arc<dyn EventLog>,
    engine: &H,
    stats: &ConsumerCounters,
    settings: &ConsumerSettings,
    delivery: &Delivery,
    halt: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = settings.retry_backoff;
    let mut attempt = 1;
    loop {
        let error = match engine.apply_encoded(&delivery.payload).await {
            Ok(()) => {
                ConsumerCounters::add(&stats.events_processed, 1);
                return true;
            }
            Err(error) => error,
        };
        if attempt == 1 {
            ConsumerCounters::add(&stats.events_failed, 1);
        }
        let chain = ErrorChain(&error).to_string();
        if attempt >= settings.max_attempts {
            tracing::error!(entry = %delivery.id, attempts = attempt, error = %chain, "event failed every attempt; dead-lettering it");
            if let Err(error) = dead_letter(log.as_ref(), settings, delivery, attempt, chain).await
            {
                tracing::error!(entry = %delivery.id, error = %ErrorChain(&error), "cannot write the dead letter; the event stays pending");
                return false;
            }
            ConsumerCounters::add(&stats.dead_letters, 1);
            return true;
        }
        tracing::warn!(entry = %delivery.id, attempt, error = %chain, "event failed; retrying");
        ConsumerCounters::add(&stats.retries, 1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = halt.wait_for(|halted| *halted) => return false,
        }
        backoff = (backoff * 2).min(settings.max_retry_backoff);
        attempt += 1;
    }
}

async fn dead_letter(
    log: &dyn EventLog,
    settings: &ConsumerSettings,
    delivery: &Delivery,
    attempts: u32,
    last_error: String,
) -> Result<(), crate::event_log::EventLogError> {
    let record = DeadLetter {
        source_stream: DOMAIN_EVENTS_STREAM.into(),
        source_entry_id: delivery.id.to_string(),
        consumer_group: settings.group.clone(),
        key: delivery.key,
        payload: delivery.payload.clone(),
        attempts,
        last_error,
        dead_lettered_at_ms: crate::time::now_ms() as i64,
    };
    log.append(DEAD_LETTER_STREAM, delivery.key, &record.encode_to_vec())
        .await?;
    // Retention: dead letters are rare, so trimming at each new one is cheap
    // and keeps the stream bounded without a timer. A failed trim is retried
    // by the next dead letter.
    let horizon = EventId {
        ms: crate::time::now_ms().saturating_sub(settings.dead_letter_retention.as_millis() as u64),
        seq: 0,
    };
    if let Err(error) = log.trim_before(DEAD_LETTER_STREAM, horizon).await {
        tracing::warn!(error = %ErrorChain(&error), "cannot trim expired dead letters");
    }
    Ok(())
}

/// Acknowledges in batches: every id already queued goes in one call.
async fn acker(log: Arc<dyn EventLog>, group: String, mut acks: mpsc::UnboundedReceiver<EventId>) {
    let mut batch = Vec::new();
    while acks.recv_many(&mut batch, 512).await > 0 {
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=ACK_ATTEMPTS {
            match log.ack(DOMAIN_EVENTS_STREAM, &group, &batch).await {
                Ok(_) => break,
                // Entries left unacknowledged are applied again by the
                // partition's next holder, in order; effects are idempotent.
                Err(error) if attempt == ACK_ATTEMPTS => {
                    tracing::warn!(error = %ErrorChain(&error), count = batch.len(), "ack failed; the events stay pending");
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        batch.clear();
    }
}

/// Tries to acknowledge one batch before leaving it pending.
const ACK_ATTEMPTS: u32 = 5;
