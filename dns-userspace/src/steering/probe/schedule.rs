//! The scheduler: every job probed forever on its own jittered interval, as many probes in
//! flight as the load needs (see the module docs of [`crate::steering::probe`]).
//!
//! One task owns every job: their due times sit in one queue (a binary heap), and each
//! run is a task of its own only while it runs, so 40 000 jobs cost 40 000 small entries,
//! not 40 000 sleeping tasks. [`ProbeSet`] is the handle: [`ProbeSet::apply`] adds and
//! removes jobs (a reload's [`JobChange`]s; jobs are keyed by a stable [`JobId`] and
//! unchanged jobs keep their schedule), [`ProbeSet::update`] replaces the whole job set,
//! [`ProbeSet::set_max_concurrent`] the ceiling, [`ProbeSet::stats`] reads the figures.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::{AbortHandle, JoinSet},
    time::Instant,
};
use tracing::{debug, error, warn};

use crate::steering::probe::{
    local::Attempt,
    run::{ProbeTarget, Prober},
    spec::ProbeSpec,
};

/// Successive runs of a job are this fraction of the interval apart at most, either way.
pub const JITTER: f64 = 0.1;
/// In-flight headroom over the load's expected concurrency: this fraction more...
pub const HEADROOM: f64 = 0.25;
/// ... plus this many (small job sets and bursts of due times).
pub const HEADROOM_MIN: usize = 16;
/// A run is late when it starts more than this fraction of its interval after it was
/// due...
pub const LATE_FRACTION: f64 = 0.1;
/// ... and at least this much.
pub const LATE_MIN: Duration = Duration::from_millis(50);
/// Finished runs handled at once before due jobs are looked at again.
const FINISH_BATCH: usize = 256;
/// Room for reports the receiver has not taken kept once they are all sent.
const BACKLOG_KEEP: usize = 1024;
/// The scheduler logs its figures (at debug level) this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Late runs are warned about at most this often.
pub const LATE_WARN_EVERY: Duration = Duration::from_secs(30);

/// `[probes]`: settings shared by every probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Most probes in flight at once: a ceiling over what the load needs
    /// ([`wanted_in_flight`]). `None` (the default): the load and the descriptor budget
    /// decide.
    pub max_concurrent: Option<usize>,
}

/// A job's stable identity. Steering allocates one per endpoint (pool name and endpoint
/// address) and keeps it across reloads; the scheduler only compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct JobId(pub u64);

/// One endpoint's probe. The spec is shared: the endpoints of a pool have one (the
/// pool's, unless an endpoint overrides it), and so do their jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeJob {
    pub id: JobId,
    pub spec: Arc<ProbeSpec>,
    pub target: ProbeTarget,
}

/// A change of the job set of a running [`ProbeSet`] ([`ProbeSet::apply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobChange {
    /// Start probing. A job with the same id and the same probe and target keeps its
    /// schedule; with another probe or target it starts over.
    Add(Box<ProbeJob>),
    /// Stop probing; a run in progress is cancelled and its result never sent.
    Remove(JobId),
}

/// One finished run, as the scheduler reports it.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    pub id: JobId,
    /// When the run finished.
    pub finished: std::time::Instant,
    /// How long after it was due the run started (waiting for a slot, or the scheduler
    /// behind).
    pub lateness: Duration,
    /// Whether that is late ([`late_after`] the job's interval).
    pub late: bool,
    /// The verdict, or a local failure that is none.
    pub attempt: Attempt,
}

/// Probes in flight the jobs need: Σ min(timeout, interval) ÷ interval over the jobs (how
/// many are in flight on average when every probe runs to its timeout: blackholed
/// endpoints), plus [`HEADROOM`] and [`HEADROOM_MIN`], and never more than one per job.
pub fn wanted_in_flight<'a>(specs: impl IntoIterator<Item = &'a ProbeSpec>) -> usize {
    let (mut load, mut jobs) = (0.0f64, 0usize);
    for spec in specs {
        let t = spec.timing;
        load += t.timeout.min(t.interval).as_secs_f64() / t.interval.as_secs_f64().max(1e-3);
        jobs += 1;
    }
    let wanted = (load * (1.0 + HEADROOM)).ceil() as usize + HEADROOM_MIN;
    wanted.min(jobs)
}

