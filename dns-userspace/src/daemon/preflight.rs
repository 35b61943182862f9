//! What `hotpool check` verifies beyond the config file, as the user it runs as (the unit
//! runs it as `ExecStartPre=`, with the service's user, capabilities and sandbox): that
//! `run` could bind its listen and API addresses, create its API socket, write its event
//! log and state file, and find its XDP interfaces; and how `run` would share the open-file
//! limit (the unit's `LimitNOFILE`). Nothing is created or changed: addresses are bound and
//! released at once, files and directories only tested for access, the limit only read.

use std::{
    fmt,
    io::ErrorKind,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    config::Config,
    daemon::fd_budget,
    limits::{self, FdBudget},
    steering::probe::wanted_in_flight,
};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// `run` works, but not as one may expect (e.g. without XDP on an interface).
    Warning,
    /// `run` would fail.
    Problem,
}

/// One thing checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        };
        write!(f, "  {level:<8}{}", self.what)
    }
}

impl Finding {
    /// The same finding about `what` (its first words replaced).
    fn named(mut self, what: &str) -> Self {
        if let Some((_, rest)) = self.what.split_once(": ") {
            self.what = format!("{what}: {rest}");
        }
        self
    }
}

fn finding(level: Level, what: impl Into<String>) -> Finding {
    Finding {
        level,
        what: what.into(),
    }
}

/// Everything checked for `cfg`.
pub fn check(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for ip in &cfg.server.listen {
        let addr = SocketAddr::new(*ip, cfg.server.port);
        out.push(bindable(addr, &[Type::DGRAM, Type::STREAM], "listen"));
    }
    if let Some(addr) = cfg.api.listen {
        out.push(bindable(addr, &[Type::STREAM], "api listen"));
    }
    if let Some(socket) = &cfg.api.unix_socket {
        // The daemon replaces a stale socket file; the directory must let it.
        let dir = socket.path.parent().unwrap_or(Path::new("."));
        out.push(
            writable(&dir.join(".hotpool-check"), "api socket directory")
                .named(&format!("api unix_socket {}", socket.path.display())),
        );
    }
    if let Some(log) = &cfg.events.log {
        out.push(writable(log, "event log"));
    }
    out.push(writable(&cfg.state.path, "state file"));
    out.push(match limits::nofile_reachable() {
        Ok(limit) => {
            // What the load needs, under the ceiling the operator chose.
            let wanted = wanted_in_flight(cfg.probe_specs());
            let wanted = cfg.probes.max_concurrent.map_or(wanted, |m| wanted.min(m));
            descriptors(&fd_budget(cfg, limit), wanted)
        }
        Err(e) => finding(
            Level::Warning,
            format!("open files: cannot read the limit: {e}"),
        ),
    });
    for iface in &cfg.xdp.interfaces {
        let c = std::ffi::CString::new(iface.as_str()).unwrap_or_default();
        // SAFETY: a valid C string; no other preconditions.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        out.push(if index == 0 {
            finding(
                Level::Warning,
                format!(
                    "xdp interface {iface}: not found here; the daemon answers its queries from userspace"
                ),
            )
        } else {
            finding(Level::Ok, format!("xdp interface {iface}: present"))
        });
    }
    out
}

/// How `run` would share the open-file limit: a warning when `server.tcp_max_connections`
/// would be lowered, or when the probes get fewer slots than the `wanted` in flight.
fn descriptors(budget: &FdBudget, wanted: usize) -> Finding {
    let shares = format!(
        "open files: {} (raised to the hard limit): {} for API connections, {} TCP connections, {} probes in flight",
        budget.limit, budget.api, budget.tcp, budget.probes
    );
    let mut short = Vec::new();
    if let Some(asked) = budget.tcp_lowered_from {
        short.push(format!("tcp_max_connections {asked} would be lowered"));
    }
    if budget.probes_in_flight() < wanted {
        short.push(format!(
            "the probes need {wanted} in flight and would run late"
        ));
    }
    if short.is_empty() {
        finding(Level::Ok, shares)
    } else {
        finding(
            Level::Warning,
            format!(
                "{shares}; {}: raise the open-file limit (LimitNOFILE=)",
                short.join(", ")
            ),
        )
    }
}

/// Whether `addr` can be bound for each of `types` (released at once).
fn bindable(addr: SocketAddr, types: &[Type], what: &str) -> Finding {
    let names = types
        .iter()
        .map(|t| if *t == Type::DGRAM { "udp" } else { "tcp" })
        .collect::<Vec<_>>()
        .join("+");
    for &t in types {
        let proto = if t == Type::DGRAM {
            Protocol::UDP
        } else {
            Protocol::TCP
        };
        let result = Socket::new(Domain::for_address(addr), t, Some(proto)).and_then(|s| {
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            if t == Type::STREAM {
                s.set_reuse_address(true)?;
            }
            s.bind(&addr.into())
        });
        let Err(e) = result else {
            continue;
        };
        return match e.kind() {
            ErrorKind::AddrInUse => finding(
                Level::Warning,
                format!(
                    "{what} {addr} ({names}): in use by another socket; `run` fails unless that \
                     is this daemon, running now"
                ),
            ),
            ErrorKind::PermissionDenied => finding(
                Level::Problem,
                format!(
                    "{what} {addr} ({names}): permission denied (ports below 1024 need \
                     CAP_NET_BIND_SERVICE)"
                ),
            ),
            ErrorKind::AddrNotAvailable => finding(
                Level::Problem,
                format!("{what} {addr} ({names}): no such address on this host"),
            ),
            _ => finding(Level::Problem, format!("{what} {addr} ({names}): {e}")),
        };
    }
    finding(Level::Ok, format!("{what} {addr} ({names}): can bind"))
}

