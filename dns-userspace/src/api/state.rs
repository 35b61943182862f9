//! What the API serves from: the daemon's shared parts ([`ApiState`]) and its own
//! counters ([`DaemonInfo`]).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use crate::{api::guard::Refusal, datapath::ebpf::Datapath, steering::steer::Steering};

/// What the routes read and change.
#[derive(Clone)]
pub struct ApiState {
    pub datapath: Arc<Mutex<Option<Datapath>>>,
    pub steering: Arc<Mutex<Steering>>,
    pub daemon: Arc<DaemonInfo>,
}

/// The daemon as a whole, for status and metrics.
#[derive(Debug)]
pub struct DaemonInfo {
    /// When it started.
    pub started: SystemTime,
    /// Requests refused by the guard, by [`Refusal::LABELS`].
    refused: [AtomicU64; Refusal::LABELS.len()],
}

impl DaemonInfo {
    pub fn new(started: SystemTime) -> Self {
        Self {
            started,
            refused: Default::default(),
        }
    }

    pub(crate) fn count_refusal(&self, r: &Refusal) {
        if let Some(i) = Refusal::LABELS.iter().position(|l| *l == r.label()) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests refused so far, by reason.
    pub fn refused(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Refusal::LABELS
            .iter()
            .zip(&self.refused)
            .map(|(l, n)| (*l, n.load(Ordering::Relaxed)))
    }
}
