//! Response rate limiting in the kernel, end to end (issue 10): a flood from one client
//! over a veth is limited by the XDP program — a window of answers, then every second
//! limited answer slipped (TC=1, no records) and the others dropped — while a client on
//! another network is answered in full. Generic XDP, so no program is needed on the peer.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hickory_proto::{
    op::Message,
    rr::RecordType,
    serialize::binary::{BinDecodable, BinEncodable},
};
use hotpool_tests::{
    client,
    daemon::{Daemon, delta},
    netns::Link,
    require_root,
};

/// Queries of the flood.
const FLOOD: usize = 200;
/// `[rrl] responses_per_second` (and the window's depth: `window = 1`).
const RATE: u64 = 5;

fn config(link: &Link) -> String {
    format!(
        r#"
[server]
listen = ["{v4}"]
pin_path = "{{pin}}"

[xdp]
interfaces = ["{iface}"]
mode = "generic"

[rrl]
responses_per_second = {RATE}
window = 1
slip = 2

[[zone]]
origin = "example.test."
file = "zones/example.test.zone"

[[pool]]
name = "www.example.test."
type = "A"
ttl = 30
endpoints = [{{ address = "192.0.2.10" }}]
"#,
        v4 = link.server_v4,
        iface = link.server_if,
    )
}

/// What the flood got back: (answers with records, truncated answers).
fn flood(server: SocketAddr, from: Ipv4Addr) -> (u64, u64, Duration) {
    let sock = UdpSocket::bind((from, 0)).expect("binding the flood's socket");
    let q = client::query("www.example.test.", RecordType::A, true);
    let wire = q.to_bytes().unwrap();
    let started = Instant::now();
    for _ in 0..FLOOD {
        sock.send_to(&wire, server).expect("sending");
    }
    let took = started.elapsed();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let m = Message::from_bytes(&buf[..n]).expect("a reply that parses");
        assert_eq!(m.metadata.id, q.metadata.id);
        if m.metadata.truncation {
            assert!(m.answers.is_empty(), "a slipped reply carries no records");
            truncated += 1;
        } else {
            assert_eq!(m.answers.len(), 1);
            full += 1;
        }
    }
    (full, truncated, took)
}

#[test]
fn a_flood_from_one_network_is_limited_and_slipped_while_another_is_answered() {
    require_root();
    let link = Link::new();
    // A second client address on another /24 (another bucket). XDP_TX replies need no
    // route back on the server.
    let n = link.client_v4.octets()[2];
    let other = Ipv4Addr::new(10, 78, n, 2);
    link.client.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{other}/24"),
        "dev",
        &link.client_if,
    ]);
    let daemon = Daemon::start(&link, &config(&link), true);
    let server = SocketAddr::new(IpAddr::V4(link.server_v4), 53);

    let before = daemon.stats();
    let client_v4 = link.client_v4;
    let (full, truncated, took) = link.client.run(move || flood(server, client_v4));
    let after = daemon.stats();
    let hits = delta(&before, &after, Outcome::Hit);
    let slipped = delta(&before, &after, Outcome::RrlSlipped);
    let dropped = delta(&before, &after, Outcome::RrlDropped);
    println!(
        "{FLOOD} queries sent in {took:?}: {hits} hits, {slipped} slipped, {dropped} dropped; \
         the client got {full} answers and {truncated} truncated"
    );
    // The window, and the rate for the time the flood took (generously rounded up).
    let allowed = RATE * (2 + took.as_secs());
    assert!(
        (RATE..=allowed).contains(&hits),
        "{hits} hits, {allowed} allowed"
    );
    // Every query the kernel saw was answered, slipped or dropped; slips and drops
    // alternate (slip = 2).
    let limited = slipped + dropped;
    assert!(limited >= FLOOD as u64 / 2, "{limited} limited");
    assert!(
        slipped.abs_diff(dropped) <= 1,
        "{slipped} slipped, {dropped} dropped"
    );
    // The client got what the kernel sent (the flood's socket buffer holds it all).
    assert_eq!(full, hits);
    assert_eq!(truncated, slipped);

    // Another network is answered in full meanwhile.
    let before = daemon.stats();
    let answers = link.client.run(move || {
        let sock = UdpSocket::bind((other, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = 0;
        for _ in 0..3 {
            let q = client::query("www.example.test.", RecordType::A, true);
            sock.send_to(&q.to_bytes().unwrap(), server).unwrap();
            let mut buf = [0u8; 2048];
            let (n, _) = sock
                .recv_from(&mut buf)
                .expect("an answer for the other network");
            let m = Message::from_bytes(&buf[..n]).unwrap();
            assert!(!m.metadata.truncation);
            assert_eq!(m.answers.len(), 1);
            got += 1;
        }
        got
    });
    assert_eq!(answers, 3);
    assert_eq!(delta(&before, &daemon.stats(), Outcome::Hit), 3);
    daemon.stop();
}
