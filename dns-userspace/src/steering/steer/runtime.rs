//! One pool's runtime state: its endpoints' health (shared by its regions), and per region
//! (one for every pool but a `geo` one) a selector and the answer it publishes.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use crate::{
    datapath::pools::{PoolAnswer, Selection},
    geo::RegionId,
    steering::{
        endpoint::EndpointAddress,
        geo::{LatencySource, RegionPolicy},
        health::{AdminState, EndpointHealth, ProbeState},
        policy::{AllDown, Answer, Candidate, Decision, Policy, Selector},
        pool::PoolSettings,
        probe::JobId,
        rum::RumStore,
        state::{SavedAnswer, SavedEndpoint, SavedPool, SavedRegion},
        tally::ProbeTally,
    },
};

/// One region's policy of a pool, and the answer it publishes. Its selector works in the
/// region's own endpoint indexes (positions in `policy.endpoints`).
pub(super) struct RegionRuntime {
    pub(super) policy: RegionPolicy,
    /// The region's endpoint names, in its order: the pool's own list (shared) when the
    /// region has every endpoint in the pool's order, as every pool but a `geo` one does.
    pub(super) names: Arc<[String]>,
    pub(super) selector: Selector,
    /// The answer in both answer paths, `None` before the first decision.
    pub(super) published: Option<PoolAnswer>,
    /// Rendering of the answer in force, for the `old` side of events.
    pub(super) answer: String,
    /// When the answer in force was published.
    pub(super) answer_since: SystemTime,
    pub(super) all_down: bool,
    pub(super) changes: u64,
}

impl RegionRuntime {
    fn new(settings: &PoolSettings, pool_names: &Arc<[String]>, policy: RegionPolicy) -> Self {
        let in_pool_order = policy.endpoints.len() == pool_names.len()
            && policy
                .endpoints
                .iter()
                .enumerate()
                .all(|(i, e)| e.index == i);
        Self {
            names: if in_pool_order {
                pool_names.clone()
            } else {
                policy
                    .endpoints
                    .iter()
                    .map(|e| settings.endpoints[e.index].address.to_string())
                    .collect()
            },
            selector: Selector::new(policy.policy.clone(), settings.all_down.clone()),
            policy,
            published: None,
            answer: String::new(),
            answer_since: SystemTime::now(),
            all_down: false,
            changes: 0,
        }
    }

    pub(super) fn id(&self) -> RegionId {
        self.policy.region
    }

