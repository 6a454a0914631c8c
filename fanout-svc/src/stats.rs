//! Counters GetStatus reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use warble_mesh::consumer::ConsumerCounters;

/// Fan-out counters since start.
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// The consumer's counters (events processed, retries, dead letters).
    pub consumer: Arc<ConsumerCounters>,
    /// Timeline insertions written.
    pub deliveries_written: AtomicU64,
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
