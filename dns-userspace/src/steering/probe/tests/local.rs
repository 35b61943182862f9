//! Local failures: which errors are ours, that a probe out of descriptors says so, and
//! that steering counts them without a verdict.

use std::{
    io,
    net::{Ipv4Addr, TcpListener},
    process::Command,
    time::{Duration, Instant},
};

use super::{target, tcp_spec};
use crate::steering::{health::ProbeOutcome, probe::*, steer::Steering};

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

#[test]
fn local_errors_are_told_from_the_endpoints() {
    use LocalReason::*;
    let now = Stage::Connect { immediate: true };
    let later = Stage::Connect { immediate: false };
    let cases: &[(i32, Stage, Option<LocalReason>)] = &[
        // Out of descriptors, buffers or memory: ours wherever it happens.
        (libc::EMFILE, Stage::Socket, Some(Descriptors)),
        (libc::ENFILE, now, Some(Descriptors)),
        (libc::EMFILE, Stage::Exchange, Some(Descriptors)),
        (libc::ENOBUFS, later, Some(Memory)),
        (libc::ENOMEM, Stage::Exchange, Some(Memory)),
        // Any error creating a socket is ours.
        (libc::EINVAL, Stage::Socket, Some(Socket)),
        (libc::EAFNOSUPPORT, Stage::Socket, Some(Unsupported)),
        (libc::EACCES, Stage::Socket, Some(NotPermitted)),
        // connect(): no local port or address, a local firewall, no route of ours.
        (libc::EADDRNOTAVAIL, now, Some(LocalAddress)),
        (libc::EADDRINUSE, now, Some(LocalAddress)),
        (libc::EPERM, now, Some(NotPermitted)),
        (libc::ENETUNREACH, now, Some(NoRoute)),
        (libc::EHOSTUNREACH, now, Some(NoRoute)),
        // The same unreachability reported later is the endpoint's network: a verdict.
        (libc::ENETUNREACH, later, None),
        (libc::EHOSTUNREACH, later, None),
        // Refused, reset, timed out: verdicts, however soon they come.
        (libc::ECONNREFUSED, now, None),
        (libc::ECONNREFUSED, later, None),
        (libc::ETIMEDOUT, later, None),
        (libc::ECONNRESET, Stage::Exchange, None),
        (libc::EHOSTUNREACH, Stage::Exchange, None),
        (libc::EPIPE, Stage::Exchange, None),
    ];
    for (n, stage, want) in cases {
        assert_eq!(
            local_reason(&errno(*n), *stage),
            *want,
            "{} at {stage:?}",
            errno(*n)
        );
    }
    // Errors without an errno: ours only while creating the socket.
    let other = io::Error::other("no errno");
    assert_eq!(local_reason(&other, Stage::Socket), Some(Socket));
    assert_eq!(local_reason(&other, now), None);
    assert_eq!(local_reason(&other, Stage::Exchange), None);
}

/// The environment variable that makes [`probes_out_of_descriptors_child`] run.
const CHILD: &str = "HOTPOOL_TEST_NO_DESCRIPTORS_CHILD";

#[test]
fn a_probe_out_of_descriptors_fails_locally() {
    // In a child process: it lowers its own open-file limit, which would break every
    // other test running in this one.
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "steering::probe::tests::local::probes_out_of_descriptors_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("running the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["tcp", "http", "dns"] {
        assert!(
            stdout.contains(&format!("{kind}: local failure: out of file descriptors")),
            "{kind} missing in the child's output:\n{stdout}"
        );
    }
}

#[test]
#[ignore = "run by a_probe_out_of_descriptors_fails_locally in a child process"]
fn probes_out_of_descriptors_child() {
    if std::env::var_os(CHILD).is_none() {
        eprintln!("skipped: only runs as a child of a_probe_out_of_descriptors_fails_locally");
        return;
    }
    // A healthy endpoint: it accepts connections.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a listener");
    let port = listener.local_addr().unwrap().port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut http = tcp_spec(port);
    http.kind = ProbeKind::Http(Box::new(HttpProbe::new(port)));
    let mut dns = tcp_spec(port);
    dns.kind = ProbeKind::default_dns(hickory_proto::rr::Name::from_ascii("x.test.").unwrap());
    // Every descriptor number below the limit taken: nothing more can be opened.
    exhaust_descriptors();
    for (kind, spec) in [("tcp", tcp_spec(port)), ("http", http), ("dns", dns)] {
        match rt.block_on(probe_once(&spec, &target())) {
            Err(f) => {
                assert_eq!(f.reason, LocalReason::Descriptors, "{kind}: {f}");
                println!("{kind}: local failure: {}", f.reason);
            }
            Ok(o) => panic!("{kind}: a verdict without descriptors: {o:?}"),
        }
    }
}

