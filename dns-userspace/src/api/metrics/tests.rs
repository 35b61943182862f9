//! The exposition: names kept from before, the new families, escaping, histograms.

use std::time::{Duration, Instant};

use super::*;
use crate::steering::{health::ProbeOutcome, steer::Steering};

/// Steering over a probed pool whose endpoints have had a few results.
fn pools() -> Vec<PoolStatus> {
    let mut s = Steering::for_config(
        "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
         [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n\
         probe = { kind = \"tcp\", port = 80, rise = 1, fall = 1 }\n\
         endpoints = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }]\n\
         [[pool]]\nname = \"fixed.example.test.\"\ntype = \"A\"\n\
         endpoints = [{ address = \"192.0.2.3\" }]\n",
    );
    let t = Instant::now();
    let job = |s: &Steering, e| s.job_id(0, e).expect("a probed endpoint");
    s.on_probe(
        job(&s, 0),
        t,
        &ProbeOutcome::success(Duration::from_micros(380_561), "HTTP 200"),
    );
    s.on_probe(
        job(&s, 0),
        t,
        &ProbeOutcome::success(Duration::from_millis(3), "HTTP 200"),
    );
    s.on_probe(job(&s, 1), t, &ProbeOutcome::failure("connection refused"));
    s.status()
}

fn snapshot(pools: Vec<PoolStatus>) -> Snapshot {
    Snapshot {
        started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        attached: Vec::new(),
        packets: None,
        pools,
        events: EventStats {
            webhooks_delivered: 4,
            webhooks_failed: 1,
            webhooks_dropped: 0,
            log_write_errors: 2,
        },
        refused: vec![("no_token", 3), ("foreign_origin", 1)],
        server: None,
        kernel: KernelSnapshot::default(),
        probe_totals: ProbeTotals::default(),
        scheduler: None,
        rum: Default::default(),
    }
}

#[track_caller]
fn has(page: &str, line: &str) {
    assert!(
        page.lines().any(|l| l == line),
        "no line {line:?} in\n{page}"
    );
}

#[test]
fn families_and_names() {
    let page = snapshot(pools()).render();
    has(&page, "# TYPE hotpool_build_info gauge");
    has(
        &page,
        &format!(
            "hotpool_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            version::VERSION,
            version::GIT_REVISION
        ),
    );
    has(&page, "hotpool_start_time_seconds 1800000000.0");
    // Without XDP only the attached gauge, at 0.
    has(&page, "# TYPE hotpool_xdp_attached gauge");
    has(&page, "hotpool_xdp_attached 0");
    assert!(!page.contains("hotpool_xdp_packets"), "{page}");
    // Steering, as before.
    has(
        &page,
        "hotpool_endpoint_up{pool=\"www.example.test.\",endpoint=\"192.0.2.1\"} 1",
    );
    has(
        &page,
        "hotpool_endpoint_up{pool=\"www.example.test.\",endpoint=\"192.0.2.2\"} 0",
    );
    has(
        &page,
        "hotpool_endpoint_up{pool=\"fixed.example.test.\",endpoint=\"192.0.2.3\"} 1",
    );
    has(
        &page,
        "hotpool_endpoint_latency_seconds{pool=\"www.example.test.\",endpoint=\"192.0.2.1\"} 0.1917805",
    );
    has(&page, "hotpool_pool_all_down{pool=\"www.example.test.\"} 0");
    has(&page, "# TYPE hotpool_pool_answer_changes_total counter");
    has(
        &page,
        "hotpool_pool_answer_changes_total{pool=\"www.example.test.\"} 1",
    );
    // Probes: only probed endpoints.
    has(
        &page,
        "hotpool_probes_total{pool=\"www.example.test.\",endpoint=\"192.0.2.1\"} 2",
    );
    has(
        &page,
        "hotpool_probe_failures_total{pool=\"www.example.test.\",endpoint=\"192.0.2.2\"} 1",
    );
    assert!(
        !page.contains("hotpool_probes_total{pool=\"fixed"),
        "{page}"
    );
    // Events and the API.
    has(
        &page,
        "hotpool_webhook_deliveries_total{result=\"delivered\"} 4",
    );
    has(
        &page,
        "hotpool_webhook_deliveries_total{result=\"failed\"} 1",
    );
    has(&page, "hotpool_event_log_write_errors_total 2");
    has(&page, "hotpool_api_refused_total{reason=\"no_token\"} 3");
}

#[test]
fn the_latency_histogram_is_cumulative() {
    let page = snapshot(pools()).render();
    let ep = "pool=\"www.example.test.\",endpoint=\"192.0.2.1\"";
    has(&page, "# TYPE hotpool_probe_latency_seconds histogram");
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_bucket{{{ep},le=\"0.001\"}} 0"),
    );
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_bucket{{{ep},le=\"0.005\"}} 1"),
    );
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_bucket{{{ep},le=\"0.25\"}} 1"),
    );
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_bucket{{{ep},le=\"0.5\"}} 2"),
    );
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_bucket{{{ep},le=\"+Inf\"}} 2"),
    );
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_count{{{ep}}} 2"),
    );
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_sum{{{ep}}} 0.383561"),
    );
    let ep2 = "pool=\"www.example.test.\",endpoint=\"192.0.2.2\"";
    has(
        &page,
        &format!("hotpool_probe_latency_seconds_count{{{ep2}}} 0"),
    );
}

