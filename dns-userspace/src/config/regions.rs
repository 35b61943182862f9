//! `[regions]` and a `geo` pool's `[pool.regions.<name>]`: the region sources read and
//! checked (list files name their own line and column), and each region's policy.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
    path::PathBuf,
};

use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use toml::Spanned;

use crate::{
    config::{ConfigError, parse::Parser, raw::*},
    datapath::pools::answer_limit,
    geo::{
        DEFAULT_REGION, RegionId, Regions,
        source::{
            CONTINENT_CODES, CodeMap, DatabaseSummary, PrefixCounts, parse_list, parse_network,
            read_database,
        },
    },
    steering::{
        endpoint::EndpointAddress,
        geo::{GEO_POLICY, LatencySource, RegionEndpoint, RegionPolicy},
        policy::{Policy, PolicyKey, PolicyKeys},
        pool::EndpointSettings,
    },
};

/// What `[regions]` gives.
pub(super) struct RegionConfig {
    pub(super) regions: Regions,
    pub(super) prefixes: Vec<PrefixCounts>,
    pub(super) database: Option<(PathBuf, DatabaseSummary)>,
}

/// A region name: letters, digits, `-` and `_` (it appears in metrics labels, JSON and
/// the RUM API).
fn valid_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Notes that `net` is given for region `id` (`name`) at `at`: `Ok(true)` the first time,
/// `Ok(false)` when it is given for the same region again (counted once), an error when
/// another region has it (a network belongs to one region).
fn claim(
    configured: &mut HashMap<IpNet, (RegionId, String, String)>,
    net: IpNet,
    id: RegionId,
    name: &str,
    at: String,
) -> Result<bool, String> {
    match configured.get(&net) {
        None => {
            configured.insert(net, (id, name.to_string(), at));
            Ok(true)
        }
        Some((first, _, _)) if *first == id => Ok(false),
        Some((_, other, first_at)) => Err(format!(
            "region {name}: network {net} is also in region {other} ({first_at}); a network belongs to one region"
        )),
    }
}

