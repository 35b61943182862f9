//! One pool's runtime state: its endpoints' health, its selector and the answer it
//! publishes.

use std::time::{Instant, SystemTime};

use crate::{
    datapath::pools::{PoolAnswer, Selection},
    steering::{
        endpoint::EndpointAddress,
        health::{AdminState, EndpointHealth, ProbeState},
        policy::{AllDown, Answer, Candidate, Decision, Selector},
        pool::PoolSettings,
        probe::JobId,
        state::{SavedAnswer, SavedEndpoint, SavedPool},
        tally::ProbeTally,
    },
};

pub(super) struct PoolRuntime {
    pub(super) settings: PoolSettings,
    /// Endpoint names for logs and events (address or host name).
    pub(super) names: Vec<String>,
    pub(super) health: Vec<EndpointHealth>,
    /// Each endpoint's probe job (`None` without a probe).
    pub(super) jobs: Vec<Option<JobId>>,
    pub(super) selector: Selector,
    /// The pool has probes (otherwise every endpoint counts as up unless pinned down).
    pub(super) probed: bool,
    /// Before the first verdicts: the answer is provisional (see
    /// [`Selector::provisional`]). Only a pool none of whose endpoints has a verdict starts
    /// warming up; it ends when every probed endpoint has one.
    pub(super) warming: bool,
    /// The answer in both answer paths, `None` before the first decision.
    pub(super) published: Option<PoolAnswer>,
    /// Rendering of the answer in force, for the `old` side of events.
    pub(super) answer: String,
    /// When the answer in force was published.
    pub(super) answer_since: SystemTime,
    pub(super) all_down: bool,
    pub(super) changes: u64,
    /// Each endpoint's probe record.
    pub(super) tallies: Vec<ProbeTally>,
}

impl PoolRuntime {
    pub(super) fn new(settings: &PoolSettings, now: Instant) -> Self {
        let names: Vec<String> = settings
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
            answer: String::new(),
            answer_since: SystemTime::now(),
            tallies: vec![ProbeTally::default(); names.len()],
            names,
            health,
            jobs: vec![None; settings.endpoints.len()],
            selector: Selector::new(settings.policy.clone(), settings.all_down.clone()),
            probed: settings.probe.is_some(),
            warming: false,
            published: None,
            all_down: false,
            changes: 0,
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

    pub(super) fn candidates(&self) -> Vec<Candidate> {
        self.settings
            .endpoints
            .iter()
            .zip(&self.health)
            .enumerate()
            .map(|(i, (e, h))| Candidate {
                up: self.is_up(i),
                pinned_down: h.admin() == AdminState::Down,
                unknown: self.probed
                    && h.admin() == AdminState::Follow
                    && h.probe_state() == ProbeState::Unknown,
                latency: h.latency(),
                weight: e.weight,
                priority: e.priority,
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

    /// Re-decides: provisionally while warming up, by the policy after. `Some` when the
    /// decision changed.
    pub(super) fn decide(&mut self) -> Option<Decision> {
        if self.warming && self.warmed_up() {
            self.warming = false;
        }
        let candidates = self.candidates();
        if self.warming {
            self.selector.provisional(&candidates)
        } else {
            self.selector.update(&candidates)
        }
    }

    /// The records a decision answers with.
    pub(super) fn answer_for(&self, decision: &Decision) -> PoolAnswer {
        let s = &self.settings;
        let rdata_of = |i: usize| s.endpoints[i].rdata();
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
        s.answer(rdata, selection)
    }

    /// The endpoint named `name` (as the config writes its address).
    pub(super) fn endpoint(&self, name: &str) -> Option<usize> {
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

    /// A saved answer in this pool's endpoint indexes; `None` if it names an endpoint this
    /// pool does not have (or a fallback it has no longer).
    pub(super) fn load_answer(&self, saved: &SavedAnswer) -> Option<Answer> {
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
            SavedAnswer::Fallback if matches!(self.settings.all_down, AllDown::Fallback(_)) => {
                Answer::Fallback
            }
            SavedAnswer::Fallback => return None,
            SavedAnswer::Servfail => Answer::Servfail,
        })
    }

    /// This pool for the state file.
    pub(super) fn save(&self) -> SavedPool {
        let current = self.selector.current();
        SavedPool {
            name: self.settings.name.to_string(),
            rtype: self.settings.rtype.to_string(),
            answer: current.map(|d| self.save_answer(&d.answer)),
            all_down: current.is_some_and(|d| d.all_down),
            last_good: self.selector.last_good().map(|a| self.save_answer(a)),
            endpoints: self
                .settings
                .endpoints
                .iter()
                .zip(&self.health)
                .zip(&self.names)
                .map(|((e, h), name)| SavedEndpoint {
                    address: name.clone(),
                    admin: h.admin(),
                    configured_admin: e.admin,
                    health: h.snapshot(),
                })
                .collect(),
        }
    }

    /// Takes what `saved` (this pool before a restart) knows: each endpoint's health and
    /// runtime pin (unless the config's `state` for it changed since), and the answer in
    /// force, so the selector continues from it. Returns how many endpoints were restored.
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
        let answer = saved.answer.as_ref().and_then(|a| self.load_answer(a));
        let last_good = saved.last_good.as_ref().and_then(|a| self.load_answer(a));
        if let Some(answer) = answer {
            self.selector.seed(answer, saved.all_down, last_good);
        }
        self.warming = self.probed && !self.any_verdict();
        restored
    }

    /// Takes over what `old` (this pool before a reload) knew: the health, latency window
    /// and runtime pin of every endpoint it still has (the config's `state` wins where it
    /// changed), their probe jobs when the probe is unchanged, and the answer in force.
    /// Returns the jobs kept.
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
        let map = |a: &Answer| old.save_answer(a);
        let answer = old
            .selector
            .current()
            .and_then(|d| self.load_answer(&map(&d.answer)).map(|a| (a, d.all_down)));
        let last_good = old
            .selector
            .last_good()
            .and_then(|a| self.load_answer(&map(a)));
        if let Some((answer, all_down)) = answer
            && old.settings.policy.name() == self.settings.policy.name()
        {
            self.selector.seed(answer, all_down, last_good);
        }
        self.published.clone_from(&old.published);
        self.answer.clone_from(&old.answer);
        self.answer_since = old.answer_since;
        self.all_down = old.all_down;
        self.changes = old.changes;
        self.warming = self.probed && !self.any_verdict();
        kept
    }
}
