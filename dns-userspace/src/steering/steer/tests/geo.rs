//! `geo` pools: a policy per region over shared endpoint health, RUM samples moving one
//! region's `fastest`, their expiry, reloads with regions changed, the state file.

use std::time::Instant;

use super::*;
use crate::{
    geo::RegionId,
    steering::rum::{RumBatch, RumError, RumInput},
};

const THREE: &str =
    "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }, { address = \"192.0.2.3\" }";

/// A config of one geo pool over [`THREE`] with `pool_regions`, and regions europe and
/// americas (asia too with `asia`).
fn geo_config(pool_regions: &str, log: &Path, asia: bool) -> Config {
    let asia = if asia {
        "[regions.asia]\nnetworks = [\"203.0.113.0/24\"]\n"
    } else {
        ""
    };
    let text = format!(
        "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\n\
         [events]\nlog = \"{}\"\n\n\
         [regions.europe]\nnetworks = [\"192.0.2.0/25\"]\n\
         [regions.americas]\nnetworks = [\"198.51.100.0/24\"]\n{asia}\
         [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\npolicy = \"geo\"\n{PROBE}\n\
         endpoints = [{THREE}]\n{pool_regions}",
        log.display()
    );
    let source = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/hotpool.toml"
    ));
    Config::parse(&text, source).unwrap_or_else(|e| panic!("{e}"))
}

fn geo_steering(cfg: &Config, log: &Path) -> Steering {
    let table = Arc::new(PoolTable::new(
        cfg.pools.iter().map(PoolSettings::initial_answer),
    ));
    Steering::new(
        &cfg.pools,
        table,
        Arc::new(Mutex::new(None)),
        EventSink::new(Some(log)).unwrap(),
        None,
    )
}

const REGIONS: &str = "[pool.regions.default]\npolicy = \"weighted\"\n\
     endpoints = [{ address = \"192.0.2.1\", weight = 9 }, { address = \"192.0.2.3\", weight = 1 }]\n\
     [pool.regions.europe]\npolicy = \"fastest\"\nlatency = \"rum\"\n\
     endpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n\
     [pool.regions.americas]\npolicy = \"failover\"\nendpoints = [\"192.0.2.3\", \"192.0.2.1\"]\n";

/// The published answer of each region, by region id.
fn by_region(s: &Steering) -> Vec<(RegionId, Vec<String>)> {
    let mut v: Vec<(RegionId, Vec<String>)> =
        s.answers().iter().map(|a| (a.region, addrs(a))).collect();
    v.sort();
    v
}

