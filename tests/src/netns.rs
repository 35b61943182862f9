//! Network namespaces and veth pairs for end-to-end tests, removed on drop (also when the
//! test panics), like aya's `NetNsGuard`.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        crate::require_root();
        let name = format!(
            "hp-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {cmd:?}: {e}", self.name))
    }

    /// Runs a command inside the namespace and asserts it succeeded.
    pub fn exec_ok(&self, cmd: &[&str]) -> Output {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} in {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `f` on a new thread that has entered this namespace; sockets, interface names
    /// and XDP attachments it makes are this namespace's.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Spawns a long-running thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: valid fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also destroys the veth ends inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair: `server` (`.1`) and `client` (`.2`) on
/// 10.77.<n>.0/24 and fd77::<n>:0/112, both ends up.
pub struct Link {
    pub server: NetNs,
    pub client: NetNs,
    pub server_if: String,
    pub client_if: String,
    pub server_v4: std::net::Ipv4Addr,
    pub client_v4: std::net::Ipv4Addr,
    pub server_v6: std::net::Ipv6Addr,
    pub client_v6: std::net::Ipv6Addr,
}

impl Link {
    pub fn new() -> Self {
        let server = NetNs::new("srv");
        let client = NetNs::new("cli");
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let server_if = format!("hps{n}-{}", std::process::id() % 10000);
        let client_if = format!("hpc{n}-{}", std::process::id() % 10000);
        ip(&[
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
        ]);
        let server_v4 = std::net::Ipv4Addr::new(10, 77, n as u8, 1);
        let client_v4 = std::net::Ipv4Addr::new(10, 77, n as u8, 2);
        let server_v6: std::net::Ipv6Addr = format!("fd77::{n:x}:1").parse().unwrap();
        let client_v6: std::net::Ipv6Addr = format!("fd77::{n:x}:2").parse().unwrap();
        for (ns, ifname, v4, v6) in [
            (&server, &server_if, server_v4, server_v6),
            (&client, &client_if, client_v4, client_v6),
        ] {
            ns.exec_ok(&["ip", "addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.exec_ok(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{v6}/112"),
                "dev",
                ifname,
                "nodad",
            ]);
            ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
        }
        Self {
            server,
            client,
            server_if,
            client_if,
            server_v4,
            client_v4,
            server_v6,
            client_v6,
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}
