//! The status document's figures and the table `hotpool status` prints, on a fixture.

use super::*;

fn endpoint(name: &str) -> EndpointDoc {
    EndpointDoc {
        endpoint: name.into(),
        up: true,
        answered: true,
        admin: "follow".into(),
        probe: "up".into(),
        since: Some("2026-11-22T04:09:02.333Z".into()),
        latency_ms: Some(1.62),
        samples_ms: vec![1.5, 1.62, 1.7],
        last_detail: "HTTP 200".into(),
        last_error: None,
        last_error_at: None,
        probes: 193,
        probe_failures: 0,
        probe_local_failures: 0,
        probes_late: 0,
    }
}

fn fixture() -> StatusDoc {
    let down = EndpointDoc {
        up: false,
        answered: false,
        probe: "down".into(),
        latency_ms: None,
        samples_ms: vec![],
        last_detail: "connection refused".into(),
        last_error: Some("connection refused".into()),
        last_error_at: Some("2026-11-22T04:12:13.900Z".into()),
        probe_failures: 193,
        ..endpoint("127.0.0.2")
    };
    let pinned = EndpointDoc {
        up: false,
        answered: false,
        admin: "down".into(),
        latency_ms: Some(163.4),
        since: Some("2026-11-22T04:10:00.000Z".into()),
        last_error: Some("HTTP 503".into()),
        last_error_at: Some("2026-11-22T03:12:00.000Z".into()),
        probe_failures: 2,
        ..endpoint("192.0.2.11")
    };
    StatusDoc {
        daemon: DaemonDoc {
            version: "0.1.0".into(),
            revision: "f71cc9812345".into(),
            now: "2026-11-22T04:12:14.333Z".into(),
            started: "2026-11-22T04:09:00.000Z".into(),
            uptime_s: 194,
            xdp: vec![XdpDoc {
                interface: "lo".into(),
                mode: "generic".into(),
            }],
            heartbeat_age_s: None,
            stale_after_s: None,
            on_stale: None,
        },
        pools: vec![
            PoolDoc {
                pool: "www.example.test.".into(),
                rtype: "A".into(),
                policy: "fastest".into(),
                answer: "127.0.0.1".into(),
                reason: "fastest: 127.0.0.1 at 1.6 ms".into(),
                since: "2026-11-22T04:09:02.333Z".into(),
                all_down: false,
                changes: 1,
                regions: Vec::new(),
                endpoints: vec![endpoint("127.0.0.1"), down],
                kernel_answers: Some(48_210),
            },
            PoolDoc {
                pool: "fo.example.test.".into(),
                rtype: "A".into(),
                policy: "failover".into(),
                answer: "192.0.2.10".into(),
                reason: "failover: 192.0.2.10 (priority 0) is preferred".into(),
                since: "2026-11-22T02:00:14.000Z".into(),
                all_down: false,
                changes: 0,
                regions: Vec::new(),
                endpoints: vec![
                    EndpointDoc {
                        since: None,
                        ..endpoint("192.0.2.10")
                    },
                    pinned,
                ],
                kernel_answers: None,
            },
        ],
    }
}

#[test]
fn the_table_reads_like_this() {
    let want = "\
hotpool 0.1.0 (git f71cc9812345), up 3m 14s; XDP: lo (generic); staleness: n/a

www.example.test. A (fastest)
  answer  127.0.0.1
  reason  fastest: 127.0.0.1 at 1.6 ms
  since   2026-11-22T04:09:02Z (3m 12s ago), 1 change since start
  kernel  48210 answered
  endpoint   answered  state  pin     probe  latency  probes            since       last error
  127.0.0.1  yes       up     follow  up     1.62 ms  193               3m 12s ago  -
  127.0.0.2  no        down   follow  down   -        193 (193 failed)  3m 12s ago  connection refused (0s ago)

fo.example.test. A (failover)
  answer  192.0.2.10
  reason  failover: 192.0.2.10 (priority 0) is preferred
  since   2026-11-22T02:00:14Z (2h 12m ago), no change since start
  endpoint    answered  state  pin     probe  latency  probes          since       last error
  192.0.2.10  yes       up     follow  up     1.62 ms  193             start       -
  192.0.2.11  no        down   down    up     163 ms   193 (2 failed)  2m 14s ago  HTTP 503 (1h 0m ago)
";
    let got = fixture().table();
    assert_eq!(got, want, "\n{got}");
}

