//! The heartbeat task: tells the kernel every second that the daemon is alive (see
//! [`crate::datapath::heartbeat`]). It runs on the daemon's runtime, so a hung runtime
//! stops beating; at shutdown the last beat stays as it is, and after `[xdp] stale` the
//! kernel does what `on_stale` says.

use std::sync::{Arc, Mutex};

use tokio::{sync::watch, time::MissedTickBehavior};
use tracing::warn;

use crate::datapath::{ebpf::Datapath, heartbeat::INTERVAL};

/// Beats into whichever datapath is current (a reload may replace it) until `shutdown`.
pub async fn run(datapath: Arc<Mutex<Option<Datapath>>>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let result = match datapath.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(dp) => dp.maps.beat(),
            None => Ok(()),
        };
        match result {
            Err(e) if !failing => {
                warn!(
                    error = format!("{e:#}"),
                    "cannot write the heartbeat; the kernel will count its answers as stale"
                );
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
}
