//! EDNS Client Subnet (RFC 7871): one parser and one echo for both answer paths.
//!
//! The daemon hands [`parse_options`] the OPT record's RDATA of any query; the XDP program
//! hands [`locate`] the last [`TAIL`] octets of a query whose additional record is not a
//! plain OPT. Both classify the option with [`parse_option`] and [`kernel_pass`], so the
//! kernel answers exactly the queries the daemon would answer the same way, and both write
//! the echoed option with [`echo`] (the kernel through [`reply_opt`]).
//!
//! What a query's ECS option decides:
//!
//! * no ECS option: the client's source address picks the region; no option is echoed;
//! * one valid option ([`Ecs::Subnet`]): its ADDRESS (zero-padded) picks the region and
//!   the option is echoed with SCOPE PREFIX-LENGTH set to the length of the matched region
//!   prefix (0 for a pool that does not answer by region), RFC 7871 §7.2.1; with SOURCE
//!   PREFIX-LENGTH 0 the source address decides and SCOPE is 0 (§7.1.2);
//! * an invalid option ([`Ecs::FormErr`]): FORMERR (§6: unknown FAMILY, SOURCE longer than
//!   the address, too few or too many ADDRESS octets, ADDRESS bits set beyond SOURCE; and
//!   more than one ECS option).
//!
//! The kernel answers only the common shape ([`kernel_pass`] is `None`): the OPT holds this
//! one option and nothing else, FAMILY 1 with 0 < SOURCE ≤ 24 or FAMILY 2 with
//! 0 < SOURCE ≤ 56 (what RFC 7871 §11.1 recommends resolvers send), SCOPE 0. Everything
//! else with an ECS option is passed to the daemon, counted by its [`Pass`] reason (or as
//! `ecs_invalid` when the daemon answers FORMERR).

use crate::{Outcome, csum, qtype, query::Opt};

/// The option code of ECS (RFC 7871 §6).
pub const OPTION_CODE: u16 = 8;
/// FAMILY of IPv4 and IPv6 (IANA address family numbers).
pub const FAMILY_V4: u16 = 1;
pub const FAMILY_V6: u16 = 2;
/// Longest SOURCE PREFIX-LENGTH the kernel answers, IPv4 and IPv6 (RFC 7871 §11.1).
pub const KERNEL_SOURCE_V4: u8 = 24;
pub const KERNEL_SOURCE_V6: u8 = 56;
/// Most ADDRESS octets the kernel answers (⌈56 / 8⌉).
pub const KERNEL_ADDRESS_LEN: usize = 7;
/// The fixed part of the option: OPTION-CODE, OPTION-LENGTH, FAMILY, SOURCE, SCOPE.
pub const OPTION_HEADER_LEN: usize = 8;
/// An OPT record without RDATA: root owner, type, class, TTL, RDLENGTH.
pub const OPT_HEADER_LEN: usize = 11;
/// Octets at the end of a query the kernel classifies an ECS option from: an OPT record
/// holding one ECS option with a full IPv6 address.
pub const TAIL: usize = OPT_HEADER_LEN + OPTION_HEADER_LEN + 16;
/// Longest OPT record the kernel writes: the one ECS option with 7 address octets.
pub const MAX_REPLY_OPT_LEN: usize = OPT_HEADER_LEN + OPTION_HEADER_LEN + KERNEL_ADDRESS_LEN;
/// Longest echoed option (code and length included).
pub const MAX_OPTION_LEN: usize = OPTION_HEADER_LEN + 16;

/// A syntactically valid ECS option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u16,
    /// SOURCE PREFIX-LENGTH (at most 32 or 128).
    pub source: u8,
    /// SCOPE PREFIX-LENGTH as sent (queries must send 0).
    pub scope: u8,
    /// ADDRESS, zero-padded to 16 octets (4 used for IPv4); no bit set beyond `source`.
    pub address: [u8; 16],
}

