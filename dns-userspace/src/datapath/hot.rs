//! The kernel's view of the pools: encoding [`PoolAnswer`]s into hot-map entries and
//! publishing them without torn reads (see `dns_common::maps` for the protocol).

use std::collections::{BTreeMap, HashMap as HashMap_, HashSet};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use dns_common::{
    AnswerSlot, CFG_ANY_V4, CFG_ANY_V6, CFG_ENABLED, HotKey, HotRef, MAP_CONFIG, MAP_HOT_GEN,
    MAP_HOT_NAMES, MAP_HOT_SLOTS, MAP_LISTEN_ADDRS, MAP_STATS, MAX_ANSWER_LEN, MAX_ANSWER_RRS,
    MAX_POOLS, MAX_VARIANTS, Outcome, Variant, XdpConfig, slot_index, v4_mapped,
};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
    serialize::binary::{BinEncodable, BinEncoder},
};

use crate::datapath::{
    DatapathError,
    pools::{PoolAnswer, Selection},
};

/// Encodes a pool's answer RRs the way the XDP path appends them after the echoed question:
/// owner names compress to the question (`0xC00C`), so the bytes are valid whatever case the
/// client used. Encoded with hickory-proto as the answer section of a message whose
/// question is the pool's name, then cut out of it.
pub fn encode_variant(answer: &PoolAnswer) -> Result<Variant, DatapathError> {
    encode_rrs(answer, &answer.rdata)
}

/// Encodes `rdata` (some of the pool's records) as one kernel answer variant.
fn encode_rrs(answer: &PoolAnswer, rdata: &[RData]) -> Result<Variant, DatapathError> {
    let pool = || answer.name.to_string();
    if rdata.is_empty() {
        return Err(DatapathError::NoRecords { pool: pool() });
    }
    if rdata.len() > MAX_ANSWER_RRS {
        return Err(DatapathError::TooManyRecords {
            pool: pool(),
            count: rdata.len(),
        });
    }
    let name = answer.name.to_lowercase();
    let mut msg = Message::query();
    msg.add_query(Query::query(name.clone(), answer.rtype));
    msg.add_answers(rdata.iter().map(|d| answer.record(&name, d)));
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    let encoding = |source| DatapathError::Encode {
        pool: pool(),
        source: Box::new(source),
    };
    msg.emit(&mut enc).map_err(encoding)?;

    let qname_len = name.to_bytes().map_err(encoding)?.len();
    let start = 12 + qname_len + 4;
    let rrs = buf.get(start..).ok_or_else(|| DatapathError::Unexpected {
        pool: pool(),
        problem: "is too short",
    })?;
    if !rrs.starts_with(&[0xc0, 0x0c]) {
        return Err(DatapathError::Unexpected {
            pool: pool(),
            problem: "does not point at the question",
        });
    }
    if rrs.len() > MAX_ANSWER_LEN {
        return Err(DatapathError::AnswerTooLong {
            pool: pool(),
            len: rrs.len(),
        });
    }
    let mut v = Variant::empty();
    v.ancount = (rdata.len() as u16).to_be_bytes();
    v.len = rrs.len() as u16;
    v.bytes[..rrs.len()].copy_from_slice(rrs);
    Ok(v)
}

/// The kernel slot for a pool's answer (generation left 0): one variant with every record,
/// one variant per record with the weighted thresholds, or no variant for SERVFAIL (the
/// kernel passes the query and the daemon answers SERVFAIL).
pub fn encode_slot(answer: &PoolAnswer) -> Result<AnswerSlot, DatapathError> {
    let mut slot = AnswerSlot::empty();
    match &answer.selection {
        Selection::All => {
            slot.n_variants = 1;
            slot.thresholds[0] = u32::MAX;
            slot.variants[0] = encode_variant(answer)?;
        }
        Selection::WeightedOne { thresholds, .. } => {
            if answer.rdata.len() != thresholds.len() || answer.rdata.len() > MAX_VARIANTS {
                return Err(DatapathError::Weights {
                    pool: answer.name.to_string(),
                    records: answer.rdata.len(),
                    thresholds: thresholds.len(),
                });
            }
            slot.n_variants = answer.rdata.len() as u32;
            for (i, rdata) in answer.rdata.iter().enumerate() {
                slot.variants[i] = encode_rrs(answer, std::slice::from_ref(rdata))?;
                slot.thresholds[i] = thresholds[i];
            }
        }
        Selection::Servfail => {}
    }
    Ok(slot)
}

