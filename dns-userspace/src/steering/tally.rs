//! What each endpoint's probes have done since start: attempts, failures (the endpoint's,
//! and local ones that are no verdict), runs that started late, a latency histogram of the
//! successful ones, and the last failure; and the same for every endpoint together
//! ([`ProbeTotals`]). Counted where the results are applied ([`crate::steering::steer`]),
//! for metrics and `hotpool status`.

use std::time::{Duration, Instant};

use crate::steering::{
    health::ProbeOutcome,
    probe::{LocalFailure, LocalReason, ProbeReport},
};

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
///
/// What most endpoints never need is boxed and allocated when first needed: the latency
/// histogram (an endpoint that never answers has none; 104 bytes otherwise) and the last
/// local failure (rare). A record is 88 bytes instead of 216, which is 5 MB less for
/// 40 000 endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeTally {
    /// Runs that finished: verdicts and local failures.
    pub attempts: u64,
    /// Failed verdicts among them (counted against the endpoint).
    pub failures: u64,
    /// Runs that failed on this host: no verdict ([`LocalFailure`]).
    pub local_failures: u64,
    /// Runs that started late (`crate::steering::probe::late_after`).
    pub late: u64,
    /// Successful latencies; `None` before the first.
    latency: Option<Box<LatencyHistogram>>,
    /// When the last failure arrived and what it said.
    pub last_failure: Option<(Instant, String)>,
    /// When the last local failure happened and what it said.
    last_local_failure: Option<Box<(Instant, String)>>,
}

/// The histogram of an endpoint without a successful probe.
static NO_LATENCY: LatencyHistogram = LatencyHistogram {
    counts: [0; LATENCY_BUCKETS.len() + 1],
    sum: 0.0,
};

impl ProbeTally {
    /// Counts one result that arrived at `at`.
    pub fn record(&mut self, at: Instant, outcome: &ProbeOutcome) {
        self.attempts += 1;
        if outcome.ok {
            if let Some(latency) = outcome.latency {
                self.latency.get_or_insert_default().observe(latency);
            }
        } else {
            self.failures += 1;
            // The text in place: a blackholed endpoint fails every interval, and a new
            // string each time would churn the heap under long-lived state.
            match &mut self.last_failure {
                Some((when, what)) => {
                    *when = at;
                    what.clone_from(&outcome.detail);
                }
                None => self.last_failure = Some((at, outcome.detail.clone())),
            }
        }
    }

    /// Counts a run that failed on this host at `at`.
    pub fn record_local(&mut self, at: Instant, failure: &LocalFailure) {
        self.attempts += 1;
        self.local_failures += 1;
        self.last_local_failure = Some(Box::new((at, failure.to_string())));
    }

    /// The successful probes' latencies (empty before the first).
    pub fn latency(&self) -> &LatencyHistogram {
        self.latency.as_deref().unwrap_or(&NO_LATENCY)
    }

    /// When the last local failure happened and what it said.
    pub fn last_local_failure(&self) -> Option<&(Instant, String)> {
        self.last_local_failure.as_deref()
    }

    /// Counts a run that started late.
    pub fn count_late(&mut self) {
        self.late += 1;
    }
}

/// Every endpoint's probes together since start-up, endpoints a reload removed included.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeTotals {
    /// Runs that finished.
    pub attempts: u64,
    /// Failed verdicts.
    pub failures: u64,
    /// Local failures by reason, in [`LocalReason::ALL`]'s order.
    pub local_failures: [u64; LocalReason::ALL.len()],
    /// Runs that started late.
    pub late: u64,
}

impl ProbeTotals {
    pub fn record(&mut self, report: &ProbeReport) {
        self.attempts += 1;
        self.late += u64::from(report.late);
        match &report.attempt {
            Ok(outcome) if outcome.ok => {}
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

    /// (reason, count) for every reason.
    pub fn local_failures_by_reason(&self) -> impl Iterator<Item = (LocalReason, u64)> + '_ {
        LocalReason::ALL.iter().copied().zip(self.local_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_attempts_failures_and_latency_buckets() {
        let mut t = ProbeTally::default();
        let at = Instant::now();
        t.record(at, &ProbeOutcome::failure("timeout after 1s"));
        assert_eq!(t.latency(), &LatencyHistogram::default(), "no success yet");
        assert!(
            t.latency.is_none(),
            "no histogram allocated before a success"
        );
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
        assert_eq!((t.attempts, t.failures), (6, 2));
        assert_eq!(t.latency().counts[0], 2, "≤ 1 ms, the bound included");
        assert_eq!(t.latency().counts[5], 1, "25-50 ms");
        assert_eq!(t.latency().counts[LATENCY_BUCKETS.len()], 1, "overflow");
        assert_eq!(t.latency().count(), 4, "failures have no latency");
        assert!(
            (t.latency().sum - 3.0318).abs() < 1e-9,
            "{}",
            t.latency().sum
        );
        assert_eq!(t.last_failure, Some((at, "connection refused".to_string())));
    }
}
