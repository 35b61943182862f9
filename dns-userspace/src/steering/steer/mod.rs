//! Steering: probe results → endpoint health → policy decision → the pool's answer in the
//! daemon's table *and* the kernel's hot map, plus an event for every change.
//!
//! One [`Steering`] owns every pool's runtime state. Probe reports arrive on a channel from
//! the scheduler ([`crate::steering::probe::ProbeSet`]), keyed by job id; operator pins arrive through
//! [`Steering::set_admin`] (the HTTP API); a reload brings a new pool set
//! ([`Steering::reconcile`]). A pool's answer is rewritten only when it changes, and then
//! atomically in both answer paths (see [`crate::datapath::hot`] for the kernel side); an
//! unchanged answer is neither rewritten nor recorded nor counted.
//!
//! Start-up: a pool none of whose endpoints has a verdict yet (no probe result reached
//! `rise` or `fall`, no pin, nothing restored from the state file) answers provisionally
//! until every probed endpoint has one: every endpoint not pinned down, and for `failover`
//! only the first by priority ([`Selector::provisional`]). Deciding by the policy earlier
//! would answer SERVFAIL or a lone endpoint just because the others had not been probed
//! yet. A pool with restored verdicts decides by its policy at once.
//!
//! Pins are absolute: an endpoint pinned down is never answered, also when every endpoint
//! is down and the pool fails open.
//!
//! Probe ids: every probed endpoint gets a [`JobId`] when steering first sees it; the
//! scheduler's jobs ([`Steering::jobs`]) and reports carry it, so a report always finds its
//! endpoint, whatever the pool's index. A reload that keeps an endpoint (same pool name and
//! address) keeps its id, its health and its tally ([`Steering::reconcile`]).
//!
//! Local probe failures ([`LocalFailure`]) are counted and logged (at most every
//! [`LOCAL_FAILURE_LOG_EVERY`], with how many were not logged) and never reach the
//! endpoint's health: they are not verdicts.

mod reconcile;
mod rum;
mod runtime;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{Notify, mpsc, watch};
use tracing::{error, info, warn};

pub use reconcile::Reconciled;
pub use rum::RumStats;
use runtime::{PoolRuntime, RegionRuntime};

use crate::{
    datapath::{
        ebpf::Datapath,
        pools::{PoolAnswer, PoolTable},
    },
    dns::{NameError, parse_name},
    steering::{
        events::{Event, EventSink, EventStats},
        geo::GEO_POLICY,
        health::{AdminState, ProbeOutcome, ProbeState, StateReason},
        policy::Decision,
        pool::PoolSettings,
        probe::{
            JobId, LocalFailure, ProbeJob, ProbeReport, ProbeSet, ProbeTarget, SchedulerStats,
        },
        rum::RumStore,
        state::{STATE_VERSION, SavedState, now_ms},
        tally::{ProbeTally, ProbeTotals},
    },
};

/// Local probe failures are logged at most this often (the count of the others with it).
pub const LOCAL_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why an operator's pin was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetAdminError {
    #[error("pool {pool:?}: {reason}")]
    BadPoolName { pool: String, reason: NameError },
    #[error("no pool {0}")]
    NoSuchPool(String),
    #[error("pool {pool} has no endpoint {endpoint}")]
    NoSuchEndpoint { pool: String, endpoint: String },
}

impl SetAdminError {
    /// The pool or endpoint does not exist (as opposed to a malformed request).
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NoSuchPool(_) | Self::NoSuchEndpoint { .. } => true,
            Self::BadPoolName { .. } => false,
        }
    }
}

/// What changed since the state file was last written, and a wake-up for its writer.
#[derive(Debug, Default)]
pub struct Dirty {
    /// A verdict, pin or answer changed: write soon.
    urgent: AtomicBool,
    /// Anything changed (latency windows, counts): write eventually.
    any: AtomicBool,
    notify: Notify,
}

impl Dirty {
    /// Notes a change; `urgent` for verdicts, pins and answers.
    pub fn mark(&self, urgent: bool) {
        if urgent {
            self.urgent.store(true, Ordering::Relaxed);
        }
        if !self.any.swap(true, Ordering::Relaxed) || urgent {
            self.notify.notify_one();
        }
    }

    /// Waits until something changed.
    pub async fn changed(&self) {
        if !self.any.load(Ordering::Relaxed) {
            self.notify.notified().await;
        }
    }

