//! RUM samples applied to the running steering state: checked against the `geo` pools'
//! regions that take them, stored, expired, and each affected region re-decided.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use crate::steering::{
    rum::{Rejected, RumBatch, RumError, RumStore},
    steer::Steering,
};

/// The RUM figures for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RumStats {
    pub accepted: u64,
    pub rejected: u64,
    pub expired: u64,
    /// Samples held now.
    pub held: usize,
}

/// A region that takes RUM samples: its endpoints' names (of every pool using it) and
/// the (pool, region runtime) indexes that use them.
#[derive(Default)]
struct RumRegion {
    names: Vec<String>,
    users: Vec<(usize, usize)>,
}

/// Endpoint names compare without case and trailing dot (`a.cdn.example` is
/// `a.cdn.example.`).
fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

impl Steering {
    /// The regions that take RUM samples (a `geo` pool's region with `latency = "rum"` or
    /// `"blend"`), each with its endpoints' names and its (pool, region runtime) indexes.
    fn rum_regions(&self) -> BTreeMap<String, RumRegion> {
        let mut out: BTreeMap<String, RumRegion> = BTreeMap::new();
        for (i, p) in self.pools.iter().enumerate() {
            if !p.settings.is_geo() {
                continue;
            }
            for (r, region) in p.regions.iter().enumerate() {
                if !region.policy.latency.uses_rum() {
                    continue;
                }
                let entry = out.entry(region.policy.name.clone()).or_default();
                for n in region.names.iter() {
                    if !entry.names.contains(n) {
                        entry.names.push(n.clone());
                    }
                }
                entry.users.push((i, r));
            }
        }
        out
    }

    /// Applies a batch of RUM samples received at `now`: all of them, or (when any is
    /// refused: an unknown region or endpoint, a figure out of range) none. Each region
    /// whose samples changed decides again at once. Returns how many were accepted.
    pub fn add_rum(&mut self, batch: &RumBatch, now: Instant) -> Result<usize, RumError> {
        let refuse = |rum: &mut RumStore, e: RumError| {
            rum.rejected += batch.samples.len() as u64;
            Err(e)
        };
        let checked = batch.check_size().and_then(|()| batch.ttl());
        let ttl = match checked {
            Ok(ttl) => ttl,
            Err(e) => return refuse(&mut self.rum, e),
        };
        let regions = self.rum_regions();
        let mut rejected = Vec::new();
        let mut accepted = Vec::with_capacity(batch.samples.len());
        for (index, input) in batch.samples.iter().enumerate() {
            let Some(RumRegion { names, .. }) = regions.get(&input.region) else {
                rejected.push(Rejected {
                    index,
                    error: format!(
                        "region {:?} takes no RUM samples: it is not a region of a geo pool with latency = \"rum\" or \"blend\"",
                        input.region
                    ),
                });
                continue;
            };
            let Some(name) = names.iter().find(|n| same_endpoint(n, &input.endpoint)) else {
                rejected.push(Rejected {
                    index,
                    error: format!(
                        "endpoint {:?} is not used in region {} (its endpoints: {})",
                        input.endpoint,
                        input.region,
                        names.join(", ")
                    ),
                });
                continue;
            };
            match input.sample() {
                Ok(sample) => accepted.push((input.region.as_str(), name.clone(), sample)),
                Err(error) => rejected.push(Rejected { index, error }),
            }
        }
        if !rejected.is_empty() {
            let accepted_keys = regions
                .into_iter()
                .map(|(region, r)| (region, r.names))
                .collect();
            return refuse(
                &mut self.rum,
                RumError::Samples {
                    rejected,
                    accepted_keys,
                },
            );
        }
        let mut touched = BTreeSet::new();
        for (region, endpoint, sample) in &accepted {
            self.rum.add(region, endpoint, *sample, now + ttl);
            if let Some(r) = regions.get(*region) {
                touched.extend(r.users.iter().copied());
            }
        }
        for (i, r) in touched {
            self.reselect_region(i, r, "rum", true);
        }
        self.dirty.mark(false);
        Ok(accepted.len())
    }

    /// Drops the RUM samples expired at `now` and re-decides the regions that lost any.
    pub fn expire_rum(&mut self, now: Instant) {
        let changed = self.rum.expire(now);
        if changed.is_empty() {
            return;
        }
        let regions = self.rum_regions();
        let touched: BTreeSet<(usize, usize)> = changed
            .iter()
            .filter_map(|(region, _)| regions.get(region))
            .flat_map(|r| r.users.iter().copied())
            .collect();
        for (i, r) in touched {
            self.reselect_region(i, r, "rum expiry", true);
        }
    }

    /// The RUM counters.
    pub fn rum_stats(&self) -> RumStats {
        RumStats {
            accepted: self.rum.accepted,
            rejected: self.rum.rejected,
            expired: self.rum.expired,
            held: self.rum.held(),
        }
    }
}
