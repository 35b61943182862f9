//! Geo steering end to end (issue 8), over a veth in native and generic XDP: clients on
//! several networks, and one client asking with EDNS Client Subnet (our own queries and
//! `dig +subnet`), get their region's answer from the XDP program (its counters prove the
//! kernel answered, the echoed option carries the matched prefix as scope), and `fastest`
//! in one region follows real-user samples posted to `POST /api/rum` while the other
//! regions keep their answers.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use dns_common::Outcome;
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{
        Name, RecordType,
        rdata::opt::{EdnsCode, EdnsOption},
    },
    serialize::binary::{BinDecodable, BinEncodable},
};
use hotpool::datapath::ebpf::PassProgram;
use hotpool_tests::{
    client,
    daemon::{API_TOKEN, Daemon, answered, delta},
    netns::Link,
    require_root,
};

const POOL: &str = "www.example.test.";

/// The client networks of the test: `europe` and `americas` are second addresses of the
/// client's veth; the link's own address is in no region (`default`).
struct Nets {
    europe: Ipv4Addr,
    americas: Ipv4Addr,
}

fn config(link: &Link, nets: &Nets, mode: &str) -> String {
    let net = |a: Ipv4Addr| {
        let o = a.octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    };
    format!(
        r#"[server]
listen = ["{v4}"]
pin_path = "{{pin}}"

[api]
listen = "{v4}:9153"
token_file = "{{dir}}/api.token"

[xdp]
interfaces = ["{iface}"]
mode = "{mode}"

[regions.europe]
networks = ["{europe}"]

[regions.americas]
networks = ["{americas}"]

[[zone]]
origin = "example.test."
file = "zones/example.test.zone"

[[pool]]
name = "{POOL}"
type = "A"
ttl = 30
policy = "geo"
endpoints = [{{ address = "192.0.2.1" }}, {{ address = "192.0.2.2" }}]

[pool.regions.europe]
policy = "fastest"
latency = "rum"
endpoints = ["192.0.2.1", "192.0.2.2"]

[pool.regions.americas]
policy = "failover"
endpoints = ["192.0.2.2", "192.0.2.1"]

[pool.regions.default]
policy = "failover"
endpoints = ["192.0.2.1", "192.0.2.2"]
"#,
        v4 = link.server_v4,
        iface = link.server_if,
        europe = net(nets.europe),
        americas = net(nets.americas),
    )
}

