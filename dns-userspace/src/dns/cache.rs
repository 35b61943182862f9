//! The UDP workers' answer cache: response bytes of [`Authority::response`], reused for the
//! same question.
//!
//! Only *plain* queries are cached: the shape the XDP path answers (checked with the same
//! [`dns_common::query`] functions: QD=1, AN=NS=0, at most one plain OPT record, the message
//! length fixing where the question ends), class IN, any type. The key is the folded
//! question name, the type and class, and the EDNS shape that decides the response bytes:
//! no OPT, or an OPT with its DO bit and the size limit [`dns_common::size::max_reply`]
//! gives it (which decides truncation); and whether the response is a truncated slip.
//!
//! A hit copies the saved response and sets what [`Authority::response`] takes from the
//! query: the ID, RD and CD, and the question octets as the client sent them (its 0x20
//! case; every other occurrence of the query name in a response is a compression pointer
//! to the question). The result is byte for byte what the full path answers
//! (`tests.rs` checks this over many queries).
//!
//! A response is saved only if it answers this exact question (the full path read the
//! question where the layout says it is) and does not [vary](crate::dns::authority::Response::varies)
//! per query. Saved responses are dropped as a whole when the authority's
//! [answer generation](Authority::answer_generation) moves (a pool's answer changed, or a
//! reload replaced the zones and pools) or the worker is given another authority.
//!
//! Bounded: a fixed number of entries in 4-way sets (the hash picks the set; a full set
//! replaces its least used entry and halves the others' use counts), each at most one UDP
//! response (≤ 4096 octets). A name is saved only on its second miss within a short
//! while (a doorkeeper remembers the last miss per slot), so a random-subdomain flood of
//! names never asked twice does not churn out the names that are.

use std::sync::{Arc, atomic::AtomicU64};

use dns_common::{
    Outcome,
    name::{HashKey, fold_word, hash_finish, hash_start, hash_word},
    query::{
        HEADER_LEN, Layout, MAX_QUERY_LEN, MIN_QUERY_LEN, OPT_LEN, check_header, check_question,
        layout, parse_opt,
    },
};

use crate::dns::authority::{AnswerGeneration, Authority, Response, ResponseKind};

/// Entries per set.
const WAYS: usize = 4;
/// Octets before the name in a key: size limit (2), flags (1), type (2), class (2), and one
/// zero so the name starts at a word (only the name's words are folded).
const KEY_PREFIX: usize = 8;
/// Longest key: the prefix and a 255-octet name, rounded up to whole words.
const KEY_MAX: usize = (KEY_PREFIX + dns_common::MAX_NAME_LEN).next_multiple_of(8);

/// Flags octet of a key.
const HAS_OPT: u8 = 1;
const DNSSEC_OK: u8 = 2;
const TRUNCATED: u8 = 4;

/// RD in the third header octet, CD in the fourth: what the full path copies from a query.
const RD: u8 = 0x01;
const CD: u8 = 0x10;

/// A plain query: its layout and what decides its response besides the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    layout: Layout,
    /// The OPT record's DO bit and size, when there is one.
    opt: Option<dns_common::query::Opt>,
}

impl Plain {
    /// Classifies `msg` with the kernel's checks: `None` for anything that is not a plain
    /// query of class IN (those take the full path every time).
    pub fn classify(msg: &[u8]) -> Option<Self> {
        if !(MIN_QUERY_LEN..=MAX_QUERY_LEN).contains(&msg.len()) {
            return None;
        }
        let header: &[u8; HEADER_LEN] = msg.get(..HEADER_LEN)?.try_into().ok()?;
        let additional = check_header(header).ok()?;
        let layout = layout(msg.len(), if additional { OPT_LEN } else { 0 }).ok()?;
        let at = layout.qtype_offset();
        let type_class: [u8; 4] = msg.get(at..at + 4)?.try_into().ok()?;
        match check_question(msg[at - 1], type_class) {
            // Any type is cached; the kernel's own list of types does not matter here.
            Ok(_) | Err(Outcome::Qtype) => {}
            Err(_) => return None,
        }
        let opt = match layout.opt {
            Some(at) => Some(parse_opt(msg.get(at..at + OPT_LEN)?.try_into().ok()?).ok()?),
            None => None,
        };
        Some(Self { layout, opt })
    }