impl Subnet {
    /// ADDRESS octets on the wire: ⌈source / 8⌉.
    pub const fn address_len(&self) -> usize {
        address_len(self.source)
    }

    pub const fn is_v6(&self) -> bool {
        self.family == FAMILY_V6
    }
}

/// An ECS option the kernel answers, compactly (the kernel's stack is small): FAMILY,
/// SOURCE (SCOPE is 0) and the first 8 ADDRESS octets (at most 7 are used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSubnet {
    pub address: [u8; 8],
    pub family: u16,
    pub source: u8,
}

impl KernelSubnet {
    /// The option's address zero-padded to IPv6 length, IPv4 as IPv4-mapped IPv6 (the key
    /// of the region trie).
    #[inline(always)]
    pub const fn trie_address(&self) -> [u8; 16] {
        let a = self.address;
        if self.family == FAMILY_V6 {
            [
                a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], 0, 0, 0, 0, 0, 0, 0, 0,
            ]
        } else {
            crate::v4_mapped([a[0], a[1], a[2], a[3]])
        }
    }
}

impl From<&Subnet> for KernelSubnet {
    fn from(s: &Subnet) -> Self {
        let a = s.address;
        Self {
            address: [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]],
            family: s.family,
            source: s.source,
        }
    }
}

/// ⌈source / 8⌉.
#[inline(always)]
pub const fn address_len(source: u8) -> usize {
    (source as usize).div_ceil(8)
}

/// Why the daemon answers FORMERR (RFC 7871 §6, §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormErr {
    /// OPTION-LENGTH below 4: no FAMILY, SOURCE and SCOPE.
    Short,
    /// FAMILY other than 1 (IPv4) or 2 (IPv6).
    Family,
    /// SOURCE longer than the family's addresses.
    Source,
    /// Too few or too many ADDRESS octets for SOURCE.
    Length,
    /// ADDRESS bits set beyond SOURCE.
    Bits,
    /// More than one ECS option.
    Several,
    /// The options do not add up to the RDATA's length.
    Options,
}

impl FormErr {
    pub const fn name(self) -> &'static str {
        match self {
            FormErr::Short => "option shorter than 4 octets",
            FormErr::Family => "unknown family",
            FormErr::Source => "source prefix longer than the address",
            FormErr::Length => "address length does not match the source prefix",
            FormErr::Bits => "address bits set beyond the source prefix",
            FormErr::Several => "more than one ECS option",
            FormErr::Options => "options overrun the OPT record",
        }
    }
}

/// Why the kernel passes a query with a valid ECS option to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// SOURCE PREFIX-LENGTH 0: the daemon answers by source address, SCOPE 0.
    SourceZero,
    /// SOURCE longer than /24 or /56: the daemon answers by ADDRESS.
    Long,
    /// SCOPE PREFIX-LENGTH not 0 in the query: the daemon answers by ADDRESS.
    Scope,
    /// Other options beside the ECS option.
    Options,
}

impl Pass {
    /// The kernel's outcome for it.
    pub const fn outcome(self) -> Outcome {
        match self {
            Pass::SourceZero => Outcome::EcsSourceZero,
            Pass::Long => Outcome::EcsLong,
            Pass::Scope => Outcome::EcsScope,
            Pass::Options => Outcome::EcsOptions,
        }
    }
}

/// What a query's OPT RDATA says about the client's subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ecs {
    /// No ECS option.
    None,
    /// One valid ECS option; `kernel` is why the kernel passes it (`None`: it answers).
    Subnet {
        subnet: Subnet,
        kernel: Option<Pass>,
    },
    /// The daemon answers FORMERR.
    FormErr(FormErr),
}

