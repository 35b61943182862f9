//! Process limits: the open-file limit, and how its descriptors are shared between the
//! HTTP API, the server's TCP connections and the probes. One place computes the budget;
//! the daemon hands each part its share, and each part enforces it: the DNS server never
//! holds more TCP connections than its share, the probe scheduler never runs more probes
//! at once, so a flood of TCP clients cannot take the descriptors probes and the API need.
//!
//! * [`raise_nofile`] raises the soft `RLIMIT_NOFILE` to the hard limit at start (what
//!   systemd's `LimitNOFILE` or `ulimit -Hn` allow).
//! * [`FdBudget::split`] divides the limit: [`BASE_FDS`] plus one per UDP socket for the
//!   process itself (standard streams, listening sockets, epoll, BPF maps and programs,
//!   the event log, name lookups), the HTTP API's connections (`[api] max_connections`
//!   per listener), then TCP connections get at most half of the rest (what
//!   `server.tcp_max_connections` asks for; unset, that half up to
//!   [`MAX_DERIVED_TCP_CONNECTIONS`]), and probes get everything left (one descriptor per
//!   probe in flight; ICMP probes share two sockets).

use std::io;

/// Descriptors kept for the process itself.
pub const BASE_FDS: u64 = 64;

/// The open-file limit before and after [`raise_nofile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoFile {
    /// The soft limit found at start.
    pub was: u64,
    /// The soft limit now: what the process may open.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit (capped at what fits the kernel's
/// `nr_open` when the hard limit is unlimited).
pub fn raise_nofile() -> io::Result<NoFile> {
    let lim = nofile_limits()?;
    let was = lim.rlim_cur;
    let want = hard_reachable(&lim);
    if want > was {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(NoFile {
        was,
        soft: want.max(was),
        hard: lim.rlim_max,
    })
}

/// The soft open-file limit now.
pub fn nofile() -> io::Result<u64> {
    Ok(nofile_limits()?.rlim_cur)
}

/// The soft open-file limit [`raise_nofile`] would reach, without raising it (what
/// `hotpool check` reports).
pub fn nofile_reachable() -> io::Result<u64> {
    let lim = nofile_limits()?;
    Ok(hard_reachable(&lim).max(lim.rlim_cur))
}

/// The hard limit, or what fits the kernel's `nr_open` when it is unlimited.
fn hard_reachable(lim: &libc::rlimit) -> u64 {
    if lim.rlim_max == libc::RLIM_INFINITY {
        nr_open().unwrap_or(1 << 20)
    } else {
        lim.rlim_max
    }
}

/// The soft and hard open-file limits.
fn nofile_limits() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// TCP connections may take at least this many descriptors whatever half of the rest is
/// (a daemon with a tiny limit still serves TCP).
pub const MIN_TCP_CONNECTIONS: u64 = 16;
/// Most TCP connections when `server.tcp_max_connections` is not set (each costs memory,
/// not just a descriptor).
pub const MAX_DERIVED_TCP_CONNECTIONS: u64 = 65_536;
/// TCP connections of a server started without a budget (tests that bind a server
/// without the daemon's start-up).
pub const FALLBACK_TCP_CONNECTIONS: usize = 1024;

/// What the parts of the daemon ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdWants {
    /// The server's UDP sockets (a worker's socket per listen address).
    pub udp_sockets: u64,
    /// HTTP API connections at once, every listener's together.
    pub api: u64,
    /// `server.tcp_max_connections`; `None`: what the budget allows.
    pub tcp: Option<u64>,
}

/// How the open-file limit is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The open-file limit shared out.
    pub limit: u64,
    /// Kept for the process itself ([`BASE_FDS`] and the UDP sockets).
    pub base: u64,
    /// For HTTP API connections.
    pub api: u64,
    /// Most TCP connections of the DNS server (the server enforces it).
    pub tcp: u64,
    /// Most probes in flight (the probe scheduler enforces it).
    pub probes: u64,
    /// The TCP connections asked for, when more than the budget gives.
    pub tcp_lowered_from: Option<u64>,
}

impl FdBudget {
    /// Shares `limit` descriptors: the process's own and the API's first (as much of them
    /// as fits), then TCP connections what they ask for but at most half of the rest (at
    /// least [`MIN_TCP_CONNECTIONS`] of it; unasked, [`MAX_DERIVED_TCP_CONNECTIONS`] at
    /// most), then the probes everything left.
    pub fn split(limit: u64, wants: FdWants) -> Self {
        let base = BASE_FDS.saturating_add(wants.udp_sockets).min(limit);
        let api = wants.api.min(limit - base);
        let rest = limit - base - api;
        let tcp_cap = (rest / 2).max(MIN_TCP_CONNECTIONS).min(rest);
        let tcp = wants
            .tcp
            .unwrap_or(MAX_DERIVED_TCP_CONNECTIONS)
            .min(tcp_cap);
        Self {
            limit,
            base,
            api,
            tcp,
            probes: rest - tcp,
            tcp_lowered_from: wants.tcp.filter(|&n| n > tcp),
        }
    }