    /// Waits until an urgent change is pending.
    pub async fn urgent_change(&self) {
        while !self.is_urgent() {
            self.notify.notified().await;
        }
    }

    /// Whether an urgent change is pending.
    pub fn is_urgent(&self) -> bool {
        self.urgent.load(Ordering::Relaxed)
    }

    /// Whether any change is pending.
    pub fn is_dirty(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Clears the marks (taken before a snapshot is written).
    pub fn clear(&self) {
        self.urgent.store(false, Ordering::Relaxed);
        self.any.store(false, Ordering::Relaxed);
    }
}

/// Every pool's steering state.
pub struct Steering {
    pools: Vec<PoolRuntime>,
    table: Arc<PoolTable>,
    datapath: Arc<Mutex<Option<Datapath>>>,
    events: EventSink,
    /// Which endpoint each probe job measures: (pool, endpoint).
    jobs: HashMap<JobId, (usize, usize)>,
    next_job: u64,
    dirty: Arc<Dirty>,
    totals: ProbeTotals,
    local_log: LocalFailureLog,
    probes: Option<ProbeSet>,
    /// RUM samples (`POST /api/rum`).
    rum: RumStore,
}

/// Rate limit of the local-failure log line.
#[derive(Default)]
struct LocalFailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl Steering {
    /// Builds the state for the configured `pools` and publishes every pool's first answer
    /// into `table`: from `saved` (the state file) where it knows the pool, provisionally
    /// where it does not (static pools are decided at once).
    pub fn new(
        pools: &[PoolSettings],
        table: Arc<PoolTable>,
        datapath: Arc<Mutex<Option<Datapath>>>,
        events: EventSink,
        saved: Option<&SavedState>,
    ) -> Self {
        let now = Instant::now();
        let mut s = Self {
            pools: pools.iter().map(|p| PoolRuntime::new(p, now)).collect(),
            table,
            datapath,
            events,
            jobs: HashMap::new(),
            next_job: 0,
            dirty: Arc::default(),
            totals: ProbeTotals::default(),
            local_log: LocalFailureLog::default(),
            probes: None,
            rum: RumStore::default(),
        };
        if let Some(saved) = saved {
            let mut restored = 0;
            for p in &mut s.pools {
                let name = p.settings.name.to_string();
                if let Some(sp) = saved.pools.iter().find(|sp| sp.name == name) {
                    restored += p.restore(sp, now);
                }
            }
            info!(
                endpoints = restored,
                "restored endpoint health, latency and pins from the state file"
            );
        }
        for i in 0..s.pools.len() {
            s.assign_jobs(i);
            s.reselect(i, "start-up", false);
        }
        // One table for all of them (setting each would rebuild it per pool).
        s.table.replace_all(s.answers());
        s
    }

