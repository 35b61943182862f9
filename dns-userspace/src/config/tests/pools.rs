//! `[[pool]]`: names, zones, endpoints, TTLs, defaults and every key.

use super::*;

#[test]
fn pool_names_must_be_inside_one_zone_and_unique() {
    assert_fails_at(
        &pool("www.example.org", "A", "{ address = \"192.0.2.1\" }"),
        5,
        "pool www.example.org. is outside every configured zone (example.test.)",
    );
    let twice = format!(
        "{}[[pool]]\nname = \"WWW.example.test.\"\ntype = \"AAAA\"\nendpoints = [{{ address = \"2001:db8::1\" }}]\n",
        pool("www.example.test", "A", "{ address = \"192.0.2.1\" }")
    );
    assert_fails_at(
        &twice,
        9,
        "pool www.example.test. is configured twice (first at line 5)",
    );
    assert_fails_at(
        &pool("host.sub.example.test", "A", "{ address = \"192.0.2.1\" }"),
        5,
        "at or below the delegation sub.example.test.",
    );
    assert_fails_at(
        &pool("*.example.test", "A", "{ address = \"192.0.2.1\" }"),
        5,
        "wildcard",
    );
    assert_fails_at(
        "[[pool]]\nname = \"www.example.test\"\ntype = \"A\"\nendpoints = [{ address = \"192.0.2.1\" }]\n",
        1,
        "pools need a zone",
    );
}

#[test]
fn pools_must_not_clash_with_zone_data() {
    let zone_file = testdata().join("example.test.zone");
    let zone_file = zone_file.display();
    let e = assert_fails_at(
        &pool(
            "info.example.test",
            "CNAME",
            "{ address = \"x.example.net\" }",
        ),
        5,
        "pool info.example.test. is a CNAME, but",
    );
    assert!(
        e.message()
            .contains(&format!("{zone_file} also has TXT records")),
        "{e}"
    );
    assert_fails_at(
        &pool("static.example.test", "A", "{ address = \"192.0.2.9\" }"),
        5,
        "pool static.example.test. has type A, but",
    );
    assert_fails_at(
        &pool(
            "alias.example.test",
            "AAAA",
            "{ address = \"2001:db8::9\" }",
        ),
        5,
        "also has CNAME records",
    );
    // Other types at an A pool's name are fine.
    parse(&pool(
        "info.example.test",
        "A",
        "{ address = \"192.0.2.9\" }",
    ))
    .unwrap();
    parse(&pool(
        "static.example.test",
        "AAAA",
        "{ address = \"2001:db8::9\" }",
    ))
    .unwrap();
}

#[test]
fn endpoints_are_checked() {
    assert_fails_at(
        &pool("www.example.test", "A", ""),
        7,
        "pool www.example.test. has no endpoints",
    );
    let nine: Vec<String> = (1..=9)
        .map(|i| format!("{{ address = \"192.0.2.{i}\" }}"))
        .collect();
    assert_fails_at(
        &pool("www.example.test", "A", &nine.join(", ")),
        7,
        "has 9 endpoints, at most 8 are supported",
    );
    assert_fails_at(
        &pool("www.example.test", "A", "{ address = \"2001:db8::1\" }"),
        7,
        "has type A, so \"2001:db8::1\" must be an IPv4 address",
    );
    assert_fails_at(
        &pool("www.example.test", "A", "{ address = \"web.example.net\" }"),
        7,
        "must be an IPv4 address",
    );
    assert_fails_at(
        &pool("www.example.test", "AAAA", "{ address = \"192.0.2.1\" }"),
        7,
        "has type AAAA, so \"192.0.2.1\" must be an IPv6 address",
    );
    assert_fails_at(
        &pool("www.example.test", "CNAME", "{ address = \"192.0.2.1\" }"),
        7,
        "has type CNAME, so \"192.0.2.1\" must be a host name",
    );
    assert_fails_at(
        &pool(
            "www.example.test",
            "CNAME",
            "{ address = \"www.example.test\" }",
        ),
        7,
        "cannot be a CNAME to itself",
    );
    assert_fails_at(
        &pool(
            "www.example.test",
            "A",
            "{ address = \"192.0.2.1\", weight = 0 }",
        ),
        7,
        "weight must be at least 1",
    );
    assert_fails_at(
        &pool(
            "www.example.test",
            "A",
            "{ address = \"192.0.2.1\" }, { address = \"192.0.2.1\" }",
        ),
        7,
        "lists endpoint 192.0.2.1 twice",
    );
    assert_fails_at(
        &pool("www.example.test", "MX", "{ address = \"192.0.2.1\" }"),
        6,
        "pool type must be A, AAAA or CNAME",
    );
}

