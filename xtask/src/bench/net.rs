//! Network namespaces, a veth pair between them, and processes started in them, each removed
//! or stopped on drop (also when a benchmark fails half-way), plus the per-namespace and
//! whole-box counters the benchmarks read.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process: `<tag><pid>x<n>` (interface names are at most 15
/// octets).
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Result<Self> {
        let name = unique(&format!("hpb-{tag}-"));
        cmd::output(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// `ip -n <ns> args…`; returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::output(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A command that runs `program` inside the namespace (`nsenter --net`, which keeps the
    /// host's /sys and so the bpffs pins, unlike `ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it opens are the
    /// namespace's) and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = self.path();
        thread::spawn(move || -> Result<T> {
            enter(&path)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("a thread in namespace {} panicked", self.name))?
    }

    /// `/proc/net/snmp` of the namespace.
    pub fn snmp(&self) -> Result<String> {
        cmd::output(self.command("cat").arg("/proc/net/snmp"))
    }
}

fn enter(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a valid namespace fd; setns affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setns {}", path.display()));
    }
    Ok(())
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth end inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair: the server end `10.<a>.<b>.1/24`, the client end
/// `.2`, both up, with a permanent neighbour entry on the client for the server (kxdpgun
/// needs one).
pub struct Link {
    // Field order: the namespaces go last, after anything borrowing their interfaces.
    pub server_if: String,
    pub client_if: String,
    pub server_v4: Ipv4Addr,
    pub client_v4: Ipv4Addr,
    /// The server end's MAC address.
    pub server_mac: [u8; 6],
    pub server: NetNs,
    pub client: NetNs,
}

impl Link {
    pub fn new() -> Result<Self> {
        let server = NetNs::new("s")?;
        let client = NetNs::new("c")?;
        let server_if = unique("hbs");
        let client_if = unique("hbc");
        cmd::output(Command::new("ip").args([
            "link",
            "add",
            &server_if,
            "netns",
            &server.name,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &client.name,
        ]))?;
        // 10.200-249.x.0/24: unique enough per process, away from the tests' 10.77.
        let n = std::process::id() % 12_800;
        let (a, b) = (200 + (n / 256) as u8 % 50, (n % 256) as u8);
        let server_v4 = Ipv4Addr::new(10, a, b, 1);
        let client_v4 = Ipv4Addr::new(10, a, b, 2);
        for (ns, ifname, addr) in [
            (&server, &server_if, server_v4),
            (&client, &client_if, client_v4),
        ] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        let server_mac = mac_of(&server.ip(&["-j", "link", "show", "dev", &server_if])?)
            .with_context(|| format!("reading the MAC address of {server_if}"))?;
        client.ip(&[
            "neigh",
            "replace",
            &server_v4.to_string(),
            "lladdr",
            &server_mac,
            "dev",
            &client_if,
            "nud",
            "permanent",
        ])?;
        let mut mac = [0u8; 6];
        let octets: Vec<&str> = server_mac.split(':').collect();
        if octets.len() != 6 {
            bail!("{server_if} has no Ethernet address: {server_mac}");
        }
        for (o, text) in mac.iter_mut().zip(octets) {
            *o = u8::from_str_radix(text, 16)
                .with_context(|| format!("the MAC address of {server_if}: {server_mac}"))?;
        }
        Ok(Self {
            server_if,
            client_if,
            server_v4,
            client_v4,
            server_mac: mac,
            server,
            client,
        })
    }

    /// The id of the XDP program attached to the server end, if any.
    pub fn server_xdp_prog(&self) -> Result<Option<XdpProg>> {
        let json = self
            .server
            .ip(&["-j", "-d", "link", "show", "dev", &self.server_if])?;
        xdp_prog(&json)
    }

    /// Detaches whatever XDP program is attached to the client end (kxdpgun leaves its own).
    pub fn clear_client_xdp(&self) -> Result<()> {
        self.client
            .ip(&["link", "set", "dev", &self.client_if, "xdp", "off"])
            .map(drop)
    }
}

/// The XDP program on an interface, from `ip -j -d link show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpProg {
    pub id: u32,
    pub name: String,
    /// `ip`'s attach mode: 1 native, 2 generic, 3 offloaded.
    pub mode: u64,
}