/// Whether the file at `path` can be written, or created (with its missing directories,
/// as the daemon does) where the nearest existing directory allows.
fn writable(path: &Path, what: &str) -> Finding {
    let shown = path.display();
    if path.is_dir() {
        return finding(Level::Problem, format!("{what} {shown}: is a directory"));
    }
    if path.exists() {
        return match access(path) {
            Ok(()) => {
                // The state file is replaced by a rename: its directory must be writable too.
                match path.parent().map(access) {
                    Some(Err(e)) if what == "state file" => finding(
                        Level::Problem,
                        format!("{what} {shown}: its directory is not writable ({e})"),
                    ),
                    _ => finding(Level::Ok, format!("{what} {shown}: writable")),
                }
            }
            Err(e) => finding(
                Level::Problem,
                format!("{what} {shown}: not writable ({e})"),
            ),
        };
    }
    let Some(dir) = path
        .ancestors()
        .skip(1)
        .find(|d| d.as_os_str().is_empty() || d.exists())
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        })
    else {
        return finding(
            Level::Problem,
            format!("{what} {shown}: no directory to create it in"),
        );
    };
    if !dir.is_dir() {
        return finding(
            Level::Problem,
            format!(
                "{what} {shown}: cannot be created, {} is not a directory",
                dir.display()
            ),
        );
    }
    match access(&dir) {
        Ok(()) if Some(dir.as_path()) == path.parent() => {
            finding(Level::Ok, format!("{what} {shown}: can be created"))
        }
        Ok(()) => finding(
            Level::Ok,
            format!(
                "{what} {shown}: can be created (with its directories under {})",
                dir.display()
            ),
        ),
        Err(e) => finding(
            Level::Problem,
            format!(
                "{what} {shown}: cannot be created, {} is not writable ({e})",
                dir.display()
            ),
        ),
    }
}

/// `faccessat(W_OK)` with the effective ids, as the daemon will open it.
fn access(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string; no other preconditions.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The findings as `hotpool check` prints them, and whether `run` would fail.
pub fn report(findings: &[Finding]) -> (String, bool) {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut out = format!("checks (as uid {uid}):\n");
    for f in findings {
        out.push_str(&f.to_string());
        out.push('\n');
    }
    (out, findings.iter().any(|f| f.level == Level::Problem))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};

    use super::*;

    #[test]
    fn a_port_in_use_is_a_warning_and_a_free_one_ok() {
        let taken = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = taken.local_addr().unwrap();
        let f = bindable(addr, &[Type::DGRAM, Type::STREAM], "listen");
        assert_eq!(f.level, Level::Warning, "{f}");
        assert!(f.what.contains("in use"), "{f}");
        drop(taken);
        let free = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        assert_eq!(
            bindable(addr, &[Type::STREAM], "metrics_listen").level,
            Level::Ok
        );
        // An address this host does not have.
        let f = bindable("192.0.2.1:53".parse().unwrap(), &[Type::DGRAM], "listen");
        assert_eq!(f.level, Level::Problem, "{f}");
        assert!(f.what.contains("no such address"), "{f}");
    }

    #[test]
    fn the_descriptor_shares_warn_when_tcp_or_the_probes_fall_short() {
        let wants = |tcp| limits::FdWants {
            udp_sockets: 2,
            api: 64,
            tcp,
        };
        let f = descriptors(&FdBudget::split(65_536, wants(None)), 1000);
        assert_eq!(f.level, Level::Ok, "{f}");
        assert!(f.what.starts_with("open files: 65536 "), "{f}");
        assert!(f.what.contains(" 64 for API connections"), "{f}");
        // Too few descriptors for what TCP asks for, or for the probes' load.
        let f = descriptors(&FdBudget::split(1024, wants(Some(4096))), 10);
        assert_eq!(f.level, Level::Warning, "{f}");
        assert!(
            f.what.contains("tcp_max_connections 4096 would be lowered"),
            "{f}"
        );
        let f = descriptors(&FdBudget::split(1024, wants(None)), 40_000);
        assert_eq!(f.level, Level::Warning, "{f}");
        assert!(f.what.contains("the probes need 40000 in flight"), "{f}");
        assert!(
            f.what.ends_with("raise the open-file limit (LimitNOFILE=)"),
            "{f}"
        );
    }

    #[test]
    fn files_are_checked_for_writing_without_creating_them() {
        let dir = std::env::temp_dir().join(format!("hotpool-preflight-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = writable(&dir.join("a/b/state.json"), "state file");
        assert_eq!(f.level, Level::Ok, "{f}");
        assert!(f.what.contains("with its directories"), "{f}");
        assert!(!dir.join("a").exists(), "nothing created");
        let f = writable(&dir, "event log");
        assert_eq!(f.level, Level::Problem, "{f}");
        std::fs::write(dir.join("events.jsonl"), "").unwrap();
        assert_eq!(
            writable(&dir.join("events.jsonl"), "event log").level,
            Level::Ok
        );
        let _ = std::fs::remove_dir_all(&dir);
        // Below a file: cannot be created, whoever runs it.
        let f = writable(Path::new("/etc/hostname/hotpool/state.json"), "state file");
        assert_eq!(f.level, Level::Problem, "{f}");
        assert!(f.what.contains("not a directory"), "{f}");
    }
}
