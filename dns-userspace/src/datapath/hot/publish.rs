//! Publishing answer sets without torn reads (the protocol is described in
//! `dns_common::maps`): answer sets and answers live in memory-mapped arrays with free
//! lists, a pool's current slot is switched with one release store, and an entry the kernel
//! may still read is reused only after a grace period ([`GracePeriod`]).

use std::{
    collections::{BTreeMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{ArrayOfMaps, Map, MapData};
use dns_common::{Answer, AnswerSet, MAX_VARIANTS, NO_SLOT, name::FoldedName};

use crate::datapath::{DatapathError, hot::encode::EncodedSet};

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

fn create_map(map_type: u32, inner_map_fd: u32, name: &[u8]) -> Result<MapData, DatapathError> {
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
        return Err(DatapathError::io("creating the grace-period map")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    MapData::from_fd(fd).map_err(DatapathError::map("opening the grace-period map"))
}

impl GracePeriod {
    pub fn new() -> Result<Self, DatapathError> {
        let inner = create_map(BPF_MAP_TYPE_ARRAY, 0, b"hotpool_gp_in")?;
        let outer = create_map(
            BPF_MAP_TYPE_ARRAY_OF_MAPS,
            inner.fd().as_fd().as_raw_fd() as u32,
            b"hotpool_gp",
        )?;
        let outer = ArrayOfMaps::try_from(Map::ArrayOfMaps(outer))
            .map_err(DatapathError::map("opening the grace-period map"))?;
        Ok(Self { outer, inner })
    }

    /// Returns once every XDP program run that started before the call has finished.
    pub fn wait(&mut self) -> Result<(), DatapathError> {
        self.outer
            .set(0, &self.inner, 0)
            .map_err(DatapathError::map("updating the grace-period map"))
    }
}

/// A `BPF_F_MMAPABLE` array map mapped into the daemon. Publishing writes answer sets and
/// answers with plain stores and the current slot with one release store: a real
/// single-copy-atomic store (a map update syscall copies with `memcpy`, which the kernel may
/// do octet by octet), and no syscall per entry.
pub struct MappedArray<T> {
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
    /// Maps the array map `name` of a loaded program.
    pub fn take(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<Self, DatapathError> {
        match ebpf.take_map(name) {
            Some(Map::Array(data)) => Self::new(data, name),
            _ => Err(DatapathError::NoMap(name)),
        }
    }

    fn new(map: MapData, name: &'static str) -> Result<Self, DatapathError> {
        let info = map
            .info()
            .map_err(DatapathError::map(format!("inspecting map {name}")))?;
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
            return Err(
                DatapathError::io(format!("mapping map {name} into memory"))(
                    std::io::Error::last_os_error(),
                ),
            );
        };
        Ok(Self {
            _map: map,
            base,
            entries,
            len,
        })
    }

    /// Number of entries.
    pub fn entries(&self) -> u32 {
        self.entries
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
        Self::retired(0..n)
    }

    /// `entries` retired (lowest reused first).
    fn retired(entries: impl DoubleEndedIterator<Item = u32>) -> Self {
        Self {
            free: Vec::new(),
            retired: entries.rev().collect(),
        }
    }

    fn available(&self) -> usize {
        self.free.len() + self.retired.len()
    }
}

/// A pool's published answer: its slot and the answers the slot refers to.
#[derive(Clone, Debug)]
pub struct Published {
    slot: u32,
    answers: Vec<u32>,
}

/// A pool index an earlier instance published, read back from adopted maps: what it points
/// at and the name that answer set was published for.
#[derive(Clone, Debug)]
pub struct Adopted {
    pub published: Published,
    pub name: FoldedName,
}

/// `HOT_CUR`, `HOT_SLOTS` and `HOT_ANSWERS` mapped into the daemon, with their free lists
/// and the free pool indexes (entries of `HOT_CUR`).
pub struct Store {
    cur: MappedArray<u64>,
    slots: MappedArray<AnswerSet>,
    answers: MappedArray<Answer>,
    grace: GracePeriod,
    free_pools: FreeList,
    free_slots: FreeList,
    free_answers: FreeList,
    /// Grace periods waited for (diagnostics and tests).
    grace_periods: u64,
}

impl Store {
    /// Takes freshly created arrays: nothing is reachable, every pool index is free, slots
    /// and answers are reused after the first grace period.
    pub fn fresh(
        cur: MappedArray<u64>,
        slots: MappedArray<AnswerSet>,
        answers: MappedArray<Answer>,
    ) -> Result<Self, DatapathError> {
        let store = Self {
            grace: GracePeriod::new()?,
            free_pools: FreeList {
                free: (0..cur.entries()).rev().collect(),
                retired: Vec::new(),
            },
            free_slots: FreeList::all_retired(slots.entries()),
            free_answers: FreeList::all_retired(answers.entries()),
            cur,
            slots,
            answers,
            grace_periods: 0,
        };
        for pool in 0..store.cur.entries() {
            store.cur.store(pool, NO_SLOT);
        }
        Ok(store)
    }

    /// Takes arrays an earlier instance published in (and a running program may be
    /// reading): every pool index that points at a well-formed answer set stays published
    /// and is returned; one that points at anything else is pointed at nothing (the daemon
    /// answers it). Pool indexes neither published nor in `indexed` (pointed at by the name
    /// index), and slots and answers no published set refers to, are reused after a grace
    /// period.
    pub fn adopt(
        cur: MappedArray<u64>,
        slots: MappedArray<AnswerSet>,
        answers: MappedArray<Answer>,
        indexed: &HashSet<u32>,
    ) -> Result<(Self, BTreeMap<u32, Adopted>), DatapathError> {
        let mut used_slots = HashSet::new();
        let mut used_answers = HashSet::new();
        let mut adopted = BTreeMap::new();
        for pool in 0..cur.entries() {
            let slot = cur.load(pool);
            if slot == NO_SLOT {
                continue;
            }
            let set = u32::try_from(slot)
                .ok()
                .filter(|&s| s < slots.entries() && !used_slots.contains(&s))
                .map(|s| (s, slots.read(s)));
            let valid = set.as_ref().and_then(|(s, set)| {
                let n = set.n_variants as usize;
                let ids = set.answers.get(..n)?;
                let name = FoldedName {
                    len: usize::from(set.name_len),
                    words: set.name,
                };
                let fits = (1..=MAX_VARIANTS).contains(&n)
                    && set.pool == pool
                    && FoldedName::new(&name.octets().0) == Ok(name)
                    && ids
                        .iter()
                        .all(|&a| a < answers.entries() && !used_answers.contains(&a))
                    && ids.iter().collect::<HashSet<_>>().len() == n;
                fits.then(|| Adopted {
                    published: Published {
                        slot: *s,
                        answers: ids.to_vec(),
                    },
                    name,
                })
            });
            match valid {
                Some(a) => {
                    used_slots.insert(a.published.slot);
                    used_answers.extend(a.published.answers.iter().copied());
                    adopted.insert(pool, a);
                }
                None => cur.store(pool, NO_SLOT),
            }
        }
        let store = Self {
            grace: GracePeriod::new()?,
            free_pools: FreeList::retired(
                (0..cur.entries()).filter(|p| !adopted.contains_key(p) && !indexed.contains(p)),
            ),
            free_slots: FreeList::retired((0..slots.entries()).filter(|s| !used_slots.contains(s))),
            free_answers: FreeList::retired(
                (0..answers.entries()).filter(|a| !used_answers.contains(a)),
            ),
            cur,
            slots,
            answers,
            grace_periods: 0,
        };
        Ok((store, adopted))
    }

    /// Pool indexes, answer sets and answers the arrays hold.
    pub fn entries(&self) -> (u32, u32, u32) {
        (
            self.cur.entries(),
            self.slots.entries(),
            self.answers.entries(),
        )
    }

    /// Grace periods waited for so far.
    pub fn grace_periods(&self) -> u64 {
        self.grace_periods
    }

    /// Writes an answer set and its answers into free entries for pool `index` (not yet
    /// reachable: no reader can see them before [`Self::point`] publishes the slot).
    pub fn write_set(&mut self, index: u32, mut e: EncodedSet) -> Result<Published, DatapathError> {
        let needed = e.answers.len();
        if self.free_slots.free.is_empty() || self.free_answers.free.len() < needed {
            self.reclaim()?;
        }
        let full = DatapathError::AnswersFull {
            needed,
            free: self.free_answers.free.len(),
            capacity: self.answers.entries(),
        };
        if self.free_answers.free.len() < needed {
            return Err(full);
        }
        let Some(slot) = self.free_slots.free.pop() else {
            return Err(full);
        };
        let at = self.free_answers.free.len() - needed;
        let answer_ids: Vec<u32> = self.free_answers.free.drain(at..).collect();
        for (&id, answer) in answer_ids.iter().zip(&e.answers) {
            self.answers.write(id, answer);
        }
        e.set.pool = index;
        e.set.answers[..needed].copy_from_slice(&answer_ids);
        self.slots.write(slot, &e.set);
        Ok(Published {
            slot,
            answers: answer_ids,
        })
    }

    /// Points pool `index` at `published` (or at nothing: the daemon answers) with one
    /// release store.
    pub fn point(&self, index: u32, published: Option<&Published>) {
        self.cur
            .store(index, published.map_or(NO_SLOT, |p| u64::from(p.slot)));
    }

    /// Stops answering a pool index from the kernel and retires what it pointed at.
    pub fn unpublish(&mut self, index: u32, published: Option<Published>) {
        self.point(index, None);
        self.retire(published);
    }

    /// Frees `published` after the next grace period (no longer reachable from
    /// `HOT_CUR`, but a reader that started earlier may hold it).
    pub fn retire(&mut self, published: Option<Published>) {
        if let Some(p) = published {
            self.free_slots.retired.push(p.slot);
            self.free_answers.retired.extend(p.answers);
        }
    }

    /// Pool indexes free now or after a grace period.
    pub fn pools_available(&self) -> usize {
        self.free_pools.available()
    }

    /// A pool index nothing points at (waiting for a grace period if only retired ones are
    /// left); `None` when there is none.
    pub fn take_pool(&mut self) -> Result<Option<u32>, DatapathError> {
        if self.free_pools.free.is_empty() {
            self.reclaim()?;
        }
        Ok(self.free_pools.free.pop())
    }

    /// Gives back a pool index no name points at any more (and that points at nothing):
    /// reused after the next grace period, since a reader may have found it in the index
    /// just before.
    pub fn retire_pool(&mut self, index: u32) {
        self.free_pools.retired.push(index);
    }

    /// Waits for a grace period (every program run that started before has finished), and
    /// frees everything retired before it.
    pub fn wait_grace(&mut self) -> Result<(), DatapathError> {
        self.grace.wait()?;
        self.grace_periods += 1;
        for list in [
            &mut self.free_pools,
            &mut self.free_slots,
            &mut self.free_answers,
        ] {
            let retired = std::mem::take(&mut list.retired);
            // Lowest first: `retired` is kept highest first.
            list.free.extend(retired);
        }
        Ok(())
    }

    /// Waits for a grace period, then frees everything retired before it; nothing when
    /// nothing is retired.
    fn reclaim(&mut self) -> Result<(), DatapathError> {
        let lists = [&self.free_pools, &self.free_slots, &self.free_answers];
        if lists.iter().all(|l| l.retired.is_empty()) {
            return Ok(());
        }
        self.wait_grace()
    }

    /// The answer set and answers pool `index` points at, as the kernel reads them.
    pub fn read(&self, index: u32) -> Option<(AnswerSet, Vec<Answer>)> {
        if index >= self.cur.entries() {
            return None;
        }
        let slot = self.cur.load(index);
        if slot == NO_SLOT {
            return None;
        }
        let set = self.slots.read(u32::try_from(slot).ok()?);
        let n = (set.n_variants as usize).min(MAX_VARIANTS);
        let answers = set.answers[..n]
            .iter()
            .map(|&a| self.answers.read(a))
            .collect();
        Some((set, answers))
    }
}