#[test]
fn ttls_are_at_most_2_pow_31_minus_1() {
    let text = with_zone(
        "[[pool]]\nname = \"www.example.test\"\ntype = \"A\"\nttl = 2147483648\nendpoints = [{ address = \"192.0.2.1\" }]\n",
    );
    assert_fails_at(&text, 7, "pool ttl 2147483648 is larger than 2147483647");
    let ok = with_zone(
        "[[pool]]\nname = \"www.example.test\"\ntype = \"A\"\nttl = 2147483647\nendpoints = [{ address = \"192.0.2.1\" }]\n",
    );
    assert_eq!(parse(&ok).unwrap().pools[0].ttl, 2147483647);
}

#[test]
fn names_take_any_case_and_optional_trailing_dot() {
    let cfg = parse(
        "[[zone]]\norigin = \"Example.TEST\"\nfile = \"example.test.zone\"\n[[pool]]\nname = \"WWW.Example.Test\"\ntype = \"cname\"\nendpoints = [{ address = \"Edge.CDN.example.NET\" }]\n",
    )
    .unwrap();
    assert_eq!(cfg.zones[0].origin.to_string(), "example.test.");
    assert_eq!(cfg.pools[0].name.to_string(), "www.example.test.");
    assert!(cfg.pools[0].name.is_fqdn());
    assert_eq!(
        cfg.pools[0].endpoints[0].address,
        EndpointAddress::Host(Box::new(Name::from_str("edge.cdn.example.net.").unwrap()))
    );
    assert_fails_at(
        &pool("www..example.test", "A", "{ address = \"192.0.2.1\" }"),
        5,
        "empty label",
    );
}

#[test]
fn policy_probe_and_global_defaults() {
    let cfg = parse(&pool_with("A", &[], TWO)).unwrap();
    let p = &cfg.pools[0];
    // No probe: every endpoint is answered.
    assert_eq!(p.policy, Policy::AllHealthy);
    let probed = parse(&pool_with(
        "A",
        &["probe = { kind = \"tcp\", port = 80 }"],
        TWO,
    ))
    .unwrap();
    assert_eq!(probed.pools[0].policy, Policy::default());
    assert_eq!(
        (&probed.pools[0].policy, &probed.pools[0].all_down),
        (
            &Policy::Fastest {
                count: 1,
                deviation_pct: 0,
                hysteresis_pct: 10,
            },
            &AllDown::FailOpen
        )
    );
    assert_eq!(p.probe, None);
    assert_eq!(p.webhook, None);
    let e: Vec<(u32, AdminState, Option<ProbeSpec>)> = p
        .endpoints
        .iter()
        .map(|e| (e.priority, e.admin, e.probe.as_deref().cloned()))
        .collect();
    assert_eq!(
        e,
        vec![(0, AdminState::Follow, None), (1, AdminState::Follow, None)]
    );
    assert_eq!(cfg.events, EventSettings { log: None });
    assert_eq!(
        cfg.probes,
        ProbeSettings {
            max_concurrent: None
        }
    );
    let empty = parse("").unwrap();
    assert_eq!(empty.events, EventSettings::default());
    assert_eq!(empty.probes.max_concurrent, None);
}

