//! Start-up, restarts and reloads: the failover start-up rule, absolute pins, the state
//! file's round trip through `Steering`, and reconciling a reload's pool set.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use hickory_proto::rr::{LowerName, Name, RData, rdata::A};

use super::super::*;
use crate::{
    config::Config,
    datapath::pools::Selection,
    steering::{probe::JobChange, state::SavedAnswer},
};

fn config(pools: &str) -> Config {
    let text =
        format!("[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\n{pools}");
    let source = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/hotpool.toml"
    ));
    Config::parse(&text, source).unwrap_or_else(|e| panic!("{e}"))
}

fn steering_for(cfg: &Config, saved: Option<&SavedState>) -> (Steering, Arc<PoolTable>) {
    let table = Arc::new(PoolTable::default());
    let s = Steering::new(
        &cfg.pools,
        table.clone(),
        Arc::new(Mutex::new(None)),
        EventSink::new(None).unwrap(),
        saved,
    );
    (s, table)
}

fn feed(s: &mut Steering, p: usize, e: usize, outcome: &ProbeOutcome) {
    let job = s.pools[p].jobs[e].expect("a probed endpoint has a job");
    s.on_probe(job, Instant::now(), outcome);
}

fn ok() -> ProbeOutcome {
    ProbeOutcome::success(Duration::from_millis(5), "HTTP 200")
}

fn fail() -> ProbeOutcome {
    ProbeOutcome::failure("connection refused")
}

/// The A records `name` answers with (empty for SERVFAIL), or `None` when no pool has it.
fn answer(table: &PoolTable, name: &str) -> Option<Vec<String>> {
    let a = table.get(&LowerName::from(Name::from_ascii(name).unwrap()))?;
    Some(
        a.rdata
            .iter()
            .map(|d| match d {
                RData::A(A(ip)) => ip.to_string(),
                other => panic!("{other:?}"),
            })
            .collect(),
    )
}

const PROBE: &str = "probe = { kind = \"tcp\", port = 80, interval = \"1s\", rise = 2, fall = 2 }";

fn pool(name: &str, keys: &str, endpoints: &str) -> String {
    format!(
        "[[pool]]\nname = \"{name}.example.test.\"\ntype = \"A\"\n{keys}\nendpoints = [{endpoints}]\n\n"
    )
}

#[test]
fn a_failover_pool_starts_with_its_first_endpoint_by_priority_only() {
    // The standby is listed first: priority, not position, decides.
    let cfg = config(&pool(
        "db",
        &format!("policy = \"failover\"\n{PROBE}"),
        "{ address = \"192.0.2.31\", priority = 1 }, { address = \"192.0.2.30\", priority = 0 }",
    ));
    let (mut s, table) = steering_for(&cfg, None);
    let db = "db.example.test.";
    assert_eq!(answer(&table, db).unwrap(), ["192.0.2.30"]);
    // One endpoint with a verdict is not all of them: still the primary alone.
    feed(&mut s, 0, 0, &ok());
    feed(&mut s, 0, 0, &ok());
    assert_eq!(answer(&table, db).unwrap(), ["192.0.2.30"]);
    // The primary known down before the standby's verdict: the standby, alone.
    feed(&mut s, 0, 1, &fail());
    feed(&mut s, 0, 1, &fail());
    assert_eq!(answer(&table, db).unwrap(), ["192.0.2.31"]);
    // Never both, and no change counted for the provisional start.
    assert_eq!(s.status()[0].changes, 1);

    // A pinned-down primary is passed over from the start.
    let cfg = config(&pool(
        "db",
        &format!("policy = \"failover\"\n{PROBE}"),
        "{ address = \"192.0.2.30\", state = \"down\" }, { address = \"192.0.2.31\" }",
    ));
    let (_, table) = steering_for(&cfg, None);
    assert_eq!(answer(&table, db).unwrap(), ["192.0.2.31"]);

    // Other policies start with every endpoint not pinned down; weighted shares by weight.
    let cfg = config(&pool(
        "w",
        &format!("policy = \"weighted\"\n{PROBE}"),
        "{ address = \"192.0.2.1\", weight = 3 }, { address = \"192.0.2.2\", state = \"down\" }, { address = \"192.0.2.3\" }",
    ));
    let (_, table) = steering_for(&cfg, None);
    let a = table
        .get(&LowerName::from(
            Name::from_ascii("w.example.test.").unwrap(),
        ))
        .unwrap();
    assert_eq!(a.selection, Selection::weighted(vec![3, 1]));
    assert_eq!(a.rdata.len(), 2);
}

