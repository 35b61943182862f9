//! `cargo xtask probes-bench`: the probe scheduler at scale (issue 10).
//!
//! Generates a configuration of N pools (default 10 000) with 4 endpoints each, every
//! endpoint probed over TCP every second; half of the endpoints accept connections, half
//! silently drop every packet. Two network namespaces joined by a veth pair:
//!
//! ```text
//!  daemon ns                                server ns
//!  hotpool --no-xdp  ── veth 10.255.0.1 ── 10.255.0.2 ── 10.200.0.0/16: local (AnyIP),
//!   10.200.0.0/16 via 10.255.0.2                          one listener on 0.0.0.0:80
//!   10.201.0.0/16 via 10.255.0.9  (neighbour 02:00:00:00:00:09: a MAC nobody has, so the
//!                                  frames are dropped by the server side's veth)
//! ```
//!
//! It runs the release daemon for `--seconds` (default 60) and reports: `hotpool check`
//! time, start-up time, probes per second against the expected rate, late runs, verdict
//! coverage (and whether every verdict is right), resident memory and CPU. The figures are
//! printed as markdown and written to `target/probes-bench/report.md`.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{cmd, run::become_root, setup};

/// Endpoints per pool: two accepting, two blackholed.
const ENDPOINTS: usize = 4;
/// Open-file limit the daemon is given when this process may raise it (what `LimitNOFILE`
/// would give it); otherwise it runs with the hard limit it inherits.
const NOFILE: u64 = 262_144;
/// The first seconds are not measured: first runs are spread over the first interval and
/// first verdicts take `fall` (3) intervals.
const WARM_UP: Duration = Duration::from_secs(10);
/// The daemon's metrics and API address inside its namespace.
const API: &str = "127.0.0.1:9153";

/// `cargo xtask probes-bench` options.
#[derive(Clone, Debug)]
pub struct Options {
    pub pools: usize,
    pub seconds: u64,
    /// Probe timeout in milliseconds (the interval is 1 s).
    pub timeout_ms: u64,
}

pub fn bench(opts: &Options) -> Result<()> {
    ensure!(
        opts.pools > 0 && opts.pools <= 16_000,
        "--pools must be 1 to 16000 (four endpoints each in two /16s)"
    );
    ensure!(
        Duration::from_secs(opts.seconds) > WARM_UP,
        "--seconds must be more than the {WARM_UP:?} warm-up"
    );
    become_root("probes-bench", "it creates network namespaces")?;
    // `PROBES_BENCH_BIN=PATH`: measure that build (say, a copy of an earlier one, for a
    // before/after in one session) instead of building this tree's.
    let bin = match std::env::var_os("PROBES_BENCH_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            setup::ensure(false)?;
            cmd::run(cmd::cargo().args([
                "build",
                "--release",
                "-p",
                "dns-userspace",
                "--bin",
                "hotpool",
            ]))?;
            cmd::target_dir().join("release/hotpool")
        }
    };
    let dir = cmd::target_dir()
        .join("probes-bench")
        .join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = write_config(&dir, opts.pools, opts.timeout_ms)?;

    let check = time_check(&bin, &config)?;
    let net = Net::new()?;
    let server = Acceptor::start(&net.server_path())?;
    let report = measure(&bin, &config, &dir, &net, opts, check, &server);
    server.stop();
    drop(net);
    let report = report?;
    print!("{report}");
    let out = cmd::target_dir().join("probes-bench/report.md");
    fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "\n(written to {}; run files in {})",
        out.display(),
        dir.display()
    );
    Ok(())
}

