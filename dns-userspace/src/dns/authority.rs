//! The authoritative answer path: one query message in, one response message out.
//!
//! Pure (no sockets, no clocks), so the UDP and TCP servers, the tests and the XDP
//! comparison tests all call the same [`Authority::respond`] with a [`Request`]: the
//! message with its client, transport and (once parsed) EDNS options, which reach the
//! lookup as a [`Context`].
//!
//! What it answers, following RFC 1034 §4.3.2 as Knot and NSD do:
//! - **Pools first**: a query at a pool name (case-insensitive) whose type the pool answers
//!   gets exactly the pool's records, owner = the query name as sent, and nothing else but
//!   the OPT record: the same message the XDP path builds. A query at a pool name of a type
//!   the pool does not answer continues into the zone (NODATA, or the zone's own records of
//!   other types at that name).
//! - **Zone data**: exact matches, CNAMEs (followed inside the zone, at most
//!   [`MAX_CNAME_CHAIN`] links, RCODE from the last link as in RFC 6604), wildcards
//!   (RFC 4592), empty non-terminals (NODATA, RFC 8020), referrals below zone cuts (AA=0,
//!   NS in authority, glue in additional), NXDOMAIN/NODATA with the SOA in authority and
//!   TTL min(SOA TTL, MINIMUM) (RFC 2308). A and AAAA of in-zone NS/MX/SRV targets go to the
//!   additional section when they fit.
//! - **ANY** (RFC 8482): answered with one RRset, the one of the lowest type number at the
//!   name (a pool's records at a pool name); over TCP as well.
//! - **AXFR/IXFR**: REFUSED (zone transfers are not offered). MAILA/MAILB: NOTIMP. Other
//!   meta types (OPT, TSIG, TKEY, 128..=250) as QTYPE: FORMERR.
//! - **Errors**: REFUSED for names outside every zone and for classes other than IN;
//!   NOTIMP for opcodes other than QUERY; FORMERR for undecodable messages (header only,
//!   ID echoed), QDCOUNT ≠ 1, more than one OPT, records in the answer or authority
//!   section; BADVERS for EDNS versions other than 0. Responses (QR=1) and messages shorter
//!   than a header get no answer.
//! - **Header**: ID and opcode echoed, QR=1, RD and CD copied, RA=0, AD=0, AA=1 on
//!   authoritative answers (including NXDOMAIN/NODATA), the question echoed as sent (the
//!   client's 0x20 case kept).
//! - **EDNS** (RFC 6891): OPT in the response iff the query had one, with our UDP payload
//!   size, version 0, DO copied (RFC 3225), no options.
//! - **Size**: over UDP at most min(max(512, the client's payload size), our
//!   `edns_udp_size`), 512 without EDNS ([`dns_common::size::max_reply`], the kernel's rule
//!   too; RFC 6891 §6.2.5). Optional additional records are dropped first; if the rest still
//!   does not fit, the response is header + question (+ OPT) with TC=1 (RFC 2181 §9,
//!   RFC 7766). Over TCP at most 65535. A [truncated request](Request::truncated) (a
//!   rate-limited answer that slips) gets that TC=1 response whatever its size.
//!
//! [`Authority::response`] returns the same bytes with what the server counts and caches
//! them by: the RCODE, the query type, the pool that answered, the [`ResponseKind`], and
//! whether the answer [varies](Response::varies) from query to query.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts},
    rr::{DNSClass, LowerName, Name, RData, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};

use dns_common::ecs::{self, Ecs};
use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::{
    datapath::pools::{PoolAnswer, PoolTable},
    dns::{
        request::{Context, PLAIN_UDP_LIMIT, Request},
        zone::Zone,
    },
    geo::RegionTable,
};

/// Longest CNAME chain followed inside a zone.
pub const MAX_CNAME_CHAIN: usize = 8;

/// Size of the DNS header; the question starts here.
const HEADER_LEN: usize = 12;

/// QTYPEs MAILB and MAILA (RFC 1035 §3.2.3, obsolete).
const MAILB: u16 = 253;
const MAILA: u16 = 254;

