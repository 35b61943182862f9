//! The kernel's view of the pools: answers encoded with their checksum sums, the name index
//! the XDP program looks names up in, and publishing without torn reads (the protocol is
//! described in `dns_common::maps`).
//!
//! * `encode`: [`encode_set`] turns a [`PoolAnswer`] into what the kernel stores: its
//!   folded name, the query types it answers, weighted thresholds and one [`Answer`] per
//!   variant.
//! * `index`: the hashed name index (`HOT_INDEX`), rebuilt with a new hash key when a
//!   bucket would overflow.
//! * `publish`: answer sets and answers live in memory-mapped arrays with free lists; an
//!   entry the kernel may still read is reused only after a grace period (`GracePeriod`).
//! * `counters`: the daemon's heartbeat and the kernel's answers per pool (an index given
//!   to a new pool starts from zero).
//! * [`HotMaps::sync`] makes the kernel answer exactly a set of pools (stable pool indexes,
//!   the index rebuilt); [`HotMaps::publish`] replaces one pool's answer (the steering
//!   path).
//!
//! A daemon that takes over the pinned maps of an earlier instance (a restart while the
//! program keeps answering) reads its bookkeeping back from them ([`HotMaps::from_ebpf`]
//! with `adopt`): the hash key and the buckets, which pool indexes are published and with
//! which slots and answers; everything else is reused only after a grace period. A pool
//! keeps its index across restarts and reloads.

use std::collections::{BTreeMap, HashMap as StdHashMap, HashSet};

use aya::maps::{
    Array, HashMap, Map, MapData, MapError, PerCpuArray,
    lpm_trie::{Key, LpmTrie},
};
use dns_common::{
    Answer, AnswerSet, Bucket, CFG_ANY_V4, CFG_ANY_V6, CFG_ENABLED, CFG_LISTEN_MAP_V4,
    CFG_LISTEN_MAP_V6, CFG_PREFER_HEADROOM, CFG_RRL_EXEMPT, CFG_STALE_PASS, IFACE_LOOPBACK,
    INLINE_LISTEN_ADDRS, Iface, MAP_CONFIG, MAP_GEO_A, MAP_GEO_A4, MAP_GEO_B, MAP_GEO_B4,
    MAP_GEO_CUR, MAP_HEARTBEAT, MAP_HOT_ANSWERS, MAP_HOT_CUR, MAP_HOT_INDEX, MAP_HOT_SLOTS,
    MAP_IFACE_SLOTS, MAP_IFACES, MAP_LISTEN_ADDRS, MAP_LOCAL_ADDRS, MAP_LOCAL_SET,
    MAP_POOL_ANSWERS, MAP_RRL_EXEMPT, MAP_STATS, MAX_RRL_EXEMPT, MAX_VARIANTS, Outcome, XdpConfig,
    local::{IfaceSlot, LOCAL_SET_BUCKETS, LocalBucket, addr_words, iface_slot, local_bucket},
    name::{FoldedName, HashKey, NAME_WORDS},
    rrl::RrlParams,
    v4_mapped,
};
use hickory_proto::rr::Name;
use tracing::{info, warn};

use crate::datapath::{
    DatapathError,
    heartbeat::{OnStale, Staleness},
    iface,
    pools::PoolAnswer,
};

mod counters;
mod encode;
mod geo;
mod index;
mod publish;

pub use counters::read_pinned_heartbeat_age;
pub use encode::{EncodedSet, encode_set, encode_variant};

use self::{
    encode::folded_name,
    index::Index,
    publish::{MappedArray, Published, Store},
};

/// The maps that refer to each other by index (the config map holds the index's hash key
/// and size, the index points at `HOT_CUR` entries, those at `HOT_SLOTS` entries, those at
/// `HOT_ANSWERS` entries; `POOL_ANSWERS` counts per `HOT_CUR` index; `GEO_CUR` points at
/// `HOT_CUR` entries by the region ids of the `GEO_A`/`GEO_B` (IPv6) and `GEO_A4`/`GEO_B4`
/// (IPv4) tries the config map picks):
/// a new program shares all of them with the running one or none.
pub const LINKED_MAPS: [&str; 11] = [
    MAP_CONFIG,
    MAP_HOT_INDEX,
    MAP_HOT_CUR,
    MAP_HOT_SLOTS,
    MAP_HOT_ANSWERS,
    MAP_POOL_ANSWERS,
    MAP_GEO_CUR,
    MAP_GEO_A,
    MAP_GEO_B,
    MAP_GEO_A4,
    MAP_GEO_B4,
];

