use std::str::FromStr;

use super::*;

fn settings(origin: &str) -> ZoneSettings {
    ZoneSettings {
        origin: Name::from_str(origin).unwrap(),
        file: PathBuf::from("/nonexistent/test.zone"),
        soa: None,
        ns: vec![],
        ns_ttl: 3600,
    }
}

fn lower(s: &str) -> LowerName {
    LowerName::from(Name::from_str(s).unwrap())
}

const ZONE: &str = "\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1 hostmaster ( 2024010101 7200 3600 1209600 300 )
    IN NS  ns1
    IN NS  ns2.example.net.
ns1     IN A   192.0.2.53
www     IN A   192.0.2.1
www  60 IN A   192.0.2.2
a.b.c   IN TXT \"deep\"
*.wild  IN A   192.0.2.99
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.54
alias   IN CNAME www
";

#[test]
fn parses_records_relative_names_and_ttls() {
    let z = Zone::parse(&settings("example.test."), ZONE).unwrap();
    assert_eq!(z.serial(), 2024010101);
    let www = z.rrset(&lower("www.example.test."), RecordType::A).unwrap();
    assert_eq!(www.len(), 2);
    // RFC 2181 §5.2: the lowest TTL of the RRset wins.
    assert!(www.iter().all(|r| r.ttl == 60), "{www:?}");
    assert_eq!(
        z.rrset(&lower("example.test."), RecordType::NS)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(z.negative_soa().ttl, 300);
    assert_eq!(z.soa().ttl, 3600);
    assert_eq!(z.record_count(), 11);
}

#[test]
fn existence_and_empty_non_terminals() {
    let z = Zone::parse(&settings("example.test."), ZONE).unwrap();
    assert!(z.has_name_at_or_below(&lower("a.b.c.example.test.")));
    assert!(z.has_name_at_or_below(&lower("b.c.example.test.")));
    assert!(z.has_name_at_or_below(&lower("c.example.test.")));
    assert!(z.node(&lower("c.example.test.")).is_none());
    assert!(!z.has_name_at_or_below(&lower("d.example.test.")));
    assert!(!z.has_name_at_or_below(&lower("x.a.b.c.example.test.")));
    assert!(z.has_name_at_or_below(&lower("WILD.example.test.")));
}

#[test]
fn finds_the_topmost_cut() {
    let z = Zone::parse(&settings("example.test."), ZONE).unwrap();
    let (cut, ns) = z.find_cut(&lower("deep.ns.sub.example.test.")).unwrap();
    assert_eq!(cut.to_string(), "sub.example.test.");
    assert_eq!(ns.len(), 1);
    assert!(z.find_cut(&lower("sub.example.test.")).is_some());
    assert!(z.find_cut(&lower("example.test.")).is_none());
    assert!(z.find_cut(&lower("www.example.test.")).is_none());
    assert!(z.find_cut(&lower("other.test.")).is_none());
}

#[test]
fn syntax_errors_name_the_line() {
    let text = "$ORIGIN example.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n  NS ns1\n\nbad IN A 300.1.2.3\nok IN A 192.0.2.1\n";
    let e = Zone::parse(&settings("example.test."), text).unwrap_err();
    assert_eq!(e.line(), Some(6), "{e}");
    assert!(
        e.to_string().starts_with("/nonexistent/test.zone:6: "),
        "{e}"
    );
    assert!(e.message().ends_with("(in `bad IN A 300.1.2.3`)"), "{e}");
}

#[test]
fn multi_line_entries_are_located_at_their_first_line() {
    let text = "$ORIGIN example.test.\n$TTL 60\n@ SOA ns1 h ( 1 2 3\n 4 5 )\n  NS ns1\nx IN MX ( 10\n   not..a..name )\n";
    let e = Zone::parse(&settings("example.test."), text).unwrap_err();
    assert_eq!(e.line(), Some(6), "{e}");
}

#[test]
fn records_outside_the_origin_are_rejected_with_their_line() {
    let text = "@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\nwww.example.org. 60 A 192.0.2.1\n";
    let e = Zone::parse(&settings("example.test."), text).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(
        e.message().contains("outside the zone example.test."),
        "{e}"
    );
}

#[test]
fn cname_next_to_other_data_is_rejected() {
    let text =
        "@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\nx 60 A 192.0.2.1\ny 60 A 192.0.2.2\nx 60 CNAME y\n";
    let e = Zone::parse(&settings("example.test."), text).unwrap_err();
    assert_eq!(e.line(), Some(5), "{e}");
    assert!(e.message().contains("cannot coexist"), "{e}");
}

#[test]
fn soa_elsewhere_or_twice_is_rejected() {
    let text = "@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\nx 60 SOA ns1 h 1 2 3 4 5\n";
    let e = Zone::parse(&settings("example.test."), text).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.message().contains("must be at its apex"), "{e}");

    let text = "@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\n@ 60 SOA ns2 h 1 2 3 4 5\n";
    let e = Zone::parse(&settings("example.test."), text).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.message().contains("SOA"), "{e}");
}

#[test]
fn missing_soa_or_ns_is_rejected() {
    let e = Zone::parse(&settings("example.test."), "@ 60 NS ns1\n").unwrap_err();
    assert!(e.message().contains("has no SOA"), "{e}");
    let e = Zone::parse(&settings("example.test."), "@ 60 SOA ns1 h 1 2 3 4 5\n").unwrap_err();
    assert!(e.message().contains("no NS records"), "{e}");
}

