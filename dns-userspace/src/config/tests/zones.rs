//! `[[zone]]`: duplicates, zone-file problems, SOA and NS from the config.

use super::*;

#[test]
fn duplicate_zones_are_rejected() {
    let e = assert_fails_at(
        &with_zone("[[zone]]\norigin = \"EXAMPLE.test\"\nfile = \"example.test.zone\"\n"),
        5,
        "zone example.test. is configured twice",
    );
    assert!(e.message().contains("first at line 2"), "{e}");
}

#[test]
fn a_missing_zone_file_names_the_config_line() {
    let e = parse("[[zone]]\norigin = \"missing.test\"\nfile = \"missing.zone\"\n").unwrap_err();
    assert_eq!(e.file(), testdata().join("hotpool.toml"));
    assert_eq!((e.line(), e.column()), (Some(3), Some(8)), "{e}");
    assert!(e.message().contains("cannot read zone file"), "{e}");
    assert!(e.message().contains("missing.zone"), "{e}");
}

#[test]
fn zone_file_problems_name_the_zone_file() {
    let e = parse("[[zone]]\norigin = \"broken.test\"\nfile = \"bad-syntax.zone\"\n").unwrap_err();
    assert_eq!(e.file(), testdata().join("bad-syntax.zone"));
    assert_eq!(e.line(), Some(6), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "{}:6: A record www: \"192.0.2.300\" is not an IPv4 address",
            testdata().join("bad-syntax.zone").display()
        )),
        "{e}"
    );

    let e = parse("[[zone]]\norigin = \"example.test\"\nfile = \"outside.zone\"\n").unwrap_err();
    assert_eq!(e.file(), testdata().join("outside.zone"));
    assert_eq!(e.line(), Some(5), "{e}");
    assert!(
        e.message()
            .contains("www.example.org. A is outside the zone example.test."),
        "{e}"
    );

    let e = parse("[[zone]]\norigin = \"example.test\"\nfile = \"no-soa.zone\"\n").unwrap_err();
    assert_eq!(e.file(), testdata().join("no-soa.zone"));
    assert!(e.message().contains("has no SOA record"), "{e}");

    let e = parse("[[zone]]\norigin = \"example.test\"\nfile = \"no-ns.zone\"\n").unwrap_err();
    assert_eq!(e.file(), testdata().join("no-ns.zone"));
    assert!(e.message().contains("no NS records"), "{e}");
}

#[test]
fn soa_and_ns_from_the_config() {
    let cfg = parse(
        "[[zone]]\norigin = \"example.test\"\nfile = \"no-soa.zone\"\nsoa = { mname = \"ns1.example.test\", rname = \"hostmaster.example.test\", serial = 42 }\nns = [\"ns2.example.test\"]\nns_ttl = 600\n",
    )
    .unwrap();
    assert_eq!(cfg.zone_data()[0].serial(), 42);
    assert_eq!(cfg.zones[0].ns_ttl, 600);
    let soa = cfg.zones[0].soa.as_ref().unwrap();
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum, soa.ttl),
        (3600, 600, 604800, 60, 3600)
    );

    // An SOA in both places: the zone file's SOA line is named.
    let e = parse(
        "[[zone]]\norigin = \"example.test\"\nfile = \"example.test.zone\"\nsoa = { mname = \"ns1.example.test\", rname = \"h.example.test\" }\n",
    )
    .unwrap_err();
    assert_eq!(e.file(), testdata().join("example.test.zone"));
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(e.message().contains("keep one"), "{e}");

    assert_fails_at(
        "[[zone]]\norigin = \"example.test\"\nfile = \"no-soa.zone\"\nsoa = { mname = \"ns1.example.test\", rname = \"h.example.test\", ttl = 2147483648 }\n",
        4,
        "soa ttl 2147483648 is larger than 2147483647",
    );
    assert_fails_at(
        "[[zone]]\norigin = \"example.test\"\nfile = \"example.test.zone\"\nns_ttl = 60\n",
        4,
        "ns_ttl is set but ns is not",
    );
}
