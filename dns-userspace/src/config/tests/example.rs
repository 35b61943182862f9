//! The bundled example config, its commented pools, and the `hotpool check` summary.

use super::*;

#[test]
fn the_example_config_loads() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hotpool.toml"
    ));
    let cfg = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.server.listen,
        vec![
            IpAddr::from_str("127.0.0.1").unwrap(),
            IpAddr::from_str("::1").unwrap()
        ]
    );
    assert_eq!(cfg.server.port, 53);
    assert_eq!(cfg.server.tcp_max_connections, None, "derived at start");
    assert_eq!(cfg.server.tcp_max_connections_per_client, 32);
    assert_eq!(cfg.server.rrl.responses_per_second, 20);
    assert_eq!(cfg.server.rrl.slip, 2);
    assert!(
        cfg.server
            .rrl
            .exempt_clients
            .iter()
            .any(|n| n.contains(IpAddr::from_str("127.0.0.1").unwrap()))
    );
    assert_eq!(
        cfg.api.listen,
        Some(SocketAddr::from_str("127.0.0.1:9153").unwrap())
    );
    assert_eq!(
        cfg.api
            .unix_socket
            .as_ref()
            .map(|s| (s.path.as_path(), s.mode)),
        Some((Path::new("/run/hotpool/api.sock"), 0o660))
    );
    assert!(cfg.api.token.is_none());
    assert_eq!(cfg.xdp.interfaces, vec!["lo".to_string()]);
    assert_eq!(cfg.xdp.mode, AttachMode::Auto);
    assert_eq!(cfg.zones.len(), 1);
    assert!(
        cfg.zones[0]
            .file
            .ends_with("examples/zones/example.test.zone")
    );
    assert_eq!(cfg.zone_data().len(), 1);
    let pools: Vec<(String, RecordType, usize)> = cfg
        .pools
        .iter()
        .map(|p| (p.name.to_string(), p.rtype, p.endpoints.len()))
        .collect();
    assert_eq!(
        pools,
        vec![
            ("www.example.test.".into(), RecordType::A, 2),
            ("v6.example.test.".into(), RecordType::AAAA, 2),
            ("cdn.example.test.".into(), RecordType::CNAME, 1),
        ]
    );
    assert_eq!(cfg.pools[0].endpoints[1].weight, 2);
    let summary = cfg.summary();
    assert!(summary.contains("zone example.test."), "{summary}");
    assert!(
        summary
            .contains("pool cdn.example.test. CNAME ttl 60: example.cdn-provider.net. (weight 1)"),
        "{summary}"
    );
    assert!(summary.contains("xdp: lo (mode auto)"), "{summary}");
    let regions: Vec<&str> = cfg.regions.iter().map(|(_, n)| n).collect();
    assert_eq!(regions, ["default", "europe", "americas"]);
    assert!(
        summary.contains("regions: 3 (default included), 4 prefixes; no database"),
        "{summary}"
    );

    // Issue 3: the www pool is probed over http and fails open.
    let www = &cfg.pools[0];
    assert_eq!(www.policy, Policy::default());
    assert_eq!(www.all_down, AllDown::FailOpen);
    let probe = www.probe.as_ref().expect("www has a probe");
    assert_eq!(probe.kind.name(), "http");
    assert_eq!(probe.timing.interval, Duration::from_secs(1));
    assert_eq!(probe.timing.timeout, Duration::from_millis(500));
    // Loopback only: the example must send nothing off the machine.
    assert_eq!(probe.http().unwrap().path, "/metrics");
    assert_eq!(probe.port(), Some(9153));
    assert_eq!(www.endpoints[0].probe.as_ref(), Some(probe));
    let b = www.endpoints[1].probe.as_ref().unwrap();
    assert_eq!(
        b.http().unwrap().host.as_deref(),
        Some("origin-b.example.test")
    );
    for pool in cfg.pools.iter().filter(|p| p.probe.is_some()) {
        for e in &pool.endpoints {
            match &e.address {
                EndpointAddress::Ip(ip) => assert!(ip.is_loopback(), "{ip} is probed"),
                other => panic!("probed host name {other:?}"),
            }
        }
    }
    assert_eq!(cfg.pools[1].policy, Policy::AllHealthy);
    assert_eq!(cfg.pools[1].probe, None);
    assert_eq!(cfg.pools[2].probe, None);
    assert_eq!(
        cfg.events.log.as_deref(),
        Some(Path::new("/run/hotpool/events.jsonl"))
    );
    assert_eq!(cfg.probes.max_concurrent, None);
    assert!(
        summary.contains("  probe http GET /metrics port 9153 expect 200, every 1s"),
        "{summary}"
    );
}

