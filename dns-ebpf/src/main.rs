//! hotpool's XDP program: answers DNS queries for hot-pool names straight from BPF maps.
//!
//! ```text
//! frame ──► parse   (eth, one 802.1Q tag, IPv4/IPv6, UDP to our port and address)
//!       ──► accept  (to the interface's own MAC; source address and port: dns_common::accept)
//!       ──► dns     (header, OPT at the end (plain, or one ECS option) → question layout;
//!                    name hashed 8 octets at a time)
//!       ──► lookup  (HOT_INDEX bucket → HOT_CUR → answer set, name confirmed; for a pool
//!                    answering by region: the client's address (or its ECS subnet) in
//!                    the per-CPU GEO_CACHE, else the GEO_A4/B4 (IPv4) or GEO_A/B trie → region → GEO_CUR →
//!                    the region's answer set; variant picked)
//!       ──► stale?  (only with `stale` set: the daemon's HEARTBEAT against the clock)
//!       ──► rrl     (only with [rrl] set: the client network's slot; drop, or slip: the
//!                    reply goes out truncated, TC=1 and no records)
//!       ──► reply   (grow at the tail or into the headroom, write answer and OPT, header,
//!                    incremental checksums, swap addresses)
//!       ──► XDP_TX
//! ```
//! Everything else is `XDP_PASS`ed unchanged to the kernel stack and the daemon (but for
//! the rate limiter's drops, `XDP_DROP`); every
//! outcome is counted in `STATS`, and every answer in its pool's `POOL_ANSWERS` entry.
//! Until the frame is grown, nothing in it has been written, so every earlier failure
//! passes it up untouched.
#![no_std]
#![no_main]

mod accept;
mod clock;
mod dns;
mod lookup;
mod packet;
mod parse;
mod reply;
mod rrl;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
    programs::XdpContext,
};
use dns_common::{
    Answer, AnswerSet, Bucket, CFG_STALE_PASS, GEO_CACHE_SLOTS, GeoCacheEntry, HOT_MAP_FLAGS,
    Iface, MAX_GEO_PREFIXES, MAX_IFACES, MAX_LISTEN_ADDRS, MAX_LOCAL_ADDRS, MAX_RRL_EXEMPT,
    Outcome, RRL_ENTRIES, XdpConfig,
    local::{IFACE_SLOTS as N_IFACE_SLOTS, IfaceSlot, LOCAL_SET_BUCKETS, LocalBucket},
    rrl::{Slot as RrlSlot, Verdict},
};

use crate::packet::Packet;

// The answer maps are sized by the daemon at load time (`EbpfLoader::set_max_entries`); the
// sizes here only matter for loaders that do not.
#[map]
static HOT_INDEX: Array<Bucket> = Array::pinned(1024, 0);
#[map]
static HOT_CUR: Array<u64> = Array::pinned(256, HOT_MAP_FLAGS);
#[map]
static HOT_SLOTS: Array<AnswerSet> = Array::pinned(512, HOT_MAP_FLAGS);
#[map]
static HOT_ANSWERS: Array<Answer> = Array::pinned(1024, HOT_MAP_FLAGS);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(Outcome::COUNT, 0);
#[map]
static CONFIG: Array<XdpConfig> = Array::pinned(1, 0);
#[map]
static LISTEN_ADDRS: HashMap<[u8; 16], u8> = HashMap::pinned(MAX_LISTEN_ADDRS, 0);
#[map]
static HEARTBEAT: Array<u64> = Array::pinned(1, 0);
#[map]
static POOL_ANSWERS: PerCpuArray<u64> = PerCpuArray::pinned(256, 0);
#[map]
static IFACES: HashMap<u32, Iface> = HashMap::pinned(MAX_IFACES, 0);
#[map]
static LOCAL_ADDRS: HashMap<[u8; 16], u8> = HashMap::pinned(MAX_LOCAL_ADDRS, 0);
/// `IFACES` direct-mapped (read inline); `IFACES` itself only for a slot that spilled.
#[map]
static IFACE_SLOTS: Array<IfaceSlot> = Array::pinned(N_IFACE_SLOTS, 0);
/// `LOCAL_ADDRS` as a hash set of buckets (read inline); `LOCAL_ADDRS` itself only for a
/// bucket that spilled.
#[map]
static LOCAL_SET: Array<LocalBucket> = Array::pinned(LOCAL_SET_BUCKETS, 0);
/// The rate limiter's buckets, one slot per keyed hash of a client network (read inline).
#[map]
static RRL_SLOTS: Array<RrlSlot> = Array::pinned(RRL_ENTRIES, 0);
#[map]
static RRL_EXEMPT: LpmTrie<[u8; 16], u8> = LpmTrie::pinned(MAX_RRL_EXEMPT, 0);
/// IPv6 client network → region and prefix length, two copies (`CONFIG.geo_gen` picks one);
/// only looked up for a pool that answers by region.
#[map]
static GEO_A: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_GEO_PREFIXES, 0);
#[map]
static GEO_B: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(MAX_GEO_PREFIXES, 0);
/// The same for IPv4 clients, with 4-octet keys.
#[map]
static GEO_A4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_GEO_PREFIXES, 0);
#[map]
static GEO_B4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(MAX_GEO_PREFIXES, 0);
/// (pool, region, side) → `HOT_CUR` index of the pool's answer for the region (sized by the
/// daemon at load time).
#[map]
static GEO_CUR: HashMap<u64, u32> = HashMap::pinned(512, 0);
/// Scratch space the query's OPT record passes through (see `dns::through_map`); not
/// pinned.
#[map]
static OPT_TAIL: PerCpuArray<dns_common::ecs::Tail> = PerCpuArray::with_max_entries(1, 0);
/// The regions of recently seen client addresses, per CPU, direct-mapped (see
/// `lookup::regional`); also the region trie's key. The program's own: not pinned.
#[map]
static GEO_CACHE: PerCpuArray<GeoCacheEntry> = PerCpuArray::with_max_entries(GEO_CACHE_SLOTS, 0);

