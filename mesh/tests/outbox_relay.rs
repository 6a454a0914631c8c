//! No write without its event, across stores: a store's outbox relayed to
//! Redis Streams. A relay that dies between publishing and marking entries
//! published republishes them after a restart, and the sink keeps exactly
//! one of each (by event id).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use warble_mesh::event_log::{
    DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog, EventLogError, RedisEventLog,
};
use warble_mesh::outbox::{EventLogOutbox, EventSink, RELAY_GROUP, relay_once};
use warble_proto::events::v1::{Event, TweetCreated, event::Payload};
use warble_testkit::{RedisServer, unique_prefix};

fn event(event_id: u64) -> Vec<u8> {
    Event {
        event_id,
        occurred_at_ms: 1,
        trace_context: Default::default(),
        payload: Some(Payload::TweetCreated(TweetCreated {
            tweet_id: event_id,
            author_id: 7,
            ..Default::default()
        })),
    }
    .encode_to_vec()
}

/// A sink that publishes `survive` entries, then "crashes" (fails) before
/// the relay can mark anything published.
struct CrashingSink {
    inner: Arc<RedisEventLog>,
    survive: usize,
    published: AtomicUsize,
}

#[async_trait]
impl EventSink for CrashingSink {
    async fn publish_once(
        &self,
        stream: &str,
        key: u64,
        payload: &[u8],
        event_id: u64,
    ) -> Result<(), EventLogError> {
        if self.published.fetch_add(1, Ordering::SeqCst) >= self.survive {
            return Err(EventLogError::Unavailable("the relay process died".into()));
        }
        self.inner
            .publish_once(stream, key, payload, event_id)
            .await
    }
}

#[tokio::test]
async fn a_crash_between_publish_and_mark_delivers_each_event_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let stream_log = Arc::new(
        RedisEventLog::connect(&redis.config())
            .await
            .unwrap()
            .with_key_prefix(unique_prefix()),
    );

    // The store side: three events committed to the embedded outbox.
    let data = tempfile::tempdir().unwrap();
    {
        let outbox_log =
            EmbeddedEventLog::open(warble_mesh::embedded::open_shared(data.path()).unwrap())
                .unwrap();
        for id in [101, 102, 103] {
            outbox_log
                .append(DOMAIN_EVENTS_STREAM, 7, &event(id))
                .await
                .unwrap();
        }
        let outbox = EventLogOutbox::new(Arc::new(outbox_log), DOMAIN_EVENTS_STREAM, RELAY_GROUP);
        let crashing = CrashingSink {
            inner: stream_log.clone(),
            survive: 2,
            published: AtomicUsize::new(0),
        };
        // Two events reach Redis, then the relay dies before marking any.
        assert!(relay_once(&outbox, &crashing).await.is_err());
    }

    // Restart: a new relay on the same outbox publishes everything again.
    let outbox_log =
        EmbeddedEventLog::open(warble_mesh::embedded::open_shared(data.path()).unwrap()).unwrap();
    let outbox = EventLogOutbox::new(
        Arc::new(outbox_log.clone()),
        DOMAIN_EVENTS_STREAM,
        RELAY_GROUP,
    );
    assert_eq!(relay_once(&outbox, stream_log.as_ref()).await.unwrap(), 3);
    assert_eq!(
        relay_once(&outbox, stream_log.as_ref()).await.unwrap(),
        0,
        "all marked published"
    );
    assert_eq!(
        outbox_log
            .lag(DOMAIN_EVENTS_STREAM, RELAY_GROUP)
            .await
            .unwrap(),
        0
    );

    // The consumer side sees each event exactly once, in order.
    let delivered = stream_log
        .read_group(DOMAIN_EVENTS_STREAM, "fanout", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    let ids: Vec<u64> = delivered
        .iter()
        .map(|delivery| Event::decode(delivery.payload.as_slice()).unwrap().event_id)
        .collect();
    assert_eq!(ids, [101, 102, 103]);
}
