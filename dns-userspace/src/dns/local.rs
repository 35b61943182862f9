//! This host's addresses, for the acceptance rules ([`dns_common::accept`]): our own
//! addresses, the broadcast addresses of our IPv4 subnets (the configured broadcast
//! address, and the all-ones host part of every subnet of /30 or wider, whether or not a
//! broadcast address was configured: other hosts on that network may treat it as one), and
//! which interfaces are loopback. Read with `getifaddrs` in the network namespace of the calling thread, and
//! re-read every few seconds by the server (addresses come and go).

use std::{ffi::CStr, io, net::IpAddr};

use dns_common::accept::Local;

/// The host's addresses at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// Sorted, for binary search.
    own_v4: Vec<[u8; 4]>,
    broadcast_v4: Vec<[u8; 4]>,
    own_v6: Vec<[u8; 16]>,
    /// Interface indexes of loopback interfaces.
    loopback: Vec<u32>,
}

impl LocalAddrs {
    /// The addresses of the calling thread's network namespace.
    pub fn read() -> io::Result<Self> {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `list` with a list we free below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut list) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Self::default();
        let mut cur = list;
        while !cur.is_null() {
            // SAFETY: `cur` is an element of the list getifaddrs returned, not yet freed.
            let ifa = unsafe { &*cur };
            cur = ifa.ifa_next;
            let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
            if loopback && !ifa.ifa_name.is_null() {
                // SAFETY: a NUL-terminated interface name owned by the list.
                let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
                // SAFETY: if_nametoindex reads the NUL-terminated name.
                let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
                if index != 0 && !out.loopback.contains(&index) {
                    out.loopback.push(index);
                }
            }
            // SAFETY: a non-null ifa_addr points at a sockaddr of the family it names.
            match unsafe { sockaddr_ip(ifa.ifa_addr) } {
                Some(IpAddr::V4(a)) => {
                    out.own_v4.push(a.octets());
                    let broadcast = ifa.ifa_flags & libc::IFF_BROADCAST as u32 != 0;
                    // SAFETY: with IFF_BROADCAST, ifa_ifu is the broadcast address.
                    if broadcast && let Some(IpAddr::V4(b)) = unsafe { sockaddr_ip(ifa.ifa_ifu) } {
                        out.broadcast_v4.push(b.octets());
                    }
                    // SAFETY: ifa_netmask is null or a sockaddr of the address's family.
                    if let Some(IpAddr::V4(mask)) = unsafe { sockaddr_ip(ifa.ifa_netmask) }
                        && let Some(b) = subnet_broadcast(a, mask)
                    {
                        out.broadcast_v4.push(b.octets());
                    }
                }
                Some(IpAddr::V6(a)) => out.own_v6.push(a.octets()),
                None => {}
            }
        }
        // SAFETY: `list` came from getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(list) };
        out.own_v4.sort_unstable();
        out.own_v4.dedup();
        out.broadcast_v4.sort_unstable();
        out.broadcast_v4.dedup();
        out.own_v6.sort_unstable();
        out.own_v6.dedup();
        Ok(out)
    }

    /// A fixed set (for tests).
    pub fn from_parts(
        own: impl IntoIterator<Item = IpAddr>,
        broadcast_v4: impl IntoIterator<Item = std::net::Ipv4Addr>,
        loopback_ifindexes: impl IntoIterator<Item = u32>,
    ) -> Self {
        let mut out = Self::default();
        for a in own {
            match a {
                IpAddr::V4(a) => out.own_v4.push(a.octets()),
                IpAddr::V6(a) => out.own_v6.push(a.octets()),
            }
        }
        out.broadcast_v4 = broadcast_v4.into_iter().map(|b| b.octets()).collect();
        out.loopback = loopback_ifindexes.into_iter().collect();
        out.own_v4.sort_unstable();
        out.broadcast_v4.sort_unstable();
        out.own_v6.sort_unstable();
        out
    }

    /// The entries of the kernel's `LOCAL_ADDRS` map: every address (IPv4 as IPv4-mapped
    /// IPv6) with its `LOCAL_OWN` / `LOCAL_BROADCAST` flags.
    pub fn kernel_entries(&self) -> std::collections::HashMap<[u8; 16], u8> {
        let mut out = std::collections::HashMap::new();
        for a in &self.own_v4 {
            *out.entry(dns_common::v4_mapped(*a)).or_insert(0) |= dns_common::LOCAL_OWN;
        }
        for a in &self.broadcast_v4 {
            *out.entry(dns_common::v4_mapped(*a)).or_insert(0) |= dns_common::LOCAL_BROADCAST;
        }
        for a in &self.own_v6 {
            *out.entry(*a).or_insert(0) |= dns_common::LOCAL_OWN;
        }
        out
    }

    /// Whether interface `index` is a loopback interface.
    pub fn is_loopback_interface(&self, index: u32) -> bool {
        self.loopback.contains(&index)
    }
}