/// How late a run of a job with `interval` may start before it counts as late.
pub fn late_after(interval: Duration) -> Duration {
    interval.mul_f64(LATE_FRACTION).max(LATE_MIN)
}

/// What bounds the probes in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitSource {
    /// What the load needs ([`wanted_in_flight`]).
    Load,
    /// `[probes] max_concurrent`.
    MaxConcurrent,
    /// The descriptors set aside for probes (`crate::limits`).
    Descriptors,
}

/// The in-flight limit for `wanted` probes under the ceiling `max_concurrent` and
/// `descriptors` set aside for probes, and what set it. At least 1.
pub fn in_flight_limit(
    wanted: usize,
    max_concurrent: Option<usize>,
    descriptors: usize,
) -> (usize, LimitSource) {
    let mut limit = (wanted, LimitSource::Load);
    if let Some(m) = max_concurrent
        && m < limit.0
    {
        limit = (m, LimitSource::MaxConcurrent);
    }
    if descriptors < limit.0 {
        limit = (descriptors, LimitSource::Descriptors);
    }
    (limit.0.max(1), limit.1)
}

/// How the scheduler runs one job: [`Prober`] in the daemon; tests put their own in.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, job: &ProbeJob) -> impl Future<Output = Attempt> + Send;
}

impl Runner for Prober {
    fn run(&self, job: &ProbeJob) -> impl Future<Output = Attempt> + Send {
        self.probe(&job.spec, &job.target)
    }
}

/// The scheduler's figures, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerStats {
    /// Jobs in the set.
    pub jobs: usize,
    /// Probes running now.
    pub in_flight: usize,
    /// Most probes in flight at once, and what set it.
    pub limit: usize,
    pub limit_source: Option<LimitSource>,
    /// What the load needs ([`wanted_in_flight`]).
    pub wanted: usize,
    /// Jobs due but waiting for a slot now.
    pub waiting: usize,
    /// Runs started since start-up.
    pub started: u64,
    /// Of those, runs that started late ([`late_after`]).
    pub late: u64,
}

#[derive(Default)]
struct SharedStats {
    jobs: AtomicUsize,
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    limit_source: AtomicUsize,
    wanted: AtomicUsize,
    waiting: AtomicUsize,
    started: AtomicU64,
    late: AtomicU64,
}

impl SharedStats {
    fn snapshot(&self) -> SchedulerStats {
        let source = match self.limit_source.load(Ordering::Relaxed) {
            1 => Some(LimitSource::Load),
            2 => Some(LimitSource::MaxConcurrent),
            3 => Some(LimitSource::Descriptors),
            _ => None,
        };
        SchedulerStats {
            jobs: self.jobs.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            limit_source: source,
            wanted: self.wanted.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
        }
    }
}

enum Command {
    Update(Vec<ProbeJob>),
    /// Changes, and who waits until they are applied.
    Apply(Vec<JobChange>, oneshot::Sender<()>),
    MaxConcurrent(Option<usize>),
}

/// The handle of a running scheduler. Cloning it is cheap; the scheduler runs until
/// shutdown (or until nobody receives its reports), whether or not handles remain.
#[derive(Clone)]
pub struct ProbeSet {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<SharedStats>,
}

/// How a [`ProbeSet`] starts.
#[derive(Clone, Debug)]
pub struct ProbeSetOptions {
    /// `[probes] max_concurrent`.
    pub max_concurrent: Option<usize>,
    /// File descriptors set aside for probes (one per probe in flight; `crate::limits`
    /// computes it).
    pub descriptors: usize,
}

impl ProbeSet {
    /// Starts probing `jobs` with the real [`Prober`], sending a [`ProbeReport`] per run on
    /// `reports`. The task returns once `shutdown` is true (or its sender is gone) or
    /// nobody receives the reports.
    pub fn start(
        options: ProbeSetOptions,
        jobs: Vec<ProbeJob>,
        reports: mpsc::Sender<ProbeReport>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_with(Prober::default(), options, jobs, reports, shutdown)
    }

