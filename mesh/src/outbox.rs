//! The transactional outbox: how a store that cannot share a transaction
//! with the event log (ScyllaDB, Neo4j, or an embedded store publishing to
//! Redis Streams) still never has a write without its event.
//!
//! The store writes each event into its own outbox in the same batch or
//! transaction as the change ([`Outbox`]). A relay ([`run_relay`]) then
//! publishes pending entries to an [`EventSink`] and marks them published.
//! A crash between publish and mark means the entry is published again on
//! restart; the sink drops the repeat by the event's id, so every event is
//! delivered exactly once in effect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use tokio::sync::watch;
use warble_proto::events::v1::Event;

use crate::event_log::{EventId, EventLog, EventLogError};

/// An event waiting in a store's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The outbox's own handle for the entry (passed back to `mark_published`).
    pub handle: String,
    /// The stream to publish to.
    pub stream: String,
    /// The ordering key (as for [`EventLog::append`]).
    pub key: u64,
    /// The encoded `warble.events.v1.Event`.
    pub payload: Vec<u8>,
}

/// A store's outbox of events not yet published, oldest first.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Up to `max` unpublished entries, oldest first.
    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, EventLogError>;
    /// Marks entries published (they are never returned by `pending` again).
    async fn mark_published(&self, handles: &[String]) -> Result<(), EventLogError>;
    /// Whether an empty `pending` already waited (up to [`IDLE_POLL`]) for a
    /// new entry, so the relay need not sleep before asking again.
    fn waits_when_idle(&self) -> bool {
        false
    }
}

/// Where the relay publishes. Publishing the same `event_id` twice must
/// leave one entry in the stream.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Appends `payload` to `stream` unless an entry with `event_id` was already published.
    async fn publish_once(
        &self,
        stream: &str,
        key: u64,
        payload: &[u8],
        event_id: u64,
    ) -> Result<(), EventLogError>;
}

/// How often an idle relay looks for new entries (or, with an outbox that
/// [waits](Outbox::waits_when_idle), how long one wait lasts).
pub const IDLE_POLL: Duration = Duration::from_millis(20);
/// Entries moved per round.
const BATCH: usize = 256;