impl Local for LocalAddrs {
    fn is_own_v4(&self, addr: [u8; 4]) -> bool {
        self.own_v4.binary_search(&addr).is_ok()
    }

    fn is_subnet_broadcast_v4(&self, addr: [u8; 4]) -> bool {
        self.broadcast_v4.binary_search(&addr).is_ok()
    }

    fn is_own_v6(&self, addr: &[u8; 16]) -> bool {
        self.own_v6.binary_search(addr).is_ok()
    }
}

/// The all-ones host address of `addr`'s subnet, for subnets of /30 or wider (a /31 or /32
/// has no broadcast address, RFC 3021).
fn subnet_broadcast(
    addr: std::net::Ipv4Addr,
    mask: std::net::Ipv4Addr,
) -> Option<std::net::Ipv4Addr> {
    let mask = u32::from(mask);
    (mask.count_ones() <= 30 && mask != 0).then(|| (u32::from(addr) | !mask).into())
}

/// The address in a `sockaddr` of family AF_INET or AF_INET6.
///
/// # Safety
/// `sa` is null or points at a valid sockaddr of the family in its `sa_family`.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the contract, `sa` points at a sockaddr whose family says its type.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
            }
            libc::AF_INET6 => {
                let sin6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(sin6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn the_host_has_a_loopback_interface_with_its_addresses() {
        let local = LocalAddrs::read().expect("getifaddrs");
        assert!(local.is_own_v4([127, 0, 0, 1]), "{local:?}");
        assert!(!local.loopback.is_empty(), "{local:?}");
        // SAFETY: if_nametoindex reads a NUL-terminated name.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert!(local.is_loopback_interface(lo));
        assert!(!local.is_own_v4([192, 0, 2, 1]));
        assert!(!local.is_subnet_broadcast_v4([127, 0, 0, 1]));
    }

    #[test]
    fn kernel_entries_carry_own_and_broadcast_flags() {
        let local = LocalAddrs::from_parts(
            [
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            [Ipv4Addr::new(10, 0, 0, 255), Ipv4Addr::new(10, 0, 0, 1)],
            [],
        );
        let e = local.kernel_entries();
        let own = dns_common::LOCAL_OWN;
        let bcast = dns_common::LOCAL_BROADCAST;
        assert_eq!(e.len(), 3);
        assert_eq!(e[&dns_common::v4_mapped([10, 0, 0, 1])], own | bcast);
        assert_eq!(e[&dns_common::v4_mapped([10, 0, 0, 255])], bcast);
        assert_eq!(e[&Ipv6Addr::LOCALHOST.octets()], own);
    }

    #[test]
    fn subnet_broadcasts_from_the_netmask() {
        let b = |a: [u8; 4], m: [u8; 4]| subnet_broadcast(a.into(), m.into());
        assert_eq!(
            b([10, 0, 0, 1], [255, 255, 255, 0]),
            Some([10, 0, 0, 255].into())
        );
        assert_eq!(
            b([10, 0, 1, 1], [255, 255, 254, 0]),
            Some([10, 0, 1, 255].into())
        );
        assert_eq!(
            b([192, 0, 2, 1], [255, 255, 255, 252]),
            Some([192, 0, 2, 3].into())
        );
        assert_eq!(b([192, 0, 2, 1], [255, 255, 255, 254]), None, "/31");
        assert_eq!(b([127, 0, 0, 1], [255, 255, 255, 255]), None, "/32");
        assert_eq!(
            b([127, 0, 0, 1], [255, 0, 0, 0]),
            Some([127, 255, 255, 255].into())
        );
    }

    #[test]
    fn fixed_sets_answer_membership() {
        let local = LocalAddrs::from_parts(
            [
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            [Ipv4Addr::new(10, 0, 0, 255)],
            [1],
        );
        assert!(local.is_own_v4([10, 0, 0, 1]));
        assert!(local.is_subnet_broadcast_v4([10, 0, 0, 255]));
        assert!(local.is_own_v6(&Ipv6Addr::LOCALHOST.octets()));
        assert!(local.is_loopback_interface(1));
        assert!(!local.is_loopback_interface(2));
    }
}