/// Parses the data of one ECS option (after OPTION-CODE and OPTION-LENGTH).
pub fn parse_option(data: &[u8]) -> Result<Subnet, FormErr> {
    if data.len() < 4 {
        return Err(FormErr::Short);
    }
    let family = crate::be16([data[0], data[1]]);
    let (source, scope) = (data[2], data[3]);
    let max = match family {
        FAMILY_V4 => 32,
        FAMILY_V6 => 128,
        _ => return Err(FormErr::Family),
    };
    if source > max {
        return Err(FormErr::Source);
    }
    let n = address_len(source);
    if data.len() != 4 + n {
        return Err(FormErr::Length);
    }
    let mut address = [0u8; 16];
    let mut i = 0;
    while i < n {
        address[i] = data[4 + i];
        i += 1;
    }
    if n > 0 && address[n - 1] & beyond_mask(source) != 0 {
        return Err(FormErr::Bits);
    }
    Ok(Subnet {
        family,
        source,
        scope,
        address,
    })
}

/// The bits of the last ADDRESS octet beyond a prefix of `source` bits.
#[inline(always)]
const fn beyond_mask(source: u8) -> u8 {
    match source % 8 {
        0 => 0,
        r => 0xff >> r,
    }
}

/// Why the kernel passes a valid option (`None`: the kernel answers it). `alone`: the OPT
/// holds no other option.
#[inline(always)]
pub const fn kernel_pass(s: &Subnet, alone: bool) -> Option<Pass> {
    let max = if s.family == FAMILY_V6 {
        KERNEL_SOURCE_V6
    } else {
        KERNEL_SOURCE_V4
    };
    if !alone {
        Some(Pass::Options)
    } else if s.source == 0 {
        Some(Pass::SourceZero)
    } else if s.scope != 0 {
        Some(Pass::Scope)
    } else if s.source > max {
        Some(Pass::Long)
    } else {
        None
    }
}

/// Classifies the ECS option(s) of an OPT record's RDATA (the daemon's path).
pub fn parse_options(rdata: &[u8]) -> Ecs {
    let (mut found, mut count, mut others) = (None, 0usize, false);
    let mut at = 0;
    while at < rdata.len() {
        if rdata.len() - at < 4 {
            return Ecs::FormErr(FormErr::Options);
        }
        let code = crate::be16([rdata[at], rdata[at + 1]]);
        let len = crate::be16([rdata[at + 2], rdata[at + 3]]) as usize;
        let data = match rdata.get(at + 4..at + 4 + len) {
            Some(d) => d,
            None => return Ecs::FormErr(FormErr::Options),
        };
        if code == OPTION_CODE {
            count += 1;
            found = Some(data);
        } else {
            others = true;
        }
        at += 4 + len;
    }
    match (count, found) {
        (0, _) | (_, None) => Ecs::None,
        (1, Some(data)) => match parse_option(data) {
            Ok(subnet) => Ecs::Subnet {
                subnet,
                kernel: kernel_pass(&subnet, !others),
            },
            Err(e) => Ecs::FormErr(e),
        },
        _ => Ecs::FormErr(FormErr::Several),
    }
}

/// The RDATA of the first OPT record in the additional section of `msg` (a whole DNS
/// message), if it has one and the message walks cleanly up to it.
pub fn opt_rdata(msg: &[u8]) -> Option<&[u8]> {
    let count = |i: usize| Some(crate::be16([*msg.get(i)?, *msg.get(i + 1)?]) as usize);
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut at = crate::query::HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    for i in 0..an + ns + ar {
        at = skip_name(msg, at)?;
        let rtype = crate::be16([*msg.get(at)?, *msg.get(at + 1)?]);
        let rdlen = crate::be16([*msg.get(at + 8)?, *msg.get(at + 9)?]) as usize;
        let rdata = msg.get(at + 10..at + 10 + rdlen)?;
        if rtype == qtype::OPT && i >= an + ns {
            return Some(rdata);
        }
        at += 10 + rdlen;
    }
    None
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 == 0 => at += 1 + l as usize,
            _ => return None,
        }
    }
}