    /// As [`ProbeSet::start`], running each job with `runner`.
    pub fn start_with<R: Runner>(
        runner: R,
        options: ProbeSetOptions,
        jobs: Vec<ProbeJob>,
        reports: mpsc::Sender<ProbeReport>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SharedStats::default());
        let mut scheduler = Scheduler {
            runner: Arc::new(runner),
            options,
            entries: HashMap::new(),
            timers: BinaryHeap::new(),
            waiting: VecDeque::new(),
            running: JoinSet::new(),
            running_ids: HashMap::new(),
            backlog: VecDeque::new(),
            limit: 1,
            limit_source: LimitSource::Load,
            stats: stats.clone(),
            late: LateWatch::default(),
            summary: Summary::default(),
        };
        scheduler.update(jobs, Instant::now());
        let task = tokio::spawn(scheduler.run(command_rx, reports, shutdown));
        (Self { commands, stats }, task)
    }

    /// Replaces the job set: jobs with a new id start (at a random point of their first
    /// interval), jobs whose id is gone stop (a run in progress is cancelled), a job whose
    /// spec or target changed starts over as a new one, and every other job keeps its
    /// schedule. The in-flight limit follows the new load.
    pub fn update(&self, jobs: Vec<ProbeJob>) {
        let _ = self.commands.send(Command::Update(jobs));
    }

    /// Applies a reload's changes: [`JobChange::Add`] starts a job (or, for an id already
    /// running, keeps it on its schedule when its probe and target are the same and starts
    /// it over otherwise), [`JobChange::Remove`] stops one. Every other job runs on
    /// undisturbed. Returns once the scheduler has applied them: from then on no run of a
    /// removed job starts, and a run in progress has been cancelled (its result is never
    /// sent). Returns at once when the scheduler has stopped (at shutdown).
    pub async fn apply(&self, changes: Vec<JobChange>) {
        let (done, applied) = oneshot::channel();
        if self.commands.send(Command::Apply(changes, done)).is_ok() {
            // An error: the scheduler stopped before it got there; nothing runs any more.
            let _ = applied.await;
        }
    }

    /// Sets the ceiling over the in-flight limit (`[probes] max_concurrent`).
    pub fn set_max_concurrent(&self, max_concurrent: Option<usize>) {
        let _ = self.commands.send(Command::MaxConcurrent(max_concurrent));
    }

    /// The scheduler's current figures.
    pub fn stats(&self) -> SchedulerStats {
        self.stats.snapshot()
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Due; the timer entry with `ticket` is the live one.
    Scheduled { ticket: u64 },
    /// Due at `due`, waiting for a slot; the waiting entry with `ticket` is the live one.
    Waiting { due: Instant, ticket: u64 },
    /// Running.
    Running,
}

struct Entry {
    job: Arc<ProbeJob>,
    state: State,
    /// Identifies the run in progress (so a cancelled or replaced run's result is dropped).
    run: u64,
    abort: Option<AbortHandle>,
}

/// What a run task returns.
struct Done {
    id: JobId,
    run: u64,
    due: Instant,
    finished: Instant,
    lateness: Duration,
    late: bool,
    attempt: Attempt,
}

struct Scheduler<R> {
    runner: Arc<R>,
    options: ProbeSetOptions,
    entries: HashMap<JobId, Entry>,
    /// Due times: (due, job, ticket); stale tickets are skipped.
    timers: BinaryHeap<Reverse<(Instant, JobId, u64)>>,
    /// Due jobs waiting for a slot, oldest first: (job, ticket).
    waiting: VecDeque<(JobId, u64)>,
    running: JoinSet<Done>,
    running_ids: HashMap<tokio::task::Id, JobId>,
    /// Reports not yet taken by the receiver (it was full), oldest first.
    backlog: VecDeque<ProbeReport>,
    limit: usize,
    limit_source: LimitSource,
    stats: Arc<SharedStats>,
    late: LateWatch,
    summary: Summary,
}

