//! Answers by region in the kernel: the region tries (`GEO_A4`, `GEO_B4` for IPv4, `GEO_A`,
//! `GEO_B` for IPv6), the (pool, region, side) → `HOT_CUR` index map (`GEO_CUR`), and
//! swapping a new region table in.
//!
//! A pool with answers for regions other than the default one publishes each at a
//! `HOT_CUR` index of its own and points `GEO_CUR[(pool, region, side)]` at it; its
//! default answer carries `SET_GEO`, which sends the kernel to the trie of the config's
//! `geo_gen` (its low bit) for the client's region. A region without an entry gets the
//! default answer.
//!
//! A new region table ([`HotMaps::set_regions`]) never meets a query half loaded: it goes
//! into the trie the kernel does not read, the pools' region answers are published at
//! fresh indexes under that side's `GEO_CUR` keys (a region id of the new table may name
//! another region in the old one), then one config write switches the side: the next
//! generation, which also makes every answer the kernel cached per CPU miss (as does every
//! other change of `GEO_CUR`'s entries, see `geo_entries_changed`). After a grace
//! period the old side's entries, answers and trie are dropped.

use std::collections::{BTreeMap, HashSet};

use aya::maps::{
    HashMap, MapData,
    lpm_trie::{Key, LpmTrie},
};
use dns_common::{
    MAP_GEO_A, MAP_GEO_A4, MAP_GEO_B, MAP_GEO_B4, MAP_GEO_CUR, SET_GEO, geo_key, geo_value,
};
use hickory_proto::rr::Name;
use tracing::info;

use super::{HotMaps, publish::Published};
use crate::{
    datapath::{DatapathError, hot::encode_set, pools::PoolAnswer},
    geo::{RegionId, RegionTable},
};

/// A pool's answer for one region: its `HOT_CUR` index and what is published there.
#[derive(Clone, Debug)]
pub struct Regional {
    pub index: u32,
    pub published: Option<Published>,
}

/// The maps, and which region table the kernel reads.
pub struct GeoMaps {
    cur: HashMap<MapData, u64, u32>,
    /// The IPv4 tries (`GEO_A4`, `GEO_B4`) and the IPv6 tries (`GEO_A`, `GEO_B`), by side.
    v4: [LpmTrie<MapData, [u8; 4], u32>; 2],
    v6: [LpmTrie<MapData, [u8; 16], u32>; 2],
    /// The table loaded into the tries of the config's side (`None`: none yet, the kernel
    /// answers every client with the default region's answers).
    loaded: Option<RegionTable>,
}

impl GeoMaps {
    pub fn take(
        cur: HashMap<MapData, u64, u32>,
        v4: [LpmTrie<MapData, [u8; 4], u32>; 2],
        v6: [LpmTrie<MapData, [u8; 16], u32>; 2],
    ) -> Self {
        Self {
            cur,
            v4,
            v6,
            loaded: None,
        }
    }

    /// Removes every `GEO_CUR` entry (of an earlier instance) and returns the `HOT_CUR`
    /// indexes they pointed at.
    pub fn drop_entries(&mut self) -> Result<HashSet<u32>, DatapathError> {
        let entries: Vec<(u64, u32)> = self.cur.iter().filter_map(Result::ok).collect();
        for (k, _) in &entries {
            self.cur
                .remove(k)
                .map_err(DatapathError::map(format!("pruning {MAP_GEO_CUR}")))?;
        }
        Ok(entries.into_iter().map(|(_, v)| v).collect())
    }

    fn point(
        &mut self,
        pool: u32,
        region: RegionId,
        side: u32,
        index: u32,
    ) -> Result<(), DatapathError> {
        self.cur
            .insert(geo_key(pool, region.0, side), index, 0)
            .map_err(DatapathError::map(format!("writing {MAP_GEO_CUR}")))
    }

    fn unpoint(&mut self, pool: u32, region: RegionId, side: u32) -> Result<(), DatapathError> {
        match self.cur.remove(&geo_key(pool, region.0, side)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(DatapathError::map(format!("pruning {MAP_GEO_CUR}"))(e)),
        }
    }

    fn trie_names(side: u32) -> (&'static str, &'static str) {
        if side == 0 {
            (MAP_GEO_A4, MAP_GEO_A)
        } else {
            (MAP_GEO_B4, MAP_GEO_B)
        }
    }