    /// [`FdBudget::tcp`] for the server (at least 1).
    pub fn tcp_connections(&self) -> usize {
        usize::try_from(self.tcp.max(1)).unwrap_or(usize::MAX)
    }

    /// [`FdBudget::probes`] for the probe scheduler.
    pub fn probes_in_flight(&self) -> usize {
        usize::try_from(self.probes).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: u64 = 64;

    fn wants(tcp: Option<u64>) -> FdWants {
        FdWants {
            udp_sockets: 4,
            api: API,
            tcp,
        }
    }

    fn assert_shared_out(b: &FdBudget) {
        assert_eq!(b.base + b.api + b.tcp + b.probes, b.limit, "{b:?}");
    }

    #[test]
    fn a_large_limit_satisfies_everyone() {
        let b = FdBudget::split(1 << 20, wants(Some(1024)));
        assert_eq!((b.base, b.api, b.tcp), (BASE_FDS + 4, API, 1024));
        assert_eq!(b.probes, (1 << 20) - BASE_FDS - 4 - API - 1024);
        assert_eq!(b.tcp_lowered_from, None);
        assert_shared_out(&b);
    }

    #[test]
    fn unset_tcp_takes_half_of_the_rest_up_to_a_cap() {
        let b = FdBudget::split(1024, wants(None));
        let rest = 1024 - BASE_FDS - 4 - API;
        assert_eq!((b.tcp, b.probes), (rest / 2, rest - rest / 2));
        assert_eq!(b.tcp_lowered_from, None, "nothing was asked for");
        assert_shared_out(&b);
        // The unit's LimitNOFILE=65536: about 32 000 each.
        let b = FdBudget::split(65_536, wants(None));
        assert!((32_000..32_768).contains(&b.tcp), "{b:?}");
        assert!(b.probes >= b.tcp);
        // A huge limit: TCP is capped, probes get the rest.
        let b = FdBudget::split(1 << 24, wants(None));
        assert_eq!(b.tcp, MAX_DERIVED_TCP_CONNECTIONS);
        assert_shared_out(&b);
    }

    #[test]
    fn a_small_limit_keeps_half_of_the_rest_for_probes() {
        // The classic default soft limit with a configured TCP connection limit of 1024.
        let b = FdBudget::split(1024, wants(Some(1024)));
        let rest = 1024 - BASE_FDS - 4 - API;
        assert_eq!(b.tcp, rest / 2);
        assert_eq!(b.probes, rest - b.tcp);
        assert_eq!(b.tcp_lowered_from, Some(1024), "lowered, and says so");
        assert_shared_out(&b);
        // TCP asks for little: probes get the rest.
        let b = FdBudget::split(1024, wants(Some(100)));
        assert_eq!((b.tcp, b.probes), (100, rest - 100));
        assert_eq!(b.tcp_lowered_from, None);
    }

    #[test]
    fn more_sockets_or_api_connections_leave_fewer_tcp_connections_and_probes() {
        let b = FdBudget::split(4096, wants(None));
        for more in [
            FdWants {
                udp_sockets: 64,
                ..wants(None)
            },
            FdWants {
                api: 1000,
                ..wants(None)
            },
        ] {
            let m = FdBudget::split(4096, more);
            assert!(m.tcp < b.tcp && m.probes < b.probes, "{m:?} against {b:?}");
            assert_shared_out(&m);
        }
    }

    #[test]
    fn a_tiny_limit_never_underflows_and_still_serves_tcp() {
        for limit in [0, 1, 63, 64, 65, 127, 128, 129, 200] {
            for tcp in [None, Some(1), Some(1024)] {
                let b = FdBudget::split(limit, wants(tcp));
                assert_shared_out(&b);
                assert!(b.tcp_connections() >= 1);
            }
        }
        // Half of a small rest would be fewer than the floor: TCP gets the floor.
        let b = FdBudget::split(BASE_FDS + 4 + API + 20, wants(None));
        assert_eq!((b.tcp, b.probes), (MIN_TCP_CONNECTIONS, 4));
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let reachable = nofile_reachable().expect("getrlimit");
        let got = raise_nofile().expect("getrlimit/setrlimit");
        assert_eq!(got.soft, reachable, "what check reports is what run gets");
        assert!(got.soft >= got.was);
        assert_eq!(nofile().unwrap(), got.soft);
        if got.hard != libc::RLIM_INFINITY {
            assert_eq!(got.soft, got.hard);
        }
    }
}