/// The query types answered from the kernel for a pool of `rtype`.
pub fn hot_qtypes(rtype: RecordType) -> &'static [RecordType] {
    match rtype {
        RecordType::A => &[RecordType::A],
        RecordType::AAAA => &[RecordType::AAAA],
        // A CNAME answers A, AAAA and CNAME queries alike (RFC 1034 §3.6.2).
        RecordType::CNAME => &[RecordType::A, RecordType::AAAA, RecordType::CNAME],
        _ => &[],
    }
}

/// The hot-map key for a pool name and query type.
pub fn hot_key(name: &Name, qtype: RecordType) -> Result<HotKey, DatapathError> {
    let invalid = || DatapathError::InvalidName(name.to_string());
    let wire = name.to_lowercase().to_bytes().map_err(|_| invalid())?;
    HotKey::new(&wire, u16::from(qtype)).ok_or_else(invalid)
}

/// Settings of the XDP path written to its config map.
#[derive(Clone, Debug)]
pub struct DatapathSettings {
    pub port: u16,
    pub edns_udp_size: u16,
    /// Addresses the XDP path answers for; an unspecified address (0.0.0.0 / ::) means any
    /// address of that family.
    pub listen: Vec<std::net::IpAddr>,
}

/// Handles to the program's maps (taken from a loaded `aya::Ebpf`).
pub struct HotMaps {
    names: HashMap<MapData, HotKey, HotRef>,
    gens: Array<MapData, u64>,
    slots: Array<MapData, AnswerSlot>,
    config: Array<MapData, XdpConfig>,
    listen: HashMap<MapData, [u8; 16], u8>,
    stats: PerCpuArray<MapData, u64>,
    /// Pool name → index, as last synced.
    index: BTreeMap<Name, u32>,
}

