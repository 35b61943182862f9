//! Where the client networks of regions come from: CIDR notation (inline lists and list
//! files, one network per line) and a MaxMind-format database (GeoLite2 or DB-IP lite,
//! country or city layout) whose country and continent codes are mapped to regions.
//!
//! The config (`[regions]`) locates the errors; this module says what is wrong and, for
//! list files, on which line and column.

use std::{collections::HashMap, fmt, net::IpAddr, path::Path, str::FromStr as _};

use ipnet::IpNet;
use serde::Deserialize;

use crate::geo::RegionId;

/// The continent codes of MaxMind and DB-IP databases.
pub const CONTINENT_CODES: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Why a network in CIDR notation is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network {0:?}: expected CIDR notation such as 192.0.2.0/24 or 2001:db8::/32")]
    Invalid(String),
    #[error(
        "network {text:?} has host bits set beyond its /{prefix}: write {network} (or a longer prefix)"
    )]
    HostBits {
        text: String,
        prefix: u8,
        network: IpNet,
    },
}

/// A client network in CIDR notation; a bare address is its host route (/32, /128). An
/// address with bits set beyond the prefix is refused, naming the network it is in: a
/// typo there (192.0.2.1/24 for 192.0.2.0/24, or 10.1.0.0/8 for 10.1.0.0/16) would
/// otherwise silently claim a different network.
pub fn parse_network(text: &str) -> Result<IpNet, NetworkError> {
    let t = text.trim();
    let net = match IpNet::from_str(t) {
        Ok(net) => net,
        Err(_) => match IpAddr::from_str(t) {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(NetworkError::Invalid(t.to_string())),
        },
    };
    if net.trunc() != net {
        return Err(NetworkError::HostBits {
            text: t.to_string(),
            prefix: net.prefix_len(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

/// A problem in a list file at `line:column` (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {problem}")]
pub struct ListError {
    pub line: usize,
    pub column: usize,
    pub problem: NetworkError,
}

/// The networks of a list file's `text`, each with its line: one network per line, blank
/// lines and `#` comments (whole lines or after a network) ignored.
pub fn parse_list(text: &str) -> Result<Vec<(usize, IpNet)>, ListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        let word = content.trim();
        if word.is_empty() {
            continue;
        }
        let column = content.len() - content.trim_start().len() + 1;
        let net = parse_network(word).map_err(|problem| ListError {
            line: i + 1,
            column,
            problem,
        })?;
        out.push((i + 1, net));
    }
    Ok(out)
}

/// Which region a database network goes to: by its country code, else by its continent.
#[derive(Clone, Debug, Default)]
pub struct CodeMap {
    /// Upper-case ISO 3166-1 alpha-2 codes.
    pub countries: HashMap<String, RegionId>,
    /// Upper-case continent codes ([`CONTINENT_CODES`]).
    pub continents: HashMap<String, RegionId>,
}

impl CodeMap {
    /// The region of a network with these codes: a listed country wins over its listed
    /// continent.
    pub fn region(&self, country: Option<&str>, continent: Option<&str>) -> Option<RegionId> {
        country
            .and_then(|c| self.countries.get(c))
            .or_else(|| continent.and_then(|c| self.continents.get(c)))
            .copied()
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("cannot read the region database {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable MaxMind-format database: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

/// How many prefixes a region has, by source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    /// `networks = [...]`.
    pub inline: usize,
    /// `files = [...]`.
    pub files: usize,
    /// The database's networks of the region's countries and continents.
    pub database: usize,
}

impl PrefixCounts {
    pub fn total(&self) -> usize {
        self.inline + self.files + self.database
    }
}

/// What a database gave, without its networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseSummary {
    /// `database_type` of its metadata.
    pub kind: String,
    /// Networks with data in it.
    pub total: usize,
    /// Of those, in a region.
    pub mapped: usize,
}

/// What a database gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseNetworks {
    /// Networks of a mapped country or continent, with their region.
    pub networks: Vec<(IpNet, RegionId)>,
    /// Networks the database has in all (with data).
    pub total: usize,
    /// `database_type` of its metadata (e.g. `DBIP-Country-Lite`).
    pub kind: String,
}

impl DatabaseNetworks {
    pub fn summary(&self) -> DatabaseSummary {
        DatabaseSummary {
            kind: self.kind.clone(),
            total: self.total,
            mapped: self.networks.len(),
        }
    }
}

impl fmt::Display for DatabaseSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} networks, {} of them in a region",
            self.kind, self.total, self.mapped
        )
    }
}

/// The parts of a country or city record that regions use (GeoLite2 and DB-IP lite lay
/// them out alike).
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Country<'a>>,
    #[serde(borrow, default)]
    continent: Option<Continent<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Continent<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