#[test]
fn summary_shows_policies_probes_and_pins() {
    let mut text = pool_with(
        "A",
        &[
            "policy = \"failover\"",
            "all_down = \"fallback\"",
            "fallback = [\"198.51.100.1\"]",
            "webhook = \"http://127.0.0.1:8080/hook\"",
            "probe = { kind = \"https\", path = \"/h\", host = \"cdn.example.net\", expect_status = [200, 201, 202, 204], body_contains = \"ok\", tls_verify = false, interval = \"1s\" }",
        ],
        "{ address = \"192.0.2.1\", state = \"up\" }, { address = \"192.0.2.2\", probe = { kind = \"icmp\" } }",
    );
    text.push_str(
        "[[pool]]\nname = \"dns.example.test\"\ntype = \"A\"\nprobe = { kind = \"dns\", qname = \"x.test\", qtype = \"TXT\" }\nendpoints = [{ address = \"192.0.2.3\" }]\n",
    );
    text.push_str("[events]\nlog = \"/tmp/e.jsonl\"\n[probes]\nmax_concurrent = 9\n");
    let summary = parse(&text).unwrap().summary();
    for want in [
        "  policy failover; all down: fallback to 198.51.100.1\n",
        "  probe https GET /h port 443 host cdn.example.net expect 200-202,204 body contains \"ok\" tls_verify off, every 1s, timeout 1s, rise 2, fall 3\n",
        "  endpoint 192.0.2.1: priority 0, pinned up\n",
        "  endpoint 192.0.2.2: priority 1, probe icmp, every 1s, timeout 1s, rise 2, fall 3\n",
        "  webhook http://127.0.0.1:8080/hook\n",
        "  policy fastest (count 1, deviation 0%, hysteresis 10%); all down: fail-open\n",
        "  probe dns x.test. TXT port 53, every 5s, timeout 2s, rise 2, fall 3\n",
        "event log: /tmp/e.jsonl\n",
        "probes: 3 endpoints; up to 3 in flight (what the load needs), at most 9 ([probes] max_concurrent)\n",
    ] {
        assert!(
            summary.contains(want),
            "{summary}\ndoes not contain\n{want}"
        );
    }
    assert_eq!(status_ranges(&[404, 200, 201, 200]), "200-201,404");
}

#[test]
fn the_commented_example_pools_are_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hotpool.toml"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    // Uncomment every "# [[pool]]" block (up to the next blank line).
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        if line == "# [[pool]]" {
            in_block = true;
        } else if line.is_empty() {
            in_block = false;
        }
        let line = match line.strip_prefix("# ") {
            Some(rest) if in_block => rest,
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    let cfg = Config::parse(&out, path).unwrap_or_else(|e| panic!("{e}"));
    let api = cfg
        .pools
        .iter()
        .find(|p| p.name.to_string() == "api.example.test.")
        .expect("the weighted example");
    assert_eq!(api.policy, Policy::Weighted);
    assert_eq!(api.all_down, AllDown::Servfail);
    assert_eq!(api.probe.as_ref().unwrap().kind.name(), "tcp");
    let db = cfg
        .pools
        .iter()
        .find(|p| p.name.to_string() == "db.example.test.")
        .expect("the failover example");
    assert_eq!(db.policy, Policy::Failover);
    assert_eq!(db.probe.as_ref().unwrap().kind.name(), "dns");
    assert!(matches!(db.all_down, AllDown::Fallback(_)));
    let edge = cfg
        .pools
        .iter()
        .find(|p| p.name.to_string() == "edge.example.test.")
        .expect("the geo example");
    let regions: Vec<(&str, &str)> = edge
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.policy.name()))
        .collect();
    assert_eq!(
        regions,
        [
            ("default", "weighted"),
            ("europe", "fastest"),
            ("americas", "failover")
        ]
    );
}

#[test]
fn the_readme_and_the_example_state_the_default_policy_as_it_is() {
    use crate::steering::policy::DEFAULT_POLICY_DOC;
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains(DEFAULT_POLICY_DOC), "README.md");
    let example = std::fs::read_to_string(root.join("examples/hotpool.toml")).unwrap();
    let joined: String = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(joined.contains(DEFAULT_POLICY_DOC), "examples/hotpool.toml");
    // And it is what a pool without policy keys gets.
    let pool = |keys: &str, rtype: &str, endpoint: &str| {
        let text = format!(
            "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
             [[pool]]\nname = \"p.example.test.\"\ntype = \"{rtype}\"\n{keys}\n\
             endpoints = [{{ address = \"{endpoint}\" }}]\n"
        );
        parse(&text).unwrap_or_else(|e| panic!("{e}")).pools[0]
            .policy
            .name()
    };
    let probe = "probe = { kind = \"tcp\", port = 80 }";
    assert_eq!(pool(probe, "A", "192.0.2.1"), "fastest");
    assert_eq!(pool("", "CNAME", "a.example.net."), "fastest");
    assert_eq!(pool("count = 1", "A", "192.0.2.1"), "fastest");
    assert_eq!(pool("", "A", "192.0.2.1"), "all-healthy");
}
