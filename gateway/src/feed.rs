//! The live feed behind `homeTimelineUpdates`: one task per gateway tails the
//! domain event stream from "now" and broadcasts tweet and follow events;
//! each subscription filters them for its viewer.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{broadcast, watch};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog};
use warble_proto::events::v1::{Event, event::Payload};

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

/// Events buffered per subscriber before a slow one starts missing them.
const BUFFER: usize = 4_096;

/// The broadcast side of the feed.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<FeedEvent>,
}

impl LiveFeed {
    /// A new feed; nothing flows until [`LiveFeed::run`] tails a log.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(BUFFER).0,
        }
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.sender.subscribe()
    }

    /// Tails `log` from its current end until `stop` turns true.
    pub async fn run(self, log: Arc<dyn EventLog>, mut stop: watch::Receiver<bool>) {
        let mut position = loop {
            match log.last_id(DOMAIN_EVENTS_STREAM).await {
                Ok(position) => break position,
                Err(error) => {
                    tracing::warn!(error = %warble_mesh::status::ErrorChain(&error), "live feed cannot find the stream's end; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        while !*stop.borrow() {
            let read = log.read_after(
                DOMAIN_EVENTS_STREAM,
                position,
                512,
                Duration::from_millis(500),
            );
            let entries = tokio::select! {
                result = read => result,
                _ = stop.changed() => return,
            };
            let entries = match entries {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(error = %warble_mesh::status::ErrorChain(&error), "live feed read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            for entry in entries {
                position = Some(entry.id);
                let Ok(event) = Event::decode(entry.payload.as_slice()) else {
                    continue;
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
                    _ => continue,
                };
                // No subscribers is fine: the event is simply not needed.
                let _ = self.sender.send(feed_event);
            }
        }
    }
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}