impl HotMaps {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, DatapathError> {
        fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
            ebpf: &mut aya::Ebpf,
            name: &'static str,
        ) -> Result<T, DatapathError> {
            let map = ebpf.take_map(name).ok_or(DatapathError::NoMap(name))?;
            T::try_from(map).map_err(DatapathError::map(format!("map {name}")))
        }
        Ok(Self {
            names: take(ebpf, MAP_HOT_NAMES)?,
            gens: take(ebpf, MAP_HOT_GEN)?,
            slots: take(ebpf, MAP_HOT_SLOTS)?,
            config: take(ebpf, MAP_CONFIG)?,
            listen: take(ebpf, MAP_LISTEN_ADDRS)?,
            stats: take(ebpf, MAP_STATS)?,
            index: BTreeMap::new(),
        })
    }

    /// Enables or disables the XDP path and writes its settings.
    pub fn configure(&mut self, s: &DatapathSettings, enabled: bool) -> Result<(), DatapathError> {
        let mut flags = if enabled { CFG_ENABLED } else { 0 };
        let mut wanted = HashSet::new();
        for ip in &s.listen {
            match ip {
                std::net::IpAddr::V4(a) if a.is_unspecified() => flags |= CFG_ANY_V4,
                std::net::IpAddr::V6(a) if a.is_unspecified() => flags |= CFG_ANY_V6,
                std::net::IpAddr::V4(a) => {
                    wanted.insert(v4_mapped(a.octets()));
                }
                std::net::IpAddr::V6(a) => {
                    wanted.insert(a.octets());
                }
            }
        }
        // Disable first, so no packet sees a half-written address set.
        if !enabled {
            self.write_config(s, flags)?;
        }
        for a in &wanted {
            self.listen
                .insert(a, 1, 0)
                .map_err(DatapathError::map("writing LISTEN_ADDRS"))?;
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
                .map_err(DatapathError::map("pruning LISTEN_ADDRS"))?;
        }
        self.write_config(s, flags)
    }

    fn write_config(&mut self, s: &DatapathSettings, flags: u32) -> Result<(), DatapathError> {
        let cfg = XdpConfig {
            port: s.port.to_be_bytes(),
            edns_udp_size: s.edns_udp_size.to_be_bytes(),
            flags,
        };
        self.config
            .set(0, cfg, 0)
            .map_err(DatapathError::map("writing CONFIG"))
    }

    /// Makes the kernel answer exactly `pools`, without a moment in which a name points at
    /// another pool's answer and without disabling the XDP path:
    ///
    /// * a pool whose names already point at one index, and only they do, keeps it (a
    ///   restarted daemon finds the previous instance's indexes in the pinned map, a reload
    ///   its own); its answer is republished there (one generation flip);
    /// * a new pool (or one whose type changed) gets an index no name points at, its answer
    ///   is written there first and its names inserted after;
    /// * names no longer configured are removed last (first only when that is what frees
    ///   the indexes new pools need).
    pub fn sync(&mut self, pools: &[PoolAnswer]) -> Result<(), DatapathError> {
        if pools.len() > MAX_POOLS as usize {
            return Err(DatapathError::TooManyPools { count: pools.len() });
        }
        let mut wanted: Vec<(&PoolAnswer, HashSet<HotKey>)> = Vec::with_capacity(pools.len());
        for pool in pools {
            let keys = hot_qtypes(pool.rtype)
                .iter()
                .map(|&qtype| hot_key(&pool.name, qtype))
                .collect::<Result<HashSet<_>, _>>()?;
            wanted.push((pool, keys));
        }
        let all_keys: HashSet<HotKey> = wanted.iter().flat_map(|(_, k)| k).copied().collect();
        let current = self.current_names();
        let indexes = match assign_indexes(&wanted, &current) {
            Some(indexes) => indexes,
            None => {
                // Not enough unused indexes while removed pools still hold theirs: remove
                // those names first (their queries go to the daemon, which already answers
                // the new configuration), then assign again.
                self.prune(&all_keys)?;
                assign_indexes(&wanted, &self.current_names())
                    .ok_or(DatapathError::TooManyPools { count: pools.len() })?
            }
        };
        let mut index = BTreeMap::new();
        for ((pool, keys), &i) in wanted.iter().zip(&indexes) {
            self.publish_at(i, pool)?;
            for key in keys {
                if current.get(key) != Some(&i) {
                    self.names
                        .insert(*key, HotRef { pool: i, flags: 0 }, 0)
                        .map_err(DatapathError::map(format!(
                            "writing HOT_NAMES for {}",
                            pool.name
                        )))?;
                }
            }
            index.insert(pool.name.to_lowercase(), i);
        }
        self.prune(&all_keys)?;
        self.index = index;
        Ok(())
    }

    /// Every name in the kernel map and the index it points at.
    fn current_names(&self) -> HashMap_<HotKey, u32> {
        self.names
            .iter()
            .filter_map(Result::ok)
            .map(|(k, r)| (k, r.pool))
            .collect()
    }

    /// Removes every name not in `keep`.
    fn prune(&mut self, keep: &HashSet<HotKey>) -> Result<(), DatapathError> {
        let stale: Vec<HotKey> = self
            .names
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.contains(k))
            .collect();
        for k in stale {
            self.names
                .remove(&k)
                .map_err(DatapathError::map("pruning HOT_NAMES"))?;
        }
        Ok(())
    }

    /// Publishes a new answer for an already synced pool (the probe/selector path).
    pub fn publish(&mut self, answer: &PoolAnswer) -> Result<(), DatapathError> {
        let i = *self.index.get(&answer.name.to_lowercase()).ok_or_else(|| {
            DatapathError::NotPublished {
                pool: answer.name.to_string(),
            }
        })?;
        self.publish_at(i, answer)
    }

    /// Writes the slot readers are not using, then flips the generation.
    fn publish_at(&mut self, pool: u32, answer: &PoolAnswer) -> Result<(), DatapathError> {
        let slot = encode_slot(answer)?;
        let current = self
            .gens
            .get(&pool, 0)
            .map_err(DatapathError::map("reading HOT_GEN"))?;
        let next = current.wrapping_add(1);
        let slot = AnswerSlot {
            generation: next,
            ..slot
        };
        self.slots
            .set(slot_index(pool, next), slot, 0)
            .map_err(DatapathError::map("writing HOT_SLOTS"))?;
        self.gens
            .set(pool, next, 0)
            .map_err(DatapathError::map("writing HOT_GEN"))
    }

    /// Counter totals (summed over CPUs), indexed by [`Outcome`].
    pub fn stats(&self) -> Result<Vec<(Outcome, u64)>, DatapathError> {
        Outcome::ALL
            .iter()
            .map(|&o| {
                let per_cpu = self
                    .stats
                    .get(&(o as u32), 0)
                    .map_err(DatapathError::map("reading STATS"))?;
                Ok((o, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The answer currently published for `name` (None when not a hot name).
    pub fn published(&self, name: &Name) -> Result<Option<Variant>, DatapathError> {
        let Some(&i) = self.index.get(&name.to_lowercase()) else {
            return Ok(None);
        };
        let g = self
            .gens
            .get(&i, 0)
            .map_err(DatapathError::map("reading HOT_GEN"))?;
        let slot = self
            .slots
            .get(&slot_index(i, g), 0)
            .map_err(DatapathError::map("reading HOT_SLOTS"))?;
        Ok((slot.n_variants > 0).then_some(slot.variants[0]))
    }
}

/// An index for each of `wanted` (a pool and its names) given the names in the kernel now
/// (`current`: name → index): a pool keeps the index its names point at when exactly its
/// names point there; the others get indexes no name points at, lowest first. `None` when
/// there are not enough of those.
fn assign_indexes(
    wanted: &[(&PoolAnswer, HashSet<HotKey>)],
    current: &HashMap_<HotKey, u32>,
) -> Option<Vec<u32>> {
    let mut by_index: HashMap_<u32, HashSet<HotKey>> = HashMap_::new();
    for (key, &i) in current {
        by_index.entry(i).or_default().insert(*key);
    }
    let mut taken = HashSet::new();
    let mut out: Vec<Option<u32>> = wanted
        .iter()
        .map(|(_, keys)| {
            let i = *current.get(keys.iter().next()?)?;
            let keeps = by_index.get(&i) == Some(keys) && taken.insert(i);
            keeps.then_some(i)
        })
        .collect();
    let mut free = (0..MAX_POOLS).filter(|i| !by_index.contains_key(i) && !taken.contains(i));
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        *slot = Some(free.next()?);
    }
    out.into_iter().collect()
}

/// Counter totals from the stats map pinned in `pin_dir` by a running daemon.
pub fn read_pinned_stats(pin_dir: &std::path::Path) -> Result<Vec<(Outcome, u64)>, DatapathError> {
    let path = pin_dir.join(MAP_STATS);
    let data = MapData::from_pin(&path).map_err(DatapathError::map(format!(
        "opening {} (is the daemon running with XDP, and is this its pin_path?)",
        path.display()
    )))?;
    let stats: PerCpuArray<MapData, u64> = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
        .map_err(DatapathError::map(format!("map {MAP_STATS}")))?;
    Outcome::ALL
        .iter()
        .map(|&o| {
            let per_cpu = stats
                .get(&(o as u32), 0)
                .map_err(DatapathError::map("reading STATS"))?;
            Ok((o, per_cpu.iter().sum()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, str::FromStr};

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{
            RData,
            rdata::{A, AAAA, CNAME},
        },
        serialize::binary::BinDecodable,
    };

    use super::*;

    use crate::datapath::pools::test_pool as pool;

    /// Splices a variant behind a query's header and question, as the kernel does, and
    /// decodes the result with hickory-proto.
    fn splice(qname: &str, qtype: RecordType, v: &Variant) -> Message {
        let mut q = Message::query();
        q.metadata.id = 0x1234;
        q.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        let mut wire = q.to_bytes().unwrap();
        wire[2] = 0x84;
        wire[6..8].copy_from_slice(&v.ancount);
        wire.extend_from_slice(v.answer());
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
    fn hot_keys_per_type() {
        assert_eq!(hot_qtypes(RecordType::A), &[RecordType::A]);
        assert_eq!(hot_qtypes(RecordType::CNAME).len(), 3);
        let k = hot_key(
            &Name::from_ascii("WWW.example.test.").unwrap(),
            RecordType::AAAA,
        )
        .unwrap();
        assert_eq!(&k.name[..18], b"\x03www\x07example\x04test\x00");
        assert_eq!(k.qtype, [0, 28]);
    }
}