/// One query for the pool from `from`, with an ECS option for `subnet` when given; the
/// answer's addresses and the echoed option's (source, scope).
fn ask(
    server: SocketAddr,
    from: Ipv4Addr,
    subnet: Option<(Ipv4Addr, u8)>,
) -> (Vec<Ipv4Addr>, Option<(u8, u8)>) {
    let mut m = Message::query();
    m.metadata.id = rand_id(from);
    m.add_query(Query::query(Name::from_ascii(POOL).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    if let Some((addr, source)) = subnet {
        // FAMILY 1, SOURCE, SCOPE 0, the address's first ceil(source/8) octets.
        let mut data = vec![0, 1, source, 0];
        data.extend_from_slice(&addr.octets()[..usize::from(source).div_ceil(8)]);
        e.options_mut().insert(EdnsOption::Unknown(8, data));
    }
    m.set_edns(e);
    let sock = UdpSocket::bind((from, 0)).expect("binding the client's socket");
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&m.to_bytes().unwrap(), server).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    let reply = Message::from_bytes(&buf[..n]).expect("the reply decodes");
    assert_eq!(reply.metadata.id, m.metadata.id);
    let addrs = client::a_records(&reply);
    let ecs = reply.edns.as_ref().and_then(|e| {
        e.options().get(EdnsCode::Subnet).map(|o| match o {
            EdnsOption::Subnet(s) => (s.source_prefix(), s.scope_prefix()),
            other => panic!("unexpected option {other:?}"),
        })
    });
    (addrs, ecs)
}

/// A message id that differs per client (the kernel echoes it; a mix-up would show).
fn rand_id(from: Ipv4Addr) -> u16 {
    let o = from.octets();
    u16::from_be_bytes([o[2], o[3]]) ^ 0x5a5a
}

/// POSTs `body` to the API in the server's namespace; (status, body).
fn post(link: &Link, path: &str, body: String) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr = SocketAddr::new(IpAddr::V4(link.server_v4), 9153);
    let path = path.to_string();
    link.server.run(move || {
        let mut c = std::net::TcpStream::connect(addr).expect("API connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n\
             {body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = resp.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
        (code, body)
    })
}

fn scenario(mode: &str) {
    require_root();
    let link = Link::new();
    let n = link.client_v4.octets()[2];
    let nets = Nets {
        europe: Ipv4Addr::new(10, 81, n, 2),
        americas: Ipv4Addr::new(10, 82, n, 2),
    };
    for a in [nets.europe, nets.americas] {
        link.client.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{a}/24"),
            "dev",
            &link.client_if,
        ]);
    }
    // Native XDP on a veth delivers XDP_TX frames only if the peer runs XDP too.
    let _peer = (mode == "native").then(|| {
        let iface = link.client_if.clone();
        link.client
            .run(move || PassProgram::attach(&iface, XdpMode::Driver).expect("pass program"))
    });
    let daemon = Daemon::start(&link, &config(&link, &nets, mode), true);
    let server = SocketAddr::new(IpAddr::V4(link.server_v4), 53);
    let (one, two) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (default_client, europe, americas) = (link.client_v4, nets.europe, nets.americas);

    // By source address: each network its region's answer, no ECS echoed, from the kernel.
    let before = daemon.stats();
    let got = link
        .client
        .run(move || [default_client, europe, americas].map(|from| ask(server, from, None)));
    let after = daemon.stats();
    assert_eq!(got[0], (vec![one], None), "default region (failover 1, 2)");
    assert_eq!(
        got[1],
        (vec![one], None),
        "europe (fastest, nothing measured)"
    );
    assert_eq!(got[2], (vec![two], None), "americas (failover 2, 1)");
    assert_eq!(answered(&before, &after), 3, "all three answered by XDP");

    // By ECS from the default region's client: the subnet decides, the scope is the
    // matched region network's length (/24), the source is echoed.
    let before = daemon.stats();
    let got = link.client.run(move || {
        [
            ask(server, default_client, Some((americas, 24))),
            ask(server, default_client, Some((europe, 24))),
            ask(
                server,
                default_client,
                Some((Ipv4Addr::new(10, 82, n, 0), 24)),
            ),
        ]
    });
    let after = daemon.stats();
    assert_eq!(got[0], (vec![two], Some((24, 24))), "ECS in americas");
    assert_eq!(got[1], (vec![one], Some((24, 24))), "ECS in europe");
    assert_eq!(got[2].0, vec![two]);
    assert_eq!(
        delta(&before, &after, Outcome::EcsHit),
        3,
        "ECS hits in XDP"
    );
    assert_eq!(answered(&before, &after), 3);

    // dig +subnet from the same client: the americas answer, the option echoed with scope.
    let before = daemon.stats();
    let out = link.client.exec_ok(&[
        "dig",
        &format!("@{}", link.server_v4),
        &format!("+subnet={}/24", Ipv4Addr::new(10, 82, n, 0)),
        "+norecurse",
        // dig sends a cookie beside the subnet by default: the kernel passes queries
        // with other options to the daemon (which answers them alike).
        "+nocookie",
        "+tries=1",
        "+time=2",
        POOL,
        "A",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("CLIENT-SUBNET: 10.82.{n}.0/24/24")),
        "dig shows the echoed option with scope 24:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(POOL) && l.trim_end().ends_with("192.0.2.2")),
        "dig gets the americas answer:\n{text}"
    );
    assert_eq!(
        delta(&before, &daemon.stats(), Outcome::EcsHit),
        1,
        "{text}"
    );

    // RUM samples say 192.0.2.2 is faster from europe: europe's fastest moves to it, the
    // other regions keep theirs.
    let (code, body) = post(
        &link,
        "/api/rum",
        r#"{"ttl": "5m", "samples": [
            {"region": "europe", "endpoint": "192.0.2.1", "latency_ms": 80},
            {"region": "europe", "endpoint": "192.0.2.2", "latency_ms": 10}]}"#
            .to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = link.client.run(move || ask(server, europe, None));
        if got.0 == vec![two] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "europe still answers {got:?} after the RUM samples"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = daemon.stats();
    let got = link.client.run(move || {
        [
            ask(server, default_client, None),
            ask(server, europe, None),
            ask(server, americas, None),
            ask(server, default_client, Some((europe, 24))),
        ]
    });
    let after = daemon.stats();
    assert_eq!(got[0].0, vec![one], "default region unchanged");
    assert_eq!(got[1].0, vec![two], "europe follows the samples");
    assert_eq!(got[2].0, vec![two], "americas unchanged");
    assert_eq!(got[3], (vec![two], Some((24, 24))), "europe by ECS too");
    assert_eq!(answered(&before, &after), 4, "answered by XDP");
    daemon.stop();
}

#[test]
fn regions_and_ecs_are_answered_by_the_kernel_in_generic_mode() {
    scenario("generic");
}

#[test]
fn regions_and_ecs_are_answered_by_the_kernel_in_native_mode() {
    scenario("native");
}
