//! Latency histograms with fixed buckets, rendered in the Prometheus text format.
//!
//! A sample is three relaxed atomic additions and the histogram's memory never grows.
//! (The exporter's own histograms keep every sample until the next scrape, so a server
//! under load that nobody scrapes grew by about a megabyte a second.)

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds (50 µs to 2.5 s); the last bucket,
/// `+Inf`, takes the rest.
const BOUNDS_NANOS: [u64; 15] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Counts of samples per bucket, their sum and their count.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Samples per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts one sample.
    pub(crate) fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of this histogram; `labels` is
    /// the label list without braces (`method="GET",route="/x"`), possibly empty.
    /// How many samples were counted.
    pub(crate) fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn render(&self, name: &str, labels: &str, out: &mut String) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let _ = match BOUNDS_NANOS.get(bucket) {
                Some(&bound) => writeln!(
                    out,
                    "{name}_bucket{{{labels}{separator}le=\"{}\"}} {cumulative}",
                    seconds(bound)
                ),
                None => writeln!(
                    out,
                    "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
                ),
            };
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = seconds(self.sum_nanos.load(Ordering::Relaxed));
        // The count is the +Inf bucket, so the two agree even while samples arrive.
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "seconds for display; sub-nanosecond precision is not needed"
)]
fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(histogram: &Histogram, labels: &str) -> Vec<String> {
        let mut out = String::new();
        histogram.render("latency_seconds", labels, &mut out);
        out.lines().map(str::to_owned).collect()
    }

    #[test]
    fn buckets_are_cumulative_and_the_count_is_the_inf_bucket() {
        let histogram = Histogram::default();
        for micros in [10, 50, 51, 700, 3_000_000, 9_000_000] {
            histogram.record(Duration::from_micros(micros));
        }
        let lines = rendered(&histogram, "op=\"insert\"");
        assert_eq!(lines.len(), BOUNDS_NANOS.len() + 3);
        // 10 µs and exactly 50 µs fall in the first bucket (upper bounds are inclusive).
        assert_eq!(
            lines[0],
            "latency_seconds_bucket{op=\"insert\",le=\"0.00005\"} 2"
        );
        assert_eq!(
            lines[1],
            "latency_seconds_bucket{op=\"insert\",le=\"0.0001\"} 3"
        );
        assert_eq!(
            lines[4],
            "latency_seconds_bucket{op=\"insert\",le=\"0.001\"} 4"
        );
        assert_eq!(
            lines[14],
            "latency_seconds_bucket{op=\"insert\",le=\"2.5\"} 4"
        );
        assert_eq!(
            lines[15],
            "latency_seconds_bucket{op=\"insert\",le=\"+Inf\"} 6"
        );
        assert_eq!(lines[16], "latency_seconds_sum{op=\"insert\"} 12.000811");
        assert_eq!(lines[17], "latency_seconds_count{op=\"insert\"} 6");
    }

    #[test]
    fn renders_without_labels() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_millis(2));
        let lines = rendered(&histogram, "");
        assert_eq!(lines[5], "latency_seconds_bucket{le=\"0.0025\"} 1");
        assert_eq!(lines[17], "latency_seconds_count 1");
    }

    #[test]
    fn an_absurd_duration_lands_in_the_last_bucket() {
        let histogram = Histogram::default();
        histogram.record(Duration::MAX);
        let lines = rendered(&histogram, "");
        assert_eq!(lines[14], "latency_seconds_bucket{le=\"2.5\"} 0");
        assert_eq!(lines[15], "latency_seconds_bucket{le=\"+Inf\"} 1");
    }
}
