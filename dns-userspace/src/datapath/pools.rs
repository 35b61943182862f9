//! The current answer of every pool: one table read by both answer paths.
//!
//! The daemon's authoritative server reads [`PoolTable`] for every query at a pool name, and
//! [`crate::datapath::hot`] encodes the same [`PoolAnswer`]s into the kernel's hot map, so the XDP
//! path and the daemon always answer a pool name the same way.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use dns_common::MAX_ANSWER_RRS;

use crate::geo::RegionId;

/// Most records one answer of a pool of type `rtype` holds: one for a CNAME pool (a CNAME
/// is a singleton, RFC 2181 §10.1), [`MAX_ANSWER_RRS`] otherwise. The one place this rule
/// is written: the answers below, the steering policies and config validation use it.
pub fn answer_limit(rtype: RecordType) -> usize {
    if rtype == RecordType::CNAME {
        1
    } else {
        MAX_ANSWER_RRS
    }
}

/// What a pool answers right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolAnswer {
    /// The pool's owner name (fully qualified; compared case-insensitively).
    pub name: Name,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// TTL of the answer records.
    pub ttl: u32,
    /// The answer RRset's data, in answer order. One entry for a CNAME pool
    /// (a CNAME is a singleton, RFC 2181 §10.1). Empty means "no answer published": the
    /// daemon then answers NODATA (cannot happen with a validated config).
    pub rdata: Vec<RData>,
    /// How `rdata` is answered.
    pub selection: Selection,
    /// The region this answer is for ([`RegionId::DEFAULT`] for a pool that answers every
    /// client alike): a `geo` pool has one answer per region, see [`crate::geo`].
    pub region: RegionId,
}

/// How a pool's records are answered.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every record, in order.
    #[default]
    All,
    /// One record per query, record `i` with probability `weights[i] / sum` (the `weighted`
    /// policy). `thresholds` are [`thresholds`]`(weights)`, picked from with
    /// `dns_common::pick` here and in the kernel.
    WeightedOne {
        weights: Vec<u32>,
        thresholds: Vec<u32>,
    },
    /// SERVFAIL (all endpoints down with `all_down = "servfail"`); `rdata` is empty.
    Servfail,
}

impl Selection {
    /// Per-query choice in proportion to `weights` (one per record).
    pub fn weighted(weights: Vec<u32>) -> Self {
        let thresholds = thresholds(&weights);
        Self::WeightedOne {
            weights,
            thresholds,
        }
    }
}

impl PoolAnswer {
    /// The answer `rdata` answered as `selection`. An answer of every record keeps at most
    /// [`answer_limit`] of them: a CNAME pool answers its first.
    pub fn new(
        name: Name,
        rtype: RecordType,
        ttl: u32,
        mut rdata: Vec<RData>,
        selection: Selection,
    ) -> Self {
        if selection == Selection::All {
            rdata.truncate(answer_limit(rtype));
        }
        Self {
            name,
            rtype,
            ttl,
            rdata,
            selection,
            region: RegionId::DEFAULT,
        }
    }

    /// This answer, for clients of `region`.
    pub fn in_region(mut self, region: RegionId) -> Self {
        self.region = region;
        self
    }

    /// Whether a query of `qtype` at the pool's name is answered with the pool's records.
    ///
    /// An A/AAAA pool answers its own type (and ANY, minimally, RFC 8482). A CNAME pool
    /// answers every type with the CNAME (RFC 1034 §3.6.2), which the XDP path does for
    /// A, AAAA and CNAME queries.
    pub fn answers(&self, qtype: RecordType) -> bool {
        qtype == self.rtype || qtype == RecordType::ANY || self.rtype == RecordType::CNAME
    }

    /// The answer records with `owner` as their name (pass the query's name to keep the
    /// client's case, as the XDP path does through its compression pointer). With
    /// [`Selection::WeightedOne`] a random record, drawn per call with the kernel's rule.
    pub fn records(&self, owner: &Name) -> Vec<Record> {
        match &self.selection {
            Selection::All => self.rdata.iter().map(|d| self.record(owner, d)).collect(),
            Selection::WeightedOne { thresholds, .. } => {
                let i = dns_common::pick(thresholds, rand::random::<u32>());
                self.rdata
                    .get(i)
                    .map(|d| vec![self.record(owner, d)])
                    .unwrap_or_default()
            }
            Selection::Servfail => Vec::new(),
        }
    }