    /// Loads `table`'s flattened prefixes into the tries of `side` (emptied first).
    fn load(&mut self, side: u32, table: &RegionTable) -> Result<(), DatapathError> {
        self.clear(side)?;
        let (name4, name6) = Self::trie_names(side);
        let side = side as usize & 1;
        for p in table.v4() {
            let key = Key::new(u32::from(p.len), p.addr().octets());
            self.v4[side]
                .insert(&key, geo_value(p.region.0, p.len), 0)
                .map_err(DatapathError::map(format!("writing {name4}")))?;
        }
        for p in table.v6() {
            let key = Key::new(u32::from(p.len), p.addr().octets());
            self.v6[side]
                .insert(&key, geo_value(p.region.0, p.len), 0)
                .map_err(DatapathError::map(format!("writing {name6}")))?;
        }
        Ok(())
    }

    /// Empties the tries of `side`.
    fn clear(&mut self, side: u32) -> Result<(), DatapathError> {
        let (name4, name6) = Self::trie_names(side);
        let side = side as usize & 1;
        let trie = &mut self.v4[side];
        let keys: Vec<Key<[u8; 4]>> = trie.keys().filter_map(Result::ok).collect();
        for k in keys {
            trie.remove(&k)
                .map_err(DatapathError::map(format!("pruning {name4}")))?;
        }
        let trie = &mut self.v6[side];
        let keys: Vec<Key<[u8; 16]>> = trie.keys().filter_map(Result::ok).collect();
        for k in keys {
            trie.remove(&k)
                .map_err(DatapathError::map(format!("pruning {name6}")))?;
        }
        Ok(())
    }
}

impl HotMaps {
    /// The side of `GEO_CUR` keys and of the tries the kernel reads.
    fn side(&self) -> u32 {
        self.written.geo_gen & 1
    }

    /// Makes the kernel map clients to regions with `table` and answer `pools` (as
    /// [`Self::sync`]; their region answers by the new table's ids), without a query ever
    /// seeing the new table with the old answers or the other way round (see the module
    /// documentation). A table equal to the loaded one is only a sync.
    pub fn set_regions(
        &mut self,
        table: &RegionTable,
        pools: &[PoolAnswer],
    ) -> Result<(), DatapathError> {
        if self.geo.loaded.as_ref() == Some(table) {
            return self.sync(pools);
        }
        let started = std::time::Instant::now();
        let old_side = self.side();
        let new_side = old_side ^ 1;
        self.geo.load(new_side, table)?;
        // The region answers published for the old table stay where the kernel finds them
        // until the switch; the new ones get fresh indexes under the new side.
        let old: Vec<(u32, BTreeMap<RegionId, Regional>)> = self
            .pools
            .values_mut()
            .map(|p| (p.index, std::mem::take(&mut p.regions)))
            .collect();
        self.pending_side = Some(new_side);
        let synced = self.sync(pools);
        self.pending_side = None;
        if let Err(e) = synced {
            // The old table stays in use; what the new side got is dropped below with the
            // old side's entries of pools that no longer have them.
            self.restore_regions(old);
            return Err(e);
        }
        let mut cfg = self.written;
        // The next generation: its low bit is the new side, and the answers the kernel
        // cached under every earlier one miss from now on.
        cfg.geo_gen = self.written.geo_gen.wrapping_add(1);
        self.write_config(cfg)?;
        self.geo.loaded = Some(table.clone());
        // Every query that may have read the old side has finished after a grace period.
        self.store.wait_grace()?;
        for (pool, regions) in old {
            for (region, r) in regions {
                self.geo.unpoint(pool, region, old_side)?;
                self.store.unpublish(r.index, r.published);
                self.store.retire_pool(r.index);
            }
        }
        self.geo.clear(old_side)?;
        info!(
            prefixes = table.len(),
            ms = started.elapsed().as_millis() as u64,
            "region table loaded into the kernel"
        );
        Ok(())
    }

    /// Makes every answer the kernel cached per CPU through `GEO_CUR` miss, after entries of
    /// the side in use changed and before the indexes they pointed at are retired: the next
    /// generation of the same side (two more). Not needed for the side a swap is writing,
    /// which the kernel does not read: the swap's own generation follows.
    fn geo_entries_changed(&mut self) -> Result<(), DatapathError> {
        if self.pending_side.is_some() {
            return Ok(());
        }
        let mut cfg = self.written;
        cfg.geo_gen = cfg.geo_gen.wrapping_add(2);
        self.write_config(cfg)
    }

    /// Puts back the region answers taken out for a table swap that failed.
    fn restore_regions(&mut self, old: Vec<(u32, BTreeMap<RegionId, Regional>)>) {
        let by_index: BTreeMap<u32, BTreeMap<RegionId, Regional>> = old.into_iter().collect();
        for pool in self.pools.values_mut() {
            if let Some(regions) = by_index.get(&pool.index) {
                let fresh = std::mem::replace(&mut pool.regions, regions.clone());
                for (_, r) in fresh {
                    self.store.unpublish(r.index, r.published);
                    self.store.retire_pool(r.index);
                }
            }
        }
    }

