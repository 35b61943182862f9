//! Which UDP queries are answered at all: the acceptance rules, one copy for the XDP path and
//! the daemon.
//!
//! A UDP reply goes wherever the query's source says, so a spoofed source turns a server into
//! a reflector. Queries are never answered when
//!
//! * the source port is 0 or a [reflection port](REFLECTION_PORTS): a service that answers
//!   any datagram (echo, chargen, NTP, SSDP, memcached, ...), so a reply sent there starts a
//!   loop or an amplified flood ([`Reject::SourcePort`]);
//! * the source is unspecified (`0.0.0.0/8`, `::`), multicast (`224.0.0.0/4`, `ff00::/8`),
//!   the limited broadcast `255.255.255.255` or the broadcast address of one of our subnets
//!   (a reply would go to every host of a network);
//! * the source is loopback (`127.0.0.0/8`, `::1`) or one of our own addresses, *unless the
//!   query arrived on the loopback interface*. Only a process on this host can send a query
//!   that arrives on `lo`, so such a query is a local client and is answered
//!   (`dig @127.0.0.1` and `dig @<our address>` from the host itself); the same sources
//!   arriving on any other interface are spoofed.
//!
//! The rule looks at the interface, not at the destination address, because the kernel sees
//! every frame on the wire addressed to one of our addresses: "own source to own destination"
//! would let every spoofed frame through there. The daemon learns the interface from
//! `IP_PKTINFO`/`IPV6_PKTINFO`, the XDP program from its context.
//!
//! An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`) is judged by the IPv4 rules for `a.b.c.d`.
//! The network stack already drops several of these sources before a socket sees them
//! (martians: loopback and multicast sources on other interfaces, our own addresses with
//! `accept_local=0`), but not all of them (a subnet broadcast source with `rp_filter=0`), and
//! the XDP program runs before any of those checks.

/// Source ports never answered besides 0: UDP services that answer any datagram, so a
/// spoofed query from one of them makes two servers talk to each other, or reflects an
/// amplified reply into a victim's service (US-CERT TA14-017A and later reports). Sorted.
///
/// 7 echo, 13 daytime, 17 qotd, 19 chargen, 37 time, 69 tftp, 111 portmap, 123 NTP,
/// 137 NetBIOS name service, 161 SNMP, 162 SNMP trap, 389 CLDAP, 520 RIP, 1900 SSDP,
/// 3283 Apple Remote Desktop, 3702 WS-Discovery, 5353 mDNS, 5683 CoAP, 10001 Ubiquiti
/// discovery, 11211 memcached.
///
/// None of them is in a modern ephemeral port range (Linux 32768–60999, Windows and the IANA
/// range 49152–65535); a client with an old 1024–5000 range that happens to pick one gets no
/// answer for that query and retries from another port.
pub const REFLECTION_PORTS: [u16; 20] = [
    7, 13, 17, 19, 37, 69, 111, 123, 137, 161, 162, 389, 520, 1900, 3283, 3702, 5353, 5683, 10001,
    11211,
];

macro_rules! rejects {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why a query was not answered: one counter each.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reject {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reject {
            /// All reasons, in discriminant order.
            pub const ALL: &'static [Reject] = &[$(Reject::$variant,)*];

            /// Stable lower-case name, used as the Prometheus `reason` label.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Reject::$variant => $name,)*
                }
            }
        }
    };
}

rejects! {
    /// Source port 0 or one of [`REFLECTION_PORTS`].
    SourcePort = "source_port",
    /// Source `0.0.0.0/8` or `::`.
    Unspecified = "unspecified",
    /// A multicast source.
    Multicast = "multicast",
    /// The limited broadcast or the broadcast address of one of our subnets.
    Broadcast = "broadcast",
    /// A loopback source that did not arrive on the loopback interface.
    Loopback = "loopback",
    /// One of our own addresses as source, not arriving on the loopback interface.
    OwnAddress = "own_address",
}

impl Reject {
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();
}

