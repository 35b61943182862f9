//! The heartbeat and the per-pool answer counters in the kernel maps.

use std::time::Duration;

use aya::maps::{Array, Map, MapData, PerCpuValues};
use dns_common::{CFG_STALE_PASS, MAP_HEARTBEAT, MAP_POOL_ANSWERS};
use hickory_proto::rr::Name;

use crate::datapath::{
    DatapathError,
    heartbeat::{self, OnStale, Staleness, monotonic_ns},
    hot::HotMaps,
};

impl HotMaps {
    /// Writes the heartbeat: now.
    pub fn beat(&mut self) -> Result<(), DatapathError> {
        self.beat_at(monotonic_ns())
    }

    /// Writes a heartbeat of `ns` (`CLOCK_MONOTONIC`; tests write old ones).
    pub fn beat_at(&mut self, ns: u64) -> Result<(), DatapathError> {
        self.heartbeat
            .set(0, ns, 0)
            .map_err(DatapathError::map(format!("writing {MAP_HEARTBEAT}")))
    }

    /// How old the heartbeat in the kernel is (`None`: never written).
    pub fn heartbeat_age(&self) -> Result<Option<Duration>, DatapathError> {
        let beat = self
            .heartbeat
            .get(&0, 0)
            .map_err(DatapathError::map(format!("reading {MAP_HEARTBEAT}")))?;
        Ok(heartbeat::age(beat, monotonic_ns()))
    }

    /// The staleness in force (as last written to the config map).
    pub fn staleness(&self) -> Staleness {
        let ns = self.written.stale_ns;
        Staleness {
            after: (ns != 0).then(|| Duration::from_nanos(ns)),
            on_stale: if self.written.flags & CFG_STALE_PASS != 0 {
                OnStale::Pass
            } else {
                OnStale::Serve
            },
        }
    }

    /// Zeroes pool index `index`'s answer counter: it goes to a new pool, which must not
    /// inherit the count of the pool that had it before. No program counts into it: the
    /// index was free, so nothing leads to it.
    pub(super) fn zero_pool_answers(&mut self, index: u32) -> Result<(), DatapathError> {
        let what = || format!("zeroing {MAP_POOL_ANSWERS}[{index}]");
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Io {
            what: what(),
            source: e,
        })?;
        let zeros = PerCpuValues::try_from(vec![0u64; nr_cpus]).map_err(|e| DatapathError::Io {
            what: what(),
            source: e,
        })?;
        self.pool_answers
            .set(index, zeros, 0)
            .map_err(DatapathError::map(what()))
    }

    /// Kernel answers of the pool named `name` (any case) since its index was given to it,
    /// summed over CPUs; `None` for a pool the kernel does not know.
    pub fn pool_answers(&self, name: &Name) -> Result<Option<u64>, DatapathError> {
        let Some(pool) = self.pools.get(&name.to_lowercase()) else {
            return Ok(None);
        };
        let per_cpu = self
            .pool_answers
            .get(&pool.index, 0)
            .map_err(DatapathError::map(format!(
                "reading {MAP_POOL_ANSWERS}[{}]",
                pool.index
            )))?;
        Ok(Some(per_cpu.iter().sum()))
    }

    /// Kernel answers of every pool the kernel knows, by lower-case name.
    pub fn pool_answers_all(&self) -> Vec<(Name, u64)> {
        self.pools
            .iter()
            .filter_map(|(name, pool)| {
                let per_cpu = self.pool_answers.get(&pool.index, 0).ok()?;
                Some((name.clone(), per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The pool index of a synced pool (tests check index reuse with it).
    pub fn pool_index(&self, name: &Name) -> Option<u32> {
        self.pools.get(&name.to_lowercase()).map(|p| p.index)
    }
}

/// The age of the heartbeat pinned in `pin_dir` (`None`: never written).
pub fn read_pinned_heartbeat_age(
    pin_dir: &std::path::Path,
) -> Result<Option<Duration>, DatapathError> {
    let path = pin_dir.join(MAP_HEARTBEAT);
    let data = MapData::from_pin(&path)
        .map_err(DatapathError::map(format!("opening {}", path.display())))?;
    let map: Array<MapData, u64> = Array::try_from(Map::Array(data))
        .map_err(DatapathError::map(format!("map {MAP_HEARTBEAT}")))?;
    let beat = map
        .get(&0, 0)
        .map_err(DatapathError::map(format!("reading {MAP_HEARTBEAT}")))?;
    Ok(heartbeat::age(beat, monotonic_ns()))
}
