//! End to end: the daemon in a server namespace attached to one end of a veth pair, real
//! queries from a client namespace on the other end. Each test builds and removes its own
//! namespaces, pins and files.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use aya::programs::XdpMode;
use dns_common::Outcome;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};
use hotpool::datapath::ebpf::PassProgram;
use hotpool_tests::{
    client,
    daemon::{Daemon, answered, delta, xdp_attached},
    netns::Link,
};

/// The test config: the daemon on the server end of `link`, XDP in `mode`.
fn config(link: &Link, mode: &str) -> String {
    format!(
        r#"
[server]
listen = ["{v4}", "{v6}"]
port = 53
edns_udp_size = 1232
pin_path = "{{pin}}"

[xdp]
interfaces = ["{iface}"]
mode = "{mode}"

[[zone]]
origin = "example.test."
file = "zones/example.test.zone"

[[pool]]
name = "www.example.test."
type = "A"
ttl = 30
endpoints = [{{ address = "192.0.2.10" }}, {{ address = "192.0.2.11" }}]

[[pool]]
name = "v6.example.test."
type = "AAAA"
ttl = 60
endpoints = [{{ address = "2001:db8::10" }}]
"#,
        v4 = link.server_v4,
        v6 = link.server_v6,
        iface = link.server_if,
    )
}

fn addrs(m: &Message) -> BTreeSet<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

fn scenario(mode: &str) {
    let link = Link::new();
    // Native XDP on a veth delivers XDP_TX frames only if the peer runs XDP too.
    let _peer = (mode != "generic").then(|| {
        let iface = link.client_if.clone();
        link.client
            .run(move || PassProgram::attach(&iface, XdpMode::Driver).expect("pass program"))
    });
    let daemon = Daemon::start(&link, &config(&link, mode), true);
    assert!(
        xdp_attached(&link),
        "XDP program attached to {}",
        link.server_if
    );
    let v4 = SocketAddr::new(IpAddr::V4(link.server_v4), 53);
    let v6 = SocketAddr::new(IpAddr::V6(link.server_v6), 53);
    let t = Duration::from_secs(2);

    // A hot-pool hit over IPv4 and IPv6 is answered by the kernel.
    let q = client::query("WwW.Example.Test.", RecordType::A, true);
    let before = daemon.stats();
    let xdp_reply = link.client.run({
        let q = q.clone();
        move || client::udp(v4, &q, t).expect("UDP answer")
    });
    assert_eq!(answered(&before, &daemon.stats()), 1, "answered by XDP");
    assert_eq!(xdp_reply.metadata.response_code, ResponseCode::NoError);
    assert!(xdp_reply.metadata.authoritative);
    assert_eq!(
        addrs(&xdp_reply),
        ["192.0.2.10", "192.0.2.11"].map(String::from).into()
    );
    assert_eq!(xdp_reply.queries[0].name.to_ascii(), "WwW.Example.Test.");

    // The same query over TCP is answered by the daemon, identically.
    let tcp_reply = link.client.run({
        let q = q.clone();
        move || client::tcp(v4, &q, t).expect("TCP answer")
    });
    assert_eq!(
        tcp_reply, xdp_reply,
        "daemon and XDP answer a pool name identically"
    );

    let before = daemon.stats();
    let v6_reply = link.client.run(move || {
        client::udp(
            v6,
            &client::query("v6.example.test.", RecordType::AAAA, false),
            t,
        )
        .expect("UDP answer over IPv6")
    });
    assert_eq!(answered(&before, &daemon.stats()), 1);
    assert_eq!(addrs(&v6_reply), ["2001:db8::10".to_string()].into());

    // Every hot query is answered by the kernel, whatever room the driver leaves at the
    // frame's tail (a native veth often leaves none: the reply grows into the headroom).
    let before = daemon.stats();
    link.client.run(move || {
        for i in 0..20u16 {
            for (server, name, qtype) in [
                (v4, "www.example.test.", RecordType::A),
                (v6, "v6.example.test.", RecordType::AAAA),
                (v6, "www.example.test.", RecordType::A),
            ] {
                let mut q = client::query(name, qtype, i % 2 == 0);
                q.metadata.id = 1000 + i;
                client::udp(server, &q, t).expect("UDP answer");
            }
        }
    });
    let after = daemon.stats();
    assert_eq!(
        delta(&before, &after, Outcome::GrowFailed),
        0,
        "no reply left to the daemon"
    );
    assert_eq!(answered(&before, &after), 60, "all answered by the kernel");
    println!(
        "{mode}: {} replies grown at the tail, {} into the headroom",
        delta(&before, &after, Outcome::Hit),
        delta(&before, &after, Outcome::HitHeadroom)
    );

    // A miss reaches the daemon: NODATA with the SOA.
    let before = daemon.stats();
    let nodata = link.client.run(move || {
        client::udp(
            v4,
            &client::query("www.example.test.", RecordType::AAAA, false),
            t,
        )
        .expect("NODATA answer")
    });
    assert_eq!(
        delta(&before, &daemon.stats(), Outcome::Miss),
        1,
        "passed as a miss"
    );
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

    // NXDOMAIN from the daemon.
    let nx = link.client.run(move || {
        client::udp(
            v4,
            &client::query("nope.example.test.", RecordType::A, false),
            t,
        )
        .expect("NXDOMAIN answer")
    });
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

    // An EDNS option the kernel does not handle (cookie) is passed and the daemon answers.
    let before = daemon.stats();
    let cookie = link.client.run(move || {
        let mut q = client::query("www.example.test.", RecordType::A, true);
        let mut e = q.edns.clone().unwrap();
        e.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                10,
                vec![7; 8],
            ));
        q.set_edns(e);
        client::udp(v4, &q, t).expect("answer to a query with a cookie")
    });
    assert_eq!(delta(&before, &daemon.stats(), Outcome::Edns), 1);
    assert_eq!(
        addrs(&cookie),
        ["192.0.2.10", "192.0.2.11"].map(String::from).into()
    );

    daemon.stop();
    assert!(!xdp_attached(&link), "XDP program detached on shutdown");
}

#[test]
fn native_mode_end_to_end() {
    scenario("native");
}

#[test]
fn generic_mode_end_to_end() {
    scenario("generic");
}

#[test]
fn dig_gets_the_pool_from_the_kernel() {
    let link = Link::new();
    let daemon = Daemon::start(&link, &config(&link, "generic"), true);
    let before = daemon.stats();
    let out = link.client.exec_ok(&[
        "dig",
        "+short",
        "+tries=1",
        "+time=2",
        &format!("@{}", link.server_v4),
        "www.example.test",
        "A",
    ]);
    let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, ["192.0.2.10", "192.0.2.11"].map(String::from).into());
    // dig sends EDNS with a cookie by default: that one goes to the daemon. +nocookie
    // goes to the kernel.
    assert_eq!(delta(&before, &daemon.stats(), Outcome::Edns), 1);
    let before = daemon.stats();
    link.client.exec_ok(&[
        "dig",
        "+short",
        "+nocookie",
        "+tries=1",
        &format!("@{}", link.server_v4),
        "www.example.test",
    ]);
    assert_eq!(answered(&before, &daemon.stats()), 1);
    daemon.stop();
}
