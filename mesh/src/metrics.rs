//! Prometheus metrics: one registry per process, rendered in the text
//! exposition format at `/metrics` (the gateway's HTTP port, and each
//! service's `server.metrics_listen_addr`).
//!
//! Handles are looked up by name and labels ([`counter`], [`gauge`],
//! [`histogram`]) and are cheap to clone; code on a hot path keeps its
//! handle. Values a service already counts elsewhere (its status counters)
//! are read when scraped, through [`counter_fn`] and [`gauge_fn`], rather
//! than counted twice. In the single-process stack every service shares the
//! registry, so series carry a `service` (or `group`) label to tell them apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets: half a
/// millisecond (an in-memory read) to ten seconds (a call's deadline).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency distribution over [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug, Default)]
struct HistogramCells {
    /// Observations at or below each bucket's bound (not cumulative; the
    /// renderer sums them), then one for those above the last bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

type ReadFn = Box<dyn Fn() -> f64 + Send + Sync>;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
    /// A value read when scraped.
    Read(ReadFn),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

struct Family {
    help: &'static str,
    kind: Kind,
    /// Keyed by the rendered label set (`a="1",b="2"`).
    series: BTreeMap<String, Series>,
}

/// The process's metrics.
#[derive(Default)]
struct Registry {
    families: RwLock<BTreeMap<&'static str, Family>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// The counter `name` with `labels`, registered on first use.
pub fn counter(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
    handle(
        name,
        help,
        Kind::Counter,
        labels,
        |series| match series {
            Series::Counter(counter) => Some(counter.clone()),
            _ => None,
        },
        || Series::Counter(Counter::default()),
    )
}

/// The gauge `name` with `labels`, registered on first use.
pub fn gauge(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
    handle(
        name,
        help,
        Kind::Gauge,
        labels,
        |series| match series {
            Series::Gauge(gauge) => Some(gauge.clone()),
            _ => None,
        },
        || Series::Gauge(Gauge::default()),
    )
}

/// The latency histogram `name` (seconds) with `labels`, registered on first use.
pub fn histogram(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Histogram {
    handle(
        name,
        help,
        Kind::Histogram,
        labels,
        |series| match series {
            Series::Histogram(histogram) => Some(histogram.clone()),
            _ => None,
        },
        || Series::Histogram(Histogram::default()),
    )
}

/// A counter whose value `read` returns when scraped (a count the service
/// keeps anyway). Registering the same series again replaces the reader:
/// the latest instance of a component in this process is the one shown.
pub fn counter_fn(
    name: &'static str,
    help: &'static str,
    labels: &[(&str, &str)],
    read: impl Fn() -> u64 + Send + Sync + 'static,
) {
    register_read(
        name,
        help,
        Kind::Counter,
        labels,
        Box::new(move || read() as f64),
    );
}

/// A gauge whose value `read` returns when scraped; see [`counter_fn`].
pub fn gauge_fn(
    name: &'static str,
    help: &'static str,
    labels: &[(&str, &str)],
    read: impl Fn() -> f64 + Send + Sync + 'static,
) {
    register_read(name, help, Kind::Gauge, labels, Box::new(read));
}

fn register_read(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &[(&str, &str)],
    read: ReadFn,
) {
    let key = label_key(labels);
    let mut families = REGISTRY
        .families
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let family = family_of(&mut families, name, help, kind);
    family.series.insert(key, Series::Read(read));
}

fn family_of<'a>(
    families: &'a mut BTreeMap<&'static str, Family>,
    name: &'static str,
    help: &'static str,
    kind: Kind,
) -> &'a mut Family {
    let family = families.entry(name).or_insert_with(|| Family {
        help,
        kind,
        series: BTreeMap::new(),
    });
    // One name, one type: a second registration with another type is a
    // programming error the tests catch.
    debug_assert!(family.kind == kind, "metric {name} registered as two types");
    family
}

fn handle<T>(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &[(&str, &str)],
    existing: impl Fn(&Series) -> Option<T>,
    new: impl FnOnce() -> Series,
) -> T {
    let key = label_key(labels);
    {
        let families = REGISTRY
            .families
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = families
            .get(name)
            .and_then(|family| family.series.get(&key))
            .and_then(&existing)
        {
            return found;
        }
    }
    let mut families = REGISTRY
        .families
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let family = family_of(&mut families, name, help, kind);
    let series = family.series.entry(key).or_insert_with(new);
    if let Some(found) = existing(series) {
        return found;
    }
    // A reader registered under this series earlier: a live handle replaces it.
    *series = new_of_kind(kind);
    existing(series).expect("a new series of the family's kind")
}

fn new_of_kind(kind: Kind) -> Series {
    match kind {
        Kind::Counter => Series::Counter(Counter::default()),
        Kind::Gauge => Series::Gauge(Gauge::default()),
        Kind::Histogram => Series::Histogram(Histogram::default()),
    }
}

/// `a="1",b="2"`, values escaped as the exposition format requires.
fn label_key(labels: &[(&str, &str)]) -> String {
    let mut key = String::new();
    for (index, (name, value)) in labels.iter().enumerate() {
        if index > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => key.push_str("\\\\"),
                '"' => key.push_str("\\\""),
                '\n' => key.push_str("\\n"),
                c => key.push(c),
            }
        }
        key.push('"');
    }
    key
}