/// The echoed option (code and length included) with SCOPE PREFIX-LENGTH `scope`: the
/// query's FAMILY, SOURCE and ADDRESS octets (RFC 7871 §7.2.1). Returns its length.
pub fn echo(s: &Subnet, scope: u8, out: &mut [u8; MAX_OPTION_LEN]) -> usize {
    let n = s.address_len().min(16);
    let head = option_header(s.family, s.source, scope);
    out[..OPTION_HEADER_LEN].copy_from_slice(&head);
    out[OPTION_HEADER_LEN..OPTION_HEADER_LEN + n].copy_from_slice(&s.address[..n]);
    OPTION_HEADER_LEN + n
}

/// OPTION-CODE, OPTION-LENGTH, FAMILY, SOURCE and SCOPE of the echoed option.
#[inline(always)]
const fn option_header(family: u16, source: u8, scope: u8) -> [u8; OPTION_HEADER_LEN] {
    let len = ((4 + address_len(source)) as u16).to_be_bytes();
    let code = OPTION_CODE.to_be_bytes();
    let family = family.to_be_bytes();
    [
        code[0], code[1], len[0], len[1], family[0], family[1], source, scope,
    ]
}

/// A query's OPT record, found at the end of the message by [`locate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tail {
    /// The OPT record's length: 11 for a plain one, 19 + ADDRESS octets with ECS.
    pub opt_len: usize,
    pub opt: Opt,
    /// The ECS option the kernel answers by, if any.
    pub subnet: Option<KernelSubnet>,
    /// Checksum sum of the OPT record's octets, as if at an even offset.
    pub sum: u16,
}

impl Tail {
    pub const EMPTY: Tail = Tail {
        opt_len: 0,
        opt: Opt {
            udp_size: 0,
            dnssec_ok: false,
        },
        subnet: None,
        sum: 0,
    };
}

/// Finds the query's OPT record in the last [`TAIL`] octets of the message (which must be
/// at least that long; octets before the message are never part of a match the caller
/// accepts, see [`crate::query::layout`]): a plain OPT record ([`crate::query::parse_opt`]),
/// or an OPT record that holds exactly one ECS option the kernel answers. Any other ECS
/// case is `Err` with its pass outcome (`ecs_invalid` for what the daemon answers with
/// FORMERR); anything else `Err(Edns)`.
pub fn locate(t: &[u8; TAIL]) -> Result<Tail, Outcome> {
    let mut out = Tail::EMPTY;
    locate_into(t, &mut out).map(|()| out)
}

/// [`locate`], writing the record into `out` (the kernel's per-CPU scratch slot: its stack
/// is small).
#[inline(always)]
pub fn locate_into(t: &[u8; TAIL], out: &mut Tail) -> Result<(), Outcome> {
    let plain = TAIL - OPT_HEADER_LEN;
    if t[plain] == 0
        && crate::be16([t[plain + 1], t[plain + 2]]) == qtype::OPT
        && t[plain + 9] == 0
        && t[plain + 10] == 0
    {
        let mut r = [0u8; OPT_HEADER_LEN];
        let mut i = 0;
        while i < OPT_HEADER_LEN {
            r[i] = t[plain + i];
            i += 1;
        }
        out.opt = crate::query::parse_opt(&r)?;
        out.opt_len = OPT_HEADER_LEN;
        out.subnet = None;
        out.sum = csum::sum_octets(&r);
        return Ok(());
    }
    // One ECS option of `n` address octets: the OPT record is the last 19 + n octets.
    let mut n = 0;
    while n <= 16 {
        let at = TAIL - OPT_HEADER_LEN - OPTION_HEADER_LEN - n;
        let rdlen = crate::be16([t[at + 9], t[at + 10]]) as usize;
        let code = crate::be16([t[at + 11], t[at + 12]]);
        let len = crate::be16([t[at + 13], t[at + 14]]) as usize;
        if t[at] == 0
            && crate::be16([t[at + 1], t[at + 2]]) == qtype::OPT
            && rdlen == OPTION_HEADER_LEN + n
            && code == OPTION_CODE
            && len == 4 + n
        {
            return ecs_tail(t, at, n, out);
        }
        n += 1;
    }
    // An ECS option last, behind other options.
    let mut n = 0;
    while n <= 16 {
        let at = TAIL - OPTION_HEADER_LEN - n;
        if crate::be16([t[at], t[at + 1]]) == OPTION_CODE
            && crate::be16([t[at + 2], t[at + 3]]) as usize == 4 + n
        {
            return Err(Outcome::EcsOptions);
        }
        n += 1;
    }
    Err(Outcome::Edns)
}

