//! Zone data: an RFC 1035 zone file (plus SOA/NS from the config) loaded and checked, and
//! kept in canonical name order for the lookups an authoritative server needs.
//!
//! The file is parsed with hickory-proto's zone-file parser (`$ORIGIN`, `$TTL`,
//! `$INCLUDE`, relative names). Its errors carry no position, so a failing file is parsed
//! again in growing prefixes of whole entries to find the line that first fails; the same
//! search locates per-record problems (names outside the zone, a CNAME next to other
//! data, ...).

use std::{
    collections::BTreeMap,
    ops::Bound,
    path::{Path, PathBuf},
};

use hickory_proto::{
    rr::{
        DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType, RrKey,
        rdata::{NS, SOA},
    },
    serialize::txt::{ParseError, Parser},
};

use crate::dns::MAX_TTL;

mod include;
mod problem;

/// Default TTL of NS records given in the config (`ns_ttl`).
pub const DEFAULT_NS_TTL: u32 = 3600;

/// One `[[zone]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSettings {
    /// The zone's apex (fully qualified, lower case).
    pub origin: Name,
    /// The RFC 1035 zone file, resolved relative to the config file's directory.
    pub file: PathBuf,
    /// SOA given in the config instead of the zone file.
    pub soa: Option<SoaSettings>,
    /// Apex NS names given in the config (added to any in the zone file).
    pub ns: Vec<Name>,
    /// TTL of the NS records in `ns`.
    pub ns_ttl: u32,
}

/// A zone's SOA given in the config (`soa = { ... }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoaSettings {
    pub mname: Name,
    pub rname: Name,
    /// Default 1.
    pub serial: u32,
    /// Default 3600. This and the other timers are at most 2^31-1.
    pub refresh: u32,
    /// Default 600.
    pub retry: u32,
    /// Default 604800.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308). Default 60.
    pub minimum: u32,
    /// TTL of the SOA record itself. Default 3600.
    pub ttl: u32,
}

/// A problem with a zone file, with the line where it was found when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ZoneError {
    file: PathBuf,
    line: Option<usize>,
    message: String,
    /// The zone file itself could not be read (the config names it).
    unreadable: bool,
}

impl ZoneError {
    fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            message: message.into(),
            unreadable: false,
        }
    }

    /// Whether the zone file itself could not be read (missing, unreadable): a problem of
    /// the config line that names it rather than of a line in it.
    pub fn is_unreadable(&self) -> bool {
        self.unreadable
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line of the entry that failed, if known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The RRsets at one owner name.
#[derive(Clone, Debug)]
pub struct Node {
    name: Name,
    rrsets: BTreeMap<RecordType, Vec<Record>>,
}

impl Node {
    /// The owner name as written in the zone.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The RRset of `rtype`, if any (never empty).
    pub fn rrset(&self, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets.get(&rtype).map(Vec::as_slice)
    }

    /// The RRsets in type-number order.
    pub fn rrsets(&self) -> impl Iterator<Item = (RecordType, &[Record])> {
        self.rrsets.iter().map(|(t, r)| (*t, r.as_slice()))
    }
}

/// One authoritative zone.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    apex: LowerName,
    file: PathBuf,
    soa: Record,
    nodes: BTreeMap<LowerName, Node>,
}

impl Zone {
    /// Reads and checks the zone file of `settings`.
    pub fn load(settings: &ZoneSettings) -> Result<Zone, ZoneError> {
        let text = std::fs::read_to_string(&settings.file).map_err(|e| ZoneError {
            unreadable: true,
            ..ZoneError::new(
                &settings.file,
                None,
                format!(
                    "cannot read zone file {} for {}: {e}",
                    settings.file.display(),
                    settings.origin
                ),
            )
        })?;
        Self::parse(settings, &text)
    }

