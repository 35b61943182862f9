//! Policies and all-down behaviours: every policy, knob errors, fallbacks, priorities.

use super::*;

#[test]
fn every_policy_kind() {
    for (text, kind) in [
        ("fastest", Policy::default()),
        ("weighted", Policy::Weighted),
        ("failover", Policy::Failover),
        ("all-healthy", Policy::AllHealthy),
    ] {
        let p = one_pool(&pool_with("A", &[&format!("policy = \"{text}\"")], TWO));
        assert_eq!(p.policy, kind);
        assert_eq!(kind.to_string(), text);
        if let Policy::Fastest { count, .. } = p.policy {
            assert_eq!(count, 1);
        }
    }
    // Weighted and failover CNAME pools are fine.
    let cname = "{ address = \"a.cdn.example.net\" }, { address = \"b.cdn.example.net\" }";
    for policy in ["weighted", "failover"] {
        let p = one_pool(&pool_with(
            "CNAME",
            &[&format!("policy = \"{policy}\"")],
            cname,
        ));
        assert_eq!(p.endpoints.len(), 2);
    }
}

#[test]
fn policy_errors() {
    assert_fails_at(
        &pool_with("A", &["policy = \"random\""], TWO),
        7,
        "unknown variant `random`",
    );
    assert_fails_at(
        &pool_with("A", &["count = 0"], TWO),
        7,
        "count 0 is out of range 1..=8",
    );
    assert_fails_at(
        &pool_with("A", &["count = 9"], TWO),
        7,
        "count 9 is out of range",
    );
    assert_fails_at(
        &pool_with("A", &["policy = \"weighted\"", "count = 2"], TWO),
        8,
        "count only applies to policy \"fastest\", and pool www.example.test. has policy \"weighted\"",
    );
    assert_fails_at(
        &pool_with("A", &["deviation = 1001"], TWO),
        7,
        "deviation 1001% is larger than 1000%",
    );
    assert_fails_at(
        &pool_with("A", &["hysteresis = 5000"], TWO),
        7,
        "hysteresis 5000% is larger than 1000%",
    );
    assert_fails_at(
        &pool_with("A", &["policy = \"failover\"", "hysteresis = 5"], TWO),
        8,
        "hysteresis only applies to policy \"fastest\"",
    );
    assert_fails_at(
        &pool_with("A", &["policy = \"all-healthy\"", "deviation = 5"], TWO),
        8,
        "deviation only applies",
    );
    let cname = "{ address = \"a.cdn.example.net\" }";
    assert_fails_at(
        &pool_with("CNAME", &["count = 2"], cname),
        7,
        "is a CNAME, which answers one record; count must be 1",
    );
    assert_fails_at(
        &pool_with("CNAME", &["policy = \"all-healthy\""], cname),
        7,
        "all-healthy needs an A or AAAA pool",
    );
    // Percent values at the limits are fine.
    let p = one_pool(&pool_with(
        "A",
        &["deviation = 1000", "hysteresis = 0", "count = 8"],
        TWO,
    ));
    assert_eq!(
        p.policy,
        Policy::Fastest {
            deviation_pct: 1000,
            hysteresis_pct: 0,
            count: 8
        }
    );
}

#[test]
fn all_down_and_fallback_errors() {
    assert_fails_at(
        &pool_with("A", &["all_down = \"fallback\""], TWO),
        7,
        "pool www.example.test. has all_down = \"fallback\" but no fallback = [...] addresses",
    );
    assert_fails_at(
        &pool_with("A", &["fallback = [\"198.51.100.1\"]"], TWO),
        7,
        "has fallback addresses, but they are only used with all_down = \"fallback\"",
    );
    assert_fails_at(
        &pool_with(
            "A",
            &["all_down = \"servfail\"", "fallback = [\"198.51.100.1\"]"],
            TWO,
        ),
        8,
        "only used with all_down = \"fallback\"",
    );
    assert_fails_at(
        &pool_with("A", &["all_down = \"nxdomain\""], TWO),
        7,
        "unknown variant `nxdomain`",
    );
    let fallback = |rtype: &str, list: &str, endpoints: &str| {
        pool_with(
            rtype,
            &["all_down = \"fallback\"", &format!("fallback = [{list}]")],
            endpoints,
        )
    };
    assert_fails_at(
        &fallback("A", "\"2001:db8::1\"", TWO),
        8,
        "has type A, so \"2001:db8::1\" must be an IPv4 address",
    );
    assert_fails_at(
        &fallback("A", "\"198.51.100.1\", \"198.51.100.1\"", TWO),
        8,
        "lists fallback 198.51.100.1 twice",
    );
    assert_fails_at(
        &fallback("A", "", TWO),
        8,
        "has 0 fallback addresses; give 1 to 8",
    );
    let cname = "{ address = \"a.cdn.example.net\" }";
    assert_fails_at(
        &fallback("CNAME", "\"x.example.net\", \"y.example.net\"", cname),
        8,
        "has 2 fallback addresses; give 1 to 1",
    );
    assert_fails_at(
        &fallback("CNAME", "\"www.example.test\"", cname),
        8,
        "cannot be a CNAME to itself",
    );
    let p = one_pool(&fallback("CNAME", "\"Static.Example.NET\"", cname));
    assert_eq!(
        p.all_down,
        AllDown::Fallback(vec![EndpointAddress::Host(Box::new(
            Name::from_str("static.example.net.").unwrap()
        ))])
    );
    let p = one_pool(&fallback(
        "AAAA",
        "\"2001:db8::99\"",
        "{ address = \"2001:db8::1\" }",
    ));
    assert_eq!(p.all_down.to_string(), "fallback to 2001:db8::99");
}

#[test]
fn failover_priorities_must_be_distinct() {
    let failover = |endpoints: &str| pool_with("A", &["policy = \"failover\""], endpoints);
    assert_fails_at(
        &failover(
            "{ address = \"192.0.2.1\", priority = 5 },\n{ address = \"192.0.2.2\", priority = 5 }",
        ),
        9,
        "pool www.example.test.: endpoints 192.0.2.1 and 192.0.2.2 both have priority 5; failover needs distinct priorities",
    );
    // A default (the position) can clash with an explicit priority.
    assert_fails_at(
        &failover("{ address = \"192.0.2.1\", priority = 1 },\n{ address = \"192.0.2.2\" }"),
        9,
        "both have priority 1",
    );
    let p = one_pool(&failover(
        "{ address = \"192.0.2.1\", priority = 10 }, { address = \"192.0.2.2\", priority = 0 }",
    ));
    let priorities: Vec<u32> = p.endpoints.iter().map(|e| e.priority).collect();
    assert_eq!(priorities, vec![10, 0]);
    // Other policies do not use priorities, so repeats are fine there.
    let p = one_pool(&pool_with(
        "A",
        &[],
        "{ address = \"192.0.2.1\", priority = 1 }, { address = \"192.0.2.2\", priority = 1 }",
    ));
    assert_eq!(p.endpoints[1].priority, 1);
}
