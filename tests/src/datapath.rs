//! A loaded XDP program with its own pin directory, removed on drop (also after a panic).

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use dns_common::Outcome;
use hickory_proto::rr::{Name, RData, RecordType, rdata::A};
use hotpool::{
    datapath::iface::Link,
    datapath::{
        ebpf::Datapath,
        heartbeat::Staleness,
        hot::{Capacity, DatapathSettings},
        pools::{PoolAnswer, Selection},
    },
    dns::local::LocalAddrs,
    geo::RegionId,
};

use crate::frames::SERVER_MAC;

/// XDP return codes.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Settings of a test program: port 53, answering on `listen` and advertising
/// `edns_udp_size`; no staleness, no rate limiting.
pub fn settings(listen: &[&str], edns_udp_size: u16) -> DatapathSettings {
    DatapathSettings {
        port: 53,
        edns_udp_size,
        listen: listen
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect(),
        prefer_headroom: false,
        staleness: Staleness::default(),
        rrl: Default::default(),
    }
}

/// A pool answering one A record, 192.0.2.`host`, to the clients of `region`.
pub fn a_pool(name: &str, host: u8, region: RegionId) -> PoolAnswer {
    PoolAnswer::new(
        Name::from_ascii(name).expect("a pool name"),
        RecordType::A,
        30,
        vec![RData::A(A(Ipv4Addr::new(192, 0, 2, host)))],
        Selection::All,
    )
    .in_region(region)
}

pub struct TestDatapath {
    pub dp: Datapath,
    dir: PathBuf,
}

/// The interface `BPF_PROG_TEST_RUN` runs frames on: the loopback device of the caller's
/// network namespace (index 1), described to the program as an Ethernet interface with
/// [`SERVER_MAC`] (so loopback sources are rejected as on the wire).
pub fn test_run_link() -> Link {
    Link {
        index: 1,
        mac: SERVER_MAC,
        loopback: false,
    }
}

/// This host's addresses as the tests' program sees them: the listened addresses, each IPv4
/// one in a /24 whose broadcast address is `a.b.c.255`.
pub fn local_addrs(settings: &DatapathSettings) -> LocalAddrs {
    let own: Vec<IpAddr> = settings
        .listen
        .iter()
        .copied()
        .filter(|a| !a.is_unspecified())
        .collect();
    let broadcast = own.iter().filter_map(|a| match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(Ipv4Addr::new(o[0], o[1], o[2], 255))
        }
        IpAddr::V6(_) => None,
    });
    LocalAddrs::from_parts(own.clone(), broadcast.collect::<Vec<_>>(), [])
}

impl TestDatapath {
    /// Loads the program (pins under a fresh directory), configures it and publishes `pools`
    /// (room for every pool to become weighted with eight variants).
    pub fn new(settings: &DatapathSettings, pools: &[PoolAnswer]) -> Self {
        let capacity = Capacity::for_pools(pools.iter().map(|_| dns_common::MAX_VARIANTS));
        Self::with_capacity(settings, pools, &capacity)
    }

    /// As [`Self::new`], with maps of the given sizes.
    pub fn with_capacity(
        settings: &DatapathSettings,
        pools: &[PoolAnswer],
        capacity: &Capacity,
    ) -> Self {
        crate::require_root();
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/hotpool-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A run killed before its drop leaves its pins; a later process with the same id
        // would otherwise meet them.
        let _ = std::fs::remove_dir_all(&dir);
        let mut dp =
            Datapath::load(&dir, capacity).unwrap_or_else(|e| panic!("loading XDP: {e:?}"));
        // As the daemon does: a heartbeat before the settings with their staleness.
        dp.maps.beat().expect("writing the heartbeat");
        dp.maps
            .set_interface(&test_run_link())
            .expect("describing the interface");
        dp.maps
            .set_local_addrs(&local_addrs(settings).kernel_entries())
            .expect("writing the local addresses");
        dp.maps.configure(settings, true).expect("configuring");
        dp.maps.sync(pools).expect("publishing pools");
        Self { dp, dir }
    }

    /// The pin directory (another [`Datapath`] loaded there takes over the pinned maps).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Runs one frame through BPF_PROG_TEST_RUN: (action, output frame).
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.test_run(frame, None)
    }

    /// As [`Self::run`], with `metalen` octets of XDP metadata in front of the frame (they
    /// come out of the headroom: `BPF_PROG_TEST_RUN` takes them from `xdp_md.data`).
    pub fn run_with_metadata(&mut self, frame: &[u8], metalen: u32) -> (u32, Vec<u8>) {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[0..4].copy_from_slice(&metalen.to_ne_bytes());
        ctx[4..8].copy_from_slice(&(metalen + frame.len() as u32).to_ne_bytes());
        let mut data = vec![0u8; metalen as usize];
        data.extend_from_slice(frame);
        let (action, mut out) = self.test_run(&data, Some(&ctx));
        (action, out.split_off(metalen as usize))
    }

    /// One BPF_PROG_TEST_RUN of `frame`: (action, the kernel's measured run time).
    pub fn timed_run(&mut self, frame: &[u8]) -> (u32, std::time::Duration) {
        let mut out = vec![0u8; 4096];
        let r = self
            .dp
            .xdp()
            .expect("program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        (r.return_value, r.duration)
    }

    fn test_run(&mut self, data: &[u8], ctx: Option<&[u8]>) -> (u32, Vec<u8>) {
        test_run(self.dp.xdp().expect("program"), data, ctx)
    }

    /// Counter totals per outcome.
    pub fn stats(&self) -> Vec<(Outcome, u64)> {
        self.dp.maps.stats().expect("reading stats")
    }
}

impl Drop for TestDatapath {
    fn drop(&mut self) {
        // A pinned link would keep the program attached: take it off first.
        let _ = hotpool::datapath::link::detach_pinned(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One BPF_PROG_TEST_RUN of `data` through `prog` (with an `xdp_md` context when given):
/// (action, output data).
pub fn test_run(prog: &Xdp, data: &[u8], ctx: Option<&[u8]>) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 4096];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(data),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// The one outcome whose counter moved between two snapshots, asserting exactly one moved
/// by exactly one.
pub fn single_outcome(before: &[(Outcome, u64)], after: &[(Outcome, u64)]) -> Outcome {
    let moved: Vec<(Outcome, u64)> = before
        .iter()
        .zip(after)
        .filter(|(b, a)| a.1 != b.1)
        .map(|(b, a)| (a.0, a.1 - b.1))
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "expected one counter to move, got {moved:?}"
    );
    assert_eq!(moved[0].1, 1, "counter moved by more than one: {moved:?}");
    moved[0].0
}
