//! Which answer a query gets: the index bucket, the pool's current answer set, the name
//! confirmed word by word, the query type checked; for a pool that answers by region the
//! client's region (its source address, or its ECS subnet; cached per CPU) and that
//! region's answer set;
//! one variant picked.

use aya_ebpf::{helpers::generated::bpf_get_prandom_u32, maps::lpm_trie::Key};
use dns_common::{
    Answer, AnswerSet, BUCKET_ENTRIES, GEO_NO_ANSWER, GeoCacheEntry, MAX_ANSWER_LEN, MAX_VARIANTS,
    MIN_ANSWER_LEN, Outcome, SET_GEO, V4_MAPPED_WORD, XdpConfig, address_words, bucket,
    geo_cache_slot, geo_key, geo_region,
    name::{self, NAME_WORDS},
    tag,
};

use crate::{
    GEO_A, GEO_A4, GEO_B, GEO_B4, GEO_CACHE, GEO_CUR, HOT_ANSWERS, HOT_CUR, HOT_INDEX, HOT_SLOTS,
    accept::Client, dns::Query, packet::Packet,
};

/// Keeps a word index inside `AnswerSet::name` for the verifier (a no-op: the index is at
/// most 31 already).
const NAME_WORD_MASK: usize = NAME_WORDS - 1;
/// Keeps a variant index inside `AnswerSet::answers` for the verifier (a no-op: the pick
/// returns less than `n_variants` ≤ 8).
const VARIANT_MASK: usize = MAX_VARIANTS - 1;

/// The answer for a query.
pub struct Found<'a> {
    pub answer: &'a Answer,
    /// `answer.len`, read once and checked (12..=272).
    pub len: usize,
    /// The pool's index (its `POOL_ANSWERS` entry).
    pub pool: u32,
    /// The ECS SCOPE PREFIX-LENGTH: the length of the client's region prefix for a pool
    /// that answers by region, 0 otherwise.
    pub scope: u8,
}

/// Reads a map value field exactly once. The verifier treats every load from a map as a
/// new unknown value, so a length checked after one load must not be loaded again for use
/// (LLVM may otherwise reload it, assuming memory unchanged).
#[inline(always)]
pub fn once<T: Copy>(field: &T) -> T {
    // SAFETY: a reference to a live map value field.
    unsafe { core::ptr::read_volatile(field) }
}

#[inline(always)]
pub fn answer<'a>(
    pkt: &Packet,
    cfg: &XdpConfig,
    q: &Query,
    client: &Client,
) -> Result<Found<'a>, Outcome> {
    let pool = pool(cfg, q.hash).ok_or(Outcome::Miss)?;
    let mut set = current(pool).ok_or(Outcome::NoAnswer)?;
    if !same_name(pkt, q, set) {
        return Err(Outcome::Collision);
    }
    if once(&set.qtypes) & q.qtype_bit == 0 {
        return Err(Outcome::Miss);
    }
    let mut scope = 0;
    if once(&set.flags) & SET_GEO != 0 {
        let (index, len) = regional(once(&cfg.geo_gen), pool, q, client);
        scope = len;
        if index != GEO_NO_ANSWER {
            set = current(index).ok_or(Outcome::NoAnswer)?;
        }
    }
    // Clamped rather than checked: a check LLVM folds into a range test (`n - 1 > 7`)
    // tells the verifier nothing about `n`, the clamp does.
    let n = (once(&set.n_variants) as usize).min(MAX_VARIANTS);
    if n == 0 {
        return Err(Outcome::NoAnswer);
    }
    let i = if n == 1 {
        0
    } else {
        // SAFETY: a helper without arguments.
        dns_common::pick(&set.thresholds[..n], unsafe { bpf_get_prandom_u32() })
    };
    let answer = HOT_ANSWERS
        .get(once(&set.answers[i & VARIANT_MASK]))
        .ok_or(Outcome::NoAnswer)?;
    let len = once(&answer.len) as usize;
    if !(MIN_ANSWER_LEN..=MAX_ANSWER_LEN).contains(&len) {
        return Err(Outcome::NoAnswer);
    }
    Ok(Found {
        answer,
        len,
        pool,
        scope,
    })
}