fn mac_of(json: &str) -> Result<String> {
    let links: serde_json::Value = serde_json::from_str(json).context("parsing `ip -j link`")?;
    links[0]["address"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no address in `ip -j link` output: {json}"))
}

pub fn xdp_prog(json: &str) -> Result<Option<XdpProg>> {
    let links: serde_json::Value = serde_json::from_str(json).context("parsing `ip -j link`")?;
    let xdp = &links[0]["xdp"];
    if xdp.is_null() {
        return Ok(None);
    }
    let prog = &xdp["prog"];
    let id = prog["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| anyhow!("no xdp.prog.id in `ip -j -d link` output: {json}"))?;
    Ok(Some(XdpProg {
        id,
        name: prog["name"].as_str().unwrap_or_default().to_owned(),
        mode: xdp["mode"].as_u64().unwrap_or_default(),
    }))
}

/// A process started by the harness (a DNS server, in its own process group), stopped on drop:
/// SIGTERM to its group, then SIGKILL after a grace period.
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("could not start `{}`", cmd::display(&command)))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// Fails, with the end of its log, when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn signal_group(&self, signal: libc::c_int) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory preconditions; the group is the one we created for
            // this child (process_group(0) above).
            unsafe { libc::kill(-pid, signal) };
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // Children of the server (NSD's workers) that outlive it.
                self.signal_group(libc::SIGKILL);
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("xtask: {} ignored SIGTERM for 5 s; killing it", self.name);
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Whole-box CPU time from `/proc/stat`'s `cpu` line, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

impl CpuTimes {
    pub fn now() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_proc_stat(&text).ok_or_else(|| anyhow!("no cpu line in /proc/stat"))
    }

    /// Busy CPU seconds (all cores) since `earlier`.
    pub fn busy_secs_since(&self, earlier: &Self) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.busy.saturating_sub(earlier.busy) as f64 / hz
    }
}

/// The aggregate `cpu` line of `/proc/stat`: busy is everything but idle and iowait.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // counted in user and nice.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// A counter of `/proc/net/snmp` (`Udp`, `RcvbufErrors`).
pub fn snmp_counter(text: &str, proto: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.split(':').next() == Some(proto));
    let header = lines.next()?;
    let values = lines.next()?;
    let index = header.split_whitespace().position(|h| h == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_and_total() {
        let text = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n";
        assert_eq!(
            parse_proc_stat(text),
            Some(CpuTimes {
                busy: 165,
                total: 1185
            })
        );
        assert_eq!(parse_proc_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn snmp_udp_rcvbuf_errors() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 1000 2 30 990 28 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    UdpLite: 0 0 0 0 0 0\n";
        assert_eq!(snmp_counter(text, "Udp", "RcvbufErrors"), Some(28));
        assert_eq!(snmp_counter(text, "Udp", "InDatagrams"), Some(1000));
        assert_eq!(snmp_counter(text, "UdpLite", "RcvbufErrors"), Some(0));
        assert_eq!(snmp_counter(text, "Udp", "Nope"), None);
    }

    #[test]
    fn xdp_prog_from_ip_json() {
        let json = r#"[{"ifindex":2,"ifname":"hbs1","xdp":{"mode":2,"prog":{"id":147,"name":"hotpool","tag":"410ce0e5715c88e1","jited":1},"attached":[{"mode":2,"prog":{"id":147,"name":"hotpool"}}]},"address":"c2:f8:e1:86:44:09"}]"#;
        assert_eq!(
            xdp_prog(json).unwrap(),
            Some(XdpProg {
                id: 147,
                name: "hotpool".to_owned(),
                mode: 2
            })
        );
        assert_eq!(mac_of(json).unwrap(), "c2:f8:e1:86:44:09");
        let bare = r#"[{"ifindex":2,"ifname":"hbs1","address":"c2:f8:e1:86:44:09"}]"#;
        assert_eq!(xdp_prog(bare).unwrap(), None);
        assert!(xdp_prog("not json").is_err());
    }

    #[test]
    fn unique_names_fit_an_interface_name() {
        let a = unique("hbs");
        let b = unique("hbs");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }
}
