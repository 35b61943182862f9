//! Never stop answering: the `hotpool` binary in a server namespace, a steady client in
//! the client namespace sending hot queries at [`RATE`] per second and checking every
//! answer, while the daemon is killed, stopped, restarted (also with a broken config, a new
//! program and new maps), reloaded (with a changed pool set, and with broken configs) and
//! finally detached, and reloaded with more pools than its maps hold. Every phase must lose
//! no hot query and answer no wrong one. Also: the
//! state file across a restart (no known-dead or pinned-down endpoint answered; the same
//! restart without it does answer one, so the check can fail), and the failover start-up
//! rule (the primary alone, never primary and standby together).
//!
//! The loss figures are printed (`cargo xtask test -- --nocapture lifecycle`).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::maps::MapInfo;
use hickory_proto::op::ResponseCode;
use hotpool::datapath::{hot::read_pinned_stats, link};
use hotpool_tests::{
    endpoint::{Behaviour, TestEndpoint},
    netns::Link,
    process::{Files, Running, hotpool, xdp_attached},
    require_root,
    steady::{Reply, Report, Steady},
};

/// Hot queries per second.
const RATE: u32 = 2000;
/// Queries each phase runs on after its action, so the kernel and the daemon are seen
/// answering.
const SETTLE: usize = 400;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn server(link: &Link) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(link.server_v4), 53)
}

fn pin_dir(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/hotpool-lc-{tag}-{}",
        std::process::id()
    ))
}

