//! The gateway's adaptive bound on GraphQL requests in progress.
//!
//! A fixed bound cannot both let a quiet gateway use its capacity and keep
//! latency low once it is saturated: past capacity, every request admitted
//! beyond what the CPUs get through just waits, so latency grows with the
//! bound. This limiter learns instead. It keeps a **baseline**, the lowest
//! mean latency of recent 100 ms windows (drifting up slowly, so a baseline
//! from a lighter workload is forgotten). When a window's mean latency
//! exceeds twice the baseline, the bound shrinks by a tenth; otherwise it
//! grows by one, up to `limits.max_in_flight_requests` (AIMD, as TCP
//! congestion control). The baseline only drifts up in windows where no
//! request was refused: under sustained overload it stays put, so the
//! protection does not wear off, while a heavier workload the gateway keeps
//! up with is learned. A request finding every slot taken is refused at
//! once (503, `Retry-After`, `RATE_LIMITED`), so the admitted ones keep
//! about twice their unloaded latency.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long latency is averaged before the bound moves.
const WINDOW: Duration = Duration::from_millis(100);
/// Fewest requests a window needs to say anything.
const MIN_SAMPLES: u32 = 10;
/// Latency (a window's mean over the baseline) past which the bound shrinks.
const TOLERANCE: f64 = 2.0;
/// How much of the gap to a higher window mean the baseline moves up per
/// window: slow enough that overload cannot raise it, fast enough that a
/// heavier workload is learned within a minute.
const BASELINE_DRIFT: f64 = 0.005;
/// The bound never shrinks below this (or the ceiling, if lower): a
/// saturated gateway still serves.
const MIN_LIMIT: usize = 4;

/// The bound and its state; clones share it.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    max: usize,
    floor: usize,
    /// Whether latency moves the bound (`false`: it stays at `max`).
    adaptive: bool,
    shed: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    samples: u32,
    total: Duration,
    /// Whether a request was refused during the window.
    refused: bool,
    /// Mean latency the bound is judged against, in seconds (`None` until
    /// the first full window).
    baseline: Option<f64>,
}

/// A request's slot: frees it, and reports the request's latency, when dropped.
#[derive(Debug)]
pub struct Slot {
    limit: AdaptiveLimit,
    admitted: Instant,
}

impl AdaptiveLimit {
    /// A bound of at most `max` (at least 1), starting there.
    pub fn new(max: usize) -> Self {
        Self::build(max, true)
    }

    fn build(max: usize, adaptive: bool) -> Self {
        let max = max.max(1);
        Self {
            shared: Arc::new(Shared {
                in_flight: AtomicUsize::new(0),
                limit: AtomicUsize::new(max),
                max,
                floor: MIN_LIMIT.min(max),
                adaptive,
                shed: AtomicU64::new(0),
                window: Mutex::new(Window {
                    started: Instant::now(),
                    samples: 0,
                    total: Duration::ZERO,
                    refused: false,
                    baseline: None,
                }),
            }),
        }
    }

    /// A bound that stays at `max` (at least 1) whatever the latency
    /// (`limits.adaptive_in_flight = false`).
    pub fn fixed(max: usize) -> Self {
        Self::build(max, false)
    }

    /// A slot, or `None` when every slot is taken (the refusal is counted).
    pub fn admit(&self) -> Option<Slot> {
        let shared = &self.shared;
        let taken = shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if taken >= shared.limit.load(Ordering::Acquire) {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            shared.shed.fetch_add(1, Ordering::Relaxed);
            shared
                .window
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refused = true;
            return None;
        }
        Some(Slot {
            limit: self.clone(),
            admitted: Instant::now(),
        })
    }

    /// Requests refused so far.
    pub fn shed(&self) -> u64 {
        self.shared.shed.load(Ordering::Relaxed)
    }

    /// The bound now.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// The ceiling (`limits.max_in_flight_requests`).
    pub fn max(&self) -> usize {
        self.shared.max
    }

