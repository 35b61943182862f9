//! The scheduler: every probe job (one endpoint's probe) run forever on its own jittered
//! interval, with bounded concurrency (see the module docs of [`crate::steering::probe`]).
//! Jobs have stable ids, so a reload adds and removes jobs while the others keep their rhythm
//! ([`run_probe_set`]).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::{AbortHandle, JoinSet},
};

use crate::steering::{
    health::ProbeOutcome,
    probe::{
        run::{IcmpClients, ProbeTarget, Prober},
        spec::ProbeSpec,
    },
};

/// Default most probes in flight at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// Successive runs of a job are this fraction of the interval apart at most, either way.
pub const JITTER: f64 = 0.1;

/// `[probes]`: settings shared by every probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Most probes in flight at once. Default 64.
    pub max_concurrent: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// A probe job's id, stable while its endpoint and probe stay the same (across reloads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// One endpoint's probe for [`run_probes`].
#[derive(Clone, Debug)]
pub struct ProbeJob {
    pub id: JobId,
    pub spec: ProbeSpec,
    pub target: ProbeTarget,
}

/// A probe result as the scheduler sends it: (job, finished at, outcome).
pub type ProbeResult = (JobId, Instant, ProbeOutcome);

/// A change of the job set of a running [`run_probe_set`].
#[derive(Clone, Debug)]
pub enum JobChange {
    /// Start probing (replaces a job with the same id).
    Add(Box<ProbeJob>),
    /// Stop probing; a probe in flight is abandoned and its result never sent.
    Remove(JobId),
}

/// Runs every job forever on its jittered interval with at most `max_concurrent` probes
/// in flight, sending `(job, finished at, outcome)` on `tx`. Returns when `shutdown`
/// becomes true (or its sender is dropped) or when `tx`'s receiver is gone, after every job
/// has stopped.
pub async fn run_probes(
    jobs: Vec<ProbeJob>,
    max_concurrent: usize,
    tx: mpsc::Sender<ProbeResult>,
    shutdown: watch::Receiver<bool>,
) {
    let (_changes, rx) = mpsc::unbounded_channel();
    run_probe_set(jobs, max_concurrent, tx, rx, shutdown).await;
}

/// [`run_probes`] with a job set that changes while it runs: jobs are added and removed
/// through `changes`; the others keep running undisturbed.
pub async fn run_probe_set(
    jobs: Vec<ProbeJob>,
    max_concurrent: usize,
    tx: mpsc::Sender<ProbeResult>,
    mut changes: mpsc::UnboundedReceiver<JobChange>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let icmp = Arc::new(IcmpClients::default());
    let mut tasks = JoinSet::new();
    let mut running: HashMap<JobId, AbortHandle> = HashMap::new();
    let job_shutdown = shutdown.clone();
    let job_tx = tx.clone();
    let spawn = |tasks: &mut JoinSet<()>, running: &mut HashMap<JobId, AbortHandle>, job| {
        let id = ProbeJob::id(&job);
        let handle = tasks.spawn(run_job(
            job,
            slots.clone(),
            icmp.clone(),
            job_tx.clone(),
            job_shutdown.clone(),
        ));
        if let Some(old) = running.insert(id, handle) {
            old.abort();
        }
    };
    for job in jobs {
        spawn(&mut tasks, &mut running, job);
    }
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            _ = tx.closed() => break,
            change = changes.recv(), if open => match change {
                Some(JobChange::Add(job)) => spawn(&mut tasks, &mut running, *job),
                Some(JobChange::Remove(id)) => {
                    if let Some(handle) = running.remove(&id) {
                        handle.abort();
                    }
                }
                None => open = false,
            },
            done = tasks.join_next(), if !tasks.is_empty() => {
                if let Some(Err(e)) = done && !e.is_cancelled() {
                    tracing::error!("a probe task failed: {e}");
                }
            }
        }
    }
    drop((tx, job_tx));
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done
            && !e.is_cancelled()
        {
            tracing::error!("a probe task failed: {e}");
        }
    }
}

impl ProbeJob {
    fn id(&self) -> JobId {
        self.id
    }
}

async fn run_job(
    job: ProbeJob,
    slots: Arc<Semaphore>,
    icmp: Arc<IcmpClients>,
    tx: mpsc::Sender<ProbeResult>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ProbeJob { id, spec, target } = job;
    let mut prober = Prober::new(icmp);
    let mut next = tokio::time::Instant::now() + first_delay(spec.timing.interval, rand::random());
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let outcome = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            o = prober.probe(&spec, &target) => o,
        };
        drop(permit);
        let finished = Instant::now();
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            sent = tx.send((id, finished, outcome)) => if sent.is_err() {
                return;
            },
        }
        // Start to start, one jittered interval apart; a job that fell behind (a slow
        // probe, a wait for a slot) runs at once, rather than catching up in a burst.
        next = (next + next_delay(spec.timing.interval, rand::random()))
            .max(tokio::time::Instant::now());
    }
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