    /// Every record the pool may answer with (all of them for a weighted pool).
    pub fn all_records(&self, owner: &Name) -> Vec<Record> {
        self.rdata.iter().map(|d| self.record(owner, d)).collect()
    }

    /// One record of this pool (its TTL, class IN) with `owner` as its name.
    pub(crate) fn record(&self, owner: &Name, rdata: &RData) -> Record {
        let mut r = Record::from_rdata(owner.clone(), self.ttl, rdata.clone());
        r.dns_class = DNSClass::IN;
        r
    }

    /// The pool answers SERVFAIL.
    pub fn servfail(&self) -> bool {
        self.selection == Selection::Servfail
    }

    /// The records answered differ from query to query (a weighted pick).
    pub fn varies(&self) -> bool {
        matches!(self.selection, Selection::WeightedOne { .. })
    }
}

/// Cumulative thresholds over the u32 range for `weights` (last = `u32::MAX`), so that
/// `rand < thresholds[i]` picks `i` with probability `weight_i / total`: entry `i` is
/// `⌊cumulative_weight_i × 2³² / total⌋`, saturated at `u32::MAX`. At most
/// [`MAX_ANSWER_RRS`] entries: weights past the eighth are ignored.
///
/// With all weights zero (or none given) every entry gets an equal share. A zero weight
/// gets no share, except that a zero-weight *last* entry receives `rand == u32::MAX` (one
/// value in 2³²) under the kernel's "else last" rule; the steering policies never
/// produce zero weights in an answer.
pub fn thresholds(weights: &[u32]) -> Vec<u32> {
    let weights = &weights[..weights.len().min(MAX_ANSWER_RRS)];
    let equal = weights.iter().all(|&w| w == 0);
    let weight = |w: u32| if equal { 1u64 } else { u64::from(w) };
    let total: u64 = weights.iter().map(|&w| weight(w)).sum();
    let mut cumulative = 0u64;
    let mut out: Vec<u32> = weights
        .iter()
        .map(|&w| {
            cumulative += weight(w);
            let t = (u128::from(cumulative) << 32) / u128::from(total.max(1));
            u32::try_from(t).unwrap_or(u32::MAX)
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last = u32::MAX;
    }
    out
}

/// All pools' current answers, swapped atomically as a whole or per pool.
///
/// The names (and the index of every ancestor of one) are one snapshot, replaced when the
/// set of names changes; each pool's answer is a slot of its own in it, so rewriting one
/// answer costs the same with 10 000 pools as with one. Reads take no lock; writes are
/// serialized by a lock of the table's own.
#[derive(Debug, Default)]
pub struct PoolTable {
    inner: ArcSwap<Snapshot>,
    write: Mutex<()>,
    /// Bumped after every change (see [`PoolTable::generation`]).
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Snapshot {
    /// (Name, region) → slot in `answers`.
    index: HashMap<(LowerName, RegionId), usize>,
    answers: Vec<ArcSwap<PoolAnswer>>,
    /// The names with an answer for a region other than the default one: they answer by
    /// region.
    geo: HashSet<LowerName>,
    /// Every pool name and every ancestor of one: answers "is there a pool at or below this
    /// name" (empty non-terminals, RFC 8020) in O(1) on the NXDOMAIN path, which a
    /// random-subdomain flood hits on every query.
    at_or_below: HashSet<LowerName>,
}

impl Snapshot {
    fn new(pools: Vec<Arc<PoolAnswer>>) -> Self {
        let mut index = HashMap::with_capacity(pools.len());
        let mut answers = Vec::with_capacity(pools.len());
        let mut geo = HashSet::new();
        for answer in pools {
            if answer.region != RegionId::DEFAULT {
                geo.insert(LowerName::new(&answer.name));
            }
            match index.entry((LowerName::new(&answer.name), answer.region)) {
                Entry::Occupied(e) => answers[*e.get()] = ArcSwap::new(answer),
                Entry::Vacant(e) => {
                    e.insert(answers.len());
                    answers.push(ArcSwap::new(answer));
                }
            }
        }
        let mut at_or_below = HashSet::new();
        for (name, _) in index.keys() {
            let mut n = Name::from(name.clone());
            loop {
                if !at_or_below.insert(LowerName::new(&n)) || n.is_root() {
                    break;
                }
                n = n.base_name();
            }
        }
        Self {
            index,
            answers,
            geo,
            at_or_below,
        }
    }
}

impl PoolTable {
    pub fn new(answers: impl IntoIterator<Item = PoolAnswer>) -> Self {
        let table = Self::default();
        table.replace_all(answers);
        table
    }

    /// The pool at exactly `name`, if any: its default region's answer.
    pub fn get(&self, name: &LowerName) -> Option<Arc<PoolAnswer>> {
        self.get_in(name, RegionId::DEFAULT)
    }

    /// The answer of the pool at exactly `name` for clients of `region`: the region's own,
    /// else the pool's default region's.
    pub fn get_in(&self, name: &LowerName, region: RegionId) -> Option<Arc<PoolAnswer>> {
        let snapshot = self.inner.load();
        let slot = match snapshot.index.get(&(name.clone(), region)) {
            Some(&slot) => slot,
            None => *snapshot.index.get(&(name.clone(), RegionId::DEFAULT))?,
        };
        Some(snapshot.answers[slot].load_full())
    }

    /// Whether the pool at `name` answers by region (it has an answer for a region other
    /// than the default one).
    pub fn is_geo(&self, name: &LowerName) -> bool {
        self.inner.load().geo.contains(name)
    }

    /// Whether any pool is at `name` or below it (used for empty non-terminals).
    pub fn has_at_or_below(&self, name: &LowerName) -> bool {
        self.inner.load().at_or_below.contains(name)
    }

    /// Counts the changes of the table: bumped *after* each change is visible, so whoever
    /// reads generation `g` and then the table sees at least the answers of `g` (responses
    /// saved under `g` are stale once the generation moves on).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces one pool's answer for its region (inserting it if new: that rebuilds the
    /// name index).
    pub fn set(&self, answer: PoolAnswer) {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let key = (LowerName::new(&answer.name), answer.region);
        let answer = Arc::new(answer);
        let snapshot = self.inner.load();
        if let Some(&slot) = snapshot.index.get(&key) {
            snapshot.answers[slot].store(answer);
        } else {
            let mut pools: Vec<Arc<PoolAnswer>> =
                snapshot.answers.iter().map(ArcSwap::load_full).collect();
            pools.push(answer);
            self.inner.store(Arc::new(Snapshot::new(pools)));
        }
        // After the store on either path: a cache that saw this generation sees the answer.
        self.bump();
    }

    /// Replaces the whole table.
    pub fn replace_all(&self, answers: impl IntoIterator<Item = PoolAnswer>) {
        let _write = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let pools = answers.into_iter().map(Arc::new).collect();
        self.inner.store(Arc::new(Snapshot::new(pools)));
        self.bump();
    }

    /// Snapshot of every pool's answers (one per region a pool answers).
    pub fn all(&self) -> Vec<Arc<PoolAnswer>> {
        self.inner
            .load()
            .answers
            .iter()
            .map(ArcSwap::load_full)
            .collect()
    }
}

/// A pool answering every record of `rdata`, TTL 30 (for tests).
#[cfg(test)]
pub(crate) fn test_pool(name: &str, rtype: RecordType, rdata: Vec<RData>) -> PoolAnswer {
    use std::str::FromStr;
    PoolAnswer {
        name: Name::from_str(name).unwrap(),
        rtype,
        ttl: 30,
        rdata,
        selection: Selection::All,
        region: crate::geo::RegionId::DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, str::FromStr};

    use hickory_proto::rr::rdata::{A, CNAME};

    use dns_common::pick;

    use super::*;

    use super::test_pool as pool;

    #[test]
    fn lookup_is_case_insensitive_and_set_replaces() {
        let t = PoolTable::new([pool(
            "www.example.test.",
            RecordType::A,
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))],
        )]);
        let q = LowerName::from(Name::from_str("WWW.Example.TEST.").unwrap());
        assert_eq!(t.get(&q).unwrap().rdata.len(), 1);
        let before = t.generation();
        t.set(pool(
            "www.example.test.",
            RecordType::A,
            vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 2))),
                RData::A(A(Ipv4Addr::new(192, 0, 2, 3))),
            ],
        ));
        assert_eq!(t.get(&q).unwrap().rdata.len(), 2);
        assert_eq!(t.all().len(), 1);
        // Every change moves the generation on.
        assert!(t.generation() > before);
        let before = t.generation();
        t.replace_all([]);
        assert!(t.generation() > before);
    }

    #[test]
    fn each_pool_has_its_own_slot_and_adding_one_keeps_the_others() {
        let a = |n: u8| vec![RData::A(A(Ipv4Addr::new(192, 0, 2, n)))];
        let name = |s: &str| LowerName::from(Name::from_str(s).unwrap());
        let t = PoolTable::new([
            pool("one.example.test.", RecordType::A, a(1)),
            pool("two.example.test.", RecordType::A, a(2)),
        ]);
        let before = t.generation();
        t.set(pool("one.example.test.", RecordType::A, a(11)));
        assert!(t.generation() > before, "a slot rewritten in place");
        assert_eq!(t.get(&name("one.example.test.")).unwrap().rdata, a(11));
        assert_eq!(t.get(&name("two.example.test.")).unwrap().rdata, a(2));
        // A new name rebuilds the index with every current answer.
        let before = t.generation();
        t.set(pool("three.example.test.", RecordType::A, a(3)));
        assert!(t.generation() > before, "a new name");
        assert_eq!(t.get(&name("one.example.test.")).unwrap().rdata, a(11));
        assert_eq!(t.get(&name("three.example.test.")).unwrap().rdata, a(3));
        assert_eq!(t.all().len(), 3);
        assert!(t.get(&name("four.example.test.")).is_none());
    }

    #[test]
    fn which_qtypes_a_pool_answers() {
        let a = pool("a.example.test.", RecordType::A, vec![]);
        assert!(a.answers(RecordType::A));
        assert!(a.answers(RecordType::ANY));
        assert!(!a.answers(RecordType::AAAA));
        assert!(!a.answers(RecordType::MX));
        let c = pool(
            "c.example.test.",
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(
                Name::from_str("cdn.example.net.").unwrap(),
            ))],
        );
        for t in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::CNAME,
            RecordType::MX,
        ] {
            assert!(c.answers(t), "{t}");
        }
    }

    #[test]
    fn records_use_the_given_owner() {
        let a = pool(
            "a.example.test.",
            RecordType::A,
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))],
        );
        let owner = Name::from_ascii("A.Example.Test.").unwrap();
        let recs = a.records(&owner);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].name.to_string(), "A.Example.Test.");
        assert_eq!(recs[0].ttl, 30);
        assert_eq!(recs[0].record_type(), RecordType::A);
    }

    #[test]
    fn answers_per_region_fall_back_to_the_default() {
        let a = |n: u8| vec![RData::A(A(Ipv4Addr::new(192, 0, 2, n)))];
        let name = |s: &str| LowerName::from(Name::from_str(s).unwrap());
        let (eu, us) = (RegionId(1), RegionId(2));
        let t = PoolTable::new([
            pool("geo.example.test.", RecordType::A, a(1)),
            pool("geo.example.test.", RecordType::A, a(2)).in_region(eu),
            pool("plain.example.test.", RecordType::A, a(3)),
        ]);
        let geo = name("GEO.example.test.");
        assert!(t.is_geo(&geo));
        assert!(!t.is_geo(&name("plain.example.test.")));
        assert_eq!(t.get(&geo).unwrap().rdata, a(1));
        assert_eq!(t.get_in(&geo, eu).unwrap().rdata, a(2));
        assert_eq!(
            t.get_in(&geo, us).unwrap().rdata,
            a(1),
            "no answer of its own"
        );
        assert_eq!(
            t.get_in(&name("plain.example.test."), eu).unwrap().rdata,
            a(3)
        );
        assert_eq!(t.all().len(), 3);
        // Each (name, region) is its own slot.
        t.set(pool("geo.example.test.", RecordType::A, a(9)).in_region(eu));
        assert_eq!(t.get_in(&geo, eu).unwrap().rdata, a(9));
        assert_eq!(t.get(&geo).unwrap().rdata, a(1));
        t.set(pool("geo.example.test.", RecordType::A, a(7)).in_region(us));
        assert_eq!(t.get_in(&geo, us).unwrap().rdata, a(7));
        assert_eq!(t.all().len(), 4);
        assert!(t.has_at_or_below(&geo));
    }

    #[test]
    fn has_at_or_below_finds_empty_non_terminals() {
        let t = PoolTable::new([pool("x.y.example.test.", RecordType::A, vec![])]);
        let ent = LowerName::from(Name::from_str("y.example.test.").unwrap());
        assert!(t.has_at_or_below(&ent));
        let other = LowerName::from(Name::from_str("z.example.test.").unwrap());
        assert!(!t.has_at_or_below(&other));
        let exact = LowerName::from(Name::from_str("X.Y.example.test.").unwrap());
        assert!(t.has_at_or_below(&exact));
        let below = LowerName::from(Name::from_str("w.x.y.example.test.").unwrap());
        assert!(!t.has_at_or_below(&below));
        // Adding a pool by `set` extends the index; replacing one keeps it.
        t.set(pool("a.b.example.test.", RecordType::A, vec![]));
        assert!(t.has_at_or_below(&LowerName::from(Name::from_str("b.example.test.").unwrap())));
        t.set(pool("a.b.example.test.", RecordType::A, vec![]));
        assert!(t.has_at_or_below(&ent));
    }

    #[test]
    fn thresholds_split_the_range_in_proportion() {
        let t = thresholds(&[1, 3]);
        assert_eq!(t.len(), 2);
        assert!(t[0].abs_diff(u32::MAX / 4) <= 1, "{t:?}");
        assert_eq!(t[1], u32::MAX);

        // Sample r evenly over the whole range: the counts are the exact proportions.
        let mut counts = [0u32; 2];
        for k in 0..1u32 << 20 {
            counts[pick(&t, k << 12)] += 1;
        }
        assert_eq!(counts, [1 << 18, 3 << 18]);

        let t = thresholds(&[1, 2, 0, 1]);
        let mut counts = [0u32; 4];
        for k in 0..1u32 << 20 {
            counts[pick(&t, (k << 12) | 0xfff)] += 1;
        }
        let n = 1u32 << 20;
        assert!(counts[0].abs_diff(n / 4) <= 1, "{counts:?}");
        assert!(counts[1].abs_diff(n / 2) <= 1, "{counts:?}");
        assert_eq!(counts[2], 0, "weight 0 is never picked");
        assert!(counts[3].abs_diff(n / 4) <= 1, "{counts:?}");

        let t = thresholds(&[1, 1, 1]);
        let mut counts = [0u32; 3];
        for k in 0..3u32 << 18 {
            // 3 × 2^18 evenly spaced points.
            let r = ((u64::from(k) << 32) / (3u64 << 18)) as u32;
            counts[pick(&t, r)] += 1;
        }
        assert_eq!(counts, [1 << 18; 3]);
    }

    #[test]
    fn thresholds_edge_cases() {
        assert_eq!(thresholds(&[]), Vec::<u32>::new());
        assert_eq!(pick(&[], 12345), 0);
        assert_eq!(thresholds(&[7]), vec![u32::MAX]);
        assert_eq!(pick(&[u32::MAX], u32::MAX), 0);
        assert_eq!(
            thresholds(&[0, 0]),
            vec![1 << 31, u32::MAX],
            "all zero: equal"
        );
        assert_eq!(thresholds(&[1; 12]).len(), MAX_ANSWER_RRS);
        let t = thresholds(&[u32::MAX; 8]);
        assert_eq!(t[0], 1 << 29);
        assert_eq!(t[3], 1 << 31);
        assert_eq!(pick(&t, u32::MAX), 7);
        assert_eq!(pick(&t, 0), 0);
        assert_eq!(pick(&t, (1 << 29) - 1), 0);
        assert_eq!(pick(&t, 1 << 29), 1);
    }
}
