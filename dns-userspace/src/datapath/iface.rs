//! The interfaces the XDP program runs on, as it needs to know them: index, MAC address
//! (only frames to it are answered) and whether they are loopback (the acceptance rules'
//! local-client exception, `dns_common::accept`).

use std::{ffi::CStr, io};

/// An interface's index, MAC address and whether it is loopback, in the calling thread's
/// network namespace (from `getifaddrs`'s `AF_PACKET` entries: `/sys/class/net` shows the
/// namespace sysfs was mounted in, which need not be ours).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: [u8; 6],
    pub loopback: bool,
}

impl Link {
    /// The link called `name`, or `None` when there is none.
    pub fn read(name: &str) -> io::Result<Option<Self>> {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `list` with a list we free below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut list) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut found = None;
        let mut cur = list;
        while !cur.is_null() {
            // SAFETY: `cur` is an element of the list getifaddrs returned, not yet freed.
            let ifa = unsafe { &*cur };
            cur = ifa.ifa_next;
            if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
                continue;
            }
            // SAFETY: a NUL-terminated interface name owned by the list.
            if unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != name.as_bytes() {
                continue;
            }
            // SAFETY: a non-null ifa_addr points at a sockaddr of the family it names.
            if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_PACKET {
                continue;
            }
            // SAFETY: an AF_PACKET address is a sockaddr_ll.
            let ll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
            let mut mac = [0u8; 6];
            if usize::from(ll.sll_halen) == mac.len() {
                mac.copy_from_slice(&ll.sll_addr[..6]);
            }
            found = Some(Self {
                index: ll.sll_ifindex as u32,
                mac,
                loopback: ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0,
            });
            break;
        }
        // SAFETY: `list` came from getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(list) };
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_link() {
        let lo = Link::read("lo").expect("getifaddrs").expect("lo");
        assert!(lo.loopback);
        assert_eq!(lo.mac, [0; 6]);
        // SAFETY: if_nametoindex reads a NUL-terminated name.
        assert_eq!(lo.index, unsafe { libc::if_nametoindex(c"lo".as_ptr()) });
        assert_eq!(Link::read("no-such-link0").expect("getifaddrs"), None);
    }
}