    /// The region's name as events and status show it: `None` for a pool that does not
    /// steer by region.
    pub(super) fn label<'a>(&'a self, pool: &PoolSettings) -> Option<&'a str> {
        pool.is_geo().then_some(self.policy.name.as_str())
    }

    /// The region's position of pool endpoint `index`.
    fn local(&self, index: usize) -> Option<usize> {
        self.policy.endpoints.iter().position(|e| e.index == index)
    }

    /// Whether pool endpoint `index` is part of the answer in force.
    pub(super) fn answers_endpoint(&self, index: usize) -> bool {
        let Some(i) = self.local(index) else {
            return false;
        };
        match self.selector.current().map(|d| &d.answer) {
            None => true,
            Some(Answer::Endpoints(v)) => v.contains(&i),
            Some(Answer::Weighted(v)) => v.iter().any(|&(e, _)| e == i),
            Some(Answer::Fallback | Answer::Servfail) => false,
        }
    }

    /// The region's endpoint named `name`.
    fn endpoint(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// An answer by endpoint names, for the state file.
    pub(super) fn save_answer(&self, answer: &Answer) -> SavedAnswer {
        let name = |i: usize| self.names.get(i).cloned().unwrap_or_default();
        match answer {
            Answer::Endpoints(v) => SavedAnswer::Endpoints(v.iter().map(|&i| name(i)).collect()),
            Answer::Weighted(v) => {
                SavedAnswer::Weighted(v.iter().map(|&(i, w)| (name(i), w)).collect())
            }
            Answer::Fallback => SavedAnswer::Fallback,
            Answer::Servfail => SavedAnswer::Servfail,
        }
    }

    /// A saved answer in this region's endpoint indexes; `None` if it names an endpoint
    /// the region does not have (or a fallback the pool has no longer).
    fn load_answer(&self, saved: &SavedAnswer, all_down: &AllDown) -> Option<Answer> {
        Some(match saved {
            SavedAnswer::Endpoints(v) => Answer::Endpoints(
                v.iter()
                    .map(|n| self.endpoint(n))
                    .collect::<Option<Vec<_>>>()?,
            ),
            SavedAnswer::Weighted(v) => Answer::Weighted(
                v.iter()
                    .map(|(n, w)| Some((self.endpoint(n)?, *w)))
                    .collect::<Option<Vec<_>>>()?,
            ),
            SavedAnswer::Fallback if matches!(all_down, AllDown::Fallback(_)) => Answer::Fallback,
            SavedAnswer::Fallback => return None,
            SavedAnswer::Servfail => Answer::Servfail,
        })
    }

    /// Seeds the selector with a saved answer (when it still fits).
    fn restore(
        &mut self,
        answer: Option<&SavedAnswer>,
        all_down: bool,
        last_good: Option<&SavedAnswer>,
        pool_all_down: &AllDown,
    ) {
        let answer = answer.and_then(|a| self.load_answer(a, pool_all_down));
        let last_good = last_good.and_then(|a| self.load_answer(a, pool_all_down));
        if let Some(answer) = answer {
            self.selector.seed(answer, all_down, last_good);
        }
    }

    /// The saved form of this region's answer.
    fn save(&self) -> SavedRegion {
        let current = self.selector.current();
        SavedRegion {
            region: self.policy.name.clone(),
            answer: current.map(|d| self.save_answer(&d.answer)),
            all_down: current.is_some_and(|d| d.all_down),
            last_good: self.selector.last_good().map(|a| self.save_answer(a)),
        }
    }
}

pub(super) struct PoolRuntime {
    pub(super) settings: PoolSettings,
    /// Endpoint names for logs and events (address or host name).
    pub(super) names: Arc<[String]>,
    pub(super) health: Vec<EndpointHealth>,
    /// Each endpoint's probe job (`None` without a probe).
    pub(super) jobs: Vec<Option<JobId>>,
    /// One per answer: the default region's first (the only one of a pool that does not
    /// steer by region), then by region id.
    pub(super) regions: Vec<RegionRuntime>,
    /// The pool has probes (otherwise every endpoint counts as up unless pinned down).
    pub(super) probed: bool,
    /// Before the first verdicts: the answer is provisional (see
    /// [`Selector::provisional`]). Only a pool none of whose endpoints has a verdict starts
    /// warming up; it ends when every probed endpoint has one.
    pub(super) warming: bool,
    /// Each endpoint's probe record.
    pub(super) tallies: Vec<ProbeTally>,
}

impl PoolRuntime {
    pub(super) fn new(settings: &PoolSettings, now: Instant) -> Self {
        let names: Arc<[String]> = settings
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        let health = settings
            .endpoints
            .iter()
            .map(|e| {
                let (rise, fall) = e
                    .probe
                    .as_ref()
                    .map_or((1, 1), |p| (p.timing.rise, p.timing.fall));
                let mut h = EndpointHealth::new(rise, fall);
                h.set_admin(now, e.admin);
                h
            })
            .collect();
        let mut p = Self {
            tallies: vec![ProbeTally::default(); names.len()],
            health,
            jobs: vec![None; settings.endpoints.len()],
            regions: settings
                .region_policies()
                .into_iter()
                .map(|r| RegionRuntime::new(settings, &names, r))
                .collect(),
            names,
            probed: settings.probe.is_some(),
            warming: false,
            settings: settings.clone(),
        };
        p.warming = p.probed && !p.any_verdict();
        p
    }

    /// Whether some endpoint's state is known: a verdict of its probes or a pin.
    pub(super) fn any_verdict(&self) -> bool {
        self.health
            .iter()
            .any(|h| h.admin() != AdminState::Follow || h.probe_state() != ProbeState::Unknown)
    }