/// Removes the pin directory (and with its link pin, the kernel path) on drop.
struct Pins(PathBuf);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = link::detach_pinned(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config on `link` with `pools`; its API is a Unix socket in the files of `tag` (the
/// commands find it from `--config`; no token needed).
fn config(link: &Link, pin: &Path, tag: &str, pools: &str) -> String {
    format!(
        r#"[server]
listen = ["{v4}"]
pin_path = "{pin}"

[api]
unix_socket = "{socket}"

[xdp]
interfaces = ["{iface}"]
mode = "generic"

[state]
path = "state.json"

[[zone]]
origin = "example.test."
file = "example.test.zone"

{pools}"#,
        v4 = link.server_v4,
        iface = link.server_if,
        pin = pin.display(),
        socket = Files::dir_for(tag).join("api.sock").display(),
    )
}

fn static_pool(name: &str, addr: &str) -> String {
    format!(
        "[[pool]]\nname = \"{name}.example.test.\"\ntype = \"A\"\nendpoints = [{{ address = \"{addr}\" }}]\n\n"
    )
}

/// The link pinned for the server's interface: (link id, program id).
fn pinned_link(pin: &Path) -> (u32, u32) {
    let pins = link::pinned_links(pin);
    assert_eq!(pins.len(), 1, "{pins:?}");
    let info = pins[0].info().expect("reading the pinned link");
    (info.id, info.prog_id)
}

/// Phases of a run: (what happened, first and last query of it).
struct Phases(Vec<(&'static str, usize, usize)>);

impl Phases {
    /// Prints each phase's hot queries and losses, and asserts every reply of name 0 in it
    /// is one of `allowed`.
    fn check(&self, report: &Report, name: usize, allowed: &[&[IpAddr]]) {
        for &(what, from, to) in &self.0 {
            let n = report.of(name, from..to).count();
            let lost = report
                .of(name, from..to)
                .filter(|s| s.reply == Reply::Lost)
                .count();
            println!("measured: {what}: {lost} of {n} hot queries lost");
            report.assert_only(name, from..to, allowed);
        }
    }
}

#[test]
fn restarts_crashes_upgrades_and_a_stopped_daemon_lose_no_hot_query() {
    require_root();
    let link = Link::new();
    let pins = Pins(pin_dir("restarts"));
    let good = config(
        &link,
        &pins.0,
        "lc-restarts",
        &static_pool("www", "192.0.2.10"),
    );
    let files = Files::new("lc-restarts", &good);
    let mut d = Running::start(&link, &files, &[], "start.log");
    assert!(d.log().contains("the link is pinned"), "{}", d.log());
    let steady = Steady::start(&link.client, server(&link), &["www.example.test."], RATE);
    steady.wait_queries(SETTLE);
    let mut phases = Phases(Vec::new());
    let mut mark = steady.mark();
    let mut phase = |what, steady: &Steady| {
        steady.wait_queries(SETTLE);
        let now = steady.mark();
        phases.0.push((what, mark, now));
        mark = now;
    };

    // SIGKILL (once the state file is written, a moment after start): the kernel answers
    // on its own for 2 s; the restart adopts the program and reads the state.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files.file("state.json").exists() {
        assert!(Instant::now() < deadline, "no state file written");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill();
    std::thread::sleep(Duration::from_secs(2));
    assert!(xdp_attached(&link), "the kernel path outlives a crash");
    d = Running::start(&link, &files, &[], "after-kill.log");
    assert!(d.log().contains("adopted the XDP program"), "{}", d.log());
    assert!(d.log().contains("read the state file"), "{}", d.log());
    phase("SIGKILL, 2 s without a daemon, restart", &steady);

    // SIGTERM and an immediate restart.
    d.stop(libc::SIGTERM);
    d = Running::start(&link, &files, &[], "after-term.log");
    phase("SIGTERM and an immediate restart", &steady);

    // A restart whose config is broken fails (as systemd's Restart= would retry it); the
    // kernel path answers meanwhile; the fixed config starts.
    d.stop(libc::SIGTERM);
    files.write_config(&good.replace("type = \"A\"", "type = \"MX\""));
    let (ok, log) = Running::spawn(&link, &files, &[], "broken.log").wait_exit();
    assert!(!ok, "a broken config must not start:\n{log}");
    assert!(log.contains("hotpool.toml:") && log.contains("MX"), "{log}");
    std::thread::sleep(Duration::from_secs(1));
    files.write_config(&good);
    d = Running::start(&link, &files, &[], "after-broken.log");
    phase("restart with a broken config, 1 s, fixed", &steady);

    // A new program: swapped in through the pinned link (one bpf_link_update).
    let (link_id, old_program) = pinned_link(&pins.0);
    d.stop(libc::SIGTERM);
    d = Running::start(
        &link,
        &files,
        &["--replace-program", "program"],
        "new-program.log",
    );
    assert!(d.log().contains("replaced the XDP program"), "{}", d.log());
    let (same_link, new_program) = pinned_link(&pins.0);
    assert_eq!(same_link, link_id, "the same link, updated");
    assert_ne!(new_program, old_program, "another program");
    phase("restart with a new program (link update)", &steady);

    // New maps too: filled before the swap, pinned in place after it.
    d.stop(libc::SIGTERM);
    d = Running::start(
        &link,
        &files,
        &["--replace-program", "maps"],
        "new-maps.log",
    );
    assert!(
        d.log().contains("pinned the new map in place"),
        "{}",
        d.log()
    );
    let (same_link, newer_program) = pinned_link(&pins.0);
    assert_eq!(same_link, link_id);
    assert_ne!(newer_program, new_program);
    phase("restart with a new program and new maps", &steady);

    // The daemon stopped for 10 s.
    d.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    d.signal(libc::SIGCONT);
    phase("daemon stopped (SIGSTOP) for 10 s", &steady);

    let report = steady.finish();
    phases.check(&report, 0, &[&[ip("192.0.2.10")]]);
    assert_eq!(report.lost(0), 0);

    // Removal is explicit.
    d.stop(libc::SIGTERM);
    assert!(xdp_attached(&link));
    let out = hotpool(
        &link,
        &["detach", "--config", &files.config().display().to_string()],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        !xdp_attached(&link),
        "hotpool detach removes the kernel path"
    );
}

fn nxdomain() -> Reply {
    Reply::Answer(ResponseCode::NXDomain, vec![])
}

fn a(addr: &str) -> Reply {
    Reply::Answer(ResponseCode::NoError, vec![ip(addr)])
}

/// Waits until the daemon's log has `n` lines containing `text`.
fn wait_log(d: &Running, text: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.log().matches(text).count() < n {
        assert!(Instant::now() < deadline, "no {text:?} in:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reloads_switch_answers_at_once_and_broken_ones_change_nothing() {
    require_root();
    let link = Link::new();
    let pins = Pins(pin_dir("reloads"));
    let v1 = config(
        &link,
        &pins.0,
        "lc-reloads",
        &(static_pool("www", "192.0.2.10") + &static_pool("gone", "192.0.2.50")),
    );
    // www changes, gone is removed, new is added.
    let v2 = config(
        &link,
        &pins.0,
        "lc-reloads",
        &(static_pool("www", "192.0.2.20") + &static_pool("new", "192.0.2.60")),
    );
    // www changes again, new is renamed newer.
    let v3 = config(
        &link,
        &pins.0,
        "lc-reloads",
        &(static_pool("www", "192.0.2.30") + &static_pool("newer", "192.0.2.60")),
    );
    let files = Files::new("lc-reloads", &v1);
    let d = Running::start(&link, &files, &[], "run.log");
    let names = [
        "www.example.test.",
        "gone.example.test.",
        "new.example.test.",
        "newer.example.test.",
    ];
    let steady = Steady::start(&link.client, server(&link), &names, RATE);
    steady.wait_queries(SETTLE);
    let start = steady.mark();

    // SIGHUP reloads.
    files.write_config(&v2);
    d.signal(libc::SIGHUP);
    wait_log(&d, "reloaded", 1);
    steady.wait_queries(SETTLE);
    let after_hup = steady.mark();
    assert!(d.log().contains("SIGHUP received"), "{}", d.log());

    // `hotpool reload` (the API) with broken configs: non-zero, the reason, no change.
    let reload = || {
        hotpool(
            &link,
            &["reload", "--config", &files.config().display().to_string()],
        )
    };
    let broken = [
        (v2.replace("type = \"A\"", "type = \"Q\""), "hotpool.toml:"),
        (
            v2.replace("listen = [", "port = 5353\nlisten = ["),
            "server.port",
        ),
        (
            v2.replace("example.test.zone", "missing.zone"),
            "missing.zone",
        ),
    ];
    for (text, says) in &broken {
        files.write_config(text);
        let out = reload();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a broken reload must fail: {err}");
        assert!(err.contains("reload failed") && err.contains(says), "{err}");
        assert!(!err.contains("HTTP/1.1"), "no raw HTTP lines: {err}");
    }
    steady.wait_queries(SETTLE);
    let after_broken = steady.mark();

    // A good one through `hotpool reload`.
    files.write_config(&v3);
    let out = reload();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 added") && said.contains("1 removed"),
        "{said}"
    );
    steady.wait_queries(SETTLE);
    let end = steady.mark();
    let report = steady.finish();
    d.stop(libc::SIGTERM);

    // Each name switches once and for all, and is never answered with another pool's
    // records (the removed and renamed names go to NXDOMAIN, not to another index).
    let switches = [
        (0, start..after_hup, a("192.0.2.10"), a("192.0.2.20")),
        (1, start..after_hup, a("192.0.2.50"), nxdomain()),
        (2, start..after_hup, nxdomain(), a("192.0.2.60")),
        (0, after_broken..end, a("192.0.2.20"), a("192.0.2.30")),
        (2, after_broken..end, a("192.0.2.60"), nxdomain()),
        (3, after_broken..end, nxdomain(), a("192.0.2.60")),
    ];
    for (name, range, old, new) in switches {
        report.assert_switch(name, range, &old, &new);
    }
    // The broken reloads changed nothing.
    report.assert_only(0, after_hup..after_broken, &[&[ip("192.0.2.20")]]);
    report.assert_only(2, after_hup..after_broken, &[&[ip("192.0.2.60")]]);
    for (i, name) in names.iter().enumerate() {
        let lost = report.lost(i);
        println!(
            "measured: reloads: {lost} of {} queries for {name} lost",
            report.of(i, 0..usize::MAX).count(),
        );
        assert_eq!(lost, 0, "{name}");
    }
}

#[test]
fn the_state_file_keeps_known_dead_and_pinned_endpoints_out_across_a_restart() {
    require_root();
    let link = Link::new();
    let pins = Pins(pin_dir("state"));
    let ep = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 99, 0, n));
    let endpoints: Vec<TestEndpoint> = (1..=5)
        .map(|n| TestEndpoint::start(&link.server, ep(n), 8080))
        .collect();
    // www: 1 healthy, 2 dead, 3 healthy (pinned down at run time). db: failover, primary
    // 4 (listed second), standby 5.
    endpoints[1].set_behaviour(Behaviour::Refuse);
    // Quick verdicts, but three timeouts in a row (a loaded CI machine) before a healthy
    // endpoint counts as down.
    let probe = "probe = { kind = \"http\", port = 8080, interval = \"250ms\", timeout = \"250ms\", rise = 2, fall = 3 }";
    let pools = format!(
        "[[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\npolicy = \"all-healthy\"\n{probe}\n\
         endpoints = [{{ address = \"{}\" }}, {{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\n\
         [[pool]]\nname = \"db.example.test.\"\ntype = \"A\"\npolicy = \"failover\"\n{probe}\n\
         endpoints = [{{ address = \"{}\", priority = 1 }}, {{ address = \"{}\", priority = 0 }}]\n",
        ep(1),
        ep(2),
        ep(3),
        ep(5),
        ep(4),
    );
    let files = Files::new("lc-state", &config(&link, &pins.0, "lc-state", &pools));
    let mut d = Running::start(&link, &files, &[], "fresh.log");
    let steady = Steady::start(
        &link.client,
        server(&link),
        &["www.example.test.", "db.example.test."],
        RATE,
    );
    let start = steady.mark();

    // Verdicts: www answers 1 and 3.
    let deadline = Instant::now() + Duration::from_secs(10);
    while steady
        .answered(0)
        .last()
        .is_none_or(|(_, addrs)| *addrs != [ep(1), ep(3)])
    {
        assert!(Instant::now() < deadline, "www never answered 1 and 3");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = hotpool(
        &link,
        &[
            "endpoint",
            "www.example.test",
            &ep(3).to_string(),
            "down",
            "--config",
            &files.config().display().to_string(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    steady.wait_queries(SETTLE);
    // Written shortly after the pin.
    let state = files.file("state.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"admin\": \"down\"")) {
        assert!(
            Instant::now() < deadline,
            "the pin never reached the state file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before_kill = steady.mark();

    // A crash and a restart: the state file keeps 2 (dead) and 3 (pinned) out.
    d.kill();
    std::thread::sleep(Duration::from_millis(500));
    d = Running::start(&link, &files, &[], "restored.log");
    assert!(d.log().contains("read the state file"), "{}", d.log());
    steady.wait_queries(3 * SETTLE);
    let after_restore = steady.mark();

    // The same restart without the state file: the dead and the pinned endpoint are
    // answered until the probes catch up (so the check above can fail).
    d.stop(libc::SIGTERM);
    std::fs::remove_file(&state).unwrap();
    d = Running::start(&link, &files, &[], "forgetful.log");
    steady.wait_queries(3 * SETTLE);
    let end = steady.mark();
    let report = steady.finish();
    d.stop(libc::SIGTERM);

    // The failover pool: never primary and standby together; the primary alone from the
    // first answer on (the standby only if the primary's probes time out on a loaded
    // machine, which is a failover, not a start-up answer).
    report.assert_only(1, start..end, &[&[ep(4)], &[ep(5)]]);
    report.assert_only(1, start..start + SETTLE, &[&[ep(4)]]);
    let standby = report
        .of(1, start..end)
        .filter(|s| s.reply.is(&[ep(5)]))
        .count();
    println!("measured: failover pool: {standby} answers with the standby (probe timeouts)");
    // A fresh start answers provisionally (every endpoint), then 1 and 3, then 1 (3 or 1
    // alone also when a probe timed out).
    report.assert_only(
        0,
        start..before_kill,
        &[&[ep(1), ep(2), ep(3)], &[ep(1), ep(3)], &[ep(1)], &[ep(3)]],
    );
    // Across the crash and restart with the state file: 1 alone, never 2 or 3.
    report.assert_only(0, before_kill..after_restore, &[&[ep(1)]]);
    println!(
        "measured: state file across SIGKILL and restart: {} www answers, none with a dead or pinned endpoint",
        report.of(0, before_kill..after_restore).count()
    );
    // Without it: 2 is answered again.
    let forgot = report
        .of(0, after_restore..end)
        .filter(|s| matches!(&s.reply, Reply::Answer(_, addrs) if addrs.contains(&ep(2))))
        .count();
    assert!(
        forgot > 0,
        "without the state file the dead endpoint is answered for a while"
    );
    println!(
        "measured: the same restart without the state file: {forgot} www answers with the dead endpoint"
    );
    assert_eq!(report.lost(0) + report.lost(1), 0);
}

/// Kernel answers counted in the pinned maps.
fn kernel_answers(pin: &Path) -> u64 {
    read_pinned_stats(pin)
        .expect("reading the pinned counters")
        .iter()
        .filter(|(o, _)| o.answered())
        .map(|(_, n)| n)
        .sum()
}

fn pinned_pools(pin: &Path) -> u32 {
    MapInfo::from_pin(pin.join(dns_common::MAP_HOT_CUR))
        .expect("reading the pinned HOT_CUR")
        .max_entries()
}

#[test]
fn a_reload_beyond_the_maps_size_grows_them_without_losing_a_query() {
    require_root();
    let link = Link::new();
    let pins = Pins(pin_dir("grow"));
    let www = static_pool("www", "192.0.2.10");
    let v1 = config(&link, &pins.0, "lc-grow", &www);
    // 40 more pools: more than the maps sized for one pool hold with room to grow (64).
    let more: String = (0..40)
        .map(|i| static_pool(&format!("p{i}"), &format!("192.0.2.{}", 100 + i)))
        .collect();
    let v2 = config(&link, &pins.0, "lc-grow", &(www + &more));
    let files = Files::new("lc-grow", &v1);
    let mut d = Running::start(&link, &files, &[], "run.log");
    let small = pinned_pools(&pins.0);
    let (link_id, old_program) = pinned_link(&pins.0);
    let names = ["www.example.test.", "p39.example.test."];
    let steady = Steady::start(&link.client, server(&link), &names, RATE);
    steady.wait_queries(SETTLE);
    let start = steady.mark();

    files.write_config(&v2);
    d.signal(libc::SIGHUP);
    wait_log(&d, "reloaded", 1);
    assert!(d.log().contains("replaced by larger ones"), "{}", d.log());
    let grown = pinned_pools(&pins.0);
    assert!(
        grown > small,
        "HOT_CUR pinned with {grown} entries, was {small}"
    );
    let (same_link, new_program) = pinned_link(&pins.0);
    assert_eq!(same_link, link_id, "the same link, updated");
    assert_ne!(new_program, old_program, "the program with the larger maps");
    steady.wait_queries(SETTLE);
    // The kernel answers the new pools from the larger maps.
    let (sent, hits) = (steady.mark(), kernel_answers(&pins.0));
    steady.wait_queries(SETTLE);
    let (sent, hits) = (steady.mark() - sent, kernel_answers(&pins.0) - hits);
    assert!(
        hits * 10 >= sent as u64 * 9,
        "{hits} of {sent} queries answered by the kernel after the reload"
    );
    let after_reload = steady.mark();

    // A restart takes the larger maps over as they are.
    d.stop(libc::SIGTERM);
    d = Running::start(&link, &files, &[], "restart.log");
    assert!(d.log().contains("adopted the XDP program"), "{}", d.log());
    assert_eq!(pinned_pools(&pins.0), grown);
    steady.wait_queries(SETTLE);
    let end = steady.mark();
    let report = steady.finish();
    d.stop(libc::SIGTERM);

    report.assert_only(0, start..end, &[&[ip("192.0.2.10")]]);
    report.assert_switch(1, start..after_reload, &nxdomain(), &a("192.0.2.139"));
    report.assert_only(1, after_reload..end, &[&[ip("192.0.2.139")]]);
    for (i, name) in names.iter().enumerate() {
        let lost = report.lost(i);
        println!(
            "measured: a reload that grows the maps, and a restart: {lost} of {} queries for {name} lost",
            report.of(i, 0..usize::MAX).count(),
        );
        assert_eq!(lost, 0, "{name}");
    }
}
