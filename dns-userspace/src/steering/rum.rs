//! Real user monitoring: latency and availability samples per (region, endpoint), posted
//! by an outside collector (`POST /api/rum`), kept until their TTL runs out.
//!
//! A region of a `geo` pool with `latency = "rum"` or `"blend"` uses them (see
//! [`LatencySource`](crate::steering::geo::LatencySource)):
//!
//! * its latency for an endpoint is the mean of the fresh samples' `latency_ms` (samples
//!   that say `available: false` carry no latency);
//! * the endpoint counts as down *in that region only* while more than half of the fresh
//!   samples that say anything about availability say `available: false`. Its health (the
//!   probes, shared by every region) is not touched.
//!
//! Samples are keyed by (region name, endpoint address as the config writes it); the
//! newest [`MAX_SAMPLES_PER_KEY`] of each key are kept.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::{Duration, Instant},
};

/// Most samples kept per (region, endpoint): older ones are dropped first.
pub const MAX_SAMPLES_PER_KEY: usize = 256;
/// Most samples in one batch.
pub const MAX_BATCH: usize = 10_000;
/// Longest TTL a batch may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// TTL of a batch that gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// One sample as accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RumSample {
    /// Round trip seen by users, when measured.
    pub latency: Option<Duration>,
    /// Whether users reached the endpoint, when said.
    pub available: Option<bool>,
}

#[derive(Clone, Copy, Debug)]
struct Stored {
    sample: RumSample,
    expires: Instant,
}

/// What the fresh samples of one (region, endpoint) say.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RumView {
    /// Mean latency of the fresh samples with one.
    pub latency: Option<Duration>,
    /// More than half of the fresh availability samples say unavailable.
    pub down: bool,
    /// How many fresh samples there are.
    pub samples: usize,
}

/// The samples, and their counters.
#[derive(Debug, Default)]
pub struct RumStore {
    samples: HashMap<(String, String), VecDeque<Stored>>,
    /// Samples accepted, rejected (with their batch), and expired, since start.
    pub accepted: u64,
    pub rejected: u64,
    pub expired: u64,
}

impl RumStore {
    /// Adds `sample` for (`region`, `endpoint`), valid until `expires`.
    pub fn add(&mut self, region: &str, endpoint: &str, sample: RumSample, expires: Instant) {
        let q = self
            .samples
            .entry((region.to_string(), endpoint.to_string()))
            .or_default();
        if q.len() == MAX_SAMPLES_PER_KEY {
            q.pop_front();
        }
        q.push_back(Stored { sample, expires });
        self.accepted += 1;
    }

    /// What the samples of (`region`, `endpoint`) fresh at `now` say; `None` without any.
    pub fn view(&self, region: &str, endpoint: &str, now: Instant) -> Option<RumView> {
        let q = self
            .samples
            .get(&(region.to_string(), endpoint.to_string()))?;
        let (mut n, mut sum, mut timed, mut up, mut down) = (0usize, Duration::ZERO, 0u32, 0, 0);
        for s in q.iter().filter(|s| s.expires > now) {
            n += 1;
            match s.sample.available {
                Some(true) => up += 1,
                Some(false) => down += 1,
                None => {}
            }
            if let (Some(l), false) = (s.sample.latency, s.sample.available == Some(false)) {
                sum += l;
                timed += 1;
            }
        }
        (n > 0).then(|| RumView {
            latency: (timed > 0).then(|| sum / timed),
            down: down > up,
            samples: n,
        })
    }

    /// Drops the samples expired at `now`; returns the keys (region, endpoint) that lost
    /// any, whose regions must decide again.
    pub fn expire(&mut self, now: Instant) -> BTreeSet<(String, String)> {
        let mut changed = BTreeSet::new();
        let mut expired = 0;
        self.samples.retain(|key, q| {
            let before = q.len();
            q.retain(|s| s.expires > now);
            if q.len() != before {
                expired += before - q.len();
                changed.insert(key.clone());
            }
            !q.is_empty()
        });
        self.expired += expired as u64;
        changed
    }

    /// How many samples are held (fresh or not yet dropped).
    pub fn held(&self) -> usize {
        self.samples.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn the_view_is_the_mean_of_fresh_samples_and_the_majority_of_availability() {
        let t0 = Instant::now();
        let mut s = RumStore::default();
        let later = t0 + Duration::from_secs(60);
        for l in [10, 20, 30] {
            s.add(
                "europe",
                "a.",
                RumSample {
                    latency: ms(l),
                    available: Some(true),
                },
                later,
            );
        }
        // Unavailable samples carry no latency.
        s.add(
            "europe",
            "a.",
            RumSample {
                latency: ms(1000),
                available: Some(false),
            },
            later,
        );
        let v = s.view("europe", "a.", t0).expect("samples");
        assert_eq!(v.latency, ms(20));
        assert!(!v.down);
        assert_eq!(v.samples, 4);
        assert_eq!(s.view("americas", "a.", t0), None);
        for _ in 0..4 {
            s.add(
                "europe",
                "a.",
                RumSample {
                    latency: None,
                    available: Some(false),
                },
                later,
            );
        }
        assert!(s.view("europe", "a.", t0).expect("samples").down, "5 of 8 down");
    }

    #[test]
    fn samples_expire_after_their_ttl() {
        let t0 = Instant::now();
        let mut s = RumStore::default();
        let sample = RumSample {
            latency: ms(5),
            available: None,
        };
        s.add("europe", "a.", sample, t0 + Duration::from_secs(10));
        s.add("europe", "b.", sample, t0 + Duration::from_secs(20));
        assert!(s.expire(t0 + Duration::from_secs(5)).is_empty());
        let gone = s.expire(t0 + Duration::from_secs(10));
        assert_eq!(
            gone.into_iter().collect::<Vec<_>>(),
            [("europe".to_string(), "a.".to_string())]
        );
        assert_eq!(s.view("europe", "a.", t0 + Duration::from_secs(10)), None);
        assert!(s.view("europe", "b.", t0 + Duration::from_secs(10)).is_some());
        // A view at a later time ignores what is expired by then, dropped or not.
        assert_eq!(s.view("europe", "b.", t0 + Duration::from_secs(21)), None);
        assert_eq!((s.accepted, s.expired, s.held()), (2, 1, 1));
    }

    #[test]
    fn a_key_keeps_its_newest_samples() {
        let t0 = Instant::now();
        let mut s = RumStore::default();
        for i in 0..MAX_SAMPLES_PER_KEY as u64 + 10 {
            s.add(
                "europe",
                "a.",
                RumSample {
                    latency: ms(i),
                    available: None,
                },
                t0 + Duration::from_secs(60),
            );
        }
        assert_eq!(s.held(), MAX_SAMPLES_PER_KEY);
        let mean = (10 + MAX_SAMPLES_PER_KEY as u64 + 9) as f64 / 2.0;
        let got = s.view("europe", "a.", t0).unwrap().latency.unwrap();
        assert!((got.as_secs_f64() * 1e3 - mean).abs() < 0.01, "{got:?}");
    }
}
