//! Process limits: the open-file limit, and how its descriptors are shared between the
//! server's TCP connections, the probes and the HTTP API. One place computes the budget;
//! the daemon hands each part its share.
//!
//! * [`raise_nofile`] raises the soft `RLIMIT_NOFILE` to the hard limit at start (what
//!   systemd's `LimitNOFILE` or `ulimit -Hn` allow).
//! * [`release_free_memory`] hands the heap freed after start-up back to the system
//!   (parsing a 10 000-pool config peaks at about 100 MB that the allocator would keep).
//! * [`FdBudget::split`] divides the limit: [`BASE_FDS`] for the process itself (standard
//!   streams, listening sockets, epoll, BPF maps and programs, the event log, name
//!   lookups), the HTTP API's connections (`[api] max_connections`), then TCP connections
//!   get what they are configured for but at most half of the rest, and probes get
//!   everything left (one descriptor per probe in flight; ICMP probes share two sockets).

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
    let want = if lim.rlim_max == libc::RLIM_INFINITY {
        nr_open().unwrap_or(1 << 20)
    } else {
        lim.rlim_max
    };
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

/// Returns the heap memory freed so far to the system (glibc's `malloc_trim`): call once
/// start-up (config parsing, building the tables) is done, so the resident figure is what
/// the daemon uses rather than its start-up peak.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How the open-file limit is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The open-file limit shared out.
    pub limit: u64,
    /// Kept for the process itself ([`BASE_FDS`]).
    pub base: u64,
    /// For HTTP API connections.
    pub api: u64,
    /// Most TCP connections of the DNS server.
    pub tcp: u64,
    /// Most probes in flight.
    pub probes: u64,
}

impl FdBudget {
    /// Shares `limit` descriptors: the base reserve and `api_wanted` API connections first
    /// (as much of them as fits), then `tcp_wanted` TCP connections but at most half of the
    /// rest, then the probes everything left.
    pub fn split(limit: u64, tcp_wanted: u64, api_wanted: u64) -> Self {
        let base = BASE_FDS.min(limit);
        let api = api_wanted.min(limit - base);
        let rest = limit - base - api;
        let tcp = tcp_wanted.min(rest / 2);
        Self {
            limit,
            base,
            api,
            tcp,
            probes: rest - tcp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: u64 = 64;

    #[test]
    fn a_large_limit_satisfies_everyone() {
        let b = FdBudget::split(1 << 20, 1024, API);
        assert_eq!((b.base, b.api, b.tcp), (BASE_FDS, API, 1024));
        assert_eq!(b.probes, (1 << 20) - BASE_FDS - API - 1024);
        assert_eq!(b.base + b.api + b.tcp + b.probes, b.limit);
    }

    #[test]
    fn a_small_limit_keeps_half_of_the_rest_for_probes() {
        // The classic default soft limit with the default TCP connection limit.
        let b = FdBudget::split(1024, 1024, API);
        assert_eq!(b.tcp, (1024 - BASE_FDS - API) / 2);
        assert_eq!(b.probes, 1024 - BASE_FDS - API - b.tcp);
        assert!(b.tcp + b.probes + b.base + b.api <= 1024);
        // TCP asks for little: probes get the rest.
        let b = FdBudget::split(1024, 100, API);
        assert_eq!((b.tcp, b.probes), (100, 1024 - BASE_FDS - API - 100));
    }

    #[test]
    fn a_tiny_limit_never_underflows() {
        for limit in [0, 1, 63, 64, 65, 127, 128, 129] {
            let b = FdBudget::split(limit, 1024, API);
            assert_eq!(b.base + b.api + b.tcp + b.probes, limit, "{b:?}");
        }
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let got = raise_nofile().expect("getrlimit/setrlimit");
        assert!(got.soft >= got.was);
        assert_eq!(nofile().unwrap(), got.soft);
        if got.hard != libc::RLIM_INFINITY {
            assert_eq!(got.soft, got.hard);
        }
    }
}