    /// Parses and checks `text` as the zone file of `settings` (`$INCLUDE`s are read relative
    /// to `settings.file`, and a problem inside one is reported in that file).
    pub fn parse(settings: &ZoneSettings, text: &str) -> Result<Zone, ZoneError> {
        let file = settings.file.as_path();
        let origin = {
            let mut o = settings.origin.to_lowercase();
            o.set_fqdn(true);
            o
        };
        let apex = LowerName::new(&origin);
        let expanded = include::expand(file, text)?;
        let text = expanded.text.as_str();
        // A line of the expanded text as (file, line) for errors.
        let at = |line: Option<usize>, message: String| match line.and_then(|l| expanded.origin(l))
        {
            Some((f, l)) => ZoneError::new(f, Some(l), message),
            None => ZoneError::new(file, line, message),
        };

        let sets = match parse_checked(settings, &origin, text) {
            Ok(sets) => sets,
            Err(problem) => {
                let Some(found) = locate(text, |prefix| {
                    parse_checked(settings, &origin, prefix).err()
                }) else {
                    return Err(ZoneError::new(file, None, problem.message(None)));
                };
                let message = found.problem.message(Some(&found.raw));
                let message = match (&found.problem, found.short.is_empty()) {
                    // Say which entry, in the words of the file.
                    (Problem::Syntax(_), false) => format!("{message} (in `{}`)", found.short),
                    _ => message,
                };
                return Err(at(found.line, message));
            }
        };

        let mut nodes: BTreeMap<LowerName, Node> = BTreeMap::new();
        for (key, set) in sets {
            let mut records: Vec<Record> = set.records_without_rrsigs().cloned().collect();
            let Some(owner) = records.first().map(|r| r.name.clone()) else {
                continue;
            };
            // RFC 2181 §5.2: an RRset has one TTL; treat differing ones as the lowest.
            let ttl = records.iter().map(|r| r.ttl).min().unwrap_or_default();
            if records.iter().any(|r| r.ttl != ttl) {
                tracing::warn!(
                    zone = %origin,
                    "{} {}: records have different TTLs, using the lowest ({ttl})",
                    key.name,
                    key.record_type
                );
            }
            for r in &mut records {
                r.ttl = ttl;
            }
            let node = nodes.entry(key.name.clone()).or_insert_with(|| Node {
                name: owner,
                rrsets: BTreeMap::new(),
            });
            node.rrsets.insert(key.record_type, records);
        }

        // SOA and NS from the config.
        if let Some(soa) = &settings.soa {
            if nodes
                .get(&apex)
                .is_some_and(|n| n.rrset(RecordType::SOA).is_some())
            {
                let line = locate(text, |prefix| {
                    parse_checked(settings, &origin, prefix).ok().and_then(|s| {
                        s.keys()
                            .any(|k| k.record_type == RecordType::SOA)
                            .then(|| Problem::Record("SOA".into()))
                    })
                })
                .and_then(|found| found.line);
                return Err(at(
                    line,
                    format!(
                        "zone {origin} has an SOA record in the zone file and `soa` in the config; keep one"
                    ),
                ));
            }
            let rdata = SOA::new(
                soa.mname.clone(),
                soa.rname.clone(),
                soa.serial,
                timer(soa.refresh),
                timer(soa.retry),
                timer(soa.expire),
                soa.minimum,
            );
            let record = in_record(origin.clone(), soa.ttl, RData::SOA(rdata));
            node_at(&mut nodes, &apex, &origin)
                .rrsets
                .insert(RecordType::SOA, vec![record]);
        }
        if !settings.ns.is_empty() {
            let node = node_at(&mut nodes, &apex, &origin);
            let set = node.rrsets.entry(RecordType::NS).or_default();
            for ns in &settings.ns {
                if !set.iter().any(|r| r.data == RData::NS(NS(ns.clone()))) {
                    set.push(in_record(
                        origin.clone(),
                        settings.ns_ttl,
                        RData::NS(NS(ns.clone())),
                    ));
                }
            }
            let ttl = set.iter().map(|r| r.ttl).min().unwrap_or(settings.ns_ttl);
            for r in set.iter_mut() {
                r.ttl = ttl;
            }
        }

        let apex_node = nodes.get(&apex);
        let Some(soa) = apex_node
            .and_then(|n| n.rrset(RecordType::SOA))
            .and_then(|s| s.first())
            .cloned()
        else {
            return Err(ZoneError::new(
                file,
                None,
                format!(
                    "zone {origin} has no SOA record; add one at the apex of the zone file or set `soa` in its [[zone]]"
                ),
            ));
        };
        if apex_node.and_then(|n| n.rrset(RecordType::NS)).is_none() {
            return Err(ZoneError::new(
                file,
                None,
                format!(
                    "zone {origin} has no NS records at its apex; add them to the zone file or set `ns` in its [[zone]]"
                ),
            ));
        }
        if apex_node.and_then(|n| n.rrset(RecordType::CNAME)).is_some() {
            return Err(ZoneError::new(
                file,
                None,
                format!("zone {origin} has a CNAME at its apex, next to its SOA and NS"),
            ));
        }

        Ok(Zone {
            origin,
            apex,
            file: file.to_path_buf(),
            soa,
            nodes,
        })
    }