/// All zones and pools, answering queries. A reload replaces them as a whole
/// ([`Authority::replace`]): each query is answered entirely from one generation.
#[derive(Debug)]
pub struct Authority {
    current: ArcSwap<Served>,
    /// Client address → region for pools that answer by region ([`Authority::set_regions`]).
    regions: ArcSwap<RegionTable>,
    /// How many times [`Authority::replace`] ran (numbers each [`Served`]).
    reloads: AtomicU64,
}

/// When the answers of an [`Authority`] last changed: the reload that made what it serves
/// and that pool table's [generation](PoolTable::generation). Equal generations give equal
/// answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerGeneration {
    reload: u64,
    pools: u64,
    edns_udp_size: u16,
}

impl AnswerGeneration {
    /// The EDNS UDP size served in this generation.
    pub fn edns_udp_size(&self) -> u16 {
        self.edns_udp_size
    }
}

/// One generation of what the authority serves.
#[derive(Debug)]
struct Served {
    zones: BTreeMap<LowerName, Zone>,
    pools: Arc<PoolTable>,
    edns_udp_size: u16,
    /// Which [`Authority::replace`] made it (0: none).
    reload: u64,
}

/// The sections of a response, before encoding.
#[derive(Debug, Default)]
struct Reply {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    /// Additional records the response needs (in-domain glue of a referral).
    additionals: Vec<Record>,
    /// Additional records dropped first when the response is too big.
    optional: Vec<Record>,
    /// The pool whose records answer the query (at the query name or at the end of a
    /// CNAME chain).
    pool: Option<LowerName>,
    /// Records were drawn at random (a weighted pool), or picked by the client's region:
    /// the next query may get others.
    varies: bool,
    /// The ECS SCOPE PREFIX-LENGTH of the answer: the client's region prefix length when a
    /// pool answering by region answered, else 0.
    scope: u8,
}

/// What kind of answer a response is, the way response rate limiting tells them apart
/// (BIND's categories).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// NOERROR with records in the answer section.
    Answer,
    /// NOERROR, authoritative, no answer records (the name exists, the type does not).
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// NOERROR, not authoritative: a referral to a child zone.
    Referral,
    /// Any other RCODE (REFUSED, FORMERR, SERVFAIL, NOTIMP, BADVERS, ...).
    Error,
}

impl ResponseKind {
    /// Every kind, in a fixed order (counter arrays are indexed by it).
    pub const ALL: [ResponseKind; 5] = [
        Self::Answer,
        Self::NoData,
        Self::NxDomain,
        Self::Referral,
        Self::Error,
    ];

    /// Stable lower-case name (the `reason` of the rate limiter's counters).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::NoData => "nodata",
            Self::NxDomain => "nxdomain",
            Self::Referral => "referral",
            Self::Error => "error",
        }
    }

    fn of(reply: &Reply) -> Self {
        match reply.rcode {
            ResponseCode::NoError if !reply.answers.is_empty() => Self::Answer,
            ResponseCode::NoError if reply.authoritative => Self::NoData,
            ResponseCode::NoError => Self::Referral,
            ResponseCode::NXDomain => Self::NxDomain,
            _ => Self::Error,
        }
    }
}

/// A response and what the server counts and caches it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The message to send.
    pub bytes: Vec<u8>,
    /// Its RCODE (BADVERS included).
    pub rcode: ResponseCode,
    /// The query type, when the query had one question.
    pub qtype: Option<RecordType>,
    /// The pool whose records answer it.
    pub pool: Option<LowerName>,
    pub kind: ResponseKind,
    /// The records were drawn at random (a weighted pool): the same query may get another
    /// response, so this one must not be reused for it.
    pub varies: bool,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }
}

