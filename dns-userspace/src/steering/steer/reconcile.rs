//! A reload's pool set applied to the running steering state.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use crate::{
    datapath::pools::PoolTable,
    steering::{
        pool::PoolSettings,
        probe::{JobChange, JobId},
        steer::{Steering, runtime::PoolRuntime},
    },
};

/// What a reload changed in the pool set.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Pools whose settings changed.
    pub changed: Vec<String>,
    /// Probe jobs to start and to stop.
    pub jobs: Vec<JobChange>,
}

impl Steering {
    /// Replaces the pool set with `pools` (a reload's, validated) and publishes every pool's
    /// answer into `table`, the answer table that serves once the caller swaps it in.
    ///
    /// An endpoint that stays (same pool name and type, same address) keeps its health, its
    /// latency window and its runtime pin (unless its `state` in the config changed: then
    /// the config's), and its probe job keeps running if its probe did not change; the
    /// pool's answer in force carries over too, so hysteresis and fail-open continue. A new
    /// endpoint starts unknown, and counts as down until its verdict; a new pool answers
    /// provisionally until its first verdicts.
    ///
    /// The kernel map is not written here: the caller syncs it from
    /// [`Steering::answers`] after swapping `table` in.
    pub fn reconcile(&mut self, pools: &[PoolSettings], table: Arc<PoolTable>) -> Reconciled {
        let now = Instant::now();
        let mut old: HashMap<String, PoolRuntime> = self
            .pools
            .drain(..)
            .map(|p| (p.settings.name.to_string(), p))
            .collect();
        let old_jobs: HashSet<JobId> = self.jobs.keys().copied().collect();
        self.jobs.clear();
        self.table = table;
        let mut out = Reconciled::default();
        let mut kept = HashSet::new();
        for settings in pools {
            let name = settings.name.to_string();
            let mut p = PoolRuntime::new(settings, now);
            match old.remove(&name) {
                Some(o) => {
                    if o.settings != *settings {
                        out.changed.push(name);
                    }
                    kept.extend(p.carry_over(&o));
                }
                None => out.added.push(name),
            }
            self.pools.push(p);
        }
        out.removed = old.into_keys().collect();
        out.removed.sort();
        for i in 0..self.pools.len() {
            self.assign_jobs(i);
            for r in 0..self.pools[i].regions.len() {
                let decision = self.pools[i]
                    .decide(r, &self.rum, now)
                    .or_else(|| self.pools[i].regions[r].selector.current().cloned());
                if let Some(decision) = decision {
                    self.apply(i, r, &decision, "reload", false);
                }
            }
        }
        // Every pool, also those whose answer stayed, goes into the new table.
        self.table.replace_all(self.answers());
        let mut removed: Vec<JobId> = old_jobs.difference(&kept).copied().collect();
        removed.sort();
        out.jobs.extend(removed.into_iter().map(JobChange::Remove));
        let mut added: Vec<(JobId, (usize, usize))> = self
            .jobs
            .iter()
            .filter(|(id, _)| !kept.contains(id))
            .map(|(&id, &pe)| (id, pe))
            .collect();
        added.sort_by_key(|(id, _)| *id);
        out.jobs.extend(
            added
                .into_iter()
                .filter_map(|(id, (p, e))| self.job(id, p, e))
                .map(|job| JobChange::Add(Box::new(job))),
        );
        self.dirty.mark(true);
        out
    }
}
