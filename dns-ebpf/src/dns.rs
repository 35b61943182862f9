//! The DNS query: header checks, the question's layout from the message length, the plain
//! OPT record, and the name's hash (8 octets at a time, straight from the packet).

use dns_common::{
    Outcome, csum,
    name::{self, HashKey, NAME_WORDS},
    query::{self, HEADER_LEN, Layout, OPT_LEN, Opt, QTYPE_QCLASS_LEN},
};

use crate::{
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
    /// The plain OPT record, if any, and the checksum sum of its octets (as if at an even
    /// offset).
    pub opt: Option<Opt>,
    pub opt_sum: u16,
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
    let layout = query::layout(frame.udp_len.saturating_sub(UDP_HLEN), additional)?;

    let (opt, opt_sum) = match layout.opt {
        Some(at) => {
            let octets: &[u8; OPT_LEN] = pkt.view(dns + at).ok_or(Outcome::Malformed)?;
            let opt = query::parse_opt(octets)?;
            (Some(opt), csum::sum_octets(octets))
        }
        None => (None, 0),
    };

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
        hash,
        name_sum,
    })
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
