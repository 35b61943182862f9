//! The region of a client address: [`Regions::networks`] flattened into disjoint prefixes
//! that cover all of IPv4 and IPv6.
//!
//! The configured networks may nest and overlap; the longest prefix wins and addresses no
//! network claims are in [`RegionId::DEFAULT`]. Flattening turns that into one region per
//! address range (a sweep over the networks sorted by start, outer before inner), merges
//! neighbouring ranges of one region, and cuts each range into the fewest CIDR prefixes.
//! Every address is then in exactly one flattened prefix, whose length is the SCOPE
//! PREFIX-LENGTH an ECS answer of a pool steered by region carries (RFC 7871 §7.2.1): every
//! address of that prefix gets the same region.
//!
//! Both answer paths use the one list: the daemon looks addresses up here (binary search
//! over the sorted prefixes), and the kernel's LPM tries are loaded with the same prefixes
//! (`crate::datapath`), so the XDP path and the daemon pick the same region and scope.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{RegionId, Regions};

/// One flattened prefix: its first address (as a number), length and region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix<A> {
    pub start: A,
    pub len: u8,
    pub region: RegionId,
}

/// Client address → region, for every address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionTable {
    v4: Vec<Prefix<u32>>,
    v6: Vec<Prefix<u128>>,
}

impl Default for RegionTable {
    fn default() -> Self {
        Self::new(&Regions::none())
    }
}

impl RegionTable {
    /// Flattens the configured networks of `regions`.
    pub fn new(regions: &Regions) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, region) in &regions.networks {
            match net.trunc() {
                ipnet::IpNet::V4(n) => {
                    v4.push((u128::from(u32::from(n.addr())), n.prefix_len(), *region))
                }
                ipnet::IpNet::V6(n) => v6.push((u128::from(n.addr()), n.prefix_len(), *region)),
            }
        }
        let v4 = flatten(v4, 32)
            .into_iter()
            .map(|p| Prefix {
                start: p.start as u32,
                len: p.len,
                region: p.region,
            })
            .collect();
        Self {
            v4,
            v6: flatten(v6, 128),
        }
    }

    /// The region of `addr` and the length of the flattened prefix holding it. IPv4-mapped
    /// IPv6 addresses are looked up as IPv4.
    pub fn lookup(&self, addr: IpAddr) -> (RegionId, u8) {
        match addr.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// The flattened IPv4 prefixes, by address.
    pub fn v4(&self) -> &[Prefix<u32>] {
        &self.v4
    }

    /// The flattened IPv6 prefixes, by address.
    pub fn v6(&self) -> &[Prefix<u128>] {
        &self.v6
    }

    /// Flattened prefixes of both families.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Never: the table always covers both families.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every address is in the default region.
    pub fn is_trivial(&self) -> bool {
        self.v4.iter().all(|p| p.region == RegionId::DEFAULT)
            && self.v6.iter().all(|p| p.region == RegionId::DEFAULT)
    }
}

impl Prefix<u32> {
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.start)
    }
}

impl Prefix<u128> {
    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.start)
    }
}

fn find<A: Copy + Ord>(prefixes: &[Prefix<A>], addr: A) -> (RegionId, u8) {
    // The last prefix starting at or before `addr` holds it (they cover the space).
    let i = prefixes.partition_point(|p| p.start <= addr);
    match i.checked_sub(1).and_then(|i| prefixes.get(i)) {
        Some(p) => (p.region, p.len),
        None => (RegionId::DEFAULT, 0),
    }
}

/// The last address of the prefix `start/len` in a space of `bits`.
fn last(start: u128, len: u8, bits: u8) -> u128 {
    let host = u32::from(bits - len);
    let span = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    start | span
}

