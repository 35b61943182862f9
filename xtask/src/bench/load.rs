//! Load generators run from the client namespace: dnsperf (maximum rate through the kernel's
//! UDP stack), kxdpgun (AF_XDP, far beyond what a socket client can send), and a fixed-rate
//! UDP client of our own that timestamps every query for latency percentiles. Each run also
//! records whole-box CPU time and the server namespace's UDP receive-buffer drops.

use std::{
    net::{SocketAddr, SocketAddrV4, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use hickory_proto::rr::RecordType;

use super::{
    dns::{self, QueryLine},
    interrupt,
    net::{CpuTimes, Link, snmp_counter},
};
use crate::cmd;

/// Whole-box CPU and the server namespace's UDP drops over one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Busy CPU seconds, all cores, everything on the box (load generator included).
    pub cpu_secs: f64,
    /// `Udp: RcvbufErrors` in the server namespace.
    pub rcvbuf_drops: u64,
}

impl Cost {
    /// CPU seconds per 100 000 answered queries.
    pub fn per_100k(&self, answered: u64) -> Option<f64> {
        (answered > 0).then(|| self.cpu_secs * 100_000.0 / answered as f64)
    }
}

/// Runs `f`, measuring its [`Cost`].
pub fn costed<T>(link: &Link, f: impl FnOnce() -> Result<T>) -> Result<(T, Cost)> {
    let drops = || -> Result<u64> {
        let snmp = link.server.snmp()?;
        snmp_counter(&snmp, "Udp", "RcvbufErrors")
            .ok_or_else(|| anyhow!("no Udp RcvbufErrors in the server's /proc/net/snmp"))
    };
    let drops_before = drops()?;
    let cpu_before = CpuTimes::now()?;
    let value = f()?;
    let cpu_after = CpuTimes::now()?;
    let drops_after = drops()?;
    Ok((
        value,
        Cost {
            cpu_secs: cpu_after.busy_secs_since(&cpu_before),
            rcvbuf_drops: drops_after.saturating_sub(drops_before),
        },
    ))
}

/// What dnsperf reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dnsperf {
    pub sent: u64,
    pub completed: u64,
    pub qps: f64,
}

/// dnsperf at its maximum rate for `seconds`: 8 clients (sockets, as in the issue), 2 threads
/// (one per core), up to 256 queries outstanding, 2 s timeout.
pub fn dnsperf(link: &Link, file: &Path, seconds: u32) -> Result<Dnsperf> {
    let out = cmd::output(
        link.client
            .command("dnsperf")
            .args(["-s", &link.server_v4.to_string(), "-d"])
            .arg(file)
            .args(["-l", &seconds.to_string()])
            .args(["-c", "8", "-T", "2", "-q", "256", "-t", "2"]),
    )?;
    parse_dnsperf(&out).with_context(|| format!("reading dnsperf's output:\n{out}"))
}

pub fn parse_dnsperf(text: &str) -> Result<Dnsperf> {
    let field = |label: &str| -> Result<f64> {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no {label:?}"))
    };
    Ok(Dnsperf {
        sent: field("Queries sent")? as u64,
        completed: field("Queries completed")? as u64,
        qps: field("Queries per second")?,
    })
}

/// What kxdpgun reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kxdpgun {
    pub sent: u64,
    pub received: u64,
    pub sent_pps: u64,
    pub received_pps: u64,
}

/// kxdpgun from the client end for `seconds` at `qps` (it sends what it can when that is more
/// than it can). It leaves its XDP program on the client interface; that is removed here.
pub fn kxdpgun(link: &Link, file: &Path, seconds: u32, qps: u32) -> Result<Kxdpgun> {
    let out = cmd::output(
        link.client
            .command("kxdpgun")
            .args(["-t", &seconds.to_string(), "-Q", &qps.to_string(), "-i"])
            .arg(file)
            .args(["-I", &link.client_if, &link.server_v4.to_string()]),
    );
    let cleared = link.clear_client_xdp();
    let out = out?;
    cleared?;
    parse_kxdpgun(&out).with_context(|| format!("reading kxdpgun's output:\n{out}"))
}

