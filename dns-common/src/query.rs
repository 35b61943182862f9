//! The DNS byte logic of the XDP path, on small fixed arrays: which queries it answers, where
//! their question lies, and the header and OPT record of the reply.
//!
//! # Layout instead of a label walk
//!
//! The XDP path only answers messages of exactly one shape: a header with QD=1 AN=0 NS=0,
//! one question, and either nothing else (AR=0) or one OPT record at its end (AR=1: root
//! owner, EDNS version 0, and no options, or one EDNS Client Subnet option the kernel
//! answers: its length is read from the end of the message, [`crate::ecs::locate`]). For
//! that shape the message length fixes
//! where the question name ends, so the name's length is known without walking its labels
//! ([`layout`]). Whether the octets there really form that name is settled later by comparing
//! them with the stored name of the pool (see [`crate::name`]): a message of any other shape
//! (EDNS options, trailing data, compression) either fails the checks here or fails that
//! comparison, and is passed to the daemon.

use crate::{CLASS_IN, MAX_NAME_LEN, Outcome, qtype};

/// DNS header size.
pub const HEADER_LEN: usize = 12;
/// Question type and class after the name.
pub const QTYPE_QCLASS_LEN: usize = 4;
/// A plain OPT record: root owner, type, class (UDP size), TTL (extended RCODE, version,
/// flags), RDLENGTH 0.
pub const OPT_LEN: usize = 11;
/// Shortest message answered: a header, the root name, type and class.
pub const MIN_QUERY_LEN: usize = HEADER_LEN + 1 + QTYPE_QCLASS_LEN;
/// Longest message answered: a 255-octet name and a plain OPT record.
pub const MAX_QUERY_LEN: usize = HEADER_LEN + MAX_NAME_LEN + QTYPE_QCLASS_LEN + OPT_LEN;

/// Bits of the query types a pool answers in the kernel ([`crate::AnswerSet::qtypes`]).
pub mod qtype_bit {
    pub const A: u8 = 1 << 0;
    pub const AAAA: u8 = 1 << 1;
    pub const CNAME: u8 = 1 << 2;
}

/// The bit of a query type the XDP path answers, 0 for any other type.
#[inline(always)]
pub const fn qtype_bit(qtype: u16) -> u8 {
    match qtype {
        qtype::A => qtype_bit::A,
        qtype::AAAA => qtype_bit::AAAA,
        qtype::CNAME => qtype_bit::CNAME,
        _ => 0,
    }
}

/// Checks a query's header: QR=0, opcode QUERY, TC=0 (AA, RD, Z, AD, CD and RCODE are
/// ignored or copied), QD=1, AN=0, NS=0, AR≤1. Returns whether it has an additional record.
#[inline(always)]
pub fn check_header(h: &[u8; HEADER_LEN]) -> Result<bool, Outcome> {
    // QR (0x80), opcode (0x78) and TC (0x02) of the first flags octet.
    if h[2] & 0xfa != 0 {
        return Err(Outcome::NotQuery);
    }
    // Octet by octet: no memcmp in the kernel.
    let counts = h[4] | (h[5] ^ 1) | h[6] | h[7] | h[8] | h[9] | h[10];
    if counts != 0 || h[11] > 1 {
        return Err(Outcome::NotQuery);
    }
    Ok(h[11] == 1)
}

/// Where the question of a message of the one answered shape lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Length of the question name, root octet included (1..=255).
    pub name_len: usize,
    /// Offset of the OPT record in the message, when the query has one.
    pub opt: Option<usize>,
}

impl Layout {
    /// Offset of the question type (the question class follows it).
    pub const fn qtype_offset(&self) -> usize {
        HEADER_LEN + self.name_len
    }

    /// Offset of the first octet after the question: where the answer records go.
    pub const fn question_end(&self) -> usize {
        HEADER_LEN + self.name_len + QTYPE_QCLASS_LEN
    }
}

/// The question's layout for a message of `msg_len` octets whose additional record, if
/// any, is an OPT record of `opt_len` octets at its end (0: no additional record; a plain
/// OPT record is [`OPT_LEN`] octets, one with an ECS option longer, see [`crate::ecs`]).
#[inline(always)]
pub fn layout(msg_len: usize, opt_len: usize) -> Result<Layout, Outcome> {
    let fixed = HEADER_LEN + QTYPE_QCLASS_LEN + opt_len;
    if msg_len < fixed + 1 {
        return Err(Outcome::Malformed);
    }
    let name_len = msg_len - fixed;
    if name_len > MAX_NAME_LEN {
        // Longer than any name: EDNS options the kernel does not answer, or trailing data.
        return Err(if opt_len > 0 {
            Outcome::Edns
        } else {
            Outcome::BadName
        });
    }
    Ok(Layout {
        name_len,
        opt: (opt_len > 0).then_some(HEADER_LEN + name_len + QTYPE_QCLASS_LEN),
    })
}

