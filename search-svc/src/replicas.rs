//! Replicas that are gone for good stop pinning the stream.
//!
//! Each replica records in a Redis hash when it was last alive, and, on the
//! same beat, unpins every other replica not heard from within
//! `retention.replica_timeout_secs` (and forgets it). A replica that comes
//! back after that finds the stream trimmed past its index and rebuilds by
//! backfill. In `warble dev` nothing trims the stream and nothing is kept.

use std::sync::Arc;
use std::time::Duration;

use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EventLog};
use warble_mesh::redis_client::{RedisClient, Request};

use crate::error::SearchError;

/// How often a replica records itself and looks for lapsed peers.
pub const BEAT: Duration = Duration::from_secs(30);

/// The registry of live replicas (see the module docs).
#[derive(Debug, Clone)]
pub struct ReplicaRegistry {
    pub(crate) client: RedisClient,
    pub(crate) key: String,
    pub(crate) replica: String,
    pub(crate) timeout: Duration,
}

impl ReplicaRegistry {
    /// The registry in the Redis hash `key`, as `replica`, unpinning peers
    /// silent for longer than `timeout`.
    pub fn new(
        client: RedisClient,
        key: impl Into<String>,
        replica: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            key: key.into(),
            replica: replica.into(),
            timeout,
        }
    }

    /// Records this replica as alive at `now_ms` and unpins peers silent
    /// for longer than the timeout; returns the peers unpinned.
    pub async fn beat(
        &self,
        log: &Arc<dyn EventLog>,
        now_ms: u64,
    ) -> Result<Vec<String>, SearchError> {
        let failed = |error: redis::RedisError| SearchError::storage(error);
        self.client
            .query::<()>(
                Request::new("HSET", &self.key)
                    .arg(&self.replica)
                    .arg(now_ms),
            )
            .await
            .map_err(failed)?;
        let seen: Vec<(String, u64)> = self
            .client
            .query(Request::new("HGETALL", &self.key))
            .await
            .map_err(failed)?;
        let timeout_ms = self.timeout.as_millis() as u64;
        let mut unpinned = Vec::new();
        for (replica, last_seen_ms) in seen {
            if replica == self.replica || now_ms.saturating_sub(last_seen_ms) <= timeout_ms {
                continue;
            }
            log.unpin(DOMAIN_EVENTS_STREAM, &replica).await?;
            self.client
                .query::<()>(Request::new("HDEL", &self.key).arg(&replica))
                .await
                .map_err(failed)?;
            tracing::warn!(
                replica,
                last_seen_ms,
                "unpinned a search replica gone for longer than retention.replica_timeout_secs"
            );
            unpinned.push(replica);
        }
        Ok(unpinned)
    }
}
