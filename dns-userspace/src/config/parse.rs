//! The file's values turned into the domains' types: each domain validates its own keys
//! and names the one at fault; this maps it back to its position in the file.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use dns_common::MAX_ANSWER_RRS;
use hickory_proto::rr::{LowerName, Name, RecordType};
use toml::Spanned;

use crate::{
    config::{Config, ConfigError, raw::*},
    datapath::{
        ebpf::{XdpSettings, check_interface_name},
        heartbeat::{MAX_STALE, MIN_STALE},
    },
    dns::{
        MAX_TTL, parse_name,
        rrl::{MAX_SLIP, MAX_WINDOW_S, Network, RrlSettings},
        server::{
            EDNS_UDP_SIZE_RANGE, MAX_ANSWER_CACHE_SIZE, MAX_UDP_RECEIVE_BUFFER, MAX_UDP_WORKERS,
            ServerSettings,
        },
        zone::{DEFAULT_NS_TTL, SoaSettings, Zone, ZoneSettings},
    },
    geo::Regions,
    steering::geo::GEO_POLICY,
    steering::{
        endpoint::EndpointAddress,
        events::{EventSettings, webhook_url},
        health::AdminState,
        policy::{AllDown, Policy, PolicyKey, PolicyKeys},
        pool::{DEFAULT_POOL_TTL, EndpointSettings, PoolSettings},
        probe::{ProbeKey, ProbeKeys, ProbeSettings, ProbeSpec},
        state::{MAX_MAX_AGE, StateSettings},
    },
};

pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) source: &'a Path,
}

