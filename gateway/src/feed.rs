//! The live feed behind the subscriptions: one task per gateway tails the
//! domain event stream and notify-svc's notifications stream from "now"
//! and broadcasts what subscriptions need; each subscription filters it for
//! its viewer. `homeTimelineUpdates` listens to tweet and follow events,
//! `notificationAdded` to notification groups created or grown.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{broadcast, watch};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog, NOTIFICATIONS_STREAM};
use warble_proto::events::v1::{Event, event::Payload};
use warble_proto::notify::v1::NotificationPublished;

/// What subscriptions need from the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    /// A tweet was created.
    TweetCreated { tweet_id: u64, author_id: u64 },
    /// `follower_id` now follows `followee_id`.
    Followed { follower_id: u64, followee_id: u64 },
    /// `follower_id` no longer follows `followee_id`.
    Unfollowed { follower_id: u64, followee_id: u64 },
}

/// A notification group of `recipient_id`'s main list was created or
/// absorbed an actor. Groups that went to the filtered list are not
/// broadcast: no subscription delivers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationEvent {
    /// Who is notified.
    pub recipient_id: u64,
    /// The group created or changed.
    pub group_id: u64,
}

/// Events buffered per subscriber before a slow one starts missing them.
const BUFFER: usize = 4_096;
/// Entries read from a stream at once.
const READ_BATCH: usize = 512;
/// How long one read waits for a new entry. A read returns as soon as one
/// is appended, so this bounds only how quickly the tail notices `stop`.
const READ_BLOCK: Duration = Duration::from_millis(500);

/// The broadcast side of the feed.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<FeedEvent>,
    notifications: broadcast::Sender<NotificationEvent>,
}

impl LiveFeed {
    /// A new feed; nothing flows until [`LiveFeed::run`] tails a log.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(BUFFER).0,
            notifications: broadcast::channel(BUFFER).0,
        }
    }

    /// A receiver of every domain event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.sender.subscribe()
    }

    /// A receiver of every main-list notification event from now on.
    pub fn subscribe_notifications(&self) -> broadcast::Receiver<NotificationEvent> {
        self.notifications.subscribe()
    }

    /// Tails both streams of `log` from their current ends until `stop`
    /// turns true.
    pub async fn run(self, log: Arc<dyn EventLog>, stop: watch::Receiver<bool>) {
        let domain = tail(&*log, DOMAIN_EVENTS_STREAM, stop.clone(), |payload| {
            let Ok(event) = Event::decode(payload) else {
                return;
            };
            let feed_event = match event.payload {
                Some(Payload::TweetCreated(created)) => FeedEvent::TweetCreated {
                    tweet_id: created.tweet_id,
                    author_id: created.author_id,
                },
                Some(Payload::Followed(followed)) => FeedEvent::Followed {
                    follower_id: followed.follower_id,
                    followee_id: followed.followee_id,
                },
                Some(Payload::Unfollowed(unfollowed)) => FeedEvent::Unfollowed {
                    follower_id: unfollowed.follower_id,
                    followee_id: unfollowed.followee_id,
                },
                _ => return,
            };
            // No subscribers is fine: the event is simply not needed.
            let _ = self.sender.send(feed_event);
        });
        let notifications = tail(&*log, NOTIFICATIONS_STREAM, stop, |payload| {
            let Ok(published) = NotificationPublished::decode(payload) else {
                return;
            };
            if published.filtered || published.recipient_id == 0 || published.group_id == 0 {
                return;
            }
            let _ = self.notifications.send(NotificationEvent {
                recipient_id: published.recipient_id,
                group_id: published.group_id,
            });
        });
        tokio::join!(domain, notifications);
    }
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

/// Hands each entry appended to `stream` from now on to `deliver`, in
/// order, until `stop` turns true. Read failures are logged and retried.
async fn tail(
    log: &dyn EventLog,
    stream: &'static str,
    mut stop: watch::Receiver<bool>,
    mut deliver: impl FnMut(&[u8]),
) {
    let mut position = loop {
        match log.last_id(stream).await {
            Ok(position) => break position,
            Err(error) => {
                tracing::warn!(stream, error = %warble_mesh::status::ErrorChain(&error), "live feed cannot find the stream's end; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    while !*stop.borrow() {
        let read = log.read_after(stream, position, READ_BATCH, READ_BLOCK);
        let entries = tokio::select! {
            result = read => result,
            _ = stop.changed() => return,
        };
        let entries = match entries {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(stream, error = %warble_mesh::status::ErrorChain(&error), "live feed read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for entry in entries {
            position = Some(entry.id);
            deliver(&entry.payload);
        }
    }
}
