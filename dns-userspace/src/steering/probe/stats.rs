//! Probe accounting: per endpoint, what its probes did (attempts, successes, failures by
//! kind, late starts, a latency histogram), and the same in total. Pure counters fed with
//! [`ProbeReport`]s; steering keeps them and exposes them with its status.

use std::time::Duration;

use serde::Serialize;

use crate::steering::probe::{local::LocalReason, schedule::ProbeReport};

/// Upper bounds of the latency histogram's buckets (the last bucket is everything above):
/// 1 ms to 2.5 s, the range of probe timeouts (at most 2 s).
pub const LATENCY_BUCKETS: [Duration; 11] = [
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_micros(2_500_000),
];

/// Latencies of successful probes in [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyHistogram {
    /// Samples per bucket (not cumulative): `counts[i]` for the samples at most
    /// `LATENCY_BUCKETS[i]` and above the bucket before; the last one above every bound.
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of every sample, in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    pub fn record(&mut self, latency: Duration) {
        let i = LATENCY_BUCKETS.partition_point(|bound| *bound < latency);
        self.counts[i] += 1;
        self.sum_seconds += latency.as_secs_f64();
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (upper bound in seconds, samples at most that): Prometheus's cumulative buckets,
    /// ending with +Inf.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                total += n;
                let bound = LATENCY_BUCKETS
                    .get(i)
                    .map_or(f64::INFINITY, Duration::as_secs_f64);
                (bound, total)
            })
            .collect()
    }

    /// Adds `other`'s samples to these.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
    }
}

/// What one endpoint's probes did since it was configured (kept across reloads while the
/// endpoint stays).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProbeCounters {
    /// Runs that finished: successes + failures + local failures.
    pub attempts: u64,
    pub successes: u64,
    /// Failures that are verdicts on the endpoint (counted against it).
    pub failures: u64,
    /// Failures on our side: not verdicts ([`super::LocalFailure`]).
    pub local_failures: u64,
    /// Runs that started late ([`super::late_after`]).
    pub late: u64,
    /// Latencies of the successes.
    pub latency: LatencyHistogram,
    /// The last local failure, if any: "connect: Too many open files (os error 24) (out of
    /// file descriptors)".
    pub last_local_failure: Option<String>,
}

impl ProbeCounters {
    pub fn record(&mut self, report: &ProbeReport) {
        self.attempts += 1;
        self.late += u64::from(report.late);
        match &report.attempt {
            Ok(outcome) if outcome.ok => {
                self.successes += 1;
                if let Some(latency) = outcome.latency {
                    self.latency.record(latency);
                }
            }
            Ok(_) => self.failures += 1,
            Err(local) => {
                self.local_failures += 1;
                self.last_local_failure = Some(format!("{} ({})", local.detail, local.reason));
            }
        }
    }
}

/// Every endpoint's probes together since start-up (endpoints removed by a reload
/// included).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProbeTotals {
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    /// Local failures by reason, in [`LocalReason::ALL`]'s order.
    pub local_failures: [u64; LocalReason::ALL.len()],
    pub late: u64,
    pub latency: LatencyHistogram,
}

impl ProbeTotals {
    pub fn record(&mut self, report: &ProbeReport) {
        self.attempts += 1;
        self.late += u64::from(report.late);
        match &report.attempt {
            Ok(outcome) if outcome.ok => {
                self.successes += 1;
                if let Some(latency) = outcome.latency {
                    self.latency.record(latency);
                }
            }
            Ok(_) => self.failures += 1,
            Err(local) => {
                if let Some(i) = LocalReason::ALL.iter().position(|r| *r == local.reason) {
                    self.local_failures[i] += 1;
                }
            }
        }
    }

    /// Local failures of every reason.
    pub fn local_failures_total(&self) -> u64 {
        self.local_failures.iter().sum()
    }
}
