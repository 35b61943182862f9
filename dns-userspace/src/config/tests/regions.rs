//! `[regions]` (inline networks, list files, a generated MaxMind database) and `geo` pools.

use super::*;
use crate::{
    geo::{
        RegionId,
        mmdb_writer::{GeoRecord, MmdbWriter},
        source::PrefixCounts,
    },
    steering::geo::{LatencySource, RegionEndpoint},
};

/// A directory of its own for a test's config, list files and database.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("hotpool-regions-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        Self(d)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("writing a test file");
        p
    }

    /// `text` (after a zone pointing at the test data) parsed as `hotpool.toml` here.
    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        let zone = testdata().join("example.test.zone");
        let full = format!(
            "[[zone]]\norigin = \"example.test.\"\nfile = \"{}\"\n{text}",
            zone.display()
        );
        Config::parse(&full, &self.0.join("hotpool.toml"))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn test_database() -> Vec<u8> {
    let mut w = MmdbWriter::new("Test-Country");
    for (net, country, continent) in [
        ("198.51.100.0/25", "DE", "EU"),
        ("198.51.100.128/25", "PT", "EU"),
        ("203.0.113.0/24", "BR", "SA"),
        ("2001:db8:100::/40", "US", "NA"),
        ("2001:db8:200::/40", "JP", "AS"),
    ] {
        w.insert(
            net.parse().unwrap(),
            &GeoRecord::country(country, continent),
        );
    }
    w.finish()
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn regions_from_inline_lists_files_and_a_database() {
    let dir = Dir::new("ok");
    dir.write("geo.mmdb", &test_database());
    // 203.0.113.0/24 is BR (americas) in the database; the file moves it to europe.
    dir.write(
        "europe-extra.txt",
        b"# offices\n192.0.2.0/25\n2001:db8:ffff::/48  # lab\n203.0.113.0/24\n",
    );
    let cfg = dir
        .parse(
            "[regions]\n\
             database = \"geo.mmdb\"\n\
             [regions.europe]\n\
             continents = [\"EU\"]\n\
             networks = [\"10.1.0.0/16\"]\n\
             files = [\"europe-extra.txt\"]\n\
             [regions.iberia]\n\
             countries = [\"pt\", \"ES\"]\n\
             [regions.americas]\n\
             continents = [\"NA\", \"SA\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let r = &cfg.regions;
    let names: Vec<&str> = r.iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["default", "europe", "iberia", "americas"]);
    let (europe, iberia, americas) = (RegionId(1), RegionId(2), RegionId(3));
    let mut got = r.networks.clone();
    got.sort();
    let mut want = vec![
        (net("10.1.0.0/16"), europe),
        (net("192.0.2.0/25"), europe),
        (net("2001:db8:ffff::/48"), europe),
        (net("198.51.100.0/25"), europe),
        // Portugal is listed in iberia, its continent in europe: the country wins.
        (net("198.51.100.128/25"), iberia),
        (net("203.0.113.0/24"), europe),
        (net("2001:db8:100::/40"), americas),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        cfg.region_prefixes,
        [
            PrefixCounts::default(),
            PrefixCounts {
                inline: 1,
                files: 3,
                database: 1
            },
            PrefixCounts {
                database: 1,
                ..PrefixCounts::default()
            },
            PrefixCounts {
                database: 1,
                ..PrefixCounts::default()
            },
        ]
    );
    let (path, db) = cfg.region_database.as_ref().expect("a database");
    assert!(path.ends_with("geo.mmdb"));
    assert_eq!((db.total, db.mapped), (5, 4));
    let summary = cfg.summary();
    for line in [
        "regions: 4 (default included), 7 prefixes; database",
        "region europe: 5 prefixes (1 inline, 3 from files, 1 from the database)",
        "region iberia: 1 prefixes (0 inline, 0 from files, 1 from the database)",
        "region default: every other client",
    ] {
        assert!(summary.contains(line), "{line:?} not in:\n{summary}");
    }
}

#[test]
fn no_regions_section_is_only_the_default_region() {
    let cfg = parse(&pool("www.example.test.", "A", TWO)).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.regions.is_empty());
    assert!(cfg.regions.networks.is_empty());
}