/// The OPT record at `at` holding one ECS option of `n` address octets.
#[inline(always)]
fn ecs_tail(t: &[u8; TAIL], at: usize, n: usize, out: &mut Tail) -> Result<(), Outcome> {
    // Version and the other OPT checks first (the daemon answers BADVERS before it looks at
    // options): a plain OPT header with RDLENGTH 0 passes `parse_opt`'s checks.
    let mut r = [0u8; OPT_HEADER_LEN];
    let mut i = 0;
    while i < OPT_HEADER_LEN - 2 {
        r[i] = t[at + i];
        i += 1;
    }
    let opt = crate::query::parse_opt(&r)?;
    let mut data = [0u8; 4 + 16];
    let mut i = 0;
    while i < 4 + n && i < data.len() {
        data[i] = t[at + OPT_HEADER_LEN + 4 + i];
        i += 1;
    }
    let subnet = match parse_option(&data[..4 + n]) {
        Ok(s) => s,
        Err(_) => return Err(Outcome::EcsInvalid),
    };
    if let Some(pass) = kernel_pass(&subnet, true) {
        return Err(pass.outcome());
    }
    let mut sum = 0u32;
    let mut i = 0;
    while i < TAIL {
        if i >= at {
            // The octet's half of its native-order word.
            let pair = if (i - at) & 1 == 0 {
                [t[i], 0]
            } else {
                [0, t[i]]
            };
            sum += u16::from_ne_bytes(pair) as u32;
        }
        i += 1;
    }
    out.opt_len = OPT_HEADER_LEN + OPTION_HEADER_LEN + n;
    out.opt = opt;
    out.subnet = Some(KernelSubnet::from(&subnet));
    out.sum = csum::fold(sum);
    Ok(())
}

/// The reply's OPT record with the echoed ECS option, for the kernel to write: its first
/// 19 octets, the 8 octets ending it (the last ADDRESS octets; they overlap the first 19
/// when the address is shorter than 8 octets, with the same values), its length and its
/// checksum sum. Only for options the kernel answers (at most 7 address octets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyOpt {
    pub head: [u8; OPT_HEADER_LEN + OPTION_HEADER_LEN],
    pub last: [u8; 8],
    pub len: usize,
    pub sum: u16,
}

