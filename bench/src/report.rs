//! What every run prints (a human table) and writes (a JSON summary).
//!
//! The JSON shape is stable (`schema_version`) so plots and CI read it:
//! `measurements` hold one row each (throughput, HDR latency percentiles,
//! errors), `ratios` compare a figure with its same-run ceiling, `checks`
//! record what the run verified (posted tweets delivered, errors), and
//! `targets` state each goal from the issue with met / not met.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::system::Machine;

/// Version of the JSON layout below.
pub const SCHEMA_VERSION: u32 = 1;

/// Latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `elapsed` into `histogram` (saturating at its bounds).
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(elapsed.as_micros().max(1) as u64);
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl Latency {
    /// Summarises `histogram`.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// One measured row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Row name, e.g. `homeTimeline(first: 20) c=16`.
    pub name: String,
    /// Dimensions of the row (`backend`, `concurrency`, `followers`, ...), for plots.
    pub labels: BTreeMap<String, serde_json::Value>,
    /// Operations completed (requests, or deliveries for fan-out rows).
    pub operations: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall time the operations took, in seconds.
    pub duration_s: f64,
    /// `operations / duration_s`.
    pub throughput_per_s: f64,
    /// What `throughput_per_s` counts (`requests`, `deliveries`, ...).
    pub unit: String,
    /// Latency of each operation, when measured.
    pub latency: Option<Latency>,
    /// Anything else this row measured (bytes, counts).
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Measurement {
    /// A row named `name` counting `unit`.
    pub fn new(name: impl Into<String>, unit: &str) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
            ..Self::default()
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an extra figure.
    pub fn with_extra(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Sets the operation count and duration (and so the throughput).
    pub fn with_throughput(mut self, operations: u64, duration: Duration) -> Self {
        self.operations = operations;
        self.duration_s = duration.as_secs_f64();
        self.throughput_per_s = if self.duration_s > 0.0 {
            operations as f64 / self.duration_s
        } else {
            0.0
        };
        self
    }

    /// Sets the latency summary.
    pub fn with_latency(mut self, histogram: &Histogram<u64>) -> Self {
        self.latency = Some(Latency::from_histogram(histogram));
        self
    }
}

/// A figure divided by its same-run reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The measured figure's row.
    pub numerator: String,
    /// The reference row (a ceiling or another layer).
    pub denominator: String,
    /// numerator / denominator.
    pub value: f64,
}

/// A goal from the issue and whether this run met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The goal as stated.
    pub goal: String,
    /// What was measured, in words and numbers.
    pub measured: String,
    /// Whether it was met. Smoke runs never claim a target (their sizes differ).
    pub met: Option<bool>,
}

/// What the run verified about what it observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    /// Tweets posted during measurement.
    pub tweets_posted: u64,
    /// Timeline deliveries those posts had to make (follower timelines, built or pushed).
    pub deliveries_expected: u64,
    /// Deliveries seen in the timelines afterwards.
    pub deliveries_verified: u64,
    /// Failed operations across every row.
    pub errors: u64,
    /// Events fanout-svc dead-lettered (must be 0).
    pub dead_letters: u64,
    /// Problems found, in words; empty when everything checked out.
    pub failures: Vec<String>,
}

impl Checks {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
            && self.errors == 0
            && self.dead_letters == 0
            && self.deliveries_verified == self.deliveries_expected
    }

    /// Records a failed expectation.
    pub fn fail(&mut self, failure: impl Into<String>) {
        self.failures.push(failure.into());
    }
}

