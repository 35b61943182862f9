//! The DNS servers under test, each started as a process in the server namespace with its
//! own configuration directory, and stopped (and its files and pins removed) on drop.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::RecordType;

use super::{
    bpf::XdpMode,
    dns, interrupt, load,
    net::{Link, Process, XdpProg, unique},
};

/// A hotpool build: the previous release or the current tree.
#[derive(Debug, Clone)]
pub struct Binary {
    /// `baseline <rev>` or `current`.
    pub label: String,
    pub path: PathBuf,
}

impl Binary {
    /// Whether the build has `hotpool reload` (issue 9 on): its config also knows `[state]`,
    /// `[api] unix_socket` and `[rrl]`, which the previous release 64106f2 rejects.
    pub fn can_reload(&self) -> bool {
        Command::new(&self.path)
            .arg("help")
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|line| line.trim_start().starts_with("reload "))
            })
    }
}

/// What serves the zone.
#[derive(Debug, Clone)]
pub enum Server {
    /// hotpool with its XDP program attached in this mode, or with `--no-xdp` (`None`).
    Hotpool {
        binary: Binary,
        xdp: Option<XdpMode>,
        /// `[rrl] responses_per_second`, when set (builds that [`Binary::can_reload`]).
        rrl: Option<u32>,
    },
    KnotUdp,
    /// Knot with its AF_XDP front end on the server veth.
    KnotXdp,
    Nsd,
    Gdnsd,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hotpool {
                binary,
                xdp: Some(mode),
                rrl,
            } => {
                write!(f, "hotpool {} XDP {}", binary.label, mode.name())?;
                match rrl {
                    Some(rate) => write!(f, " RRL {rate}/s"),
                    None => Ok(()),
                }
            }
            Self::Hotpool {
                binary, xdp: None, ..
            } => {
                write!(f, "hotpool {} --no-xdp", binary.label)
            }
            Self::KnotUdp => f.write_str("Knot UDP"),
            Self::KnotXdp => f.write_str("Knot AF_XDP"),
            Self::Nsd => f.write_str("NSD"),
            Self::Gdnsd => f.write_str("gdnsd"),
        }
    }
}

/// A started server: its process, configuration directory and (hotpool) pin directory.
pub struct Running {
    process: Option<Process>,
    dir: PathBuf,
    pub pin: Option<PathBuf>,
    pub server: Server,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Stop the process before removing its files and pins.
        drop(self.process.take());
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(pin) = &self.pin {
            let _ = fs::remove_dir_all(pin);
        }
    }
}

impl Running {
    /// Stops the server, then removes its files and pins.
    pub fn stop(self) {
        drop(self);
    }

    fn process(&mut self) -> &mut Process {
        self.process.as_mut().expect("the process lives until drop")
    }

    /// Switches a running hotpool's `[rrl] responses_per_second` (`None`: no `[rrl]`) by
    /// rewriting its config file and reloading it (`hotpool reload` through its `[api]`,
    /// which returns once the daemon applied it, kernel config included).
    pub fn reload_rrl(&self, link: &Link, rrl: Option<u32>) -> Result<()> {
        let Server::Hotpool { binary, .. } = &self.server else {
            bail!("{} has no [rrl] to reload", self.server);
        };
        let path = self.dir.join("hotpool.toml");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = without_rrl(&text);
        if let Some(rate) = rrl {
            config.push_str(&format!("\n[rrl]\nresponses_per_second = {rate}\n"));
        }
        fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        crate::cmd::output(
            link.server
                .command(&binary.path)
                .arg("reload")
                .arg("--config")
                .arg(&path),
        )
        .map(drop)
    }