    /// The side `GEO_CUR` entries are written for: the new one while a table swap
    /// publishes, else the one in use.
    fn writing_side(&self) -> u32 {
        self.pending_side.unwrap_or_else(|| self.side())
    }

    /// Publishes `answer` for its (non-default) region of an already synced pool.
    pub(super) fn publish_region(&mut self, answer: &PoolAnswer) -> Result<(), DatapathError> {
        let name = answer.name.to_lowercase();
        let side = self.writing_side();
        let Some(pool) = self.pools.get_mut(&name) else {
            return Err(DatapathError::NotPublished {
                pool: answer.name.to_string(),
            });
        };
        let pool_index = pool.index;
        let was_geo = !pool.regions.is_empty();
        let (index, old, new_entry) = match pool.regions.get_mut(&answer.region) {
            Some(r) => (r.index, r.published.take(), false),
            None => {
                let index = self.store.take_pool()?.ok_or(DatapathError::TooManyPools {
                    count: self.pools.len(),
                    capacity: self.capacity.pools,
                })?;
                (index, None, true)
            }
        };
        let result = encode_set(answer).and_then(|set| match set {
            Some(set) => self.store.write_set(index, set).map(Some),
            None => Ok(None),
        });
        let published = match result {
            Ok(p) => p,
            Err(e) => {
                self.store.unpublish(index, old);
                if new_entry {
                    self.store.retire_pool(index);
                }
                return Err(e);
            }
        };
        self.store.point(index, published.as_ref());
        self.store.retire(old);
        let pool = self.pools.get_mut(&name).expect("looked up above");
        pool.regions
            .insert(answer.region, Regional { index, published });
        if new_entry {
            self.geo.point(pool_index, answer.region, side, index)?;
            self.geo_entries_changed()?;
        }
        if !was_geo {
            self.republish_default(&name)?;
        }
        Ok(())
    }

    /// Drops the region answers of pool `name` that `keep` does not hold (its default
    /// answer loses `SET_GEO` when none is left).
    pub(super) fn prune_regions(
        &mut self,
        name: &Name,
        keep: &HashSet<RegionId>,
    ) -> Result<(), DatapathError> {
        let side = self.side();
        let Some(pool) = self.pools.get_mut(name) else {
            return Ok(());
        };
        let gone: Vec<RegionId> = pool
            .regions
            .keys()
            .filter(|r| !keep.contains(r))
            .copied()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let pool_index = pool.index;
        let removed: Vec<Regional> = gone.iter().filter_map(|r| pool.regions.remove(r)).collect();
        let now_plain = pool.regions.is_empty();
        for region in &gone {
            self.geo.unpoint(pool_index, *region, side)?;
        }
        self.geo_entries_changed()?;
        for r in removed {
            self.store.unpublish(r.index, r.published);
            self.store.retire_pool(r.index);
        }
        if now_plain {
            self.republish_default(name)?;
        }
        Ok(())
    }

    /// Drops every region answer of a pool leaving the kernel.
    pub(super) fn drop_regions(
        &mut self,
        pool: u32,
        regions: BTreeMap<RegionId, Regional>,
    ) -> Result<(), DatapathError> {
        if regions.is_empty() {
            return Ok(());
        }
        let side = self.side();
        for region in regions.keys() {
            self.geo.unpoint(pool, *region, side)?;
        }
        self.geo_entries_changed()?;
        for (_, r) in regions {
            self.store.unpublish(r.index, r.published);
            self.store.retire_pool(r.index);
        }
        Ok(())
    }

    /// Publishes pool `name`'s default answer again (its `SET_GEO` flag follows whether the
    /// pool has region answers).
    fn republish_default(&mut self, name: &Name) -> Result<(), DatapathError> {
        let Some(answer) = self.pools.get(name).and_then(|p| p.answer.clone()) else {
            return Ok(());
        };
        self.publish(&answer)
    }

    /// The `SET_GEO` flag of pool `name`'s default answer set.
    pub(super) fn geo_flag(&self, name: &Name) -> u8 {
        match self.pools.get(name) {
            Some(p) if !p.regions.is_empty() => SET_GEO,
            _ => 0,
        }
    }

    /// The answer set and answers published for pool `name` in `region`, as the kernel
    /// reads them (tests).
    pub fn published_in(
        &self,
        name: &Name,
        region: RegionId,
    ) -> Option<(dns_common::AnswerSet, Vec<dns_common::Answer>)> {
        let pool = self.pools.get(&name.to_lowercase())?;
        let r = pool.regions.get(&region)?;
        self.store.read(r.index)
    }
}