/// Every endpoint up after `rise` probes, with these latencies (ms).
fn all_up(s: &mut Steering, latencies: [u64; 3]) {
    let t = Instant::now();
    for _ in 0..2 {
        for (e, ms) in latencies.iter().enumerate() {
            feed(s, 0, e, t, &ok(*ms));
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn sample(
    region: &str,
    endpoint: &str,
    latency_ms: Option<f64>,
    available: Option<bool>,
) -> RumInput {
    RumInput {
        region: region.into(),
        endpoint: endpoint.into(),
        latency_ms,
        available,
    }
}

fn batch(ttl: &str, samples: Vec<RumInput>) -> RumBatch {
    RumBatch {
        ttl: Some(ttl.into()),
        samples,
    }
}

#[test]
fn each_region_runs_its_own_policy_over_shared_health() {
    let log = TempLog::new("geo-regions");
    let cfg = geo_config(REGIONS, &log.0, false);
    let mut s = geo_steering(&cfg, &log.0);
    // Before any verdict every region answers provisionally: its own endpoints (failover
    // its first by priority).
    assert_eq!(
        by_region(&s),
        [
            (RegionId(0), strings(&["192.0.2.1", "192.0.2.3"])),
            (RegionId(1), strings(&["192.0.2.1", "192.0.2.2"])),
            (RegionId(2), strings(&["192.0.2.3"])),
        ]
    );
    all_up(&mut s, [20, 5, 40]);
    let answers = s.answers();
    let default = answers
        .iter()
        .find(|a| a.region == RegionId::DEFAULT)
        .unwrap();
    assert_eq!(
        default.selection,
        Selection::weighted(vec![9, 1]),
        "default: weighted with its own weights"
    );
    // europe ranks by RUM, which has no samples yet: both unmeasured, the first answered.
    assert_eq!(
        by_region(&s)[1..],
        [
            (RegionId(1), strings(&["192.0.2.1"])),
            (RegionId(2), strings(&["192.0.2.3"])),
        ]
    );

    // 192.0.2.3 goes down: americas fails over to its second, default keeps one
    // endpoint; europe, which does not use it, does not change.
    let seen = log_lines(&log.0).len();
    let t = Instant::now();
    for _ in 0..3 {
        feed(&mut s, 0, 2, t, &fail());
    }
    assert_eq!(
        by_region(&s),
        [
            (RegionId(0), strings(&["192.0.2.1"])),
            (RegionId(1), strings(&["192.0.2.1"])),
            (RegionId(2), strings(&["192.0.2.1"])),
        ]
    );
    let events = log_lines(&log.0);
    let changes: Vec<(&str, &str)> = events[seen..]
        .iter()
        .filter(|e| e["kind"] == "pool_answer")
        .map(|e| (e["region"].as_str().unwrap(), e["new"].as_str().unwrap()))
        .collect();
    assert!(changes.contains(&("americas", "192.0.2.1")), "{changes:?}");
    assert!(changes.iter().any(|(r, _)| *r == "default"), "{changes:?}");
    assert!(!changes.iter().any(|(r, _)| *r == "europe"), "{changes:?}");
    // Endpoint events have no region: health is the pool's.
    assert!(
        events
            .iter()
            .filter(|e| e["kind"] == "endpoint_state")
            .all(|e| e.get("region").is_none())
    );

    let status = s.status();
    let regions: Vec<(&str, &str, &str)> = status[0]
        .regions
        .iter()
        .map(|r| (r.region.as_str(), r.policy.as_str(), r.answer.as_str()))
        .collect();
    assert_eq!(status[0].policy, "geo");
    assert_eq!(
        regions,
        [
            ("default", "weighted", "192.0.2.1 (weight 9)"),
            ("europe", "fastest", "192.0.2.1"),
            ("americas", "failover", "192.0.2.1"),
        ]
    );
    assert!(
        status[0].regions[2].reason.contains("192.0.2.1"),
        "{:?}",
        status[0].regions[2]
    );
}

#[test]
fn rum_samples_move_fastest_in_their_region_only_until_they_expire() {
    let log = TempLog::new("geo-rum");
    let regions = "[pool.regions.default]\npolicy = \"fastest\"\nendpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n\
         [pool.regions.europe]\npolicy = \"fastest\"\nlatency = \"blend\"\nendpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n\
         [pool.regions.americas]\npolicy = \"fastest\"\nlatency = \"blend\"\nendpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n";
    let cfg = geo_config(regions, &log.0, false);
    let mut s = geo_steering(&cfg, &log.0);
    // The probes say 192.0.2.1 is the fastest, everywhere.
    all_up(&mut s, [10, 30, 50]);
    let fastest =
        |s: &Steering| -> Vec<Vec<String>> { by_region(s).into_iter().map(|(_, a)| a).collect() };
    assert_eq!(fastest(&s), vec![strings(&["192.0.2.1"]); 3]);

    // Users in europe see 192.0.2.2 far faster: europe follows them, the others do not.
    let now = Instant::now();
    let accepted = s
        .add_rum(
            &batch(
                "60s",
                vec![
                    sample("europe", "192.0.2.1", Some(80.0), Some(true)),
                    sample("europe", "192.0.2.2", Some(12.0), Some(true)),
                    sample("europe", "192.0.2.2", Some(14.0), None),
                ],
            ),
            now,
        )
        .expect("a valid batch");
    assert_eq!(accepted, 3);
    assert_eq!(
        fastest(&s),
        [
            strings(&["192.0.2.1"]),
            strings(&["192.0.2.2"]),
            strings(&["192.0.2.1"])
        ]
    );
    let events = log_lines(&log.0);
    let last = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "pool_answer")
        .unwrap();
    assert_eq!(last["region"], "europe");
    assert_eq!(last["new"], "192.0.2.2");

    // Users in americas cannot reach 192.0.2.1: it is down there only.
    s.add_rum(
        &batch(
            "30s",
            vec![
                sample("americas", "192.0.2.1", None, Some(false)),
                sample("americas", "192.0.2.1", None, Some(false)),
            ],
        ),
        now,
    )
    .expect("a valid batch");
    assert_eq!(
        fastest(&s),
        [
            strings(&["192.0.2.1"]),
            strings(&["192.0.2.2"]),
            strings(&["192.0.2.2"])
        ]
    );
    assert!(s.status()[0].endpoints[0].up, "health is not touched");

    // Nothing expired yet; then americas' samples expire (30 s), then europe's (60 s):
    // each region goes back to the probes' verdict.
    s.expire_rum(now + Duration::from_secs(29));
    assert_eq!(fastest(&s)[2], strings(&["192.0.2.2"]));
    s.expire_rum(now + Duration::from_secs(31));
    assert_eq!(
        fastest(&s),
        [
            strings(&["192.0.2.1"]),
            strings(&["192.0.2.2"]),
            strings(&["192.0.2.1"])
        ]
    );
    s.expire_rum(now + Duration::from_secs(61));
    assert_eq!(fastest(&s), vec![strings(&["192.0.2.1"]); 3]);
    let stats = s.rum_stats();
    assert_eq!(
        (stats.accepted, stats.rejected, stats.expired, stats.held),
        (5, 0, 5, 0)
    );
}

#[test]
fn a_batch_with_an_unknown_region_or_endpoint_is_refused_whole() {
    let log = TempLog::new("geo-rum-refused");
    let cfg = geo_config(REGIONS, &log.0, false);
    let mut s = geo_steering(&cfg, &log.0);
    all_up(&mut s, [20, 5, 40]);
    let before = by_region(&s);
    let e = s
        .add_rum(
            &batch(
                "5m",
                vec![
                    sample("europe", "192.0.2.2", Some(1.0), None),
                    sample("asia", "192.0.2.2", Some(1.0), None),
                    sample("americas", "192.0.2.3", Some(1.0), None),
                    sample("europe", "192.0.2.3", Some(1.0), None),
                    sample("europe", "192.0.2.1", Some(-1.0), None),
                    sample("europe", "192.0.2.1", None, None),
                ],
            ),
            Instant::now(),
        )
        .expect_err("unknown regions and endpoints");
    let RumError::Samples {
        rejected,
        accepted_keys,
    } = e
    else {
        panic!("{e:?}")
    };
    let indexes: Vec<usize> = rejected.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5]);
    assert!(
        rejected[0]
            .error
            .contains("region \"asia\" takes no RUM samples"),
        "{rejected:?}"
    );
    // americas ranks by probes: it takes no samples.
    assert!(
        rejected[1]
            .error
            .contains("region \"americas\" takes no RUM samples"),
        "{rejected:?}"
    );
    assert!(
        rejected[2].error.contains("endpoint \"192.0.2.3\" is not used in region europe (its endpoints: 192.0.2.1, 192.0.2.2)"),
        "{rejected:?}"
    );
    assert!(
        rejected[3].error.contains("latency_ms -1 is out of range"),
        "{rejected:?}"
    );
    assert!(
        rejected[4]
            .error
            .contains("needs latency_ms, available, or both"),
        "{rejected:?}"
    );
    assert_eq!(
        accepted_keys,
        [("europe".to_string(), strings(&["192.0.2.1", "192.0.2.2"]))]
    );
    // Nothing applied, everything counted as rejected.
    assert_eq!(by_region(&s), before);
    assert_eq!((s.rum_stats().accepted, s.rum_stats().rejected), (0, 6));

    for (b, want) in [
        (
            batch("0s", vec![sample("europe", "192.0.2.2", Some(1.0), None)]),
            "out of range",
        ),
        (
            batch("soon", vec![sample("europe", "192.0.2.2", Some(1.0), None)]),
            "invalid ttl",
        ),
        (batch("5m", Vec::new()), "no samples"),
        (
            batch(
                "5m",
                vec![
                    sample("europe", "192.0.2.2", Some(1.0), None);
                    crate::steering::rum::MAX_BATCH + 1
                ],
            ),
            "at most 1000",
        ),
    ] {
        let e = s.add_rum(&b, Instant::now()).expect_err(want);
        assert!(
            matches!(e, RumError::Batch(_)) && e.to_string().contains(want),
            "{e}"
        );
    }
    // A valid batch is accepted after the refused ones.
    assert_eq!(
        s.add_rum(
            &batch("5m", vec![sample("europe", "192.0.2.2", Some(1.0), None)]),
            Instant::now()
        ),
        Ok(1)
    );
}

