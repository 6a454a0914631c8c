//! Counters GetStatus reports.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fan-out counters since start.
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// Events applied and acknowledged.
    pub events_processed: AtomicU64,
    /// Timeline insertions written.
    pub deliveries_written: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Events moved to the dead-letter stream.
    pub dead_letters: AtomicU64,
    /// Events that failed at least once.
    pub events_failed: AtomicU64,
}

impl FanoutStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
