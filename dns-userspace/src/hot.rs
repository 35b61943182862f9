//! The kernel's view of the pools: answers encoded with their checksum sums, the name index
//! the XDP program looks names up in, and publishing without torn reads (the protocol is
//! described in `dns_common::maps`).
//!
//! * [`encode_set`] turns a [`PoolAnswer`] into what the kernel stores: its folded name,
//!   the query types it answers, weighted thresholds and one [`Answer`] per variant.
//! * [`HotMaps::sync`] makes the kernel answer exactly a set of pools (stable pool indexes,
//!   the index rebuilt, a new hash key when a bucket would overflow);
//!   [`HotMaps::publish`] replaces one pool's answer (the steering path).
//! * Answer sets and answers live in arrays with free lists; an entry the kernel may still
//!   read is reused only after a grace period ([`GracePeriod`]).

use std::{
    collections::{BTreeMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Array, ArrayOfMaps, HashMap, Map, MapData, MapError, PerCpuArray};
use dns_common::{
    Answer, AnswerSet, Bucket, CFG_ANY_V4, CFG_ANY_V6, CFG_ENABLED, CFG_LISTEN_MAP_V4,
    CFG_LISTEN_MAP_V6, CFG_PREFER_HEADROOM, INLINE_LISTEN_ADDRS, MAP_CONFIG, MAP_HOT_ANSWERS,
    MAP_HOT_CUR, MAP_HOT_INDEX, MAP_HOT_SLOTS, MAP_LISTEN_ADDRS, MAP_STATS, MAX_ANSWER_LEN,
    MAX_ANSWER_RRS, MAX_VARIANTS, NO_SLOT, Outcome, XdpConfig,
    name::{FoldedName, HashKey},
    pool_qtypes, v4_mapped,
};
use hickory_proto::{
    ProtoError,
    op::{Message, Query},
    rr::{Name, RData},
    serialize::binary::{BinEncodable, BinEncoder},
};

use crate::pools::{PoolAnswer, Selection};

/// Why an answer could not be put into the kernel's maps.
#[derive(Debug, thiserror::Error)]
pub enum HotError {
    #[error("pool {pool}: {problem}")]
    Answer {
        pool: String,
        problem: AnswerProblem,
    },
    #[error("pool {0} is not in the kernel map")]
    UnknownPool(String),
    #[error("{count} pools configured, the kernel maps were sized for {capacity}")]
    TooManyPools { count: usize, capacity: u32 },
    #[error("the kernel answer table is full ({needed} entries needed, {free} free of {capacity})")]
    AnswersFull {
        needed: usize,
        free: usize,
        capacity: u32,
    },
    #[error("could not place {names} names in {buckets} index buckets with 16 hash keys")]
    IndexFull { names: usize, buckets: u32 },
    #[error("{op} map {map}: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the XDP program has no map {0}")]
    MissingMap(&'static str),
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a pool's answer for the kernel.
#[derive(Debug, thiserror::Error)]
pub enum AnswerProblem {
    #[error("no answer records")]
    NoRecords,
    #[error("{0} answer records, at most {MAX_ANSWER_RRS} fit the kernel answer")]
    TooManyRecords(usize),
    #[error("{0} weighted records with {1} thresholds (at most {MAX_VARIANTS})")]
    BadWeights(usize, usize),
    #[error("the answer is {0} octets, at most {MAX_ANSWER_LEN} fit the kernel answer")]
    TooLong(usize),
    #[error("the encoded answer does not point at the question")]
    NotCompressed,
    #[error("the name is not a valid wire name")]
    BadName,
    #[error("encoding: {0}")]
    Encoding(#[from] ProtoError),
}

fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(MapError) -> HotError {
    move |source| HotError::Map { op, map, source }
}

/// Encodes `rdata` (some of the pool's records) the way the XDP path appends them after the
/// echoed question: owner names compress to the question (`0xC00C`), so the bytes are valid
/// whatever case the client used. Encoded with hickory-proto as the answer section of a
/// message whose question is the pool's name, then cut out of it; the checksum sum of the
/// octets comes with it.
fn encode_rrs(answer: &PoolAnswer, rdata: &[RData]) -> Result<Answer, AnswerProblem> {
    if rdata.is_empty() {
        return Err(AnswerProblem::NoRecords);
    }
    if rdata.len() > MAX_ANSWER_RRS {
        return Err(AnswerProblem::TooManyRecords(rdata.len()));
    }
    let name = answer.name.to_lowercase();
    let mut msg = Message::query();
    msg.add_query(Query::query(name.clone(), answer.rtype));
    msg.add_answers(rdata.iter().map(|d| answer.record(&name, d)));
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    msg.emit(&mut enc)?;

    let start = 12 + name.to_bytes()?.len() + 4;
    let rrs = buf.get(start..).unwrap_or_default();
    if !rrs.starts_with(&[0xc0, 0x0c]) {
        return Err(AnswerProblem::NotCompressed);
    }
    Answer::new(rdata.len() as u16, rrs).ok_or(AnswerProblem::TooLong(rrs.len()))
}

/// Every record of the pool as one kernel answer.
pub fn encode_variant(answer: &PoolAnswer) -> Result<Answer, HotError> {
    encode_rrs(answer, &answer.rdata).map_err(|problem| HotError::Answer {
        pool: answer.name.to_string(),
        problem,
    })
}

/// What the kernel stores for one published pool answer.
#[derive(Clone, Debug)]
pub struct EncodedSet {
    /// The answer set with everything but `pool` and `answers` filled in.
    pub set: AnswerSet,
    /// One answer per variant, in order.
    pub answers: Vec<Answer>,
}

/// The kernel's form of a pool's answer: one variant with every record, one variant per
/// record with the weighted thresholds, or `None` for SERVFAIL (the kernel passes the query
/// and the daemon answers SERVFAIL).
pub fn encode_set(answer: &PoolAnswer) -> Result<Option<EncodedSet>, HotError> {
    let fail = |problem| HotError::Answer {
        pool: answer.name.to_string(),
        problem,
    };
    let name = folded_name(&answer.name).map_err(fail)?;
    let mut set = AnswerSet::empty();
    set.name_len = name.len as u8;
    set.name = name.words;
    set.qtypes = pool_qtypes(u16::from(answer.rtype));
    let answers = match &answer.selection {
        Selection::All => {
            set.thresholds[0] = u32::MAX;
            vec![encode_rrs(answer, &answer.rdata).map_err(fail)?]
        }
        Selection::WeightedOne { thresholds, .. } => {
            let n = answer.rdata.len();
            if n != thresholds.len() || n == 0 || n > MAX_VARIANTS {
                return Err(fail(AnswerProblem::BadWeights(n, thresholds.len())));
            }
            set.thresholds[..n].copy_from_slice(thresholds);
            answer
                .rdata
                .iter()
                .map(|d| encode_rrs(answer, std::slice::from_ref(d)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?
        }
        Selection::Servfail => return Ok(None),
    };
    set.n_variants = answers.len() as u8;
    Ok(Some(EncodedSet { set, answers }))
}

fn folded_name(name: &Name) -> Result<FoldedName, AnswerProblem> {
    let wire = name.to_lowercase().to_bytes()?;
    FoldedName::new(&wire).map_err(|_| AnswerProblem::BadName)
}

/// How many pools, answer sets, answers and index buckets the kernel maps hold. Sized from
/// the configuration when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Pool indexes (`HOT_CUR`).
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
}

/// The kernel's wait for running BPF programs: updating an array of maps returns only after
/// `synchronize_rcu()` (`maybe_wait_bpf_programs()` in kernel/bpf/syscall.c, since 4.20:
/// "userspace, when we return to it, knows that all non-sleepable programs that could be
/// running use the new map value"). Unlike `membarrier(MEMBARRIER_CMD_GLOBAL)`, which also
/// calls `synchronize_rcu()`, it works on `nohz_full` kernels (membarrier returns EINVAL
/// there) and waits with a single online CPU too (membarrier then returns at once, though
/// a preempted reader may still be inside its read-side section on preemptible kernels).
pub struct GracePeriod {
    outer: ArrayOfMaps<MapData, MapData>,
    inner: MapData,
}

/// `BPF_MAP_CREATE`'s attributes up to the map name (the kernel zero-fills the rest).
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

fn create_map(map_type: u32, inner_map_fd: u32, name: &[u8]) -> Result<MapData, HotError> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        map_flags: 0,
        inner_map_fd,
        numa_node: 0,
        map_name: [0; 16],
    };
    attr.map_name[..name.len()].copy_from_slice(name);
    // SAFETY: BPF_MAP_CREATE with a valid, initialised attribute struct of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreateAttr,
            std::mem::size_of::<MapCreateAttr>(),
        )
    };
    if fd < 0 {
        return Err(HotError::Os {
            what: "creating the grace-period map",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    MapData::from_fd(fd).map_err(map_err("opening", "grace period"))
}

impl GracePeriod {
    pub fn new() -> Result<Self, HotError> {
        let inner = create_map(BPF_MAP_TYPE_ARRAY, 0, b"hotpool_gp_in")?;
        let outer = create_map(
            BPF_MAP_TYPE_ARRAY_OF_MAPS,
            inner.fd().as_fd().as_raw_fd() as u32,
            b"hotpool_gp",
        )?;
        let outer = ArrayOfMaps::try_from(Map::ArrayOfMaps(outer))
            .map_err(map_err("opening", "grace period"))?;
        Ok(Self { outer, inner })
    }

    /// Returns once every XDP program run that started before the call has finished.
    pub fn wait(&mut self) -> Result<(), HotError> {
        self.outer
            .set(0, &self.inner, 0)
            .map_err(map_err("updating", "grace period"))
    }
}

/// A `BPF_F_MMAPABLE` array map mapped into the daemon. Publishing writes answer sets and
/// answers with plain stores and the current slot with one release store: a real
/// single-copy-atomic store (a map update syscall copies with `memcpy`, which the kernel may
/// do octet by octet), and no syscall per entry.
struct MappedArray<T> {
    _map: MapData,
    base: NonNull<T>,
    entries: u32,
    len: usize,
}

// SAFETY: the mapping is owned by the struct; entries are written by the one owner (through
// `&mut self`) or accessed through atomics.
unsafe impl<T> Send for MappedArray<T> {}
unsafe impl<T> Sync for MappedArray<T> {}

impl<T: Copy> MappedArray<T> {
    fn new(map: MapData, name: &'static str) -> Result<Self, HotError> {
        let info = map.info().map_err(map_err("inspecting", name))?;
        let entries = info.max_entries();
        // The kernel lays values out `round_up(value_size, 8)` apart; every value type here
        // is a multiple of 8 (asserted in dns-common), so that is `size_of::<T>()`.
        debug_assert_eq!(info.value_size() as usize, std::mem::size_of::<T>());
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = (entries as usize * std::mem::size_of::<T>()).div_ceil(page) * page;
        // SAFETY: mapping a BPF_F_MMAPABLE array map shared and read-write from offset 0, as
        // the kernel allows; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        let mapped = (p != libc::MAP_FAILED).then(|| NonNull::new(p.cast::<T>()));
        let Some(Some(base)) = mapped else {
            return Err(HotError::Os {
                what: "mapping an answer map into memory",
                source: std::io::Error::last_os_error(),
            });
        };
        Ok(Self {
            _map: map,
            base,
            entries,
            len,
        })
    }

    fn ptr(&self, i: u32) -> *mut T {
        assert!(i < self.entries, "entry {i} of {}", self.entries);
        // SAFETY: in bounds of the mapping (checked); page-aligned base, 8-aligned entries.
        unsafe { self.base.as_ptr().add(i as usize) }
    }

    /// Writes an entry no reader can be using (a free one).
    fn write(&mut self, i: u32, value: &T) {
        // SAFETY: a valid, aligned entry of the mapping; the kernel reads it only once it
        // is published (release store) and the writer is the only one.
        unsafe { std::ptr::write_volatile(self.ptr(i), *value) };
    }

    fn read(&self, i: u32) -> T {
        // SAFETY: as in `write`; reading a plain-data value.
        unsafe { std::ptr::read_volatile(self.ptr(i)) }
    }
}

impl MappedArray<u64> {
    fn atomic(&self, i: u32) -> &AtomicU64 {
        // SAFETY: a valid, 8-aligned u64 of the mapping, live as long as `self`.
        unsafe { AtomicU64::from_ptr(self.ptr(i)) }
    }

    fn load(&self, i: u32) -> u64 {
        self.atomic(i).load(Ordering::Acquire)
    }

    /// Publishes: every store this thread made before (the answer set and answers) is
    /// visible to a reader that sees this value.
    fn store(&self, i: u32, v: u64) {
        self.atomic(i).store(v, Ordering::Release);
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Entries of one array that the kernel may or may not be reading.
struct FreeList {
    /// Free for reuse: no reader can hold them.
    free: Vec<u32>,
    /// Unreachable from `HOT_CUR`, but a reader that started earlier may hold them: free
    /// after the next grace period.
    retired: Vec<u32>,
}

impl FreeList {
    /// Everything retired: whatever a previous instance left is reused only after a grace
    /// period.
    fn all_retired(n: u32) -> Self {
        Self {
            free: Vec::new(),
            retired: (0..n).rev().collect(),
        }
    }
}

/// A pool's published answer: its slot and the answers the slot refers to.
#[derive(Clone, Debug)]
struct Published {
    slot: u32,
    answers: Vec<u32>,
}

/// A pool the kernel knows.
#[derive(Clone, Debug)]
struct HotPool {
    index: u32,
    name: FoldedName,
    published: Option<Published>,
}

/// Handles to the program's maps (taken from a loaded `aya::Ebpf`) and the bookkeeping of
/// what is published where.
pub struct HotMaps {
    index: Array<MapData, Bucket>,
    cur: MappedArray<u64>,
    slots: MappedArray<AnswerSet>,
    answers: MappedArray<Answer>,
    config: Array<MapData, XdpConfig>,
    listen: HashMap<MapData, [u8; 16], u8>,
    stats: PerCpuArray<MapData, u64>,
    grace: GracePeriod,
    capacity: Capacity,
    key: HashKey,
    /// The index as last written (only changed buckets are rewritten).
    buckets: Vec<Bucket>,
    /// The config map as last written.
    written: XdpConfig,
    free_slots: FreeList,
    free_answers: FreeList,
    /// Pools by lower-case name.
    pools: BTreeMap<Name, HotPool>,
    /// Grace periods waited for (diagnostics and tests).
    grace_periods: u64,
}

impl HotMaps {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, HotError> {
        fn take(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<Map, HotError> {
            ebpf.take_map(name).ok_or(HotError::MissingMap(name))
        }
        fn typed<T: TryFrom<Map, Error = MapError>>(
            ebpf: &mut aya::Ebpf,
            name: &'static str,
        ) -> Result<T, HotError> {
            T::try_from(take(ebpf, name)?).map_err(map_err("opening", name))
        }
        fn mapped<T: Copy>(
            ebpf: &mut aya::Ebpf,
            name: &'static str,
        ) -> Result<MappedArray<T>, HotError> {
            match take(ebpf, name)? {
                Map::Array(data) => MappedArray::new(data, name),
                _ => Err(HotError::MissingMap(name)),
            }
        }
        let cur: MappedArray<u64> = mapped(ebpf, MAP_HOT_CUR)?;
        let slots: MappedArray<AnswerSet> = mapped(ebpf, MAP_HOT_SLOTS)?;
        let answers: MappedArray<Answer> = mapped(ebpf, MAP_HOT_ANSWERS)?;
        let index: Array<MapData, Bucket> = typed(ebpf, MAP_HOT_INDEX)?;
        let capacity = Capacity {
            pools: cur.entries,
            slots: slots.entries,
            answers: answers.entries,
            buckets: index.len(),
        };
        let mut maps = Self {
            index,
            cur,
            slots,
            answers,
            config: typed(ebpf, MAP_CONFIG)?,
            listen: typed(ebpf, MAP_LISTEN_ADDRS)?,
            stats: typed(ebpf, MAP_STATS)?,
            grace: GracePeriod::new()?,
            capacity,
            key: HashKey {
                k0: rand::random(),
                k1: rand::random(),
            },
            buckets: vec![Bucket::default(); capacity.buckets as usize],
            written: XdpConfig::disabled(),
            free_slots: FreeList::all_retired(capacity.slots),
            free_answers: FreeList::all_retired(capacity.answers),
            pools: BTreeMap::new(),
            grace_periods: 0,
        };
        // Nothing a previous instance published stays reachable; its entries are reused
        // after the first grace period.
        for pool in 0..capacity.pools {
            maps.cur.store(pool, NO_SLOT);
        }
        maps.clear_index()?;
        Ok(maps)
    }

    /// The sizes of the maps.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Grace periods waited for so far.
    pub fn grace_periods(&self) -> u64 {
        self.grace_periods
    }

    /// Enables or disables the XDP path and writes its settings.
    pub fn configure(&mut self, s: &DatapathSettings, enabled: bool) -> Result<(), HotError> {
        let mut cfg = XdpConfig::disabled();
        cfg.port = s.port.to_be_bytes();
        cfg.edns_udp_size = s.edns_udp_size.to_be_bytes();
        cfg.key = self.key;
        cfg.index_mask = self.capacity.buckets - 1;
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
        // Disable first, so no packet sees a half-written address set.
        if !enabled {
            self.write_config(cfg)?;
        }
        for a in &wanted {
            self.listen
                .insert(a, 1, 0)
                .map_err(map_err("writing", MAP_LISTEN_ADDRS))?;
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
                .map_err(map_err("pruning", MAP_LISTEN_ADDRS))?;
        }
        if enabled {
            cfg.flags |= CFG_ENABLED;
        }
        self.write_config(cfg)
    }

    fn write_config(&mut self, cfg: XdpConfig) -> Result<(), HotError> {
        self.config
            .set(0, cfg, 0)
            .map_err(map_err("writing", MAP_CONFIG))?;
        self.written = cfg;
        Ok(())
    }

    /// Makes the kernel answer exactly `pools`: pools already known keep their index, new
    /// ones get free indexes, every answer is published, the name index is rebuilt and
    /// pools no longer configured stop being answered.
    pub fn sync(&mut self, pools: &[PoolAnswer]) -> Result<(), HotError> {
        if pools.len() > self.capacity.pools as usize {
            return Err(HotError::TooManyPools {
                count: pools.len(),
                capacity: self.capacity.pools,
            });
        }
        let wanted: BTreeMap<Name, &PoolAnswer> =
            pools.iter().map(|p| (p.name.to_lowercase(), p)).collect();
        let gone: Vec<Name> = self
            .pools
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(p) = self.pools.remove(&name) {
                self.unpublish(p.index, p.published);
            }
        }
        let used: HashSet<u32> = self.pools.values().map(|p| p.index).collect();
        let mut free = (0..self.capacity.pools).filter(|i| !used.contains(i));
        for (name, answer) in &wanted {
            if !self.pools.contains_key(name) {
                let folded = folded_name(name).map_err(|problem| HotError::Answer {
                    pool: answer.name.to_string(),
                    problem,
                })?;
                let index = free.next().ok_or(HotError::TooManyPools {
                    count: pools.len(),
                    capacity: self.capacity.pools,
                })?;
                self.pools.insert(
                    name.clone(),
                    HotPool {
                        index,
                        name: folded,
                        published: None,
                    },
                );
            }
        }
        for answer in wanted.values() {
            self.publish(answer)?;
        }
        self.build_index()
    }

    /// Publishes a new answer for an already synced pool (the steering path). On failure
    /// the pool is no longer answered by the kernel (the daemon answers it).
    pub fn publish(&mut self, answer: &PoolAnswer) -> Result<(), HotError> {
        let name = answer.name.to_lowercase();
        let pool = self
            .pools
            .get(&name)
            .ok_or_else(|| HotError::UnknownPool(answer.name.to_string()))?;
        let index = pool.index;
        let result = encode_set(answer).and_then(|set| match set {
            Some(set) => self.write_set(index, set).map(Some),
            None => Ok(None),
        });
        let new = match result {
            Ok(new) => new,
            Err(e) => {
                let old = self.pools.get_mut(&name).and_then(|p| p.published.take());
                self.unpublish(index, old);
                return Err(e);
            }
        };
        self.cur
            .store(index, new.as_ref().map_or(NO_SLOT, |p| p.slot as u64));
        let pool = self.pools.get_mut(&name).expect("looked up above");
        let old = std::mem::replace(&mut pool.published, new);
        self.retire(old);
        Ok(())
    }

    /// Stops answering a pool index from the kernel.
    fn unpublish(&mut self, index: u32, published: Option<Published>) {
        self.cur.store(index, NO_SLOT);
        self.retire(published);
    }

    fn retire(&mut self, published: Option<Published>) {
        if let Some(p) = published {
            self.free_slots.retired.push(p.slot);
            self.free_answers.retired.extend(p.answers);
        }
    }

    /// Writes an answer set and its answers into free entries (not yet reachable: no reader
    /// can see them before the release store that publishes the slot).
    fn write_set(&mut self, index: u32, mut e: EncodedSet) -> Result<Published, HotError> {
        let needed = e.answers.len();
        if self.free_slots.free.is_empty() || self.free_answers.free.len() < needed {
            self.reclaim()?;
        }
        if self.free_answers.free.len() < needed || self.free_slots.free.is_empty() {
            return Err(HotError::AnswersFull {
                needed,
                free: self.free_answers.free.len(),
                capacity: self.capacity.answers,
            });
        }
        let slot = self.free_slots.free.pop().expect("checked above");
        let at = self.free_answers.free.len() - needed;
        let answer_ids: Vec<u32> = self.free_answers.free.drain(at..).collect();
        let published = Published {
            slot,
            answers: answer_ids.clone(),
        };
        for (&id, answer) in answer_ids.iter().zip(&e.answers) {
            self.answers.write(id, answer);
        }
        e.set.pool = index;
        e.set.answers[..needed].copy_from_slice(&answer_ids);
        self.slots.write(slot, &e.set);
        Ok(published)
    }

    /// Waits for a grace period, then frees everything retired before it.
    fn reclaim(&mut self) -> Result<(), HotError> {
        if self.free_slots.retired.is_empty() && self.free_answers.retired.is_empty() {
            return Ok(());
        }
        let slots = std::mem::take(&mut self.free_slots.retired);
        let answers = std::mem::take(&mut self.free_answers.retired);
        if let Err(e) = self.grace.wait() {
            self.free_slots.retired = slots;
            self.free_answers.retired = answers;
            return Err(e);
        }
        self.grace_periods += 1;
        self.free_slots.free.extend(slots);
        self.free_answers.free.extend(answers);
        Ok(())
    }

    /// Places every pool's name in the index; draws a new hash key when a bucket would
    /// overflow or hold two equal tags, and writes the buckets that changed.
    fn build_index(&mut self) -> Result<(), HotError> {
        let mask = self.capacity.buckets - 1;
        for attempt in 0..16 {
            if attempt > 0 {
                self.key = HashKey {
                    k0: rand::random(),
                    k1: rand::random(),
                };
            }
            if let Some(buckets) = place(&self.key, mask, self.pools.values()) {
                let rekeyed = self.written.key != self.key;
                self.buckets_next(buckets)?;
                if rekeyed {
                    let mut cfg = self.written;
                    cfg.key = self.key;
                    cfg.index_mask = mask;
                    self.write_config(cfg)?;
                }
                return Ok(());
            }
        }
        Err(HotError::IndexFull {
            names: self.pools.len(),
            buckets: self.capacity.buckets,
        })
    }

    fn buckets_next(&mut self, next: Vec<Bucket>) -> Result<(), HotError> {
        let old = std::mem::replace(&mut self.buckets, next);
        for (i, (b, was)) in self.buckets.iter().zip(&old).enumerate() {
            if b != was {
                self.index
                    .set(i as u32, b, 0)
                    .map_err(map_err("writing", MAP_HOT_INDEX))?;
            }
        }
        Ok(())
    }

    /// Empties every bucket (a previous instance's index used another key).
    fn clear_index(&mut self) -> Result<(), HotError> {
        for i in 0..self.capacity.buckets {
            self.index
                .set(i, Bucket::default(), 0)
                .map_err(map_err("writing", MAP_HOT_INDEX))?;
        }
        Ok(())
    }

    /// Counter totals (summed over CPUs), indexed by [`Outcome`].
    pub fn stats(&self) -> Result<Vec<(Outcome, u64)>, HotError> {
        Outcome::ALL
            .iter()
            .map(|&o| {
                let per_cpu = self
                    .stats
                    .get(&(o as u32), 0)
                    .map_err(map_err("reading", MAP_STATS))?;
                Ok((o, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The hash key and index bucket of `name` as the kernel computes them, and the pool
    /// index of a synced pool (tests write colliding index entries with these).
    pub fn locate(&self, name: &Name) -> Option<(HashKey, u32, u32)> {
        let folded = folded_name(name).ok()?;
        let hash = folded.hash(&self.key);
        let pool = self.pools.get(&name.to_lowercase()).map(|p| p.index);
        Some((
            self.key,
            dns_common::bucket(hash, self.capacity.buckets - 1),
            pool.unwrap_or(u32::MAX),
        ))
    }

    /// Overwrites one index bucket directly (tests: forced collisions).
    pub fn write_bucket(&mut self, at: u32, bucket: Bucket) -> Result<(), HotError> {
        self.index
            .set(at, bucket, 0)
            .map_err(map_err("writing", MAP_HOT_INDEX))?;
        if let Some(b) = self.buckets.get_mut(at as usize) {
            *b = bucket;
        }
        Ok(())
    }

    /// The index bucket at `at` as last written.
    pub fn bucket(&self, at: u32) -> Option<Bucket> {
        self.buckets.get(at as usize).copied()
    }

    /// The answer set and answers published for a pool's name, as the kernel reads them
    /// (`None`: not answered by the kernel).
    pub fn published(&self, name: &Name) -> Option<(AnswerSet, Vec<Answer>)> {
        let pool = self.pools.get(&name.to_lowercase())?;
        let slot = self.cur.load(pool.index);
        if slot == NO_SLOT {
            return None;
        }
        let set = self.slots.read(slot as u32);
        let n = (set.n_variants as usize).min(MAX_VARIANTS);
        let answers = set.answers[..n]
            .iter()
            .map(|&a| self.answers.read(a))
            .collect();
        Some((set, answers))
    }
}

/// The index for `pools` under `key`, or `None` when a bucket would overflow or hold two
/// names with the same tag (the kernel takes the first matching tag).
fn place<'a>(
    key: &HashKey,
    mask: u32,
    pools: impl Iterator<Item = &'a HotPool>,
) -> Option<Vec<Bucket>> {
    let mut buckets = vec![Bucket::default(); mask as usize + 1];
    for p in pools {
        let hash = p.name.hash(key);
        let b = &mut buckets[dns_common::bucket(hash, mask) as usize];
        let tag = dns_common::tag(hash);
        if b.tags.contains(&tag) {
            return None;
        }
        let free = b.tags.iter().position(|&t| t == 0)?;
        b.tags[free] = tag;
        b.pools[free] = p.index;
    }
    Some(buckets)
}

/// Counter totals from the stats map pinned in `pin_dir` by a running daemon.
pub fn read_pinned_stats(pin_dir: &std::path::Path) -> anyhow::Result<Vec<(Outcome, u64)>> {
    use anyhow::Context as _;
    let path = pin_dir.join(MAP_STATS);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening {} (is the daemon running with XDP, and is this its pin_path?)",
            path.display()
        )
    })?;
    let stats: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(data))?;
    Outcome::ALL
        .iter()
        .map(|&o| Ok((o, stats.get(&(o as u32), 0)?.iter().sum())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, str::FromStr};

    use dns_common::query::qtype_bit;
    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{
            RData, RecordType,
            rdata::{A, AAAA, CNAME},
        },
        serialize::binary::BinDecodable,
    };

    use super::*;

    use crate::pools::test_pool as pool;

    /// Splices an answer behind a query's header and question, as the kernel does, and
    /// decodes the result with hickory-proto.
    fn splice(qname: &str, qtype: RecordType, a: &Answer) -> Message {
        let mut q = Message::query();
        q.metadata.id = 0x1234;
        q.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        let mut wire = q.to_bytes().unwrap();
        wire[2] = 0x84;
        wire[6..8].copy_from_slice(&a.ancount);
        wire.extend_from_slice(a.rrs());
        Message::from_bytes(&wire).unwrap()
    }

    #[test]
    fn a_pool_answer_decodes_with_the_clients_case() {
        let p = pool(
            "www.example.test.",
            RecordType::A,
            vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
                RData::A(A(Ipv4Addr::new(192, 0, 2, 11))),
            ],
        );
        let v = encode_variant(&p).unwrap();
        assert_eq!(v.ancount, [0, 2]);
        assert_eq!(v.len, 2 * 16);
        assert_eq!(&v.bytes[..2], &[0xc0, 0x0c]);
        assert_eq!(
            v.sum,
            dns_common::csum::fold(dns_common::csum::partial(v.rrs(), 0))
        );
        let m = splice("WwW.ExAmple.TEST.", RecordType::A, &v);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.op_code, OpCode::Query);
        let answers = &m.answers;
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].name.to_ascii(), "WwW.ExAmple.TEST.");
        assert_eq!(answers[0].ttl, 30);
        assert_eq!(answers[0].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 10))));
        assert_eq!(answers[1].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 11))));
    }

    #[test]
    fn aaaa_and_cname_answers_decode() {
        let p = pool(
            "v6.example.test.",
            RecordType::AAAA,
            vec![RData::AAAA(AAAA("2001:db8::10".parse().unwrap()))],
        );
        let m = splice(
            "v6.example.test.",
            RecordType::AAAA,
            &encode_variant(&p).unwrap(),
        );
        assert_eq!(
            m.answers[0].data,
            RData::AAAA(AAAA("2001:db8::10".parse().unwrap()))
        );

        let target = Name::from_str("edge.cdn.example.test.").unwrap();
        let p = pool(
            "cdn.example.test.",
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(target.clone()))],
        );
        let v = encode_variant(&p).unwrap();
        // The target shares "example.test." with the question and is compressed against it.
        assert!(v.len < 12 + 22);
        for qt in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            let m = splice("CDN.example.test.", qt, &v);
            assert_eq!(m.answers.len(), 1);
            assert_eq!(m.answers[0].data, RData::CNAME(CNAME(target.clone())));
        }
    }

    #[test]
    fn oversized_answers_are_rejected() {
        let p = pool(
            "a.example.test.",
            RecordType::A,
            (0..9)
                .map(|i| RData::A(A(Ipv4Addr::new(192, 0, 2, i))))
                .collect(),
        );
        assert!(
            encode_variant(&p)
                .unwrap_err()
                .to_string()
                .contains("at most 8")
        );
        let empty = pool("a.example.test.", RecordType::A, vec![]);
        assert!(encode_variant(&empty).is_err());
    }

    #[test]
    fn eight_aaaa_and_a_long_cname_fit() {
        let p = pool(
            "a.example.test.",
            RecordType::AAAA,
            (0..8)
                .map(|i| RData::AAAA(AAAA(format!("2001:db8::{i}").parse().unwrap())))
                .collect(),
        );
        assert_eq!(encode_variant(&p).unwrap().len, 8 * 28);
        // 255-octet target that shares nothing with the owner.
        let label = "x".repeat(63);
        let target =
            Name::from_str(&format!("{label}.{label}.{label}.{}.", "y".repeat(61))).unwrap();
        let p = pool(
            "a.example.test.",
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(target))],
        );
        assert_eq!(encode_variant(&p).unwrap().len as usize, 12 + 255);
    }

    #[test]
    fn sets_carry_name_qtypes_and_variants() {
        let mut p = pool(
            "WWW.example.test.",
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(
                Name::from_str("a.example.net.").unwrap(),
            ))],
        );
        let e = encode_set(&p).unwrap().unwrap();
        assert_eq!(e.set.n_variants, 1);
        assert_eq!(e.answers.len(), 1);
        assert_eq!(
            e.set.qtypes,
            qtype_bit::A | qtype_bit::AAAA | qtype_bit::CNAME
        );
        let (octets, len) = FoldedName {
            len: e.set.name_len as usize,
            words: e.set.name,
        }
        .octets();
        assert_eq!(&octets[..len], b"\x03www\x07example\x04test\x00");
        assert_eq!(e.set.thresholds(), &[u32::MAX]);

        p.rtype = RecordType::A;
        p.rdata = (1..=3)
            .map(|i| RData::A(A(Ipv4Addr::new(192, 0, 2, i))))
            .collect();
        p.selection = Selection::weighted(vec![1, 1, 2]);
        let e = encode_set(&p).unwrap().unwrap();
        assert_eq!(e.set.qtypes, qtype_bit::A);
        assert_eq!(e.set.n_variants, 3);
        assert_eq!(
            e.answers.iter().map(|a| a.ancount).collect::<Vec<_>>(),
            [[0, 1], [0, 1], [0, 1]]
        );
        assert_eq!(e.set.thresholds()[2], u32::MAX);

        p.selection = Selection::Servfail;
        assert!(encode_set(&p).unwrap().is_none());
    }

    #[test]
    fn capacity_leaves_room_and_rounds_up() {
        let c = Capacity::for_pools([1, 1, 8]);
        assert_eq!(c.pools, 64);
        assert_eq!(c.slots, 128);
        assert_eq!(c.buckets, 128);
        assert_eq!(c.answers, 128);
        let big = Capacity::for_pools(std::iter::repeat_n(1, 10_000));
        assert_eq!(big.pools, 32_768);
        assert_eq!(big.answers, 65_536);
        assert!(big.buckets as usize >= 4 * 10_000);
        assert_eq!(Capacity::for_pools([9]).answers, 128, "variants clamp to 8");
    }

    #[test]
    fn placing_names_keeps_tags_unique_per_bucket() {
        let pools: Vec<HotPool> = (0..100u32)
            .map(|i| HotPool {
                index: i,
                name: folded_name(&Name::from_str(&format!("p{i}.example.test.")).unwrap())
                    .unwrap(),
                published: None,
            })
            .collect();
        let key = HashKey { k0: 5, k1: 6 };
        let buckets = place(&key, 255, pools.iter()).unwrap();
        let mut found = 0;
        for p in &pools {
            let h = p.name.hash(&key);
            let b = &buckets[dns_common::bucket(h, 255) as usize];
            let i = b
                .tags
                .iter()
                .position(|&t| t == dns_common::tag(h))
                .unwrap();
            assert_eq!(b.pools[i], p.index);
            found += 1;
        }
        assert_eq!(found, 100);
        // Five names in one bucket do not fit: with a single bucket, 5 names overflow.
        assert!(place(&key, 0, pools[..5].iter()).is_none());
        assert!(place(&key, 0, pools[..4].iter()).is_some());
    }
}