/// Every metric of this process in the Prometheus text format (0.0.4).
pub fn render() -> String {
    let families = REGISTRY
        .families
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    for (name, family) in families.iter() {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
        for (labels, series) in &family.series {
            match series {
                Series::Counter(counter) => {
                    sample(&mut out, name, "", labels, counter.get() as f64)
                }
                Series::Gauge(gauge) => sample(&mut out, name, "", labels, gauge.get() as f64),
                Series::Read(read) => sample(&mut out, name, "", labels, read()),
                Series::Histogram(histogram) => render_histogram(&mut out, name, labels, histogram),
            }
        }
    }
    out
}

fn render_histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let cells = &histogram.0;
    let mut cumulative = 0;
    let separator = if labels.is_empty() { "" } else { "," };
    for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += cells.buckets[index].load(Ordering::Relaxed);
        let bucket_labels = format!("{labels}{separator}le=\"{bound}\"");
        sample(out, name, "_bucket", &bucket_labels, cumulative as f64);
    }
    cumulative += cells.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
    let bucket_labels = format!("{labels}{separator}le=\"+Inf\"");
    sample(out, name, "_bucket", &bucket_labels, cumulative as f64);
    let sum = cells.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    sample(out, name, "_sum", labels, sum);
    // The count is the +Inf bucket, read once, so the two always agree.
    sample(out, name, "_count", labels, cumulative as f64);
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, value: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name}{suffix} {value}");
    } else {
        let _ = writeln!(out, "{name}{suffix}{{{labels}}} {value}");
    }
}

/// The `/metrics` HTTP route: the registry rendered, with the exposition
/// format's content type.
pub async fn serve_metrics() -> impl axum::response::IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `render()` that start with `prefix`.
    fn lines(prefix: &str) -> Vec<String> {
        render()
            .lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn counters_and_gauges_render_with_escaped_labels() {
        let requests = counter(
            "warble_test_requests_total",
            "Requests.",
            &[("method", "/a\"b"), ("code", "OK")],
        );
        requests.add(3);
        counter(
            "warble_test_requests_total",
            "Requests.",
            &[("method", "/a\"b"), ("code", "OK")],
        )
        .inc();
        gauge("warble_test_depth", "Depth.", &[]).set(-2);
        assert_eq!(
            lines("warble_test_requests_total"),
            vec![r#"warble_test_requests_total{method="/a\"b",code="OK"} 4"#]
        );
        assert_eq!(lines("warble_test_depth"), vec!["warble_test_depth -2"]);
        assert!(render().contains("# TYPE warble_test_requests_total counter\n"));
    }

    #[test]
    fn histograms_are_cumulative_and_count_every_observation() {
        let latency = histogram(
            "warble_test_latency_seconds",
            "Latency.",
            &[("service", "x")],
        );
        latency.observe(Duration::from_micros(300));
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(60));
        let rendered = lines("warble_test_latency_seconds");
        assert!(
            rendered.contains(
                &r#"warble_test_latency_seconds_bucket{service="x",le="0.0005"} 1"#.to_owned()
            ),
            "{rendered:?}"
        );
        assert!(
            rendered.contains(
                &r#"warble_test_latency_seconds_bucket{service="x",le="0.005"} 2"#.to_owned()
            ),
            "{rendered:?}"
        );
        assert!(
            rendered.contains(
                &r#"warble_test_latency_seconds_bucket{service="x",le="10"} 2"#.to_owned()
            ),
            "{rendered:?}"
        );
        assert!(
            rendered.contains(
                &r#"warble_test_latency_seconds_bucket{service="x",le="+Inf"} 3"#.to_owned()
            ),
            "{rendered:?}"
        );
        assert!(
            rendered.contains(&r#"warble_test_latency_seconds_count{service="x"} 3"#.to_owned()),
            "{rendered:?}"
        );
        let sum: f64 = rendered
            .iter()
            .find_map(|line| line.strip_prefix(r#"warble_test_latency_seconds_sum{service="x"} "#))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 60.0033).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn read_series_are_read_when_scraped_and_the_latest_reader_wins() {
        let source = Arc::new(AtomicU64::new(5));
        let reader = source.clone();
        counter_fn(
            "warble_test_read_total",
            "Read.",
            &[("group", "g")],
            move || reader.load(Ordering::Relaxed),
        );
        source.store(9, Ordering::Relaxed);
        assert_eq!(
            lines("warble_test_read_total"),
            vec![r#"warble_test_read_total{group="g"} 9"#]
        );
        gauge_fn("warble_test_read_gauge", "Read.", &[], || 1.5);
        gauge_fn("warble_test_read_gauge", "Read.", &[], || 2.5);
        assert_eq!(
            lines("warble_test_read_gauge"),
            vec!["warble_test_read_gauge 2.5"]
        );
    }
}
