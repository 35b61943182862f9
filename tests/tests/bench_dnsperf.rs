//! End-to-end load (`cargo xtask bench`): dnsperf in the client namespace against the
//! daemon in the server namespace, with the XDP fast path (native mode, pass program on the
//! peer) and with `--no-xdp`, for a hot-pool name and for a zone name the daemon answers.
//! Traffic stays on the test's own veth pair.

use std::time::Duration;

use aya::programs::XdpMode;
use dns_common::Outcome;
use hotpool::{
    config::Config,
    daemon::{self, RunOptions},
    datapath::{ebpf::PassProgram, hot::read_pinned_stats},
};
use hotpool_tests::{
    daemon::{ZONE, answers_tcp, delta, xdp_attached},
    netns::Link,
};

const SECONDS: u32 = 5;

fn config(link: &Link) -> String {
    format!(
        r#"[server]
listen = ["{v4}"]
pin_path = "{{pin}}"

[xdp]
interfaces = ["{iface}"]
mode = "native"

[state]
path = "state.json"

[[zone]]
origin = "example.test."
file = "zones/example.test.zone"

[[pool]]
name = "www.example.test."
type = "A"
endpoints = [{{ address = "192.0.2.10" }}, {{ address = "192.0.2.11" }}]
"#,
        v4 = link.server_v4,
        iface = link.server_if,
    )
}

/// Runs dnsperf for `SECONDS` with `query` (one line of its data file format);
/// returns (queries per second, lost queries).
fn dnsperf(link: &Link, query: &str, dir: &std::path::Path) -> (f64, u64) {
    let data = dir.join(format!("queries-{}.txt", query.replace(' ', "-")));
    std::fs::write(&data, format!("{query}\n")).unwrap();
    let out = link.client.exec_ok(&[
        "dnsperf",
        "-s",
        &link.server_v4.to_string(),
        "-d",
        data.to_str().unwrap(),
        "-l",
        &SECONDS.to_string(),
        "-c",
        "8",
        "-T",
        "2",
        "-q",
        "256",
        "-t",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {label:?} in dnsperf output:\n{text}"))
    };
    (field("Queries per second"), field("Queries lost") as u64)
}

/// Runs the daemon like the binary does (multi-threaded runtime, one worker per core) in
/// the server namespace; returns its stop sender and thread.
fn start(
    link: &Link,
    dir: &std::path::Path,
    no_xdp: bool,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<anyhow::Result<()>>,
) {
    let cfg = Config::load(&dir.join("hotpool.toml")).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = link.server.spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(daemon::run_until(
                cfg,
                RunOptions {
                    no_xdp,
                    ..RunOptions::default()
                },
                async move {
                    let _ = rx.await;
                    Ok(())
                },
            ))
    });
    while !answers_tcp(link) || (!no_xdp && !xdp_attached(link)) {
        assert!(!handle.is_finished(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    (tx, handle)
}

#[test]
#[ignore = "benchmark: run with `cargo xtask bench`"]
fn dnsperf_with_and_without_xdp() {
    let link = Link::new();
    let iface = link.client_if.clone();
    let _peer = link
        .client
        .run(move || PassProgram::attach(&iface, XdpMode::Driver).expect("pass program"));
    let dir = std::env::temp_dir().join(format!("hotpool-dnsperf-{}", std::process::id()));
    let pin = format!("/sys/fs/bpf/hotpool-dnsperf-{}", std::process::id());
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("zones/example.test.zone"), ZONE).unwrap();
    std::fs::write(
        dir.join("hotpool.toml"),
        config(&link).replace("{pin}", &pin),
    )
    .unwrap();
    println!(
        "dnsperf, {SECONDS} s each, 8 clients, 2 threads, from another namespace over a veth \
         (daemon and dnsperf share the machine's cores):"
    );

    let (stop, handle) = start(&link, &dir, false);
    let stats = || read_pinned_stats(std::path::Path::new(&pin)).unwrap();
    let before = stats();
    let (xdp_pool, lost) = dnsperf(&link, "www.example.test A", &dir);
    let hits = delta(&before, &stats(), Outcome::Hit);
    println!(
        "  pool name, XDP (native):  {xdp_pool:>9.0} qps ({lost} lost, {hits} answered in the kernel)"
    );
    let (zone, lost) = dnsperf(&link, "ns1.example.test A", &dir);
    println!("  zone name, daemon:        {zone:>9.0} qps ({lost} lost)");
    let _ = stop.send(());
    handle.join().unwrap().unwrap();

    let (stop, handle) = start(&link, &dir, true);
    let (plain, lost) = dnsperf(&link, "www.example.test A", &dir);
    println!("  pool name, --no-xdp:      {plain:>9.0} qps ({lost} lost)");
    println!("  XDP speed-up for pool names: {:.1}x", xdp_pool / plain);
    let _ = stop.send(());
    handle.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pin);
    assert!(hits > 0, "the kernel answered");
}
