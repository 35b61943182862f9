//! hotpool's XDP program: answers DNS queries for hot-pool names straight from BPF maps.
//!
//! ```text
//! frame ──► parse   (eth, one 802.1Q tag, IPv4/IPv6, UDP to our port and address)
//!       ──► dns     (header, layout → question, plain OPT; name hashed 8 octets at a time)
//!       ──► lookup  (HOT_INDEX bucket → HOT_CUR → answer set, name confirmed, variant picked)
//!       ──► reply   (grow at the tail or into the headroom, write answer and OPT, header,
//!                    incremental checksums, swap addresses)
//!       ──► XDP_TX
//! ```
//! Everything else is `XDP_PASS`ed unchanged to the kernel stack and the daemon; every
//! outcome is counted in `STATS`. Until the frame is grown, nothing in it has been written,
//! so every earlier failure passes it up untouched.
#![no_std]
#![no_main]

mod dns;
mod lookup;
mod packet;
mod parse;
mod reply;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use dns_common::{Answer, AnswerSet, Bucket, HOT_MAP_FLAGS, MAX_LISTEN_ADDRS, Outcome, XdpConfig};

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

#[xdp]
pub fn hotpool(ctx: XdpContext) -> u32 {
    let (outcome, action) = match try_hotpool(&ctx) {
        Ok(answered) => (answered, xdp_action::XDP_TX),
        Err(Outcome::Aborted) => (Outcome::Aborted, xdp_action::XDP_ABORTED),
        Err(reason) => (reason, xdp_action::XDP_PASS),
    };
    count(outcome);
    action
}

#[inline(always)]
fn count(outcome: Outcome) {
    if let Some(c) = STATS.get_ptr_mut(outcome as u32) {
        // SAFETY: per-CPU slot, no other writer; the pointer is valid for the program's run.
        unsafe { *c += 1 };
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
    let query = dns::query(&pkt, &frame, &cfg.key)?;
    let found = lookup::answer(&pkt, cfg, &query)?;
    reply::respond(&mut pkt, cfg, &frame, &query, &found)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