impl Authority {
    /// Serves `zones` (at most one per origin; later duplicates are ignored) and the pools in
    /// `pools`, advertising `edns_udp_size` (at least 512) in OPT records.
    pub fn new(zones: Vec<Zone>, pools: Arc<PoolTable>, edns_udp_size: u16) -> Self {
        Self {
            current: ArcSwap::from_pointee(Served::new(zones, pools, edns_udp_size, 0)),
            regions: ArcSwap::from_pointee(RegionTable::default()),
            reloads: AtomicU64::new(0),
        }
    }

    /// Maps clients to regions with `regions` from the next query on (swapped whole: a
    /// query sees the old table or the new one). Answers that depend on the region are
    /// never cached (they [vary](Response::varies)), so no cached answer outlives it.
    pub fn set_regions(&self, regions: Arc<RegionTable>) {
        self.regions.store(regions);
    }

    /// The region table in use.
    pub fn regions(&self) -> Arc<RegionTable> {
        self.regions.load_full()
    }

    /// Serves these instead, from the next query on (a reload).
    pub fn replace(&self, zones: Vec<Zone>, pools: Arc<PoolTable>, edns_udp_size: u16) {
        let reload = self.reloads.fetch_add(1, Ordering::Relaxed) + 1;
        self.current
            .store(Arc::new(Served::new(zones, pools, edns_udp_size, reload)));
    }

    /// The pool table this authority answers pool names from.
    pub fn pools(&self) -> Arc<PoolTable> {
        self.current.load().pools.clone()
    }

    /// Changes whenever an answer of this authority may change: a reload (new zones, a new
    /// pool table, another EDNS size) or a change of a pool's answer. A saved response is
    /// valid for as long as the generation read *before* computing it is current.
    pub fn answer_generation(&self) -> AnswerGeneration {
        let served = self.current.load();
        AnswerGeneration {
            reload: served.reload,
            pools: served.pools.generation(),
            edns_udp_size: served.edns_udp_size,
        }
    }

    /// Our EDNS UDP payload size (what OPT records advertise and UDP responses are capped at).
    pub fn edns_udp_size(&self) -> u16 {
        self.current.load().edns_udp_size
    }

    /// Response bytes for one query message, or None when nothing must be sent (the message
    /// is a response, or shorter than a DNS header).
    pub fn respond(&self, request: &Request<'_>) -> Option<Vec<u8>> {
        self.response(request).map(|r| r.bytes)
    }

    /// [`respond`](Self::respond), with what the server counts and caches the response by.
    pub fn response(&self, request: &Request<'_>) -> Option<Response> {
        self.current.load().response(request, &self.regions.load())
    }
}

impl Served {
    fn new(zones: Vec<Zone>, pools: Arc<PoolTable>, edns_udp_size: u16, reload: u64) -> Self {
        let mut by_origin = BTreeMap::new();
        for zone in zones {
            let key = zone.apex().clone();
            if by_origin.contains_key(&key) {
                tracing::warn!(zone = %key, "zone given twice, serving the first");
                continue;
            }
            by_origin.insert(key, zone);
        }
        Self {
            zones: by_origin,
            pools,
            edns_udp_size: edns_udp_size.max(PLAIN_UDP_LIMIT),
            reload,
        }
    }