/// Walks every network of the database at `path` and keeps those whose country (the
/// located `country`, else the `registered_country`) or continent `map` puts in a region.
pub fn read_database(path: &Path, map: &CodeMap) -> Result<DatabaseNetworks, DatabaseError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DatabaseError::Read {
        path: shown.clone(),
        source,
    })?;
    let corrupt = |source| DatabaseError::Corrupt {
        path: shown.clone(),
        source,
    };
    let reader = maxminddb::Reader::from_source(bytes).map_err(corrupt)?;
    let mut out = DatabaseNetworks {
        kind: reader.metadata().database_type.clone(),
        ..DatabaseNetworks::default()
    };
    for item in reader
        .networks(maxminddb::WithinOptions::default())
        .map_err(corrupt)?
    {
        let item = item.map_err(corrupt)?;
        let network = item.network().map_err(corrupt)?;
        out.total += 1;
        let Some(record) = item.decode::<Record<'_>>().map_err(corrupt)? else {
            continue;
        };
        let country = record
            .country
            .and_then(|c| c.iso_code)
            .or_else(|| record.registered_country.and_then(|c| c.iso_code));
        let continent = record.continent.and_then(|c| c.code);
        if let Some(region) = map.region(country, continent) {
            let net = IpNet::new(network.network(), network.prefix())
                .expect("maxminddb gives valid prefix lengths");
            out.networks.push((net.trunc(), region));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::mmdb_writer::{GeoRecord, MmdbWriter};

    #[test]
    fn networks_need_cidr_without_host_bits() {
        assert_eq!(
            parse_network("192.0.2.0/24"),
            Ok("192.0.2.0/24".parse().unwrap())
        );
        assert_eq!(
            parse_network(" 2001:db8::/32 "),
            Ok("2001:db8::/32".parse().unwrap())
        );
        assert_eq!(
            parse_network("192.0.2.7"),
            Ok("192.0.2.7/32".parse().unwrap())
        );
        let e = parse_network("192.0.2.1/24").unwrap_err();
        assert!(
            e.to_string()
                .contains("host bits set beyond its /24: write 192.0.2.0/24"),
            "{e}"
        );
        assert!(matches!(
            parse_network("192.0.2.0/33"),
            Err(NetworkError::Invalid(_))
        ));
        assert!(matches!(
            parse_network("europe"),
            Err(NetworkError::Invalid(_))
        ));
    }

    #[test]
    fn list_files_skip_comments_and_name_line_and_column() {
        let text = "# europe\n192.0.2.0/25\n\n  2001:db8:1::/48   # office\n";
        assert_eq!(
            parse_list(text),
            Ok(vec![
                (2, "192.0.2.0/25".parse().unwrap()),
                (4, "2001:db8:1::/48".parse().unwrap())
            ])
        );
        let e = parse_list("192.0.2.0/25\n   10.0.0.1/8\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 4));
        assert!(e.to_string().starts_with("2:4: network"), "{e}");
    }

    #[test]
    fn a_listed_country_wins_over_its_listed_continent() {
        let map = CodeMap {
            countries: [("PT".to_string(), RegionId(2))].into(),
            continents: [("EU".to_string(), RegionId(1))].into(),
        };
        assert_eq!(map.region(Some("PT"), Some("EU")), Some(RegionId(2)));
        assert_eq!(map.region(Some("DE"), Some("EU")), Some(RegionId(1)));
        assert_eq!(map.region(Some("US"), Some("NA")), None);
        assert_eq!(map.region(None, None), None);
    }

    #[test]
    fn a_generated_database_is_mapped_to_regions() {
        let mut w = MmdbWriter::new("Test-Country");
        let de = GeoRecord::country("DE", "EU");
        w.insert("198.51.100.0/25".parse().unwrap(), &de);
        w.insert(
            "198.51.100.128/25".parse().unwrap(),
            &GeoRecord::country("PT", "EU"),
        );
        w.insert(
            "203.0.113.0/24".parse().unwrap(),
            &GeoRecord::country("BR", "SA"),
        );
        w.insert(
            "2001:db8:100::/40".parse().unwrap(),
            &GeoRecord::country("US", "NA"),
        );
        // Registered but not located: the registered country counts.
        w.insert(
            "192.0.2.0/24".parse().unwrap(),
            &GeoRecord::registered("AR", "SA"),
        );
        w.insert(
            "2001:db8:200::/40".parse().unwrap(),
            &GeoRecord::country("JP", "AS"),
        );
        let dir = std::env::temp_dir().join(format!("hotpool-geo-db-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("test.mmdb");
        std::fs::write(&path, w.finish()).expect("writing the database");

        let (europe, iberia, americas) = (RegionId(1), RegionId(2), RegionId(3));
        let map = CodeMap {
            countries: [("PT".to_string(), iberia)].into(),
            continents: [
                ("EU".to_string(), europe),
                ("NA".to_string(), americas),
                ("SA".to_string(), americas),
            ]
            .into(),
        };
        let got = read_database(&path, &map).expect("a valid database");
        let mut networks = got.networks.clone();
        networks.sort();
        let mut want: Vec<(IpNet, RegionId)> = vec![
            ("198.51.100.0/25".parse().unwrap(), europe),
            ("198.51.100.128/25".parse().unwrap(), iberia),
            ("203.0.113.0/24".parse().unwrap(), americas),
            ("2001:db8:100::/40".parse().unwrap(), americas),
            ("192.0.2.0/24".parse().unwrap(), americas),
        ];
        want.sort();
        assert_eq!(networks, want);
        assert_eq!(got.total, 6, "JP is in the database, in no region");
        assert_eq!(got.kind, "Test-Country");

        // A truncated file is refused with its path.
        let bytes = std::fs::read(&path).expect("reading back");
        let cut = dir.join("cut.mmdb");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("writing");
        let e = read_database(&cut, &map).unwrap_err();
        assert!(matches!(e, DatabaseError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("cut.mmdb"), "{e}");
        let e = read_database(&dir.join("missing.mmdb"), &map).unwrap_err();
        assert!(matches!(e, DatabaseError::Read { .. }), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