pub fn parse_kxdpgun(text: &str) -> Result<Kxdpgun> {
    // total queries:     40010 (20005 pps)
    // total replies:     40010 (20005 pps) (100%)
    let line = |label: &str| -> Result<(u64, u64)> {
        let rest = text
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .ok_or_else(|| anyhow!("no {label:?}"))?;
        let mut words = rest.split_whitespace();
        let count = words.next().and_then(|w| w.parse().ok());
        let pps = words
            .next()
            .and_then(|w| w.strip_prefix('('))
            .and_then(|w| w.parse().ok());
        count
            .zip(pps)
            .ok_or_else(|| anyhow!("cannot read {label:?}{rest}"))
    };
    let (sent, sent_pps) = line("total queries:")?;
    // kxdpgun prints no replies line when none came back.
    let (received, received_pps) = line("total replies:").unwrap_or((0, 0));
    Ok(Kxdpgun {
        sent,
        received,
        sent_pps,
        received_pps,
    })
}

/// The response code of one UDP query from the client namespace (a readiness probe).
pub fn probe(link: &Link, name: &str, rtype: RecordType, timeout: Duration) -> Result<u8> {
    let wire = dns::query_wire(name, rtype, false)?;
    let (client, server) = (link.client_v4, link.server_v4);
    link.client.run(move || -> Result<u8> {
        let socket = UdpSocket::bind(SocketAddrV4::new(client, 0))?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send_to(&wire, SocketAddrV4::new(server, 53))?;
        let mut buf = [0u8; 1500];
        let (n, _) = socket.recv_from(&mut buf)?;
        if n < 12 || buf[..2] != wire[..2] {
            bail!("not a response to the probe");
        }
        Ok(buf[3] & 0x0f)
    })?
}