#[test]
fn region_errors_name_line_and_column() {
    let with = |rest: &str| with_zone(&format!("[regions]\n{rest}"));
    let e = assert_fails_at(
        &with("[regions.europe]\nnetworks = [\"10.0.0.0/8\", \"192.0.2.1/24\"]\n"),
        6,
        "region europe: network \"192.0.2.1/24\" has host bits set beyond its /24: write 192.0.2.0/24",
    );
    assert_eq!(e.column(), Some(27));
    assert_fails_at(
        &with("[regions.europe]\nnetworks = [\"192.0.2.0/33\"]\n"),
        6,
        "invalid network \"192.0.2.0/33\"",
    );
    assert_fails_at(
        &with("[regions.default]\nnetworks = [\"192.0.2.0/24\"]\n"),
        5,
        "the region name \"default\" is reserved",
    );
    assert_fails_at(
        &with("[regions.europe]\nnetworks = []\n[regions.Europe]\nnetworks = []\n"),
        7,
        "region \"Europe\" is configured twice (as \"europe\")",
    );
    // TOML itself refuses a table given twice.
    assert_fails_at(
        &with("[regions.europe]\nnetworks = []\n[regions.europe]\nnetworks = []\n"),
        7,
        "duplicate key",
    );
    assert_fails_at(
        &with("[regions.\"eu rope\"]\nnetworks = []\n"),
        5,
        "invalid region name \"eu rope\"",
    );
    assert_fails_at(
        &with("[regions.europe]\nnetwork = []\n"),
        6,
        "unknown field `network`",
    );
    assert_fails_at(
        &with("database = \"x.mmdb\"\n[regions.europe]\ncountries = [\"DEU\"]\n"),
        7,
        "country \"DEU\" is not a two-letter ISO 3166-1 code",
    );
    assert_fails_at(
        &with("database = \"x.mmdb\"\n[regions.europe]\ncontinents = [\"EUR\"]\n"),
        7,
        "continent \"EUR\" is not one of AF, AN, AS, EU, NA, OC, SA",
    );
    assert_fails_at(
        &with(
            "database = \"x.mmdb\"\n[regions.europe]\ncountries = [\"PT\"]\n[regions.iberia]\ncountries = [\"ES\", \"pt\"]\n",
        ),
        9,
        "country PT is listed in region europe (line 7) and in region iberia",
    );
    assert_fails_at(
        &with("[regions.europe]\ncontinents = [\"EU\"]\n"),
        6,
        "countries and continents need a MaxMind-format database",
    );
    assert_fails_at(
        &with("database = \"x.mmdb\"\n[regions.europe]\nnetworks = [\"192.0.2.0/24\"]\n"),
        5,
        "the database is not used",
    );
    assert_fails_at(
        &with("database = \"missing.mmdb\"\n[regions.europe]\ncontinents = [\"EU\"]\n"),
        5,
        "cannot read the region database",
    );
    assert_fails_at(
        &with("[regions.europe]\nfiles = [\"missing.txt\"]\n"),
        6,
        "region europe: cannot read network list",
    );
    assert_fails_at(
        &with(
            "[regions.europe]\nnetworks = [\"10.0.0.0/8\"]\n[regions.asia]\nnetworks = [\"10.0.0.0/8\"]\n",
        ),
        8,
        "region asia: network 10.0.0.0/8 is also in region europe (line 6); a network belongs to one region",
    );
    // Given twice for one region: counted once.
    let cfg = parse(&with(
        "[regions.europe]\nnetworks = [\"10.0.0.0/8\", \"10.0.0.0/8\"]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.regions.networks.len(), 1);
    // An empty [regions] is no region but the default.
    assert!(parse(&with("")).expect("empty regions").regions.is_empty());
}

#[test]
fn list_file_and_database_errors_name_their_file() {
    let dir = Dir::new("errors");
    let list = dir.write("bad.txt", b"192.0.2.0/24\n\n  10.1.2.3/8 # typo\n");
    let e = dir
        .parse("[regions.europe]\nfiles = [\"bad.txt\"]\n")
        .expect_err("host bits in a list file");
    assert_eq!(e.file(), list, "{e}");
    assert_eq!((e.line(), e.column()), (Some(3), Some(3)), "{e}");
    assert!(
        e.message()
            .contains("region europe: network \"10.1.2.3/8\" has host bits set beyond its /8: write 10.0.0.0/8"),
        "{e}"
    );

    let good = test_database();
    dir.write("cut.mmdb", &good[..good.len() / 2]);
    let e = dir
        .parse("[regions]\ndatabase = \"cut.mmdb\"\n[regions.europe]\ncontinents = [\"EU\"]\n")
        .expect_err("a corrupt database");
    assert_eq!(e.line(), Some(5), "{e}");
    assert!(
        e.message()
            .contains("is not a usable MaxMind-format database"),
        "{e}"
    );
}

/// A geo pool `cdn.example.test.` of two CNAME endpoints, regions europe and americas,
/// with `regions` as its region tables (from line 12 on).
fn geo_pool(regions: &str) -> String {
    with_zone(&format!(
        "[regions.europe]\n\
         networks = [\"192.0.2.0/25\"]\n\
         [regions.americas]\n\
         networks = [\"192.0.2.128/25\"]\n\
         [[pool]]\n\
         name = \"cdn.example.test.\"\n\
         type = \"CNAME\"\n\
         policy = \"geo\"\n\
         endpoints = [{{ address = \"a.cdn-one.example.\", weight = 3 }}, {{ address = \"b.cdn-two.example.\" }}]\n\
         {regions}"
    ))
}

const REGIONS_OK: &str = "[pool.regions.americas]\n\
     policy = \"failover\"\n\
     endpoints = [\"b.cdn-two.example.\", \"a.cdn-one.example\"]\n\
     [pool.regions.europe]\n\
     policy = \"fastest\"\n\
     hysteresis = 20\n\
     latency = \"blend\"\n\
     endpoints = [\"a.cdn-one.example.\", \"b.cdn-two.example.\"]\n\
     [pool.regions.default]\n\
     policy = \"weighted\"\n\
     endpoints = [{ address = \"a.cdn-one.example.\", weight = 9 }, \"b.cdn-two.example.\"]\n";

#[test]
fn a_geo_pool_has_a_policy_per_region() {
    let cfg = parse(&geo_pool(REGIONS_OK)).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.pools[0];
    assert!(p.is_geo());
    let regions: Vec<(&str, RegionId, &str, LatencySource)> = p
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.region, r.policy.name(), r.latency))
        .collect();
    assert_eq!(
        regions,
        [
            ("default", RegionId(0), "weighted", LatencySource::Probes),
            ("europe", RegionId(1), "fastest", LatencySource::Blend),
            ("americas", RegionId(2), "failover", LatencySource::Probes),
        ]
    );
    // The pool's own policy is its default region's.
    assert_eq!(p.policy, Policy::Weighted);
    // Weights default to the pool endpoint's; priorities to the region's order.
    assert_eq!(
        p.regions[0].endpoints,
        [
            RegionEndpoint {
                index: 0,
                weight: 9,
                priority: 0
            },
            RegionEndpoint {
                index: 1,
                weight: 1,
                priority: 1
            }
        ]
    );
    assert_eq!(
        p.regions[2].endpoints,
        [
            RegionEndpoint {
                index: 1,
                weight: 1,
                priority: 0
            },
            RegionEndpoint {
                index: 0,
                weight: 3,
                priority: 1
            }
        ]
    );
    let Policy::Fastest { hysteresis_pct, .. } = p.regions[1].policy else {
        panic!("{:?}", p.regions[1].policy)
    };
    assert_eq!(hysteresis_pct, 20);
    let summary = cfg.summary();
    assert!(
        summary.contains(
            "  region americas: failover over b.cdn-two.example. (priority 0), a.cdn-one.example. (priority 1)"
        ),
        "{summary}"
    );
    assert!(
        summary.contains(
            "  region europe: fastest (count 1, deviation 0%, hysteresis 20%), latency from blend"
        ),
        "{summary}"
    );
}