/// Disjoint prefixes covering the space of `bits` (32 or 128, addresses as numbers) with
/// the region of the longest configured network holding them; the first of equal networks
/// wins.
fn flatten(mut nets: Vec<(u128, u8, RegionId)>, bits: u8) -> Vec<Prefix<u128>> {
    // Outer before inner at the same start; stable, so equal networks keep config order.
    nets.sort_by_key(|&(start, len, _)| (start, len));
    nets.dedup_by_key(|&mut (start, len, _)| (start, len));
    let top = last(0, 0, bits);

    // Ranges (first, last, region), in order, covering [0, top].
    let mut ranges: Vec<(u128, u128, RegionId)> = Vec::with_capacity(2 * nets.len() + 1);
    let mut emit = |first: u128, last: u128, region: RegionId| match ranges.last_mut() {
        Some(r) if r.2 == region && r.1.checked_add(1) == Some(first) => r.1 = last,
        _ => ranges.push((first, last, region)),
    };
    // The networks open around the cursor, outermost first; the whole space at the bottom.
    let mut open: Vec<(u128, RegionId)> = vec![(top, RegionId::DEFAULT)];
    // The first address not yet emitted (`None` once the whole space is).
    let mut cursor = Some(0u128);
    for (start, len, region) in nets {
        let end = last(start, len, bits);
        // Close the networks that end before this one starts.
        while let Some(&(open_end, open_region)) = open.last() {
            if open_end >= start {
                break;
            }
            if let Some(c) = cursor.filter(|&c| c <= open_end) {
                emit(c, open_end, open_region);
            }
            cursor = open_end.checked_add(1);
            open.pop();
        }
        // The enclosing network up to this one.
        let enclosing = open.last().map_or(RegionId::DEFAULT, |o| o.1);
        if let Some(c) = cursor.filter(|&c| c < start) {
            emit(c, start - 1, enclosing);
            cursor = Some(start);
        }
        open.push((end, region));
    }
    while let Some((open_end, open_region)) = open.pop() {
        if let Some(c) = cursor.filter(|&c| c <= open_end) {
            emit(c, open_end, open_region);
        }
        cursor = open_end.checked_add(1);
    }

    let mut out = Vec::with_capacity(ranges.len() * 2);
    for (first, last_addr, region) in ranges {
        cidrs(first, last_addr, bits, |start, len| {
            out.push(Prefix { start, len, region })
        });
    }
    out
}