/// Checks the octet the layout puts last in the name (it must be the root label) and the
/// question type and class. Returns the query type's [`qtype_bit`].
#[inline(always)]
pub fn check_question(last_name_octet: u8, qtype_qclass: [u8; 4]) -> Result<u8, Outcome> {
    if last_name_octet != 0 {
        // A truncated or compressed name, or octets after the question.
        return Err(Outcome::BadName);
    }
    if crate::be16([qtype_qclass[2], qtype_qclass[3]]) != CLASS_IN {
        return Err(Outcome::Qclass);
    }
    match qtype_bit(crate::be16([qtype_qclass[0], qtype_qclass[1]])) {
        0 => Err(Outcome::Qtype),
        bit => Ok(bit),
    }
}

/// A query's plain OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    /// The client's UDP payload size.
    pub udp_size: u16,
    /// The DO bit (echoed in the reply, RFC 3225).
    pub dnssec_ok: bool,
}

/// Parses the additional record as a plain OPT record: root owner, type OPT, EDNS version 0,
/// no options (extended RCODE and the flags other than DO are ignored, as the daemon does).
#[inline(always)]
pub fn parse_opt(r: &[u8; OPT_LEN]) -> Result<Opt, Outcome> {
    if r[0] != 0 || crate::be16([r[1], r[2]]) != qtype::OPT || r[6] != 0 || r[9] != 0 || r[10] != 0
    {
        return Err(Outcome::Edns);
    }
    Ok(Opt {
        udp_size: crate::be16([r[3], r[4]]),
        dnssec_ok: r[7] & 0x80 != 0,
    })
}

/// The reply's flags octets: QR=1, opcode QUERY, AA=1, TC=0, RD copied; RA=0, Z=0, AD=0,
/// CD copied, RCODE NOERROR.
#[inline(always)]
pub const fn reply_flags(query: [u8; 2]) -> [u8; 2] {
    [0x84 | (query[0] & 0x01), query[1] & 0x10]
}

/// The flags octets of a slipped reply (response rate limiting, [`crate::rrl`]): those of
/// [`reply_flags`] with TC=1, so the client retries over TCP.
#[inline(always)]
pub const fn slip_flags(query: [u8; 2]) -> [u8; 2] {
    let f = reply_flags(query);
    [f[0] | 0x02, f[1]]
}

