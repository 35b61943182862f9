//! The `hotpool` binary as an operator runs it: `check` on good and bad files, SIGTERM and
//! SIGINT shut down cleanly and leave the XDP program answering, a restart adopts it and its
//! pinned maps, `hotpool detach` removes it, `--no-xdp` and an impossible attach serve from
//! userspace.
//!
//! `cargo xtask test` builds the binary before the tests run.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use hotpool::datapath::hot::read_pinned_stats;
use hotpool_tests::{client, daemon::answers_tcp, netns::Link, require_root};

fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/hotpool");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` (or `cargo build -p dns-userspace --bin hotpool`)",
        bin.display()
    );
    bin
}

const ZONE: &str = "\
$ORIGIN example.test.
$TTL 3600
@    IN SOA ns1 hostmaster 1 3600 600 604800 60
@    IN NS  ns1
ns1  IN A   192.0.2.53
";

/// A scratch directory with a config and zone, removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str, config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hotpool-proc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("example.test.zone"), ZONE).unwrap();
        std::fs::write(dir.join("hotpool.toml"), config).unwrap();
        Self { dir }
    }
    fn config(&self) -> PathBuf {
        self.dir.join("hotpool.toml")
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(link: &Link, pin: &Path, xdp: &str) -> String {
    format!(
        r#"[server]
listen = ["{v4}"]
pin_path = "{pin}"

[xdp]
{xdp}

[[zone]]
origin = "example.test."
file = "example.test.zone"

[state]
path = "state.json"

[[pool]]
name = "www.example.test."
type = "A"
endpoints = [{{ address = "192.0.2.10" }}]
"#,
        v4 = link.server_v4,
        pin = pin.display(),
    )
}

/// `hotpool run` inside the server's network namespace, stderr kept in a file. `nsenter
/// --net` (which execs it, so the child's pid is the daemon's) switches only the network
/// namespace; `ip netns exec` would also give it a private /sys, and with it a private
/// bpffs whose pins vanish with the process.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(link: &Link, files: &Files, extra: &[&str], log_name: &str) -> Self {
        let log = files.dir.join(log_name);
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", link.server.name))
            .arg(binary())
            .args(["run", "--config"])
            .arg(files.config())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawning hotpool");
        let mut r = Self { child, log };
        r.wait_answering(link);
        r
    }

    fn wait_answering(&mut self, link: &Link) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // "hotpool running" is logged once XDP is set up (or given up on).
            if answers_tcp(link) && self.log().contains("hotpool running") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("hotpool exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "hotpool did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits for a clean exit.
    fn stop(mut self, signal: i32) -> String {
        // SAFETY: plain kill(2) on our child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "hotpool exited with {status}:\n{}",
                    self.log()
                );
                return self.log();
            }
            assert!(Instant::now() < deadline, "hotpool ignored signal {signal}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xdp_attached(link: &Link) -> bool {
    let out = link
        .server
        .exec_ok(&["ip", "-d", "link", "show", "dev", &link.server_if]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

fn hit_count(pin: &Path) -> u64 {
    read_pinned_stats(pin).unwrap()[Outcome::Hit as usize].1
}

fn query_www(link: &Link) -> hickory_proto::op::Message {
    let server = SocketAddr::new(IpAddr::V4(link.server_v4), 53);
    link.client.run(move || {
        client::udp(
            server,
            &client::query("www.example.test.", RecordType::A, false),
            Duration::from_secs(2),
        )
        .expect("answer")
    })
}

#[test]
fn sigterm_leaves_the_kernel_path_a_restart_adopts_it_and_detach_removes_it() {
    require_root();
    let link = Link::new();
    let pin = PathBuf::from(format!("/sys/fs/bpf/hotpool-proc-{}", std::process::id()));
    let files = Files::new(
        "restart",
        &config(
            &link,
            &pin,
            &format!("interfaces = [\"{}\"]\nmode = \"generic\"", link.server_if),
        ),
    );

    let first = Running::start(&link, &files, &[], "first.log");
    assert!(xdp_attached(&link));
    assert_eq!(query_www(&link).answers.len(), 1);
    assert_eq!(hit_count(&pin), 1, "answered by XDP");
    let log = first.stop(libc::SIGTERM);
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("the link is pinned"), "{log}");
    assert!(xdp_attached(&link), "the kernel path outlives the daemon");
    assert_eq!(query_www(&link).answers.len(), 1, "answered with no daemon");
    assert_eq!(hit_count(&pin), 2, "by the kernel");

    let second = Running::start(&link, &files, &[], "second.log");
    assert!(
        second.log().contains("adopted the XDP program"),
        "{}",
        second.log()
    );
    assert_eq!(query_www(&link).answers.len(), 1);
    assert_eq!(
        hit_count(&pin),
        3,
        "the restarted daemon counts on in the pinned map"
    );
    let log = second.stop(libc::SIGINT);
    assert!(log.contains("SIGINT received"), "{log}");
    assert!(xdp_attached(&link));

    let out = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", link.server.name))
        .arg(binary())
        .args(["detach", "--config"])
        .arg(files.config())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("detached the XDP program"), "{said}");
    assert!(!xdp_attached(&link), "detach removes the kernel path");
    assert!(pin.join("STATS").exists(), "the maps stay pinned");
    let _ = std::fs::remove_dir_all(&pin);
}

#[test]
fn no_xdp_flag_serves_everything_from_userspace() {
    require_root();
    let link = Link::new();
    let pin = PathBuf::from(format!("/sys/fs/bpf/hotpool-noxdp-{}", std::process::id()));
    let files = Files::new(
        "noxdp",
        &config(
            &link,
            &pin,
            &format!("interfaces = [\"{}\"]", link.server_if),
        ),
    );
    let d = Running::start(&link, &files, &["--no-xdp"], "noxdp.log");
    assert!(!xdp_attached(&link));
    let m = query_www(&link);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    assert!(!pin.exists(), "nothing loaded, nothing pinned");
    let log = d.stop(libc::SIGTERM);
    assert!(log.contains("--no-xdp"), "{log}");
}

#[test]
fn impossible_attach_warns_and_serves_from_userspace() {
    require_root();
    let link = Link::new();
    let pin = PathBuf::from(format!("/sys/fs/bpf/hotpool-noif-{}", std::process::id()));
    let files = Files::new(
        "noif",
        &config(
            &link,
            &pin,
            "interfaces = [\"nosuchif0\"]\nmode = \"native\"",
        ),
    );
    let d = Running::start(&link, &files, &[], "noif.log");
    assert_eq!(query_www(&link).answers.len(), 1);
    let log = d.stop(libc::SIGTERM);
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("nosuchif0"), "{log}");
    assert!(
        log.contains("answering every query from userspace"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&pin);
}

#[test]
fn check_accepts_the_example_and_names_file_and_line_of_errors() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hotpool.toml");
    let out = Command::new(binary())
        .arg("check")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("www.example.test"), "{summary}");

    let bad = Files::new(
        "bad",
        "[server]\nlisten = [\"127.0.0.1\"]\nport = 0\n\n[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n",
    );
    let out = Command::new(binary())
        .arg("check")
        .arg(bad.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hotpool.toml:3"),
        "names the file and line: {err}"
    );
    assert!(err.contains("port"), "names the problem: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = Command::new(binary())
        .args(["check", "/nonexistent/hotpool.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hotpool.toml"));
}
