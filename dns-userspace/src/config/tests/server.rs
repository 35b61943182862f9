//! `[server]`, `[xdp]`, `[events]`, `[probes]`: defaults, values and their errors.

use super::*;

#[test]
fn defaults() {
    let cfg = parse("").unwrap();
    assert_eq!(cfg.server, ServerSettings::default());
    assert_eq!(
        cfg.server.listen,
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        ]
    );
    assert_eq!(cfg.server.port, 53);
    assert_eq!(cfg.server.edns_udp_size, 1232);
    assert_eq!(cfg.server.tcp_idle_timeout, Duration::from_secs(10));
    // Derived from the open-file limit when the daemon starts (dns::limits).
    assert_eq!(cfg.server.tcp_max_connections, None);
    assert_eq!(cfg.server.tcp_max_connections_per_client, 32);
    assert_eq!(cfg.server.tcp_message_timeout, Duration::from_secs(3));
    assert_eq!(cfg.server.tcp_max_lifetime, Duration::from_secs(120));
    assert_eq!(cfg.server.udp_workers, None);
    assert_eq!(cfg.server.answer_cache_size, 4096);
    assert_eq!(cfg.server.udp_receive_buffer, 0, "the kernel's default");
    assert!(
        !cfg.server.rrl.enabled(),
        "rate limiting is off unless configured"
    );
    assert_eq!(cfg.xdp.pin_path, PathBuf::from("/sys/fs/bpf/hotpool"));
    assert_eq!(cfg.api.listen, None);
    assert_eq!(cfg.xdp, XdpSettings::default());
    assert!(cfg.zones.is_empty() && cfg.pools.is_empty());

    let cfg = parse(&with_zone(
        "[[pool]]\nname = \"www.example.test\"\ntype = \"a\"\nendpoints = [{ address = \"192.0.2.1\" }]\n",
    ))
    .unwrap();
    assert_eq!(cfg.pools[0].ttl, 30);
    assert_eq!(cfg.pools[0].endpoints[0].weight, 1);
    assert_eq!(cfg.zones[0].file, testdata().join("example.test.zone"));
}

#[test]
fn server_values() {
    let cfg = parse(
        "[server]\nlisten = [\"127.0.0.1\", \"::1\"]\nport = 5353\nedns_udp_size = 4096\ntcp_idle_timeout = \"1m 30s\"\ntcp_max_connections = 7\npin_path = \"/sys/fs/bpf/x\"\nmetrics_listen = \"[::1]:9153\"\n[xdp]\ninterfaces = [\"eth0\", \"veth-a\"]\nmode = \"generic\"\n",
    )
    .unwrap();
    assert_eq!(cfg.server.port, 5353);
    assert_eq!(cfg.server.edns_udp_size, 4096);
    assert_eq!(cfg.server.tcp_idle_timeout, Duration::from_secs(90));
    assert_eq!(cfg.server.tcp_max_connections, Some(7));
    assert_eq!(cfg.xdp.pin_path, PathBuf::from("/sys/fs/bpf/x"));
    assert_eq!(
        cfg.api.listen,
        Some(SocketAddr::from_str("[::1]:9153").unwrap())
    );
    assert_eq!(
        cfg.xdp.interfaces,
        vec!["eth0".to_string(), "veth-a".to_string()]
    );
    assert_eq!(cfg.xdp.mode, AttachMode::Generic);
}

#[test]
fn unknown_keys_are_rejected() {
    assert_fails_at(
        "[server]\nport = 53\nprot = 54\n",
        3,
        "unknown field `prot`",
    );
    assert_fails_at("[servr]\n", 1, "unknown field `servr`");
    assert_fails_at(
        &with_zone(
            "[[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\nendpoints = [{ address = \"192.0.2.1\", wieght = 2 }]\n",
        ),
        7,
        "unknown field `wieght`",
    );
}

#[test]
fn bad_types_are_rejected() {
    assert_fails_at("[server]\nport = \"53\"\n", 2, "invalid type");
    assert_fails_at("[server]\nport = 70000\n", 2, "u16");
    assert_fails_at("[server]\nlisten = \"::1\"\n", 2, "invalid type");
    assert_fails_at("[xdp]\nmode = \"fast\"\n", 2, "unknown variant `fast`");
    assert_fails_at(
        "[server]\nlisten = [\"::1\", \"localhost\"]\n",
        2,
        "invalid listen address \"localhost\"",
    );
    assert_fails_at(
        "[server]\ntcp_idle_timeout = \"10 parsecs\"\n",
        2,
        "invalid tcp_idle_timeout",
    );
    assert_fails_at("[server]\npin_path = \"bpf/hotpool\"\n", 2, "absolute");
}