impl Parser<'_> {
    /// An error at byte `span` of the config text.
    pub(super) fn err_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        ConfigError::at(self.source, line, column, message)
    }

    pub(super) fn parse(&self) -> Result<Config, ConfigError> {
        let mut raw = self.raw()?;
        let metrics_listen = raw.server.as_mut().and_then(|s| s.metrics_listen.take());
        let api = self.api(raw.api.take(), metrics_listen, true)?;
        let (mut server, pin_path) = match raw.server {
            Some(s) => self.server(s)?,
            None => (ServerSettings::default(), XdpSettings::default().pin_path),
        };
        if let Some(r) = raw.rrl {
            server.rrl = self.rrl(r)?;
        }
        let xdp = match raw.xdp {
            Some(x) => self.xdp(x, pin_path)?,
            None => XdpSettings {
                pin_path,
                ..XdpSettings::default()
            },
        };

        let mut zones = Vec::with_capacity(raw.zone.len());
        let mut file_spans = Vec::with_capacity(raw.zone.len());
        let mut seen = BTreeMap::new();
        for z in raw.zone {
            let origin_span = z.get_ref().origin.span();
            file_spans.push(z.get_ref().file.span());
            let settings = self.zone(z.into_inner())?;
            let key = LowerName::new(&settings.origin);
            if let Some(first) = seen.insert(key, origin_span.clone()) {
                let (line, _) = self.line_col(first);
                return Err(self.err_at(
                    origin_span,
                    format!(
                        "zone {} is configured twice (first at line {line})",
                        settings.origin
                    ),
                ));
            }
            zones.push(settings);
        }
        if zones.is_empty() && !raw.pool.is_empty() {
            return Err(self.err_at(
                raw.pool[0].span(),
                "pools need a zone: add a [[zone]] that contains the pool names",
            ));
        }

        let mut zone_data = Vec::with_capacity(zones.len());
        for (settings, span) in zones.iter().zip(file_spans) {
            // A file that cannot be read is the config line's problem; one that can is
            // reported at its own line.
            zone_data.push(Zone::load(settings).map_err(|e| {
                if e.is_unreadable() {
                    self.err_at(span, e.message())
                } else {
                    e.into()
                }
            })?);
        }

        let regions = self.regions(raw.regions.take())?;

        let mut pools: Vec<PoolSettings> = Vec::with_capacity(raw.pool.len());
        let mut pool_lines = BTreeMap::new();
        for p in raw.pool {
            let name_span = p.get_ref().name.span();
            let pool = self.pool(p.into_inner(), &regions.regions)?;
            let key = LowerName::new(&pool.name);
            if let Some(first) = pool_lines.insert(key, name_span.clone()) {
                let (line, _) = self.line_col(first);
                return Err(self.err_at(
                    name_span,
                    format!(
                        "pool {} is configured twice (first at line {line}); one name has one pool",
                        pool.name
                    ),
                ));
            }
            self.check_pool_in_zones(&pool, name_span, &zones, &zone_data)?;
            pools.push(pool);
        }
        if pools.len() > dns_common::MAX_POOLS as usize {
            return Err(ConfigError::new(
                self.source,
                format!(
                    "{} pools configured, at most {} are supported",
                    pools.len(),
                    dns_common::MAX_POOLS
                ),
            ));
        }

        let events = match raw.events {
            Some(e) => self.events(e)?,
            None => EventSettings::default(),
        };
        let probes = match raw.probes {
            Some(p) => self.probes(p)?,
            None => ProbeSettings::default(),
        };
        let state = match raw.state {
            Some(s) => self.state(s)?,
            None => StateSettings::default(),
        };

        Ok(Config {
            source: self.source.to_path_buf(),
            server,
            api,
            xdp,
            zones,
            pools,
            regions: regions.regions,
            region_prefixes: regions.prefixes,
            region_database: regions.database,
            events,
            probes,
            state,
            zone_data,
        })
    }

    /// The file as written (TOML syntax and key names checked).
    pub(super) fn raw(&self) -> Result<RawConfig, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let message = toml_message(&e, self.text);
            match e.span() {
                Some(span) => self.err_at(span, message),
                None => ConfigError::new(self.source, message),
            }
        })
    }

    pub(super) fn line_col(&self, span: Range<usize>) -> (usize, usize) {
        let e = self.err_at(span, "");
        (e.line().unwrap_or(1), e.column().unwrap_or(1))
    }

    /// `[server]`: the server's settings and the pin path (`metrics_listen` is the API's).
    fn server(&self, raw: RawServer) -> Result<(ServerSettings, PathBuf), ConfigError> {
        let mut s = ServerSettings::default();
        let mut pin_path = XdpSettings::default().pin_path;
        if let Some(listen) = raw.listen {
            if listen.get_ref().is_empty() {
                return Err(self.err_at(listen.span(), "listen must name at least one address"));
            }
            let mut addrs = Vec::new();
            for a in listen.into_inner() {
                let ip = IpAddr::from_str(a.get_ref().trim()).map_err(|_| {
                    self.err_at(
                        a.span(),
                        format!(
                            "invalid listen address {:?}: expected an IPv4 or IPv6 address without port",
                            a.get_ref()
                        ),
                    )
                })?;
                if addrs.contains(&ip) {
                    return Err(self.err_at(a.span(), format!("listen address {ip} given twice")));
                }
                addrs.push(ip);
            }
            s.listen = addrs;
        }
        if let Some(port) = raw.port {
            if *port.get_ref() == 0 {
                return Err(self.err_at(port.span(), "port must be between 1 and 65535"));
            }
            s.port = port.into_inner();
        }
        if let Some(size) = raw.edns_udp_size {
            if !EDNS_UDP_SIZE_RANGE.contains(size.get_ref()) {
                return Err(self.err_at(
                    size.span(),
                    format!(
                        "edns_udp_size {} is out of range {}..={}",
                        size.get_ref(),
                        EDNS_UDP_SIZE_RANGE.start(),
                        EDNS_UDP_SIZE_RANGE.end()
                    ),
                ));
            }
            s.edns_udp_size = size.into_inner();
        }
        if let Some(n) = raw.udp_workers {
            if !(1..=MAX_UDP_WORKERS).contains(n.get_ref()) {
                return Err(self.err_at(
                    n.span(),
                    format!("udp_workers must be between 1 and {MAX_UDP_WORKERS}"),
                ));
            }
            s.udp_workers = Some(n.into_inner());
        }
        if let Some(n) = raw.answer_cache_size {
            if *n.get_ref() > MAX_ANSWER_CACHE_SIZE {
                return Err(self.err_at(
                    n.span(),
                    format!("answer_cache_size must be at most {MAX_ANSWER_CACHE_SIZE} (0 turns the cache off)"),
                ));
            }
            s.answer_cache_size = n.into_inner();
        }
        if let Some(n) = raw.udp_receive_buffer {
            let size = *n.get_ref();
            if size != 0 && !(4096..=MAX_UDP_RECEIVE_BUFFER).contains(&size) {
                return Err(self.err_at(
                    n.span(),
                    format!(
                        "udp_receive_buffer must be 0 (the kernel's default) or between 4096 and {MAX_UDP_RECEIVE_BUFFER} octets"
                    ),
                ));
            }
            s.udp_receive_buffer = size;
        }
        if let Some(t) = raw.tcp_idle_timeout {
            s.tcp_idle_timeout = self.positive_duration("tcp_idle_timeout", &t)?;
        }
        if let Some(t) = raw.tcp_message_timeout {
            s.tcp_message_timeout = self.positive_duration("tcp_message_timeout", &t)?;
        }
        if let Some(t) = raw.tcp_max_lifetime {
            s.tcp_max_lifetime = self.positive_duration("tcp_max_lifetime", &t)?;
        }
        if let Some(n) = raw.tcp_max_connections {
            if *n.get_ref() == 0 {
                return Err(self.err_at(n.span(), "tcp_max_connections must be at least 1"));
            }
            s.tcp_max_connections = Some(n.into_inner());
        }
        if let Some(n) = raw.tcp_max_connections_per_client {
            if *n.get_ref() == 0 {
                return Err(self.err_at(
                    n.span(),
                    "tcp_max_connections_per_client must be at least 1",
                ));
            }
            s.tcp_max_connections_per_client = n.into_inner();
        }
        if let Some(p) = raw.pin_path {
            let path = PathBuf::from(p.get_ref());
            if !path.is_absolute() {
                return Err(self.err_at(
                    p.span(),
                    format!("pin_path {:?} must be an absolute path", p.get_ref()),
                ));
            }
            pin_path = path;
        }
        Ok((s, pin_path))
    }

    /// A duration key such as `tcp_idle_timeout`: "10s", "1m 30s"; more than zero.
    fn positive_duration(
        &self,
        key: &str,
        t: &Spanned<String>,
    ) -> Result<std::time::Duration, ConfigError> {
        let d = humantime::parse_duration(t.get_ref().trim()).map_err(|e| {
            self.err_at(
                t.span(),
                format!(
                    "invalid {key} {:?}: {e} (write e.g. \"10s\" or \"1m 30s\")",
                    t.get_ref()
                ),
            )
        })?;
        if d.is_zero() {
            return Err(self.err_at(t.span(), format!("{key} must be longer than 0s")));
        }
        Ok(d)
    }

    /// `[rrl]`: response rate limiting.
    fn rrl(&self, raw: RawRrl) -> Result<RrlSettings, ConfigError> {
        let mut r = RrlSettings::default();
        if let Some(n) = raw.responses_per_second {
            r.responses_per_second = n.into_inner();
        }
        if let Some(w) = raw.window {
            if !(1..=MAX_WINDOW_S).contains(w.get_ref()) {
                return Err(self.err_at(
                    w.span(),
                    format!("window must be between 1 and {MAX_WINDOW_S} seconds"),
                ));
            }
            r.window = w.into_inner();
        }
        if let Some(slip) = raw.slip {
            if *slip.get_ref() > MAX_SLIP {
                return Err(self.err_at(
                    slip.span(),
                    format!("slip must be between 0 (drop every limited answer) and {MAX_SLIP}"),
                ));
            }
            r.slip = slip.into_inner();
        }
        if let Some(p) = raw.ipv4_prefix_length {
            if *p.get_ref() > 32 {
                return Err(self.err_at(p.span(), "ipv4_prefix_length must be between 0 and 32"));
            }
            r.ipv4_prefix_length = p.into_inner();
        }
        if let Some(p) = raw.ipv6_prefix_length {
            if *p.get_ref() > 128 {
                return Err(self.err_at(p.span(), "ipv6_prefix_length must be between 0 and 128"));
            }
            r.ipv6_prefix_length = p.into_inner();
        }
        for n in raw.exempt_clients.unwrap_or_default() {
            if r.exempt_clients.len() == dns_common::MAX_RRL_EXEMPT as usize {
                return Err(self.err_at(
                    n.span(),
                    format!(
                        "exempt_clients: at most {} networks (the kernel's table)",
                        dns_common::MAX_RRL_EXEMPT
                    ),
                ));
            }
            let network = Network::from_str(n.get_ref())
                .map_err(|e| self.err_at(n.span(), format!("exempt_clients: {e}")))?;
            r.exempt_clients.push(network);
        }
        if let Some(n) = raw.table_size {
            if *n.get_ref() == 0 {
                return Err(self.err_at(n.span(), "table_size must be at least 1"));
            }
            r.table_size = n.into_inner();
        }
        Ok(r)
    }

    fn xdp(&self, raw: RawXdp, pin_path: PathBuf) -> Result<XdpSettings, ConfigError> {
        let mut x = XdpSettings {
            pin_path,
            ..XdpSettings::default()
        };
        for i in raw.interfaces.unwrap_or_default() {
            let name = i.get_ref();
            check_interface_name(name).map_err(|e| self.err_at(i.span(), e.to_string()))?;
            if x.interfaces.contains(name) {
                return Err(self.err_at(i.span(), format!("interface {name:?} is given twice")));
            }
            x.interfaces.push(i.into_inner());
        }
        if let Some(mode) = raw.mode {
            x.mode = mode.into_inner();
        }
        if let Some(stale) = raw.stale {
            x.staleness.after = self.stale(&stale)?;
        }
        if let Some(on_stale) = raw.on_stale {
            x.staleness.on_stale = on_stale.into_inner();
        }
        Ok(x)
    }

    /// `[xdp] stale`: a duration within [`MIN_STALE`]..=[`MAX_STALE`], or "0"/"off".
    fn stale(&self, raw: &Spanned<String>) -> Result<Option<Duration>, ConfigError> {
        let text = raw.get_ref().trim();
        if text == "off" || text == "0" {
            return Ok(None);
        }
        let d = humantime::parse_duration(text).map_err(|e| {
            self.err_at(
                raw.span(),
                format!(
                    "invalid stale {:?}: {e} (write e.g. \"30s\", or \"off\")",
                    raw.get_ref()
                ),
            )
        })?;
        if !(MIN_STALE..=MAX_STALE).contains(&d) {
            return Err(self.err_at(
                raw.span(),
                format!(
                    "stale {} must be between {} and {} (or \"off\")",
                    humantime::format_duration(d),
                    humantime::format_duration(MIN_STALE),
                    humantime::format_duration(MAX_STALE)
                ),
            ));
        }
        Ok(Some(d))
    }

    fn events(&self, raw: RawEvents) -> Result<EventSettings, ConfigError> {
        let mut e = EventSettings::default();
        if let Some(log) = raw.log {
            if log.get_ref().trim().is_empty() {
                return Err(self.err_at(log.span(), "events log path is empty"));
            }
            let path = Path::new(log.get_ref());
            e.log = Some(self.source.parent().unwrap_or(Path::new("")).join(path));
        }
        Ok(e)
    }

    /// `[state]`: the state file (relative to the config file's directory) and how old it
    /// may be to be trusted.
    fn state(&self, raw: RawState) -> Result<StateSettings, ConfigError> {
        let mut s = StateSettings::default();
        if let Some(path) = raw.path {
            if path.get_ref().trim().is_empty() {
                return Err(self.err_at(path.span(), "state path is empty"));
            }
            s.path = self
                .source
                .parent()
                .unwrap_or(Path::new(""))
                .join(path.get_ref());
        }
        if let Some(age) = raw.max_age {
            let d = humantime::parse_duration(age.get_ref().trim()).map_err(|e| {
                self.err_at(
                    age.span(),
                    format!(
                        "invalid max_age {:?}: {e} (write e.g. \"10m\" or \"1h\")",
                        age.get_ref()
                    ),
                )
            })?;
            if d.is_zero() || d > MAX_MAX_AGE {
                return Err(self.err_at(
                    age.span(),
                    format!(
                        "max_age {} must be longer than 0s and at most {}",
                        humantime::format_duration(d),
                        humantime::format_duration(MAX_MAX_AGE)
                    ),
                ));
            }
            s.max_age = d;
        }
        Ok(s)
    }

    fn probes(&self, raw: RawProbes) -> Result<ProbeSettings, ConfigError> {
        let mut p = ProbeSettings::default();
        if let Some(n) = raw.max_concurrent {
            if *n.get_ref() == 0 {
                return Err(self.err_at(n.span(), "max_concurrent must be at least 1"));
            }
            p.max_concurrent = Some(n.into_inner());
        }
        Ok(p)
    }

    fn name(&self, s: &Spanned<String>, what: &str) -> Result<Name, ConfigError> {
        parse_name(s.get_ref()).map_err(|e| self.err_at(s.span(), format!("invalid {what}: {e}")))
    }

    fn ttl(&self, ttl: &Spanned<u32>, what: &str) -> Result<u32, ConfigError> {
        let v = *ttl.get_ref();
        if v > MAX_TTL {
            return Err(self.err_at(
                ttl.span(),
                format!("{what} {v} is larger than {MAX_TTL} (RFC 2181 §8)"),
            ));
        }
        Ok(v)
    }

    fn zone(&self, raw: RawZone) -> Result<ZoneSettings, ConfigError> {
        let origin = self.name(&raw.origin, "zone origin")?;
        if raw.file.get_ref().trim().is_empty() {
            return Err(self.err_at(raw.file.span(), "zone file path is empty"));
        }
        let file = self
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .join(raw.file.get_ref());
        let soa = match raw.soa {
            None => None,
            Some(soa) => {
                let soa = soa.into_inner();
                let timer = |v: &Option<Spanned<u32>>, what: &str, default: u32| match v {
                    Some(t) => self.ttl(t, what),
                    None => Ok(default),
                };
                Some(SoaSettings {
                    mname: self.name(&soa.mname, "soa mname")?,
                    rname: self.name(&soa.rname, "soa rname")?,
                    serial: soa.serial.unwrap_or(1),
                    refresh: timer(&soa.refresh, "soa refresh", 3600)?,
                    retry: timer(&soa.retry, "soa retry", 600)?,
                    expire: timer(&soa.expire, "soa expire", 604_800)?,
                    minimum: timer(&soa.minimum, "soa minimum", 60)?,
                    ttl: timer(&soa.ttl, "soa ttl", 3600)?,
                })
            }
        };
        let mut ns = Vec::new();
        let ns_span = raw.ns.as_ref().map(Spanned::span);
        for n in raw.ns.map(Spanned::into_inner).unwrap_or_default() {
            let name = self.name(&n, "ns name")?;
            if ns.contains(&name) {
                return Err(self.err_at(n.span(), format!("ns {name} is given twice")));
            }
            ns.push(name);
        }
        if let Some(span) = ns_span
            && ns.is_empty()
        {
            return Err(self.err_at(span, "ns is empty; leave it out or name a server"));
        }
        let ns_ttl = match &raw.ns_ttl {
            Some(t) if ns.is_empty() => {
                return Err(self.err_at(t.span(), "ns_ttl is set but ns is not"));
            }
            Some(t) => self.ttl(t, "ns_ttl")?,
            None => DEFAULT_NS_TTL,
        };
        Ok(ZoneSettings {
            origin,
            file,
            soa,
            ns,
            ns_ttl,
        })
    }

    fn pool(&self, mut raw: RawPool, regions: &Regions) -> Result<PoolSettings, ConfigError> {
        let name = self.name(&raw.name, "pool name")?;
        let name_span = raw.name.span();
        if name.is_wildcard() || name.iter().any(|l| l == b"*") {
            return Err(self.err_at(
                raw.name.span(),
                format!(
                    "pool name {name} contains a wildcard label; wildcard pools are not supported"
                ),
            ));
        }
        let rtype = match raw.rtype.get_ref().trim().to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            "CNAME" => RecordType::CNAME,
            other => {
                return Err(self.err_at(
                    raw.rtype.span(),
                    format!("pool type must be A, AAAA or CNAME, not {other:?}"),
                ));
            }
        };
        let ttl = match &raw.ttl {
            Some(t) => self.ttl(t, "pool ttl")?,
            None => DEFAULT_POOL_TTL,
        };
        let geo = raw
            .policy
            .as_ref()
            .is_some_and(|p| p.get_ref().name() == GEO_POLICY);
        let raw_regions = raw.regions.take();
        if !geo && let Some(region) = raw_regions.as_ref().and_then(|r| r.keys().next()) {
            return Err(self.err_at(
                region.span(),
                format!(
                    "pool {name} has [pool.regions.{}], but regions are only for policy = \"{GEO_POLICY}\"",
                    region.get_ref()
                ),
            ));
        }
        let (mut policy, all_down) = self.policy(&raw, &name, rtype)?;
        let webhook = match &raw.webhook {
            Some(w) => Some(self.webhook(w)?),
            None => None,
        };
        let pool_probe = match &raw.probe {
            Some(p) => Some(Arc::new(self.probe_spec(p.get_ref(), p.span(), &name)?)),
            None => None,
        };
        let endpoints_span = raw.endpoints.span();
        let raw_endpoints = raw.endpoints.into_inner();
        if raw_endpoints.is_empty() {
            return Err(self.err_at(endpoints_span, format!("pool {name} has no endpoints")));
        }
        if raw_endpoints.len() > MAX_ANSWER_RRS {
            return Err(self.err_at(
                endpoints_span,
                format!(
                    "pool {name} has {} endpoints, at most {MAX_ANSWER_RRS} are supported",
                    raw_endpoints.len()
                ),
            ));
        }
        let mut endpoints: Vec<EndpointSettings> = Vec::with_capacity(raw_endpoints.len());
        // Where each endpoint's priority was given (or its address, for the default).
        let mut priority_spans: Vec<Range<usize>> = Vec::with_capacity(raw_endpoints.len());
        for (position, e) in raw_endpoints.into_iter().enumerate() {
            let e = e.into_inner();
            let address = self.endpoint_address(&name, rtype, &e.address)?;
            if endpoints.iter().any(|x| x.address == address) {
                return Err(self.err_at(
                    e.address.span(),
                    format!("pool {name} lists endpoint {address} twice"),
                ));
            }
            let weight = match &e.weight {
                Some(w) if *w.get_ref() == 0 => {
                    return Err(self.err_at(w.span(), "weight must be at least 1"));
                }
                Some(w) => *w.get_ref(),
                None => 1,
            };
            let (priority, priority_span) = match &e.priority {
                Some(p) => (*p.get_ref(), p.span()),
                None => (
                    u32::try_from(position).unwrap_or(u32::MAX),
                    e.address.span(),
                ),
            };
            let admin = e
                .state
                .as_ref()
                .map_or(AdminState::Follow, |s| *s.get_ref());
            let probe = match (&raw.probe, &e.probe) {
                (None, None) => None,
                (None, Some(over)) => {
                    return Err(self.err_at(
                        over.span(),
                        format!(
                            "endpoint {address} has probe overrides, but pool {name} has no probe; add probe = {{ kind = ... }} to the pool"
                        ),
                    ));
                }
                (Some(_), None) => pool_probe.clone(),
                (Some(pool), Some(over)) => Some(Arc::new(self.probe_spec(
                    &pool.get_ref().overridden_by(over.get_ref()),
                    over.span(),
                    &name,
                )?)),
            };
            endpoints.push(EndpointSettings {
                address,
                weight,
                priority,
                admin,
                probe,
            });
            priority_spans.push(priority_span);
        }
        let pool_regions = if geo {
            let r = self.pool_regions(
                raw_regions,
                &name,
                name_span.clone(),
                rtype,
                pool_probe.is_some(),
                &endpoints,
                regions,
            )?;
            policy = r[0].policy.clone();
            r
        } else {
            Vec::new()
        };
        let priorities: Vec<(&EndpointAddress, u32)> =
            endpoints.iter().map(|e| (&e.address, e.priority)).collect();
        policy.check_priorities(&name, &priorities).map_err(|e| {
            let span = match e.key {
                PolicyKey::Priority(i) => priority_spans.get(i).cloned(),
                _ => None,
            };
            self.err_at(span.unwrap_or_else(|| name_span.clone()), e.to_string())
        })?;
        Ok(PoolSettings {
            name,
            rtype,
            ttl,
            endpoints,
            policy,
            regions: pool_regions,
            all_down,
            probe: pool_probe,
            webhook,
        })
    }

    /// An endpoint (or fallback) address of a pool of type `rtype`.
    fn endpoint_address(
        &self,
        name: &Name,
        rtype: RecordType,
        raw: &Spanned<String>,
    ) -> Result<EndpointAddress, ConfigError> {
        EndpointAddress::parse(raw.get_ref(), name, rtype)
            .map_err(|e| self.err_at(raw.span(), e.to_string()))
    }

    /// `policy`, `count`, `deviation`, `hysteresis`, `all_down` and `fallback`, validated by
    /// the policy module.
    fn policy(
        &self,
        raw: &RawPool,
        name: &Name,
        rtype: RecordType,
    ) -> Result<(Policy, AllDown), ConfigError> {
        let geo = raw
            .policy
            .as_ref()
            .is_some_and(|p| p.get_ref().name() == GEO_POLICY);
        if geo {
            for (key, span) in [
                ("count", raw.count.as_ref().map(Spanned::span)),
                ("deviation", raw.deviation.as_ref().map(Spanned::span)),
                ("hysteresis", raw.hysteresis.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    return Err(self.err_at(
                        span,
                        format!(
                            "pool {name} has policy = \"{GEO_POLICY}\": {key} belongs in its [pool.regions.<name>] tables"
                        ),
                    ));
                }
            }
        }
        let keys = PolicyKeys {
            // A geo pool's own policy is its default region's (set by the caller); its
            // all_down and fallback are the pool's.
            policy: raw
                .policy
                .as_ref()
                .map(|p| p.get_ref().name())
                .filter(|_| !geo),
            count: raw.count.as_ref().map(|c| *c.get_ref()),
            deviation: raw.deviation.as_ref().map(|d| *d.get_ref()),
            hysteresis: raw.hysteresis.as_ref().map(|h| *h.get_ref()),
            all_down: raw.all_down.as_ref().map(|a| a.get_ref().name()),
            fallback: raw.fallback.as_ref().map(|list| {
                list.get_ref()
                    .iter()
                    .map(|a| a.get_ref().as_str())
                    .collect()
            }),
        };
        Policy::from_keys(&keys, name, rtype, raw.probe.is_some()).map_err(|e| {
            let span = match e.key {
                PolicyKey::Policy => raw.policy.as_ref().map(Spanned::span),
                PolicyKey::Count => raw.count.as_ref().map(Spanned::span),
                PolicyKey::Deviation => raw.deviation.as_ref().map(Spanned::span),
                PolicyKey::Hysteresis => raw.hysteresis.as_ref().map(Spanned::span),
                PolicyKey::AllDown => raw.all_down.as_ref().map(Spanned::span),
                PolicyKey::Fallback => raw.fallback.as_ref().map(Spanned::span),
                PolicyKey::FallbackItem(i) => raw
                    .fallback
                    .as_ref()
                    .and_then(|list| list.get_ref().get(i))
                    .map(Spanned::span),
                PolicyKey::Priority(_) => None,
            };
            self.err_at(span.unwrap_or_else(|| raw.name.span()), e.to_string())
        })
    }

    fn webhook(&self, raw: &Spanned<String>) -> Result<String, ConfigError> {
        webhook_url(raw.get_ref())
            .map(|url| url.to_string())
            .map_err(|e| self.err_at(raw.span(), e.to_string()))
    }

    /// A complete probe spec from a pool's `probe` table (or a pool's merged with an
    /// endpoint's overrides), validated by the probe module; `span` is the table the
    /// problem is reported at when no key is to blame.
    fn probe_spec(
        &self,
        raw: &RawProbe,
        span: Range<usize>,
        pool: &Name,
    ) -> Result<ProbeSpec, ConfigError> {
        let keys = ProbeKeys {
            kind: raw.kind.as_ref().map(|k| k.get_ref().name()),
            interval: raw.interval.as_ref().map(|v| v.get_ref().as_str()),
            timeout: raw.timeout.as_ref().map(|v| v.get_ref().as_str()),
            rise: raw.rise.as_ref().map(|v| *v.get_ref()),
            fall: raw.fall.as_ref().map(|v| *v.get_ref()),
            port: raw.port.as_ref().map(|v| *v.get_ref()),
            method: raw.method.as_ref().map(|v| v.get_ref().as_str()),
            path: raw.path.as_ref().map(|v| v.get_ref().as_str()),
            host: raw.host.as_ref().map(|v| v.get_ref().as_str()),
            expect_status: raw
                .expect_status
                .as_ref()
                .map(|list| list.get_ref().iter().map(|s| *s.get_ref()).collect()),
            body_contains: raw.body_contains.as_ref().map(|v| v.get_ref().as_str()),
            tls_verify: raw.tls_verify.as_ref().map(|v| *v.get_ref()),
            qname: raw.qname.as_ref().map(|v| v.get_ref().as_str()),
            qtype: raw.qtype.as_ref().map(|v| v.get_ref().as_str()),
        };
        ProbeSpec::from_keys(&keys, pool).map_err(|e| {
            let at = match e.key {
                ProbeKey::Table => None,
                ProbeKey::Kind => raw.kind.as_ref().map(Spanned::span),
                ProbeKey::Interval => raw.interval.as_ref().map(Spanned::span),
                ProbeKey::Timeout => raw.timeout.as_ref().map(Spanned::span),
                ProbeKey::Rise => raw.rise.as_ref().map(Spanned::span),
                ProbeKey::Fall => raw.fall.as_ref().map(Spanned::span),
                ProbeKey::Port => raw.port.as_ref().map(Spanned::span),
                ProbeKey::Method => raw.method.as_ref().map(Spanned::span),
                ProbeKey::Path => raw.path.as_ref().map(Spanned::span),
                ProbeKey::Host => raw.host.as_ref().map(Spanned::span),
                ProbeKey::ExpectStatus => raw.expect_status.as_ref().map(Spanned::span),
                ProbeKey::ExpectStatusItem(i) => raw
                    .expect_status
                    .as_ref()
                    .and_then(|list| list.get_ref().get(i))
                    .map(Spanned::span),
                ProbeKey::BodyContains => raw.body_contains.as_ref().map(Spanned::span),
                ProbeKey::TlsVerify => raw.tls_verify.as_ref().map(Spanned::span),
                ProbeKey::Qname => raw.qname.as_ref().map(Spanned::span),
                ProbeKey::Qtype => raw.qtype.as_ref().map(Spanned::span),
            };
            self.err_at(at.unwrap_or(span), e.to_string())
        })
    }

    /// The pool's name must be in a zone (the most specific one answers), not at or under a
    /// delegation, and must not clash with the zone's own data at that name.
    fn check_pool_in_zones(
        &self,
        pool: &PoolSettings,
        span: Range<usize>,
        zones: &[ZoneSettings],
        data: &[Zone],
    ) -> Result<(), ConfigError> {
        let name = &pool.name;
        let Some((settings, zone)) = zones
            .iter()
            .zip(data)
            .filter(|(z, _)| z.origin.zone_of(name))
            .max_by_key(|(z, _)| z.origin.num_labels())
        else {
            let origins: Vec<String> = zones.iter().map(|z| z.origin.to_string()).collect();
            return Err(self.err_at(
                span,
                format!(
                    "pool {name} is outside every configured zone ({})",
                    origins.join(", ")
                ),
            ));
        };
        let file = settings.file.display();
        let key = LowerName::new(name);
        if let Some(cut) = zone.find_cut(&key) {
            return Err(self.err_at(
                span,
                format!(
                    "pool {name} is at or below the delegation {} in {file}; the child zone answers there",
                    cut.0
                ),
            ));
        }
        let types = zone.types_at(&key);
        let clash = match pool.rtype {
            RecordType::CNAME => types.first().map(|t| {
                format!(
                    "pool {name} is a CNAME, but {file} also has {t} records at that name (a CNAME cannot coexist with other data)"
                )
            }),
            rtype => types.iter().find(|&&t| t == rtype || t == RecordType::CNAME).map(|t| {
                format!(
                    "pool {name} has type {rtype}, but {file} also has {t} records at that name; remove them from the zone file"
                )
            }),
        };
        match clash {
            Some(problem) => Err(self.err_at(span, problem)),
            None => Ok(()),
        }
    }
}

/// toml's message for `e`; where it has none (a control character in a comment), what is
/// at the error's position in `text`.
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end();
    if !message.is_empty() {
        return message.to_string();
    }
    let at = e
        .span()
        .and_then(|span| text.get(span.start..))
        .and_then(|rest| rest.chars().next());
    match at {
        Some(c) if c.is_control() => format!(
            "control character U+{:04X}: TOML allows none but tab, in comments too",
            u32::from(c)
        ),
        Some(c) => format!("unexpected {c:?}"),
        None => "invalid TOML".to_string(),
    }
}