    /// Where the question ends (type and class included).
    pub fn question_end(&self) -> usize {
        self.layout.question_end()
    }

    /// The query type.
    pub fn qtype(&self, msg: &[u8]) -> u16 {
        let at = self.layout.qtype_offset();
        u16::from_be_bytes([msg[at], msg[at + 1]])
    }
}

/// A cache key, built in place (no allocation).
pub struct Key {
    bytes: [u8; KEY_MAX],
    len: usize,
    hash: u64,
}

impl Key {
    pub fn new() -> Self {
        Self {
            bytes: [0; KEY_MAX],
            len: 0,
            hash: 0,
        }
    }

    /// The key of plain query `msg` from a server advertising `ours`; `truncated` for its
    /// slip.
    pub fn build(&mut self, msg: &[u8], plain: &Plain, ours: u16, truncated: bool, key: &HashKey) {
        let limit = dns_common::size::max_reply(plain.opt.map(|o| o.udp_size), ours) as u16;
        let mut flags = 0;
        if let Some(opt) = plain.opt {
            flags |= HAS_OPT;
            if opt.dnssec_ok {
                flags |= DNSSEC_OK;
            }
        }
        if truncated {
            flags |= TRUNCATED;
        }
        let at = plain.layout.qtype_offset();
        self.bytes[..2].copy_from_slice(&limit.to_be_bytes());
        self.bytes[2] = flags;
        self.bytes[3..7].copy_from_slice(&msg[at..at + 4]);
        self.bytes[7] = 0;
        let name = &msg[HEADER_LEN..at];
        self.len = KEY_PREFIX + name.len();
        self.bytes[KEY_PREFIX..self.len].copy_from_slice(name);
        let words = self.len.div_ceil(8);
        self.bytes[self.len..words * 8].fill(0);
        let mut h = hash_start(key, self.len);
        for (i, chunk) in self.bytes[..words * 8].chunks_exact_mut(8).enumerate() {
            let mut word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if i > 0 {
                // The name's words; the prefix is numbers, not letters.
                word = fold_word(word);
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            h = hash_word(h, word);
        }
        self.hash = hash_finish(key, h);
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for Key {
    fn default() -> Self {
        Self::new()
    }
}

/// What the server counts a response by, saved with it.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Counter slots ([`crate::dns::stats::rcode_slot`], [`crate::dns::stats::qtype_slot`]).
    pub rcode: u8,
    pub qtype: u8,
    pub kind: ResponseKind,
    /// The worker's answer counter of the pool that answered.
    pub pool: Option<Arc<AtomicU64>>,
}

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    response: Box<[u8]>,
    tally: Tally,
    uses: u32,
}

/// A worker's cache.
pub struct AnswerCache {
    sets: Vec<[Option<Entry>; WAYS]>,
    /// The last missed key hash per doorkeeper slot.
    doorkeeper: Vec<u64>,
    /// The authority the entries came from, and its generation when they did.
    source: Option<(Arc<Authority>, AnswerGeneration)>,
    key: HashKey,
}

impl AnswerCache {
    /// A cache of about `entries` responses (rounded up to a power of two sets of 4);
    /// 0 disables it.
    pub fn new(entries: usize) -> Self {
        let sets = if entries == 0 {
            0
        } else {
            entries.div_ceil(WAYS).next_power_of_two()
        };
        Self {
            sets: (0..sets).map(|_| Default::default()).collect(),
            doorkeeper: vec![0; sets * WAYS],
            source: None,
            key: HashKey {
                k0: rand::random(),
                k1: rand::random(),
            },
        }
    }