/// A fresh ticket: tickets only need to differ from the job's previous ones.
fn new_ticket() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl<R: Runner> Scheduler<R> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        reports: mpsc::Sender<ProbeReport>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut commands_open = true;
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            // Due jobs first, whatever else is ready: timers never wait behind a stream of
            // completions.
            self.fire(now);
            self.start_waiting(now);
            self.publish_stats();
            self.late
                .maybe_warn(now, self.entries.len(), self.limit, self.limit_source);
            self.summary.maybe_log(now, &self.stats, self.backlog.len());
            let next_due = self.timers.peek().map(|Reverse((due, ..))| *due);
            if let Some(due) = next_due
                && sleep.deadline() != due
            {
                sleep.as_mut().reset(due);
            }
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return,
                command = commands.recv(), if commands_open => match command {
                    Some(Command::Update(jobs)) => self.update(jobs, Instant::now()),
                    Some(Command::Apply(changes, done)) => {
                        self.apply(changes, Instant::now());
                        let _ = done.send(());
                    }
                    Some(Command::MaxConcurrent(m)) => {
                        self.options.max_concurrent = m;
                        self.set_limit();
                    }
                    None => commands_open = false,
                },
                permit = reports.reserve(), if !self.backlog.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(report) = self.backlog.pop_front() {
                            permit.send(report);
                        }
                        // A burst the receiver fell behind on can grow the backlog to
                        // tens of thousands of reports; drained, it gives the room back.
                        if self.backlog.is_empty() && self.backlog.capacity() > BACKLOG_KEEP {
                            self.backlog.shrink_to(BACKLOG_KEEP);
                        }
                    }
                    Err(_) => return,
                },
                done = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    let Some(done) = done else { continue };
                    if !self.finish(done, &reports) {
                        return;
                    }
                    // Whatever else has finished meanwhile, a bounded batch at a time.
                    for _ in 0..FINISH_BATCH {
                        let Some(done) = self.running.try_join_next_with_id() else {
                            break;
                        };
                        if !self.finish(done, &reports) {
                            return;
                        }
                    }
                }
                // Woken when the next job is due; the loop's top starts it.
                _ = &mut sleep, if next_due.is_some() => {}
            }
        }
    }

    /// Replaces the job set (see [`ProbeSet::update`]).
    fn update(&mut self, jobs: Vec<ProbeJob>, now: Instant) {
        let mut seen = HashSet::with_capacity(jobs.len());
        for job in jobs {
            let id = job.id;
            if !seen.insert(id) {
                error!(
                    job = id.0,
                    "a probe job id came twice; the first one is kept"
                );
                continue;
            }
            self.add(job, now);
        }
        self.entries.retain(|id, e| {
            let keep = seen.contains(id);
            if !keep && let Some(abort) = e.abort.take() {
                abort.abort();
            }
            keep
        });
        self.tidy();
    }

    /// Applies a reload's changes (see [`ProbeSet::apply`]).
    fn apply(&mut self, changes: Vec<JobChange>, now: Instant) {
        for change in changes {
            match change {
                JobChange::Add(job) => self.add(*job, now),
                JobChange::Remove(id) => {
                    if let Some(mut e) = self.entries.remove(&id)
                        && let Some(abort) = e.abort.take()
                    {
                        abort.abort();
                    }
                }
            }
        }
        self.tidy();
    }

    /// Starts `job`, keeps it on its schedule if it runs already unchanged, or starts it
    /// over if its probe or target changed.
    fn add(&mut self, job: ProbeJob, now: Instant) {
        let id = job.id;
        match self.entries.get_mut(&id) {
            Some(e) if *e.job == job => {}
            Some(e) => {
                if let Some(abort) = e.abort.take() {
                    abort.abort();
                }
                e.run = new_ticket();
                e.state = schedule_first(&mut self.timers, id, &job.spec, now);
                e.job = Arc::new(job);
            }
            None => {
                let state = schedule_first(&mut self.timers, id, &job.spec, now);
                self.entries.insert(
                    id,
                    Entry {
                        job: Arc::new(job),
                        state,
                        run: new_ticket(),
                        abort: None,
                    },
                );
            }
        }
    }

    /// After jobs came and went: drops queue entries that lead nowhere and sets the
    /// in-flight limit for the new load.
    fn tidy(&mut self) {
        // Stale timer and waiting entries are skipped when they come up; rebuild the
        // queues when they hold many of them, so removals do not leak.
        if self.timers.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.timers.retain(|Reverse((_, id, t))| {
                matches!(entries.get(id).map(|e| e.state),
                    Some(State::Scheduled { ticket, .. }) if ticket == *t)
            });
        }
        let entries = &self.entries;
        self.waiting.retain(|(id, t)| {
            matches!(entries.get(id).map(|e| e.state),
                Some(State::Waiting { ticket, .. }) if ticket == *t)
        });
        self.set_limit();
    }

    fn set_limit(&mut self) {
        let wanted = wanted_in_flight(self.entries.values().map(|e| &*e.job.spec));
        let (limit, source) = in_flight_limit(
            wanted,
            self.options.max_concurrent,
            self.options.descriptors,
        );
        self.limit = limit;
        self.limit_source = source;
        self.stats.jobs.store(self.entries.len(), Ordering::Relaxed);
        self.stats.wanted.store(wanted, Ordering::Relaxed);
        self.stats.limit.store(limit, Ordering::Relaxed);
        let source = match source {
            LimitSource::Load => 1,
            LimitSource::MaxConcurrent => 2,
            LimitSource::Descriptors => 3,
        };
        self.stats.limit_source.store(source, Ordering::Relaxed);
    }

    /// Moves every job due by `now` to the waiting queue (in due order).
    fn fire(&mut self, now: Instant) {
        while let Some(Reverse((due, id, t))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if let State::Scheduled { ticket, .. } = e.state
                && ticket == t
            {
                let ticket = new_ticket();
                e.state = State::Waiting { due, ticket };
                self.waiting.push_back((id, ticket));
            }
        }
    }

    /// Starts waiting jobs while there are free slots.
    fn start_waiting(&mut self, now: Instant) {
        while self.running.len() < self.limit {
            let Some((id, t)) = self.waiting.pop_front() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            let State::Waiting { due, ticket } = e.state else {
                continue;
            };
            if ticket != t {
                continue;
            }
            e.state = State::Running;
            let (job, run, runner) = (e.job.clone(), e.run, self.runner.clone());
            let lateness = now.saturating_duration_since(due);
            let threshold = late_after(job.spec.timing.interval);
            let late = lateness > threshold;
            let abort = self.running.spawn(async move {
                let attempt = runner.run(&job).await;
                Done {
                    id: job.id,
                    run,
                    due,
                    finished: Instant::now(),
                    lateness,
                    late,
                    attempt,
                }
            });
            e.abort = Some(abort.clone());
            self.running_ids.insert(abort.id(), id);
            self.stats.started.fetch_add(1, Ordering::Relaxed);
            if late {
                self.stats.late.fetch_add(1, Ordering::Relaxed);
                self.late.record(id, lateness, threshold);
            }
        }
        let busy = self.running.len() >= self.limit && !self.waiting.is_empty();
        if busy {
            self.late.slots_full = true;
        }
    }

    /// Handles a finished run: reports it and schedules the job's next run. Returns false
    /// when nobody receives reports any more.
    fn finish(
        &mut self,
        done: Result<(tokio::task::Id, Done), tokio::task::JoinError>,
        reports: &mpsc::Sender<ProbeReport>,
    ) -> bool {
        let now = Instant::now();
        let done = match done {
            Ok((task, done)) => {
                self.running_ids.remove(&task);
                done
            }
            Err(e) => {
                let id = self.running_ids.remove(&e.id());
                if e.is_panic() {
                    error!(job = ?id, "a probe panicked: {e}");
                    // Its job runs again one interval on.
                    if let Some(id) = id
                        && let Some(entry) = self.entries.get(&id)
                        && matches!(entry.state, State::Running)
                    {
                        let due = now + entry.job.spec.timing.interval;
                        let state = schedule(&mut self.timers, id, due);
                        if let Some(entry) = self.entries.get_mut(&id) {
                            entry.state = state;
                            entry.abort = None;
                        }
                    }
                }
                // Cancelled runs belong to removed or replaced jobs, rescheduled already.
                return true;
            }
        };
        let Some(entry) = self.entries.get_mut(&done.id) else {
            return true;
        };
        if entry.run != done.run || !matches!(entry.state, State::Running) {
            return true;
        }
        entry.abort = None;
        entry.run = new_ticket();
        let interval = entry.job.spec.timing.interval;
        // Start to start one jittered interval apart, but never before this run ended: a
        // job whose probe runs to its timeout runs again at once, and a job that fell
        // behind does not catch up with a burst.
        let next = (done.due + next_delay(interval, rand::random())).max(done.finished);
        let state = schedule(&mut self.timers, done.id, next);
        if let Some(entry) = self.entries.get_mut(&done.id) {
            entry.state = state;
        }
        let report = ProbeReport {
            id: done.id,
            finished: done.finished.into_std(),
            lateness: done.lateness,
            late: done.late,
            attempt: done.attempt,
        };
        if self.backlog.is_empty() {
            match reports.try_send(report) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(report)) => self.backlog.push_back(report),
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        } else {
            self.backlog.push_back(report);
        }
        true
    }

    fn publish_stats(&self) {
        let s = &self.stats;
        s.jobs.store(self.entries.len(), Ordering::Relaxed);
        s.in_flight.store(self.running.len(), Ordering::Relaxed);
        s.waiting.store(self.waiting.len(), Ordering::Relaxed);
    }
}