/// The config (and its zone) for `pools` pools; endpoint `k` of pool `i` is
/// 10.200.x.y (k = 0, 1: accepting) or 10.201.x.y (k = 2, 3: blackholed).
fn write_config(dir: &Path, pools: usize, timeout_ms: u64) -> Result<PathBuf> {
    fs::write(
        dir.join("bench.test.zone"),
        "$ORIGIN bench.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 1209600 60\n\
         @ NS ns1\nns1 A 192.0.2.53\n",
    )?;
    // The bench sends no TCP queries: TCP keeps the 1024 descriptors it had when the
    // README's figures were measured, the probes get the rest.
    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1\"]\nport = 5353\nmetrics_listen = \"{API}\"\n\
         tcp_max_connections = 1024\n\n\
         [state]\npath = \"state.json\"\n\n\
         [[zone]]\norigin = \"bench.test.\"\nfile = \"bench.test.zone\"\n"
    );
    for i in 0..pools {
        let addrs: Vec<String> = (0..ENDPOINTS)
            .map(|k| format!("{{ address = \"{}\" }}", endpoint(i, k)))
            .collect();
        let _ = write!(
            text,
            "\n[[pool]]\nname = \"p{i}.bench.test.\"\ntype = \"A\"\n\
             probe = {{ kind = \"tcp\", port = 80, interval = \"1s\", timeout = \"{timeout_ms}ms\" }}\n\
             endpoints = [{}]\n",
            addrs.join(", ")
        );
    }
    let path = dir.join("hotpool.toml");
    fs::write(&path, text)?;
    Ok(path)
}

/// Endpoint `k` of pool `i`: two per pool in each /16, 16 000 pools at most.
fn endpoint(i: usize, k: usize) -> Ipv4Addr {
    let n = 2 * i + k % 2 + 1;
    Ipv4Addr::new(
        10,
        if k < 2 { 200 } else { 201 },
        (n / 256) as u8,
        (n % 256) as u8,
    )
}

/// The median wall time of three `hotpool check` runs.
fn time_check(bin: &Path, config: &Path) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let out = Command::new(bin)
            .arg("check")
            .arg(config)
            .output()
            .context("running hotpool check")?;
        ensure!(
            out.status.success(),
            "hotpool check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[1])
}

