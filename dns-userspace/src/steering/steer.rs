//! Steering: probe results → endpoint health → policy decision → the pool's answer in the
//! daemon's table *and* the kernel's hot map, plus an event for every change.
//!
//! One [`Steering`] owns every pool's runtime state. Probe results arrive on a channel from
//! [`crate::steering::probe::run_probes`]; operator pins arrive through
//! [`Steering::set_admin`] (the HTTP API). A pool's answer is rewritten only when the
//! policy's decision changes, and
//! then atomically in both answer paths (see [`crate::datapath::hot`] for the kernel side).
//!
//! Start-up: until every probed endpoint of a pool has a verdict (`rise` successes or `fall`
//! failures, or an operator pin), the pool keeps answering its configured endpoints, as a
//! pool without probes does. Deciding earlier would answer SERVFAIL or a lone endpoint just
//! because the others had not been probed yet.
//!
//! Probe ids: every probed endpoint gets a [`JobId`] when steering first sees it
//! ([`Steering::allocate_id`]); the scheduler's jobs ([`Steering::jobs`]) and reports carry
//! it, so a report always finds its endpoint, whatever the pool's index. A reload that keeps
//! an endpoint (same pool name and address) keeps its id, its health and its tally, and
//! [`Steering::sync_probes`] hands the scheduler the new job set.
//!
//! Local probe failures ([`LocalFailure`]) are counted and logged (at most every
//! [`LOCAL_FAILURE_LOG_EVERY`], with how many were not logged) and never reach
//! [`EndpointHealth`]: they are not verdicts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    datapath::{
        ebpf::Datapath,
        pools::{PoolAnswer, PoolTable, Selection},
    },
    dns::{NameError, parse_name},
    steering::{
        endpoint::EndpointAddress,
        events::{Event, EventSink, EventStats},
        health::{AdminState, EndpointHealth, ProbeOutcome, ProbeState, StateReason},
        policy::{AllDown, Answer, Candidate, Decision, Policy, Selector},
        pool::PoolSettings,
        probe::{
            JobId, LocalFailure, ProbeJob, ProbeReport, ProbeSet, ProbeTarget, SchedulerStats,
        },
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

struct PoolRuntime {
    settings: PoolSettings,
    /// Endpoint names for logs and events (address or host name).
    names: Vec<String>,
    health: Vec<EndpointHealth>,
    /// The probe job of each endpoint (`None`: not probed).
    ids: Vec<Option<JobId>>,
    selector: Selector,
    /// The pool has probes (otherwise every endpoint counts as up unless pinned down).
    probed: bool,
    /// Rendering of the answer in force, for the `old` side of events.
    answer: String,
    /// When the answer in force was published (start-up for the configured set).
    answer_since: SystemTime,
    all_down: bool,
    changes: u64,
    /// Each endpoint's probe record.
    tallies: Vec<ProbeTally>,
}

impl PoolRuntime {
    fn new(settings: &PoolSettings, now: Instant, ids: &mut impl FnMut() -> JobId) -> Self {
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
        let configured: Vec<usize> = (0..settings.endpoints.len()).collect();
        Self {
            answer: Answer::Endpoints(configured).render(&names),
            answer_since: SystemTime::now(),
            tallies: vec![ProbeTally::default(); names.len()],
            names,
            health,
            ids: settings
                .endpoints
                .iter()
                .map(|e| e.probe.as_ref().map(|_| ids()))
                .collect(),
            selector: Selector::new(settings.policy.clone(), settings.all_down.clone()),
            probed: settings.probe.is_some(),
            all_down: false,
            changes: 0,
            settings: settings.clone(),
        }
    }

    /// Whether endpoint `i` counts as up: its health verdict, or for a pool without
    /// probes, anything but a pin down.
    fn is_up(&self, i: usize) -> bool {
        let h = &self.health[i];
        if self.probed {
            h.is_up()
        } else {
            h.admin() != AdminState::Down
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.settings
            .endpoints
            .iter()
            .zip(&self.health)
            .enumerate()
            .map(|(i, (e, h))| Candidate {
                up: self.is_up(i),
                latency: h.latency(),
                weight: e.weight,
                priority: e.priority,
            })
            .collect()
    }

    /// Every probed endpoint has a verdict (or is pinned): decisions may start.
    fn warmed_up(&self) -> bool {
        !self.probed
            || self
                .health
                .iter()
                .all(|h| h.admin() != AdminState::Follow || h.probe_state() != ProbeState::Unknown)
    }

    /// The records a decision answers with.
    fn answer_for(&self, decision: &Decision) -> PoolAnswer {
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
}

/// Every pool's steering state.
pub struct Steering {
    pools: Vec<PoolRuntime>,
    table: Arc<PoolTable>,
    datapath: Arc<Mutex<Option<Datapath>>>,
    events: EventSink,
    /// Probe job → (pool, endpoint) index.
    by_id: HashMap<JobId, (usize, usize)>,
    next_id: u64,
    totals: ProbeTotals,
    local_log: LocalFailureLog,
    probes: Option<ProbeSet>,
}

/// Rate limit of the local-failure log line.
#[derive(Default)]
struct LocalFailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl Steering {
    /// Builds the state for the configured `pools`; static pools (no probes) are decided at
    /// once.
    pub fn new(
        pools: &[PoolSettings],
        table: Arc<PoolTable>,
        datapath: Arc<Mutex<Option<Datapath>>>,
        events: EventSink,
    ) -> Self {
        let now = Instant::now();
        let mut next_id = 0;
        let mut ids = || {
            next_id += 1;
            JobId(next_id)
        };
        let pools: Vec<PoolRuntime> = pools
            .iter()
            .map(|p| PoolRuntime::new(p, now, &mut ids))
            .collect();
        let mut s = Self {
            pools,
            table,
            datapath,
            events,
            by_id: HashMap::new(),
            next_id,
            totals: ProbeTotals::default(),
            local_log: LocalFailureLog::default(),
            probes: None,
        };
        s.index_ids();
        for i in 0..s.pools.len() {
            s.reselect(i, "start-up");
        }
        s
    }

    /// A probe job id no endpoint has had (for an endpoint a reload adds).
    pub fn allocate_id(&mut self) -> JobId {
        self.next_id += 1;
        JobId(self.next_id)
    }

    /// Rebuilds the job id → (pool, endpoint) index (after the pools changed).
    fn index_ids(&mut self) {
        self.by_id = self
            .pools
            .iter()
            .enumerate()
            .flat_map(|(p, pool)| {
                pool.ids
                    .iter()
                    .enumerate()
                    .filter_map(move |(e, id)| id.map(|id| (id, (p, e))))
            })
            .collect();
    }

    /// The probe jobs for every probed endpoint.
    pub fn jobs(&self) -> Vec<ProbeJob> {
        let mut jobs = Vec::new();
        for pool in &self.pools {
            for (ep, id) in pool.settings.endpoints.iter().zip(&pool.ids) {
                if let (Some(spec), Some(id)) = (&ep.probe, id) {
                    jobs.push(ProbeJob {
                        id: *id,
                        spec: spec.clone(),
                        target: ProbeTarget::from_endpoint(&ep.address),
                    });
                }
            }
        }
        jobs
    }

    /// Hands steering the scheduler running its jobs (for [`Steering::sync_probes`] and
    /// the scheduler's figures in [`Steering::probe_stats`]).
    pub fn attach_probes(&mut self, probes: ProbeSet) {
        self.probes = Some(probes);
    }

    /// Gives the scheduler the current job set (after the pools changed): unchanged
    /// endpoints keep their schedule.
    pub fn sync_probes(&self) {
        if let Some(p) = &self.probes {
            p.update(self.jobs());
        }
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
        let Some(&(p, e)) = self.by_id.get(&report.id) else {
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
            Ok(outcome) => self.on_probe(p, e, report.finished, outcome),
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

    /// Feeds one probe result in.
    pub fn on_probe(&mut self, pool: usize, endpoint: usize, at: Instant, outcome: &ProbeOutcome) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let Some(h) = p.health.get_mut(endpoint) else {
            return;
        };
        if let Some(t) = p.tallies.get_mut(endpoint) {
            t.record(at, outcome);
        }
        let was = h.probe_state();
        let pinned = h.admin() != AdminState::Follow;
        let transition = h.record(at, outcome);
        let first_down = was == ProbeState::Unknown && h.probe_state() == ProbeState::Down;
        let old = |up: bool| match (was, pinned) {
            (ProbeState::Unknown, false) => "unknown",
            _ if up => "up",
            _ => "down",
        };
        if let Some(t) = &transition {
            self.endpoint_event(pool, endpoint, old(!t.up), t.up, &t.reason);
        } else if first_down && !pinned {
            // Down from the start is no change of the effective state (unknown counts as
            // down), but it belongs in the record.
            let reason = StateReason::FirstVerdict {
                detail: h.last_detail().to_string(),
            };
            self.endpoint_event(pool, endpoint, "unknown", false, &reason);
        }
        // Only a changed verdict, or a new latency where the policy compares latencies,
        // can change the decision: a blackholed endpoint failing again changes nothing.
        let p = &self.pools[pool];
        let latency_counts = matches!(p.settings.policy, Policy::Fastest { .. });
        let verdict_changed = p.health[endpoint].probe_state() != was;
        if transition.is_some() || verdict_changed || (outcome.ok && latency_counts) {
            self.reselect(pool, "probe");
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
        self.reselect(i, "operator");
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
        );
        self.events.emit(event);
    }

    /// Re-decides pool `i` and applies a changed decision.
    fn reselect(&mut self, i: usize, why: &str) {
        if !self.pools[i].warmed_up() {
            return;
        }
        let candidates = self.pools[i].candidates();
        let Some(decision) = self.pools[i].selector.update(&candidates) else {
            return;
        };
        let answer = self.pools[i].answer_for(&decision);
        let p = &mut self.pools[i];
        let new = decision.answer.render(&p.names);
        let reason = decision.reason.named(&p.names).to_string();
        if new == p.answer && decision.all_down == p.all_down {
            // The configured set confirmed at start-up: nothing to rewrite.
            return;
        }
        let old = std::mem::replace(&mut p.answer, new.clone());
        p.answer_since = SystemTime::now();
        p.all_down = decision.all_down;
        p.changes += 1;
        let pool_name = p.settings.name.to_string();
        self.table.set(answer.clone());
        if let Some(dp) = self
            .datapath
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            && let Err(e) = dp.maps.publish(&answer)
        {
            error!(pool = %pool_name, error = format!("{e:#}"), "rewriting the kernel answer failed; the daemon answers this pool");
        }
        // The event sink logs it (warn when all endpoints are down) and records it.
        tracing::debug!(pool = %pool_name, trigger = %why, "rewrote the pool answer");
        self.events.emit(Event::pool_answer(
            pool_name,
            old,
            new,
            reason,
            decision.all_down,
        ));
    }

    /// State of every pool and endpoint, for the HTTP API and metrics.
    pub fn status(&self) -> Vec<PoolStatus> {
        // Health keeps monotonic instants; the API shows wall-clock times.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let wall_time = |t: Instant| wall - now.saturating_duration_since(t);
        self.pools
            .iter()
            .map(|p| {
                let warmed_up = p.warmed_up();
                let current = p.selector.current().filter(|_| warmed_up);
                let answered = |i: usize| match current.map(|d| &d.answer) {
                    None => true,
                    Some(Answer::Endpoints(v)) => v.contains(&i),
                    Some(Answer::Weighted(v)) => v.iter().any(|&(e, _)| e == i),
                    Some(Answer::Fallback | Answer::Servfail) => false,
                };
                PoolStatus {
                    pool: p.settings.name.to_string(),
                    rtype: p.settings.rtype.to_string(),
                    policy: p.settings.policy.name().to_string(),
                    answer: p.answer.clone(),
                    reason: match current {
                        Some(d) => d.reason.named(&p.names).to_string(),
                        None if p.probed => {
                            "start-up: the configured endpoints until every endpoint has a first verdict"
                                .to_string()
                        }
                        None => "no probes: every endpoint not pinned down".to_string(),
                    },
                    answer_since: p.answer_since,
                    all_down: p.all_down,
                    changes: p.changes,
                    endpoints: p
                        .names
                        .iter()
                        .zip(&p.health)
                        .zip(&p.tallies)
                        .enumerate()
                        .map(|(i, ((n, h), t))| EndpointStatus {
                            endpoint: n.clone(),
                            up: p.is_up(i),
                            answered: answered(i),
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
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint as [`Steering::status`] sees it.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    /// Effective state (probes and pins).
    pub up: bool,
    /// Part of the answer in force.
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

/// Applies probe reports until shutdown, a batch at a time.
pub async fn run(
    steering: Arc<Mutex<Steering>>,
    mut reports: mpsc::Receiver<ProbeReport>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(REPORT_BATCH);
    loop {
        tokio::select! {
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
mod tests {
    use std::{path::Path, time::Duration};

    use hickory_proto::rr::{LowerName, Name, RData, rdata::A};

    use super::*;
    use crate::{config::Config, steering::health::parse_admin};

    /// Steering over one pool of `endpoints` with `keys`, no kernel, events to a file.
    fn steering(keys: &str, endpoints: &str, log: &Path) -> (Steering, Arc<PoolTable>) {
        let text = format!(
            "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\n\
             [events]\nlog = \"{}\"\n\n\
             [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n{keys}\nendpoints = [{endpoints}]\n",
            log.display()
        );
        let source = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ));
        let cfg = Config::parse(&text, source).unwrap_or_else(|e| panic!("{e}"));
        let table = Arc::new(PoolTable::new(
            cfg.pools.iter().map(PoolSettings::initial_answer),
        ));
        let events = EventSink::new(Some(log)).unwrap();
        let s = Steering::new(
            &cfg.pools,
            table.clone(),
            Arc::new(Mutex::new(None)),
            events,
        );
        (s, table)
    }

    fn answer(table: &PoolTable) -> Arc<PoolAnswer> {
        table
            .get(&LowerName::from(
                Name::from_ascii("www.example.test.").unwrap(),
            ))
            .unwrap()
    }

    fn addrs(a: &PoolAnswer) -> Vec<String> {
        a.rdata
            .iter()
            .map(|d| match d {
                RData::A(A(ip)) => ip.to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn ok(ms: u64) -> ProbeOutcome {
        ProbeOutcome::success(Duration::from_millis(ms), "HTTP 200")
    }

    fn fail() -> ProbeOutcome {
        ProbeOutcome::failure("connection refused")
    }

    fn log_lines(log: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    struct TempLog(std::path::PathBuf);
    impl TempLog {
        fn new(tag: &str) -> Self {
            Self(
                std::env::temp_dir()
                    .join(format!("hotpool-steer-{tag}-{}.jsonl", std::process::id())),
            )
        }
    }
    impl Drop for TempLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const PROBE: &str =
        "probe = { kind = \"tcp\", port = 80, interval = \"1s\", rise = 2, fall = 3 }";
    const TWO: &str = "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }";

    #[test]
    fn keeps_the_configured_set_until_every_endpoint_has_a_verdict() {
        let log = TempLog::new("warm");
        let (mut s, table) = steering(PROBE, TWO, &log.0);
        let t = Instant::now();
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1", "192.0.2.2"]);
        // Endpoint 0 is up after `rise`, endpoint 1 still unknown: no decision yet.
        s.on_probe(0, 0, t, &ok(10));
        s.on_probe(0, 0, t, &ok(10));
        s.on_probe(0, 1, t, &ok(50));
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1", "192.0.2.2"]);
        // Both have verdicts: the fastest is answered.
        s.on_probe(0, 1, t, &ok(50));
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
        let events = log_lines(&log.0);
        let pool_events: Vec<_> = events
            .iter()
            .filter(|e| e["kind"] == "pool_answer")
            .collect();
        assert_eq!(pool_events.len(), 1);
        assert_eq!(pool_events[0]["old"], "192.0.2.1, 192.0.2.2");
        assert_eq!(pool_events[0]["new"], "192.0.2.1");
        assert!(
            pool_events[0]["reason"]
                .as_str()
                .unwrap()
                .contains("192.0.2.1")
        );
        let up: Vec<_> = events
            .iter()
            .filter(|e| e["kind"] == "endpoint_state")
            .collect();
        assert_eq!(up.len(), 2);
        assert_eq!(up[0]["old"], "unknown");
        assert_eq!(up[0]["new"], "up");
    }

    #[test]
    fn fails_over_after_fall_failures_and_back_after_rise_successes() {
        let log = TempLog::new("failover");
        let (mut s, table) = steering(PROBE, TWO, &log.0);
        let t = Instant::now();
        for _ in 0..2 {
            s.on_probe(0, 0, t, &ok(10));
            s.on_probe(0, 1, t, &ok(50));
        }
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
        s.on_probe(0, 0, t, &fail());
        s.on_probe(0, 0, t, &fail());
        assert_eq!(
            addrs(&answer(&table)),
            ["192.0.2.1"],
            "not yet `fall` failures"
        );
        s.on_probe(0, 0, t, &fail());
        assert_eq!(addrs(&answer(&table)), ["192.0.2.2"]);
        s.on_probe(0, 0, t, &ok(10));
        assert_eq!(
            addrs(&answer(&table)),
            ["192.0.2.2"],
            "not yet `rise` successes"
        );
        s.on_probe(0, 0, t, &ok(10));
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
        let down = log_lines(&log.0)
            .into_iter()
            .find(|e| e["new"] == "down")
            .expect("a down event");
        assert_eq!(down["endpoint"], "192.0.2.1");
        assert!(
            down["reason"]
                .as_str()
                .unwrap()
                .contains("3 consecutive failures")
        );
        assert!(down["latency_ms"].is_number() || down["latency_ms"].is_null());
    }

    #[test]
    fn all_down_fails_open_servfails_or_falls_back() {
        let log = TempLog::new("alldown");
        let (mut s, table) = steering(PROBE, TWO, &log.0);
        let t = Instant::now();
        for _ in 0..2 {
            s.on_probe(0, 0, t, &ok(10));
            s.on_probe(0, 1, t, &ok(50));
        }
        for _ in 0..3 {
            s.on_probe(0, 0, t, &fail());
            s.on_probe(0, 1, t, &fail());
        }
        let a = answer(&table);
        assert_eq!(
            addrs(&a),
            ["192.0.2.2"],
            "fail-open: the last known good set"
        );
        assert_eq!(a.selection, Selection::All);
        let last = log_lines(&log.0).pop().unwrap();
        assert_eq!(last["all_down"], true);

        let log = TempLog::new("servfail");
        let (mut s, table) = steering(&format!("{PROBE}\nall_down = \"servfail\""), TWO, &log.0);
        for _ in 0..3 {
            s.on_probe(0, 0, t, &fail());
            s.on_probe(0, 1, t, &fail());
        }
        assert!(answer(&table).servfail());

        let log = TempLog::new("fallback");
        let (mut s, table) = steering(
            &format!("{PROBE}\nall_down = \"fallback\"\nfallback = [\"198.51.100.1\"]"),
            TWO,
            &log.0,
        );
        for _ in 0..3 {
            s.on_probe(0, 0, t, &fail());
            s.on_probe(0, 1, t, &fail());
        }
        assert_eq!(addrs(&answer(&table)), ["198.51.100.1"]);
    }

    #[test]
    fn weighted_policy_publishes_a_per_query_choice() {
        let log = TempLog::new("weighted");
        let (mut s, table) = steering(
            &format!("{PROBE}\npolicy = \"weighted\""),
            "{ address = \"192.0.2.1\", weight = 1 }, { address = \"192.0.2.2\", weight = 3 }",
            &log.0,
        );
        let t = Instant::now();
        for _ in 0..2 {
            s.on_probe(0, 0, t, &ok(10));
            s.on_probe(0, 1, t, &ok(10));
        }
        let a = answer(&table);
        assert_eq!(addrs(&a), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(a.selection, Selection::weighted(vec![1, 3]));
        // One endpoint left: a plain answer.
        for _ in 0..3 {
            s.on_probe(0, 1, t, &fail());
        }
        let a = answer(&table);
        assert_eq!(addrs(&a), ["192.0.2.1"]);
        assert_eq!(a.selection, Selection::All);
    }

    #[test]
    fn operator_pins_apply_at_once_and_are_recorded() {
        let log = TempLog::new("pins");
        let (mut s, table) = steering(PROBE, TWO, &log.0);
        let t = Instant::now();
        for _ in 0..2 {
            s.on_probe(0, 0, t, &ok(10));
            s.on_probe(0, 1, t, &ok(50));
        }
        s.set_admin("www.example.test", "192.0.2.1", AdminState::Down)
            .unwrap();
        assert_eq!(addrs(&answer(&table)), ["192.0.2.2"]);
        // Probes no longer move a pinned endpoint.
        s.on_probe(0, 0, t, &ok(1));
        assert_eq!(addrs(&answer(&table)), ["192.0.2.2"]);
        s.set_admin("www.example.test.", "192.0.2.1", AdminState::Follow)
            .unwrap();
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
        assert!(
            s.set_admin("nope.example.test.", "192.0.2.1", AdminState::Up)
                .is_err()
        );
        assert!(
            s.set_admin("www.example.test.", "192.0.2.9", AdminState::Up)
                .is_err()
        );
        let pinned = log_lines(&log.0)
            .into_iter()
            .find(|e| e["reason"] == "pinned down by operator")
            .expect("the pin is recorded");
        assert_eq!(pinned["old"], "up");
        assert_eq!(pinned["new"], "down");
        let status = s.status();
        assert_eq!(status[0].endpoints[0].admin, "follow");
        assert_eq!(status[0].answer, "192.0.2.1");
    }

    #[test]
    fn static_pools_answer_every_endpoint_not_pinned_down() {
        let log = TempLog::new("static");
        let (mut s, table) = steering(
            "",
            "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\", state = \"down\" }",
            &log.0,
        );
        assert!(s.jobs().is_empty());
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
        s.set_admin("www.example.test.", "192.0.2.2", AdminState::Follow)
            .unwrap();
        assert_eq!(addrs(&answer(&table)), ["192.0.2.1", "192.0.2.2"]);
    }

    #[test]
    fn admin_state_names() {
        assert_eq!(parse_admin("up").unwrap(), AdminState::Up);
        assert_eq!(parse_admin("always_off").unwrap(), AdminState::Down);
        assert_eq!(parse_admin("follow-sonar").unwrap(), AdminState::Follow);
        assert!(parse_admin("maybe").is_err());
    }
}