/// The periodic debug line: what the scheduler did since the last one.
#[derive(Default)]
struct Summary {
    last: Option<(Instant, u64, u64)>,
}

impl Summary {
    fn maybe_log(&mut self, now: Instant, stats: &SharedStats, backlog: usize) {
        let s = stats.snapshot();
        let Some((at, started, late)) = self.last else {
            self.last = Some((now, s.started, s.late));
            return;
        };
        let elapsed = now.duration_since(at);
        if elapsed < SUMMARY_EVERY {
            return;
        }
        let runs = s.started - started;
        debug!(
            jobs = s.jobs,
            runs,
            runs_per_second = (runs as f64 / elapsed.as_secs_f64()).round() as u64,
            late = s.late - late,
            in_flight = s.in_flight,
            limit = s.limit,
            waiting = s.waiting,
            unreported = backlog,
            "probe scheduler"
        );
        self.last = Some((now, s.started, s.late));
    }
}

/// Late runs since the last warning, for one rate-limited log line.
#[derive(Default)]
struct LateWatch {
    jobs: HashSet<JobId>,
    runs: u64,
    worst: Duration,
    threshold: Duration,
    /// Jobs were due while every slot was taken.
    slots_full: bool,
    last_warning: Option<Instant>,
}

impl LateWatch {
    fn record(&mut self, id: JobId, lateness: Duration, threshold: Duration) {
        self.jobs.insert(id);
        self.runs += 1;
        self.worst = self.worst.max(lateness);
        self.threshold = if self.threshold.is_zero() {
            threshold
        } else {
            self.threshold.min(threshold)
        };
    }

