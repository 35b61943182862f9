//! The time, for the rate limiter and the staleness check: `CLOCK_MONOTONIC_COARSE`
//! (`bpf_ktime_get_coarse_ns`, kernel 5.11), read at most once per packet.
//!
//! The coarse clock is the time of the last timer tick (1–4 ms old, by `CONFIG_HZ`): a few
//! loads, where `bpf_ktime_get_ns` reads the clock source itself (the TSC through kvm-clock
//! on a VM: 30–50 ns per call measured here, more than the rest of the rate limiter). Both
//! uses are far coarser than a tick: RRL counts answers per second (a tick shifts a
//! bucket's refill by at most one tick), and the heartbeat's staleness is seconds. The
//! daemon writes its heartbeat from `CLOCK_MONOTONIC`, so the coarse clock can read up to a
//! tick *behind* a fresh beat; `dns_common::is_stale` treats a beat from the future as
//! fresh.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;

/// The clock of one packet: read on first use, then remembered.
pub struct Clock(Option<u64>);

impl Clock {
    #[inline(always)]
    pub fn new() -> Self {
        Self(None)
    }

    /// `CLOCK_MONOTONIC_COARSE` in nanoseconds.
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        match self.0 {
            Some(t) => t,
            None => {
                // SAFETY: a helper without arguments.
                let t = unsafe { bpf_ktime_get_coarse_ns() };
                self.0 = Some(t);
                t
            }
        }
    }
}