    /// The apex name.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The apex name, lower case.
    pub fn apex(&self) -> &LowerName {
        &self.apex
    }

    /// The file the zone was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The zone's SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    /// The SOA as it goes into the authority section of a negative answer: TTL =
    /// min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &self.soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    /// Whether `name` is at or below the apex.
    pub fn contains(&self, name: &LowerName) -> bool {
        self.apex.zone_of(name)
    }

    /// The node at exactly `name`.
    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The RRset of `rtype` at exactly `name`.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> Option<&[Record]> {
        self.nodes.get(name).and_then(|n| n.rrset(rtype))
    }

    /// The record types at exactly `name`, in type-number order.
    pub fn types_at(&self, name: &LowerName) -> Vec<RecordType> {
        self.nodes
            .get(name)
            .map(|n| n.rrsets.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether `name` exists in the zone: it owns records or is an empty non-terminal
    /// (some name below it does, RFC 8020).
    pub fn has_name_at_or_below(&self, name: &LowerName) -> bool {
        // Canonical order puts a name's descendants right after it.
        self.nodes
            .range((Bound::Included(name), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| name.zone_of(k))
    }

    /// The topmost zone cut at or above `name`: a name strictly below the apex that owns NS
    /// records, with those records.
    pub fn find_cut(&self, name: &LowerName) -> Option<(&Name, &[Record])> {
        if !self.contains(name) {
            return None;
        }
        let apex_labels = label_count(&self.apex);
        let labels = label_count(name);
        for n in apex_labels + 1..=labels {
            let candidate = LowerName::new(&name.trim_to(n));
            if let Some(node) = self.nodes.get(&candidate)
                && let Some(ns) = node.rrset(RecordType::NS)
            {
                return Some((&node.name, ns));
            }
        }
        None
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.nodes
            .values()
            .flat_map(|n| n.rrsets.values())
            .map(Vec::len)
            .sum()
    }

    /// Number of owner names.
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }
}

/// Number of labels of `name`, a leading `*` included (unlike `Name::num_labels`).
pub(crate) fn label_count(name: &Name) -> usize {
    name.iter().count()
}

fn timer(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn in_record(name: Name, ttl: u32, rdata: RData) -> Record {
    let mut r = Record::from_rdata(name, ttl, rdata);
    r.dns_class = DNSClass::IN;
    r
}

fn node_at<'a>(
    nodes: &'a mut BTreeMap<LowerName, Node>,
    key: &LowerName,
    name: &Name,
) -> &'a mut Node {
    nodes.entry(key.clone()).or_insert_with(|| Node {
        name: name.clone(),
        rrsets: BTreeMap::new(),
    })
}

/// Why a zone file was rejected.
#[derive(Debug)]
enum Problem {
    /// The parser failed.
    Syntax(ParseError),
    /// A record that parsed is not acceptable.
    Record(String),
}

impl Problem {
    /// What is wrong, for people; `entry` is the text of the entry that failed, if known.
    fn message(&self, entry: Option<&str>) -> String {
        match (self, entry) {
            (Self::Syntax(e), Some(entry)) => problem::describe(entry, e),
            (Self::Syntax(e), None) => e.to_string(),
            (Self::Record(m), _) => m.clone(),
        }
    }
}

/// Parses `text` and checks every record on its own; the first problem.
fn parse_checked(
    settings: &ZoneSettings,
    origin: &Name,
    text: &str,
) -> Result<BTreeMap<RrKey, RecordSet>, Problem> {
    let parser = Parser::new(text, Some(settings.file.clone()), Some(origin.clone()));
    let (_, sets) = parser.parse().map_err(Problem::Syntax)?;
    let sets = check_records(origin, sets).map_err(Problem::Record)?;
    Ok(sets)
}

fn check_records(
    origin: &Name,
    sets: BTreeMap<RrKey, RecordSet>,
) -> Result<BTreeMap<RrKey, RecordSet>, String> {
    let apex = LowerName::new(origin);
    let mut at_name: BTreeMap<&LowerName, Vec<RecordType>> = BTreeMap::new();
    for (key, set) in &sets {
        at_name.entry(&key.name).or_default().push(key.record_type);
        for r in set.records_without_rrsigs() {
            let (name, rtype) = (&r.name, r.record_type());
            if !apex.zone_of(&key.name) {
                return Err(format!("{name} {rtype} is outside the zone {origin}"));
            }
            if r.dns_class != DNSClass::IN {
                return Err(format!(
                    "{name} {rtype} has class {}; only class IN is served",
                    r.dns_class
                ));
            }
            if r.ttl > MAX_TTL {
                return Err(format!(
                    "{name} {rtype} has TTL {}, larger than {MAX_TTL} (RFC 2181 §8)",
                    r.ttl
                ));
            }
            match rtype {
                RecordType::SOA if key.name != apex => {
                    return Err(format!(
                        "SOA record at {name}; the zone's SOA must be at its apex {origin}"
                    ));
                }
                RecordType::DNAME => {
                    return Err(format!("{name} DNAME: DNAME records are not supported"));
                }
                _ => {}
            }
        }
    }
    for (name, types) in at_name {
        if types.contains(&RecordType::CNAME) {
            let others: Vec<String> = types
                .iter()
                .filter(|t| !matches!(t, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC))
                .map(RecordType::to_string)
                .collect();
            if !others.is_empty() {
                return Err(format!(
                    "{name} has a CNAME and {} records; a CNAME cannot coexist with other data (RFC 1034 §3.6.2)",
                    others.join(", ")
                ));
            }
        }
    }
    Ok(sets)
}

/// The entry [`locate`] found.
struct Found {
    /// Its first line (`None`: before the first entry).
    line: Option<usize>,
    /// Its text on one line, shortened.
    short: String,
    /// Its text as written.
    raw: String,
    problem: Problem,
}

/// Finds the first entry of `text` at which `fails` starts to report a problem, by checking
/// prefixes that end at entry boundaries (binary search: once an entry fails, every longer
/// prefix does), or None if even the whole text does not fail.
fn locate(text: &str, fails: impl Fn(&str) -> Option<Problem>) -> Option<Found> {
    let starts = entry_starts(text);
    // starts[k] ends the prefix made of the first k entries; find the smallest failing k.
    let (mut lo, mut hi) = (0usize, starts.len() - 1);
    let mut problem = fails(&text[..starts[hi].0])?;
    while lo < hi {
        let mid = (lo + hi) / 2;
        match fails(&text[..starts[mid].0]) {
            Some(p) => {
                hi = mid;
                problem = p;
            }
            None => lo = mid + 1,
        }
    }
    let Some(k) = hi.checked_sub(1) else {
        return Some(Found {
            line: None,
            short: String::new(),
            raw: String::new(),
            problem,
        });
    };
    let raw = text.get(starts[k].0..starts[hi].0).unwrap_or_default();
    let mut short = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if short.chars().count() > 60 {
        short = short.chars().take(57).collect::<String>() + "...";
    }
    Some(Found {
        line: Some(starts[k].1),
        short,
        raw: raw.to_string(),
        problem,
    })
}

/// Byte offsets where an entry may start (a line start outside parentheses and quotes),
/// with their 1-based line numbers; the last one is the end of the text.
pub(super) fn entry_starts(text: &str) -> Vec<(usize, usize)> {
    let mut starts = vec![(0, 1)];
    let (mut depth, mut quoted, mut escaped, mut comment) = (0usize, false, false, false);
    let mut line = 1;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            line += 1;
            comment = false;
            escaped = false;
            if depth == 0 && !quoted {
                starts.push((i + 1, line));
            }
            continue;
        }
        if comment {
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => comment = true,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if starts.last().is_some_and(|&(at, _)| at != text.len()) {
        starts.push((text.len(), line));
    }
    starts
}

#[cfg(test)]
mod tests;

/// For the tests of [`problem`]: the parser's error for `text`.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn parse_error(settings: &ZoneSettings, text: &str) -> ParseError {
        match parse_checked(settings, &settings.origin, text) {
            Err(Problem::Syntax(e)) => e,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }
}
