//! How large a UDP reply may be: one rule for the XDP path and the daemon.
//!
//! RFC 6891 §6.2.5: the requestor's UDP payload size is the most it accepts, and values
//! below 512 count as 512; a query without EDNS accepts 512 (RFC 1035 §4.2.1). The
//! responder's own configured size caps it as well (`server.edns_udp_size`, 1232 by default),
//! so a small query asking for 4096 octets never gets a reply that fragments or amplifies
//! beyond what the server advertises. A reply that does not fit is truncated (TC=1) by the
//! daemon; the kernel passes such queries to the daemon.

use crate::PLAIN_UDP_LIMIT;

/// Largest UDP reply for a query whose OPT record advertised `client` (None: no EDNS), from
/// a server configured for `ours`: min(max(512, client), max(512, ours)), 512 without EDNS.
#[inline(always)]
pub const fn max_reply(client: Option<u16>, ours: u16) -> usize {
    let client = match client {
        Some(size) => at_least_plain(size),
        None => PLAIN_UDP_LIMIT,
    };
    let ours = at_least_plain(ours);
    if client < ours { client } else { ours }
}

/// `size`, but never less than 512.
#[inline(always)]
const fn at_least_plain(size: u16) -> usize {
    if (size as usize) < PLAIN_UDP_LIMIT {
        PLAIN_UDP_LIMIT
    } else {
        size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_of_the_two_sizes_and_never_below_512() {
        // The finding of issue 10: a 4096-octet EDNS query against our 1232.
        assert_eq!(max_reply(Some(4096), 1232), 1232);
        assert_eq!(max_reply(Some(1232), 4096), 1232);
        assert_eq!(max_reply(Some(1400), 1232), 1232);
        assert_eq!(max_reply(Some(800), 1232), 800);
        assert_eq!(max_reply(Some(4096), 4096), 4096);
        // Without EDNS: 512 whatever we advertise.
        assert_eq!(max_reply(None, 1232), 512);
        assert_eq!(max_reply(None, 4096), 512);
        // Sizes below 512 count as 512, on either side.
        assert_eq!(max_reply(Some(0), 1232), 512);
        assert_eq!(max_reply(Some(100), 1232), 512);
        assert_eq!(max_reply(Some(4096), 0), 512);
        assert_eq!(max_reply(Some(u16::MAX), u16::MAX), 65535);
    }
}
