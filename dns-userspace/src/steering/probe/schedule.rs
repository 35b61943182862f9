//! The scheduler: every (pool, endpoint) probed forever on its own jittered interval, with
//! bounded concurrency (see the module docs of [`crate::steering::probe`]).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
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

/// One (pool, endpoint) probe for [`run_probes`].
#[derive(Clone, Debug)]
pub struct ProbeJob {
    pub pool: usize,
    pub endpoint: usize,
    pub spec: ProbeSpec,
    pub target: ProbeTarget,
}

/// Runs every job forever on its jittered interval with at most `max_concurrent` probes
/// in flight, sending `(pool, endpoint, finished at, outcome)` on `tx`. Returns when
/// `shutdown` becomes true (or its sender is dropped) or when `tx`'s receiver is gone,
/// after every job has stopped.
pub async fn run_probes(
    jobs: Vec<ProbeJob>,
    max_concurrent: usize,
    tx: mpsc::Sender<(usize, usize, Instant, ProbeOutcome)>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let icmp = Arc::new(IcmpClients::default());
    let mut tasks = JoinSet::new();
    for job in jobs {
        tasks.spawn(run_job(
            job,
            slots.clone(),
            icmp.clone(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("a probe task failed: {e}");
        }
    }
}

async fn run_job(
    job: ProbeJob,
    slots: Arc<Semaphore>,
    icmp: Arc<IcmpClients>,
    tx: mpsc::Sender<(usize, usize, Instant, ProbeOutcome)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ProbeJob {
        pool,
        endpoint,
        spec,
        target,
    } = job;
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
            sent = tx.send((pool, endpoint, finished, outcome)) => if sent.is_err() {
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
