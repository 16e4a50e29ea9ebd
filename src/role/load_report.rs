//! What a load run (`role/load.rs`) measured: the report it prints or
//! writes as JSON, and the per-connection tally it is summed from.

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Connections used.
    pub connections: usize,
    /// Calls answered.
    pub calls: u64,
    /// Replies carrying an error.
    pub error_replies: u64,
    /// Expectation failures (`expect`, captures).
    pub failures: u64,
    /// Connections that ended early (closed, malformed reply, timeout).
    pub broken: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Calls per second.
    pub calls_per_sec: f64,
    /// Latency percentiles, microseconds.
    pub latency_us: Percentiles,
    /// The first few problems, for people.
    pub problems: Vec<String>,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LoadReport {
    /// True when every call was answered and every expectation held.
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.broken == 0
    }

    /// A few readable lines.
    pub fn render(&self) -> String {
        let l = &self.latency_us;
        let mut out = format!(
            "{} calls on {} connections in {:.2} s: {:.0} calls/s\n\
             latency µs: min {} p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.1})\n",
            self.calls,
            self.connections,
            self.seconds,
            self.calls_per_sec,
            l.min,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean
        );
        if self.error_replies + self.failures + self.broken > 0 {
            out.push_str(&format!(
                "{} error replies, {} failed expectations, {} connections ended early\n",
                self.error_replies, self.failures, self.broken
            ));
        }
        for p in &self.problems {
            out.push_str(&format!("  {p}\n"));
        }
        out
    }
}

/// What one connection found.
pub(super) struct Tally {
    pub(super) hist: Histogram<u64>,
    pub(super) error_replies: u64,
    pub(super) failures: u64,
    pub(super) broken: bool,
    pub(super) problems: Vec<String>,
}

pub(super) const MAX_PROBLEMS: usize = 5;

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Keeps the first few problems of a connection.
pub(super) fn problem(tally: &mut Tally, text: String) {
    if tally.problems.len() < MAX_PROBLEMS {
        tally.problems.push(text);
    }
}
