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

use serde::{Deserialize, Serialize};

/// Most samples kept per (region, endpoint): older ones are dropped first.
pub const MAX_SAMPLES_PER_KEY: usize = 256;
/// Most samples in one batch.
pub const MAX_BATCH: usize = 1000;
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

/// `POST /api/rum`'s body: `{"ttl": "5m", "samples": [...]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RumBatch {
    /// How long the samples count: `"90s"`, `"5m"`; default [`DEFAULT_TTL`], at most
    /// [`MAX_TTL`].
    #[serde(default)]
    pub ttl: Option<String>,
    pub samples: Vec<RumInput>,
}

/// One sample as posted.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RumInput {
    /// A region of a `geo` pool that takes RUM samples (`latency = "rum"` or `"blend"`).
    pub region: String,
    /// The endpoint's address or host name as the pool's config writes it.
    pub endpoint: String,
    /// Round trip seen by users, in milliseconds (0 to [`MAX_LATENCY_MS`]).
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Whether users reached the endpoint.
    #[serde(default)]
    pub available: Option<bool>,
}

/// Largest `latency_ms` accepted.
pub const MAX_LATENCY_MS: f64 = 60_000.0;

/// One sample refused, by its position in the batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// Why a batch was refused (as a whole: nothing of it is applied).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RumError {
    #[error("{0}")]
    Batch(String),
    #[error("{} of the batch's samples are refused; nothing was applied", .rejected.len())]
    Samples {
        rejected: Vec<Rejected>,
        /// The regions that take samples, with their endpoints.
        accepted_keys: Vec<(String, Vec<String>)>,
    },
}

impl RumBatch {
    /// The batch's TTL, checked.
    pub fn ttl(&self) -> Result<Duration, RumError> {
        let Some(text) = &self.ttl else {
            return Ok(DEFAULT_TTL);
        };
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            RumError::Batch(format!(
                "invalid ttl {text:?}: {e} (write e.g. \"90s\" or \"5m\")"
            ))
        })?;
        if d.is_zero() || d > MAX_TTL {
            return Err(RumError::Batch(format!(
                "ttl {text:?} is out of range: more than 0s, at most {}",
                humantime::format_duration(MAX_TTL)
            )));
        }
        Ok(d)
    }

    /// The batch's size, checked.
    pub fn check_size(&self) -> Result<(), RumError> {
        match self.samples.len() {
            0 => Err(RumError::Batch("the batch has no samples".into())),
            n if n > MAX_BATCH => Err(RumError::Batch(format!(
                "the batch has {n} samples, at most {MAX_BATCH} are accepted: split it"
            ))),
            _ => Ok(()),
        }
    }
}

impl RumInput {
    /// The sample's figures, checked.
    pub fn sample(&self) -> Result<RumSample, String> {
        let latency = match self.latency_ms {
            Some(ms) if !(0.0..=MAX_LATENCY_MS).contains(&ms) => {
                return Err(format!(
                    "latency_ms {ms} is out of range 0 to {MAX_LATENCY_MS}"
                ));
            }
            Some(ms) => Some(Duration::from_secs_f64(ms / 1e3)),
            None => None,
        };
        if latency.is_none() && self.available.is_none() {
            return Err("a sample needs latency_ms, available, or both".into());
        }
        Ok(RumSample {
            latency,
            available: self.available,
        })
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
        assert!(
            s.view("europe", "a.", t0).expect("samples").down,
            "5 of 8 down"
        );
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
        assert!(
            s.view("europe", "b.", t0 + Duration::from_secs(10))
                .is_some()
        );
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
