//! The `hotpool` binary as an operator runs it: `check` on good and bad files, SIGTERM and
//! SIGINT shut down cleanly and leave the XDP program answering, a restart adopts it and its
//! pinned maps, `hotpool detach` removes it, `--no-xdp` and an impossible attach serve from
//! userspace.
//!
//! `cargo xtask test` builds the binary before the tests run.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use hotpool::datapath::hot::read_pinned_stats;
use hotpool_tests::{
    client,
    netns::Link,
    process::{Files, Running, binary, xdp_attached},
    require_root,
};

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

fn hit_count(pin: &Path) -> u64 {
    read_pinned_stats(pin)
        .unwrap()
        .iter()
        .filter(|(o, _)| o.answered())
        .map(|(_, n)| n)
        .sum()
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

/// The binary at `path`, read whole once it is a complete ELF file. (Once in a great while
/// this test ran an empty copy — which the shell runs as an empty script, exit 0 — most
/// likely one taken while cargo was replacing the file.)
fn elf(path: &Path) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let bytes = std::fs::read(path).unwrap();
        let len = std::fs::metadata(path).unwrap().len();
        if bytes.starts_with(b"\x7fELF") && bytes.len() as u64 == len {
            return bytes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is not a complete ELF file ({} octets)",
            path.display(),
            bytes.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn check_as_an_unprivileged_user_names_what_run_would_fail_on() {
    require_root();
    // The binary and the example where nobody can read them (the checkout may not be).
    let dir = std::env::temp_dir().join(format!("hotpool-unpriv-{}", std::process::id()));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("hotpool"), elf(&binary())).unwrap();
    std::fs::set_permissions(
        dir.join("hotpool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::copy(examples.join("hotpool.toml"), dir.join("hotpool.toml")).unwrap();
    std::fs::copy(
        examples.join("zones/example.test.zone"),
        dir.join("zones/example.test.zone"),
    )
    .unwrap();
    // The service user without the unit's capabilities: port 53 and the directories are
    // out of reach, and check says so and fails, as `run` would.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(dir.join("hotpool"))
        .arg("check")
        .arg(dir.join("hotpool.toml"))
        .output()
        .expect("setpriv (util-linux)");
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}{err}");
    assert!(said.contains("checks (as uid 65534)"), "{said}");
    assert!(
        said.contains("problem listen 127.0.0.1:53") && said.contains("CAP_NET_BIND_SERVICE"),
        "{said}"
    );
    assert!(
        said.contains("problem event log /run/hotpool/events.jsonl"),
        "{said}"
    );
    assert!(
        said.contains("problem state file /var/lib/hotpool/state.json"),
        "{said}"
    );
    assert!(err.contains("`hotpool run` would fail here"), "{err}");
}

#[test]
fn the_systemd_unit_verifies_and_fits_the_example_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("examples/hotpool.service")).unwrap();
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        values("Restart"),
        ["always"],
        "abnormal exits are restarted"
    );
    assert_eq!(values("RuntimeDirectory"), ["hotpool"]);
    assert_eq!(values("StateDirectory"), ["hotpool"]);
    assert_eq!(values("ExecReload").len(), 1);
    let nofile: u64 = values("LimitNOFILE")[0].parse().unwrap();
    let stop_post = values("ExecStopPost").join(" ");
    assert!(
        stop_post.contains("detach --if-stopping --unit %n"),
        "{stop_post}"
    );
    // The example config's files live where the unit's directories are.
    let cfg = hotpool::config::Config::load(&root.join("examples/hotpool.toml")).unwrap();
    assert!(
        cfg.events
            .log
            .as_ref()
            .unwrap()
            .starts_with("/run/hotpool/")
    );
    assert!(cfg.state.path.starts_with("/var/lib/hotpool/"));
    // The unit's limit gives TCP connections what the example config asks for (unset: the
    // budget's share) beside the descriptors kept for the API and the UDP sockets, and
    // leaves the probes at least as many.
    let budget = hotpool::daemon::fd_budget(&cfg, nofile);
    assert_eq!(budget.tcp_lowered_from, None, "{budget:?}");
    assert!(budget.tcp >= 16 * 1024, "{budget:?}");
    assert!(budget.probes >= budget.tcp, "{budget:?}");

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    // Verified as installed: the built binary and the example config in place of
    // /usr/local/sbin/hotpool and /etc/hotpool/hotpool.toml (it checks that they exist).
    let dir = std::env::temp_dir().join(format!("hotpool-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let installed = unit
        .replace("/usr/local/sbin/hotpool", &binary().display().to_string())
        .replace(
            "/etc/hotpool/hotpool.toml",
            &root.join("examples/hotpool.toml").display().to_string(),
        );
    let path = dir.join("hotpool.service");
    std::fs::write(&path, installed).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "systemd-analyze verify warns: {err}");
}