/// The reply's OPT record: our UDP payload size (network order), extended RCODE 0,
/// version 0, DO echoed, no options.
#[inline(always)]
pub const fn reply_opt(udp_size: [u8; 2], dnssec_ok: bool) -> [u8; OPT_LEN] {
    [
        0,
        0,
        qtype::OPT as u8,
        udp_size[0],
        udp_size[1],
        0,
        0,
        if dnssec_ok { 0x80 } else { 0 },
        0,
        0,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slipped_replies_are_truncated_replies() {
        // RD and CD echoed, QR AA TC set, nothing else.
        assert_eq!(slip_flags([0x01, 0x10]), [0x87, 0x10]);
        assert_eq!(slip_flags([0x00, 0x00]), [0x86, 0x00]);
        assert_eq!(slip_flags([0x7f, 0xff]), [0x87, 0x10]);
        for q in [[0x01, 0x10], [0x00, 0x20]] {
            let (r, s) = (reply_flags(q), slip_flags(q));
            assert_eq!(r[0] & 0x02, 0);
            assert_eq!(s[0] & !0x02, r[0]);
            assert_eq!(s[1], r[1]);
        }
    }

    fn header(flags: [u8; 2], counts: [u16; 4]) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0xbe;
        h[1] = 0xef;
        h[2..4].copy_from_slice(&flags);
        for (i, c) in counts.iter().enumerate() {
            h[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        h
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(&header([0x01, 0x20], [1, 0, 0, 0])), Ok(false));
        assert_eq!(check_header(&header([0x00, 0x00], [1, 0, 0, 1])), Ok(true));
        // AA in a query and the low flags octet are ignored.
        assert_eq!(check_header(&header([0x05, 0xff], [1, 0, 0, 0])), Ok(false));
        for flags in [[0x80, 0], [0x20, 0], [0x02, 0], [0x78, 0]] {
            assert_eq!(
                check_header(&header(flags, [1, 0, 0, 0])),
                Err(Outcome::NotQuery),
                "{flags:?}"
            );
        }
        for counts in [
            [0, 0, 0, 0],
            [2, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 0, 1, 0],
            [1, 0, 0, 2],
        ] {
            assert_eq!(
                check_header(&header([0, 0], counts)),
                Err(Outcome::NotQuery),
                "{counts:?}"
            );
        }
        assert_eq!(
            check_header(&header([0, 0], [1, 0, 0, 0x101])),
            Err(Outcome::NotQuery)
        );
    }

    #[test]
    fn layout_from_the_message_length() {
        // www.example.test. A: 12 + 18 + 4.
        let l = layout(34, 0).unwrap();
        assert_eq!(
            l,
            Layout {
                name_len: 18,
                opt: None
            }
        );
        assert_eq!(l.qtype_offset(), 30);
        assert_eq!(l.question_end(), 34);
        let l = layout(45, OPT_LEN).unwrap();
        assert_eq!(
            l,
            Layout {
                name_len: 18,
                opt: Some(34)
            }
        );
        // The root name, the longest name, and beyond.
        assert_eq!(layout(17, 0).unwrap().name_len, 1);
        assert_eq!(layout(16, 0), Err(Outcome::Malformed));
        assert_eq!(layout(27, OPT_LEN), Err(Outcome::Malformed));
        assert_eq!(layout(MAX_QUERY_LEN, OPT_LEN).unwrap().name_len, 255);
        assert_eq!(layout(MAX_QUERY_LEN + 1, OPT_LEN), Err(Outcome::Edns));
        assert_eq!(layout(12 + 256 + 4, 0), Err(Outcome::BadName));
        assert_eq!(layout(0, 0), Err(Outcome::Malformed));
        // With an ECS option of 3 address octets: an OPT record of 22.
        assert_eq!(layout(34 + 22, 22).unwrap().opt, Some(34));
        assert_eq!(layout(17 + 22, 22).unwrap().name_len, 1);
        assert_eq!(layout(16 + 22, 22), Err(Outcome::Malformed));
    }

    #[test]
    fn question_checks() {
        assert_eq!(check_question(0, [0, 1, 0, 1]), Ok(qtype_bit::A));
        assert_eq!(check_question(0, [0, 28, 0, 1]), Ok(qtype_bit::AAAA));
        assert_eq!(check_question(0, [0, 5, 0, 1]), Ok(qtype_bit::CNAME));
        assert_eq!(check_question(3, [0, 1, 0, 1]), Err(Outcome::BadName));
        assert_eq!(check_question(0, [0, 1, 0, 3]), Err(Outcome::Qclass));
        assert_eq!(check_question(0, [0, 15, 0, 1]), Err(Outcome::Qtype));
        assert_eq!(check_question(0, [0, 255, 0, 1]), Err(Outcome::Qtype));
        assert_eq!(check_question(0, [1, 1, 0, 1]), Err(Outcome::Qtype));
    }

    #[test]
    fn opt_records() {
        let plain = [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];
        assert_eq!(
            parse_opt(&plain),
            Ok(Opt {
                udp_size: 1232,
                dnssec_ok: true
            })
        );
        let mut ext_rcode = plain;
        ext_rcode[5] = 1;
        assert!(parse_opt(&ext_rcode).is_ok());
        for (i, v) in [(0, 1), (2, 1), (6, 1), (9, 1), (10, 4)] {
            let mut r = plain;
            r[i] = v;
            assert_eq!(parse_opt(&r), Err(Outcome::Edns), "octet {i} = {v}");
        }
        let small = parse_opt(&[0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(small.udp_size, 100);
    }

    #[test]
    fn reply_header_and_opt() {
        // RD and CD copied, everything else reset.
        assert_eq!(reply_flags([0x01, 0x10]), [0x85, 0x10]);
        assert_eq!(reply_flags([0x04, 0x2f]), [0x84, 0x00]);
        assert_eq!(
            reply_opt(1232u16.to_be_bytes(), true),
            [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]
        );
        assert_eq!(reply_opt([2, 0], false)[7], 0);
    }
}