    /// Steering over the pools of config `text` (its zone files in `testdata/`): no kernel,
    /// no event log, no state file.
    #[cfg(test)]
    pub(crate) fn for_config(text: &str) -> Self {
        let source = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ));
        let cfg = crate::config::Config::parse(text, source).unwrap_or_else(|e| panic!("{e}"));
        let table = Arc::new(PoolTable::new(
            cfg.pools.iter().map(PoolSettings::initial_answer),
        ));
        Self::new(
            &cfg.pools,
            table,
            Arc::new(Mutex::new(None)),
            EventSink::new(None).expect("an event sink without a log"),
            None,
        )
    }

    /// Gives every probed endpoint of pool `i` without a job a new one.
    fn assign_jobs(&mut self, i: usize) {
        for e in 0..self.pools[i].settings.endpoints.len() {
            if self.pools[i].settings.endpoints[e].probe.is_none() {
                self.pools[i].jobs[e] = None;
                continue;
            }
            let id = match self.pools[i].jobs[e] {
                Some(id) => id,
                None => {
                    self.next_job += 1;
                    let id = JobId(self.next_job);
                    self.pools[i].jobs[e] = Some(id);
                    id
                }
            };
            self.jobs.insert(id, (i, e));
        }
    }

    /// The probe job of every probed endpoint.
    pub fn jobs(&self) -> Vec<ProbeJob> {
        let mut jobs: Vec<ProbeJob> = self
            .jobs
            .iter()
            .filter_map(|(&id, &(p, e))| self.job(id, p, e))
            .collect();
        jobs.sort_by_key(|j| j.id);
        jobs
    }

    fn job(&self, id: JobId, pool: usize, endpoint: usize) -> Option<ProbeJob> {
        let ep = self.pools.get(pool)?.settings.endpoints.get(endpoint)?;
        Some(ProbeJob {
            id,
            spec: ep.probe.clone()?,
            target: ProbeTarget::from_endpoint(&ep.address),
        })
    }

    /// The probe job of endpoint `endpoint` of pool `pool` (by position in the config).
    pub fn job_id(&self, pool: usize, endpoint: usize) -> Option<JobId> {
        *self.pools.get(pool)?.jobs.get(endpoint)?
    }

    /// What the state file's writer watches.
    pub fn dirty(&self) -> Arc<Dirty> {
        self.dirty.clone()
    }

    /// Hands steering the scheduler running its jobs (for its figures in
    /// [`Steering::probe_stats`]).
    pub fn attach_probes(&mut self, probes: ProbeSet) {
        self.probes = Some(probes);
    }

    /// The scheduler's figures, when one is attached.
    pub fn probe_stats(&self) -> Option<SchedulerStats> {
        self.probes.as_ref().map(ProbeSet::stats)
    }

    /// Every endpoint's probes together since start-up.
    pub fn probe_totals(&self) -> &ProbeTotals {
        &self.totals
    }

    /// Feeds one probe report in: counted, then a verdict goes to the endpoint's health and
    /// a local failure is logged (rate-limited) and goes nowhere else. Reports of jobs
    /// steering no longer has are dropped.
    pub fn on_report(&mut self, report: &ProbeReport) {
        let Some(&(p, e)) = self.jobs.get(&report.id) else {
            return;
        };
        self.totals.record(report);
        if report.late
            && let Some(t) = self.pools[p].tallies.get_mut(e)
        {
            t.count_late();
        }
        match &report.attempt {
            // The tally counts a verdict where every verdict is applied.
            Ok(outcome) => self.on_probe(report.id, report.finished, outcome),
            Err(local) => {
                if let Some(t) = self.pools[p].tallies.get_mut(e) {
                    t.record_local(report.finished, local);
                }
                self.local_failure(p, e, report.finished, local);
            }
        }
    }

    fn local_failure(&mut self, pool: usize, endpoint: usize, at: Instant, f: &LocalFailure) {
        let log = &mut self.local_log;
        if log
            .last
            .is_some_and(|last| at.saturating_duration_since(last) < LOCAL_FAILURE_LOG_EVERY)
        {
            log.unlogged += 1;
            return;
        }
        let p = &self.pools[pool];
        warn!(
            pool = %p.settings.name,
            endpoint = %p.names[endpoint],
            reason = %f.reason,
            unlogged_since_last = log.unlogged,
            "a probe failed on this host, not counted against the endpoint: {}",
            f.detail
        );
        log.last = Some(at);
        log.unlogged = 0;
    }

    /// Feeds one probe result in (results of jobs no longer running are ignored).
    pub fn on_probe(&mut self, job: JobId, at: Instant, outcome: &ProbeOutcome) {
        let Some(&(pool, endpoint)) = self.jobs.get(&job) else {
            return;
        };
        if let Some(t) = self
            .pools
            .get_mut(pool)
            .and_then(|p| p.tallies.get_mut(endpoint))
        {
            t.record(at, outcome);
        }
        let Some(h) = self
            .pools
            .get_mut(pool)
            .and_then(|p| p.health.get_mut(endpoint))
        else {
            return;
        };
        let was = h.probe_state();
        let pinned = h.admin() != AdminState::Follow;
        let transition = h.record(at, outcome);
        let now = h.probe_state();
        let first_down = was == ProbeState::Unknown && now == ProbeState::Down;
        let old = |up: bool| match (was, pinned) {
            (ProbeState::Unknown, false) => "unknown",
            _ if up => "up",
            _ => "down",
        };
        self.dirty.mark(was != now || transition.is_some());
        if let Some(t) = &transition {
            self.endpoint_event(pool, endpoint, old(!t.up), t.up, &t.reason);
        } else if first_down && !pinned {
            // Down from the start is no change of the effective state (unknown counts as
            // down), but it belongs in the record.
            let reason = StateReason::FirstVerdict {
                detail: self.pools[pool].health[endpoint].last_detail().to_string(),
            };
            self.endpoint_event(pool, endpoint, "unknown", false, &reason);
        }
        // Only a changed verdict, or a new latency where the policy compares latencies,
        // can change the decision: a blackholed endpoint failing again changes nothing.
        let latency_counts = self.pools[pool].ranks_by_latency();
        if transition.is_some() || was != now || (outcome.ok && latency_counts) {
            self.reselect(pool, "probe", true);
        }
    }

    /// Pins an endpoint up or down, or makes it follow its probes again.
    pub fn set_admin(
        &mut self,
        pool: &str,
        endpoint: &str,
        state: AdminState,
    ) -> Result<String, SetAdminError> {
        let want = parse_name(pool).map_err(|reason| SetAdminError::BadPoolName {
            pool: pool.to_string(),
            reason,
        })?;
        let i = self
            .pools
            .iter()
            .position(|p| p.settings.name == want)
            .ok_or_else(|| SetAdminError::NoSuchPool(pool.to_string()))?;
        let e = self.pools[i]
            .names
            .iter()
            .position(|n| {
                n.eq_ignore_ascii_case(endpoint)
                    || n.trim_end_matches('.') == endpoint.trim_end_matches('.')
            })
            .ok_or_else(|| SetAdminError::NoSuchEndpoint {
                pool: pool.to_string(),
                endpoint: endpoint.to_string(),
            })?;
        let h = &mut self.pools[i].health[e];
        if h.admin() == state {
            return Ok(format!("{endpoint} in {pool} already {state}"));
        }
        self.dirty.mark(true);
        let transition = h.set_admin(Instant::now(), state);
        info!(%pool, %endpoint, %state, "operator set endpoint state");
        let state_name = |up: bool| if up { "up" } else { "down" };
        match transition {
            Some(t) => self.endpoint_event(i, e, state_name(!t.up), t.up, &t.reason),
            None => {
                let up = self.pools[i].health[e].is_up();
                let reason = StateReason::OperatorSet(state);
                self.endpoint_event(i, e, state_name(up), up, &reason);
            }
        }
        self.reselect(i, "operator", true);
        Ok(format!("{endpoint} in {pool} is now {state}"))
    }

    fn endpoint_event(
        &self,
        pool: usize,
        endpoint: usize,
        old: &str,
        new_up: bool,
        reason: &StateReason,
    ) {
        let p = &self.pools[pool];
        let h = &p.health[endpoint];
        let event = Event::endpoint_state(
            p.settings.name.to_string(),
            p.names[endpoint].clone(),
            old,
            if new_up { "up" } else { "down" },
            reason.to_string(),
        )
        .with_latency(
            h.latency().map(|d| d.as_secs_f64() * 1e3),
            h.last_samples()
                .iter()
                .map(|d| d.as_secs_f64() * 1e3)
                .collect(),
        )
        .with_all_down(!(0..p.health.len()).any(|i| p.is_up(i)));
        self.events.emit(event);
    }

    /// Re-decides every region of pool `i` and applies a changed answer: with `now`, into
    /// the table and the kernel map at once; without (start-up, a reload), the caller
    /// publishes every pool's answers as a whole.
    fn reselect(&mut self, i: usize, why: &str, now: bool) {
        for r in 0..self.pools[i].regions.len() {
            self.reselect_region(i, r, why, now);
        }
    }

    /// Re-decides region `r` of pool `i` (see [`Steering::reselect`]).
    fn reselect_region(&mut self, i: usize, r: usize, why: &str, now: bool) {
        let at = Instant::now();
        let p = &mut self.pools[i];
        let decision = match p.decide(r, &self.rum, at) {
            Some(d) => d,
            // Nothing changed, but nothing is published yet either (a restored answer
            // decided again): publish the decision in force.
            None if p.regions[r].published.is_none() => match p.regions[r].selector.current() {
                Some(d) => d.clone(),
                None => return,
            },
            None => return,
        };
        self.apply(i, r, &decision, why, now);
    }

    /// Publishes what `decision` answers for region `r` of pool `i` unless that is already
    /// published (`now`: see [`Steering::reselect`]).
    fn apply(&mut self, i: usize, r: usize, decision: &Decision, why: &str, now: bool) {
        let answer = self.pools[i].answer_for(r, decision);
        let p = &mut self.pools[i];
        let region_label = p.regions[r].label(&p.settings).map(str::to_string);
        let region = &mut p.regions[r];
        let new = decision.answer.render(&region.names);
        let reason = decision.reason.named(&region.names).to_string();
        let pool_name = p.settings.name.to_string();
        let region_name = region_label.as_deref().unwrap_or("-");
        let Some(published) = &region.published else {
            // The first answer: not a change of anything.
            tracing::debug!(pool = %pool_name, region = %region_name, answer = %new, reason = %reason, "first answer");
            region.answer = new;
            region.answer_since = SystemTime::now();
            region.all_down = decision.all_down;
            region.published = Some(answer.clone());
            if now {
                self.table.set(answer);
            }
            self.dirty.mark(true);
            return;
        };
        if *published == answer {
            // Same records (say, failing open to the answer in force): nothing to rewrite,
            // record or count; only the all-down state is news.
            if decision.all_down != region.all_down {
                region.all_down = decision.all_down;
                if decision.all_down {
                    warn!(pool = %pool_name, region = %region_name, answer = %new, reason = %reason, "all endpoints down; the answer stays");
                } else {
                    info!(pool = %pool_name, region = %region_name, answer = %new, reason = %reason, "an endpoint is up again; the answer stays");
                }
            }
            region.answer = new;
            self.dirty.mark(true);
            return;
        }
        let old = std::mem::replace(&mut region.answer, new.clone());
        region.answer_since = SystemTime::now();
        region.all_down = decision.all_down;
        region.changes += 1;
        region.published = Some(answer.clone());
        self.dirty.mark(true);
        if now {
            self.table.set(answer.clone());
        }
        if now
            && let Some(dp) = self
                .datapath
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            && let Err(e) = dp.maps.publish(&answer)
        {
            error!(pool = %pool_name, region = %region_name, error = format!("{e:#}"), "rewriting the kernel answer failed; the daemon answers this pool");
        }
        // The event sink logs it (warn when all endpoints are down) and records it.
        tracing::debug!(pool = %pool_name, region = %region_name, trigger = %why, "rewrote the pool answer");
        self.events.emit(
            Event::pool_answer(pool_name, old, new, reason, decision.all_down)
                .in_region(region_label.as_deref()),
        );
    }

    /// Everything the state file keeps, as of now.
    pub fn snapshot(&self, config: &std::path::Path) -> SavedState {
        SavedState {
            version: STATE_VERSION,
            written_at_ms: now_ms(std::time::SystemTime::now()),
            config: config.to_path_buf(),
            pools: self.pools.iter().map(PoolRuntime::save).collect(),
        }
    }

    /// Pools `from..` (at most `count` of them) for the state file: the state file's writer
    /// takes them a chunk at a time under short locks, so 10 000 pools are never copied at
    /// once (see `daemon::persist`). Empty past the last pool.
    pub fn save_pools(&self, from: usize, count: usize) -> Vec<crate::steering::state::SavedPool> {
        self.pools
            .iter()
            .skip(from)
            .take(count)
            .map(PoolRuntime::save)
            .collect()
    }

    /// Every pool's published answers: one per region of a `geo` pool, one for every
    /// other pool.
    pub fn answers(&self) -> Vec<PoolAnswer> {
        self.pools
            .iter()
            .flat_map(|p| p.regions.iter().filter_map(|r| r.published.clone()))
            .collect()
    }

    /// The event sink (a reload replaces the webhooks).
    pub fn events_mut(&mut self) -> &mut EventSink {
        &mut self.events
    }

    /// State of every pool and endpoint, for the HTTP API and metrics.
    pub fn status(&self) -> Vec<PoolStatus> {
        // Health keeps monotonic instants; the API shows wall-clock times.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let wall_time = |t: Instant| wall - now.saturating_duration_since(t);
        self.pools
            .iter()
            .map(|p| {
                let default = &p.regions[0];
                let current = default.selector.current();
                let region_status = |r: &RegionRuntime| RegionStatus {
                    region: r.policy.name.clone(),
                    policy: r.policy.policy.name().to_string(),
                    latency: r.policy.latency.name().to_string(),
                    endpoints: r.names.to_vec(),
                    answer: r.answer.clone(),
                    reason: match r.selector.current() {
                        Some(d) => d.reason.named(&r.names).to_string(),
                        None => "no decision yet".to_string(),
                    },
                    answer_since: r.answer_since,
                    all_down: r.all_down,
                    changes: r.changes,
                };
                PoolStatus {
                    pool: p.settings.name.to_string(),
                    rtype: p.settings.rtype.to_string(),
                    policy: if p.settings.is_geo() {
                        GEO_POLICY.to_string()
                    } else {
                        p.settings.policy.name().to_string()
                    },
                    answer: default.answer.clone(),
                    reason: match current {
                        Some(d) => d.reason.named(&default.names).to_string(),
                        None => "no decision yet".to_string(),
                    },
                    answer_since: default.answer_since,
                    all_down: default.all_down,
                    changes: default.changes,
                    regions: if p.settings.is_geo() {
                        p.regions.iter().map(region_status).collect()
                    } else {
                        Vec::new()
                    },
                    endpoints: p
                        .names
                        .iter()
                        .zip(&p.health)
                        .zip(&p.tallies)
                        .enumerate()
                        .map(|(i, ((n, h), t))| EndpointStatus {
                            endpoint: n.clone(),
                            up: p.is_up(i),
                            answered: p.regions.iter().any(|r| r.answers_endpoint(i)),
                            admin: h.admin().to_string(),
                            probe: if p.probed {
                                h.probe_state().to_string()
                            } else {
                                "none".into()
                            },
                            since: h.last_change().map(wall_time),
                            latency_ms: h.latency().map(|d| d.as_secs_f64() * 1e3),
                            samples_ms: h
                                .last_samples()
                                .iter()
                                .map(|d| d.as_secs_f64() * 1e3)
                                .collect(),
                            last_detail: h.last_detail().to_string(),
                            last_failure: t
                                .last_failure
                                .as_ref()
                                .map(|(at, what)| (wall_time(*at), what.clone())),
                            probes: t.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The event record's counters (webhook deliveries, log write errors).
    pub fn event_stats(&self) -> EventStats {
        self.events.stats()
    }
}

/// One pool as [`Steering::status`] sees it.
#[derive(Clone, Debug)]
pub struct PoolStatus {
    pub pool: String,
    /// A, AAAA or CNAME.
    pub rtype: String,
    pub policy: String,
    /// The answer in force, rendered (`192.0.2.1, 192.0.2.2`, `SERVFAIL`, ...).
    pub answer: String,
    /// Why it is the answer: the policy's reason with endpoint names.
    pub reason: String,
    /// When the answer was published.
    pub answer_since: SystemTime,
    pub all_down: bool,
    pub changes: u64,
    /// A `geo` pool's regions (the fields above are its `default` region's); empty for
    /// every other pool.
    pub regions: Vec<RegionStatus>,
    pub endpoints: Vec<EndpointStatus>,
}

/// One region of a `geo` pool as [`Steering::status`] sees it.
#[derive(Clone, Debug)]
pub struct RegionStatus {
    pub region: String,
    pub policy: String,
    /// `probes`, `rum` or `blend`.
    pub latency: String,
    /// The region's endpoints, in its order.
    pub endpoints: Vec<String>,
    pub answer: String,
    pub reason: String,
    pub answer_since: SystemTime,
    pub all_down: bool,
    pub changes: u64,
}

/// One endpoint as [`Steering::status`] sees it.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    /// Effective state (probes and pins).
    pub up: bool,
    /// Part of the answer in force (of some region, for a `geo` pool).
    pub answered: bool,
    /// The operator's pin: follow, up or down.
    pub admin: String,
    /// What the probes say: unknown, up, down; none without probes.
    pub probe: String,
    /// When the effective state last changed (`None`: not since start).
    pub since: Option<SystemTime>,
    pub latency_ms: Option<f64>,
    pub samples_ms: Vec<f64>,
    /// What the last probe said.
    pub last_detail: String,
    /// When the last failed probe arrived and what it said.
    pub last_failure: Option<(SystemTime, String)>,
    pub probes: ProbeTally,
}

/// Most reports applied under one lock of steering.
pub const REPORT_BATCH: usize = 256;

/// Expired RUM samples are dropped (and their regions decide again) this often.
pub const RUM_EXPIRY_EVERY: Duration = Duration::from_secs(1);

/// Applies probe reports until shutdown, a batch at a time, and expires RUM samples.
pub async fn run(
    steering: Arc<Mutex<Steering>>,
    mut reports: mpsc::Receiver<ProbeReport>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(REPORT_BATCH);
    let mut expiry = tokio::time::interval(RUM_EXPIRY_EVERY);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = expiry.tick() => {
                let mut s = steering.lock().unwrap_or_else(|e| e.into_inner());
                s.expire_rum(Instant::now());
            }
            n = reports.recv_many(&mut batch, REPORT_BATCH) => {
                if n == 0 {
                    return;
                }
                let mut s = steering.lock().unwrap_or_else(|e| e.into_inner());
                for report in batch.drain(..) {
                    s.on_report(&report);
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
