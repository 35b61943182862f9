//! The file-descriptor budget: one place that says how many descriptors the daemon has and
//! who gets them, so TCP clients can never take the ones probes and the API need.
//!
//! At start the daemon raises its soft `RLIMIT_NOFILE` to the hard limit (logged), then
//! reserves descriptors for what is not a TCP client — its own sockets, files and maps
//! ([`BASE_RESERVE`]), the UDP sockets, the probes in flight (two each: a probe may hold a
//! socket and a resolver's or TLS stack's), the API's connections (`[api]
//! max_connections` per listener) — and
//! allows TCP clients half of the rest by default (`tcp_max_connections` overrides it).
//! With the common 1024 hard limit that is a few hundred TCP connections; a systemd unit
//! with `LimitNOFILE=65536` gives about 32 000.

use std::io;

/// Descriptors for the daemon itself: standard streams, log and event files, pinned maps,
/// the XDP program, TCP listeners, the runtime's epoll and event descriptors.
pub const BASE_RESERVE: u64 = 64;
/// Descriptors per probe in flight.
pub const PER_PROBE: u64 = 2;
/// Fewest TCP connections a budget allows (a daemon with a tiny limit still serves TCP).
pub const MIN_TCP_CONNECTIONS: usize = 16;
/// Most TCP connections a derived budget allows (each costs memory, not just a descriptor).
pub const MAX_DERIVED_TCP_CONNECTIONS: usize = 65_536;
/// TCP connections when no budget was computed (a server started without the daemon's
/// start-up, as in tests): the old fixed default.
pub const FALLBACK_TCP_CONNECTIONS: usize = 1024;

/// The open-file limit before and after [`raise_nofile_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit.
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(NofileLimit {
        before,
        now: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Who gets the descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The open-file limit.
    pub limit: u64,
    /// Descriptors kept for everything but TCP clients.
    pub reserved: u64,
    /// Default TCP connection limit.
    pub tcp_connections: usize,
}

impl FdBudget {
    /// The budget of `limit` descriptors with `udp_sockets` UDP sockets,
    /// `probes_in_flight` probes and `api_connections` API connections at once.
    pub fn new(
        limit: u64,
        udp_sockets: usize,
        probes_in_flight: usize,
        api_connections: usize,
    ) -> Self {
        let reserved = BASE_RESERVE
            + udp_sockets as u64
            + PER_PROBE * probes_in_flight as u64
            + api_connections as u64;
        let spare = limit.saturating_sub(reserved) / 2;
        let tcp = usize::try_from(spare)
            .unwrap_or(usize::MAX)
            .clamp(MIN_TCP_CONNECTIONS, MAX_DERIVED_TCP_CONNECTIONS);
        Self {
            limit,
            reserved,
            tcp_connections: tcp,
        }
    }

    /// Whether `tcp_connections` TCP clients fit without touching the reserve.
    pub fn fits(&self, tcp_connections: usize) -> bool {
        (tcp_connections as u64).saturating_add(self.reserved) <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_what_is_not_reserved() {
        let b = FdBudget::new(1024, 4, 64, 64);
        assert_eq!(b.reserved, 64 + 64 + 4 + 128);
        assert_eq!(b.tcp_connections, (1024 - 260) / 2);
        assert!(b.fits(b.tcp_connections));
        assert!(!b.fits(1024));
        // Large limits are capped; tiny ones keep a floor.
        assert_eq!(
            FdBudget::new(1 << 20, 4, 64, 64).tcp_connections,
            MAX_DERIVED_TCP_CONNECTIONS
        );
        assert_eq!(
            FdBudget::new(100, 4, 64, 64).tcp_connections,
            MIN_TCP_CONNECTIONS
        );
        // More probes leave fewer connections.
        assert!(
            FdBudget::new(4096, 4, 1000, 64).tcp_connections
                < FdBudget::new(4096, 4, 10, 64).tcp_connections
        );
        // So do more API connections.
        assert!(
            FdBudget::new(4096, 4, 10, 1000).tcp_connections
                < FdBudget::new(4096, 4, 10, 64).tcp_connections
        );
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let l = raise_nofile_limit().expect("getrlimit/setrlimit");
        assert_eq!(l.now, l.hard);
        assert!(l.now >= l.before);
    }
}