/// toml has no message for some errors (found by fuzzing the config parser: `hotpool
/// check` printed `hotpool.toml:1:9: ` and nothing else).
#[test]
fn syntax_errors_always_say_what_is_wrong() {
    assert_fails_at(
        "# a comm\u{2}nt\n[server]\n",
        1,
        "control character U+0002: TOML allows none but tab, in comments too",
    );
    assert_fails_at("[server]\nport = 53 \u{7f}\n", 2, "expected newline");
}

#[test]
fn port_and_edns_size_are_checked() {
    assert_fails_at(
        "[server]\nport = 0\n",
        2,
        "port must be between 1 and 65535",
    );
    assert_fails_at(
        "[server]\nedns_udp_size = 511\n",
        2,
        "edns_udp_size 511 is out of range 512..=4096",
    );
    assert_fails_at("[server]\nedns_udp_size = 4097\n", 2, "out of range");
    assert_fails_at("[server]\ntcp_max_connections = 0\n", 2, "at least 1");
}

#[test]
fn interface_names_are_checked() {
    assert_fails_at("[xdp]\ninterfaces = [\"\"]\n", 2, "interface name is empty");
    assert_fails_at(
        "[xdp]\ninterfaces = [\"lo\", \"a-very-long-ifname\"]\n",
        2,
        "longer than 15 bytes (IFNAMSIZ)",
    );
    assert_fails_at(
        "[xdp]\ninterfaces = [\"eth/0\"]\n",
        2,
        "not a valid interface name",
    );
    assert_fails_at("[xdp]\ninterfaces = [\"lo\", \"lo\"]\n", 2, "given twice");
}

#[test]
fn staleness_defaults_values_and_errors() {
    use crate::datapath::heartbeat::{OnStale, Staleness};
    let cfg = parse("").unwrap();
    assert_eq!(
        cfg.xdp.staleness,
        Staleness {
            after: Some(Duration::from_secs(30)),
            on_stale: OnStale::Serve
        }
    );
    let cfg = parse("[xdp]\nstale = \"2m 30s\"\non_stale = \"pass\"\n").unwrap();
    assert_eq!(cfg.xdp.staleness.after, Some(Duration::from_secs(150)));
    assert_eq!(cfg.xdp.staleness.on_stale, OnStale::Pass);
    for off in ["off", "0"] {
        let cfg = parse(&format!("[xdp]\nstale = \"{off}\"\n")).unwrap();
        assert_eq!(cfg.xdp.staleness.after, None, "{off}");
    }
    assert_fails_at("[xdp]\nstale = \"soon\"\n", 2, "invalid stale \"soon\"");
    assert_fails_at("[xdp]\nstale = \"1s\"\n", 2, "must be between 2s and 1day");
    assert_fails_at(
        "[xdp]\nstale = \"2days\"\n",
        2,
        "must be between 2s and 1day",
    );
    assert_fails_at(
        "[xdp]\non_stale = \"drop\"\n",
        2,
        "unknown variant `drop`, expected `serve` or `pass`",
    );
}

#[test]
fn load_names_a_missing_config_file() {
    let e = Config::load(&testdata().join("nonexistent.toml")).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read config file",
            testdata().join("nonexistent.toml").display()
        )),
        "{e}"
    );
}

#[test]
fn events_and_probes_sections() {
    let cfg = parse("[events]\nlog = \"events.jsonl\"\n[probes]\nmax_concurrent = 3\n").unwrap();
    assert_eq!(cfg.events.log, Some(testdata().join("events.jsonl")));
    assert_eq!(cfg.probes.max_concurrent, Some(3));
    let cfg = parse("[events]\nlog = \"/var/lib/hotpool/events.jsonl\"\n").unwrap();
    assert_eq!(
        cfg.events.log,
        Some(PathBuf::from("/var/lib/hotpool/events.jsonl"))
    );
    assert_fails_at("[events]\nlog = \"\"\n", 2, "events log path is empty");
    assert_fails_at("[events]\nlgo = \"x\"\n", 2, "unknown field `lgo`");
    assert_fails_at(
        "[probes]\nmax_concurrent = 0\n",
        2,
        "max_concurrent must be at least 1",
    );
    assert_fails_at("[probes]\nmax_concurrent = -4\n", 2, "invalid value");
    assert_fails_at(
        "[probes]\ninterval = \"1s\"\n",
        2,
        "unknown field `interval`",
    );
}

