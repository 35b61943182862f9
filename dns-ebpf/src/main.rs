//! hotpool's XDP program: answers DNS queries for hot-pool names straight from BPF maps.
//!
//! ```text
//! frame ──► parse::frame (eth, one 802.1Q tag, IPv4/IPv6, UDP to our port and address)
//!       ──► dns::query   (header, question, optional plain OPT; key = folded name + qtype)
//!       ──► HOT_NAMES ──► HOT_GEN/HOT_SLOTS (double-buffered answer, torn-read check)
//!       ──► respond      (build UDP segment in scratch, checksum, grow tail, swap headers)
//!       ──► XDP_TX
//! ```
//! Everything else is `XDP_PASS`ed unchanged to the kernel stack and the daemon; every
//! outcome is counted in `STATS`.
#![no_std]
#![no_main]

mod dns;
mod parse;
mod respond;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use dns_common::{
    AnswerSlot, HotKey, HotRef, MAX_HOT_NAMES, MAX_LISTEN_ADDRS, MAX_POOLS, Outcome, XdpConfig,
};

#[map]
static HOT_NAMES: HashMap<HotKey, HotRef> = HashMap::pinned(MAX_HOT_NAMES, 0);
#[map]
static HOT_GEN: Array<u64> = Array::pinned(MAX_POOLS, 0);
#[map]
static HOT_SLOTS: Array<AnswerSlot> = Array::pinned(2 * MAX_POOLS, 0);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(Outcome::COUNT, 0);
#[map]
static CONFIG: Array<XdpConfig> = Array::pinned(1, 0);
#[map]
static LISTEN_ADDRS: HashMap<[u8; 16], u8> = HashMap::pinned(MAX_LISTEN_ADDRS, 0);
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Size of the scratch buffer the UDP segment of the response is built in. A power of two
/// so offsets can be masked for the verifier; the largest segment is
/// 8 + 12 + 255 + 4 + 272 + 11 = 562 octets.
pub const OUT_LEN: usize = 1024;

/// Per-CPU working memory (the BPF stack is only 512 bytes).
#[repr(C)]
pub struct Scratch {
    pub key: HotKey,
    pub _pad: [u8; 6],
    /// See `dns::launder`.
    pub spill: u64,
    /// `out[0..8]` UDP header, `out[8..]` the DNS message: loaded from the query, then
    /// rewritten in place into the response.
    pub out: [u8; OUT_LEN],
}

#[xdp]
pub fn hotpool(ctx: XdpContext) -> u32 {
    let (outcome, action) = match try_hotpool(&ctx) {
        Ok(()) => (Outcome::Hit, xdp_action::XDP_TX),
        Err(Outcome::Aborted) => (Outcome::Aborted, xdp_action::XDP_ABORTED),
        Err(reason) => (reason, xdp_action::XDP_PASS),
    };
    count(outcome);
    action
}

#[inline(always)]
fn count(outcome: Outcome) {
    if let Some(c) = STATS.get_ptr_mut(outcome as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *c += 1 };
    }
}

/// `Ok` means the frame was rewritten into the response; `Err` says why it was not.
#[inline(always)]
fn try_hotpool(ctx: &XdpContext) -> Result<(), Outcome> {
    let cfg = match CONFIG.get(0) {
        Some(cfg) if cfg.flags & dns_common::CFG_ENABLED != 0 => *cfg,
        _ => return Err(Outcome::Disabled),
    };
    let frame = parse::frame(ctx, &cfg)?;
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Outcome::Aborted)?;
    // SAFETY: per-CPU map value, valid for the program's run, not shared.
    let scratch = unsafe { &mut *scratch };
    let query = dns::query(ctx, &frame, scratch)?;
    respond::respond(ctx, &cfg, &frame, &query, scratch)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
