//! The scheduler: sizing, timing, lateness, concurrency, blackholed targets, updates.
//!
//! Timing and lateness are tested on tokio's paused clock with a runner that only waits
//! (virtual time: exact and fast); concurrency and blackholes with real sockets on
//! loopback.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    time::Instant,
};

use super::{Reply, closed_port, every, http_server, http_spec, target, tcp_spec};
use crate::steering::{
    health::ProbeOutcome,
    probe::{
        schedule::{first_delay, next_delay},
        *,
    },
};

#[test]
fn jitter_stays_in_its_window() {
    let i = Duration::from_secs(1);
    assert_eq!(first_delay(i, 0.0), Duration::ZERO);
    assert!(first_delay(i, 0.999_999) < i);
    assert_eq!(next_delay(i, 0.0), Duration::from_millis(900));
    assert_eq!(next_delay(i, 0.5), Duration::from_millis(1000));
    assert!(next_delay(i, 0.999_999) <= Duration::from_millis(1100));
    // Out-of-range samples are clamped.
    assert_eq!(first_delay(i, 7.0), i);
    assert_eq!(next_delay(i, -1.0), Duration::from_millis(900));
    // Random samples spread over the window.
    let firsts: Vec<Duration> = (0..1000).map(|_| first_delay(i, rand::random())).collect();
    assert!(firsts.iter().all(|d| *d < i));
    assert!(firsts.iter().any(|d| *d < Duration::from_millis(100)));
    assert!(firsts.iter().any(|d| *d > Duration::from_millis(900)));
    for _ in 0..1000 {
        let d = next_delay(i, rand::random());
        assert!(
            d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
            "{d:?}"
        );
    }
}

/// A TCP probe every `interval` with `timeout`.
fn timed(interval: Duration, timeout: Duration) -> ProbeSpec {
    let mut s = tcp_spec(1);
    s.timing.interval = interval;
    s.timing.timeout = timeout;
    s
}

#[test]
fn the_load_sets_how_many_probes_run_at_once() {
    let second = Duration::from_secs(1);
    assert_eq!(wanted_in_flight([]), 0);
    // 1000 probes every second that may take half a second: 500 in flight when every one
    // runs to its timeout, plus a quarter and 16.
    let half = timed(second, second / 2);
    assert_eq!(wanted_in_flight(vec![&half; 1000]), 625 + HEADROOM_MIN);
    // Never more than one per job.
    let full = timed(second, second);
    assert_eq!(wanted_in_flight(vec![&full; 3]), 3);
    assert_eq!(wanted_in_flight(vec![&full; 40_000]), 40_000);
    // Mixed intervals: 100 × 0.2 + 100 × 1.0.
    let fifth = timed(Duration::from_secs(5), second);
    let mixed: Vec<&ProbeSpec> = std::iter::repeat_n(&fifth, 100)
        .chain(std::iter::repeat_n(&full, 100))
        .collect();
    assert_eq!(wanted_in_flight(mixed), 150 + HEADROOM_MIN);

    assert_eq!(
        in_flight_limit(641, None, 1 << 20),
        (641, LimitSource::Load)
    );
    assert_eq!(
        in_flight_limit(641, Some(64), 1 << 20),
        (64, LimitSource::MaxConcurrent)
    );
    assert_eq!(
        in_flight_limit(641, Some(1000), 100),
        (100, LimitSource::Descriptors)
    );
    assert_eq!(in_flight_limit(0, None, 10), (1, LimitSource::Load));
    assert_eq!(in_flight_limit(5, None, 0), (1, LimitSource::Descriptors));
}

#[test]
fn late_means_a_tenth_of_the_interval_and_at_least_50ms() {
    assert_eq!(
        late_after(Duration::from_secs(1)),
        Duration::from_millis(100)
    );
    assert_eq!(
        late_after(Duration::from_secs(5)),
        Duration::from_millis(500)
    );
    assert_eq!(late_after(Duration::from_millis(250)), LATE_MIN);
}

/// A runner that takes `hold` (virtual time) and succeeds.
struct Hold(Duration);

impl Runner for Hold {
    async fn run(&self, _job: &ProbeJob) -> Attempt {
        tokio::time::sleep(self.0).await;
        Ok(ProbeOutcome::success(self.0, "held"))
    }
}

