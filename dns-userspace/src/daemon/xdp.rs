//! Setting up the kernel path at start: load (sharing the pinned maps that fit), publish the
//! answers, take over or attach on every interface, then move fresh maps onto their pins.

use tracing::{info, warn};

use crate::{
    config::Config,
    daemon::RunOptions,
    datapath::{
        ebpf::Datapath,
        hot::{Capacity, DatapathSettings},
        pools::PoolAnswer,
    },
    logs::List,
    steering::policy::Policy,
};

/// The map sizes `cfg`'s pools need, with room to grow (see [`Capacity::for_pools`]): a
/// weighted pool answers one variant per endpoint, every other pool one variant.
pub fn capacity(cfg: &Config) -> Capacity {
    Capacity::for_pools(cfg.pools.iter().map(|p| match p.policy {
        Policy::Weighted => p.endpoints.len(),
        Policy::Fastest { .. } | Policy::Failover | Policy::AllHealthy => 1,
    }))
}

/// The settings the kernel path gets from `cfg`.
pub fn settings(cfg: &Config) -> DatapathSettings {
    DatapathSettings {
        port: cfg.server.port,
        edns_udp_size: cfg.server.edns_udp_size,
        listen: cfg.server.listen.clone(),
        prefer_headroom: false,
    }
}

/// Loads the program, writes the settings and `answers` into its maps and makes it answer on
/// every configured interface. Returns `None` (after a warning) when XDP is disabled or
/// impossible here, so the daemon keeps serving from userspace.
pub fn setup(cfg: &Config, answers: &[PoolAnswer], opts: &RunOptions) -> Option<Datapath> {
    if opts.no_xdp {
        info!("XDP disabled by --no-xdp; answering every query from userspace");
        return None;
    }
    if cfg.xdp.interfaces.is_empty() {
        info!("no [xdp] interfaces configured; answering every query from userspace");
        return None;
    }
    match try_setup(cfg, answers, opts) {
        Ok(dp) => Some(dp),
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "XDP fast path unavailable; answering every query from userspace"
            );
            None
        }
    }
}

fn try_setup(cfg: &Config, answers: &[PoolAnswer], opts: &RunOptions) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load_with(&cfg.xdp.pin_path, &capacity(cfg), opts.replace)?;
    // The maps may be the ones a running program reads (shared pins): `sync` rewrites them
    // without a moment in which a name leads to another pool's answer, so the path stays
    // enabled throughout.
    dp.maps.configure(&settings(cfg), true)?;
    dp.maps.sync(answers)?;
    for iface in &cfg.xdp.interfaces {
        dp.attach(iface, cfg.xdp.mode)?;
    }
    dp.commit_pins()?;
    info!(
        pools = answers.len(),
        interfaces = %List(&cfg.xdp.interfaces),
        "XDP fast path answering hot pools"
    );
    Ok(dp)
}
