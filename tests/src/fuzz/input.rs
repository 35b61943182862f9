//! Query frames and their mutations for the kernel frame fuzzer.
//!
//! A frame starts as a valid query of some kind (IPv4 or IPv6, with or without an 802.1Q
//! tag, with or without EDNS, in mixed case, names up to 255 octets; UDP checksum right,
//! absent or left to offload), then takes a few edits aimed at what the program parses:
//! bit flips and octet sets anywhere, truncation and extension, length fields, checksum
//! fields, header flags and counts, the name, type, class and OPT record, octets inserted
//! into or cut from the message. Afterwards the lengths and checksums are often made
//! consistent again, so edits reach past the checks that would otherwise stop them.

use hotpool_fuzz_harness::{
    mutate::{self, INTERESTING},
    rng::Rng,
    seeds::{EdnsSpec, QuerySpec, mixed_case},
    world,
};

use crate::frames::{self, Path};

/// Where the fuzzed program listens.
pub const SERVER_V4: [u8; 4] = [10, 0, 0, 2];
pub const SERVER_V6: &str = "fd00::2";

/// Smallest frame `BPF_PROG_TEST_RUN` takes for XDP (an Ethernet header).
pub const MIN_FRAME: usize = 14;
/// Largest frame generated (a standard Ethernet frame; test runs take a page).
pub const MAX_FRAME: usize = 1514;

/// A query the kernel may answer: a pool name with the kernel's types and EDNS shapes most
/// of the time, any query about the world otherwise.
pub fn query(rng: &mut Rng) -> QuerySpec {
    if rng.percent(30) {
        return QuerySpec::random(rng);
    }
    let name = rng.pick(world::pool_names()).clone();
    let mut q = QuerySpec::new(&name, *rng.pick(&[1u16, 28, 5]));
    if rng.percent(60) {
        q.name = mixed_case(rng, &q.name);
    }
    q.id = rng.next_u64() as u16;
    q.rd = rng.percent(50);
    q.cd = rng.percent(20);
    if rng.percent(50) {
        q.edns = Some(EdnsSpec {
            udp_size: *rng.pick(&[0u16, 100, 512, 1232, 1400, 4096]),
            dnssec_ok: rng.percent(50),
            version: 0,
            options: vec![],
        });
    }
    q
}

/// A valid query frame: the query on a random path to our address.
/// Now and then from a source, a port or to a MAC address the acceptance rules reject.
pub fn frame(rng: &mut Rng) -> Vec<u8> {
    let v6 = rng.percent(40);
    let rejected = rng.percent(8);
    let mut path = if v6 {
        let client = if rejected {
            *rng.pick(&["::1", SERVER_V6, "ff02::1", "::", "::ffff:127.0.0.1"])
        } else {
            *rng.pick(&["fd00::1", "2001:db8:1::7", "fe80::1", "fd00::99"])
        };
        Path::v6(client, SERVER_V6)
    } else {
        let client = if rejected {
            *rng.pick(&[
                [127, 0, 0, 1],
                SERVER_V4,
                [10, 0, 0, 255],
                [255, 255, 255, 255],
                [224, 0, 0, 251],
                [0, 0, 0, 0],
            ])
        } else {
            *rng.pick(&[
                [10, 0, 0, 1],
                [192, 0, 2, 99],
                [10, 9, 8, 7],
                [172, 16, 0, 1],
            ])
        };
        Path::v4(client, SERVER_V4)
    };
    if rng.percent(20) {
        path = path.vlan(rng.range(1, 4094) as u16);
    }
    if rng.percent(30) {
        path.sport = rng.range(1024, 65535) as u16;
    }
    if rng.percent(4) {
        path.sport = *rng.pick(&[0u16, 7, 19, 123, 11211]);
    }
    let dst_mac = if rng.percent(4) {
        *rng.pick(&[
            [0xff; 6],
            [0x01, 0x00, 0x5e, 0, 0, 0xfb],
            [0x02, 0, 0, 0, 0, 0x99],
        ])
    } else {
        frames::SERVER_MAC
    };
    let mut f = frames::udp_frame(&path, frames::CLIENT_MAC, dst_mac, 64, &query(rng).bytes());
    match rng.below(10) {
        // No checksum (IPv4 only; over IPv6 the program must pass it).
        0 => set_udp_checksum(&mut f, [0, 0]),
        // Left to offload: the pseudo-header sum.
        1 => {
            if let Some(field) = offload_field(&f) {
                set_udp_checksum(&mut f, field);
            }
        }
        _ => {}
    }
    f
}