#[test]
fn soa_and_ns_from_the_config() {
    let mut s = settings("Example.Test");
    s.soa = Some(SoaSettings {
        mname: Name::from_str("ns1.example.test.").unwrap(),
        rname: Name::from_str("hostmaster.example.test.").unwrap(),
        serial: 7,
        refresh: 3600,
        retry: 600,
        expire: 604800,
        minimum: 30,
        ttl: 900,
    });
    s.ns = vec![Name::from_str("ns1.example.test.").unwrap()];
    s.ns_ttl = 1800;
    let z = Zone::parse(&s, "www 60 A 192.0.2.1\n").unwrap();
    assert_eq!(z.serial(), 7);
    assert_eq!(z.negative_soa().ttl, 30);
    let ns = z.rrset(&lower("example.test."), RecordType::NS).unwrap();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].ttl, 1800);

    // An SOA in both places is an error that names the zone file's SOA line.
    let e = Zone::parse(&s, "www 60 A 192.0.2.1\n@ 60 SOA ns1 h 1 2 3 4 5\n").unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(e.message().contains("keep one"), "{e}");
}

#[test]
fn entry_starts_skip_parentheses_quotes_and_comments() {
    let text = "a ( 1\n 2 ) ; (\nb \"x (\" \n\nc\n";
    let starts: Vec<usize> = entry_starts(text).iter().map(|s| s.1).collect();
    assert_eq!(starts, vec![1, 3, 4, 5, 6]);
}

#[test]
fn edited_zone_files_never_panic() {
    let base = include_str!("../../../../examples/zones/example.test.zone");
    let s = settings("example.test.");
    // A deterministic xorshift, so a failure reproduces.
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b" \t\n();\"\\@$*.0123456789abcxyzAINSOAMXTXTCNAME:-";
    let mut rejected = 0;
    for _ in 0..500 {
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..1 + next() % 6 {
            let at = (next() as usize) % bytes.len();
            let c = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 => bytes[at] = c,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, c),
            }
        }
        if Zone::parse(&s, &String::from_utf8_lossy(&bytes)).is_err() {
            rejected += 1;
        }
    }
    // Most edits break something; the point is that none of them panics.
    assert!(rejected > 100, "{rejected}");
}

/// A scratch directory for zone files, removed on drop.
struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("hotpool-zone-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        Self(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HEAD: &str = "$ORIGIN example.test.\n$TTL 60\n@ SOA ns1 h 1 2 3 4 5\n  NS ns1\n";

fn load(main: PathBuf) -> Result<Zone, ZoneError> {
    Zone::load(&ZoneSettings {
        file: main,
        ..settings("example.test.")
    })
}

#[test]
fn included_files_are_read_relative_to_the_including_one() {
    let dir = Dir::new("include");
    dir.write("sub/inner.zone", "deep A 192.0.2.3\n");
    dir.write(
        "sub/hosts.zone",
        "www A 192.0.2.1\n$INCLUDE inner.zone\nmail A 192.0.2.2",
    );
    let main = dir.write(
        "main.zone",
        &format!("{HEAD}$INCLUDE sub/hosts.zone ; hosts\nlast A 192.0.2.9\n"),
    );
    let z = load(main).unwrap();
    for name in ["www", "mail", "deep", "last"] {
        assert!(
            z.rrset(&lower(&format!("{name}.example.test.")), RecordType::A)
                .is_some(),
            "{name}"
        );
    }
}

#[test]
fn an_error_inside_an_included_file_names_that_file_and_line() {
    let dir = Dir::new("include-error");
    let hosts = dir.write("sub/hosts.zone", "www A 192.0.2.1\n\nbad A 192.0.2.300\n");
    let main = dir.write(
        "main.zone",
        &format!("{HEAD}a A 192.0.2.7\n$INCLUDE sub/hosts.zone\nz A 192.0.2.8\n"),
    );
    let e = load(main.clone()).unwrap_err();
    assert_eq!(e.file(), hosts, "{e}");
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(
        e.message()
            .contains("\"192.0.2.300\" is not an IPv4 address"),
        "{e}"
    );
    // A record outside the zone in an included file: also there.
    let hosts = dir.write(
        "sub/hosts.zone",
        "www A 192.0.2.1\nwww.example.org. A 192.0.2.1\n",
    );
    let e = load(main.clone()).unwrap_err();
    assert_eq!((e.file(), e.line()), (hosts.as_path(), Some(2)), "{e}");
    // An error after the include is in the main file, at its own line.
    dir.write("sub/hosts.zone", "www A 192.0.2.1\n");
    let bad_after = dir.write(
        "main.zone",
        &format!("{HEAD}$INCLUDE sub/hosts.zone\nz A 300.0.0.1\n"),
    );
    let e = load(bad_after.clone()).unwrap_err();
    assert_eq!((e.file(), e.line()), (bad_after.as_path(), Some(6)), "{e}");
}

#[test]
fn a_missing_or_looping_include_names_the_include_line() {
    let dir = Dir::new("include-missing");
    let main = dir.write("main.zone", &format!("{HEAD}$INCLUDE nope.zone\n"));
    let e = load(main.clone()).unwrap_err();
    assert_eq!((e.file(), e.line()), (main.as_path(), Some(5)), "{e}");
    assert!(
        e.message().contains("cannot read") && e.message().contains("nope.zone"),
        "{e}"
    );
    assert!(!e.is_unreadable(), "the zone file itself was read");
    let main = dir.write("main.zone", &format!("{HEAD}$INCLUDE main.zone\n"));
    let e = load(main).unwrap_err();
    assert!(e.message().contains("includes itself"), "{e}");
    let main = dir.write("main.zone", &format!("{HEAD}$INCLUDE a.zone b.example.\n"));
    let e = load(main).unwrap_err();
    assert!(e.message().contains("origin after the file name"), "{e}");
    // The zone file itself missing: unreadable, for the config to name its line.
    let e = load(dir.0.join("absent.zone")).unwrap_err();
    assert!(e.is_unreadable());
}