    /// hotpool's XDP counters (`hotpool stats`), by outcome name; `None` for other servers
    /// or when the binary cannot tell.
    pub fn hotpool_stats(&self) -> Option<Vec<(String, u64)>> {
        let (Server::Hotpool { binary, .. }, Some(pin)) = (&self.server, &self.pin) else {
            return None;
        };
        let out = Command::new(&binary.path)
            .arg("stats")
            .arg("--pin-path")
            .arg(pin)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| parse_stats(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// `text`, a config written by [`start`], without its `[rrl]` section (the table header and
/// its keys, up to the next table).
fn without_rrl(text: &str) -> String {
    let mut out = String::new();
    let mut in_rrl = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_rrl = line.trim() == "[rrl]";
        }
        if !in_rrl {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `hotpool stats` output: one `outcome count` per line.
pub fn parse_stats(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let count = words.next()?.parse().ok()?;
            Some((name.to_owned(), count))
        })
        .collect()
}

/// Every outcome that moved from `before` to `after`, with how much, largest first.
pub fn stats_moved(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut moved: Vec<(String, u64)> = after
        .iter()
        .filter_map(|(name, _)| {
            let delta = stats_delta(before, after, name)?;
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect();
    moved.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    moved
}

/// The `hotpool stats` outcomes of queries the kernel answered: `hit` in every build, and
/// `hit_headroom` (the reply grew into the frame's headroom) since the kernel rewrite; the
/// previous release counted the replies it could not grow as `tail_grow`, passed.
pub const ANSWERED_OUTCOMES: [&str; 2] = ["hit", "hit_headroom"];

/// Queries the kernel answered, from [`stats_moved`]'s output of any build.
pub fn kernel_answered(moved: &[(String, u64)]) -> u64 {
    moved
        .iter()
        .filter(|(name, _)| ANSWERED_OUTCOMES.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum()
}

/// The count of `outcome` in `after` minus that in `before`.
pub fn stats_delta(
    before: &[(String, u64)],
    after: &[(String, u64)],
    outcome: &str,
) -> Option<u64> {
    let get = |s: &[(String, u64)]| s.iter().find(|(n, _)| n == outcome).map(|(_, c)| *c);
    Some(get(after)?.saturating_sub(get(before)?))
}

/// Starts `server` on the server end of `link` and waits until it answers a zone query from
/// the client namespace (and, with XDP, until its program is attached).
pub fn start(server: &Server, link: &Link, work: &Path) -> Result<Running> {
    let dir = work.join(unique("srv"));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let zone_file = dir.join("example.test.zone");
    let with_pools = !matches!(server, Server::Hotpool { .. });
    fs::write(&zone_file, dns::zone(with_pools))
        .with_context(|| format!("writing {}", zone_file.display()))?;
    let log = dir.join("server.log");
    let mut pin = None;
    let command = match server {
        Server::Hotpool { binary, xdp, rrl } => {
            let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", unique("hpb")));
            let mut config = dns::hotpool_config(
                link.server_v4,
                &pin_dir.display().to_string(),
                xdp.map(|mode| (link.server_if.as_str(), mode.name())),
            );
            if let Some(rate) = rrl {
                config.push_str(&format!("[rrl]\nresponses_per_second = {rate}\n"));
            }
            if binary.can_reload() {
                // The state file in the run's own directory, not the system's default
                // (the previous release has no `[state]` and rejects the key).
                // And the API on a Unix socket there, for `hotpool reload`.
                config.push_str(&format!(
                    "[state]\npath = \"{}\"\n\n[api]\nunix_socket = \"{}\"\n",
                    dir.join("state.json").display(),
                    dir.join("api.sock").display()
                ));
            }
            pin = Some(pin_dir);
            let path = dir.join("hotpool.toml");
            fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
            let mut command = link.server.command(&binary.path);
            command.arg("run").arg("--config").arg(&path);
            if xdp.is_none() {
                command.arg("--no-xdp");
            }
            command.env("HOTPOOL_LOG", "warn");
            command
        }
        Server::KnotUdp | Server::KnotXdp => {
            let path = dir.join("knot.conf");
            let xdp = matches!(server, Server::KnotXdp).then_some(link.server_if.as_str());
            fs::write(&path, knot_config(&dir, link, xdp))?;
            let mut command = link.server.command("knotd");
            command.arg("-c").arg(&path);
            command
        }
        Server::Nsd => {
            let path = dir.join("nsd.conf");
            fs::write(&path, nsd_config(&dir, link))?;
            let mut command = link.server.command("nsd");
            command.arg("-d").arg("-c").arg(&path);
            command
        }
        Server::Gdnsd => {
            fs::create_dir_all(dir.join("zones"))?;
            fs::rename(&zone_file, dir.join("zones/example.test"))?;
            fs::write(dir.join("config"), gdnsd_config(&dir, link))?;
            let mut command = link.server.command("gdnsd");
            command.arg("-c").arg(&dir).arg("start");
            command
        }
    };
    let process = Process::spawn(&server.to_string(), command, &log)?;
    let mut running = Running {
        process: Some(process),
        dir,
        pin,
        server: server.clone(),
    };
    wait_ready(&mut running, link)?;
    Ok(running)
}

fn wait_ready(running: &mut Running, link: &Link) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let wants_xdp = match &running.server {
        Server::Hotpool { xdp, .. } => xdp.is_some(),
        Server::KnotXdp => true,
        _ => false,
    };
    loop {
        interrupt::check()?;
        running.process().check_running()?;
        let attached = !wants_xdp || link.server_xdp_prog()?.is_some();
        if attached
            && load::probe(
                link,
                "h001.example.test.",
                RecordType::A,
                Duration::from_millis(300),
            )
            .is_ok_and(|rcode| rcode == 0)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = running.process().log_tail();
            bail!(
                "{} did not answer within 30 s (XDP attached: {attached}); the end of its log:\n{}",
                running.server,
                tail
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The XDP program of a running hotpool, checked to be hotpool's.
pub fn hotpool_prog(link: &Link) -> Result<XdpProg> {
    let Some(prog) = link.server_xdp_prog()? else {
        bail!("no XDP program on {}", link.server_if);
    };
    if prog.name != "hotpool" {
        bail!(
            "the XDP program on {} is {:?}, not hotpool's",
            link.server_if,
            prog.name
        );
    }
    Ok(prog)
}

/// Knot: two UDP workers (one per core), the zone file loaded whole and never written back;
/// with `xdp`, its AF_XDP front end on that interface.
fn knot_config(dir: &Path, link: &Link, xdp: Option<&str>) -> String {
    let d = dir.display();
    let mut c = format!(
        "server:\n    rundir: \"{d}\"\n    pidfile: \"{d}/knot.pid\"\n    listen: {}@53\n    \
         udp-workers: 2\n    tcp-workers: 1\n    background-workers: 1\n\n",
        link.server_v4
    );
    if let Some(iface) = xdp {
        c.push_str(&format!(
            "xdp:\n    listen: {iface}@53\n    udp: on\n    tcp: off\n    route-check: off\n\n"
        ));
    }
    c.push_str(&format!(
        "database:\n    storage: \"{d}/db\"\n\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\n    \
         zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\n\
         zone:\n  - domain: example.test\n\n\
         log:\n  - target: stderr\n    any: warning\n"
    ));
    c
}

/// NSD: two server processes (one per core) with SO_REUSEPORT, no chroot, no privilege drop,
/// and no response rate limiting (Debian's NSD limits each client to 200 qps by default,
/// which would make a load test measure the limiter).
fn nsd_config(dir: &Path, link: &Link) -> String {
    let d = dir.display();
    format!(
        "server:\n    ip-address: {}\n    port: 53\n    server-count: 2\n    reuseport: yes\n    \
         username: \"\"\n    chroot: \"\"\n    zonesdir: \"{d}\"\n    \
         zonelistfile: \"{d}/zone.list\"\n    database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n    \
         xfrdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    verbosity: 0\n    hide-version: yes\n    \
         rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n\n\
         remote-control:\n    control-enable: no\n\n\
         zone:\n    name: example.test\n    zonefile: example.test.zone\n",
        link.server_v4
    )
}

/// gdnsd: two UDP threads (one per core), run and state directories of its own.
fn gdnsd_config(dir: &Path, link: &Link) -> String {
    let d = dir.display();
    format!(
        "options => {{\n  listen => [ {} ]\n  run_dir => {d}/run\n  state_dir => {d}/state\n  \
         udp_threads => 2\n  tcp_threads => 1\n}}\n",
        link.server_v4
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrl_section_is_removed_and_nothing_else() {
        let text = "[server]\nlisten = [\"10.0.0.1\"]\n\n[rrl]\nresponses_per_second = 5\n\n\
                    [state]\npath = \"s.json\"\n";
        assert_eq!(
            without_rrl(text),
            "[server]\nlisten = [\"10.0.0.1\"]\n\n[state]\npath = \"s.json\"\n"
        );
        assert_eq!(without_rrl("[a]\nx = 1\n"), "[a]\nx = 1\n");
    }

    #[test]
    fn stats_output_parses_and_deltas() {
        let before = parse_stats("hit            10\nnot_ip         1\nmiss 4\n");
        let after = parse_stats("hit            25\nnot_ip         1\nmiss 9\ngarbage\n");
        assert_eq!(stats_delta(&before, &after, "hit"), Some(15));
        assert_eq!(stats_delta(&before, &after, "miss"), Some(5));
        assert_eq!(stats_delta(&before, &after, "nope"), None);
        assert_eq!(
            stats_moved(&before, &after),
            [("hit".to_owned(), 15), ("miss".to_owned(), 5)]
        );
    }

    #[test]
    fn kernel_answers_count_in_old_and_new_builds() {
        // The previous release: `hit`, and `tail_grow` for replies it passed.
        let old_before = parse_stats("hit            10\ntail_grow      3\nmiss           4\n");
        let old_after = parse_stats("hit            30\ntail_grow      83\nmiss           4\n");
        assert_eq!(kernel_answered(&stats_moved(&old_before, &old_after)), 20);
        // Since the kernel rewrite: `hit` and `hit_headroom`, `grow_failed` passed.
        let new_before = parse_stats("hit 10\nhit_headroom 0\ngrow_failed 0\nmiss 4\n");
        let new_after = parse_stats("hit 30\nhit_headroom 80\ngrow_failed 2\nmiss 4\n");
        assert_eq!(kernel_answered(&stats_moved(&new_before, &new_after)), 100);
        assert_eq!(kernel_answered(&[]), 0);
    }
}