impl Parser<'_> {
    /// `[regions]`: the regions in file order, their networks from every source.
    pub(super) fn regions(&self, raw: Option<RawRegions>) -> Result<RegionConfig, ConfigError> {
        let mut regions = Regions::none();
        let mut prefixes = vec![PrefixCounts::default()];
        let Some(raw) = raw else {
            return Ok(RegionConfig {
                regions,
                prefixes,
                database: None,
            });
        };
        let mut map = CodeMap::default();
        // Where each country and continent was listed, for the error of a second listing.
        let mut listed: HashMap<String, (String, Range<usize>)> = HashMap::new();
        let mut first_code: Option<Range<usize>> = None;
        // Every network given inline or in a file: its region and where it was given.
        let mut configured: HashMap<IpNet, (RegionId, String, String)> = HashMap::new();
        for (key, r) in &raw.regions {
            let (name, span) = (key.get_ref(), key.span());
            if name == DEFAULT_REGION {
                return Err(self.err_at(
                    span,
                    "the region name \"default\" is reserved: it is every client no region claims; name the region otherwise",
                ));
            }
            if !valid_region_name(name) {
                return Err(self.err_at(
                    span,
                    format!(
                        "invalid region name {name:?}: use letters, digits, '-' and '_' (at most 63)"
                    ),
                ));
            }
            if let Some((_, other)) = regions.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)) {
                return Err(self.err_at(
                    span,
                    format!("region {name:?} is configured twice (as {other:?})"),
                ));
            }
            let id = regions.add(name).ok_or_else(|| {
                self.err_at(
                    span.clone(),
                    format!("too many regions (at most {})", u16::MAX - 1),
                )
            })?;
            let mut counts = PrefixCounts::default();
            for n in r.networks.iter().flatten() {
                let net = parse_network(n.get_ref())
                    .map_err(|e| self.err_at(n.span(), format!("region {name}: {e}")))?;
                let (line, _) = self.line_col(n.span());
                let at = format!("line {line}");
                if claim(&mut configured, net, id, name, at)
                    .map_err(|problem| self.err_at(n.span(), problem))?
                {
                    regions.networks.push((net, id));
                    counts.inline += 1;
                }
            }
            for f in r.files.iter().flatten() {
                let path = self.relative(f, "files")?;
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err_at(
                        f.span(),
                        format!(
                            "region {name}: cannot read network list {}: {e}",
                            path.display()
                        ),
                    )
                })?;
                let nets = parse_list(&text).map_err(|e| {
                    ConfigError::at(
                        &path,
                        e.line,
                        e.column,
                        format!("region {name}: {}", e.problem),
                    )
                })?;
                for (line, net) in nets {
                    let at = format!("{}:{line}", path.display());
                    if claim(&mut configured, net, id, name, at)
                        .map_err(|problem| ConfigError::at(&path, line, 1, problem))?
                    {
                        regions.networks.push((net, id));
                        counts.files += 1;
                    }
                }
            }
            for (codes, what, is_country) in [
                (&r.countries, "country", true),
                (&r.continents, "continent", false),
            ] {
                for c in codes.iter().flatten() {
                    let code = c.get_ref().trim().to_ascii_uppercase();
                    if is_country
                        && (code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()))
                    {
                        return Err(self.err_at(
                            c.span(),
                            format!(
                                "region {name}: country {:?} is not a two-letter ISO 3166-1 code (such as \"BR\")",
                                c.get_ref()
                            ),
                        ));
                    }
                    if !is_country && !CONTINENT_CODES.contains(&code.as_str()) {
                        return Err(self.err_at(
                            c.span(),
                            format!(
                                "region {name}: continent {:?} is not one of {}",
                                c.get_ref(),
                                CONTINENT_CODES.join(", ")
                            ),
                        ));
                    }
                    let key = format!("{what} {code}");
                    if let Some((first, at)) = listed.get(&key) {
                        let (line, _) = self.line_col(at.clone());
                        return Err(self.err_at(
                            c.span(),
                            format!(
                                "{what} {code} is listed in region {first} (line {line}) and in region {name}; a {what} belongs to one region"
                            ),
                        ));
                    }
                    listed.insert(key, (name.clone(), c.span()));
                    first_code.get_or_insert(c.span());
                    let target = if is_country {
                        &mut map.countries
                    } else {
                        &mut map.continents
                    };
                    target.insert(code, id);
                }
            }
            prefixes.push(counts);
        }
        let database = match (&raw.database, first_code) {
            (None, Some(at)) => {
                return Err(self.err_at(
                    at,
                    "countries and continents need a MaxMind-format database: set database = \"...\" in [regions]",
                ));
            }
            (Some(db), None) => {
                return Err(self.err_at(
                    db.span(),
                    "the database is not used: no region lists countries or continents",
                ));
            }
            (None, None) => None,
            (Some(db), Some(_)) => {
                let path = self.relative(db, "database")?;
                let got = read_database(&path, &map)
                    .map_err(|e| self.err_at(db.span(), e.to_string()))?;
                let summary = got.summary();
                // A network given inline or in a file overrides the database's same
                // network.
                for (net, id) in got.networks {
                    if !configured.contains_key(&net) {
                        prefixes[id.index()].database += 1;
                        regions.networks.push((net, id));
                    }
                }
                Some((path, summary))
            }
        };
        Ok(RegionConfig {
            regions,
            prefixes,
            database,
        })
    }

    /// A `geo` pool's `[pool.regions.<name>]` tables: one policy per region, by region id,
    /// the `default` one required.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pool_regions(
        &self,
        raw: Option<BTreeMap<Spanned<String>, RawPoolRegion>>,
        pool: &Name,
        pool_span: Range<usize>,
        rtype: RecordType,
        probed: bool,
        endpoints: &[EndpointSettings],
        regions: &Regions,
    ) -> Result<Vec<RegionPolicy>, ConfigError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Err(self.err_at(
                pool_span,
                format!(
                    "pool {pool} has policy = \"{GEO_POLICY}\" but no regions: add [pool.regions.default] (and one table per region)"
                ),
            ));
        };
        let mut out = Vec::with_capacity(raw.len());
        for (key, e) in raw {
            let span = key.span();
            let name = key.into_inner();
            let Some(region) = regions.id(&name) else {
                let known: Vec<&str> = regions.iter().map(|(_, n)| n).collect();
                return Err(self.err_at(
                    span,
                    format!(
                        "pool {pool}: region {name:?} is not in [regions] (regions: {})",
                        known.join(", ")
                    ),
                ));
            };
            let keys = PolicyKeys {
                policy: e.policy.as_ref().map(|p| p.get_ref().name()),
                count: e.count.as_ref().map(|c| *c.get_ref()),
                deviation: e.deviation.as_ref().map(|d| *d.get_ref()),
                hysteresis: e.hysteresis.as_ref().map(|h| *h.get_ref()),
                all_down: None,
                fallback: None,
            };
            let (policy, _) = Policy::from_keys(&keys, pool, rtype, probed).map_err(|err| {
                let at = match err.key {
                    PolicyKey::Policy => e.policy.as_ref().map(Spanned::span),
                    PolicyKey::Count => e.count.as_ref().map(Spanned::span),
                    PolicyKey::Deviation => e.deviation.as_ref().map(Spanned::span),
                    PolicyKey::Hysteresis => e.hysteresis.as_ref().map(Spanned::span),
                    _ => None,
                };
                self.err_at(
                    at.unwrap_or_else(|| span.clone()),
                    format!("region {name}: {err}"),
                )
            })?;
            let latency = e
                .latency
                .as_ref()
                .and_then(|l| LatencySource::from_name(l.get_ref().name()))
                .unwrap_or_default();
            let list_span = e.endpoints.span();
            let items = e.endpoints.into_inner();
            if items.is_empty() {
                return Err(self.err_at(
                    list_span,
                    format!("pool {pool}: region {name} has no endpoints"),
                ));
            }
            let mut chosen: Vec<RegionEndpoint> = Vec::with_capacity(items.len());
            let mut spans = Vec::with_capacity(items.len());
            for (position, item) in items.iter().enumerate() {
                let it = item.get_ref();
                let address = EndpointAddress::parse(&it.address, pool, rtype)
                    .map_err(|err| self.err_at(item.span(), err.to_string()))?;
                let Some(index) = endpoints.iter().position(|x| x.address == address) else {
                    let known: Vec<String> =
                        endpoints.iter().map(|x| x.address.to_string()).collect();
                    return Err(self.err_at(
                        item.span(),
                        format!(
                            "pool {pool}: region {name} lists {address}, which is not an endpoint of the pool ({}); define endpoints once in the pool's endpoints",
                            known.join(", ")
                        ),
                    ));
                };
                if chosen.iter().any(|c| c.index == index) {
                    return Err(self.err_at(
                        item.span(),
                        format!("pool {pool}: region {name} lists {address} twice"),
                    ));
                }
                let weight = match it.weight {
                    Some(0) => {
                        return Err(self.err_at(
                            item.span(),
                            format!("region {name}: weight must be at least 1"),
                        ));
                    }
                    Some(w) => w,
                    None => endpoints[index].weight,
                };
                chosen.push(RegionEndpoint {
                    index,
                    weight,
                    priority: it
                        .priority
                        .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX)),
                });
                spans.push(item.span());
            }
            if chosen.len() > answer_limit(RecordType::A) {
                return Err(self.err_at(
                    list_span,
                    format!(
                        "pool {pool}: region {name} has {} endpoints, at most {} are supported",
                        chosen.len(),
                        answer_limit(RecordType::A)
                    ),
                ));
            }
            let priorities: Vec<(&EndpointAddress, u32)> = chosen
                .iter()
                .map(|c| (&endpoints[c.index].address, c.priority))
                .collect();
            policy.check_priorities(pool, &priorities).map_err(|err| {
                let at = match err.key {
                    PolicyKey::Priority(i) => spans.get(i).cloned(),
                    _ => None,
                };
                self.err_at(
                    at.unwrap_or_else(|| span.clone()),
                    format!("region {name}: {err}"),
                )
            })?;
            out.push(RegionPolicy {
                region,
                name,
                policy,
                latency,
                endpoints: chosen,
            });
        }
        out.sort_by_key(|r| r.region);
        if out.first().map(|r| r.region) != Some(RegionId::DEFAULT) {
            return Err(self.err_at(
                pool_span,
                format!(
                    "pool {pool} has policy = \"{GEO_POLICY}\" but no [pool.regions.default]: it answers every client no listed region claims"
                ),
            ));
        }
        Ok(out)
    }
}