    /// The key that hashes this cache's keys.
    pub fn hash_key(&self) -> &HashKey {
        &self.key
    }

    /// Whether the cache holds anything at all.
    pub fn enabled(&self) -> bool {
        !self.sets.is_empty()
    }

    /// Makes the entries valid for `authority` as it is now: drops them all if they came
    /// from another authority or an older generation. Call before answering anything from
    /// the cache (once per batch). Returns the generation the entries are valid for.
    pub fn validate(&mut self, authority: &Arc<Authority>) -> AnswerGeneration {
        let generation = authority.answer_generation();
        let current = self
            .source
            .as_ref()
            .is_some_and(|(a, g)| Arc::ptr_eq(a, authority) && *g == generation);
        if !current {
            self.clear();
            self.source = Some((authority.clone(), generation));
        }
        generation
    }

    fn clear(&mut self) {
        for set in &mut self.sets {
            *set = Default::default();
        }
        self.doorkeeper.fill(0);
    }

    fn set_of(&self, hash: u64) -> usize {
        (hash as usize) & (self.sets.len() - 1)
    }

    /// Answers `msg` from the cache into `out`: the saved response with the query's ID,
    /// RD, CD and question octets. Returns its length and tally, or None on a miss.
    pub fn answer(&mut self, key: &Key, msg: &[u8], out: &mut [u8]) -> Option<(usize, &Tally)> {
        if !self.enabled() {
            return None;
        }
        let set = self.set_of(key.hash);
        let entry = self.sets[set]
            .iter_mut()
            .flatten()
            .find(|e| e.hash == key.hash && *e.key == *key.bytes())?;
        entry.uses = entry.uses.saturating_add(1);
        let len = entry.response.len();
        let dst = out.get_mut(..len)?;
        dst.copy_from_slice(&entry.response);
        // The question octets start after the header and end with type and class.
        let question_end = HEADER_LEN + key.len - KEY_PREFIX + 4;
        dst[..2].copy_from_slice(&msg[..2]);
        dst[2] = (dst[2] & !RD) | (msg[2] & RD);
        dst[3] = (dst[3] & !CD) | (msg[3] & CD);
        dst[HEADER_LEN..question_end].copy_from_slice(&msg[HEADER_LEN..question_end]);
        Some((len, &entry.tally))
    }

    /// Offers `response`, the full path's answer to plain query `msg` (under `key`), for
    /// saving. Saved when it answers exactly this question, does not vary, and its key
    /// missed before (the doorkeeper).
    pub fn offer(
        &mut self,
        key: &Key,
        msg: &[u8],
        plain: &Plain,
        response: &Response,
        tally: &Tally,
    ) {
        if !self.enabled() || response.varies {
            return;
        }
        let end = plain.question_end();
        let same_question = response.bytes.len() >= end
            && response.bytes[4..6] == [0, 1]
            && response.bytes[HEADER_LEN..end] == msg[HEADER_LEN..end];
        if !same_question {
            return;
        }
        let door = (key.hash >> 32) as usize & (self.doorkeeper.len() - 1);
        if self.doorkeeper[door] != key.hash {
            self.doorkeeper[door] = key.hash;
            return;
        }
        self.doorkeeper[door] = 0;
        let set = self.set_of(key.hash);
        let ways = &mut self.sets[set];
        let slot = match ways.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let least = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.as_ref().map_or(0, |e| e.uses))
                    .map_or(0, |(i, _)| i);
                for e in ways.iter_mut().flatten() {
                    e.uses /= 2;
                }
                least
            }
        };
        ways[slot] = Some(Entry {
            hash: key.hash,
            key: key.bytes().into(),
            response: response.bytes.as_slice().into(),
            tally: tally.clone(),
            uses: 0,
        });
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.sets.iter().flatten().flatten().count()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }
}