#[test]
fn the_json_round_trips_with_rounded_figures() {
    let doc = fixture();
    let text = serde_json::to_string(&doc).unwrap();
    let back: StatusDoc = serde_json::from_str(&text).unwrap();
    assert_eq!(back, doc);
    assert_eq!(round3(0.380_561_000_000_000_04), 0.381);
    assert_eq!(round3(1.0005), 1.001);
    let e = EndpointStatus {
        endpoint: "192.0.2.1".into(),
        up: true,
        answered: true,
        admin: "follow".into(),
        probe: "up".into(),
        since: None,
        latency_ms: Some(0.380_561_000_000_000_04),
        samples_ms: vec![0.380_561_000_000_000_04, 12.345_678],
        last_detail: "HTTP 200".into(),
        last_failure: None,
        probes: Default::default(),
    };
    let json = serde_json::to_string(&EndpointDoc::from(&e)).unwrap();
    assert!(json.contains("\"latency_ms\":0.381,"), "{json}");
    assert!(json.contains("\"samples_ms\":[0.381,12.346]"), "{json}");
}

#[test]
fn durations_and_latencies_for_people() {
    assert_eq!(short_duration(Duration::from_millis(900)), "0s");
    assert_eq!(short_duration(Duration::from_secs(192)), "3m 12s");
    assert_eq!(short_duration(Duration::from_secs(7_500)), "2h 5m");
    assert_eq!(
        short_duration(Duration::from_secs(2 * 86_400 + 3_700)),
        "2d 1h"
    );
    assert_eq!(short_ms(0.381), "0.38 ms");
    assert_eq!(short_ms(16.24), "16.2 ms");
    assert_eq!(short_ms(163.4), "163 ms");
}

#[test]
fn an_empty_daemon_and_a_heartbeat() {
    let mut doc = fixture();
    doc.pools.clear();
    doc.daemon.xdp.clear();
    doc.daemon.heartbeat_age_s = Some(2.4);
    let table = doc.table();
    assert!(table.starts_with("hotpool 0.1.0 (git f71cc9812345), up 3m 14s; XDP: off (the daemon answers everything); staleness: 2s old\n"), "{table}");
    assert!(table.ends_with("\nno pools configured\n"), "{table}");
}

#[test]
fn staleness_with_its_limit() {
    let mut doc = fixture();
    doc.pools.clear();
    doc.daemon.heartbeat_age_s = Some(1.2);
    doc.daemon.stale_after_s = Some(30.0);
    doc.daemon.on_stale = Some("serve".into());
    assert!(
        doc.table()
            .contains("; staleness: 1s old (stale after 30s: serve)\n"),
        "{}",
        doc.table()
    );
    doc.daemon.heartbeat_age_s = Some(42.0);
    doc.daemon.on_stale = Some("pass".into());
    assert!(
        doc.table()
            .contains("; staleness: 42s old (STALE, stale after 30s: pass)\n"),
        "{}",
        doc.table()
    );
    doc.daemon.stale_after_s = None;
    assert!(
        doc.table().contains("; staleness: 42s old (never stale)\n"),
        "{}",
        doc.table()
    );
    let json = serde_json::to_string(&doc).unwrap();
    assert!(
        json.contains("\"heartbeat_age_s\":42.0,\"stale_after_s\":null,\"on_stale\":\"pass\""),
        "{json}"
    );
}

#[test]
fn a_geo_pool_shows_each_region() {
    let mut doc = fixture();
    doc.pools.truncate(1);
    let region = |name: &str, policy: &str, answer: &str, changes: u64| RegionDoc {
        region: name.into(),
        policy: policy.into(),
        latency: "rum".into(),
        endpoints: vec!["127.0.0.1".into(), "127.0.0.2".into()],
        answer: answer.into(),
        reason: format!("{policy}: {answer}"),
        since: "2026-11-22T04:09:02.333Z".into(),
        all_down: changes > 1,
        changes,
    };
    let p = &mut doc.pools[0];
    p.policy = "geo".into();
    p.kernel_answers = None;
    p.regions = vec![
        region("default", "failover", "127.0.0.1", 0),
        region("europe", "fastest", "127.0.0.2", 2),
    ];
    let table = doc.table();
    let want = "\
www.example.test. A (geo)
  region default (failover, latency from rum; 127.0.0.1, 127.0.0.2)
    answer  127.0.0.1
    reason  failover: 127.0.0.1
    since   2026-11-22T04:09:02Z (3m 12s ago), no change since start
  region europe (fastest, latency from rum; 127.0.0.1, 127.0.0.2)
    answer  127.0.0.2  [all endpoints down]
    reason  fastest: 127.0.0.2
    since   2026-11-22T04:09:02Z (3m 12s ago), 2 changes since start
  endpoint ";
    assert!(table.contains(want), "\n{table}");
    let json = serde_json::to_string(&doc).unwrap();
    assert!(
        json.contains("\"regions\":[{\"region\":\"default\""),
        "{json}"
    );
    let back: StatusDoc = serde_json::from_str(&json).unwrap();
    assert_eq!(back, doc);
}
