//! Load drivers: closed-loop (N clients, each sending its next request as
//! soon as the previous one answers) and open-loop (requests arrive at a
//! fixed rate whether or not earlier ones have answered).
//!
//! Open-loop latency is measured from each request's *scheduled* start, not
//! from when it was actually sent, so a stalled server is charged for the
//! queue it causes (no coordinated omission).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::report::{new_histogram, record};

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    /// `concurrency` clients in a loop.
    Closed {
        /// Clients.
        concurrency: usize,
    },
    /// `rate` requests per second, at most `max_in_flight` outstanding.
    Open {
        /// Arrivals per second.
        rate: f64,
        /// Outstanding requests beyond which arrivals wait (and their latency grows).
        max_in_flight: usize,
    },
}

impl Mode {
    /// `closed c=16` / `open 2000/s`.
    pub fn describe(&self) -> String {
        match self {
            Self::Closed { concurrency } => format!("closed c={concurrency}"),
            Self::Open { rate, .. } => format!("open {rate:.0}/s"),
        }
    }
}

/// When a run stops: at `duration` or after `max_operations`, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall time.
    pub duration: Duration,
    /// Operations started.
    pub max_operations: Option<u64>,
}

/// What a run observed, per operation kind.
#[derive(Debug)]
pub struct Outcome {
    /// Latency of successful operations, one histogram per kind.
    pub latency: Vec<Histogram<u64>>,
    /// Successful operations per kind.
    pub ok: Vec<u64>,
    /// Failed operations per kind.
    pub errors: Vec<u64>,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    fn new(kinds: usize) -> Self {
        Self {
            latency: (0..kinds).map(|_| new_histogram()).collect(),
            ok: vec![0; kinds],
            errors: vec![0; kinds],
            first_error: None,
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: Outcome) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.add(theirs).expect("histograms share bounds");
        }
        for (mine, theirs) in self.ok.iter_mut().zip(&other.ok) {
            *mine += theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(&other.errors) {
            *mine += theirs;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn observe(&mut self, kind: usize, elapsed: Duration, result: anyhow::Result<()>) {
        match result {
            Ok(()) => {
                record(&mut self.latency[kind], elapsed);
                self.ok[kind] += 1;
            }
            Err(error) => {
                self.errors[kind] += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{error:#}"));
                }
            }
        }
    }
}

/// Runs `operation(i)` (which returns its kind, below `kinds`, and its
/// result) under `mode` until `limits`.
pub async fn run<F, Fut>(mode: Mode, limits: Limits, kinds: usize, operation: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (usize, anyhow::Result<()>)> + Send + 'static,
{
    let operation = Arc::new(operation);
    let started = Instant::now();
    let deadline = started + limits.duration;
    let max = limits.max_operations.unwrap_or(u64::MAX);
    let mut outcome = Outcome::new(kinds);
    match mode {
        Mode::Closed { concurrency } => {
            let next = Arc::new(AtomicU64::new(0));
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (next, operation) = (next.clone(), operation.clone());
                clients.spawn(async move {
                    let mut mine = Outcome::new(kinds);
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= max || Instant::now() >= deadline {
                            return mine;
                        }
                        let sent = Instant::now();
                        let (kind, result) = operation(index).await;
                        mine.observe(kind, sent.elapsed(), result);
                    }
                });
            }
            while let Some(client) = clients.join_next().await {
                outcome.merge(client.expect("a load client panicked"));
            }
        }
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
            let (results, mut received) = tokio::sync::mpsc::unbounded_channel();
            let mut index = 0u64;
            loop {
                let scheduled = started + interval.mul_f64(index as f64);
                if index >= max || scheduled >= deadline {
                    break;
                }
                tokio::time::sleep_until(scheduled).await;
                let permit = in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let (operation, results) = (operation.clone(), results.clone());
                tokio::spawn(async move {
                    let (kind, result) = operation(index).await;
                    let _ = results.send((kind, scheduled.elapsed(), result));
                    drop(permit);
                });
                index += 1;
            }
            drop(results);
            while let Some((kind, elapsed, result)) = received.recv().await {
                outcome.observe(kind, elapsed, result);
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_loop_stops_at_the_operation_limit_and_counts_kinds() {
        let limits = Limits {
            duration: Duration::from_secs(10),
            max_operations: Some(100),
        };
        let outcome = run(Mode::Closed { concurrency: 4 }, limits, 2, |i| async move {
            let result = if i % 10 == 0 {
                Err(anyhow::anyhow!("boom"))
            } else {
                Ok(())
            };
            ((i % 2) as usize, result)
        })
        .await;
        assert_eq!(
            outcome.ok.iter().sum::<u64>() + outcome.errors.iter().sum::<u64>(),
            100
        );
        assert_eq!(outcome.errors.iter().sum::<u64>(), 10);
        assert_eq!(outcome.errors[1], 0, "multiples of 10 are even");
        assert_eq!(outcome.first_error.as_deref(), Some("boom"));
    }

    #[tokio::test]
    async fn open_loop_charges_queueing_to_latency() {
        // One slot, 10 ms per request, arrivals every 1 ms: each waits behind the previous.
        let limits = Limits {
            duration: Duration::from_secs(10),
            max_operations: Some(20),
        };
        let mode = Mode::Open {
            rate: 1_000.0,
            max_in_flight: 1,
        };
        let outcome = run(mode, limits, 1, |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            (0, Ok(()))
        })
        .await;
        assert_eq!(outcome.ok[0], 20);
        assert!(
            outcome.latency[0].max() >= 150_000,
            "the last arrival waited for the 19 before it: {} µs",
            outcome.latency[0].max()
        );
    }
}