/// The reply's OPT record (as [`crate::query::reply_opt`], with RDLENGTH set) followed by
/// the echoed option with SCOPE `scope`.
#[inline(always)]
pub fn reply_opt(udp_size: [u8; 2], dnssec_ok: bool, s: &KernelSubnet, scope: u8) -> ReplyOpt {
    let n = address_len(s.source);
    let n = if n > KERNEL_ADDRESS_LEN {
        KERNEL_ADDRESS_LEN
    } else {
        n
    };
    let base = crate::query::reply_opt(udp_size, dnssec_ok);
    let rdlen = ((OPTION_HEADER_LEN + n) as u16).to_be_bytes();
    let o = option_header(s.family, s.source, scope);
    let head = [
        base[0], base[1], base[2], base[3], base[4], base[5], base[6], base[7], base[8], rdlen[0],
        rdlen[1], o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7],
    ];
    // The address octets in use (none beyond `n`: the option has no bits beyond SOURCE,
    // and octets past ⌈SOURCE / 8⌉ are zero-padded).
    let address = u64::from_be_bytes(s.address);
    let keep = if n == 0 {
        0
    } else {
        u64::MAX << (64 - 8 * n as u32)
    };
    let address = address & keep;
    // The option is `o` followed by `n` address octets: its last 8 octets, as a number.
    let last = if n == 0 {
        u64::from_be_bytes(o)
    } else {
        u64::from_be_bytes(o) << (8 * n as u32) | address >> (64 - 8 * n as u32)
    };
    // The address starts at offset 19: an odd one.
    let sum = csum::add(
        csum::sum_octets(&head) as u32,
        csum::at_offset(csum::sum_octets(&address.to_be_bytes()), 1) as u32,
    );
    ReplyOpt {
        head,
        last: last.to_be_bytes(),
        len: OPT_HEADER_LEN + OPTION_HEADER_LEN + n,
        sum: csum::fold(sum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn option(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(&OPTION_CODE.to_be_bytes());
        o.extend_from_slice(&((4 + address.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.extend_from_slice(&[source, scope]);
        o.extend_from_slice(address);
        o
    }

    fn opt_record(rdata: &[u8]) -> Vec<u8> {
        let mut r = std::vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0];
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    /// The last `TAIL` octets of a message ending in `opt` (padded in front with 0xaa, as
    /// the question would be).
    fn tail(opt: &[u8]) -> [u8; TAIL] {
        let mut msg = std::vec![0xaa; 64];
        msg.extend_from_slice(opt);
        msg[msg.len() - TAIL..].try_into().unwrap()
    }

    fn subnet(family: u16, source: u8, address: &[u8]) -> Subnet {
        let mut a = [0u8; 16];
        a[..address.len()].copy_from_slice(address);
        Subnet {
            family,
            source,
            scope: 0,
            address: a,
        }
    }

    #[test]
    fn options_parse_into_one_of_the_cases() {
        assert_eq!(parse_options(&[]), Ecs::None);
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(parse_options(&cookie), Ecs::None);
        let v4 = option(1, 24, 0, &[198, 51, 100]);
        assert_eq!(
            parse_options(&v4),
            Ecs::Subnet {
                subnet: subnet(1, 24, &[198, 51, 100]),
                kernel: None
            }
        );
        let v6 = option(2, 56, 0, &[0x20, 1, 0xd, 0xb8, 0, 1, 2]);
        assert!(matches!(
            parse_options(&v6),
            Ecs::Subnet { kernel: None, .. }
        ));
        // The pass reasons.
        let kernel = |o: &[u8]| match parse_options(o) {
            Ecs::Subnet { kernel, .. } => kernel,
            other => panic!("{other:?}"),
        };
        assert_eq!(kernel(&option(1, 0, 0, &[])), Some(Pass::SourceZero));
        assert_eq!(kernel(&option(2, 0, 0, &[])), Some(Pass::SourceZero));
        assert_eq!(kernel(&option(1, 25, 0, &[1, 2, 3, 0])), Some(Pass::Long));
        assert_eq!(kernel(&option(1, 32, 0, &[1, 2, 3, 4])), Some(Pass::Long));
        assert_eq!(kernel(&option(2, 64, 0, &[1; 8])), Some(Pass::Long));
        assert_eq!(kernel(&option(1, 24, 24, &[1, 2, 3])), Some(Pass::Scope));
        let mut both = cookie.to_vec();
        both.extend_from_slice(&v4);
        assert_eq!(kernel(&both), Some(Pass::Options));
        // FORMERR.
        let formerr = |o: &[u8]| match parse_options(o) {
            Ecs::FormErr(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(formerr(&option(3, 24, 0, &[1, 2, 3])), FormErr::Family);
        assert_eq!(formerr(&option(0, 0, 0, &[])), FormErr::Family);
        assert_eq!(
            formerr(&option(1, 33, 0, &[1, 2, 3, 4, 5])),
            FormErr::Source
        );
        assert_eq!(formerr(&option(2, 129, 0, &[0; 17])), FormErr::Source);
        assert_eq!(formerr(&option(1, 24, 0, &[1, 2, 3, 0])), FormErr::Length);
        assert_eq!(formerr(&option(1, 24, 0, &[1, 2])), FormErr::Length);
        assert_eq!(formerr(&option(1, 22, 0, &[1, 2, 3])), FormErr::Bits);
        assert_eq!(formerr(&option(1, 22, 0, &[1, 2, 0xfe])), FormErr::Bits);
        assert_eq!(formerr(&[0, 8, 0, 2, 0, 1]), FormErr::Short);
        let mut twice = v4.clone();
        twice.extend_from_slice(&v4);
        assert_eq!(formerr(&twice), FormErr::Several);
        assert_eq!(formerr(&v4[..v4.len() - 1]), FormErr::Options);
        assert_eq!(formerr(&[0, 8, 0]), FormErr::Options);
    }

    #[test]
    fn the_opt_rdata_of_a_message() {
        let mut msg = std::vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        msg.extend_from_slice(&[
            3, b'w', b'w', b'w', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ]);
        let rdata = option(1, 24, 0, &[198, 51, 100]);
        msg.extend_from_slice(&opt_record(&rdata));
        assert_eq!(opt_rdata(&msg), Some(&rdata[..]));
        // Without the OPT record, or cut short.
        let mut none = msg[..26].to_vec();
        none[11] = 0;
        assert_eq!(opt_rdata(&none), None);
        assert_eq!(opt_rdata(&msg[..msg.len() - 1]), None);
        // A compressed name before it.
        let mut msg2 = msg[..26].to_vec();
        msg2[11] = 2;
        msg2.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        msg2.extend_from_slice(&opt_record(&rdata));
        assert_eq!(opt_rdata(&msg2), Some(&rdata[..]));
    }

    #[test]
    fn bits_beyond_the_prefix() {
        assert!(parse_option(&[0, 1, 22, 0, 1, 2, 0xfc]).is_ok());
        assert_eq!(parse_option(&[0, 1, 22, 0, 1, 2, 0xfe]), Err(FormErr::Bits));
        assert!(parse_option(&[0, 1, 1, 0, 0x80]).is_ok());
        assert_eq!(parse_option(&[0, 1, 1, 0, 0x40]), Err(FormErr::Bits));
        assert!(parse_option(&[0, 2, 0, 0]).is_ok());
    }

    #[test]
    fn the_echo_is_the_query_option_with_the_scope() {
        let o = option(1, 20, 0, &[198, 51, 96]);
        let Ecs::Subnet { subnet: s, .. } = parse_options(&o) else {
            panic!()
        };
        let mut out = [0u8; MAX_OPTION_LEN];
        let n = echo(&s, 16, &mut out);
        let mut want = o.clone();
        want[7] = 16;
        assert_eq!(&out[..n], &want[..]);
        let zero = subnet(2, 0, &[]);
        let n = echo(&zero, 0, &mut out);
        assert_eq!(&out[..n], &option(2, 0, 0, &[])[..]);
    }

    #[test]
    fn locate_finds_plain_and_ecs_opt_records() {
        let plain = opt_record(&[]);
        let t = locate(&tail(&plain)).unwrap();
        assert_eq!(t.opt_len, 11);
        assert_eq!(t.subnet, None);
        assert_eq!(
            t.opt,
            Opt {
                udp_size: 1232,
                dnssec_ok: true
            }
        );
        assert_eq!(t.sum, csum::fold(csum::partial(&plain, 0)));

        for (family, source, address) in [
            (1u16, 24u8, &[198u8, 51, 100][..]),
            (1, 8, &[10]),
            (1, 17, &[10, 1, 128]),
            (2, 56, &[0x20, 1, 0xd, 0xb8, 0, 1, 2]),
            (2, 48, &[0x20, 1, 0xd, 0xb8, 0, 1]),
            (2, 1, &[0x80]),
        ] {
            let rec = opt_record(&option(family, source, 0, address));
            let t = locate(&tail(&rec)).unwrap();
            assert_eq!(t.opt_len, rec.len(), "/{source}");
            let s = subnet(family, source, address);
            assert_eq!(t.subnet, Some(KernelSubnet::from(&s)));
            let mut want = [0u8; 16];
            if family == 2 {
                want[..address.len()].copy_from_slice(address);
            } else {
                want[10] = 0xff;
                want[11] = 0xff;
                want[12..12 + address.len()].copy_from_slice(address);
            }
            assert_eq!(t.subnet.unwrap().trie_address(), want);
            assert_eq!(t.sum, csum::fold(csum::partial(&rec, 0)), "/{source}");
            assert!(t.opt.dnssec_ok);
        }
    }

    #[test]
    fn locate_passes_every_other_ecs_case() {
        let case = |rdata: &[u8]| locate(&tail(&opt_record(rdata)));
        assert_eq!(case(&option(1, 0, 0, &[])), Err(Outcome::EcsSourceZero));
        assert_eq!(
            case(&option(1, 32, 0, &[1, 2, 3, 4])),
            Err(Outcome::EcsLong)
        );
        assert_eq!(case(&option(2, 64, 0, &[1; 8])), Err(Outcome::EcsLong));
        assert_eq!(case(&option(2, 128, 0, &[1; 16])), Err(Outcome::EcsLong));
        assert_eq!(case(&option(1, 24, 8, &[1, 2, 3])), Err(Outcome::EcsScope));
        assert_eq!(
            case(&option(3, 24, 0, &[1, 2, 3])),
            Err(Outcome::EcsInvalid)
        );
        assert_eq!(
            case(&option(1, 24, 0, &[1, 2, 3, 4])),
            Err(Outcome::EcsInvalid)
        );
        assert_eq!(
            case(&option(1, 23, 0, &[1, 2, 3])),
            Err(Outcome::EcsInvalid)
        );
        let v4 = option(1, 24, 0, &[1, 2, 3]);
        let mut cookie_first = std::vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        cookie_first.extend_from_slice(&v4);
        assert_eq!(case(&cookie_first), Err(Outcome::EcsOptions));
        let mut twice = v4.clone();
        twice.extend_from_slice(&v4);
        assert_eq!(case(&twice), Err(Outcome::EcsOptions));
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(case(&cookie), Err(Outcome::Edns));
        // EDNS version 1 with ECS: BADVERS comes first.
        let mut v1 = opt_record(&v4);
        v1[6] = 1;
        assert_eq!(locate(&tail(&v1)), Err(Outcome::Edns));
    }

    #[test]
    fn the_kernel_reply_opt_is_the_echo_behind_the_reply_opt_header() {
        for (family, source, address) in [
            (1u16, 24u8, &[198u8, 51, 100][..]),
            (1, 8, &[10]),
            (2, 56, &[0x20, 1, 0xd, 0xb8, 0, 1, 2]),
            (2, 33, &[0x20, 1, 0xd, 0xb8, 0x80]),
        ] {
            let s = subnet(family, source, address);
            let r = reply_opt([0x04, 0xd0], true, &KernelSubnet::from(&s), 20);
            let mut want = crate::query::reply_opt([0x04, 0xd0], true).to_vec();
            let mut echoed = [0u8; MAX_OPTION_LEN];
            let n = echo(&s, 20, &mut echoed);
            want[9..11].copy_from_slice(&(n as u16).to_be_bytes());
            want.extend_from_slice(&echoed[..n]);
            assert_eq!(r.len, want.len());
            assert_eq!(&r.head[..], &want[..19]);
            assert_eq!(&r.last[..], &want[want.len() - 8..]);
            assert_eq!(r.sum, csum::fold(csum::partial(&want, 0)));
        }
    }
}
