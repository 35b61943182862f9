//! Setting up the kernel path at start: load (sharing the pinned maps that fit), publish the
//! answers, take over or attach on every interface, then move fresh maps onto their pins.
//! A reload whose pools outgrow the maps replaces them the same way ([`grow`]).

use std::path::Path;

use anyhow::Context as _;
use tracing::{info, warn};

use crate::{
    config::Config,
    daemon::RunOptions,
    datapath::{
        ebpf::{Datapath, Replace},
        hot::{Capacity, DatapathSettings},
        pools::PoolAnswer,
    },
    dns::local::LocalAddrs,
    geo::RegionTable,
    logs::List,
    steering::policy::Policy,
};

/// The map sizes `cfg`'s pools need, with room to grow (see [`Capacity::for_pools`]): a
/// weighted answer has one variant per endpoint, every other answer one variant (a `geo`
/// pool: the most of any of its regions); with regions, room for an answer per pool and
/// region ([`Capacity::with_regions`]).
pub fn capacity(cfg: &Config) -> Capacity {
    Capacity::for_pools(cfg.pools.iter().map(|p| {
        p.region_policies()
            .iter()
            .map(|r| match r.policy {
                Policy::Weighted => r.endpoints.len(),
                _ => 1,
            })
            .max()
            .unwrap_or(1)
    }))
    .with_regions(cfg.regions.len())
}

/// The settings the kernel path gets from `cfg`.
pub fn settings(cfg: &Config) -> DatapathSettings {
    DatapathSettings {
        port: cfg.server.port,
        edns_udp_size: cfg.server.edns_udp_size,
        listen: cfg.server.listen.clone(),
        prefer_headroom: false,
        staleness: cfg.xdp.staleness,
        rrl: cfg.server.rrl.kernel(),
    }
}

/// Loads the program, writes the settings and `answers` into its maps and makes it answer on
/// every configured interface. Returns `None` (after a warning) when XDP is disabled or
/// impossible here, so the daemon keeps serving from userspace.
pub fn setup(
    cfg: &Config,
    answers: &[PoolAnswer],
    regions: &RegionTable,
    opts: &RunOptions,
) -> Option<Datapath> {
    if opts.no_xdp {
        info!("XDP disabled by --no-xdp; answering every query from userspace");
        return None;
    }
    if cfg.xdp.interfaces.is_empty() {
        info!("no [xdp] interfaces configured; answering every query from userspace");
        return None;
    }
    match try_setup(cfg, answers, regions, opts) {
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

fn try_setup(
    cfg: &Config,
    answers: &[PoolAnswer],
    regions: &RegionTable,
    opts: &RunOptions,
) -> anyhow::Result<Datapath> {
    let dp = Datapath::load_with(&cfg.xdp.pin_path, &capacity(cfg), opts.replace)?;
    let dp = fill_and_attach(dp, cfg, answers, regions)?;
    info!(
        pools = answers.len(),
        interfaces = %List(&cfg.xdp.interfaces),
        "XDP fast path answering hot pools"
    );
    Ok(dp)
}

/// Writes the settings and `answers` into `dp`'s maps, makes it answer on every configured
/// interface and moves its fresh maps onto their pins.
fn fill_and_attach(
    mut dp: Datapath,
    cfg: &Config,
    answers: &[PoolAnswer],
    regions: &RegionTable,
) -> anyhow::Result<Datapath> {
    // A beat first: adopted maps may hold an old one, after which nothing is published
    // before the kernel knows this daemon is alive.
    dp.maps.beat()?;
    // The maps may be the ones a running program reads (shared pins): `sync` rewrites them
    // without a moment in which a name leads to another pool's answer, so the path stays
    // enabled throughout.
    let local = LocalAddrs::read().context("reading this host's addresses")?;
    dp.maps.set_local_addrs(&local.kernel_entries())?;
    dp.maps.configure(&settings(cfg), true)?;
    dp.maps.set_regions(regions, answers)?;
    for iface in &cfg.xdp.interfaces {
        if let Err(e) = dp.attach(iface, cfg.xdp.mode) {
            // Interfaces attached so far would keep answering from maps nobody updates:
            // they pass every query to the daemon instead.
            let _ = dp.maps.configure(&settings(cfg), false);
            return Err(e.into());
        }
    }
    dp.commit_pins()?;
    Ok(dp)
}

/// Whether the maps of `dp` are too small for `cfg` (a reload that adds pools).
pub fn outgrown(dp: &Datapath, cfg: &Config) -> Option<Capacity> {
    let needed = capacity(cfg);
    (!dp.maps.capacity().covers(&needed)).then_some(needed)
}

/// Loads the program again with maps of `capacity` (in a staging directory: the running
/// program keeps its own). Slow (the verifier), so done before a reload changes anything.
pub fn load_grown(pin_dir: &Path, capacity: Capacity) -> anyhow::Result<Datapath> {
    Ok(Datapath::load_with(pin_dir, &capacity, Replace::IfChanged)?)
}

/// Fills `grown` ([`load_grown`]) with `answers` and swaps it in through the pinned links
/// (one `bpf_link_update` per interface: the old program answers from the old maps until
/// then, the new one from the new maps after), then pins its maps in place of the old ones.
pub fn grow(
    grown: Datapath,
    cfg: &Config,
    answers: &[PoolAnswer],
    regions: &RegionTable,
) -> anyhow::Result<Datapath> {
    let capacity = grown.maps.capacity();
    let dp = fill_and_attach(grown, cfg, answers, regions)?;
    info!(
        pools = answers.len(),
        capacity = %capacity,
        "the kernel maps were too small for the reloaded pools: replaced by larger ones"
    );
    Ok(dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough pools for their answers to outgrow the maps' minimum sizes.
    const POOLS: usize = 40;

    fn config(default_policy: &str) -> Config {
        let source = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ));
        let endpoints: Vec<String> = (1..=6)
            .map(|i| format!("{{ address = \"192.0.2.{i}\" }}"))
            .collect();
        let listed: Vec<String> = (1..=6).map(|i| format!("\"192.0.2.{i}\"")).collect();
        let mut text = String::from(
            "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
             [regions.europe]\nnetworks = [\"198.51.100.0/24\"]\n",
        );
        for p in 0..POOLS {
            text.push_str(&format!(
                "[[pool]]\nname = \"p{p}.example.test.\"\ntype = \"A\"\npolicy = \"geo\"\n\
                 endpoints = [{}]\n\
                 [pool.regions.europe]\npolicy = \"weighted\"\nendpoints = [{}]\n\
                 [pool.regions.default]\npolicy = \"{default_policy}\"\n\
                 endpoints = [\"192.0.2.1\"]\n",
                endpoints.join(", "),
                listed.join(", "),
            ));
        }
        Config::parse(&text, source).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_geo_pool_is_sized_by_its_largest_weighted_region() {
        // The weighted europe region answers one variant per endpoint (6), whatever the
        // default region's policy: the maps have room for them in every region.
        let geo = capacity(&config("failover"));
        let plain = Capacity::for_pools([1; POOLS]).with_regions(2);
        let weighted = Capacity::for_pools([6; POOLS]).with_regions(2);
        assert_eq!(geo, weighted);
        assert!(geo.answers > plain.answers, "{geo} against {plain}");
    }
}