/// Moves entries from `outbox` to `sink` until `stop` turns true. Entries are
/// published in outbox order; a failed round is retried with backoff.
pub async fn run_relay(
    outbox: Arc<dyn Outbox>,
    sink: Arc<dyn EventSink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = IDLE_POLL;
    while !*stop.borrow() {
        match relay_once(outbox.as_ref(), sink.as_ref()).await {
            // The outbox already waited for a new entry: ask again at once.
            Ok(0) if outbox.waits_when_idle() => continue,
            Ok(0) => backoff = IDLE_POLL,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(error = %crate::status::ErrorChain(&error), "outbox relay failed; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One relay round: publishes up to a batch of pending entries and marks
/// them; returns how many were moved.
pub async fn relay_once(outbox: &dyn Outbox, sink: &dyn EventSink) -> Result<usize, EventLogError> {
    let entries = outbox.pending(BATCH).await?;
    for entry in &entries {
        // The payload's own event id makes a republish after a crash a no-op.
        // An undecodable payload still moves on (id 0 is never deduplicated),
        // so one bad entry cannot stall the outbox; consumers dead-letter it.
        let event_id = Event::decode(entry.payload.as_slice()).map_or(0, |event| event.event_id);
        sink.publish_once(&entry.stream, entry.key, &entry.payload, event_id)
            .await?;
    }
    let handles: Vec<String> = entries.iter().map(|entry| entry.handle.clone()).collect();
    if !handles.is_empty() {
        crate::failpoint::reached("relay.after_publish").await;
        outbox.mark_published(&handles).await?;
        crate::failpoint::reached("relay.after_mark").await;
    }
    Ok(entries.len())
}

/// An [`EventLog`] consumer group used as an outbox: an embedded store
/// appends to its log in its own transaction; the relay reads the group.
pub struct EventLogOutbox {
    log: Arc<dyn EventLog>,
    stream: String,
    group: String,
}

impl EventLogOutbox {
    /// The outbox of `stream` in `log`, tracked by consumer group `group`.
    pub fn new(log: Arc<dyn EventLog>, stream: &str, group: &str) -> Self {
        Self {
            log,
            stream: stream.to_owned(),
            group: group.to_owned(),
        }
    }
}

#[async_trait]
impl Outbox for EventLogOutbox {
    async fn pending(&self, max: usize) -> Result<Vec<OutboxEntry>, EventLogError> {
        // Entries a crashed relay read but never marked come first.
        let mut deliveries = self
            .log
            .reclaim(&self.stream, &self.group, "relay", Duration::ZERO, max)
            .await?;
        if deliveries.len() < max {
            // With nothing to reclaim, block until the store appends (the
            // embedded log wakes readers on commit) rather than polling: an
            // event reaches the stream within a millisecond of its commit,
            // not up to a poll interval later.
            let block = if deliveries.is_empty() {
                IDLE_POLL
            } else {
                Duration::ZERO
            };
            deliveries.extend(
                self.log
                    .read_group(
                        &self.stream,
                        &self.group,
                        "relay",
                        max - deliveries.len(),
                        block,
                    )
                    .await?,
            );
        }
        Ok(deliveries
            .into_iter()
            .map(|delivery| OutboxEntry {
                handle: delivery.id.to_string(),
                stream: self.stream.clone(),
                key: delivery.key,
                payload: delivery.payload,
            })
            .collect())
    }

    async fn mark_published(&self, handles: &[String]) -> Result<(), EventLogError> {
        let ids = handles
            .iter()
            .map(|handle| handle.parse::<EventId>())
            .collect::<Result<Vec<_>, _>>()?;
        self.log
            .ack(&self.stream, &self.group, &ids)
            .await
            .map(|_| ())
    }

    fn waits_when_idle(&self) -> bool {
        true
    }
}

/// Consumer group the relay tracks an embedded outbox with.
pub const RELAY_GROUP: &str = "outbox-relay";

/// A running relay from a store's outbox to the shared event stream.
pub struct Relay {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying `outbox` to Redis Streams when `events.backend` is
    /// `redis` (checking Redis answers first); `None` for `embedded`, where
    /// the store's own event log is the stream.
    pub async fn start(
        events: &crate::backends::EventsConfig,
        outbox: Arc<dyn Outbox>,
    ) -> Result<Option<Self>, crate::redis_client::RedisClientError> {
        match events.backend {
            crate::backends::EventsBackend::Embedded => Ok(None),
            crate::backends::EventsBackend::Redis => {
                let sink: Arc<dyn EventSink> =
                    Arc::new(crate::event_log::RedisEventLog::connect(&events.redis).await?);
                let (stop, stopped) = watch::channel(false);
                let task = tokio::spawn(run_relay(outbox, sink, stopped));
                tracing::info!("relaying the outbox to Redis Streams");
                Ok(Some(Self { stop, task }))
            }
        }
    }

    /// Stops after the current round (unpublished entries wait for the next start).
    pub async fn stop(self, deadline: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            tracing::warn!(
                "outbox relay did not stop in time; its entries are published after the next start"
            );
        }
    }
}

/// A server whose store's outbox is relayed to the shared event stream
/// while it serves ([`Relay::start`]); the relay stops after the server has
/// drained, so events of the last calls still leave.
pub struct RelayedServer<S> {
    server: S,
    relay: Option<Relay>,
    drain_timeout: Duration,
}

impl<S: crate::scaffold::Serve> RelayedServer<S> {
    /// `server` with `relay` (if any) beside it, stopping within `drain_timeout`.
    pub fn new(server: S, relay: Option<Relay>, drain_timeout: Duration) -> Self {
        Self {
            server,
            relay,
            drain_timeout,
        }
    }
}

impl<S: crate::scaffold::Serve> crate::scaffold::Serve for RelayedServer<S> {
    async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: crate::scaffold::Shutdown,
    ) -> anyhow::Result<()> {
        let served = self.server.serve(listener, shutdown).await;
        if let Some(relay) = self.relay {
            relay.stop(self.drain_timeout).await;
        }
        served
    }
}

/// The last step of a service that owns a store with an outbox: relays the
/// outbox to Redis Streams when `events.backend = "redis"` (checking Redis
/// answers first), binds `server.listen_addr` and serves until `shutdown`.
/// `production_store` names a store whose events only ever leave through
/// the relay (e.g. `store.backend = "scylla"`): without one they would wait
/// in the outbox, which is worth a warning.
pub async fn serve_relaying(
    server: impl crate::scaffold::Serve,
    outbox: Arc<dyn Outbox>,
    events: &crate::backends::EventsConfig,
    server_config: &crate::grpc::ServerConfig,
    production_store: Option<&str>,
    shutdown: crate::scaffold::Shutdown,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let relay = Relay::start(events, outbox)
        .await
        .context("event stream (events.redis.*)")?;
    if let (None, Some(store)) = (&relay, production_store) {
        tracing::warn!("{store} with events.backend = \"embedded\": events wait in the outbox");
    }
    let drain = server_config.drain_timeout();
    let server = RelayedServer::new(server, relay, drain);
    crate::scaffold::serve_on(server_config.listen_addr, server, shutdown).await
}

/// An embedded store's outbox: its own event log, read by the relay's group.
pub fn embedded_outbox(log: crate::event_log::EmbeddedEventLog) -> Arc<dyn Outbox> {
    Arc::new(EventLogOutbox::new(
        Arc::new(log),
        crate::event_log::DOMAIN_EVENTS_STREAM,
        RELAY_GROUP,
    ))
}