/// How many pools, answer sets, answers and index buckets the kernel maps hold. Sized from
/// the configuration when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Pool indexes (`HOT_CUR`, `POOL_ANSWERS`).
    pub pools: u32,
    /// Answer sets (`HOT_SLOTS`): two per pool, one published and one being written.
    pub slots: u32,
    /// Answer variants (`HOT_ANSWERS`).
    pub answers: u32,
    /// Index buckets (`HOT_INDEX`): at least four per pool, so buckets rarely fill.
    pub buckets: u32,
}

impl Capacity {
    /// Room for pools that answer with up to `variants[i]` variants each (the endpoint count
    /// of a weighted pool, 1 otherwise): twice the configured numbers (a republish writes
    /// new entries before it retires the old ones; the rest is room for reloads), rounded up
    /// to powers of two so a slightly changed configuration still fits the pinned maps.
    /// Pinned maps larger than this are kept; a reload that needs more than the loaded maps
    /// hold loads larger ones and swaps them in through the pinned links.
    pub fn for_pools(variants: impl IntoIterator<Item = usize>) -> Self {
        let (mut n, mut total) = (0usize, 0usize);
        for v in variants {
            n += 1;
            total += v.clamp(1, MAX_VARIANTS);
        }
        let pools = (2 * n).next_power_of_two().max(64) as u32;
        let answers = (2 * total).next_power_of_two().max(128) as u32;
        Self {
            pools,
            slots: 2 * pools,
            answers: answers.max(2 * pools),
            buckets: 2 * pools,
        }
    }

    /// Room for every pool answering `regions` regions (the default one included) with an
    /// answer of its own: a `geo` pool publishes one answer per region it configures.
    pub fn with_regions(self, regions: usize) -> Self {
        let n = regions.max(1) as u32;
        let grow = |v: u32| v.saturating_mul(n).next_power_of_two();
        Self {
            pools: grow(self.pools),
            slots: grow(self.slots),
            answers: grow(self.answers),
            buckets: self.buckets,
        }
    }

    /// Entries of `GEO_CUR`: one per pool index under each of the two tries.
    pub fn geo_entries(&self) -> u32 {
        2 * self.pools
    }

    /// Whether maps of this size hold everything maps of `other`'s size do.
    pub fn covers(&self, other: &Capacity) -> bool {
        self.pools >= other.pools
            && self.slots >= other.slots
            && self.answers >= other.answers
            && self.buckets >= other.buckets
    }

    /// The `max_entries` of each sized map.
    pub fn max_entries(&self) -> [(&'static str, u32); 6] {
        [
            (MAP_GEO_CUR, self.geo_entries()),
            (MAP_HOT_CUR, self.pools),
            (MAP_POOL_ANSWERS, self.pools),
            (MAP_HOT_SLOTS, self.slots),
            (MAP_HOT_ANSWERS, self.answers),
            (MAP_HOT_INDEX, self.buckets),
        ]
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pools, {} answer sets, {} answers, {} index buckets",
            self.pools, self.slots, self.answers, self.buckets
        )
    }
}

/// Settings of the XDP path written to its config map.
#[derive(Clone, Debug)]
pub struct DatapathSettings {
    pub port: u16,
    pub edns_udp_size: u16,
    /// Addresses the XDP path answers for; an unspecified address (0.0.0.0 / ::) means any
    /// address of that family.
    pub listen: Vec<std::net::IpAddr>,
    /// Grow every reply into the headroom (tests use it to exercise that path).
    pub prefer_headroom: bool,
    /// What a hit does once the daemon's heartbeat is older than `staleness.after`.
    pub staleness: Staleness,
    /// Response rate limiting of the kernel's answers (`[rrl]`, as the daemon's).
    pub rrl: RrlLimits,
}

/// The kernel's rate limits: the bucket parameters, the client network prefix lengths and
/// the exempt networks (see `dns_common::rrl`). The default is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrlLimits {
    pub params: RrlParams,
    /// IPv4 and IPv6 prefix lengths of a client network.
    pub prefix: [u8; 2],
    /// `RRL_EXEMPT` keys: (prefix length, address), IPv4 as IPv4-mapped IPv6 with 96
    /// added to its prefix length ([`RrlLimits::exempt_key`]).
    pub exempt: Vec<(u32, [u8; 16])>,
}