#[test]
fn geo_pool_errors() {
    let default = "[pool.regions.default]\nendpoints = [\"a.cdn-one.example.\"]\n";
    assert_fails_at(
        &geo_pool(&format!(
            "{default}[pool.regions.asia]\nendpoints = [\"a.cdn-one.example.\"]\n"
        )),
        15,
        "pool cdn.example.test.: region \"asia\" is not in [regions] (regions: default, europe, americas)",
    );
    assert_fails_at(
        &geo_pool("[pool.regions.europe]\nendpoints = [\"a.cdn-one.example.\"]\n"),
        9,
        "pool cdn.example.test. has policy = \"geo\" but no [pool.regions.default]",
    );
    assert_fails_at(
        &geo_pool(""),
        9,
        "pool cdn.example.test. has policy = \"geo\" but no regions",
    );
    assert_fails_at(
        &geo_pool("[pool.regions.default]\nendpoints = [\"c.cdn-three.example.\"]\n"),
        14,
        "region default lists c.cdn-three.example., which is not an endpoint of the pool (a.cdn-one.example., b.cdn-two.example.)",
    );
    assert_fails_at(
        &geo_pool(
            "[pool.regions.default]\nendpoints = [\"a.cdn-one.example.\", \"a.cdn-one.example\"]\n",
        ),
        14,
        "region default lists a.cdn-one.example. twice",
    );
    assert_fails_at(
        &geo_pool("[pool.regions.default]\nendpoints = []\n"),
        14,
        "region default has no endpoints",
    );
    assert_fails_at(
        &geo_pool(
            "[pool.regions.default]\npolicy = \"failover\"\nendpoints = [{ address = \"a.cdn-one.example.\", priority = 1 }, { address = \"b.cdn-two.example.\", priority = 1 }]\n",
        ),
        15,
        "region default: pool cdn.example.test.: endpoints a.cdn-one.example. and b.cdn-two.example. both have priority 1",
    );
    assert_fails_at(
        &geo_pool(
            "[pool.regions.default]\npolicy = \"weighted\"\ncount = 2\nendpoints = [\"a.cdn-one.example.\"]\n",
        ),
        15,
        "region default: count only applies to policy \"fastest\"",
    );
    assert_fails_at(
        &geo_pool(
            "[pool.regions.default]\nlatency = \"guess\"\nendpoints = [\"a.cdn-one.example.\"]\n",
        ),
        14,
        "unknown variant `guess`, expected one of `probes`, `rum`, `blend`",
    );
    assert_fails_at(
        &geo_pool(
            "[pool.regions.default]\nendpoints = [{ address = \"a.cdn-one.example.\", weight = 0 }]\n",
        ),
        14,
        "region default: weight must be at least 1",
    );
    // Regions belong to geo pools only; the knobs of fastest to the regions.
    assert_fails_at(
        &pool_with(
            "A",
            &["policy = \"fastest\""],
            &format!("{TWO}]\n[pool.regions.default]\nendpoints = [\"192.0.2.1\""),
        ),
        9,
        "pool www.example.test. has [pool.regions.default], but regions are only for policy = \"geo\"",
    );
    assert_fails_at(
        &pool_with(
            "A",
            &["policy = \"geo\"", "count = 2"],
            &format!("{TWO}]\n[pool.regions.default]\nendpoints = [\"192.0.2.1\""),
        ),
        8,
        "count belongs in its [pool.regions.<name>] tables",
    );
}

#[test]
fn a_geo_pool_without_a_regions_section_has_the_default_region() {
    let text = pool_with(
        "A",
        &["policy = \"geo\""],
        &format!(
            "{TWO}]\n[pool.regions.default]\npolicy = \"failover\"\nendpoints = [\"192.0.2.2\", \"192.0.2.1\""
        ),
    );
    let p = one_pool(&text);
    assert_eq!(p.regions.len(), 1);
    assert_eq!(p.regions[0].region, RegionId::DEFAULT);
    assert_eq!(p.policy, Policy::Failover);
}