#[test]
fn a_reload_keeps_kept_regions_and_adds_and_drops_the_others() {
    let log = TempLog::new("geo-reload");
    let before = "[pool.regions.default]\npolicy = \"failover\"\nendpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n\
         [pool.regions.americas]\npolicy = \"failover\"\nendpoints = [\"192.0.2.3\", \"192.0.2.1\"]\n\
         [pool.regions.europe]\npolicy = \"failover\"\nendpoints = [\"192.0.2.2\"]\n";
    let cfg = geo_config(before, &log.0, false);
    let mut s = geo_steering(&cfg, &log.0);
    all_up(&mut s, [20, 5, 40]);
    let t = Instant::now();
    for _ in 0..3 {
        feed(&mut s, 0, 2, t, &fail());
    }
    assert_eq!(
        by_region(&s),
        [
            (RegionId(0), strings(&["192.0.2.1"])),
            (RegionId(1), strings(&["192.0.2.2"])),
            (RegionId(2), strings(&["192.0.2.1"])),
        ]
    );
    let changes_before = s.status()[0].regions[2].changes;
    assert_eq!(changes_before, 1);

    // asia is added to [regions] (before nothing: ids stay), europe leaves the pool, asia
    // joins it; americas and default are kept with their answers and counts.
    let after = "[pool.regions.default]\npolicy = \"failover\"\nendpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n\
         [pool.regions.americas]\npolicy = \"failover\"\nendpoints = [\"192.0.2.3\", \"192.0.2.1\"]\n\
         [pool.regions.asia]\npolicy = \"all-healthy\"\nendpoints = [\"192.0.2.2\", \"192.0.2.3\"]\n";
    let cfg = geo_config(after, &log.0, true);
    let table = Arc::new(PoolTable::new(Vec::new()));
    let r = s.reconcile(&cfg.pools, table);
    assert_eq!(r.changed, ["www.example.test."]);
    assert!(r.jobs.is_empty(), "the probes are unchanged: {:?}", r.jobs);
    // asia (id 3) answers its endpoints that are up: 192.0.2.3 is still down.
    assert_eq!(
        by_region(&s),
        [
            (RegionId(0), strings(&["192.0.2.1"])),
            (RegionId(2), strings(&["192.0.2.1"])),
            (RegionId(3), strings(&["192.0.2.2"])),
        ]
    );
    let status = s.status();
    let names: Vec<&str> = status[0]
        .regions
        .iter()
        .map(|r| r.region.as_str())
        .collect();
    assert_eq!(names, ["default", "americas", "asia"]);
    assert_eq!(
        status[0].regions[1].changes, changes_before,
        "americas carried over"
    );

    // The state file keeps every region's answer: a restart continues from it.
    let saved = s.snapshot(Path::new("/etc/hotpool/hotpool.toml"));
    assert_eq!(saved.pools[0].regions.len(), 2);
    let json = serde_json::to_string(&saved).expect("serializable");
    let back: crate::steering::state::SavedState = serde_json::from_str(&json).expect("readable");
    let restarted = Steering::new(
        &cfg.pools,
        Arc::new(PoolTable::new(Vec::new())),
        Arc::new(Mutex::new(None)),
        EventSink::new(None).unwrap(),
        Some(&back),
    );
    assert_eq!(by_region(&restarted), by_region(&s));
}

