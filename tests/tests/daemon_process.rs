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

use dns_common::Outcome;
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