#[test]
fn server_limits_and_workers() {
    let cfg = parse(
        "[server]\nudp_workers = 3\nanswer_cache_size = 0\nudp_receive_buffer = 1048576\ntcp_message_timeout = \"500ms\"\ntcp_max_lifetime = \"5m\"\ntcp_max_connections_per_client = 4\n",
    )
    .unwrap();
    assert_eq!(cfg.server.udp_workers, Some(3));
    assert_eq!(cfg.server.workers(), 3);
    assert_eq!(cfg.server.answer_cache_size, 0);
    assert_eq!(cfg.server.udp_receive_buffer, 1 << 20);
    assert_eq!(cfg.server.tcp_message_timeout, Duration::from_millis(500));
    assert_eq!(cfg.server.tcp_max_lifetime, Duration::from_secs(300));
    assert_eq!(cfg.server.tcp_max_connections_per_client, 4);
    assert!(
        cfg.summary()
            .contains("udp: 3 workers, answer cache 0 per worker, receive buffer 1048576 octets; tcp: 4 per client")
    );

    assert_fails_at(
        "[server]\nudp_workers = 0\n",
        2,
        "udp_workers must be between 1 and 256",
    );
    assert_fails_at("[server]\nudp_workers = 1000\n", 2, "between 1 and 256");
    assert_fails_at(
        "[server]\nudp_receive_buffer = 100\n",
        2,
        "udp_receive_buffer must be 0 (the kernel's default) or between 4096",
    );
    assert_fails_at(
        "[server]\nanswer_cache_size = 99999999\n",
        2,
        "answer_cache_size must be at most",
    );
    assert_fails_at(
        "[server]\ntcp_message_timeout = \"0s\"\n",
        2,
        "tcp_message_timeout must be longer than 0s",
    );
    assert_fails_at(
        "[server]\ntcp_max_lifetime = \"soon\"\n",
        2,
        "invalid tcp_max_lifetime",
    );
    assert_fails_at(
        "[server]\ntcp_max_connections_per_client = 0\n",
        2,
        "tcp_max_connections_per_client must be at least 1",
    );
}

#[test]
fn rrl_section() {
    let cfg = parse(
        "[rrl]\nresponses_per_second = 20\nwindow = 5\nslip = 0\nipv4_prefix_length = 32\nipv6_prefix_length = 64\nexempt_clients = [\"10.0.0.0/8\", \"2001:db8::1\"]\ntable_size = 1000\n",
    )
    .unwrap();
    let r = &cfg.server.rrl;
    assert!(r.enabled());
    assert_eq!(
        (
            r.responses_per_second,
            r.window,
            r.slip,
            r.ipv4_prefix_length,
            r.ipv6_prefix_length,
            r.table_size
        ),
        (20, 5, 0, 32, 64, 1000)
    );
    assert_eq!(r.exempt_clients.len(), 2);
    assert!(r.exempt_clients[0].contains("10.2.3.4".parse().unwrap()));
    assert!(
        cfg.summary()
            .contains("rrl: 20 answers/s per /32 (IPv4) and /64 (IPv6) network")
    );
    let defaults = parse("[rrl]\nresponses_per_second = 5\n")
        .unwrap()
        .server
        .rrl;
    assert_eq!(
        (
            defaults.window,
            defaults.slip,
            defaults.ipv4_prefix_length,
            defaults.ipv6_prefix_length
        ),
        (1, 2, 24, 56)
    );
    assert!(parse("").unwrap().summary().contains("rrl: off"));

    assert_fails_at(
        "[rrl]\nwindow = 0\n",
        2,
        "window must be between 1 and 3600 seconds",
    );
    assert_fails_at("[rrl]\nslip = 11\n", 2, "slip must be between 0");
    assert_fails_at("[rrl]\nipv4_prefix_length = 33\n", 2, "between 0 and 32");
    assert_fails_at("[rrl]\nipv6_prefix_length = 129\n", 2, "between 0 and 128");
    assert_fails_at(
        "[rrl]\nexempt_clients = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n",
        2,
        "exempt_clients: \"10.0.0.0/40\": prefix length 40 is longer than the address",
    );
    assert_fails_at(
        "[rrl]\nexempt_clients = [\"example.net\"]\n",
        2,
        "is not an address or network",
    );
    assert_fails_at(
        "[rrl]\ntable_size = 0\n",
        2,
        "table_size must be at least 1",
    );
    assert_fails_at("[rrl]\nrate = 5\n", 2, "unknown field `rate`");
    let many = (0..=dns_common::MAX_RRL_EXEMPT)
        .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
        .collect::<Vec<_>>()
        .join(", ");
    assert_fails_at(
        &format!("[rrl]\nexempt_clients = [{many}]\n"),
        2,
        "exempt_clients: at most 1024 networks",
    );
}