    /// Whether endpoint `i` counts as up: its health verdict, or for a pool without
    /// probes, anything but a pin down.
    pub(super) fn is_up(&self, i: usize) -> bool {
        let h = &self.health[i];
        if self.probed {
            h.is_up()
        } else {
            h.admin() != AdminState::Down
        }
    }

    /// Whether some region's policy compares latencies.
    pub(super) fn ranks_by_latency(&self) -> bool {
        self.regions
            .iter()
            .any(|r| matches!(r.policy.policy, Policy::Fastest { .. }))
    }

    /// Region `r`'s candidates at `now`: the health of its endpoints, and their latency
    /// from its source; RUM samples saying an endpoint is unavailable put it down in this
    /// region only.
    pub(super) fn candidates(&self, r: usize, rum: &RumStore, now: Instant) -> Vec<Candidate> {
        let region = &self.regions[r];
        region
            .policy
            .endpoints
            .iter()
            .map(|re| {
                let (i, h) = (re.index, &self.health[re.index]);
                let source = region.policy.latency;
                let seen = source
                    .uses_rum()
                    .then(|| rum.view(&region.policy.name, &self.names[i], now))
                    .flatten();
                let latency = match source {
                    LatencySource::Probes => h.latency(),
                    LatencySource::Rum => seen.and_then(|v| v.latency),
                    LatencySource::Blend => seen.and_then(|v| v.latency).or_else(|| h.latency()),
                };
                Candidate {
                    up: self.is_up(i) && !seen.is_some_and(|v| v.down),
                    pinned_down: h.admin() == AdminState::Down,
                    unknown: self.probed
                        && h.admin() == AdminState::Follow
                        && h.probe_state() == ProbeState::Unknown,
                    latency,
                    weight: re.weight,
                    priority: re.priority,
                }
            })
            .collect()
    }

    /// Every probed endpoint has a verdict (or is pinned).
    pub(super) fn warmed_up(&self) -> bool {
        !self.probed
            || self
                .health
                .iter()
                .all(|h| h.admin() != AdminState::Follow || h.probe_state() != ProbeState::Unknown)
    }

    /// Re-decides region `r`: provisionally while warming up, by its policy after. `Some`
    /// when the decision changed.
    pub(super) fn decide(&mut self, r: usize, rum: &RumStore, now: Instant) -> Option<Decision> {
        if self.warming && self.warmed_up() {
            self.warming = false;
        }
        let candidates = self.candidates(r, rum, now);
        let selector = &mut self.regions[r].selector;
        if self.warming {
            selector.provisional(&candidates)
        } else {
            selector.update(&candidates)
        }
    }

    /// The records region `r`'s decision answers with, tagged with the region.
    pub(super) fn answer_for(&self, r: usize, decision: &Decision) -> PoolAnswer {
        let s = &self.settings;
        let region = &self.regions[r];
        let rdata_of = |i: usize| s.endpoints[region.policy.endpoints[i].index].rdata();
        let (rdata, selection) = match &decision.answer {
            Answer::Endpoints(v) => (v.iter().map(|&i| rdata_of(i)).collect(), Selection::All),
            Answer::Weighted(v) if v.len() > 1 => (
                v.iter().map(|&(i, _)| rdata_of(i)).collect(),
                Selection::weighted(v.iter().map(|&(_, w)| w).collect()),
            ),
            Answer::Weighted(v) => (
                v.iter().map(|&(i, _)| rdata_of(i)).collect(),
                Selection::All,
            ),
            Answer::Fallback => match &s.all_down {
                AllDown::Fallback(addrs) => (
                    addrs.iter().map(EndpointAddress::rdata).collect(),
                    Selection::All,
                ),
                AllDown::FailOpen | AllDown::Servfail => (Vec::new(), Selection::Servfail),
            },
            Answer::Servfail => (Vec::new(), Selection::Servfail),
        };
        // A CNAME pool answers one record of its answer (`answer_limit`).
        s.answer(rdata, selection).in_region(region.id())
    }

    /// The endpoint named `name` (as the config writes its address).
    pub(super) fn endpoint(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The region runtime named `name`.
    pub(super) fn region(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.policy.name == name)
    }

