//! The daemon's heartbeat in the kernel: what the XDP program does with a hit once the
//! daemon has not beaten for longer than `[xdp] stale`.
//!
//! The daemon writes `CLOCK_MONOTONIC` nanoseconds (the clock `bpf_ktime_get_coarse_ns` reads, as of the last timer tick)
//! into the pinned `HEARTBEAT` map every [`INTERVAL`], from a task of its runtime: a hung
//! runtime stops beating. The limit and the choice ([`OnStale`]) are in the config map; the
//! kernel compares them on hits only.

use std::{fmt, time::Duration};

/// How often the daemon beats.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Default `[xdp] stale`: longer than a daemon stopped for a few seconds (a restart, a
/// debugger, a stalled host) should matter.
pub const DEFAULT_STALE: Duration = Duration::from_secs(30);
/// Shortest `stale`: two beats, so one late beat is not stale.
pub const MIN_STALE: Duration = Duration::from_secs(2);
/// Longest `stale`.
pub const MAX_STALE: Duration = Duration::from_secs(86_400);

/// What the kernel does with a hit when the heartbeat is stale (`[xdp] on_stale`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    /// Answer with the last published answer (fail-open), counted as `stale_hit`.
    #[default]
    Serve,
    /// Pass the query (counted as `stale`): the daemon answers, if it can.
    Pass,
}

impl fmt::Display for OnStale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Serve => "serve",
            Self::Pass => "pass",
        })
    }
}

/// `[xdp] stale` and `on_stale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staleness {
    /// How old the heartbeat may be; `None`: never stale (`stale = "off"`).
    pub after: Option<Duration>,
    pub on_stale: OnStale,
}

impl Default for Staleness {
    fn default() -> Self {
        Self {
            after: Some(DEFAULT_STALE),
            on_stale: OnStale::default(),
        }
    }
}

impl Staleness {
    /// The limit as the config map holds it (0: off).
    pub fn stale_ns(&self) -> u64 {
        self.after.map_or(0, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        })
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of the kernel's `bpf_ktime_get_coarse_ns`.
pub fn monotonic_ns() -> u64 {
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The age of a heartbeat written at `beat` (0: never written) as of `now`.
pub fn age(beat: u64, now: u64) -> Option<Duration> {
    (beat != 0).then(|| Duration::from_nanos(now.saturating_sub(beat)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_ages() {
        assert_eq!(Staleness::default().stale_ns(), 30_000_000_000);
        let off = Staleness {
            after: None,
            on_stale: OnStale::Pass,
        };
        assert_eq!(off.stale_ns(), 0);
        assert_eq!(age(0, 5), None, "never written");
        assert_eq!(
            age(2_000_000_000, 5_500_000_000),
            Some(Duration::from_millis(3500))
        );
        assert_eq!(
            age(6, 5),
            Some(Duration::ZERO),
            "written after the clock read"
        );
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a);
    }
}