/// What the fixed-rate client measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub sent: u64,
    pub answered: u64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Sockets the fixed-rate client spreads its queries over (each has its own 16-bit id space,
/// so ids do not wrap within a run of up to 4 × 65 536 queries).
const SOCKETS: usize = 4;

/// Sends `lines` round-robin at `rate` queries per second for `seconds` from the client
/// namespace, each query timestamped when sent and its answer when received (matched by
/// socket and id); returns how many were answered and the latency percentiles of those.
///
/// The sender wakes every 100 µs and sends what is due by then (a sleeping sender leaves the
/// cores to the server), so queries leave in bursts of about `rate / 10 000`.
pub fn fixed_rate(link: &Link, lines: &[QueryLine], rate: u32, seconds: u32) -> Result<Latency> {
    let wires: Vec<Vec<u8>> = lines.iter().map(QueryLine::wire).collect::<Result<_>>()?;
    let total = u64::from(rate) * u64::from(seconds);
    if total > (SOCKETS as u64) << 16 {
        bail!("{total} queries would reuse query ids; lower the rate or the duration");
    }
    let (client, server) = (link.client_v4, link.server_v4);
    let sockets: Vec<Arc<UdpSocket>> =
        link.client.run(move || -> Result<Vec<Arc<UdpSocket>>> {
            (0..SOCKETS)
                .map(|_| {
                    let s = UdpSocket::bind(SocketAddrV4::new(client, 0))?;
                    s.connect(SocketAddr::V4(SocketAddrV4::new(server, 53)))?;
                    s.set_read_timeout(Some(Duration::from_millis(20)))?;
                    Ok(Arc::new(s))
                })
                .collect()
        })??;
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    // Per socket: the send time of each id (as ns since start; 0 = not sent).
    let sent_at: Arc<Vec<Vec<std::sync::atomic::AtomicU64>>> = Arc::new(
        (0..SOCKETS)
            .map(|_| (0..1 << 16).map(|_| Default::default()).collect())
            .collect(),
    );
    let receivers: Vec<_> = sockets
        .iter()
        .enumerate()
        .map(|(index, socket)| {
            let (socket, done, sent_at) = (socket.clone(), done.clone(), sent_at.clone());
            std::thread::spawn(move || receive(&socket, index, &done, &sent_at, start))
        })
        .collect();
    let mut sent = 0u64;
    let period = Duration::from_secs(1).as_nanos() as f64 / f64::from(rate);
    let mut buf = Vec::new();
    while sent < total {
        if interrupt::check().is_err() {
            break;
        }
        let due = ((start.elapsed().as_nanos() as f64 / period) as u64 + 1).min(total);
        while sent < due {
            let index = (sent as usize) % SOCKETS;
            let id = ((sent as usize / SOCKETS) & 0xffff) as u16;
            buf.clear();
            buf.extend_from_slice(&wires[(sent as usize) % wires.len()]);
            buf[..2].copy_from_slice(&id.to_be_bytes());
            let at = start.elapsed().as_nanos() as u64;
            sent_at[index][usize::from(id)].store(at.max(1), Ordering::Relaxed);
            // A full socket buffer is a lost query, as on the wire.
            let _ = sockets[index].send(&buf);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    // Late answers count for a second after the last query.
    std::thread::sleep(Duration::from_secs(1));
    done.store(true, Ordering::Relaxed);
    let mut samples = Vec::with_capacity(total as usize);
    for receiver in receivers {
        samples.extend(
            receiver
                .join()
                .map_err(|_| anyhow!("a latency receiver panicked"))?,
        );
    }
    samples.sort_unstable();
    Ok(Latency {
        sent,
        answered: samples.len() as u64,
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
    })
}

fn receive(
    socket: &UdpSocket,
    index: usize,
    done: &AtomicBool,
    sent_at: &[Vec<std::sync::atomic::AtomicU64>],
    start: Instant,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut buf = [0u8; 1500];
    while !done.load(Ordering::Relaxed) {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let now = start.elapsed().as_nanos() as u64;
        // A response (QR=1) to an id we sent and have not yet seen answered.
        if n < 12 || buf[2] & 0x80 == 0 {
            continue;
        }
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        let at = sent_at[index][usize::from(id)].swap(0, Ordering::Relaxed);
        if at != 0 {
            samples.push(Duration::from_nanos(now.saturating_sub(at)));
        }
    }
    samples
}

/// The nearest-rank percentile of sorted samples (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Writes `lines` as a query file in `dir`, named `name`.
pub fn query_file(dir: &Path, name: &str, lines: &[QueryLine]) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, dns::render(lines))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Fails with a clear message when a program the benchmark runs is not installed.
pub fn require(programs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| cmd::which(p).is_none() && !Path::new("/usr/sbin").join(p).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "not installed: {} (`cargo xtask bench` installs them on Debian; elsewhere install \
             them by hand)",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNSPERF: &str = "DNS Performance Testing Tool\nVersion 2.10.0\n\n[Status] Command line: \
        dnsperf -s 10.1.1.1\n[Status] Sending queries (to 10.1.1.1:53)\n[Status] Testing \
        complete (time limit)\n\nStatistics:\n\n  Queries sent:         372408\n  Queries \
        completed:    372152 (99.93%)\n  Queries lost:         256 (0.07%)\n\n  Response \
        codes:       NOERROR 372152 (100.00%)\n  Average packet size:  request 34, response \
        66\n  Run time (s):         5.000823\n  Queries per second:   74418.150296\n\n  \
        Average Latency (s):  0.001328 (min 0.000022, max 0.012409)\n";

    #[test]
    fn dnsperf_output() {
        assert_eq!(
            parse_dnsperf(DNSPERF).unwrap(),
            Dnsperf {
                sent: 372_408,
                completed: 372_152,
                qps: 74_418.150_296
            }
        );
        assert!(parse_dnsperf("Queries sent: 1\n").is_err());
    }

    #[test]
    fn kxdpgun_output() {
        let text = "using interface hbc1, XDP threads 1, UDP, native mode\n\
                    thread#00: sent 40010, received 40010\n\
                    total queries:     40010 (20005 pps)\n\
                    total replies:     39000 (19500 pps) (97%)\n\
                    average DNS reply size: 66 B\nduration: 2 s\n";
        assert_eq!(
            parse_kxdpgun(text).unwrap(),
            Kxdpgun {
                sent: 40_010,
                received: 39_000,
                sent_pps: 20_005,
                received_pps: 19_500
            }
        );
        let silent = "total queries:     100 (50 pps)\nduration: 2 s\n";
        assert_eq!(parse_kxdpgun(silent).unwrap().received, 0);
        assert!(parse_kxdpgun("nothing\n").is_err());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn cost_per_100k() {
        let cost = Cost {
            cpu_secs: 2.0,
            rcvbuf_drops: 0,
        };
        assert_eq!(cost.per_100k(400_000), Some(0.5));
        assert_eq!(cost.per_100k(0), None);
    }
}