    /// This pool for the state file: the default region's answer as the pool's, the
    /// others' in `regions`.
    pub(super) fn save(&self) -> SavedPool {
        let default = self.regions[0].save();
        SavedPool {
            name: self.settings.name.to_string(),
            rtype: self.settings.rtype.to_string(),
            answer: default.answer,
            all_down: default.all_down,
            last_good: default.last_good,
            endpoints: self
                .settings
                .endpoints
                .iter()
                .zip(&self.health)
                .zip(self.names.iter())
                .map(|((e, h), name)| SavedEndpoint {
                    address: name.clone(),
                    admin: h.admin(),
                    configured_admin: e.admin,
                    health: h.snapshot(),
                })
                .collect(),
            regions: self.regions[1..].iter().map(RegionRuntime::save).collect(),
        }
    }

    /// Takes what `saved` (this pool before a restart) knows: each endpoint's health and
    /// runtime pin (unless the config's `state` for it changed since), and each region's
    /// answer in force, so the selectors continue from them. Returns how many endpoints
    /// were restored.
    pub(super) fn restore(&mut self, saved: &SavedPool, now: Instant) -> usize {
        if saved.rtype != self.settings.rtype.to_string() {
            return 0;
        }
        let mut restored = 0;
        for e in &saved.endpoints {
            let Some(i) = self.endpoint(&e.address) else {
                continue;
            };
            self.health[i].restore(&e.health);
            if e.configured_admin == self.settings.endpoints[i].admin {
                self.health[i].set_admin(now, e.admin);
            }
            restored += 1;
        }
        let all_down = self.settings.all_down.clone();
        self.regions[0].restore(
            saved.answer.as_ref(),
            saved.all_down,
            saved.last_good.as_ref(),
            &all_down,
        );
        for sr in &saved.regions {
            if let Some(r) = self.region(&sr.region).filter(|&r| r > 0) {
                self.regions[r].restore(
                    sr.answer.as_ref(),
                    sr.all_down,
                    sr.last_good.as_ref(),
                    &all_down,
                );
            }
        }
        self.warming = self.probed && !self.any_verdict();
        restored
    }

    /// Takes over what `old` (this pool before a reload) knew: the health, latency window
    /// and runtime pin of every endpoint it still has (the config's `state` wins where it
    /// changed), their probe jobs when the probe is unchanged, and the answer in force of
    /// every region it still has under the same policy. Returns the jobs kept.
    pub(super) fn carry_over(&mut self, old: &PoolRuntime) -> Vec<JobId> {
        let mut kept = Vec::new();
        if old.settings.rtype != self.settings.rtype {
            return kept;
        }
        for (i, name) in self.names.clone().iter().enumerate() {
            let Some(j) = old.endpoint(name) else {
                continue;
            };
            let pin = if old.settings.endpoints[j].admin == self.settings.endpoints[i].admin {
                old.health[j].admin()
            } else {
                self.settings.endpoints[i].admin
            };
            self.health[i].carry_over(&old.health[j]);
            self.health[i].set_admin(Instant::now(), pin);
            self.tallies[i].clone_from(&old.tallies[j]);
            if self.settings.endpoints[i].probe == old.settings.endpoints[j].probe
                && let Some(id) = old.jobs[j]
            {
                self.jobs[i] = Some(id);
                kept.push(id);
            }
        }
        let all_down = self.settings.all_down.clone();
        for region in &mut self.regions {
            let Some(o) = old
                .regions
                .iter()
                .find(|o| o.policy.name == region.policy.name)
            else {
                continue;
            };
            let saved = o.save();
            if o.policy.policy.name() == region.policy.policy.name() {
                region.restore(
                    saved.answer.as_ref(),
                    saved.all_down,
                    saved.last_good.as_ref(),
                    &all_down,
                );
            }
            // What is published stays published until a decision differs from it; the
            // region id may have changed with the regions, so the answer is re-tagged.
            region.published = o
                .published
                .clone()
                .map(|a| a.in_region(region.policy.region));
            region.answer.clone_from(&o.answer);
            region.answer_since = o.answer_since;
            region.all_down = o.all_down;
            region.changes = o.changes;
        }
        self.warming = self.probed && !self.any_verdict();
        kept
    }
}