#[test]
fn a_region_shares_the_pool_s_endpoint_names_only_when_it_has_them_all_in_order() {
    let log = TempLog::new("geo-names");
    let regions = "[pool.regions.default]\npolicy = \"weighted\"\n\
         endpoints = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\"]\n\
         [pool.regions.europe]\npolicy = \"fastest\"\nendpoints = [\"192.0.2.1\", \"192.0.2.2\"]\n\
         [pool.regions.americas]\npolicy = \"failover\"\n\
         endpoints = [\"192.0.2.3\", \"192.0.2.2\", \"192.0.2.1\"]\n";
    let cfg = geo_config(regions, &log.0, false);
    let s = geo_steering(&cfg, &log.0);
    let p = &s.pools[0];
    let (mut shared, mut own) = (0, 0);
    for r in &p.regions {
        let names: Vec<String> = r
            .policy
            .endpoints
            .iter()
            .map(|e| p.names[e.index].clone())
            .collect();
        assert_eq!(*r.names, names[..], "region {}", r.policy.name);
        let whole = r
            .policy
            .endpoints
            .iter()
            .map(|e| e.index)
            .eq(0..p.names.len());
        assert_eq!(
            Arc::ptr_eq(&r.names, &p.names),
            whole,
            "region {}",
            r.policy.name
        );
        if whole {
            shared += 1;
        } else {
            own += 1;
        }
    }
    assert!(
        shared > 0 && own > 0,
        "{shared} shared, {own} own: both cases"
    );

    // A pool that does not steer by region: its one region shares the list.
    let log = TempLog::new("plain-names");
    let (s, _) = steering(PROBE, THREE, &log.0);
    let p = &s.pools[0];
    assert!(Arc::ptr_eq(&p.regions[0].names, &p.names));
    assert_eq!(p.names.len(), 3);
}