/// A frame from [`frame`], edited: the fuzzer's input.
pub fn mutated(rng: &mut Rng) -> Vec<u8> {
    let mut f = frame(rng);
    // Some frames go through unedited, and some only with edits of fields the program
    // copies into its reply or ignores, so that many frames are answered and the replies
    // vary in every field they carry over.
    match rng.below(10) {
        0 => return f,
        1..=3 => {
            for _ in 0..rng.range(1, 4) {
                harmless_edit(rng, &mut f);
            }
            fix_checksums(&mut f);
            return f;
        }
        _ => {
            for _ in 0..rng.range(1, 3) {
                edit(rng, &mut f);
            }
        }
    }
    if rng.percent(60) {
        fix_lengths(&mut f);
    }
    if rng.percent(80) {
        fix_checksums(&mut f);
    }
    if rng.percent(10) {
        edit_checksum(rng, &mut f);
    }
    f.truncate(MAX_FRAME);
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

/// Offsets of a frame's headers, as far as its ethertype tells.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// IP header.
    pub l3: usize,
    pub v6: bool,
}

impl Layout {
    /// The layout of `f` if it is IPv4 or IPv6 behind at most one 802.1Q tag.
    pub fn of(f: &[u8]) -> Option<Self> {
        let mut l3 = 14;
        let mut ethertype = be16(f, 12)?;
        if ethertype == 0x8100 {
            ethertype = be16(f, 16)?;
            l3 = 18;
        }
        match ethertype {
            0x0800 => Some(Self { l3, v6: false }),
            0x86dd => Some(Self { l3, v6: true }),
            _ => None,
        }
    }

    /// UDP header (for an IPv4 header without options).
    pub fn l4(&self) -> usize {
        self.l3 + if self.v6 { 40 } else { 20 }
    }