/// What the caller knows about this host's addresses.
pub trait Local {
    /// Whether `addr` is one of this host's IPv4 addresses.
    fn is_own_v4(&self, addr: [u8; 4]) -> bool;
    /// Whether `addr` is the broadcast address of one of this host's IPv4 subnets.
    fn is_subnet_broadcast_v4(&self, addr: [u8; 4]) -> bool;
    /// Whether `addr` is one of this host's IPv6 addresses.
    fn is_own_v6(&self, addr: &[u8; 16]) -> bool;
}

/// Whether a query from source port `port` may be answered (not 0, not a reflection port).
#[inline(always)]
pub fn port_allowed(port: u16) -> bool {
    if port == 0 {
        return false;
    }
    let mut i = 0;
    while i < REFLECTION_PORTS.len() {
        if REFLECTION_PORTS[i] == port {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks an IPv4 query from `src`:`port`; `on_loopback` tells whether it arrived on the
/// loopback interface.
#[inline(always)]
pub fn check_v4(
    src: [u8; 4],
    port: u16,
    on_loopback: bool,
    local: &impl Local,
) -> Result<(), Reject> {
    if !port_allowed(port) {
        return Err(Reject::SourcePort);
    }
    check_source_v4(src, on_loopback, local)
}

/// Checks an IPv6 query from `src`:`port`; `on_loopback` tells whether it arrived on the
/// loopback interface.
#[inline(always)]
pub fn check_v6(
    src: &[u8; 16],
    port: u16,
    on_loopback: bool,
    local: &impl Local,
) -> Result<(), Reject> {
    if !port_allowed(port) {
        return Err(Reject::SourcePort);
    }
    if let Some(v4) = mapped_v4(src) {
        return check_source_v4(v4, on_loopback, local);
    }
    if *src == [0; 16] {
        return Err(Reject::Unspecified);
    }
    if src[0] == 0xff {
        return Err(Reject::Multicast);
    }
    if on_loopback {
        return Ok(());
    }
    if *src == LOOPBACK_V6 {
        return Err(Reject::Loopback);
    }
    if local.is_own_v6(src) {
        return Err(Reject::OwnAddress);
    }
    Ok(())
}

/// `::1`.
const LOOPBACK_V6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
#[inline(always)]
pub fn mapped_v4(a: &[u8; 16]) -> Option<[u8; 4]> {
    let prefix = a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9];
    (prefix == 0 && a[10] == 0xff && a[11] == 0xff).then_some([a[12], a[13], a[14], a[15]])
}

#[inline(always)]
fn check_source_v4(src: [u8; 4], on_loopback: bool, local: &impl Local) -> Result<(), Reject> {
    if src[0] == 0 {
        return Err(Reject::Unspecified);
    }
    if src[0] & 0xf0 == 224 {
        return Err(Reject::Multicast);
    }
    if src == [255; 4] || local.is_subnet_broadcast_v4(src) {
        return Err(Reject::Broadcast);
    }
    if on_loopback {
        return Ok(());
    }
    if src[0] == 127 {
        return Err(Reject::Loopback);
    }
    if local.is_own_v4(src) {
        return Err(Reject::OwnAddress);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.0.2.1/24 (broadcast 192.0.2.255) and 2001:db8::1.
    struct Host;

    const OWN_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    impl Local for Host {
        fn is_own_v4(&self, addr: [u8; 4]) -> bool {
            addr == [192, 0, 2, 1]
        }
        fn is_subnet_broadcast_v4(&self, addr: [u8; 4]) -> bool {
            addr == [192, 0, 2, 255]
        }
        fn is_own_v6(&self, addr: &[u8; 16]) -> bool {
            *addr == OWN_V6
        }
    }

    fn mapped(v4: [u8; 4]) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&v4);
        a
    }

    #[test]
    fn ports() {
        assert!(!port_allowed(0));
        for p in REFLECTION_PORTS {
            assert!(!port_allowed(p), "{p}");
        }
        for p in [53, 1024, 5300, 32768, 40000, 60999, 65535] {
            assert!(port_allowed(p), "{p}");
        }
        assert!(REFLECTION_PORTS.windows(2).all(|w| w[0] < w[1]), "sorted");
        for p in [7, 19, 37, 123, 161, 389, 1900, 11211] {
            assert!(REFLECTION_PORTS.contains(&p), "issue 10 names {p}");
        }
    }

    #[test]
    fn ipv4_sources() {
        let ok = |src, lo| check_v4(src, 40000, lo, &Host);
        assert_eq!(ok([198, 51, 100, 7], false), Ok(()));
        assert_eq!(ok([192, 0, 2, 7], false), Ok(()), "a neighbour");
        assert_eq!(ok([0, 0, 0, 0], false), Err(Reject::Unspecified));
        assert_eq!(ok([0, 1, 2, 3], true), Err(Reject::Unspecified));
        assert_eq!(ok([224, 0, 0, 251], false), Err(Reject::Multicast));
        assert_eq!(ok([239, 255, 255, 250], true), Err(Reject::Multicast));
        assert_eq!(ok([255, 255, 255, 255], false), Err(Reject::Broadcast));
        assert_eq!(ok([192, 0, 2, 255], false), Err(Reject::Broadcast));
        assert_eq!(ok([192, 0, 2, 255], true), Err(Reject::Broadcast));
        assert_eq!(ok([127, 0, 0, 1], false), Err(Reject::Loopback));
        assert_eq!(ok([127, 1, 2, 3], false), Err(Reject::Loopback));
        assert_eq!(ok([192, 0, 2, 1], false), Err(Reject::OwnAddress));
        // Local clients: loopback and our own addresses arriving on lo.
        assert_eq!(ok([127, 0, 0, 1], true), Ok(()));
        assert_eq!(ok([192, 0, 2, 1], true), Ok(()));
        // The port is checked first, whatever the source.
        assert_eq!(
            check_v4([127, 0, 0, 1], 19, true, &Host),
            Err(Reject::SourcePort)
        );
        assert_eq!(
            check_v4([198, 51, 100, 7], 0, false, &Host),
            Err(Reject::SourcePort)
        );
    }

    #[test]
    fn ipv6_sources() {
        let ok = |src: [u8; 16], lo| check_v6(&src, 40000, lo, &Host);
        let mut other = OWN_V6;
        other[15] = 2;
        assert_eq!(ok(other, false), Ok(()));
        assert_eq!(ok([0; 16], false), Err(Reject::Unspecified));
        let mut mcast = [0u8; 16];
        mcast[0] = 0xff;
        mcast[1] = 0x02;
        mcast[15] = 0xfb;
        assert_eq!(ok(mcast, false), Err(Reject::Multicast));
        assert_eq!(ok(mcast, true), Err(Reject::Multicast));
        assert_eq!(ok(LOOPBACK_V6, false), Err(Reject::Loopback));
        assert_eq!(ok(OWN_V6, false), Err(Reject::OwnAddress));
        assert_eq!(ok(LOOPBACK_V6, true), Ok(()));
        assert_eq!(ok(OWN_V6, true), Ok(()));
        // IPv4-mapped sources follow the IPv4 rules.
        assert_eq!(ok(mapped([127, 0, 0, 1]), false), Err(Reject::Loopback));
        assert_eq!(ok(mapped([192, 0, 2, 255]), false), Err(Reject::Broadcast));
        assert_eq!(ok(mapped([192, 0, 2, 1]), false), Err(Reject::OwnAddress));
        assert_eq!(
            ok(mapped([255, 255, 255, 255]), false),
            Err(Reject::Broadcast)
        );
        assert_eq!(ok(mapped([198, 51, 100, 7]), false), Ok(()));
        assert_eq!(
            check_v6(&other, 11211, false, &Host),
            Err(Reject::SourcePort)
        );
    }

    #[test]
    fn reasons_are_dense_and_named_once() {
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            for other in &Reject::ALL[i + 1..] {
                assert_ne!(r.name(), other.name());
            }
        }
    }
}