fn job(id: u64, spec: ProbeSpec) -> ProbeJob {
    ProbeJob {
        id: JobId(id),
        spec: Arc::new(spec),
        target: target(),
    }
}

fn options(max_concurrent: Option<usize>) -> ProbeSetOptions {
    ProbeSetOptions {
        max_concurrent,
        descriptors: 1 << 20,
    }
}

/// Every report until `until`.
async fn collect(rx: &mut mpsc::Receiver<ProbeReport>, until: Instant) -> Vec<ProbeReport> {
    let mut out = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout_at(until, rx.recv()).await {
        out.push(r);
    }
    out
}

/// Report times per job.
fn by_job(reports: &[ProbeReport]) -> HashMap<JobId, Vec<std::time::Instant>> {
    let mut out: HashMap<JobId, Vec<std::time::Instant>> = HashMap::new();
    for r in reports {
        out.entry(r.id).or_default().push(r.finished);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn runs_start_on_time_when_the_slots_suffice() {
    let second = Duration::from_secs(1);
    let jobs: Vec<ProbeJob> = (0..100).map(|i| job(i, timed(second, second))).collect();
    let (tx, mut rx) = mpsc::channel(1024);
    let (_stop, shutdown) = watch::channel(false);
    // Every probe holds its slot for 0.9 s of its 1 s interval.
    let (set, _task) = ProbeSet::start_with(
        Hold(Duration::from_millis(900)),
        options(None),
        jobs,
        tx,
        shutdown,
    );
    let stats = set.stats();
    assert_eq!((stats.jobs, stats.wanted), (100, 100));
    assert_eq!(stats.limit_source, Some(LimitSource::Load));
    let reports = collect(&mut rx, Instant::now() + 10 * second).await;
    // On time: tokio's timers tick in milliseconds.
    for r in &reports {
        assert!(!r.late && r.lateness <= Duration::from_millis(1), "{r:?}");
    }
    assert_eq!(set.stats().late, 0);
    for (id, times) in by_job(&reports) {
        // First run within the first second (reported 0.9 s later), then one every 0.9
        // to 1.1 s: 8 to 11 in 10 s.
        assert!(
            (8..=11).contains(&times.len()),
            "{id:?}: {} runs",
            times.len()
        );
        for gap in times.windows(2).map(|w| w[1] - w[0]) {
            assert!(
                gap >= second.mul_f64(0.9) && gap <= second.mul_f64(1.1),
                "{id:?}: {gap:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn runs_waiting_for_a_slot_are_late_and_counted() {
    let second = Duration::from_secs(1);
    let jobs: Vec<ProbeJob> = (0..10).map(|i| job(i, timed(second, second))).collect();
    let (tx, mut rx) = mpsc::channel(1024);
    let (_stop, shutdown) = watch::channel(false);
    // 10 runs a second are due, 2 slots of 0.5 s runs serve 4 a second.
    let (set, _task) = ProbeSet::start_with(Hold(second / 2), options(Some(2)), jobs, tx, shutdown);
    let start = Instant::now();
    let mut most_waiting = 0;
    let mut reports = Vec::new();
    while Instant::now() < start + 10 * second {
        reports.extend(collect(&mut rx, Instant::now() + second / 4).await);
        most_waiting = most_waiting.max(set.stats().waiting);
    }
    let stats = set.stats();
    assert_eq!(stats.limit, 2);
    assert_eq!(stats.limit_source, Some(LimitSource::MaxConcurrent));
    assert!(most_waiting > 0, "jobs waited for a slot");
    // At most 2 slots × 2 runs a second (plus the two running at the end).
    assert!(reports.len() <= 42, "{} runs", reports.len());
    assert!(reports.len() >= 36, "{} runs", reports.len());
    let late: Vec<&ProbeReport> = reports.iter().filter(|r| r.late).collect();
    assert!(
        late.len() > reports.len() / 2,
        "{} of {}",
        late.len(),
        reports.len()
    );
    assert!(late.iter().all(|r| r.lateness > late_after(second)));
    assert!(stats.late >= late.len() as u64, "{stats:?}");
    assert!(stats.started >= reports.len() as u64, "{stats:?}");
    // Every job gets its turn: nobody starves.
    assert_eq!(by_job(&reports).len(), 10);
}

#[tokio::test(start_paused = true)]
async fn an_update_keeps_unchanged_jobs_on_their_schedule() {
    let second = Duration::from_secs(1);
    let spec = timed(second, second / 2);
    let a = job(1, spec.clone());
    let b = job(2, spec.clone());
    let c = job(3, spec.clone());
    let (tx, mut rx) = mpsc::channel(1024);
    let (_stop, shutdown) = watch::channel(false);
    let (set, _task) = ProbeSet::start_with(
        Hold(Duration::from_millis(10)),
        options(None),
        vec![a.clone(), b.clone(), c.clone()],
        tx,
        shutdown,
    );
    let mut reports = collect(&mut rx, Instant::now() + 3 * second).await;
    // Twenty reloads in one second: `a` is in every one unchanged, `b` changes its
    // interval, `c` is removed, `d` is added. Restarting `a` would put it at a random
    // point of a fresh interval each time.
    let mut b2 = b.clone();
    Arc::make_mut(&mut b2.spec).timing.interval = 2 * second;
    let d = job(4, spec.clone());
    let updated = Instant::now();
    for _ in 0..20 {
        set.update(vec![a.clone(), b2.clone(), d.clone()]);
        reports.extend(collect(&mut rx, Instant::now() + second / 20).await);
    }
    reports.extend(collect(&mut rx, Instant::now() + 5 * second).await);
    assert_eq!(set.stats().jobs, 3);

    let runs = by_job(&reports);
    let a_runs = &runs[&a.id];
    assert!(a_runs.len() >= 8, "{} runs of a", a_runs.len());
    for gap in a_runs.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= second.mul_f64(0.9) && gap <= second.mul_f64(1.1),
            "a was rescheduled: {gap:?} between runs"
        );
    }
    let updated = updated.into_std();
    assert!(
        runs[&c.id]
            .iter()
            .all(|t| *t <= updated + Duration::from_millis(10)),
        "c ran after it was removed"
    );
    assert!(runs.get(&d.id).is_some_and(|t| t.len() >= 4), "d runs");
    let b_after: Vec<_> = runs[&b.id]
        .iter()
        .filter(|t| **t > updated + 2 * second)
        .collect();
    for gap in b_after.windows(2).map(|w| *w[1] - *w[0]) {
        assert!(
            gap >= (2 * second).mul_f64(0.9) && gap <= (2 * second).mul_f64(1.1),
            "b runs on its new interval: {gap:?}"
        );
    }
}

/// A runner that takes `hold` (virtual time), noting every run it starts.
struct Noting {
    hold: Duration,
    starts: Arc<std::sync::Mutex<Vec<(JobId, Instant)>>>,
}

impl Runner for Noting {
    async fn run(&self, job: &ProbeJob) -> Attempt {
        self.starts.lock().unwrap().push((job.id, Instant::now()));
        tokio::time::sleep(self.hold).await;
        Ok(ProbeOutcome::success(self.hold, "held"))
    }
}

#[tokio::test(start_paused = true)]
async fn applied_changes_stop_removed_jobs_before_apply_returns() {
    let second = Duration::from_secs(1);
    let spec = timed(second, second);
    let (a, b, c) = (
        job(1, spec.clone()),
        job(2, spec.clone()),
        job(3, spec.clone()),
    );
    let starts = Arc::default();
    let runner = Noting {
        // Each run holds its slot most of its interval: a removal likely cancels one.
        hold: Duration::from_millis(800),
        starts: Arc::clone(&starts),
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let (_stop, shutdown) = watch::channel(false);
    let (set, _task) = ProbeSet::start_with(
        runner,
        options(None),
        vec![a.clone(), b.clone(), c.clone()],
        tx,
        shutdown,
    );
    let mut reports = collect(&mut rx, Instant::now() + 3 * second).await;
    // A reload: `a` removed, `b` unchanged, `c` with a new interval, `d` new.
    let mut c2 = c.clone();
    Arc::make_mut(&mut c2.spec).timing.interval = 2 * second;
    Arc::make_mut(&mut c2.spec).timing.timeout = 2 * second;
    let d = job(4, spec.clone());
    set.apply(vec![
        JobChange::Remove(a.id),
        JobChange::Add(Box::new(b.clone())),
        JobChange::Add(Box::new(c2.clone())),
        JobChange::Add(Box::new(d.clone())),
    ])
    .await;
    let applied = Instant::now();
    // Reports of `a` sent before the change may still be queued.
    let queued = collect(&mut rx, applied).await;
    assert!(queued.iter().all(|r| r.finished <= applied.into_std()));
    reports.extend(queued);
    reports.extend(collect(&mut rx, applied + 6 * second).await);
    assert_eq!(set.stats().jobs, 3);

    let starts = starts.lock().unwrap().clone();
    assert!(
        starts.iter().any(|(id, _)| *id == a.id),
        "a ran before it was removed"
    );
    assert!(
        !starts.iter().any(|(id, t)| *id == a.id && *t >= applied),
        "a started after apply returned"
    );
    let runs = by_job(&reports);
    assert!(
        runs[&a.id].iter().all(|t| *t <= applied.into_std()),
        "a reported a run that finished after apply returned"
    );
    // `b` kept its schedule: its runs stay one interval (± 10 %) apart across the reload.
    let b_runs = &runs[&b.id];
    assert!(b_runs.len() >= 7, "{} runs of b", b_runs.len());
    for gap in b_runs.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= second.mul_f64(0.9) && gap <= second.mul_f64(1.1),
            "b was rescheduled: {gap:?} between runs"
        );
    }
    // `c` runs on, on its new interval; `d` started.
    let c_after: Vec<_> = starts
        .iter()
        .filter(|(id, t)| *id == c.id && *t >= applied)
        .map(|(_, t)| *t)
        .collect();
    assert!(
        (2..=4).contains(&c_after.len()),
        "{} runs of c",
        c_after.len()
    );
    for gap in c_after.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= (2 * second).mul_f64(0.9) && gap <= (2 * second).mul_f64(1.1),
            "c runs on its new interval: {gap:?}"
        );
    }
    assert!(runs.get(&d.id).is_some_and(|t| t.len() >= 4), "d runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_every_job_on_its_interval_and_stops_on_shutdown() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let closed = closed_port().await;
    let interval = Duration::from_millis(250);
    let jobs = vec![
        job(1, every(tcp_spec(port), interval)),
        job(2, every(tcp_spec(closed), interval)),
        job(3, every(tcp_spec(port), interval)),
    ];
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let start = Instant::now();
    let (_set, runner) = ProbeSet::start(options(None), jobs, tx, shutdown);
    let reports = collect(&mut rx, start + Duration::from_millis(1600)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("the scheduler stops on shutdown")
        .unwrap();
    // Every sender is gone once it returned.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {}
    assert!(rx.recv().await.is_none());

    let mut seen: HashMap<JobId, Vec<&ProbeReport>> = HashMap::new();
    for r in &reports {
        seen.entry(r.id).or_default().push(r);
    }
    assert_eq!(seen.len(), 3, "{:?}", seen.keys());
    let start = start.into_std();
    for (id, results) in &seen {
        let up = *id != JobId(2);
        for r in results {
            let o = r.attempt.as_ref().expect("a verdict");
            assert_eq!(o.ok, up, "{id:?}: {o:?}");
        }
        // First run within one interval (plus scheduling slack), then every interval
        // ± 10 %: in 1.6 s that is 5 to 7 runs. Results are timed when they arrive, so
        // a single gap also carries scheduling noise; their mean does not.
        let first = results[0].finished - start;
        assert!(
            first < interval + Duration::from_millis(100),
            "{id:?}: {first:?}"
        );
        assert!(
            (4..=8).contains(&results.len()),
            "{id:?}: {} results",
            results.len()
        );
        let runs = u32::try_from(results.len() - 1).unwrap();
        let mean = (results[results.len() - 1].finished - results[0].finished) / runs;
        assert!(
            mean >= interval.mul_f64(0.9) - Duration::from_millis(15)
                && mean <= interval.mul_f64(1.1) + Duration::from_millis(40),
            "{id:?}: {mean:?} between runs on average"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_bounds_the_probes_in_flight() {
    let mut reply = Reply::new(200, "ok");
    reply.delay = Duration::from_millis(120);
    let (port, seen) = http_server(reply).await;
    let jobs: Vec<ProbeJob> = (0..4)
        .map(|i| job(i, every(http_spec(port), Duration::from_millis(250))))
        .collect();
    let (tx, mut rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let (set, runner) = ProbeSet::start(options(Some(1)), jobs, tx, shutdown);
    assert_eq!(set.stats().limit, 1);
    let results = collect(&mut rx, Instant::now() + Duration::from_millis(1200)).await;
    stop.send(true).unwrap();
    runner.await.unwrap();
    assert!(results.len() >= 4, "{} results", results.len());
    assert_eq!(seen.most_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stops_when_nobody_receives_the_reports() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let jobs = vec![job(1, every(tcp_spec(port), MIN_INTERVAL))];
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let (_stop, shutdown) = watch::channel(false);
    let (_set, runner) = ProbeSet::start(options(Some(4)), jobs, tx, shutdown);
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("the scheduler returns once nobody listens")
        .unwrap();
}

/// A loopback port that silently drops new connections: a listener that never accepts,
/// its accept queue filled (Linux drops SYNs to a listener whose queue is full). The
/// returned values keep it so.
async fn blackhole() -> (SocketAddr, Vec<Box<dyn std::any::Any>>) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut keep: Vec<Box<dyn std::any::Any>> = vec![Box::new(socket)];
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => keep.push(Box::new(stream)),
            Ok(Err(e)) => panic!("filling the accept queue of {addr}: {e}"),
            Err(_) => return (addr, keep),
        }
    }
    panic!("{addr} kept accepting connections: cannot build a blackhole here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_targets_keep_as_many_probes_in_flight_as_they_need() {
    // 200 endpoints that never answer, probed every 500 ms with a 500 ms timeout: all 200
    // probes are in flight at any time, 400 runs a second. Capped at 64 in flight (the old
    // fixed limit), it would be 128 a second.
    let (addr, _keep) = blackhole().await;
    let interval = Duration::from_millis(500);
    let jobs: Vec<ProbeJob> = (0..200)
        .map(|i| job(i, every(tcp_spec(addr.port()), interval)))
        .collect();
    let (tx, mut rx) = mpsc::channel(4096);
    let (stop, shutdown) = watch::channel(false);
    let (set, runner) = ProbeSet::start(options(None), jobs, tx, shutdown);
    assert_eq!(set.stats().limit, 200);
    // Warm up over the first interval (first runs are spread over it), then count.
    let start = Instant::now();
    collect(&mut rx, start + interval).await;
    let window = Duration::from_millis(1500);
    let mut most_in_flight = 0;
    let mut reports = Vec::new();
    while Instant::now() < start + interval + window {
        reports.extend(collect(&mut rx, Instant::now() + Duration::from_millis(100)).await);
        most_in_flight = most_in_flight.max(set.stats().in_flight);
    }
    stop.send(true).unwrap();
    runner.await.unwrap();

    for r in &reports {
        let o = r
            .attempt
            .as_ref()
            .expect("a timeout is a verdict, not a local failure");
        assert!(!o.ok && o.detail == "timeout after 500ms", "{o:?}");
    }
    // Each job runs once per max(jittered interval, timeout): about every 512 ms. Loose
    // bounds: the machine may be busy; the 64 cap is far below either.
    let expected = 200.0 / 0.512 * window.as_secs_f64();
    let capped = 64.0 / 0.5 * window.as_secs_f64();
    let got = reports.len() as f64;
    assert!(
        got > 0.6 * expected && got > 2.0 * capped,
        "{got} runs in {window:?}, expected about {expected:.0} (capped at 64 in flight: \
         {capped:.0})"
    );
    assert!(most_in_flight > 150, "at most {most_in_flight} in flight");
}

#[test]
fn a_running_probe_holds_little_memory() {
    // 20 000 probes wait on blackholed endpoints at once at the scale this is built for:
    // each holds its future, so the exchanges that need more are boxed.
    let prober = Prober::default();
    let j = job(1, tcp_spec(1));
    let size = std::mem::size_of_val(&Runner::run(&prober, &j));
    assert!(size <= 1024, "a probe's future is {size} bytes");
}