/// The two namespaces and the veth pair between them, removed on drop.
struct Net {
    daemon: String,
    server: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl Net {
    fn new() -> Result<Self> {
        let id = std::process::id();
        let net = Self {
            daemon: format!("hpp-d-{id}"),
            server: format!("hpp-s-{id}"),
        };
        ip(&["netns", "add", &net.daemon])?;
        ip(&["netns", "add", &net.server])?;
        let (d, s) = (net.daemon.as_str(), net.server.as_str());
        let (dv, sv) = (format!("hppd{id}"), format!("hpps{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["-n", d, "link", "set", "lo", "up"],
            vec!["-n", s, "link", "set", "lo", "up"],
            vec![
                "link", "add", &dv, "netns", d, "type", "veth", "peer", "name", &sv, "netns", s,
            ],
            vec!["-n", d, "addr", "add", "10.255.0.1/24", "dev", &dv],
            vec!["-n", s, "addr", "add", "10.255.0.2/24", "dev", &sv],
            vec!["-n", d, "link", "set", &dv, "up"],
            vec!["-n", s, "link", "set", &sv, "up"],
            // The accepting half: every address of 10.200/16 is local in the server ns.
            vec![
                "-n",
                s,
                "route",
                "add",
                "local",
                "10.200.0.0/16",
                "dev",
                "lo",
            ],
            vec![
                "-n",
                d,
                "route",
                "add",
                "10.200.0.0/16",
                "via",
                "10.255.0.2",
            ],
            // The blackholed half: a next hop whose MAC nobody has.
            vec![
                "-n",
                d,
                "neigh",
                "add",
                "10.255.0.9",
                "lladdr",
                "02:00:00:00:00:09",
                "dev",
                &dv,
                "nud",
                "permanent",
            ],
            vec![
                "-n",
                d,
                "route",
                "add",
                "10.201.0.0/16",
                "via",
                "10.255.0.9",
            ],
        ];
        for step in steps {
            ip(&step)?;
        }
        // 20 000 connections a second: a long accept queue, and local ports for the
        // daemon.
        for (ns, key, value) in [
            (s, "net/core/somaxconn", "65535"),
            (s, "net/ipv4/tcp_max_syn_backlog", "65535"),
            (d, "net/ipv4/ip_local_port_range", "1024 65535"),
        ] {
            let ns_path = format!("/var/run/netns/{ns}");
            let (key, value) = (key.to_string(), value.to_string());
            in_netns(&ns_path, move || {
                fs::write(format!("/proc/sys/{key}"), value)
                    .with_context(|| format!("writing {key}"))
            })??;
        }
        Ok(net)
    }

    fn daemon_path(&self) -> String {
        format!("/var/run/netns/{}", self.daemon)
    }

    fn server_path(&self) -> String {
        format!("/var/run/netns/{}", self.server)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.daemon, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread that has entered the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let owned = path.to_string();
    thread::spawn(move || -> Result<T> {
        enter(&owned)?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a thread in {path} panicked"))?
}

fn enter(path: &str) -> Result<()> {
    let ns = fs::File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a descriptor we own; it changes this thread's network namespace only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The accepting endpoints: one listener on 0.0.0.0:80 in the server namespace. It defers
/// accepting until data arrives (`TCP_DEFER_ACCEPT`), and a TCP probe sends none: the
/// kernel answers the SYN, drops the bare ACK (counted as `TCPDeferAcceptDrop`) and the
/// probe's reset removes the half-open connection, with no socket, `accept(2)` or `close(2)`
/// on this side. A remote endpoint's cost of a handshake is not the daemon's, and on a
/// 2-core machine an accepting thread per connection took the CPU the daemon needs. What
/// does reach the queue (a client that sends data) is accepted and closed on [`ACCEPTORS`]
/// threads.
struct Acceptor {
    ns: String,
    listener: Arc<std::net::TcpListener>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// Threads accepting connections (blocked in accept(2) when there is nothing to do).
const ACCEPTORS: usize = 2;

impl Acceptor {
    fn start(ns: &str) -> Result<Self> {
        let ns = ns.to_string();
        let path = ns.clone();
        let listener = Arc::new(
            thread::spawn(move || enter(&path).and_then(|()| listen()))
                .join()
                .map_err(|_| anyhow::anyhow!("the listening thread panicked"))??,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let threads = (0..ACCEPTORS)
            .map(|_| {
                let (listener, stop, accepted) = (listener.clone(), stop.clone(), accepted.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((conn, _)) = listener.accept() {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            drop(conn);
                        }
                    }
                })
            })
            .collect();
        Ok(Self {
            ns,
            listener,
            stop,
            accepted,
            threads,
        })
    }

    /// Handshakes completed so far: connections accepted, and bare ACKs dropped while
    /// deferring (one per probe that connected); `None` when the namespace's counters
    /// cannot be read.
    fn handshakes(&self) -> Option<u64> {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let netstat = in_netns(&self.ns, || {
            fs::read_to_string("/proc/thread-self/net/netstat").ok()
        })
        .ok()??;
        Some(accepted + netstat_counter(&netstat, "TcpExt", "TCPDeferAcceptDrop")?)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes every thread blocked in accept(2), which then fails with EINVAL.
        // SAFETY: shutdown(2) on the listener's own descriptor.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Counter `name` of group `group` in a `/proc/net/netstat` text (a line of names, then a
/// line of values, per group).
fn netstat_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let values = lines.next()?;
        let (Some(names), Some(values)) = (
            names.strip_prefix(group).and_then(|l| l.strip_prefix(':')),
            values.strip_prefix(group).and_then(|l| l.strip_prefix(':')),
        ) else {
            continue;
        };
        let at = names.split_whitespace().position(|n| n == name)?;
        return values.split_whitespace().nth(at)?.parse().ok();
    }
    None
}

/// A listener on 0.0.0.0:80 with a 65535-long accept queue that accepts a connection only
/// once data arrived on it (`TCP_DEFER_ACCEPT`, see [`Acceptor`]).
fn listen() -> Result<std::net::TcpListener> {
    // SAFETY: plain socket(2); the descriptor is owned by the listener at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket nothing else owns.
    let listener = unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 80u16.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    let set = |level, option, value: libc::c_int| {
        // SAFETY: setsockopt on our socket with a pointer to a value on this frame and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).context("SO_REUSEADDR")?;
    // Accepted once data arrives, for 30 s; a probe sends none (see `Acceptor`).
    set(libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 30).context("TCP_DEFER_ACCEPT")?;
    // SAFETY: bind and listen on our socket, with a pointer to an address on this frame and
    // its size.
    unsafe {
        ensure!(
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) == 0,
            "bind 0.0.0.0:80: {}",
            std::io::Error::last_os_error()
        );
        ensure!(
            libc::listen(fd, 65535) == 0,
            "listen: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(listener)
}

/// One sample of the daemon's process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    rss_kib: u64,
    cpu_ticks: u64,
    sys_ticks: u64,
}

fn sample(pid: u32) -> Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime and stime are the 14th
    // and 15th fields of the line, the 12th and 13th after ") ".
    let rest = stat.rsplit_once(") ").context("/proc/pid/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let sys_ticks = fields[12].parse::<u64>()?;
    let cpu_ticks = fields[11].parse::<u64>()? + sys_ticks;
    Ok(Sample {
        at: Instant::now(),
        rss_kib,
        cpu_ticks,
        sys_ticks,
    })
}

/// One "probe scheduler" summary line of the daemon's log.
#[derive(Clone, Debug, Default)]
struct Summary {
    runs: u64,
    late: u64,
    in_flight: u64,
    limit: u64,
    waiting: u64,
}

/// The daemon's JSON log: start-up milestones and the scheduler's summaries.
struct Log {
    path: PathBuf,
}

impl Log {
    fn lines(&self) -> Vec<serde_json::Value> {
        let Ok(file) = fs::File::open(&self.path) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    fn has_message(&self, message: &str) -> bool {
        self.lines()
            .iter()
            .any(|l| l["fields"]["message"] == message)
    }

    fn summaries(&self) -> Vec<Summary> {
        let field = |l: &serde_json::Value, k: &str| l["fields"][k].as_u64().unwrap_or(0);
        self.lines()
            .iter()
            .filter(|l| l["fields"]["message"] == "probe scheduler")
            .map(|l| Summary {
                runs: field(l, "runs"),
                late: field(l, "late"),
                in_flight: field(l, "in_flight"),
                limit: field(l, "limit"),
                waiting: field(l, "waiting"),
            })
            .collect()
    }

    fn count(&self, level: &str, message_part: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| {
                l["level"] == level
                    && l["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(message_part))
            })
            .count()
    }
}

/// The daemon, stopped (SIGTERM, then SIGKILL) on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // The whole process group the child leads: with `PROBES_BENCH_WRAP` the daemon is
        // the wrapper's child, and must stop too.
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(bin: &Path, config: &Path, net: &Net, log: &Path) -> Result<Daemon> {
    let stderr = fs::File::create(log)?;
    let mut command = Command::new("nsenter");
    command.arg(format!("--net={}", net.daemon_path()));
    // `PROBES_BENCH_WRAP="heaptrack -o FILE"`: run the daemon under a profiler.
    if let Ok(wrap) = std::env::var("PROBES_BENCH_WRAP") {
        command.args(wrap.split_whitespace());
    }
    command
        .arg(bin)
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .arg("--no-xdp")
        .env("HOTPOOL_LOG", "info,hotpool::steering::probe=debug")
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    // SAFETY: only setrlimit between fork and exec, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            // Without CAP_SYS_RESOURCE the hard limit cannot be raised: the daemon then
            // raises its soft limit to the hard one itself, and the report says what it
            // had.
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    Ok(Daemon(
        command.spawn().context("starting hotpool under nsenter")?,
    ))
}

/// GET `path` from the daemon's API inside its namespace: the body.
fn get(net: &Net, path: &str) -> Result<String> {
    let path = path.to_string();
    in_netns(&net.daemon_path(), move || -> Result<String> {
        let addr: SocketAddr = API.parse()?;
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        // HTTP/1.0: a large page streams (see the daemon's `api::stream`), and to a 1.0
        // client it streams until the connection closes, not in chunked encoding.
        write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("no end of headers")?;
        ensure!(head.contains(" 200 "), "GET {path}: {head}");
        Ok(body.to_string())
    })?
}

/// The sum of the samples of metric `name` (every label set); an error when the page has
/// none, so a renamed metric does not read as 0.
fn metric(page: &str, name: &str) -> Result<f64> {
    let samples: Vec<f64> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let n = key.split_once('{').map_or(key, |(n, _)| n);
            (n == name).then(|| value.parse::<f64>().ok())?
        })
        .collect();
    ensure!(!samples.is_empty(), "no {name} in the metrics");
    Ok(samples.iter().sum())
}

/// Runs the daemon and measures it; the report as markdown.
fn measure(
    bin: &Path,
    config: &Path,
    dir: &Path,
    net: &Net,
    opts: &Options,
    check: Duration,
    server: &Acceptor,
) -> Result<String> {
    let log = Log {
        path: dir.join("hotpool.log"),
    };
    let started = Instant::now();
    let daemon = start_daemon(bin, config, net, &log.path)?;
    let pid = daemon.0.id();
    let mut running_after = None;
    while running_after.is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "hotpool did not start within 60 s; see {}",
                log.path.display()
            );
        }
        if log.has_message("hotpool running") {
            running_after = Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let end = started + Duration::from_secs(opts.seconds);
    let measure_from = started + WARM_UP;
    let mut samples = Vec::new();
    let mut accepted_at_start = None;
    while Instant::now() < end {
        thread::sleep(Duration::from_secs(1));
        let s = sample(pid).context("the daemon is gone")?;
        if s.at >= measure_from && accepted_at_start.is_none() {
            accepted_at_start = Some((s.at, server.handshakes()));
        }
        samples.push(s);
    }
    let accepted_end = (Instant::now(), server.handshakes());
    let summaries = log.summaries();
    // After the warm-up: the summaries (every 10 s) whose interval ends after it.
    let skip = usize::try_from(WARM_UP.as_secs() / 10).unwrap_or(0);
    let measured: Vec<&Summary> = summaries.iter().skip(skip).collect();
    ensure!(
        !measured.is_empty(),
        "no scheduler summaries after the warm-up in {}",
        log.path.display()
    );
    let window = measured.len() as f64 * 10.0;
    let runs: u64 = measured.iter().map(|s| s.runs).sum();
    let late: u64 = measured.iter().map(|s| s.late).sum();
    let most_in_flight = measured.iter().map(|s| s.in_flight).max().unwrap_or(0);
    let most_waiting = measured.iter().map(|s| s.waiting).max().unwrap_or(0);
    let limit = measured.last().map_or(0, |s| s.limit);

    let measured_samples: Vec<&Sample> = samples.iter().filter(|s| s.at >= measure_from).collect();
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let rss_end = samples.last().map_or(0, |s| s.rss_kib);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (cpu, sys) = match (measured_samples.first(), measured_samples.last()) {
        (Some(a), Some(b)) if b.at > a.at => {
            let secs = ticks * (b.at - a.at).as_secs_f64();
            (
                (b.cpu_ticks - a.cpu_ticks) as f64 / secs,
                (b.sys_ticks - a.sys_ticks) as f64 / secs,
            )
        }
        _ => (0.0, 0.0),
    };
    let accepted_rate = match (accepted_at_start, accepted_end) {
        (Some((at, Some(n))), (end, Some(m))) => Some((m - n) as f64 / (end - at).as_secs_f64()),
        _ => None,
    };

    // Verdicts: every accepting endpoint up, every blackholed one down.
    let status: serde_json::Value =
        serde_json::from_str(&get(net, "/api/status")?).context("parsing /api/status")?;
    let (mut total, mut right, mut wrong, mut unknown) = (0usize, 0usize, 0usize, 0usize);
    // The status document: `{ "pools": [...] }` (a bare list from older daemons).
    let pools = status
        .get("pools")
        .unwrap_or(&status)
        .as_array()
        .context("no pools in /api/status")?;
    for pool in pools {
        for e in pool["endpoints"].as_array().context("endpoints")? {
            total += 1;
            let accepting = e["endpoint"]
                .as_str()
                .is_some_and(|a| a.starts_with("10.200."));
            match (e["probe"].as_str(), accepting) {
                (Some("up"), true) | (Some("down"), false) => right += 1,
                (Some("unknown"), _) => unknown += 1,
                _ => wrong += 1,
            }
        }
    }
    let metrics = get(net, "/metrics")?;
    let local_failures = metric(&metrics, "hotpool_probe_local_failures_by_reason_total")?;
    let late_total = metric(&metrics, "hotpool_probe_scheduler_late_total")?;
    let late_warnings = log.count("WARN", "probes are running late");
    let descriptors = log
        .lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "descriptors: open-file limit shared out")
        .map(|l| {
            format!(
                "open-file limit {}, {} for probes",
                l["fields"]["limit"], l["fields"]["probes"]
            )
        })
        .unwrap_or_default();
    drop(daemon);

    let pools = opts.pools;
    let endpoints = pools * ENDPOINTS;
    // Accepting endpoints run every interval ± 10 % (1 s on average); blackholed ones run to
    // their timeout, so every max(jittered interval, timeout): E[max(U(0.9, 1.1), t)].
    let t = (opts.timeout_ms as f64 / 1000.0).clamp(0.0, 1.0);
    let blackholed_period = if t <= 0.9 {
        1.0
    } else {
        // P(U < t) × t + the mean of U over (t, 1.1) × P(U ≥ t), U uniform on 0.9..1.1.
        let p = (t - 0.9) / 0.2;
        p * t + (1.0 - p) * (t + 1.1) / 2.0
    };
    let expected = endpoints as f64 / 2.0 * (1.0 + 1.0 / blackholed_period);
    let rate = runs as f64 / window;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Probes at scale: {pools} pools, {endpoints} endpoints (half blackholed), TCP every \
         1 s, timeout {} ms\n",
        opts.timeout_ms
    );
    let _ = writeln!(out, "| figure | measured |\n| --- | --- |");
    let rows = [
        (
            "`hotpool check` (median of 3)",
            format!("{:.2} s", check.as_secs_f64()),
        ),
        (
            "start-up until serving",
            format!("{:.2} s", running_after.unwrap_or_default().as_secs_f64()),
        ),
        (
            "probes per second",
            format!(
                "{rate:.0} ({:.1} % of the expected {expected:.0}), over {window:.0} s after a \
                 {} s warm-up",
                100.0 * rate / expected,
                WARM_UP.as_secs()
            ),
        ),
        (
            "handshakes completed per second (accepting half)",
            match accepted_rate {
                Some(rate) => format!("{rate:.0} (expected {:.0})", endpoints as f64 / 2.0),
                None => "unknown (the server namespace's counters could not be read)".to_owned(),
            },
        ),
        (
            "late runs (> 100 ms behind)",
            format!(
                "{late} of {runs} measured ({:.2} %); {late_total} since start; \
                 {late_warnings} warnings",
                100.0 * late as f64 / runs.max(1) as f64
            ),
        ),
        (
            "probes in flight",
            format!(
                "at most {most_in_flight} (limit {limit}; {descriptors}); at most \
                 {most_waiting} waiting for a slot"
            ),
        ),
        (
            "verdicts after the run",
            format!(
                "{right} of {total} right ({:.1} %), {wrong} wrong, {unknown} without a verdict",
                100.0 * right as f64 / total.max(1) as f64
            ),
        ),
        ("local failures", format!("{local_failures}")),
        (
            "resident memory",
            format!(
                "{:.1} MiB at the end, {:.1} MiB at most",
                rss_end as f64 / 1024.0,
                rss_max as f64 / 1024.0
            ),
        ),
        (
            "CPU (the daemon's process)",
            format!(
                "{:.0} % of a core ({:.0} % in the kernel)",
                100.0 * cpu,
                100.0 * sys
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_counters_are_found_by_group_and_name() {
        let text = "TcpExt: SyncookiesSent TCPDeferAcceptDrop TW\nTcpExt: 0 1234 7\n\
                    IpExt: InNoRoutes TCPDeferAcceptDrop\nIpExt: 5 6\n";
        assert_eq!(
            netstat_counter(text, "TcpExt", "TCPDeferAcceptDrop"),
            Some(1234)
        );
        assert_eq!(netstat_counter(text, "TcpExt", "TW"), Some(7));
        assert_eq!(
            netstat_counter(text, "IpExt", "TCPDeferAcceptDrop"),
            Some(6)
        );
        assert_eq!(netstat_counter(text, "TcpExt", "Nope"), None);
        assert_eq!(netstat_counter(text, "MPTcpExt", "TW"), None);
    }
}