#[test]
fn an_endpoint_pinned_down_is_never_answered_even_when_all_are_down() {
    let two = "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }";
    let cfg = config(&format!(
        "{}{}{}",
        pool("open", PROBE, two),
        pool(
            "fb",
            &format!("{PROBE}\nall_down = \"fallback\"\nfallback = [\"198.51.100.1\"]"),
            two
        ),
        pool("sf", &format!("{PROBE}\nall_down = \"servfail\""), two),
    ));
    let (mut s, table) = steering_for(&cfg, None);
    for p in 0..3 {
        for _ in 0..2 {
            feed(&mut s, p, 0, &ok());
            feed(&mut s, p, 1, &ok());
        }
    }
    assert_eq!(answer(&table, "open.example.test.").unwrap(), ["192.0.2.1"]);
    for name in ["open", "fb", "sf"] {
        s.set_admin(
            &format!("{name}.example.test"),
            "192.0.2.1",
            AdminState::Down,
        )
        .unwrap();
    }
    assert_eq!(answer(&table, "open.example.test.").unwrap(), ["192.0.2.2"]);
    // The other endpoint dies: all down.
    for p in 0..3 {
        feed(&mut s, p, 1, &fail());
        feed(&mut s, p, 1, &fail());
    }
    // Fail-open answers the last known good set without the pinned endpoint...
    assert_eq!(answer(&table, "open.example.test.").unwrap(), ["192.0.2.2"]);
    assert_eq!(
        answer(&table, "fb.example.test.").unwrap(),
        ["198.51.100.1"]
    );
    assert_eq!(
        answer(&table, "sf.example.test.").unwrap(),
        Vec::<String>::new()
    );
    // ... and SERVFAIL once every endpoint is pinned down.
    s.set_admin("open.example.test", "192.0.2.2", AdminState::Down)
        .unwrap();
    let a = table
        .get(&LowerName::from(
            Name::from_ascii("open.example.test.").unwrap(),
        ))
        .unwrap();
    assert!(a.servfail(), "{a:?}");
    // The probes of the pinned endpoint say up: still never answered.
    for _ in 0..2 {
        feed(&mut s, 0, 0, &ok());
    }
    assert!(
        table
            .get(&LowerName::from(
                Name::from_ascii("open.example.test.").unwrap()
            ))
            .unwrap()
            .servfail()
    );
}

/// A config file path the state is "for".
fn config_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/hotpool.toml"
    ))
}