    fn maybe_warn(&mut self, now: Instant, jobs: usize, limit: usize, source: LimitSource) {
        if self.runs == 0
            || self
                .last_warning
                .is_some_and(|at| now.duration_since(at) < LATE_WARN_EVERY)
        {
            return;
        }
        let (why, remedy) = match (self.slots_full, source) {
            (false, _) => (
                "the scheduler itself fell behind (CPU starved?)".to_string(),
                "raise the interval or give the daemon more CPU",
            ),
            (true, LimitSource::Descriptors) => (
                format!("all {limit} probe slots were busy (the open-file limit sets them)"),
                "raise the open-file limit (LimitNOFILE) or the interval",
            ),
            (true, LimitSource::MaxConcurrent | LimitSource::Load) => (
                format!("all {limit} probe slots were busy"),
                "raise [probes] max_concurrent or the interval",
            ),
        };
        warn!(
            late_runs = self.runs,
            worst_ms = self.worst.as_millis() as u64,
            "probes are running late: {} of {jobs} jobs behind by > {}; {why}; {remedy}",
            self.jobs.len(),
            humantime::format_duration(self.threshold),
        );
        *self = Self {
            last_warning: Some(now),
            ..Self::default()
        };
    }
}

/// A new job's first run: a random point of its first interval.
fn schedule_first(
    timers: &mut BinaryHeap<Reverse<(Instant, JobId, u64)>>,
    id: JobId,
    spec: &ProbeSpec,
    now: Instant,
) -> State {
    let due = now + first_delay(spec.timing.interval, rand::random());
    schedule(timers, id, due)
}

fn schedule(
    timers: &mut BinaryHeap<Reverse<(Instant, JobId, u64)>>,
    id: JobId,
    due: Instant,
) -> State {
    let ticket = new_ticket();
    timers.push(Reverse((due, id, ticket)));
    State::Scheduled { ticket }
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Offset of a job's first run: `u` (uniform in [0, 1)) of an interval.
pub(super) fn first_delay(interval: Duration, u: f64) -> Duration {
    interval.mul_f64(u.clamp(0.0, 1.0))
}

/// Time between runs: the interval ± [`JITTER`], `u` uniform in [0, 1).
pub(super) fn next_delay(interval: Duration, u: f64) -> Duration {
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * u.clamp(0.0, 1.0))
}