/// One run of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// `smoke` or `full`.
    pub size: String,
    /// The command line that produced this report.
    pub command: String,
    /// Build profile of the binary (`release` or `debug`).
    pub profile: String,
    /// Where it ran.
    pub machine: Machine,
    /// Unix milliseconds at the start.
    pub started_at_ms: u64,
    /// Wall time of the whole run, set-up included.
    pub wall_s: f64,
    /// The scenario's parameters.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The rows.
    pub measurements: Vec<Measurement>,
    /// Same-run comparisons.
    pub ratios: Vec<Ratio>,
    /// Goals from the issue.
    pub targets: Vec<Target>,
    /// What was verified.
    pub checks: Checks,
    /// Caveats worth reading beside the numbers.
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str, smoke: bool) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            scenario: scenario.into(),
            size: if smoke { "smoke" } else { "full" }.into(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            machine: Machine::detect(),
            started_at_ms: warble_mesh::time::now_ms(),
            wall_s: 0.0,
            params: BTreeMap::new(),
            measurements: Vec::new(),
            ratios: Vec::new(),
            targets: Vec::new(),
            checks: Checks::default(),
            notes: Vec::new(),
        }
    }

    /// Records a parameter.
    pub fn param(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.params.insert(key.into(), value.into());
    }

    /// The row named `name`.
    pub fn measurement(&self, name: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.name == name)
    }

    /// Adds `numerator / denominator` (by row name, on throughput) when both exist.
    pub fn ratio_of_throughput(&mut self, name: &str, numerator: &str, denominator: &str) {
        let (Some(top), Some(bottom)) =
            (self.measurement(numerator), self.measurement(denominator))
        else {
            return;
        };
        if bottom.throughput_per_s > 0.0 {
            let value = top.throughput_per_s / bottom.throughput_per_s;
            self.ratios.push(Ratio {
                name: name.into(),
                numerator: numerator.into(),
                denominator: denominator.into(),
                value,
            });
        }
    }

    /// Adds a ratio of median latencies (`numerator` p50 / `denominator` p50).
    pub fn ratio_of_p50(&mut self, name: &str, numerator: &str, denominator: &str) {
        let p50 =
            |row: Option<&Measurement>| row.and_then(|m| m.latency.as_ref()).map(|l| l.p50_us);
        if let (Some(top), Some(bottom)) = (
            p50(self.measurement(numerator)),
            p50(self.measurement(denominator)),
        ) && bottom > 0
        {
            self.ratios.push(Ratio {
                name: name.into(),
                numerator: numerator.into(),
                denominator: denominator.into(),
                value: top as f64 / bottom as f64,
            });
        }
    }

    /// Adds a goal; `met` is dropped on smoke runs.
    pub fn target(&mut self, goal: &str, measured: String, met: bool) {
        let met = (self.size == "full").then_some(met);
        self.targets.push(Target {
            goal: goal.into(),
            measured,
            met,
        });
    }

    /// Sums row errors into the checks.
    pub fn finish(&mut self, wall: Duration) {
        self.wall_s = wall.as_secs_f64();
        self.checks.errors = self.measurements.iter().map(|m| m.errors).sum();
    }

    /// Writes the JSON summary to `path` (creating its directory).
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads a summary written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let report: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a benchmark summary", path.display()))?;
        anyhow::ensure!(
            report.schema_version == SCHEMA_VERSION,
            "{} has schema version {}, expected {SCHEMA_VERSION}",
            path.display(),
            report.schema_version
        );
        Ok(report)
    }

    /// The human table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "== warble-bench {} ({} size, {} build) on {} ({} cores) ==\n",
            self.scenario, self.size, self.profile, self.machine.cpu_model, self.machine.cores
        ));
        let headers = [
            "measurement",
            "ops",
            "errors",
            "rate/s",
            "unit",
            "p50",
            "p90",
            "p99",
            "max",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for m in &self.measurements {
            let latency = m.latency.clone().unwrap_or_default();
            let has_latency = m.latency.is_some();
            let cell = |us: u64| {
                if has_latency {
                    format_us(us)
                } else {
                    "-".into()
                }
            };
            rows.push(vec![
                m.name.clone(),
                m.operations.to_string(),
                m.errors.to_string(),
                format_rate(m.throughput_per_s),
                m.unit.clone(),
                cell(latency.p50_us),
                cell(latency.p90_us),
                cell(latency.p99_us),
                cell(latency.max_us),
            ]);
        }
        out.push_str(&table(&headers, &rows));
        let with_extra: Vec<&Measurement> = self
            .measurements
            .iter()
            .filter(|m| !m.extra.is_empty())
            .collect();
        if !with_extra.is_empty() {
            out.push_str("details:\n");
            for m in with_extra {
                let details: Vec<String> =
                    m.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("  {}: {}\n", m.name, details.join(" ")));
            }
        }
        if !self.ratios.is_empty() {
            out.push_str("ratios (same run):\n");
            for ratio in &self.ratios {
                out.push_str(&format!(
                    "  {:<48} {:>8.3}   ({} / {})\n",
                    ratio.name, ratio.value, ratio.numerator, ratio.denominator
                ));
            }
        }
        if !self.targets.is_empty() {
            out.push_str("targets:\n");
            for target in &self.targets {
                let verdict = match target.met {
                    Some(true) => "MET",
                    Some(false) => "NOT MET",
                    None => "n/a (smoke size)",
                };
                out.push_str(&format!(
                    "  [{verdict}] {}: {}\n",
                    target.goal, target.measured
                ));
            }
        }
        let checks = &self.checks;
        out.push_str(&format!(
            "checks: {} (posted {}, deliveries verified {}/{}, errors {}, dead letters {})\n",
            if checks.ok() { "ok" } else { "FAILED" },
            checks.tweets_posted,
            checks.deliveries_verified,
            checks.deliveries_expected,
            checks.errors,
            checks.dead_letters
        ));
        for failure in &checks.failures {
            out.push_str(&format!("  failure: {failure}\n"));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str(&format!("wall time {:.1} s\n", self.wall_s));
        out
    }
}

/// Formats microseconds with a readable unit.
pub fn format_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

fn format_rate(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}")
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(index, (cell, width))| {
                let pad = width - cell.chars().count();
                if index == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push_str(&format!(
        "|{}|\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    ));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}
