//! Consuming the domain event log in a consumer group (fanout-svc,
//! notify-svc): at-least-once delivery, per-key order, retries
//! with backoff, dead letters, and taking over a dead consumer's events.
//!
//! One dispatcher reads batches from the consumer group and routes each
//! entry to a worker by its key, so one author's events are applied in
//! order while different authors proceed in parallel. A worker retries a
//! failing event with exponential backoff; after `max_attempts` it writes a
//! `DeadLetter` record to [`DEAD_LETTER_STREAM`] and acknowledges the entry,
//! so a poison event never blocks its key forever and is never silently
//! dropped. Acknowledgements are batched by one acker task. Entries left
//! pending by a consumer that died are reclaimed after `reclaim_idle`.

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
    /// Events unacknowledged this long (their consumer died) are taken over, in seconds.
    pub reclaim_idle_secs: u64,
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
            reclaim_idle_secs: 30,
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
        if self.reclaim_idle_secs == 0 {
            return Err(ConfigError::invalid(
                "consumer.reclaim_idle_secs",
                "must be at least 1",
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
    /// Idle time after which another consumer's pending entries are taken over.
    pub reclaim_idle: Duration,
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
            reclaim_idle: Duration::from_secs(config.reclaim_idle_secs),
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

/// Runs the consumer until `stop` turns true; in-flight events finish first.
pub async fn run<H: EventHandler>(
    log: Arc<dyn EventLog>,
    engine: Arc<H>,
    stats: Arc<ConsumerCounters>,
    settings: ConsumerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<EventId>();
    let mut tasks = JoinSet::new();
    register_metrics(&settings.group, &stats);
    tasks.spawn(report_backlog(
        log.clone(),
        settings.group.clone(),
        stop.clone(),
    ));
    tasks.spawn(acker(log.clone(), settings.group.clone(), ack_rx));
    let mut queues = Vec::with_capacity(settings.workers);
    for _ in 0..settings.workers.max(1) {
        let (queue, deliveries) = mpsc::channel::<Delivery>(WORKER_QUEUE);
        queues.push(queue);
        tasks.spawn(worker(
            log.clone(),
            engine.clone(),
            stats.clone(),
            settings.clone(),
            deliveries,
            ack_tx.clone(),
        ));
    }
    drop(ack_tx);

    let mut next_reclaim = tokio::time::Instant::now();
    while !*stop.borrow() {
        let mut batch = Vec::new();
        if tokio::time::Instant::now() >= next_reclaim {
            next_reclaim = tokio::time::Instant::now() + settings.reclaim_idle / 2;
            match log
                .reclaim(
                    DOMAIN_EVENTS_STREAM,
                    &settings.group,
                    &settings.consumer,
                    settings.reclaim_idle,
                    settings.read_batch,
                )
                .await
            {
                Ok(reclaimed) => {
                    if !reclaimed.is_empty() {
                        tracing::info!(
                            count = reclaimed.len(),
                            "took over events left pending by a dead consumer"
                        );
                    }
                    batch = reclaimed;
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "reclaim failed")
                }
            }
        }
        if batch.is_empty() {
            let read = log.read_group(
                DOMAIN_EVENTS_STREAM,
                &settings.group,
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
                _ = stop.changed() => break,
            };
            stats
                .groups_vanished
                .store(log.groups_vanished(), Ordering::Relaxed);
        }
        for delivery in batch {
            let worker = (mix(delivery.key) % queues.len() as u64) as usize;
            if queues[worker].send(delivery).await.is_err() {
                tracing::error!("a consumer worker stopped; stopping the consumer");
                return;
            }
        }
    }
    drop(queues);
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
async fn report_backlog(log: Arc<dyn EventLog>, group: String, mut stop: watch::Receiver<bool>) {
    let labels = [("group", group.as_str())];
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
        let backlog = async {
            let lag = log.lag(DOMAIN_EVENTS_STREAM, &group).await?;
            let oldest = log.oldest_unacked(DOMAIN_EVENTS_STREAM, &group).await?;
            Ok::<_, crate::event_log::EventLogError>((lag, oldest))
        };
        match backlog.await {
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
) {
    let mut batch = Vec::with_capacity(H::MAX_BATCH.max(1));
    while deliveries.recv_many(&mut batch, H::MAX_BATCH.max(1)).await > 0 {
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
            let span = crate::telemetry::consumer_span(&settings.group, &[&delivery.payload]);
            let applied = apply_one(&log, engine.as_ref(), &stats, &settings, &delivery)
                .instrument(span)
                .await;
            if applied {
                let _ = acks.send(delivery.id);
            }
        }
    }
}

/// Applies one entry with retries, dead-lettering it after the last
/// attempt; returns whether it may be acknowledged (false only when its dead
/// letter could not be written: it stays pending and is reclaimed later).
async fn apply_one<H: EventHandler>(
    log: &Arc<dyn EventLog>,
    engine: &H,
    stats: &ConsumerCounters,
    settings: &ConsumerSettings,
    delivery: &Delivery,
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
        tokio::time::sleep(backoff).await;
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
        if let Err(error) = log.ack(DOMAIN_EVENTS_STREAM, &group, &batch).await {
            // Unacknowledged entries are redelivered via reclaim; effects are idempotent.
            tracing::warn!(error = %ErrorChain(&error), count = batch.len(), "ack failed");
        }
        batch.clear();
    }
}
