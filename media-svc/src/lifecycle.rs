//! The sweeper: deletes uploads nobody attached in time and the media of
//! deleted tweets once their grace period is over.
//!
//! Each sweep takes the due ids, and for each one asks the store to begin
//! its removal (which re-checks, so media attached at the last moment are
//! kept), deletes its files, then forgets the record. Every step is
//! idempotent, and a record stays due until its last step, so a sweep cut
//! short by a crash or a failing bucket is finished by the next one, in
//! this process or after a restart. Several replicas may sweep at once:
//! they only repeat each other's idempotent steps.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::blobs::{Blobs, Variant};
use crate::error::MediaError;
use crate::service::MediaStats;
use crate::store::{MediaStore, Removal};

/// See the module docs.
#[derive(Clone)]
pub struct Sweeper {
    pub store: Arc<dyn MediaStore>,
    pub blobs: Blobs,
    pub stats: Arc<MediaStats>,
    /// Most ids one sweep takes.
    pub batch: usize,
}

impl Sweeper {
    /// One sweep at `now_ms`: how many media it deleted.
    pub async fn sweep(&self, now_ms: i64) -> Result<usize, MediaError> {
        let mut deleted = 0;
        for id in self.store.due(now_ms, self.batch).await? {
            let Removal::Remove(record) = self.store.begin_removal(id, now_ms).await? else {
                continue;
            };
            self.blobs.delete(id, Variant::Original).await?;
            if record.preview.is_some() {
                self.blobs.delete(id, Variant::Preview).await?;
            }
            self.store.finish_removal(id).await?;
            self.stats.deleted.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_deleted
                .fetch_add(record.stored_bytes(), Ordering::Relaxed);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Sweeps every `interval` until `stop` resolves; a failed sweep is
    /// logged and retried at the next tick.
    pub async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            match self.sweep(warble_mesh::time::now_ms() as i64).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "media sweep deleted unused media"),
                Err(error) => tracing::warn!(
                    error = %warble_mesh::status::ErrorChain(&error),
                    "media sweep failed; retrying at the next tick"
                ),
            }
        }
    }
}