    /// DNS message.
    pub fn dns(&self) -> usize {
        self.l4() + 8
    }
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    if let Some(d) = f.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// One edit aimed at a part of the frame.
fn edit(rng: &mut Rng, f: &mut Vec<u8>) {
    let Some(at) = Layout::of(f) else {
        // Not IP any more: octets only.
        let n = f.len();
        if n > 0 {
            f[rng.below(n)] ^= 1 << rng.below(8);
        }
        return;
    };
    let (l3, l4, dns) = (at.l3, at.l4(), at.dns());
    let len = f.len();
    match rng.below(12) {
        0 => {
            let i = rng.below(len);
            f[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len);
            f[i] = *rng.pick(&INTERESTING);
        }
        // Truncation, and extension (Ethernet padding or garbage after the datagram).
        2 => f.truncate(rng.range(MIN_FRAME.min(len), len)),
        3 => {
            let zeros = rng.percent(50);
            f.extend((0..rng.range(1, 64)).map(|_| if zeros { 0 } else { rng.byte() }));
        }
        // Length fields: IP, then UDP.
        4 => {
            let field = if at.v6 { l3 + 4 } else { l3 + 2 };
            nudge16(rng, f, field);
        }
        5 => nudge16(rng, f, l4 + 4),
        6 => edit_checksum(rng, f),
        // The IP header: version and header length, fragments, protocol, addresses.
        7 => {
            let fields: &[usize] = if at.v6 {
                &[0, 6, 8, 23, 24, 39]
            } else {
                &[0, 6, 7, 9, 12, 15, 16, 19]
            };
            let i = l3 + *rng.pick(fields);
            if let Some(b) = f.get_mut(i) {
                *b = if rng.percent(50) {
                    *rng.pick(&INTERESTING)
                } else {
                    *b ^ 1 << rng.below(8)
                };
            }
        }
        // The UDP ports, the ethertype, the 802.1Q tag.
        8 => match rng.below(4) {
            0 => put16(f, l4, *rng.pick(&[0u16, 7, 19, 53, 123, 5353, 65535])),
            1 => put16(f, l4 + 2, *rng.pick(&[52u16, 54, 5353, 853])),
            2 => put16(
                f,
                l3 - 2,
                *rng.pick(&[0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806]),
            ),
            _ => {
                if l3 == 18 {
                    f.drain(12..16);
                } else {
                    f.splice(12..12, [0x81, 0x00, 0, 42]);
                }
            }
        },
        // DNS header: a flag bit, a count.
        9 => match rng.below(2) {
            0 => {
                if let Some(b) = f.get_mut(dns + 2 + rng.below(2)) {
                    *b ^= 1 << rng.below(8);
                }
            }
            _ => {
                let count = dns + 4 + 2 * rng.below(4);
                put16(f, count, *rng.pick(&[0u16, 1, 2, 0xffff]));
            }
        },
        // The question and the OPT record: a label length, a letter's case, type, class,
        // OPT fields.
        10 => edit_question(rng, f, dns),
        // Octets inserted into or cut from the message.
        _ => {
            if dns < len {
                let message = f.split_off(dns);
                let edited = mutate::mutate(rng, &message, &[], 2, 600);
                f.extend(edited);
            }
        }
    }
}

/// An edit of a field the program copies or ignores: the source MAC, the 802.1Q tag, IPv4 TOS, ID,
/// DF and TTL, IPv6 traffic class, flow label and hop limit, the client's address and
/// port, the DNS ID, RD, CD, AD, the case of the name, the EDNS size and DO bit, Ethernet
/// padding after the datagram.
fn harmless_edit(rng: &mut Rng, f: &mut Vec<u8>) {
    let Some(at) = Layout::of(f) else { return };
    let (l3, l4, dns) = (at.l3, at.l4(), at.dns());
    let random = rng.next_u64().to_be_bytes();
    match rng.below(9) {
        0 => f[6 + rng.below(6)] = random[0],
        1 if l3 == 18 => f[14 + rng.below(2)] = random[0],
        2 if at.v6 => {
            // Traffic class and flow label (not the version), hop limit.
            f[l3] = 0x60 | random[0] & 0x0f;
            f[l3 + 1..l3 + 4].copy_from_slice(&random[1..4]);
            f[l3 + 7] = random[4];
        }
        2 => {
            // TOS, ID, DF (not the reserved bit nor fragments), TTL.
            f[l3 + 1] = random[0];
            f[l3 + 4..l3 + 6].copy_from_slice(&random[1..3]);
            f[l3 + 6] = random[3] & 0x40;
            f[l3 + 8] = random[4];
        }
        // The client: the last octets of its address, its port.
        3 => {
            let src_end = if at.v6 { l3 + 24 } else { l3 + 16 };
            f[src_end - 1] = random[0].max(1);
            f[src_end - 2] = random[1];
        }
        4 => f[l4..l4 + 2].copy_from_slice(&random[..2]),
        5 => f[dns..dns + 2].copy_from_slice(&random[..2]),
        // RD, CD, AD.
        6 => {
            f[dns + 2] ^= u8::from(rng.percent(50));
            f[dns + 3] ^= *rng.pick(&[0x10u8, 0x20]);
        }
        7 => {
            // A letter's case.
            let letters: Vec<usize> = (dns + 12..f.len())
                .take_while(|&i| f[i] != 0)
                .filter(|&i| f[i].is_ascii_alphabetic())
                .collect();
            if !letters.is_empty() {
                f[*rng.pick(&letters)] ^= 0x20;
            }
        }
        _ => {
            // The EDNS size and DO bit (a plain OPT record ends the message), or padding.
            let n = f.len();
            if f[dns + 11] == 1 && f.get(n - 11..n - 8) == Some(&[0, 0, 41][..]) {
                f[n - 8..n - 6].copy_from_slice(&random[..2]);
                f[n - 4] ^= 0x80;
            } else {
                f.extend((0..rng.range(1, 32)).map(|_| 0));
            }
        }
    }
}

/// Sets the 16-bit field at `at` to a nearby or a boundary value.
fn nudge16(rng: &mut Rng, f: &mut [u8], at: usize) {
    let Some(v) = be16(f, at) else { return };
    let new = match rng.below(3) {
        0 => v.wrapping_add(rng.range(1, 4) as u16),
        1 => v.wrapping_sub(rng.range(1, 4) as u16),
        _ => *rng.pick(&[0u16, 7, 8, 19, 20, 28, 0xffff]),
    };
    put16(f, at, new);
}

fn edit_question(rng: &mut Rng, f: &mut [u8], dns: usize) {
    let name = dns + 12;
    // The question's type and class follow the name; the OPT record follows them.
    let mut end = name;
    while let Some(&l) = f.get(end) {
        if l == 0 || l > 63 {
            break;
        }
        end += 1 + l as usize;
    }
    let qtype = end + 1;
    match rng.below(5) {
        0 => {
            // A label length, or the root octet.
            let mut labels = vec![name];
            let mut i = name;
            while let Some(&l) = f.get(i) {
                if l == 0 || l > 63 {
                    break;
                }
                i += 1 + l as usize;
                labels.push(i);
            }
            let at = *rng.pick(&labels);
            if let Some(b) = f.get_mut(at) {
                *b = *rng.pick(&[
                    0u8,
                    1,
                    2,
                    62,
                    63,
                    64,
                    0xc0,
                    b.wrapping_add(1),
                    b.wrapping_sub(1),
                ]);
            }
        }
        1 => {
            if end > name
                && let Some(b) = f.get_mut(rng.range(name, end - 1))
            {
                if b.is_ascii_alphabetic() {
                    *b ^= 0x20;
                } else {
                    *b = *rng.pick(&[b'A', b'z', b'.', b'\\', 0x80, 0xc1]);
                }
            }
        }
        2 => put16(f, qtype, *rng.pick(&[0u16, 1, 5, 28, 41, 255, 65535])),
        3 => put16(f, qtype + 2, *rng.pick(&[0u16, 1, 3, 254, 255, 0x8001])),
        _ => {
            // OPT: owner, type, size, extended RCODE, version, flags, RDLENGTH.
            let opt = qtype + 4;
            let i = opt + *rng.pick(&[0usize, 2, 3, 4, 5, 6, 7, 8, 10]);
            if let Some(b) = f.get_mut(i) {
                *b = if rng.percent(50) {
                    *rng.pick(&INTERESTING)
                } else {
                    *b ^ 1 << rng.below(8)
                };
            }
        }
    }
}

/// Edits a checksum field: the UDP one (zero, nearly right, random, the offload form) or
/// the IPv4 header's.
pub fn edit_checksum(rng: &mut Rng, f: &mut [u8]) {
    let Some(at) = Layout::of(f) else { return };
    if !at.v6 && rng.percent(30) {
        let Some(v) = be16(f, at.l3 + 10) else { return };
        put16(f, at.l3 + 10, v ^ (1 << rng.below(16)));
        return;
    }
    let Some(v) = be16(f, at.l4() + 6) else {
        return;
    };
    let field = match rng.below(4) {
        0 => [0, 0],
        1 => v.wrapping_add(1).to_be_bytes(),
        2 => (rng.next_u64() as u16).to_be_bytes(),
        _ => match offload_field(f) {
            Some(field) => field,
            None => return,
        },
    };
    set_udp_checksum(f, field);
}

fn set_udp_checksum(f: &mut [u8], field: [u8; 2]) {
    if let Some(at) = Layout::of(f) {
        put16(f, at.l4() + 6, u16::from_be_bytes(field));
    }
}

/// Makes the IP and UDP length fields agree with the frame (its end as the datagram's).
pub fn fix_lengths(f: &mut [u8]) {
    let Some(at) = Layout::of(f) else { return };
    let Some(udp_len) = f.len().checked_sub(at.l4()) else {
        return;
    };
    if udp_len < 8 || udp_len > usize::from(u16::MAX) - 40 {
        return;
    }
    if at.v6 {
        put16(f, at.l3 + 4, udp_len as u16);
    } else {
        put16(f, at.l3 + 2, (udp_len + 20) as u16);
    }
    put16(f, at.l4() + 4, udp_len as u16);
}

/// Recomputes the IPv4 header checksum and the UDP checksum over what the length fields
/// say, if they lie inside the frame.
pub fn fix_checksums(f: &mut [u8]) {
    let Some(at) = Layout::of(f) else { return };
    if !at.v6 && f.len() >= at.l3 + 20 {
        put16(f, at.l3 + 10, 0);
        let sum = inet_sum(&f[at.l3..at.l3 + 20], 0);
        put16(f, at.l3 + 10, !fold(sum));
    }
    let Some(udp_len) = be16(f, at.l4() + 4).map(usize::from) else {
        return;
    };
    if udp_len < 8 || at.l4() + udp_len > f.len() {
        return;
    }
    put16(f, at.l4() + 6, 0);
    let Some(pseudo) = pseudo_sum(f, at) else {
        return;
    };
    let sum = inet_sum(&f[at.l4()..at.l4() + udp_len], pseudo);
    let c = !fold(sum);
    put16(f, at.l4() + 6, if c == 0 { 0xffff } else { c });
}

/// The UDP checksum field a local sender leaves for offload: the folded pseudo-header sum.
pub fn offload_field(f: &[u8]) -> Option<[u8; 2]> {
    let at = Layout::of(f)?;
    Some(fold(pseudo_sum(f, at)?).to_be_bytes())
}

/// The UDP pseudo-header's sum: addresses, protocol, the UDP length field.
pub fn pseudo_sum(f: &[u8], at: Layout) -> Option<u32> {
    let udp_len = u32::from(be16(f, at.l4() + 4)?);
    let addrs = if at.v6 {
        f.get(at.l3 + 8..at.l3 + 40)?
    } else {
        f.get(at.l3 + 12..at.l3 + 20)?
    };
    Some(inet_sum(addrs, 17 + udp_len))
}

/// The Internet checksum's sum (RFC 1071) of `data` in network order, added to `start`.
pub fn inet_sum(data: &[u8], start: u32) -> u32 {
    let mut sum = u64::from(start);
    let mut pairs = data.chunks_exact(2);
    for p in &mut pairs {
        sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_are_valid_queries() {
        for i in 0..200 {
            let f = frame(&mut Rng::for_item(1, i));
            let at = Layout::of(&f).unwrap();
            // No checksum (over IPv6 too, which the program must pass), or left to offload.
            let field = [f[at.l4() + 6], f[at.l4() + 7]];
            let payload = if field == [0, 0] || Some(field) == offload_field(&f) {
                frames::udp_payload_unchecked(&f)
            } else {
                frames::udp_payload(&f)
            };
            hickory_proto::op::Message::from_vec(&payload).unwrap();
        }
    }

    #[test]
    fn fixing_restores_what_etherparse_checks() {
        for i in 0..200 {
            let mut f = frame(&mut Rng::for_item(2, i));
            let n = f.len();
            f.truncate(n - 1);
            fix_lengths(&mut f);
            fix_checksums(&mut f);
            frames::udp_payload(&f);
        }
    }

    #[test]
    fn mutated_frames_stay_in_bounds() {
        for i in 0..2000 {
            let f = mutated(&mut Rng::for_item(3, i));
            assert!((MIN_FRAME..=MAX_FRAME).contains(&f.len()), "{}", f.len());
        }
    }
}