#[test]
fn label_values_are_escaped() {
    let mut pools = pools();
    pools[0].pool = "we\"ird\\name.".into();
    let page = snapshot(pools).render();
    has(
        &page,
        "hotpool_pool_all_down{pool=\"we\\\"ird\\\\name.\"} 0",
    );
}

#[test]
fn attached_interfaces_and_packets() {
    let mut s = snapshot(Vec::new());
    s.attached = vec![("eth0".into(), "native"), ("lo".into(), "generic")];
    s.packets = Some(vec![("hit", 7), ("pass_other", 3)]);
    let page = s.render();
    has(
        &page,
        "hotpool_xdp_attached{interface=\"eth0\",mode=\"native\"} 1",
    );
    has(
        &page,
        "hotpool_xdp_attached{interface=\"lo\",mode=\"generic\"} 1",
    );
    has(&page, "# TYPE hotpool_xdp_packets_total counter");
    has(&page, "hotpool_xdp_packets_total{outcome=\"hit\"} 7");
    assert!(!page.contains("hotpool_xdp_attached 0"), "{page}");
}

#[test]
fn every_outcome_has_a_distinct_label() {
    let names: std::collections::HashSet<_> =
        dns_common::Outcome::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(names.len(), dns_common::Outcome::ALL.len());
}

#[test]
fn the_server_counters_are_rendered_with_their_labels() {
    use std::sync::Arc;

    use hickory_proto::{
        op::ResponseCode,
        rr::{LowerName, Name, RecordType},
    };

    use crate::dns::{
        authority::ResponseKind,
        request::Transport,
        stats::{Counters, RrlAction, ServerStats, TcpEvent, qtype_slot, rcode_slot},
    };

    let stats = ServerStats::default();
    let udp = Arc::new(Counters::new(Transport::Udp, false));
    let tcp = Arc::new(Counters::new(Transport::Tcp, true));
    stats.register(udp.clone());
    stats.register(tcp.clone());
    udp.response(
        rcode_slot(ResponseCode::NXDomain),
        qtype_slot(Some(RecordType::AAAA)),
    );
    tcp.response(
        rcode_slot(ResponseCode::NoError),
        qtype_slot(Some(RecordType::A)),
    );
    let pool = LowerName::from(Name::from_ascii("www.example.test.").unwrap());
    udp.bump(&udp.pool(&pool));
    udp.rrl(RrlAction::Slipped, ResponseKind::Answer);
    udp.reject(dns_common::accept::Reject::Broadcast);
    tcp.tcp(TcpEvent::Evicted);
    let mut s = snapshot(pools());
    s.server = Some(stats.snapshot());
    let page = s.render();
    for line in [
        "hotpool_daemon_responses_total{rcode=\"NXDOMAIN\",qtype=\"AAAA\",transport=\"udp\"} 1",
        "hotpool_daemon_responses_total{rcode=\"NOERROR\",qtype=\"A\",transport=\"tcp\"} 1",
        "hotpool_daemon_answers_total{pool=\"www.example.test.\"} 1",
        "hotpool_rrl_total{action=\"slipped\",reason=\"answer\"} 1",
        "hotpool_rrl_total{action=\"dropped\",reason=\"nxdomain\"} 0",
        "hotpool_rejected_total{reason=\"broadcast\"} 1",
        "hotpool_rejected_total{reason=\"source_port\"} 0",
        "hotpool_daemon_tcp_connections_total{event=\"evicted\"} 1",
        "# TYPE hotpool_daemon_responses_total counter",
    ] {
        has(&page, line);
    }
    // Without a server, none of these families.
    let page = snapshot(pools()).render();
    assert!(!page.contains("hotpool_daemon_responses"), "{page}");
}