impl Default for RrlLimits {
    fn default() -> Self {
        Self {
            params: RrlParams::new(0, 0, 0),
            prefix: [32, 128],
            exempt: Vec::new(),
        }
    }
}

impl RrlLimits {
    /// The `RRL_EXEMPT` key of the network `addr`/`prefix`.
    pub fn exempt_key(addr: std::net::IpAddr, prefix: u8) -> (u32, [u8; 16]) {
        match addr {
            std::net::IpAddr::V4(a) => (96 + u32::from(prefix), v4_mapped(a.octets())),
            std::net::IpAddr::V6(a) => (u32::from(prefix), a.octets()),
        }
    }
}

/// A pool the kernel knows.
#[derive(Clone, Debug)]
struct HotPool {
    index: u32,
    name: FoldedName,
    published: Option<Published>,
    /// The answer published at `index` (the default region's): republished with or
    /// without `SET_GEO` when the pool gains or loses its last region answer.
    answer: Option<PoolAnswer>,
    /// The pool's answers for other regions, each at a `HOT_CUR` index of its own that
    /// `GEO_CUR` points at.
    regions: BTreeMap<crate::geo::RegionId, geo::Regional>,
}

/// A pool index an earlier instance left in adopted maps that no configured pool has
/// claimed (yet): the name its answer set was published for, if it has one.
#[derive(Clone, Debug)]
struct Orphan {
    name: Option<FoldedName>,
    published: Option<Published>,
}

/// A folded name as a hash-map key.
type NameKey = (usize, [u64; NAME_WORDS]);

fn name_key(name: &FoldedName) -> NameKey {
    (name.len, name.words)
}

/// Handles to the program's maps (taken from a loaded `aya::Ebpf`) and the bookkeeping of
/// what is published where.
pub struct HotMaps {
    index: Index,
    store: Store,
    config: Array<MapData, XdpConfig>,
    listen: HashMap<MapData, [u8; 16], u8>,
    stats: PerCpuArray<MapData, u64>,
    heartbeat: Array<MapData, u64>,
    pool_answers: PerCpuArray<MapData, u64>,
    ifaces: HashMap<MapData, u32, Iface>,
    iface_slots: Array<MapData, IfaceSlot>,
    local: HashMap<MapData, [u8; 16], u8>,
    local_set: Array<MapData, LocalBucket>,
    rrl_exempt: LpmTrie<MapData, [u8; 16], u8>,
    geo: geo::GeoMaps,
    capacity: Capacity,
    /// The config map as last written.
    written: XdpConfig,
    /// The region side a table swap is publishing for ([`Self::set_regions`]).
    pending_side: Option<u32>,
    /// Pools by lower-case name.
    pools: BTreeMap<Name, HotPool>,
    /// Pool indexes read back from adopted maps that no pool has claimed, by index: the
    /// next [`Self::sync`] gives them to the pools of their names or removes them.
    orphans: BTreeMap<u32, Orphan>,
}