#[test]
fn every_pool_key() {
    let p = one_pool(&pool_with(
        "A",
        &[
            "policy = \"fastest\"",
            "count = 2",
            "deviation = 10",
            "hysteresis = 20",
            "all_down = \"fallback\"",
            "fallback = [\"198.51.100.1\", \"198.51.100.2\"]",
            "webhook = \"http://127.0.0.1:8080/hook\"",
            "probe = { kind = \"http\", interval = \"1s\", timeout = \"500ms\", rise = 4, fall = 5, port = 8000, method = \"HEAD\", path = \"/health?x=1\", host = \"CDN.example.net.\", expect_status = [200, 204, 204], body_contains = \"ok\" }",
        ],
        "{ address = \"192.0.2.10\", weight = 2, priority = 7, state = \"up\", probe = { port = 8080 } }, { address = \"192.0.2.11\", state = \"down\" }",
    ));
    assert_eq!(
        (&p.policy, &p.all_down),
        (
            &Policy::Fastest {
                count: 2,
                deviation_pct: 10,
                hysteresis_pct: 20,
            },
            &AllDown::Fallback(vec![
                EndpointAddress::Ip(IpAddr::from_str("198.51.100.1").unwrap()),
                EndpointAddress::Ip(IpAddr::from_str("198.51.100.2").unwrap()),
            ]),
        )
    );
    assert_eq!(p.webhook.as_deref(), Some("http://127.0.0.1:8080/hook"));
    let http = HttpProbe {
        port: 8000,
        method: "HEAD".into(),
        path: "/health?x=1".into(),
        host: Some("cdn.example.net".into()),
        expect_status: vec![200, 204],
        body_contains: Some("ok".into()),
    };
    let pool_spec = ProbeSpec {
        timing: ProbeTiming {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 4,
            fall: 5,
        },
        kind: ProbeKind::Http(Box::new(http.clone())),
    };
    assert_eq!(p.probe.as_deref(), Some(&pool_spec));
    let e0 = &p.endpoints[0];
    assert_eq!((e0.weight, e0.priority, e0.admin), (2, 7, AdminState::Up));
    assert_eq!(
        e0.probe.as_deref(),
        Some(&ProbeSpec {
            kind: ProbeKind::Http(Box::new(HttpProbe { port: 8080, ..http })),
            ..pool_spec.clone()
        })
    );
    let e1 = &p.endpoints[1];
    assert_eq!((e1.priority, e1.admin), (1, AdminState::Down));
    assert_eq!(e1.probe.as_deref(), Some(&pool_spec));

    let p = one_pool(&pool_with(
        "A",
        &[
            "all_down = \"servfail\"",
            "probe = { kind = \"https\", tls_verify = false }",
        ],
        TWO,
    ));
    assert_eq!(p.all_down, AllDown::Servfail);
    assert!(matches!(
        p.probe.unwrap().kind,
        ProbeKind::Https {
            tls_verify: false,
            ..
        }
    ));
    let p = one_pool(&pool_with(
        "A",
        &[
            "probe = { kind = \"dns\", qname = \"www.example.test\", qtype = \"aaaa\", port = 5353 }",
        ],
        TWO,
    ));
    let spec = p.probe.unwrap();
    let ProbeKind::Dns(dns) = &spec.kind else {
        panic!("{spec:?}");
    };
    assert_eq!((dns.qtype, spec.port()), (RecordType::AAAA, Some(5353)));
}

#[test]
fn endpoint_probe_and_state_errors() {
    assert_fails_at(
        &pool_with(
            "A",
            &[],
            "{ address = \"192.0.2.1\", probe = { port = 8080 } }",
        ),
        7,
        "endpoint 192.0.2.1 has probe overrides, but pool www.example.test. has no probe",
    );
    assert_fails_at(
        &pool_with(
            "A",
            &["probe = { kind = \"http\" }"],
            "{ address = \"192.0.2.1\", probe = { kind = \"tcp\" } }",
        ),
        8,
        "needs a port",
    );
    assert_fails_at(
        &pool_with(
            "A",
            &["probe = { kind = \"http\" }"],
            "{ address = \"192.0.2.1\", state = \"always_on\" }",
        ),
        8,
        "unknown variant `always_on`",
    );
    assert_fails_at(
        &pool_with(
            "A",
            &["probe = { kind = \"http\" }"],
            "{ address = \"192.0.2.1\", probe = { kind = \"http\", bogus = 1 } }",
        ),
        8,
        "unknown field `bogus`",
    );
}

#[test]
fn webhook_errors() {
    let hook = |url: &str| pool_with("A", &[&format!("webhook = \"{url}\"")], TWO);
    assert_fails_at(&hook("not a url"), 7, "invalid webhook URL \"not a url\"");
    assert_fails_at(
        &hook("ftp://127.0.0.1/hook"),
        7,
        "webhook URL \"ftp://127.0.0.1/hook\" must be http or https, not \"ftp\"",
    );
    assert_fails_at(&hook("http://"), 7, "invalid webhook URL");
    assert_fails_at(&hook("mailto:ops@example.net"), 7, "must be http or https");
    let p = one_pool(&hook("https://hooks.example.net:8443/hotpool?pool=www"));
    assert_eq!(
        p.webhook.as_deref(),
        Some("https://hooks.example.net:8443/hotpool?pool=www")
    );
    let p = one_pool(&hook("http://127.0.0.1:8080"));
    assert_eq!(p.webhook.as_deref(), Some("http://127.0.0.1:8080/"));
}