/// The `HOT_CUR` index of geo pool `pool`'s answer for the query's client (its ECS
/// subnet, else its source address; [`GEO_NO_ANSWER`]: the pool's own answer) and the
/// length of the region prefix that matched: from this CPU's region cache when it holds
/// the address and pool for generation `generation`, else from the region trie of the
/// address's family and the generation's side (its prefixes cover every address; a trie
/// not loaded yet answers the default region, scope 0) and `GEO_CUR`, which then fill the
/// cache entry.
#[inline(always)]
fn regional(generation: u32, pool: u32, q: &Query, client: &Client) -> (u32, u8) {
    let words = match &q.subnet {
        Some(s) => address_words(&s.trie_address()),
        None => client.words,
    };
    let Some(slot) = GEO_CACHE.get_ptr_mut(geo_cache_slot(&words, pool)) else {
        return (GEO_NO_ANSWER, 0);
    };
    // SAFETY: this CPU's entry, written by no one else while the program runs (the program
    // does not nest on one CPU).
    let entry = unsafe { &mut *slot };
    if entry.filled == 1
        && entry.generation == generation
        && entry.pool == pool
        && entry.addr == words
    {
        return (entry.index, entry.scope);
    }
    entry.filled = 0;
    entry.prefix_len = 128;
    entry.addr = words;
    let value = if words[0] == 0 && words[1] == 0 && words[2] == V4_MAPPED_WORD {
        let key = Key::new(32, words[3].to_ne_bytes());
        if generation & 1 == 0 {
            GEO_A4.get(&key)
        } else {
            GEO_B4.get(&key)
        }
    } else {
        // SAFETY: `GeoCacheEntry` starts with `Key<[u8; 16]>`'s fields in its order
        // (`repr(C, packed)`: a `u32` prefix length, then the address), at a higher
        // alignment.
        let key = unsafe { &*(slot as *const GeoCacheEntry as *const Key<[u8; 16]>) };
        if generation & 1 == 0 {
            GEO_A.get(key)
        } else {
            GEO_B.get(key)
        }
    };
    let (region, scope) = geo_region(value.copied().unwrap_or(0));
    // SAFETY: the value is copied out at once; the daemon replaces entries whole.
    let index = unsafe { GEO_CUR.get(&geo_key(pool, region, generation)) }
        .copied()
        .unwrap_or(GEO_NO_ANSWER);
    entry.generation = generation;
    entry.pool = pool;
    entry.index = index;
    entry.scope = scope;
    entry.filled = 1;
    (index, scope)
}

/// The pool of the first bucket entry whose tag matches (userspace keeps tags unique per
/// bucket).
#[inline(always)]
fn pool(cfg: &XdpConfig, hash: u64) -> Option<u32> {
    let b = HOT_INDEX.get(bucket(hash, cfg.index_mask))?;
    let t = tag(hash);
    let mut i = 0;
    while i < BUCKET_ENTRIES {
        if b.tags[i] == t {
            return Some(b.pools[i]);
        }
        i += 1;
    }
    None
}

/// The pool's current answer set. The index is read once; the set's address depends on it,
/// which orders the set's loads after it on every CPU (see `dns_common::maps`), and the set
/// stays unchanged until this program has finished (the writer waits a grace period).
#[inline(always)]
fn current<'a>(pool: u32) -> Option<&'a AnswerSet> {
    let cur = HOT_CUR.get_ptr(pool)?;
    // SAFETY: a valid map value pointer; volatile so the index is loaded exactly once.
    let slot = unsafe { core::ptr::read_volatile(cur) };
    if slot > u32::MAX as u64 {
        return None;
    }
    HOT_SLOTS.get(slot as u32)
}

/// The query's name, folded, equals the set's: same length, same words.
#[inline(always)]
fn same_name(pkt: &Packet, q: &Query, set: &AnswerSet) -> bool {
    // Read again rather than reused from the hash loop, whose exit fixed the word count
    // exactly: the verifier then continues from all its exits as one state.
    let len = once(&q.layout.name_len);
    if once(&set.name_len) as usize != len {
        return false;
    }
    let before_last = (len - 1) / 8;
    let mut i = 0;
    while i < NAME_WORDS - 1 {
        if i >= before_last {
            break;
        }
        match pkt.load::<u64>(q.name + 8 * i) {
            Some(w) if name::fold_word(w) == set.name[i & NAME_WORD_MASK] => {}
            _ => return false,
        }
        i += 1;
    }
    match pkt.load_ending::<u64>(q.name + len) {
        Some(w) => {
            name::fold_word(w >> name::last_word_shift(len))
                == set.name[before_last & NAME_WORD_MASK]
        }
        None => false,
    }
}
