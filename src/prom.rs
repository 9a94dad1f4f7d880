//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! label escaping, metric headers and histograms shared by `serve`'s
//! `/metrics` (counts from the store) and the runner's own metrics
//! (`cojobs run --metrics`, counted in memory).
//!
//! Hand-written rather than the `prometheus-client` crate: the format is a
//! few lines of text, the runner's counters are plain atomics it already
//! keeps, and the crate's labelled families look a label set up in a map
//! behind a lock on every increment, which the runner's hot path must not
//! pay (docs/design.md#metrics).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the text format wants it: `\`, `"` and newlines
/// escaped (a job type written by plain SQL may hold anything).
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The `# HELP` and `# TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Bucket bounds (seconds) of run times.
pub const RUN_TIME_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Bucket bounds (seconds) of queue latencies.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// A histogram of durations in atomics: observing costs a few relaxed
/// atomic adds, no lock. Durations are kept in microseconds; the sum
/// saturates instead of wrapping.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative: `counts[i]` observations fell in bucket `i`; the
    /// last slot is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .sum_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(us))
            });
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |n, c| n.saturating_add(c.load(Ordering::Relaxed)))
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels`
    /// (`key="value"` pairs, already escaped, or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative = cumulative.saturating_add(c.load(Ordering::Relaxed));
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\\n"), r#"a\"b\\\n"#);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.01, 1.0]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        h.observe(Duration::MAX);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "type=\"t\"");
        assert!(
            out.contains("x_seconds_bucket{type=\"t\",le=\"0.01\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{type=\"t\",le=\"1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{type=\"t\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{type=\"t\"} 4\n"), "{out}");
        assert_eq!(h.count(), 4);
        let mut bare = String::new();
        Histogram::new(&[1.0]).render(&mut bare, "y", "");
        assert!(
            bare.contains("y_bucket{le=\"1\"} 0\n") && bare.contains("y_sum 0\n"),
            "{bare}"
        );
    }
}
