//! What each endpoint's probes have done since start: attempts, failures, a latency
//! histogram of the successful ones, and the last failure. Counted where the results are
//! applied ([`crate::steering::steer`]), for metrics and `hotpool status`.

use std::time::{Duration, Instant};

use crate::steering::health::ProbeOutcome;

/// Upper bounds (seconds) of the probe latency histogram's buckets; one more bucket takes
/// everything slower. Probe timeouts are at most 2 s.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Successful probe latencies by bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Samples per bucket of [`LATENCY_BUCKETS`] (not cumulative), then the overflow.
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the samples, seconds.
    pub sum: f64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, latency: Duration) {
        let s = latency.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&bound| s <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
    }

    /// Samples observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One endpoint's probe record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeTally {
    /// Results received.
    pub attempts: u64,
    /// Failed ones among them.
    pub failures: u64,
    pub latency: LatencyHistogram,
    /// When the last failure arrived and what it said.
    pub last_failure: Option<(Instant, String)>,
}

impl ProbeTally {
    /// Counts one result that arrived at `at`.
    pub fn record(&mut self, at: Instant, outcome: &ProbeOutcome) {
        self.attempts += 1;
        if outcome.ok {
            if let Some(latency) = outcome.latency {
                self.latency.observe(latency);
            }
        } else {
            self.failures += 1;
            self.last_failure = Some((at, outcome.detail.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_attempts_failures_and_latency_buckets() {
        let mut t = ProbeTally::default();
        let at = Instant::now();
        t.record(
            at,
            &ProbeOutcome::success(Duration::from_micros(800), "HTTP 200"),
        );
        t.record(
            at,
            &ProbeOutcome::success(Duration::from_millis(1), "HTTP 200"),
        );
        t.record(
            at,
            &ProbeOutcome::success(Duration::from_millis(30), "HTTP 200"),
        );
        t.record(
            at,
            &ProbeOutcome::success(Duration::from_secs(3), "HTTP 200"),
        );
        t.record(at, &ProbeOutcome::failure("connection refused"));
        assert_eq!((t.attempts, t.failures), (5, 1));
        assert_eq!(t.latency.counts[0], 2, "≤ 1 ms, the bound included");
        assert_eq!(t.latency.counts[5], 1, "25-50 ms");
        assert_eq!(t.latency.counts[LATENCY_BUCKETS.len()], 1, "overflow");
        assert_eq!(t.latency.count(), 4, "failures have no latency");
        assert!((t.latency.sum - 3.0318).abs() < 1e-9, "{}", t.latency.sum);
        assert_eq!(t.last_failure, Some((at, "connection refused".to_string())));
    }
}