    /// Counts one finished request's latency, at `now`, moving the bound at
    /// the end of a window.
    fn observe(&self, latency: Duration, now: Instant) {
        let shared = &self.shared;
        if !shared.adaptive {
            return;
        }
        let mut window = shared.window.lock().unwrap_or_else(|p| p.into_inner());
        window.samples += 1;
        window.total += latency;
        if now.duration_since(window.started) < WINDOW {
            return;
        }
        if window.samples >= MIN_SAMPLES {
            let mean = window.total.as_secs_f64() / f64::from(window.samples);
            let baseline = match window.baseline {
                // Overloaded: the baseline holds (see the module docs).
                Some(baseline) if mean >= baseline && window.refused => baseline,
                Some(baseline) if mean >= baseline => baseline + (mean - baseline) * BASELINE_DRIFT,
                _ => mean,
            };
            window.baseline = Some(baseline);
            let limit = shared.limit.load(Ordering::Acquire);
            let next = if mean > TOLERANCE * baseline {
                limit.saturating_sub((limit / 10).max(1)).max(shared.floor)
            } else {
                (limit + 1).min(shared.max)
            };
            shared.limit.store(next, Ordering::Release);
        }
        window.started = now;
        window.samples = 0;
        window.total = Duration::ZERO;
        window.refused = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        self.limit.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.limit.observe(now.duration_since(self.admitted), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `windows` windows of 20 requests taking `latency` each, with a
    /// refusal in each when `refusing`.
    fn feed(limit: &AdaptiveLimit, now: &mut Instant, windows: u32, latency: u64, refusing: bool) {
        let latency = Duration::from_millis(latency);
        for _ in 0..windows {
            if refusing {
                limit.shared.window.lock().unwrap().refused = true;
            }
            for _ in 0..20 {
                limit.observe(latency, *now);
            }
            *now += WINDOW;
            limit.observe(latency, *now);
        }
    }

    #[test]
    fn a_fixed_bound_stays_at_its_ceiling_however_slow_requests_get() {
        let limit = AdaptiveLimit::fixed(64);
        let mut now = Instant::now();
        feed(&limit, &mut now, 5, 10, false);
        feed(&limit, &mut now, 20, 500, true);
        assert_eq!(limit.limit(), 64);
        let slots: Vec<Slot> = (0..64).map(|_| limit.admit().expect("a slot")).collect();
        assert!(limit.admit().is_none(), "the 65th request is refused");
        drop(slots);
        assert!(limit.admit().is_some());
    }

    #[test]
    fn the_bound_shrinks_past_twice_the_baseline_recovers_and_holds_under_overload() {
        let limit = AdaptiveLimit::new(256);
        let mut now = Instant::now();
        feed(&limit, &mut now, 5, 10, false);
        assert_eq!(limit.limit(), 256, "at the ceiling at its baseline");
        feed(&limit, &mut now, 10, 50, true);
        let shrunk = limit.limit();
        assert!(
            shrunk < 256 * 2 / 5,
            "five times the baseline shrinks it: {shrunk}"
        );
        feed(&limit, &mut now, 10, 15, false);
        assert_eq!(
            limit.limit(),
            shrunk + 10,
            "within tolerance: one more a window"
        );
        // Sustained overload, refusing all along: the baseline holds, so
        // the bound stays down however long it lasts.
        feed(&limit, &mut now, 3_000, 60, true);
        assert_eq!(limit.limit(), MIN_LIMIT, "down to the floor, never below");
    }

    #[test]
    fn a_heavier_workload_kept_up_with_becomes_the_baseline() {
        let limit = AdaptiveLimit::new(64);
        let mut now = Instant::now();
        feed(&limit, &mut now, 5, 1, false);
        // Slower requests, none refused: the bound dips, then the baseline
        // learns them and the bound climbs back to its ceiling.
        feed(&limit, &mut now, 10, 10, false);
        assert!(limit.limit() < 64);
        feed(&limit, &mut now, 3_000, 10, false);
        assert_eq!(limit.limit(), 64);
    }

    #[test]
    fn slots_are_refused_past_the_bound_and_freed_when_dropped() {
        let limit = AdaptiveLimit::new(2);
        let slots: Vec<Slot> = (0..2).map(|_| limit.admit().expect("a slot")).collect();
        assert!(limit.admit().is_none());
        assert_eq!(limit.shed(), 1);
        drop(slots);
        assert!(limit.admit().is_some());
    }

    #[test]
    fn a_window_with_too_few_requests_moves_nothing() {
        let limit = AdaptiveLimit::new(100);
        let mut now = Instant::now();
        feed(&limit, &mut now, 3, 10, false);
        for _ in 0..5 {
            now += WINDOW;
            limit.observe(Duration::from_secs(1), now);
        }
        assert_eq!(limit.limit(), 100);
    }
}
