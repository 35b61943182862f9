//! Probe tables: defaults per kind, endpoint overrides, and every probe error.

use super::*;

#[test]
fn probe_defaults_per_kind() {
    let p = one_pool(&pool_with("A", &["probe = { kind = \"http\" }"], TWO));
    let spec = p.probe.clone().unwrap();
    assert_eq!(*spec, ProbeSpec::new(ProbeKind::default_http()));
    assert_eq!(spec.timing.interval, Duration::from_secs(5));
    assert_eq!(spec.timing.timeout, Duration::from_secs(2));
    assert_eq!((spec.timing.rise, spec.timing.fall), (2, 3));
    assert_eq!(spec.port(), Some(80));
    let http = spec.http().unwrap();
    assert_eq!((http.method.as_str(), http.path.as_str()), ("GET", "/"));
    assert_eq!(http.host, None);
    assert_eq!(http.expect_status, (200..=399).collect::<Vec<u16>>());
    assert_eq!(http.body_contains, None);
    // Every endpoint gets the pool's spec: the one copy, shared.
    assert!(
        p.endpoints
            .iter()
            .all(|e| e.probe.as_ref().is_some_and(|s| Arc::ptr_eq(s, &spec))),
        "every endpoint without overrides shares the pool's spec"
    );

    let p = one_pool(&pool_with(
        "A",
        &["probe = { kind = \"https\", interval = \"1s\" }"],
        TWO,
    ));
    let spec = p.probe.unwrap();
    assert_eq!(spec.port(), Some(443));
    assert!(matches!(
        spec.kind,
        ProbeKind::Https {
            tls_verify: true,
            ..
        }
    ));
    assert_eq!(
        spec.timing.timeout,
        Duration::from_secs(1),
        "min(interval, 2s)"
    );

    let p = one_pool(&pool_with(
        "A",
        &["probe = { kind = \"dns\", qname = \"WWW.example.test\" }"],
        TWO,
    ));
    let spec = p.probe.unwrap();
    assert_eq!(spec.port(), Some(53));
    assert_eq!(
        spec.kind,
        ProbeKind::Dns(Box::new(DnsProbe {
            qname: Name::from_str("www.example.test.").unwrap(),
            qtype: RecordType::A,
            port: 53,
        }))
    );

    let p = one_pool(&pool_with("A", &["probe = { kind = \"icmp\" }"], TWO));
    assert_eq!(p.probe.unwrap().port(), None);
    let p = one_pool(&pool_with(
        "A",
        &["probe = { kind = \"tcp\", port = 22, interval = \"250ms\" }"],
        TWO,
    ));
    let spec = p.probe.unwrap();
    assert_eq!(spec.port(), Some(22));
    assert_eq!(spec.timing.interval, Duration::from_millis(250));
    assert_eq!(spec.timing.timeout, Duration::from_millis(250));
}

#[test]
fn endpoint_overrides_merge_with_the_pool_probe() {
    let p = one_pool(&pool_with(
        "A",
        &[
            "probe = { kind = \"http\", interval = \"1s\", rise = 3, port = 8080, path = \"/health\", host = \"cdn.example.net\" }",
        ],
        "{ address = \"192.0.2.1\", probe = { interval = \"4s\" } }, { address = \"192.0.2.2\", probe = { kind = \"tcp\", port = 22 } }, { address = \"192.0.2.3\", probe = { kind = \"http\", path = \"/other\" } }",
    ));
    let pool = p.probe.clone().unwrap();
    // Interval overridden: the default timeout follows the endpoint's interval.
    let e0 = p.endpoints[0].probe.clone().unwrap();
    assert_eq!(e0.timing.interval, Duration::from_secs(4));
    assert_eq!(e0.timing.timeout, Duration::from_secs(2));
    assert_eq!((e0.timing.rise, e0.port()), (3, Some(8080)));
    assert_eq!(e0.http().unwrap().path, "/health");
    // Another kind: timing keys inherited, the http keys not.
    let e1 = p.endpoints[1].probe.clone().unwrap();
    assert_eq!(e1.kind, ProbeKind::Tcp { port: 22 });
    assert_eq!(
        (e1.timing.interval, e1.timing.rise, e1.port()),
        (pool.timing.interval, 3, Some(22))
    );
    assert_eq!(e1.http(), None);
    // The same kind named again: everything inherited.
    let e2 = p.endpoints[2].probe.clone().unwrap();
    let pool_http = pool.http().unwrap().clone();
    assert_eq!(
        *e2,
        ProbeSpec {
            kind: ProbeKind::Http(Box::new(HttpProbe {
                path: "/other".into(),
                ..pool_http
            })),
            ..(*pool).clone()
        }
    );
}