#[test]
fn kernel_answers_per_pool_and_the_heartbeat() {
    let page = snapshot(pools()).render();
    assert!(
        !page.contains("hotpool_xdp_heartbeat_age_seconds"),
        "{page}"
    );
    assert!(!page.contains("hotpool_xdp_pool_answers"), "{page}");
    let mut snap = snapshot(pools());
    snap.kernel = KernelSnapshot {
        heartbeat_age: Some(Duration::from_millis(1_250)),
        pool_answers: vec![
            ("www.example.test.".into(), 12_345),
            ("fixed.example.test.".into(), 0),
        ],
    };
    let page = snap.render();
    has(&page, "# TYPE hotpool_xdp_heartbeat_age_seconds gauge");
    has(&page, "hotpool_xdp_heartbeat_age_seconds 1.25");
    has(&page, "# TYPE hotpool_xdp_pool_answers_total counter");
    has(
        &page,
        "hotpool_xdp_pool_answers_total{pool=\"www.example.test.\"} 12345",
    );
    has(
        &page,
        "hotpool_xdp_pool_answers_total{pool=\"fixed.example.test.\"} 0",
    );
}

#[test]
fn probe_accounting_per_endpoint_and_in_total() {
    use crate::steering::probe::{JobId, LocalFailure, LocalReason, ProbeReport, SchedulerStats};
    let mut s = Steering::for_config(
        "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
         [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n\
         probe = { kind = \"tcp\", port = 80 }\n\
         endpoints = [{ address = \"192.0.2.1\" }]\n",
    );
    let id: JobId = s.jobs()[0].id;
    let report = |late, attempt| ProbeReport {
        id,
        finished: Instant::now(),
        lateness: Duration::from_millis(if late { 400 } else { 0 }),
        late,
        attempt,
    };
    s.on_report(&report(
        true,
        Ok(ProbeOutcome::success(Duration::from_millis(2), "connected")),
    ));
    s.on_report(&report(
        false,
        Err(LocalFailure::new(
            LocalReason::LocalAddress,
            "connect: Cannot assign requested address (os error 99)",
        )),
    ));
    let mut snap = snapshot(s.status());
    snap.probe_totals = s.probe_totals().clone();
    snap.scheduler = Some(SchedulerStats {
        jobs: 1,
        in_flight: 1,
        limit: 17,
        wanted: 17,
        waiting: 0,
        started: 3,
        late: 1,
        ..SchedulerStats::default()
    });
    let page = snap.render();
    let labels = "pool=\"www.example.test.\",endpoint=\"192.0.2.1\"";
    has(&page, &format!("hotpool_probes_total{{{labels}}} 2"));
    has(
        &page,
        &format!("hotpool_probe_failures_total{{{labels}}} 0"),
    );
    has(
        &page,
        &format!("hotpool_probe_local_failures_total{{{labels}}} 1"),
    );
    has(&page, &format!("hotpool_probe_late_total{{{labels}}} 1"));
    has(
        &page,
        "hotpool_probe_local_failures_by_reason_total{reason=\"local-address\"} 1",
    );
    has(
        &page,
        "hotpool_probe_local_failures_by_reason_total{reason=\"descriptors\"} 0",
    );
    has(&page, "hotpool_probe_scheduler_late_total 1");
    has(&page, "hotpool_probe_scheduler_in_flight_limit 17");
    has(&page, "# TYPE hotpool_probe_scheduler_waiting gauge");
}
