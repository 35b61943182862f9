//! The heartbeat task: tells the kernel every second that the daemon is alive (see
//! [`crate::datapath::heartbeat`]). It runs on the daemon's runtime, so a hung runtime
//! stops beating; at shutdown the last beat stays as it is, and after `[xdp] stale` the
//! kernel does what `on_stale` says.
//!
//! Every [`LOCAL_EVERY`] beats it also re-reads this host's addresses into the kernel's
//! `LOCAL_ADDRS` (the acceptance rules' own and broadcast addresses), as the UDP server
//! re-reads its own copy.

use std::sync::{Arc, Mutex};

use tokio::{sync::watch, time::MissedTickBehavior};
use tracing::warn;

use crate::{
    datapath::{ebpf::Datapath, heartbeat::INTERVAL},
    dns::local::LocalAddrs,
};

/// Beats between two readings of the host's addresses.
pub const LOCAL_EVERY: u32 = 5;

/// Beats into whichever datapath is current (a reload may replace it) until `shutdown`.
pub async fn run(datapath: Arc<Mutex<Option<Datapath>>>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    let mut beats = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        beats = beats.wrapping_add(1);
        let local = if beats.is_multiple_of(LOCAL_EVERY) {
            match LocalAddrs::read() {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!(error = %e, "cannot read this host's addresses for the kernel");
                    None
                }
            }
        } else {
            None
        };
        let result = match datapath.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(dp) => match local {
                Some(l) => dp
                    .maps
                    .set_local_addrs(&l.kernel_entries())
                    .and_then(|()| dp.maps.beat()),
                None => dp.maps.beat(),
            },
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