    fn response(&self, request: &Request<'_>, regions: &RegionTable) -> Option<Response> {
        let header = hickory_proto::op::Header::read(&mut BinDecoder::new(request.message)).ok()?;
        let query = header.metadata;
        if query.message_type == MessageType::Response {
            return None;
        }
        let mut meta = Metadata::response_from_request(&query);
        let parsed = Message::from_vec(request.message);

        if query.op_code != OpCode::Query {
            meta.response_code = ResponseCode::NotImp;
            return match &parsed {
                Ok(m) => {
                    let question = (m.queries.len() == 1).then(|| &m.queries[0]);
                    let ctx = Context::new(request, m.edns.as_ref());
                    self.finish(meta, question, &ctx, Reply::default())
                }
                Err(_) => self.finish(meta, None, &Context::new(request, None), Reply::default()),
            };
        }
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                tracing::trace!(id = query.id, client = %request.client, "undecodable query: {e}");
                meta.response_code = ResponseCode::FormErr;
                return self.finish(meta, None, &Context::new(request, None), Reply::default());
            }
        };
        let ctx = Context::new(request, msg.edns.as_ref()).with_regions(regions);
        if msg.queries.len() != 1 {
            meta.response_code = ResponseCode::FormErr;
            return self.finish(meta, None, &ctx, Reply::default());
        }
        let question = &msg.queries[0];
        let reply = self.answer(&ctx, &msg, question);
        meta.response_code = reply.rcode;
        meta.authoritative = reply.authoritative;
        self.finish(meta, Some(question), &ctx, reply)
    }

    /// Checks the query and looks up the answer.
    fn answer(&self, ctx: &Context<'_>, msg: &Message, question: &Query) -> Reply {
        if ctx.edns.is_some_and(|e| e.version() != 0) {
            return Reply::error(ResponseCode::BADVERS);
        }
        if let Ecs::FormErr(reason) = ctx.ecs {
            // RFC 7871 §6, §7.1.
            tracing::trace!(client = %ctx.client(), "ECS option: {}", reason.name());
            return Reply::error(ResponseCode::FormErr);
        }
        if !msg.answers.is_empty() || !msg.authorities.is_empty() {
            return Reply::error(ResponseCode::FormErr);
        }
        let qtype = question.query_type();
        match u16::from(qtype) {
            41 | 128..=250 => return Reply::error(ResponseCode::FormErr),
            MAILB | MAILA => return Reply::error(ResponseCode::NotImp),
            _ if matches!(qtype, RecordType::AXFR | RecordType::IXFR) => {
                return Reply::error(ResponseCode::Refused);
            }
            _ => {}
        }
        if question.query_class() != DNSClass::IN {
            return Reply::error(ResponseCode::Refused);
        }
        self.lookup(ctx, question.name(), qtype)
    }

    /// The answer to `qtype` at `qname` for the query in `ctx` (the place where the
    /// client's address or subnet can select an answer; an answer that does must set
    /// `Reply::varies`, or the server reuses it for other clients).
    fn lookup(&self, ctx: &Context<'_>, qname: &Name, qtype: RecordType) -> Reply {
        tracing::trace!(client = %ctx.client(), transport = %ctx.transport(), %qname, %qtype, "lookup");
        let key = LowerName::new(qname);
        // Records owned by the query name get the lower-case name, which `encode` compresses
        // to a pointer at the question: on the wire they carry the client's case.
        let owner = Name::from(&key);
        // Pools first, exactly as the XDP path answers them. A pool whose endpoints are all
        // down with `all_down = "servfail"` answers SERVFAIL (the kernel passes it here).
        // The pool (and the client's region) looked up once for both.
        if let Some((pool, geo)) = self.pool_for(ctx, &key)
            && pool.answers(qtype)
        {
            if pool.servfail() {
                return Reply::error(ResponseCode::ServFail);
            }
            if !pool.rdata.is_empty() {
                return Reply {
                    authoritative: true,
                    answers: pool.records(&owner),
                    pool: Some(key),
                    varies: pool.varies() || geo.is_some(),
                    scope: geo.unwrap_or(0),
                    ..Reply::default()
                };
            }
        }
        let Some(zone) = self.zone_for(&key, qtype) else {
            return Reply::error(ResponseCode::Refused);
        };
        let mut reply = Reply {
            authoritative: true,
            ..Reply::default()
        };
        let mut seen = vec![key.clone()];
        self.resolve(ctx, zone, owner, &key, qtype, &mut reply, &mut seen);
        if reply.rcode == ResponseCode::NoError && reply.authoritative {
            self.add_additionals(ctx, zone, &mut reply);
        }
        reply
    }

    /// The answer of the pool at `name` for this query's client, and for a pool that
    /// answers by region the ECS scope of that answer (the client's region prefix length,
    /// see [`Context::region`]).
    fn pool_for(
        &self,
        ctx: &Context<'_>,
        name: &LowerName,
    ) -> Option<(Arc<PoolAnswer>, Option<u8>)> {
        if !self.pools.is_geo(name) {
            return self.pools.get(name).map(|p| (p, None));
        }
        let (region, scope) = ctx.region();
        self.pools.get_in(name, region).map(|p| (p, Some(scope)))
    }

    /// The most specific zone containing `name`; for DS at a zone's apex the parent zone
    /// when we serve it (the DS RRset lives on the parent side of the cut, RFC 4035 §3.1.4.1).
    fn zone_for(&self, name: &LowerName, qtype: RecordType) -> Option<&Zone> {
        let mut candidate = name.clone();
        let mut skip_apex = qtype == RecordType::DS;
        loop {
            if let Some(zone) = self.zones.get(&candidate) {
                if !(skip_apex && candidate == *name && !candidate.is_root()) {
                    return Some(zone);
                }
                skip_apex = false;
            }
            if candidate.is_root() {
                // A DS query at the apex of our only zone for that name: answer it there.
                return self.zones.get(name);
            }
            candidate = candidate.base_name();
        }
    }

    /// Whether `name` exists: owns zone data or a pool, or is an empty non-terminal.
    fn exists(&self, zone: &Zone, name: &LowerName) -> bool {
        zone.has_name_at_or_below(name) || self.pools.has_at_or_below(name)
    }

    /// Answers `qtype` at `name` (owner `owner`) from `zone` into `reply`.
    #[allow(clippy::too_many_arguments)]
    fn resolve(
        &self,
        ctx: &Context<'_>,
        zone: &Zone,
        owner: Name,
        name: &LowerName,
        qtype: RecordType,
        reply: &mut Reply,
        seen: &mut Vec<LowerName>,
    ) {
        if let Some((cut, ns)) = zone.find_cut(name) {
            let at_cut = LowerName::new(cut) == *name;
            if !(at_cut && qtype == RecordType::DS) {
                // Below a cut: refer, unless we got here through a CNAME, where the
                // resolver follows the chain on its own.
                if reply.answers.is_empty() {
                    Self::referral(zone, cut, ns, reply);
                }
                return;
            }
        }
        if !reply.answers.is_empty()
            && let Some((pool, geo)) = self.pool_for(ctx, name)
            && pool.answers(qtype)
            && !pool.rdata.is_empty()
        {
            reply.answers.extend(pool.records(&owner));
            reply.pool.get_or_insert_with(|| name.clone());
            reply.varies |= pool.varies() || geo.is_some();
            reply.scope = reply.scope.max(geo.unwrap_or(0));
            return;
        }
        if let Some(node) = zone.node(name) {
            return self.answer_node(ctx, zone, node.rrsets(), owner, qtype, reply, seen);
        }
        if self.exists(zone, name) {
            reply.authorities.push(zone.negative_soa());
            return;
        }
        match self.wildcard(zone, name) {
            Some(source) => {
                let node = zone.node(&source).map(|n| n.rrsets());
                if let Some(rrsets) = node {
                    self.answer_node(ctx, zone, rrsets, owner, qtype, reply, seen);
                }
            }
            None => {
                reply.rcode = ResponseCode::NXDomain;
                reply.authorities.push(zone.negative_soa());
            }
        }
    }

    /// The source of synthesis for a name that does not exist (RFC 4592 §3.3.1): `*.` plus
    /// the closest encloser, if the zone has it.
    fn wildcard(&self, zone: &Zone, name: &LowerName) -> Option<LowerName> {
        let mut encloser = name.base_name();
        while !self.exists(zone, &encloser) {
            if !zone.contains(&encloser) || encloser.is_root() {
                return None;
            }
            encloser = encloser.base_name();
        }
        let source = LowerName::new(&Name::from(&encloser).prepend_label("*").ok()?);
        zone.node(&source).is_some().then_some(source)
    }

    /// Answers from the RRsets of one node (or of the wildcard standing in for it).
    #[allow(clippy::too_many_arguments)]
    fn answer_node<'z>(
        &self,
        ctx: &Context<'_>,
        zone: &'z Zone,
        mut rrsets: impl Iterator<Item = (RecordType, &'z [Record])>,
        owner: Name,
        qtype: RecordType,
        reply: &mut Reply,
        seen: &mut Vec<LowerName>,
    ) {
        let with_owner = |rrset: &[Record]| {
            rrset
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.name = owner.clone();
                    r
                })
                .collect::<Vec<_>>()
        };
        if qtype == RecordType::ANY {
            // RFC 8482 §4.2: one RRset is enough.
            match rrsets.next() {
                Some((_, rrset)) => reply.answers.extend(with_owner(rrset)),
                None => reply.authorities.push(zone.negative_soa()),
            }
            return;
        }
        let mut cname = None;
        for (rtype, rrset) in rrsets {
            if rtype == qtype {
                reply.answers.extend(with_owner(rrset));
                return;
            }
            if rtype == RecordType::CNAME {
                cname = Some(rrset);
            }
        }
        let Some(cname) = cname else {
            reply.authorities.push(zone.negative_soa());
            return;
        };
        reply.answers.extend(with_owner(cname));
        let Some(RData::CNAME(target)) = cname.first().map(|r| &r.data) else {
            return;
        };
        let target_key = LowerName::new(&target.0);
        if seen.len() > MAX_CNAME_CHAIN || seen.contains(&target_key) || !zone.contains(&target_key)
        {
            return;
        }
        seen.push(target_key.clone());
        self.resolve(ctx, zone, target.0.clone(), &target_key, qtype, reply, seen);
    }

    /// A referral to the child zone at `cut`: AA=0, the NS RRset in authority, addresses of
    /// name servers inside the zone as glue (required when inside the child, optional
    /// otherwise, RFC 9471).
    fn referral(zone: &Zone, cut: &Name, ns: &[Record], reply: &mut Reply) {
        reply.authoritative = false;
        reply.authorities.extend(ns.iter().cloned());
        for r in ns {
            let RData::NS(target) = &r.data else { continue };
            let key = LowerName::new(&target.0);
            if !zone.contains(&key) {
                continue;
            }
            let in_domain = cut.zone_of(&target.0);
            for rtype in [RecordType::A, RecordType::AAAA] {
                for glue in zone.rrset(&key, rtype).unwrap_or_default() {
                    let section = if in_domain {
                        &mut reply.additionals
                    } else {
                        &mut reply.optional
                    };
                    if !section.contains(glue) {
                        section.push(glue.clone());
                    }
                }
            }
        }
    }

    /// Addresses of in-zone NS, MX and SRV targets of the answer (optional additional data).
    fn add_additionals(&self, ctx: &Context<'_>, zone: &Zone, reply: &mut Reply) {
        let mut targets: Vec<&Name> = Vec::new();
        for r in &reply.answers {
            let target = match &r.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        let mut extra = Vec::new();
        for target in targets {
            let key = LowerName::new(target);
            if !zone.contains(&key) {
                continue;
            }
            let pool = self.pool_for(ctx, &key);
            for rtype in [RecordType::A, RecordType::AAAA] {
                match &pool {
                    Some((p, geo)) if p.rtype == rtype && !p.rdata.is_empty() => {
                        extra.extend(p.records(target));
                        reply.varies |= p.varies() || geo.is_some();
                        reply.scope = reply.scope.max(geo.unwrap_or(0));
                    }
                    _ => extra.extend(zone.rrset(&key, rtype).unwrap_or_default().iter().cloned()),
                }
            }
        }
        for r in extra {
            if !reply.answers.contains(&r) && !reply.optional.contains(&r) {
                reply.optional.push(r);
            }
        }
    }

    /// Encodes the response within the size limit of the query's transport.
    fn finish(
        &self,
        meta: Metadata,
        question: Option<&Query>,
        ctx: &Context<'_>,
        reply: Reply,
    ) -> Option<Response> {
        let edns = ctx.edns.map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(self.edns_udp_size);
            e.set_version(0);
            e.set_dnssec_ok(req.flags().dnssec_ok);
            // A valid ECS option is echoed with the answer's scope (RFC 7871 §7.2.1), as
            // the kernel does: the same octets (`dns_common::ecs::echo`).
            if let Ecs::Subnet { subnet, .. } = ctx.ecs
                && meta.response_code != ResponseCode::FormErr
            {
                let scope = if subnet.source == 0 { 0 } else { reply.scope };
                let mut option = [0u8; ecs::MAX_OPTION_LEN];
                let n = ecs::echo(&subnet, scope, &mut option);
                e.options_mut()
                    .insert(EdnsOption::Unknown(ecs::OPTION_CODE, option[4..n].to_vec()));
            }
            e
        });
        let limit = ctx.reply_limit(self.edns_udp_size);
        let rcode = meta.response_code;
        let response = |bytes| Response {
            bytes,
            rcode,
            qtype: question.map(Query::query_type),
            pool: reply.pool.clone(),
            kind: ResponseKind::of(&reply),
            varies: reply.varies,
        };
        if ctx.request.truncated {
            return self
                .truncated(meta, question, edns.as_ref(), limit)
                .map(response);
        }
        let r = &reply;
        let attempt = |optional: &[Record]| {
            encode(
                meta,
                question,
                &r.answers,
                &r.authorities,
                &r.additionals,
                optional,
                edns.as_ref(),
                limit,
            )
        };
        // Everything; then without the optional additional records.
        let mut result = attempt(&r.optional);
        if matches!(result, Ok((_, true))) && !r.optional.is_empty() {
            result = attempt(&[]);
        }
        match result {
            Ok((bytes, false)) => return Some(response(bytes)),
            Ok((_, true)) => {}
            Err(e) => tracing::warn!(id = meta.id, "cannot encode response: {e}"),
        }
        self.truncated(meta, question, edns.as_ref(), limit)
            .map(response)
    }

    /// Header and question only, TC=1 (RFC 2181 §9): the client retries over TCP.
    fn truncated(
        &self,
        meta: Metadata,
        question: Option<&Query>,
        edns: Option<&Edns>,
        limit: u16,
    ) -> Option<Vec<u8>> {
        let mut truncated = meta;
        truncated.truncation = true;
        match encode(truncated, question, &[], &[], &[], &[], edns, limit) {
            Ok((bytes, _)) => Some(bytes),
            Err(e) => {
                tracing::warn!(id = meta.id, "cannot encode truncated response: {e}");
                None
            }
        }
    }
}