impl HotMaps {
    /// Takes the maps of a loaded program. With `adopt`, the answer maps are the pinned ones
    /// of an earlier instance (maybe still answering through a running program): what they
    /// hold is read back and stays answered until [`Self::sync`] says otherwise. Without,
    /// they were just created and are set up empty.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf, adopt: bool) -> Result<Self, DatapathError> {
        fn typed<T: TryFrom<Map, Error = MapError>>(
            ebpf: &mut aya::Ebpf,
            name: &'static str,
        ) -> Result<T, DatapathError> {
            let map = ebpf.take_map(name).ok_or(DatapathError::NoMap(name))?;
            T::try_from(map).map_err(DatapathError::map(format!("map {name}")))
        }
        let mut geo_maps = geo::GeoMaps::take(
            typed(ebpf, MAP_GEO_CUR)?,
            [typed(ebpf, MAP_GEO_A4)?, typed(ebpf, MAP_GEO_B4)?],
            [typed(ebpf, MAP_GEO_A)?, typed(ebpf, MAP_GEO_B)?],
        );
        // Region answers of an earlier instance are not adopted: their pools answer with
        // their default answer until they are published again (the entries they were
        // reached through are dropped first; their indexes wait for a grace period).
        let regional = if adopt {
            geo_maps.drop_entries()?
        } else {
            HashSet::new()
        };
        let cur = MappedArray::take(ebpf, MAP_HOT_CUR)?;
        let slots = MappedArray::take(ebpf, MAP_HOT_SLOTS)?;
        let answers = MappedArray::take(ebpf, MAP_HOT_ANSWERS)?;
        let index_map: Array<MapData, Bucket> = typed(ebpf, MAP_HOT_INDEX)?;
        let mut config: Array<MapData, XdpConfig> = typed(ebpf, MAP_CONFIG)?;
        let mut written = if adopt {
            config
                .get(&0, 0)
                .map_err(DatapathError::map(format!("reading {MAP_CONFIG}")))?
        } else {
            XdpConfig::disabled()
        };
        if !regional.is_empty() {
            // A running program may have cached answers reached through the dropped
            // entries: the next generation of the same side makes them miss before their
            // indexes are retired.
            written.geo_gen = written.geo_gen.wrapping_add(2);
            config
                .set(0, written, 0)
                .map_err(DatapathError::map(format!("writing {MAP_CONFIG}")))?;
        }
        // The index is only readable with the key it was built with, which the config map
        // holds for the index's size.
        let readable = adopt
            && written.key != HashKey::default()
            && u64::from(written.index_mask) + 1 == u64::from(index_map.len());
        if adopt && !readable {
            warn!(
                "the pinned config map does not describe the pinned name index; starting the \
                 index afresh (queries go to the daemon until it is rebuilt)"
            );
        }
        let (index, store, orphans) = if readable {
            let index = Index::adopt(index_map, written.key)?;
            let indexed: HashSet<u32> = index.pools().collect();
            let (mut store, mut adopted) = Store::adopt(cur, slots, answers, &indexed)?;
            for index in &regional {
                if let Some(a) = adopted.remove(index) {
                    store.unpublish(*index, Some(a.published));
                    store.retire_pool(*index);
                }
            }
            let mut orphans: BTreeMap<u32, Orphan> = indexed
                .iter()
                .map(|&i| {
                    (
                        i,
                        Orphan {
                            name: None,
                            published: None,
                        },
                    )
                })
                .collect();
            for (i, a) in adopted {
                orphans.insert(
                    i,
                    Orphan {
                        name: Some(a.name),
                        published: Some(a.published),
                    },
                );
            }
            info!(
                published = orphans.values().filter(|o| o.published.is_some()).count(),
                indexed = indexed.len(),
                "took over the answers published in the pinned maps"
            );
            (index, store, orphans)
        } else {
            (
                Index::fresh(index_map)?,
                Store::fresh(cur, slots, answers)?,
                BTreeMap::new(),
            )
        };
        let (pools, slots, answers) = store.entries();
        Ok(Self {
            capacity: Capacity {
                pools,
                slots,
                answers,
                buckets: index.n_buckets(),
            },
            index,
            store,
            config,
            listen: typed(ebpf, MAP_LISTEN_ADDRS)?,
            stats: typed(ebpf, MAP_STATS)?,
            heartbeat: typed(ebpf, MAP_HEARTBEAT)?,
            pool_answers: typed(ebpf, MAP_POOL_ANSWERS)?,
            ifaces: typed(ebpf, MAP_IFACES)?,
            iface_slots: typed(ebpf, MAP_IFACE_SLOTS)?,
            local: typed(ebpf, MAP_LOCAL_ADDRS)?,
            local_set: typed(ebpf, MAP_LOCAL_SET)?,
            rrl_exempt: typed(ebpf, MAP_RRL_EXEMPT)?,
            geo: geo_maps,
            written,
            pending_side: None,
            pools: BTreeMap::new(),
            orphans,
        })
    }

    /// The sizes of the maps.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Grace periods waited for so far.
    pub fn grace_periods(&self) -> u64 {
        self.store.grace_periods()
    }

    /// Enables or disables the XDP path and writes its settings.
    pub fn configure(&mut self, s: &DatapathSettings, enabled: bool) -> Result<(), DatapathError> {
        let mut cfg = XdpConfig::disabled();
        cfg.geo_gen = self.written.geo_gen;
        cfg.port = s.port.to_be_bytes();
        cfg.edns_udp_size = s.edns_udp_size.to_be_bytes();
        cfg.key = self.index.key();
        cfg.index_mask = self.index.mask();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in &s.listen {
            match ip {
                std::net::IpAddr::V4(a) if a.is_unspecified() => cfg.flags |= CFG_ANY_V4,
                std::net::IpAddr::V6(a) if a.is_unspecified() => cfg.flags |= CFG_ANY_V6,
                std::net::IpAddr::V4(a) => v4.push(a.octets()),
                std::net::IpAddr::V6(a) => v6.push(a.octets()),
            }
        }
        v4.sort();
        v4.dedup();
        v6.sort();
        v6.dedup();
        let mut wanted = HashSet::new();
        if v4.len() > INLINE_LISTEN_ADDRS {
            cfg.flags |= CFG_LISTEN_MAP_V4;
            wanted.extend(v4.iter().map(|a| v4_mapped(*a)));
        } else {
            cfg.n_listen_v4 = v4.len() as u8;
            cfg.listen_v4[..v4.len()].copy_from_slice(&v4);
        }
        if v6.len() > INLINE_LISTEN_ADDRS {
            cfg.flags |= CFG_LISTEN_MAP_V6;
            wanted.extend(v6.iter().copied());
        } else {
            cfg.n_listen_v6 = v6.len() as u8;
            cfg.listen_v6[..v6.len()].copy_from_slice(&v6);
        }
        if s.prefer_headroom {
            cfg.flags |= CFG_PREFER_HEADROOM;
        }
        cfg.stale_ns = s.staleness.stale_ns();
        if s.staleness.on_stale == OnStale::Pass {
            cfg.flags |= CFG_STALE_PASS;
        }
        if s.rrl.params.enabled() {
            cfg.rrl = s.rrl.params;
            cfg.rrl_prefix = s.rrl.prefix;
            if !s.rrl.exempt.is_empty() {
                cfg.flags |= CFG_RRL_EXEMPT;
            }
        }
        // The exempt networks before the limits that need them; a network no longer
        // exempt is limited only once it is gone from the trie.
        self.sync_exempt(&s.rrl.exempt)?;
        // Disable first, so no packet sees a half-written address set.
        if !enabled {
            self.write_config(cfg)?;
        }
        for a in &wanted {
            self.listen
                .insert(a, 1, 0)
                .map_err(DatapathError::map(format!("writing {MAP_LISTEN_ADDRS}")))?;
        }
        let stale: Vec<[u8; 16]> = self
            .listen
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for k in stale {
            self.listen
                .remove(&k)
                .map_err(DatapathError::map(format!("pruning {MAP_LISTEN_ADDRS}")))?;
        }
        if enabled {
            cfg.flags |= CFG_ENABLED;
        }
        self.write_config(cfg)
    }

    /// Makes `RRL_EXEMPT` hold exactly `networks`.
    fn sync_exempt(&mut self, networks: &[(u32, [u8; 16])]) -> Result<(), DatapathError> {
        if networks.len() > MAX_RRL_EXEMPT as usize {
            return Err(DatapathError::TooManyExempt {
                count: networks.len(),
                capacity: MAX_RRL_EXEMPT,
            });
        }
        let wanted: HashSet<(u32, [u8; 16])> = networks.iter().copied().collect();
        for (prefix, addr) in &wanted {
            self.rrl_exempt
                .insert(&Key::new(*prefix, *addr), 1, 0)
                .map_err(DatapathError::map(format!("writing {MAP_RRL_EXEMPT}")))?;
        }
        let gone: Vec<Key<[u8; 16]>> = self
            .rrl_exempt
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
            .collect();
        for k in gone {
            self.rrl_exempt
                .remove(&k)
                .map_err(DatapathError::map(format!("pruning {MAP_RRL_EXEMPT}")))?;
        }
        Ok(())
    }

    /// Describes interface `link` to the kernel: only frames to its MAC address are
    /// answered there, and loopback sources only on a loopback interface.
    pub fn set_interface(&mut self, link: &iface::Link) -> Result<(), DatapathError> {
        let iface = Iface {
            mac: link.mac,
            flags: if link.loopback { IFACE_LOOPBACK } else { 0 },
            _reserved: 0,
        };
        self.ifaces
            .insert(link.index, iface, 0)
            .map_err(DatapathError::map(format!("writing {MAP_IFACES}")))?;
        self.sync_iface_slot(link.index)
    }

    /// Forgets interface `index` (the program then answers nothing there).
    pub fn remove_interface(&mut self, index: u32) -> Result<(), DatapathError> {
        self.ifaces
            .remove(&index)
            .map_err(DatapathError::map(format!("writing {MAP_IFACES}")))?;
        self.sync_iface_slot(index)
    }

    /// Rewrites the `IFACE_SLOTS` slot of interface `index` from `IFACES` (which holds every
    /// described interface): the slot's lowest index, spilled when it has company.
    fn sync_iface_slot(&mut self, index: u32) -> Result<(), DatapathError> {
        let slot = iface_slot(index);
        let described: Vec<(u32, Iface)> = self
            .ifaces
            .iter()
            .filter_map(Result::ok)
            .filter(|(i, _)| iface_slot(*i) == slot)
            .collect();
        let value = IfaceSlot::for_slot(slot, described);
        self.iface_slots
            .set(slot, value, 0)
            .map_err(DatapathError::map(format!("writing {MAP_IFACE_SLOTS}")))
    }

    /// Makes `LOCAL_ADDRS` and `LOCAL_SET` hold exactly `wanted`: this host's addresses
    /// (IPv4 as IPv4-mapped IPv6) with their `LOCAL_OWN` / `LOCAL_BROADCAST` flags. New
    /// entries of the map first (a bucket's spill flag may send the kernel there), then the
    /// buckets ([`LocalBucket::update`]: entries that stay keep their place), then the
    /// map's entries gone.
    pub fn set_local_addrs(
        &mut self,
        wanted: &StdHashMap<[u8; 16], u8>,
    ) -> Result<(), DatapathError> {
        for (addr, flags) in wanted {
            if self.local.get(addr, 0).ok() != Some(*flags) {
                self.local
                    .insert(addr, flags, 0)
                    .map_err(DatapathError::map(format!("writing {MAP_LOCAL_ADDRS}")))?;
            }
        }
        let mut by_bucket: BTreeMap<u32, Vec<([u64; 2], u8)>> = BTreeMap::new();
        for (addr, flags) in wanted {
            let w = addr_words(addr);
            by_bucket
                .entry(local_bucket(w))
                .or_default()
                .push((w, *flags));
        }
        for b in 0..LOCAL_SET_BUCKETS {
            let mut bucket = self
                .local_set
                .get(&b, 0)
                .map_err(DatapathError::map(format!("reading {MAP_LOCAL_SET}")))?;
            let entries = by_bucket.get(&b).map_or(&[][..], Vec::as_slice);
            if bucket.update(entries) {
                self.local_set
                    .set(b, bucket, 0)
                    .map_err(DatapathError::map(format!("writing {MAP_LOCAL_SET}")))?;
            }
        }
        let gone: Vec<[u8; 16]> = self
            .local
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains_key(k))
            .collect();
        for k in gone {
            self.local
                .remove(&k)
                .map_err(DatapathError::map(format!("pruning {MAP_LOCAL_ADDRS}")))?;
        }
        Ok(())
    }

    fn write_config(&mut self, cfg: XdpConfig) -> Result<(), DatapathError> {
        self.config
            .set(0, cfg, 0)
            .map_err(DatapathError::map(format!("writing {MAP_CONFIG}")))?;
        self.written = cfg;
        Ok(())
    }

    /// Makes the kernel answer exactly `pools`, without disabling the XDP path and without a
    /// moment in which a name leads to another pool's answer:
    ///
    /// * a pool already known keeps its index (also one an earlier instance published in
    ///   adopted maps: found by the name its answer set carries, or by its name's place in
    ///   the index), and its answer is republished there (one release store);
    /// * a new pool gets an index nothing points at, and its answer is published there
    ///   before its name enters the index;
    /// * names no longer configured leave the index with the same rebuild, after which their
    ///   answers are unpublished; their indexes are reused only after a grace period. When
    ///   the new pools need those indexes, the removal comes first.
    pub fn sync(&mut self, pools: &[PoolAnswer]) -> Result<(), DatapathError> {
        let too_many = |capacity: u32| DatapathError::TooManyPools {
            count: pools.len(),
            capacity,
        };
        if pools.len() > self.capacity.pools as usize {
            return Err(too_many(self.capacity.pools));
        }
        let (defaults, regional): (Vec<&PoolAnswer>, Vec<&PoolAnswer>) = pools
            .iter()
            .partition(|p| p.region == crate::geo::RegionId::DEFAULT);
        let wanted: BTreeMap<Name, &PoolAnswer> = defaults
            .into_iter()
            .map(|p| (p.name.to_lowercase(), p))
            .collect();
        self.claim_orphans(wanted.keys())?;
        let gone: Vec<Name> = self
            .pools
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        let added: Vec<Name> = wanted
            .keys()
            .filter(|n| !self.pools.contains_key(*n))
            .cloned()
            .collect();
        if self.store.pools_available() < added.len() {
            // The removed pools hold the indexes the new ones need: their names leave the
            // index first (the daemon, which already answers the new configuration, gets
            // their queries).
            self.remove(&gone)?;
        }
        for name in added {
            let index = self
                .store
                .take_pool()?
                .ok_or_else(|| too_many(self.capacity.pools))?;
            if let Err(e) = self.zero_pool_answers(index) {
                self.store.retire_pool(index);
                return Err(e);
            }
            let pool = HotPool {
                index,
                name: folded_name(&name)?,
                published: None,
                answer: None,
                regions: BTreeMap::new(),
            };
            self.pools.insert(name, pool);
        }
        // Region answers: those no longer wanted go first, then the wanted ones (a region
        // answer of a pool without a default answer is not published: the daemon answers).
        let mut keep: BTreeMap<&Name, HashSet<crate::geo::RegionId>> =
            wanted.keys().map(|n| (n, HashSet::new())).collect();
        let regional: Vec<(Name, &PoolAnswer)> = regional
            .into_iter()
            .map(|a| (a.name.to_lowercase(), a))
            .filter(|(n, _)| wanted.contains_key(n))
            .collect();
        for (name, a) in &regional {
            if let Some(k) = keep.get_mut(name) {
                k.insert(a.region);
            }
        }
        for (name, k) in &keep {
            self.prune_regions(name, k)?;
        }
        for (_, a) in &regional {
            self.publish_region(a)?;
        }
        for answer in wanted.values() {
            self.publish(answer)?;
        }
        self.remove(&gone)
    }

    /// Gives the pools named `names` that are not known yet the indexes an earlier instance
    /// published them at (by the name of the answer set, else by the name's index entry).
    fn claim_orphans<'a>(
        &mut self,
        names: impl Iterator<Item = &'a Name>,
    ) -> Result<(), DatapathError> {
        if self.orphans.is_empty() {
            return Ok(());
        }
        let by_name: StdHashMap<NameKey, u32> = self
            .orphans
            .iter()
            .filter_map(|(&i, o)| Some((name_key(o.name.as_ref()?), i)))
            .collect();
        for name in names {
            if self.pools.contains_key(name) {
                continue;
            }
            let folded = folded_name(name)?;
            let found = by_name.get(&name_key(&folded)).copied().or_else(|| {
                self.index
                    .lookup(&folded)
                    .filter(|i| self.orphans.get(i).is_some_and(|o| o.name.is_none()))
            });
            if let Some(orphan) = found.and_then(|i| self.orphans.remove_entry(&i)) {
                let (index, Orphan { published, .. }) = orphan;
                let pool = HotPool {
                    index,
                    name: folded,
                    published,
                    answer: None,
                    regions: BTreeMap::new(),
                };
                self.pools.insert(name.clone(), pool);
            }
        }
        Ok(())
    }

    /// Takes the pools named `gone` and every unclaimed orphan out of the index, then stops
    /// answering them; their indexes are reused after a grace period.
    fn remove(&mut self, gone: &[Name]) -> Result<(), DatapathError> {
        let removed: Vec<(Name, HotPool)> = gone
            .iter()
            .filter_map(|n| self.pools.remove_entry(n))
            .collect();
        if let Err(e) = self.build_index() {
            self.pools.extend(removed);
            return Err(e);
        }
        let orphans = std::mem::take(&mut self.orphans)
            .into_iter()
            .map(|(i, o)| (i, o.published));
        let mut plain = Vec::with_capacity(removed.len());
        for (_, p) in removed {
            self.drop_regions(p.index, p.regions)?;
            plain.push((p.index, p.published));
        }
        for (index, published) in plain.into_iter().chain(orphans) {
            self.store.unpublish(index, published);
            self.store.retire_pool(index);
        }
        Ok(())
    }

    /// Publishes a new answer for an already synced pool (the steering path). On failure
    /// the pool is no longer answered by the kernel (the daemon answers it).
    pub fn publish(&mut self, answer: &PoolAnswer) -> Result<(), DatapathError> {
        if answer.region != crate::geo::RegionId::DEFAULT {
            return self.publish_region(answer);
        }
        let name = answer.name.to_lowercase();
        let flags = self.geo_flag(&name);
        let Some(pool) = self.pools.get_mut(&name) else {
            return Err(DatapathError::NotPublished {
                pool: answer.name.to_string(),
            });
        };
        let index = pool.index;
        let old = pool.published.take();
        pool.answer = Some(answer.clone());
        let store = &mut self.store;
        let result = encode_set(answer).and_then(|set| match set {
            Some(mut set) => {
                set.set.flags = flags;
                store.write_set(index, set).map(Some)
            }
            None => Ok(None),
        });
        match result {
            Ok(new) => {
                store.point(index, new.as_ref());
                store.retire(old);
                pool.published = new;
                Ok(())
            }
            Err(e) => {
                store.unpublish(index, old);
                Err(e)
            }
        }
    }

    /// Places every pool's name in the index and, when that took a new hash key, writes the
    /// key to the config map (after the buckets: a lookup with the old key meanwhile finds
    /// another name or none, and the name comparison passes it to the daemon).
    fn build_index(&mut self) -> Result<(), DatapathError> {
        self.index
            .build(self.pools.values().map(|p| (p.index, &p.name)))?;
        if self.written.key != self.index.key() {
            let mut cfg = self.written;
            cfg.key = self.index.key();
            cfg.index_mask = self.index.mask();
            self.write_config(cfg)?;
        }
        Ok(())
    }

    /// Counter totals (summed over CPUs), indexed by [`Outcome`].
    pub fn stats(&self) -> Result<Vec<(Outcome, u64)>, DatapathError> {
        Outcome::ALL
            .iter()
            .map(|&o| {
                let per_cpu = self
                    .stats
                    .get(&(o as u32), 0)
                    .map_err(DatapathError::map(format!("reading {MAP_STATS}")))?;
                Ok((o, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The hash key and index bucket of `name` as the kernel computes them, and the pool
    /// index of a synced pool (`u32::MAX` for another name; tests write colliding index
    /// entries with these).
    pub fn locate(&self, name: &Name) -> Option<(HashKey, u32, u32)> {
        let folded = folded_name(name).ok()?;
        let pool = self.pools.get(&name.to_lowercase()).map(|p| p.index);
        Some((
            self.index.key(),
            self.index.bucket_of(&folded),
            pool.unwrap_or(u32::MAX),
        ))
    }

    /// Overwrites one index bucket directly (tests: forced collisions).
    pub fn write_bucket(&mut self, at: u32, bucket: Bucket) -> Result<(), DatapathError> {
        self.index.write(at, bucket)
    }

    /// The index bucket at `at` as last written.
    pub fn bucket(&self, at: u32) -> Option<Bucket> {
        self.index.bucket(at)
    }

    /// The answer set and answers published for a pool's name, as the kernel reads them
    /// (`None`: not answered by the kernel).
    pub fn published(&self, name: &Name) -> Option<(AnswerSet, Vec<Answer>)> {
        let pool = self.pools.get(&name.to_lowercase())?;
        self.store.read(pool.index)
    }
}

/// Counter totals from the stats map pinned in `pin_dir` by a running daemon.
pub fn read_pinned_stats(pin_dir: &std::path::Path) -> Result<Vec<(Outcome, u64)>, DatapathError> {
    let path = pin_dir.join(MAP_STATS);
    let data = MapData::from_pin(&path).map_err(DatapathError::map(format!(
        "opening {} (is the daemon running with XDP, and is this its pin_path?)",
        path.display()
    )))?;
    let stats: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(data))
        .map_err(DatapathError::map(format!("map {MAP_STATS}")))?;
    Outcome::ALL
        .iter()
        .map(|&o| {
            let per_cpu = stats
                .get(&(o as u32), 0)
                .map_err(DatapathError::map(format!("reading {MAP_STATS}")))?;
            Ok((o, per_cpu.iter().sum()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
