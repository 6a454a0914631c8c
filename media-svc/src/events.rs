//! The domain events media-svc applies: a TweetCreated attaches the
//! tweet's media, a TweetDeleted schedules them for deletion after the
//! grace period. Both are idempotent, so a redelivered event changes
//! nothing.

use std::sync::Arc;

use async_trait::async_trait;
use prost::Message as _;
use warble_mesh::consumer::EventHandler;
use warble_proto::events::v1::{Event, event::Payload};

use crate::error::MediaError;
use crate::store::MediaStore;

/// Applies events to the store.
pub struct MediaEvents {
    pub store: Arc<dyn MediaStore>,
    /// How long a deleted tweet's media stay, in milliseconds.
    pub deleted_grace_ms: i64,
}

#[async_trait]
impl EventHandler for MediaEvents {
    type Error = MediaError;

    async fn apply_encoded(&self, payload: &[u8]) -> Result<(), MediaError> {
        let event = Event::decode(payload)?;
        match event.payload {
            Some(Payload::TweetCreated(created)) if !created.media_ids.is_empty() => {
                let skipped = self
                    .store
                    .attach(created.tweet_id, created.author_id, &created.media_ids)
                    .await?;
                for (media_id, conflict) in skipped {
                    // The gateway claimed them first, so this is a tweet
                    // created around it (an internal caller, or a claim that
                    // lapsed): the tweet shows without that media.
                    tracing::warn!(
                        tweet_id = created.tweet_id,
                        media_id,
                        "media not attached: it {}",
                        conflict.describe()
                    );
                }
            }
            Some(Payload::TweetDeleted(deleted)) if !deleted.media_ids.is_empty() => {
                self.store
                    .schedule_deletion(
                        deleted.tweet_id,
                        &deleted.media_ids,
                        deleted.deleted_at_ms.saturating_add(self.deleted_grace_ms),
                    )
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
