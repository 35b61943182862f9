//! The DNS query: header checks, the OPT record at the message's end (plain, or with one
//! ECS option), the question's layout from the message length, and the name's hash (8
//! octets at a time, straight from the packet).

use dns_common::{
    Outcome, csum,
    ecs::{self, KernelSubnet, TAIL, Tail},
    name::{self, HashKey, NAME_WORDS},
    query::{self, HEADER_LEN, Layout, Opt, QTYPE_QCLASS_LEN},
};

use crate::{
    OPT_TAIL,
    lookup::once,
    packet::Packet,
    parse::{Frame, UDP_HLEN},
};

/// A query the XDP path may answer, and what the reply needs from it.
pub struct Query {
    /// Offsets of the question inside the message.
    pub layout: Layout,
    /// Offset of the question name in the frame.
    pub name: usize,
    /// The header's flags octets as received.
    pub flags: [u8; 2],
    /// [`dns_common::query::qtype_bit`] of the query type.
    pub qtype_bit: u8,
    /// The OPT record, if any, and the checksum sum of its octets (as if at an even
    /// offset).
    pub opt: Option<Opt>,
    pub opt_sum: u16,
    /// The OPT record's one ECS option (the kernel answers it: see `dns_common::ecs`).
    pub subnet: Option<&'static KernelSubnet>,
    /// Keyed hash of the folded name.
    pub hash: u64,
    /// Wide one's-complement sum of the name's octets ([`csum::add_wide`]), taken while
    /// hashing them: the reply's checksum needs it.
    pub name_sum: u64,
}

#[inline(always)]
pub fn query(pkt: &Packet, frame: &Frame, key: &HashKey) -> Result<Query, Outcome> {
    let dns = frame.dns();
    let header: &[u8; HEADER_LEN] = pkt.view(dns).ok_or(Outcome::Malformed)?;
    let additional = query::check_header(header)?;
    let flags = [header[2], header[3]];
    let msg_len = frame.udp_len.saturating_sub(UDP_HLEN);

    // The OPT record is the message's last: its length comes from the end.
    let (opt_len, opt, opt_sum, subnet) = if additional {
        let t: &[u8; TAIL] = pkt.view_ending(dns + msg_len).ok_or(Outcome::Malformed)?;
        let tail = opt_tail(t)?;
        let subnet = match &tail.subnet {
            Some(s) => Some(s),
            None => None,
        };
        (
            once(&tail.opt_len),
            Some(once(&tail.opt)),
            once(&tail.sum),
            subnet,
        )
    } else {
        (0, None, 0, None)
    };
    let layout = query::layout(msg_len, opt_len)?;

    let name = dns + HEADER_LEN;
    let len = layout.name_len;
    // The name's last octet and the type and class after it, in one view (a one-octet
    // bounds check compiles to a form the verifier draws no range from).
    let tail: &[u8; 1 + QTYPE_QCLASS_LEN] = pkt
        .view_ending(name + len + QTYPE_QCLASS_LEN)
        .ok_or(Outcome::Malformed)?;
    let qq = [tail[1], tail[2], tail[3], tail[4]];
    let qtype_bit = query::check_question(tail[0], qq)?;

    let (hash, name_sum) = hash_name(pkt, name, len, key).ok_or(Outcome::Malformed)?;
    Ok(Query {
        layout,
        name,
        flags,
        qtype_bit,
        opt,
        opt_sum,
        subnet,
        hash,
        name_sum,
    })
}

/// The query's OPT record, found at the message's end and written to a per-CPU scratch
/// slot: the kernel's stack is small, and the verifier knows nothing of what a map holds,
/// so the OPT record's shapes (each candidate length `locate_into` tried is a path of its
/// own) continue as one state rather than each through the rest of the program.
#[inline(always)]
fn opt_tail(t: &[u8; TAIL]) -> Result<&'static Tail, Outcome> {
    let slot = OPT_TAIL.get_ptr_mut(0).ok_or(Outcome::Malformed)?;
    // SAFETY: this CPU's slot, no other writer while the program runs; it lives as long as
    // the program's run.
    let tail = unsafe { &mut *slot };
    ecs::locate_into(t, tail)?;
    Ok(tail)
}

/// The keyed hash of the folded name of `len` octets at `name`, and the checksum sum of its
/// octets: whole words from the start, the last word as the 8 octets ending at the name's
/// end, shifted (see `dns_common::name`). The loop runs as many times as the name has
/// words, not 32.
#[inline(always)]
fn hash_name(pkt: &Packet, name: usize, len: usize, key: &HashKey) -> Option<(u64, u64)> {
    let before_last = (len - 1) / 8;
    let mut h = name::hash_start(key, len);
    let mut sum = 0u64;
    let mut i = 0;
    while i < NAME_WORDS - 1 {
        if i >= before_last {
            break;
        }
        let w: u64 = pkt.load(name + 8 * i)?;
        sum = csum::add_wide(sum, w);
        h = name::hash_word(h, name::fold_word(w));
        i += 1;
    }
    let w = pkt.load_ending::<u64>(name + len)? >> name::last_word_shift(len);
    sum = csum::add_wide(sum, w);
    h = name::hash_word(h, name::fold_word(w));
    Some((name::hash_finish(key, h), sum))
}