/// The fewest CIDR prefixes covering `[first, last]` exactly, in order.
fn cidrs(mut first: u128, last_addr: u128, bits: u8, mut f: impl FnMut(u128, u8)) {
    loop {
        // The largest block aligned at `first` that stays within the range.
        let align = if first == 0 {
            u32::from(bits)
        } else {
            first.trailing_zeros().min(u32::from(bits))
        };
        let mut host = align;
        while host > 0 && last(first, bits - host as u8, bits) > last_addr {
            host -= 1;
        }
        let len = bits - host as u8;
        f(first, len);
        let end = last(first, len, bits);
        if end >= last_addr {
            return;
        }
        first = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn regions(nets: &[(&str, &str)]) -> Regions {
        let mut r = Regions::none();
        for (net, name) in nets {
            let id = r.id(name).or_else(|| r.add(name)).unwrap();
            r.networks.push((ipnet::IpNet::from_str(net).unwrap(), id));
        }
        r
    }

    fn at(t: &RegionTable, addr: &str) -> (RegionId, u8) {
        t.lookup(IpAddr::from_str(addr).unwrap())
    }

    /// The prefixes cover the family's space without gaps or overlaps.
    fn assert_covers(t: &RegionTable) {
        let mut next = 0u128;
        for p in t.v4() {
            assert_eq!(u128::from(p.start), next, "{p:?}");
            next = last(u128::from(p.start), p.len, 32) + 1;
        }
        assert_eq!(next, 1 << 32);
        let mut next = Some(0u128);
        for p in t.v6() {
            assert_eq!(Some(p.start), next, "{p:?}");
            next = last(p.start, p.len, 128).checked_add(1);
        }
        assert_eq!(next, None);
    }

    #[test]
    fn no_networks_is_one_default_prefix_per_family() {
        let t = RegionTable::new(&Regions::none());
        assert_eq!(t.v4().len(), 1);
        assert_eq!(t.v6().len(), 1);
        assert!(t.is_trivial());
        assert_eq!(at(&t, "192.0.2.1"), (RegionId::DEFAULT, 0));
        assert_eq!(at(&t, "2001:db8::1"), (RegionId::DEFAULT, 0));
        assert_covers(&t);
    }

    #[test]
    fn the_longest_prefix_wins_and_gaps_are_default() {
        let t = RegionTable::new(&regions(&[
            ("10.0.0.0/8", "eu"),
            ("10.1.0.0/16", "us"),
            ("10.1.2.0/24", "eu"),
            ("192.0.2.0/24", "us"),
        ]));
        let (eu, us) = (RegionId(1), RegionId(2));
        assert_covers(&t);
        assert!(!t.is_trivial());
        assert_eq!(at(&t, "10.1.2.3"), (eu, 24));
        assert_eq!(at(&t, "10.1.3.1"), (us, 24), "10.1.3.0/24 beside the /24");
        assert_eq!(at(&t, "10.1.0.1"), (us, 23), "10.1.0.0/23 before it");
        assert_eq!(at(&t, "10.1.128.0"), (us, 17));
        assert_eq!(at(&t, "10.2.0.1"), (eu, 15), "10.2.0.0/15 after the /16");
        assert_eq!(at(&t, "10.0.0.1"), (eu, 16), "10.0.0.0/16 before it");
        assert_eq!(at(&t, "10.200.0.1"), (eu, 9));
        assert_eq!(at(&t, "9.255.255.255"), (RegionId::DEFAULT, 7), "8.0.0.0/7");
        assert_eq!(at(&t, "11.0.0.0"), (RegionId::DEFAULT, 8));
        assert_eq!(at(&t, "192.0.2.200"), (us, 24));
        assert_eq!(at(&t, "192.0.3.0"), (RegionId::DEFAULT, 24));
        assert_eq!(at(&t, "0.0.0.0"), (RegionId::DEFAULT, 5));
        assert_eq!(
            at(&t, "255.255.255.255"),
            (RegionId::DEFAULT, 3),
            "224.0.0.0/3"
        );
        // Every prefix's length is the scope: all of it has one region.
        for p in t.v4() {
            let end = last(u128::from(p.start), p.len, 32) as u32;
            assert_eq!(t.lookup(Ipv4Addr::from(end).into()), (p.region, p.len));
        }
    }

    #[test]
    fn neighbours_of_one_region_merge_and_duplicates_keep_the_first() {
        let t = RegionTable::new(&regions(&[
            ("192.0.2.0/25", "eu"),
            ("192.0.2.128/25", "eu"),
            ("198.51.100.0/24", "us"),
            ("198.51.100.0/24", "eu"),
            ("203.0.113.0/24", "eu"),
            ("203.0.113.0/25", "eu"),
        ]));
        let (eu, us) = (RegionId(1), RegionId(2));
        assert_eq!(at(&t, "192.0.2.1"), (eu, 24));
        assert_eq!(at(&t, "198.51.100.1"), (us, 24));
        assert_eq!(at(&t, "203.0.113.200"), (eu, 24));
        assert_covers(&t);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let t = RegionTable::new(&regions(&[
            ("2001:db8::/32", "eu"),
            ("2001:db8:1::/48", "us"),
            ("::/0", "eu"),
            ("192.0.2.0/24", "us"),
        ]));
        let (eu, us) = (RegionId(1), RegionId(2));
        assert_covers(&t);
        assert_eq!(at(&t, "2001:db8:1::5"), (us, 48));
        assert_eq!(at(&t, "2001:db8:2::5"), (eu, 47));
        assert_eq!(at(&t, "2001:db9::"), (eu, 32), "the /0 around the /32");
        assert_eq!(at(&t, "ffff::"), (eu, 1));
        assert_eq!(at(&t, "::ffff:192.0.2.9"), (us, 24), "as IPv4");
        assert_eq!(at(&t, "192.0.2.9"), (us, 24));
        assert_eq!(at(&t, "192.0.3.9"), (RegionId::DEFAULT, 24));
    }

    #[test]
    fn a_host_route_and_the_whole_space() {
        let t = RegionTable::new(&regions(&[("0.0.0.0/0", "eu"), ("192.0.2.1/32", "us")]));
        assert_covers(&t);
        assert_eq!(at(&t, "192.0.2.1"), (RegionId(2), 32));
        assert_eq!(at(&t, "192.0.2.0"), (RegionId(1), 32));
        assert_eq!(at(&t, "192.0.2.2"), (RegionId(1), 31));
        assert_eq!(t.v4().len(), 1 + 32);
    }

    #[test]
    fn random_networks_agree_with_a_longest_prefix_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut r = Regions::none();
        let ids: Vec<RegionId> = (0..3).map(|i| r.add(&format!("r{i}")).unwrap()).collect();
        for _ in 0..300 {
            let len = 4 + (rnd() % 20) as u8;
            let addr = Ipv4Addr::from((rnd() as u32) & 0x0fff_ffff);
            let net = ipnet::Ipv4Net::new(addr, len).unwrap().trunc();
            r.networks.push((net.into(), ids[(rnd() % 3) as usize]));
        }
        let t = RegionTable::new(&r);
        assert_covers(&t);
        for _ in 0..3000 {
            let a = (rnd() as u32) & 0x1fff_ffff;
            let want = r
                .networks
                .iter()
                .filter(|(n, _)| n.contains(&IpAddr::from(Ipv4Addr::from(a))))
                .max_by_key(|(n, _)| n.prefix_len())
                .map_or(RegionId::DEFAULT, |&(n, id)| {
                    // The first configured of equal networks.
                    r.networks
                        .iter()
                        .find(|(m, _)| m.trunc() == n.trunc())
                        .map_or(id, |x| x.1)
                });
            let (got, len) = t.lookup(Ipv4Addr::from(a).into());
            assert_eq!(got, want, "{}", Ipv4Addr::from(a));
            // The whole scope prefix is in the region.
            let start = a & !(u32::MAX.checked_shr(u32::from(len)).unwrap_or(0));
            assert_eq!(t.lookup(Ipv4Addr::from(start).into()).0, got);
        }
    }
}