#[test]
fn a_restart_with_the_state_file_answers_no_known_dead_endpoint() {
    let pools = format!(
        "{}{}",
        pool(
            "www",
            PROBE,
            "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }, { address = \"192.0.2.3\" }"
        ),
        pool(
            "db",
            &format!("policy = \"failover\"\n{PROBE}"),
            "{ address = \"192.0.2.30\" }, { address = \"192.0.2.31\" }"
        ),
    );
    let cfg = config(&pools);
    let (mut s, _) = steering_for(&cfg, None);
    // www: .1 up (slow), .2 down, .3 up (fast) but pinned down at run time.
    for _ in 0..2 {
        s.on_probe(
            s.pools[0].jobs[0].unwrap(),
            Instant::now(),
            &ProbeOutcome::success(Duration::from_millis(40), "ok"),
        );
        feed(&mut s, 0, 1, &fail());
        s.on_probe(
            s.pools[0].jobs[2].unwrap(),
            Instant::now(),
            &ProbeOutcome::success(Duration::from_millis(5), "ok"),
        );
    }
    s.set_admin("www.example.test", "192.0.2.3", AdminState::Down)
        .unwrap();
    // db: the primary down, the standby up.
    for _ in 0..2 {
        feed(&mut s, 1, 0, &fail());
        feed(&mut s, 1, 1, &ok());
    }
    let saved = s.snapshot(&config_path());
    // Through the file and back.
    let dir = std::env::temp_dir().join(format!("hotpool-steer-state-{}", std::process::id()));
    let file = dir.join("state.json");
    crate::steering::state::write(&file, &saved).unwrap();
    let settings = crate::steering::state::StateSettings {
        path: file,
        max_age: Duration::from_secs(60),
    };
    let read = crate::steering::state::read(&settings, &config_path(), SystemTime::now()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let (s2, table) = steering_for(&cfg, Some(&read));
    // From the first answer on: the known-dead .2 and the pinned .3 are not answered; the
    // failover pool answers the standby, not the dead primary.
    assert_eq!(answer(&table, "www.example.test.").unwrap(), ["192.0.2.1"]);
    assert_eq!(answer(&table, "db.example.test.").unwrap(), ["192.0.2.31"]);
    let status = s2.status();
    assert_eq!(
        status[0].endpoints[2].admin, "down",
        "the runtime pin is restored"
    );
    assert_eq!(status[0].endpoints[1].probe, "down");
    assert_eq!(status[0].endpoints[0].latency_ms, Some(40.0));

    // Without the state file: provisional answers (every endpoint; the primary alone).
    let (_, table) = steering_for(&cfg, None);
    assert_eq!(answer(&table, "www.example.test.").unwrap().len(), 3);
    assert_eq!(answer(&table, "db.example.test.").unwrap(), ["192.0.2.30"]);

    // A config that now pins .3 up itself wins over the runtime pin; an endpoint and a pool
    // the state does not know start afresh.
    let edited = format!(
        "{}{}",
        pool(
            "www",
            PROBE,
            "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }, { address = \"192.0.2.3\", state = \"up\" }, { address = \"192.0.2.4\" }"
        ),
        pool("new", PROBE, "{ address = \"192.0.2.50\" }"),
    );
    let (s3, table) = steering_for(&config(&edited), Some(&read));
    let status = s3.status();
    assert_eq!(status[0].endpoints[2].admin, "up");
    assert_eq!(status[0].endpoints[3].probe, "unknown");
    assert_eq!(answer(&table, "www.example.test.").unwrap(), ["192.0.2.3"]);
    assert_eq!(answer(&table, "new.example.test.").unwrap(), ["192.0.2.50"]);
    // The saved answer names endpoints by address.
    assert!(
        matches!(&read.pools[1].answer, Some(SavedAnswer::Endpoints(v)) if v == &["192.0.2.31"])
    );
}

#[test]
fn a_reload_keeps_what_unchanged_endpoints_know_and_never_crosses_pools() {
    let before = format!(
        "{}{}{}",
        pool(
            "www",
            &format!("policy = \"all-healthy\"\n{PROBE}"),
            "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }"
        ),
        pool("old", PROBE, "{ address = \"192.0.2.9\" }"),
        pool("same", "", "{ address = \"192.0.2.77\" }"),
    );
    let cfg = config(&before);
    let (mut s, table) = steering_for(&cfg, None);
    for _ in 0..2 {
        feed(&mut s, 0, 0, &ok());
        feed(&mut s, 0, 1, &fail());
        feed(&mut s, 1, 0, &ok());
    }
    s.set_admin("www.example.test", "192.0.2.1", AdminState::Up)
        .unwrap();
    assert_eq!(answer(&table, "www.example.test.").unwrap(), ["192.0.2.1"]);
    let www_jobs = [s.pools[0].jobs[0].unwrap(), s.pools[0].jobs[1].unwrap()];
    let old_job = s.pools[1].jobs[0].unwrap();

    // www gains .3 and changes its TTL; "old" is renamed "renamed" (same endpoint); "same"
    // stays as it is.
    let after = format!(
        "{}{}{}",
        pool(
            "www",
            &format!("ttl = 60\npolicy = \"all-healthy\"\n{PROBE}"),
            "{ address = \"192.0.2.2\" }, { address = \"192.0.2.1\" }, { address = \"192.0.2.3\" }"
        ),
        pool("renamed", PROBE, "{ address = \"192.0.2.9\" }"),
        pool("same", "", "{ address = \"192.0.2.77\" }"),
    );
    let new_table = Arc::new(PoolTable::default());
    let r = s.reconcile(&config(&after).pools, new_table.clone());
    assert_eq!(r.added, ["renamed.example.test."]);
    assert_eq!(r.removed, ["old.example.test."]);
    assert_eq!(r.changed, ["www.example.test."]);
    // The old table is untouched (it serves until the caller swaps).
    assert_eq!(answer(&table, "old.example.test.").unwrap(), ["192.0.2.9"]);
    // The new one: .1 (pinned up, carried over) answered with the new TTL; .2 still known
    // down; .3 unknown, so not answered yet; the renamed pool answers its own endpoint, the
    // removed name nothing.
    let www = new_table
        .get(&LowerName::from(
            Name::from_ascii("www.example.test.").unwrap(),
        ))
        .unwrap();
    assert_eq!(www.ttl, 60);
    assert_eq!(
        answer(&new_table, "www.example.test.").unwrap(),
        ["192.0.2.1"]
    );
    assert_eq!(answer(&new_table, "old.example.test."), None);
    assert_eq!(
        answer(&new_table, "renamed.example.test.").unwrap(),
        ["192.0.2.9"]
    );
    assert_eq!(
        answer(&new_table, "same.example.test.").unwrap(),
        ["192.0.2.77"]
    );
    let status = s.status();
    assert_eq!(
        status[0].endpoints[1].admin, "up",
        "the runtime pin carried over"
    );
    assert_eq!(status[0].endpoints[0].probe, "down");
    assert_eq!(status[0].endpoints[2].probe, "unknown");
    // Jobs: www's two keep theirs (same probe, reordered endpoints); .3 and the renamed pool
    // get new ones; the old pool's stops.
    assert_eq!(s.pools[0].jobs[1], Some(www_jobs[0]));
    assert_eq!(s.pools[0].jobs[0], Some(www_jobs[1]));
    let removed: Vec<JobId> = r
        .jobs
        .iter()
        .filter_map(|c| match c {
            JobChange::Remove(id) => Some(*id),
            JobChange::Add(_) => None,
        })
        .collect();
    assert_eq!(removed, [old_job]);
    let added = r
        .jobs
        .iter()
        .filter(|c| matches!(c, JobChange::Add(_)))
        .count();
    assert_eq!(added, 2);
    // Probe results of the stopped job are ignored; .3 comes up and joins.
    s.on_probe(old_job, Instant::now(), &fail());
    feed(&mut s, 0, 2, &ok());
    feed(&mut s, 0, 2, &ok());
    assert_eq!(
        answer(&new_table, "www.example.test.").unwrap(),
        ["192.0.2.1", "192.0.2.3"]
    );
}