#[test]
fn probe_timing_errors() {
    let probe = |p: &str| pool_with("A", &[&format!("probe = {{ {p} }}")], TWO);
    assert_fails_at(
        &probe("kind = \"http\", interval = \"100ms\""),
        7,
        "probe interval 100ms is shorter than 250ms",
    );
    assert_fails_at(
        &probe("kind = \"http\", interval = \"soon\""),
        7,
        "invalid probe interval \"soon\"",
    );
    // "1M" is a month, not a minute.
    assert_fails_at(
        &probe("kind = \"http\", interval = \"1M\""),
        7,
        "probe interval 1month is longer than 1h",
    );
    assert_fails_at(
        &probe("kind = \"http\", interval = \"1h\", timeout = \"5m\""),
        7,
        "probe timeout 5m is longer than 1m",
    );
    assert_fails_at(
        &probe("kind = \"http\", timeout = \"0s\""),
        7,
        "probe timeout must be longer than 0s",
    );
    assert_fails_at(
        &probe("kind = \"http\", interval = \"1s\", timeout = \"2s\""),
        7,
        "probe timeout 2s is longer than the interval 1s",
    );
    assert_fails_at(
        &probe("kind = \"http\", rise = 0"),
        7,
        "rise must be at least 1",
    );
    assert_fails_at(
        &probe("kind = \"http\", fall = 0"),
        7,
        "fall must be at least 1",
    );
    assert_fails_at(&probe("kind = \"http\", rise = -1"), 7, "invalid value");
    // An endpoint's interval shorter than the pool's timeout: named where it merges.
    let text = pool_with(
        "A",
        &["probe = { kind = \"http\", interval = \"5s\", timeout = \"2s\" }"],
        "{ address = \"192.0.2.1\" },\n{ address = \"192.0.2.2\", probe = { interval = \"1s\" } }",
    );
    assert_fails_at(&text, 7, "probe timeout 2s is longer than the interval 1s");
    let text = pool_with(
        "A",
        &["probe = { kind = \"http\" }"],
        "{ address = \"192.0.2.1\" },\n{ address = \"192.0.2.2\", probe = { interval = \"10ms\" } }",
    );
    assert_fails_at(&text, 9, "shorter than 250ms");
}

#[test]
fn probe_kind_errors() {
    let probe = |p: &str| pool_with("A", &[&format!("probe = {{ {p} }}")], TWO);
    assert_fails_at(&probe("port = 80"), 7, "needs a kind: \"http\"");
    assert_fails_at(&probe("kind = \"smtp\""), 7, "unknown variant `smtp`");
    assert_fails_at(
        &probe("kind = \"http\", paht = \"/\""),
        7,
        "unknown field `paht`",
    );
    assert_fails_at(
        &probe("kind = \"tcp\""),
        7,
        "the tcp probe of pool www.example.test. needs a port",
    );
    assert_fails_at(
        &probe("kind = \"icmp\", port = 7"),
        7,
        "icmp probes have no port",
    );
    assert_fails_at(
        &probe("kind = \"http\", port = 0"),
        7,
        "probe port must be between 1 and 65535",
    );
    assert_fails_at(
        &probe("kind = \"dns\""),
        7,
        "the dns probe of pool www.example.test. needs a qname",
    );
    assert_fails_at(
        &probe("kind = \"dns\", qname = \"a..b\""),
        7,
        "invalid probe qname",
    );
    for qtype in ["ANY", "AXFR", "OPT", "BOGUS"] {
        assert_fails_at(
            &probe(&format!(
                "kind = \"dns\", qname = \"www.example.test\", qtype = \"{qtype}\""
            )),
            7,
            &format!("invalid probe qtype \"{qtype}\""),
        );
    }
    // Keys of other kinds.
    assert_fails_at(
        &probe("kind = \"tcp\", port = 22, path = \"/\""),
        7,
        "path only applies to http and https probes, not to tcp",
    );
    assert_fails_at(
        &probe("kind = \"dns\", qname = \"x.test\", host = \"a.test\""),
        7,
        "host only applies to http and https probes, not to dns",
    );
    assert_fails_at(
        &probe("kind = \"icmp\", expect_status = [200]"),
        7,
        "expect_status only applies",
    );
    assert_fails_at(
        &probe("kind = \"tcp\", port = 1, method = \"GET\""),
        7,
        "method only applies",
    );
    assert_fails_at(
        &probe("kind = \"tcp\", port = 1, body_contains = \"x\""),
        7,
        "body_contains only applies",
    );
    assert_fails_at(
        &probe("kind = \"http\", tls_verify = false"),
        7,
        "tls_verify only applies to https probes, not to http",
    );
    assert_fails_at(
        &probe("kind = \"http\", qname = \"www.example.test\""),
        7,
        "qname only applies to dns probes, not to http",
    );
    assert_fails_at(
        &probe("kind = \"http\", qtype = \"A\""),
        7,
        "qtype only applies to dns probes",
    );
}

#[test]
fn http_probe_value_errors() {
    let probe = |p: &str| pool_with("A", &[&format!("probe = {{ kind = \"http\", {p} }}")], TWO);
    assert_fails_at(
        &probe("path = \"health\""),
        7,
        "probe path \"health\" must start with \"/\"",
    );
    assert_fails_at(&probe("path = \"/a b\""), 7, "contains white space");
    assert_fails_at(&probe("path = \"/a#b\""), 7, "'#'");
    assert_fails_at(
        &probe("method = \"GE T\""),
        7,
        "invalid HTTP method \"GE T\"",
    );
    assert_fails_at(&probe("method = \"\""), 7, "invalid HTTP method");
    assert_fails_at(
        &probe("host = \"192.0.2.1\""),
        7,
        "probe host \"192.0.2.1\" is an address",
    );
    assert_fails_at(
        &probe("host = \"cdn.example.net:8080\""),
        7,
        "must be a host name",
    );
    assert_fails_at(&probe("host = \"a..b\""), 7, "invalid probe host");
    assert_fails_at(
        &probe("expect_status = [200, 600]"),
        7,
        "HTTP status 600 is out of range 100..=599",
    );
    assert_fails_at(&probe("expect_status = [99]"), 7, "HTTP status 99");
    assert_fails_at(
        &probe("expect_status = []"),
        7,
        "expect_status must list at least one status",
    );
    assert_fails_at(&probe("body_contains = \"\""), 7, "body_contains is empty");
    // A method is kept as written (methods are case-sensitive).
    let p = one_pool(&probe("method = \"OPTIONS\""));
    assert_eq!(p.probe.unwrap().http().unwrap().method, "OPTIONS");
}
