//! A configuration at the scale the probes are built for: 10 000 pools, 40 000 probed
//! endpoints. It loads (how fast is measured by the probes benchmark, not asserted here).

use super::*;

/// `pools` A pools of 4 endpoints each, every endpoint probed over TCP each second.
fn generated(pools: usize) -> String {
    let mut text = String::from(ZONE);
    for i in 0..pools {
        let (a, b) = (i / 250, i % 250);
        text.push_str(&format!(
            "\n[[pool]]\nname = \"p{i}.example.test.\"\ntype = \"A\"\n\
             probe = {{ kind = \"tcp\", port = 80, interval = \"1s\" }}\n\
             endpoints = [{{ address = \"10.{a}.{b}.1\" }}, {{ address = \"10.{a}.{b}.2\" }}, \
             {{ address = \"10.{a}.{b}.3\" }}, {{ address = \"10.{a}.{b}.4\" }}]\n"
        ));
    }
    text
}

#[test]
fn ten_thousand_pools_load() {
    let cfg = parse(&generated(10_000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.pools.len(), 10_000);
    let probed = cfg
        .pools
        .iter()
        .flat_map(|p| &p.endpoints)
        .filter(|e| e.probe.is_some())
        .count();
    assert_eq!(probed, 40_000);
    let last = &cfg.pools[9_999];
    assert_eq!(last.name.to_string(), "p9999.example.test.");
    assert_eq!(
        last.endpoints[3].address,
        EndpointAddress::Ip("10.39.249.4".parse().unwrap())
    );
    assert!(
        cfg.summary()
            .contains("probes: 40000 endpoints; up to 40000 in flight")
    );
}