/// Lowers the open-file limit to the highest descriptor open now and fills the gaps below
/// it.
fn exhaust_descriptors() {
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("open descriptors");
    let limit = libc::rlimit {
        rlim_cur: highest + 1,
        rlim_max: highest + 1,
    };
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    // SAFETY: dup of standard error, whose copies are never closed (the process ends).
    while unsafe { libc::dup(2) } >= 0 {}
    assert_eq!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::EMFILE)
    );
}

/// Steering over one pool of two probed endpoints, no kernel, no event log.
fn steering() -> (Steering, Vec<ProbeJob>) {
    let text = "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\n\
                [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n\
                probe = { kind = \"tcp\", port = 80, interval = \"1s\", rise = 2, fall = 3 }\n\
                endpoints = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }]\n";
    let s = Steering::for_config(text);
    let jobs = s.jobs();
    (s, jobs)
}

fn report(id: JobId, late: bool, attempt: Attempt) -> ProbeReport {
    ProbeReport {
        id,
        finished: Instant::now(),
        lateness: if late {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        },
        late,
        attempt,
    }
}

fn emfile() -> Attempt {
    Err(LocalFailure::new(
        LocalReason::Descriptors,
        "connect: Too many open files (os error 24)",
    ))
}

#[test]
fn local_failures_are_counted_and_never_verdicts() {
    let (mut s, jobs) = steering();
    assert_eq!(jobs.len(), 2);
    assert_ne!(jobs[0].id, jobs[1].id);
    let ok = || Ok(ProbeOutcome::success(Duration::from_millis(3), "connected"));
    let refused = || Ok(ProbeOutcome::failure("connection refused"));
    for job in &jobs {
        s.on_report(&report(job.id, false, ok()));
        s.on_report(&report(job.id, true, ok()));
    }
    let up = |s: &Steering| -> Vec<bool> { s.status()[0].endpoints.iter().map(|e| e.up).collect() };
    assert_eq!(up(&s), [true, true]);
    let answer = s.status()[0].answer.clone();

    // Ten local failures, more than `fall`: the endpoint stays up, its failure streak
    // untouched.
    for _ in 0..10 {
        s.on_report(&report(jobs[0].id, false, emfile()));
    }
    assert_eq!(up(&s), [true, true], "local failures are not verdicts");
    assert_eq!(s.status()[0].answer, answer);
    // Two real failures, a local one between them, then a third: down after `fall` (3)
    // verdicts, the local one not counted either way.
    s.on_report(&report(jobs[0].id, false, refused()));
    s.on_report(&report(jobs[0].id, false, refused()));
    s.on_report(&report(jobs[0].id, false, emfile()));
    assert_eq!(up(&s), [true, true]);
    s.on_report(&report(jobs[0].id, false, refused()));
    assert_eq!(up(&s), [false, true]);

    let status = s.status();
    let c = &status[0].endpoints[0].probes;
    assert_eq!(
        (c.attempts, c.failures, c.local_failures, c.late),
        (16, 3, 11, 1)
    );
    assert_eq!(c.latency().count(), 2);
    assert!(
        c.last_local_failure()
            .is_some_and(|(_, l)| l.contains("Too many open files")),
        "{c:?}"
    );
    // Local failures are no failures of the endpoint: its last failure is a verdict.
    assert_eq!(
        c.last_failure.as_ref().map(|(_, what)| what.as_str()),
        Some("connection refused")
    );
    let other = &status[0].endpoints[1].probes;
    assert_eq!((other.attempts, other.local_failures), (2, 0));

    let totals = s.probe_totals();
    assert_eq!((totals.attempts, totals.failures, totals.late), (18, 3, 2));
    assert_eq!(totals.local_failures_total(), 11);
    let descriptors = LocalReason::ALL
        .iter()
        .position(|r| *r == LocalReason::Descriptors)
        .unwrap();
    assert_eq!(totals.local_failures[descriptors], 11);

    // A report of a job steering does not have is dropped.
    s.on_report(&report(JobId(999), false, refused()));
    assert_eq!(s.probe_totals().attempts, 18);
}
