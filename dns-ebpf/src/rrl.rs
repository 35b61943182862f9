//! Response rate limiting of hits ([`dns_common::rrl`], the daemon's bucket arithmetic and
//! take-over rule): the client network's slot of the `RRL_SLOTS` array, chosen by a keyed
//! hash (an inline array lookup, no helper call), taken over with a fresh bucket when
//! another network holds it; networks in `RRL_EXEMPT` never limited (that trie is only
//! looked up when it holds networks). Only hits get here (misses go to the daemon, which
//! limits its own answers).
//!
//! The bucket is updated without a lock: two CPUs answering the same network at the same
//! instant may both read one state and one update is lost (one answer more than the rate,
//! once in a while). A network's queries usually arrive on one receive queue (RSS hashes the
//! addresses and ports), and a lock per hit would cost more than the error it prevents. Two
//! networks taking one slot over at the same instant may leave a key mixed of both: it
//! matches neither, so the next answer to either takes the slot over again.

use aya_ebpf::maps::lpm_trie::Key;
use dns_common::{
    CFG_RRL_EXEMPT, RRL_ENTRIES, XdpConfig,
    rrl::{RrlKey, RrlParams, Verdict, slot_index},
};

use crate::{RRL_EXEMPT, RRL_SLOTS, accept::Client, clock::Clock, lookup::once};

/// The layout of `Key<[u8; 16]>` (prefix length, then the address), aligned: `Key` is
/// packed, and LLVM writes a packed key with stack stores the verifier rejects as
/// misaligned.
#[repr(C, align(8))]
struct ExemptKey {
    prefix_len: u32,
    /// The address as native words: written with aligned word stores.
    addr: [u32; 4],
}

/// Whether the client is inside one of the exempt networks.
#[inline(always)]
fn exempt(client: &Client) -> bool {
    let key = ExemptKey {
        prefix_len: 128,
        addr: client.words,
    };
    // SAFETY: `Key<[u8; 16]>` is `repr(C, packed)` with the same fields in the same order,
    // so any address holds one; the kernel reads its 20 octets.
    let key = unsafe { &*(&key as *const ExemptKey as *const Key<[u8; 16]>) };
    RRL_EXEMPT.get(key).is_some()
}

#[inline(always)]
pub fn limit(cfg: &XdpConfig, client: &Client, clock: &mut Clock) -> Verdict {
    let params: RrlParams = once(&cfg.rrl);
    if !params.enabled() {
        return Verdict::Pass;
    }
    if cfg.flags & CFG_RRL_EXEMPT != 0 && exempt(client) {
        return Verdict::Pass;
    }
    let prefix = once(&cfg.rrl_prefix);
    // Words on the stack: built, masked, hashed and compared in registers.
    let key = RrlKey::client_words(client.words, prefix[0], prefix[1]);
    let hash_key = once(&cfg.key);
    let Some(slot) = RRL_SLOTS.get_ptr_mut(slot_index(key.hash(&hash_key), RRL_ENTRIES - 1)) else {
        return Verdict::Pass;
    };
    let now = clock.now();
    // SAFETY: a valid map value pointer for the program's run (see above on races).
    unsafe { (*slot).account(&key, now, &params) }
}