#[xdp]
pub fn hotpool(ctx: XdpContext) -> u32 {
    let (outcome, action) = match try_hotpool(&ctx) {
        Ok(answered) => (answered, xdp_action::XDP_TX),
        Err(Outcome::Aborted) => (Outcome::Aborted, xdp_action::XDP_ABORTED),
        Err(Outcome::RrlDropped) => (Outcome::RrlDropped, xdp_action::XDP_DROP),
        Err(reason) => (reason, xdp_action::XDP_PASS),
    };
    count(outcome);
    action
}

#[inline(always)]
fn count(outcome: Outcome) {
    bump(&STATS, outcome as u32);
}

#[inline(always)]
fn bump(counters: &PerCpuArray<u64>, i: u32) {
    if let Some(c) = counters.get_ptr_mut(i) {
        // SAFETY: per-CPU slot, no other writer; the pointer is valid for the program's run.
        unsafe { *c += 1 };
    }
}

/// Whether the daemon's heartbeat is older than the configured staleness: `Ok(true)` to
/// answer anyway (`stale_hit`), `Err(Stale)` to pass. Only hits get here, and only with a
/// staleness set do they read the clock (see [`clock::Clock`]).
#[inline(always)]
fn stale(cfg: &XdpConfig, clock: &mut clock::Clock) -> Result<bool, Outcome> {
    let limit = lookup::once(&cfg.stale_ns);
    if limit == 0 {
        return Ok(false);
    }
    let beat = match HEARTBEAT.get_ptr(0) {
        // SAFETY: a valid map value pointer; the daemon rewrites the whole word.
        Some(b) => unsafe { core::ptr::read_volatile(b) },
        None => return Ok(false),
    };
    if !dns_common::is_stale(clock.now(), beat, limit) {
        Ok(false)
    } else if cfg.flags & CFG_STALE_PASS != 0 {
        Err(Outcome::Stale)
    } else {
        Ok(true)
    }
}

/// `Ok` is the hit outcome (the frame now holds the reply); `Err` says why it was passed.
#[inline(always)]
fn try_hotpool(ctx: &XdpContext) -> Result<Outcome, Outcome> {
    let cfg = match CONFIG.get(0) {
        Some(cfg) if cfg.flags & dns_common::CFG_ENABLED != 0 => cfg,
        _ => return Err(Outcome::Disabled),
    };
    let mut pkt = Packet::new(ctx);
    let frame = parse::frame(&pkt, cfg)?;
    let client = accept::check(ctx, &pkt, &frame)?;
    let query = dns::query(&pkt, &frame, &cfg.key)?;
    let found = lookup::answer(&pkt, cfg, &query, &client)?;
    let mut clock = clock::Clock::new();
    let stale = stale(cfg, &mut clock)?;
    let slip = match rrl::limit(cfg, &client, &mut clock) {
        Verdict::Pass => false,
        Verdict::Slip => true,
        Verdict::Drop => return Err(Outcome::RrlDropped),
    };
    let outcome = reply::respond(&mut pkt, cfg, &frame, &query, &found, slip)?;
    if slip {
        return Ok(Outcome::RrlSlipped);
    }
    bump(&POOL_ANSWERS, found.pool);
    Ok(if stale {
        Outcome::StaleHit
    } else if query.subnet.is_some() {
        Outcome::EcsHit
    } else {
        outcome
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
