//! DNS query validation. The message is copied into the per-CPU scratch buffer with one
//! `bpf_xdp_load_bytes` call and parsed there: fixed-size buffer, masked offsets, no
//! variable packet pointers for the verifier to track.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use dns_common::{
    CLASS_IN, MAX_NAME_LEN, Outcome, be16,
    name::{self, NameError},
    qtype,
};

use crate::{
    Scratch,
    parse::{DNS_HLEN, Frame},
};

/// Offset of the DNS message in `Scratch::out` (after the UDP header).
pub const MSG: usize = 8;
/// Offset of the question name in `Scratch::out`.
pub const QNAME: usize = MSG + DNS_HLEN;
/// Size of a plain OPT record: root owner, type, class, TTL, RDLEN 0.
pub const OPT_LEN: usize = 11;
/// Longest message answered: header, a 255-octet name, qtype/qclass and an OPT record.
pub const MAX_QUERY_LEN: usize = DNS_HLEN + MAX_NAME_LEN + 4 + OPT_LEN;

/// What the response needs to know about a valid query.
pub struct Query {
    /// Wire length of the question name (root octet included).
    pub name_len: usize,
    /// The query had an OPT record (then the reply carries one).
    pub edns: bool,
    /// DO bit of the query's OPT record.
    pub dnssec_ok: bool,
    /// Largest UDP response the client accepts.
    pub max_udp: usize,
}

/// `b[i]`, with the index masked so the access is provably in bounds (a no-op for the
/// offsets used here, which stay below 300).
#[inline(always)]
pub fn at(b: &[u8; crate::OUT_LEN], i: usize) -> u8 {
    b[i & (crate::OUT_LEN - 1)]
}

/// The network-order u16 at `b[off..off + 2]`, bounds-masked like [`at`].
#[inline(always)]
fn be16_at(b: &[u8; crate::OUT_LEN], off: usize) -> u16 {
    be16([at(b, off), at(b, off + 1)])
}

/// Round-trips `v` through scratch memory so the verifier forgets which loop iteration it
/// came from: the label walk exits at up to 128 places, each with its own exact range for
/// the length, and without this every one of them would be verified through the rest of the
/// program separately. The caller re-establishes the bounds it needs.
#[inline(always)]
fn launder(s: &mut Scratch, v: usize) -> usize {
    unsafe {
        core::ptr::write_volatile(&mut s.spill, v as u64);
        core::ptr::read_volatile(&s.spill) as usize
    }
}

#[inline(always)]
pub fn query(ctx: &XdpContext, frame: &Frame, s: &mut Scratch) -> Result<Query, Outcome> {
    let dns_off = frame.l4 + 8;
    let hdr: *const [u8; DNS_HLEN] = crate::parse::ptr_at(ctx, dns_off, Outcome::Malformed)?;
    let hdr = unsafe { &*hdr };
    // QR=0, opcode QUERY, TC=0 (AA is meaningless in a query and ignored).
    if hdr[2] & 0xfa != 0 {
        return Err(Outcome::NotQuery);
    }
    let (qd, an, ns, ar) = (
        be16([hdr[4], hdr[5]]),
        be16([hdr[6], hdr[7]]),
        be16([hdr[8], hdr[9]]),
        be16([hdr[10], hdr[11]]),
    );
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return Err(Outcome::NotQuery);
    }

    let msg_len = frame.udp_len - 8;
    if msg_len < DNS_HLEN + 1 + 4 {
        return Err(Outcome::Malformed);
    }
    if msg_len > MAX_QUERY_LEN {
        // Too long for a question and a plain OPT: EDNS options (cookies, ECS, ...) or junk.
        return Err(if ar == 1 {
            Outcome::Edns
        } else {
            Outcome::Trailing
        });
    }
    let ret = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            dns_off as u32,
            s.out.as_mut_ptr().add(MSG).cast(),
            msg_len as u32,
        )
    };
    if ret != 0 {
        return Err(Outcome::Malformed);
    }

    let avail = msg_len - DNS_HLEN;
    let name_len = match name::name_len_at(&s.out, QNAME, avail) {
        Ok(len) => launder(s, len),
        Err(NameError::TooLong) | Err(NameError::BadLabel) => return Err(Outcome::BadName),
        Err(NameError::Truncated) => return Err(Outcome::Malformed),
    };
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(Outcome::BadName);
    }
    if avail < name_len + 4 {
        return Err(Outcome::Malformed);
    }
    let q_end = QNAME + name_len;
    let qt = be16_at(&s.out, q_end);
    let qc = be16_at(&s.out, q_end + 2);
    if qc != CLASS_IN {
        return Err(Outcome::Qclass);
    }
    if qt != qtype::A && qt != qtype::AAAA && qt != qtype::CNAME {
        return Err(Outcome::Qtype);
    }

    let extra = avail - name_len - 4;
    let mut q = Query {
        name_len,
        edns: false,
        dnssec_ok: false,
        max_udp: dns_common::PLAIN_UDP_LIMIT,
    };
    if ar == 0 {
        if extra != 0 {
            return Err(Outcome::Trailing);
        }
    } else {
        // Exactly one OPT record with a root owner, EDNS version 0 and no options.
        let opt = q_end + 4;
        if extra != OPT_LEN
            || at(&s.out, opt) != 0
            || be16_at(&s.out, opt + 1) != qtype::OPT
            || at(&s.out, opt + 6) != 0
            || be16_at(&s.out, opt + 9) != 0
        {
            return Err(Outcome::Edns);
        }
        q.edns = true;
        q.dnssec_ok = at(&s.out, opt + 7) & 0x80 != 0;
        let size = be16_at(&s.out, opt + 3) as usize;
        if size > q.max_udp {
            q.max_udp = size;
        }
    }

    // Key: the name copied with one helper call into a zeroed buffer, then folded in place
    // (no loop whose trip count depends on the name).
    let mut i = 0;
    while i < s.key.name.len() {
        s.key.name[i] = 0;
        i += 1;
    }
    let ret = unsafe {
        bpf_probe_read_kernel(
            s.key.name.as_mut_ptr().cast(),
            name_len as u32,
            s.out.as_ptr().add(QNAME).cast(),
        )
    };
    if ret != 0 {
        return Err(Outcome::Aborted);
    }
    name::fold_in_place(&mut s.key.name);
    s.key.qtype = qt.to_be_bytes();
    Ok(q)
}