/// Encodes one message with at most `limit` octets; true if something did not fit.
///
/// The question is encoded with its name in lower case, so names equal to the query name
/// compress against it whatever case the client used, and then its octets are overwritten
/// with the name as the client sent it (same length and label structure). This is what
/// the XDP path does: its precomputed answer RRs, encoded after a lower-case question,
/// follow the client's question unchanged.
#[allow(clippy::too_many_arguments)]
fn encode(
    meta: Metadata,
    question: Option<&Query>,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    optional: &[Record],
    edns: Option<&Edns>,
    limit: u16,
) -> Result<(Vec<u8>, bool), hickory_proto::ProtoError> {
    let lower = question.map(|q| {
        let mut lower = q.clone();
        lower.name = q.name.to_lowercase();
        lower
    });
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(limit);
    let header = emit_message_parts(
        &meta,
        &mut lower.iter(),
        &mut answers.iter(),
        &mut authorities.iter(),
        &mut additionals.iter().chain(optional),
        edns,
        None,
        &mut encoder,
    )?;
    if let Some(q) = question {
        let sent = q.name.to_bytes()?;
        let at = HEADER_LEN..HEADER_LEN + sent.len();
        match buf.get_mut(at) {
            Some(dst) if dst.eq_ignore_ascii_case(&sent) => dst.copy_from_slice(&sent),
            _ => {
                return Err(hickory_proto::ProtoError::from(
                    "question name changed length when lower-cased",
                ));
            }
        }
    }
    Ok((buf, header.metadata.truncation))
}

#[cfg(test)]
mod tests;
