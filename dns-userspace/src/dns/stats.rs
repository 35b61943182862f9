//! The server's counters: responses by RCODE, query type and transport, answers per pool,
//! rate-limited answers by action and kind, queries rejected by the acceptance rules, and
//! TCP connection events.
//!
//! Each UDP worker owns one [`Counters`] and is its only writer, so an increment is a
//! relaxed load and store on memory no other core writes (no locked instruction, no shared
//! cache line); the TCP connections share one set and add atomically. Readers sum the sets
//! ([`ServerStats::snapshot`]); a snapshot taken while workers count may be a few
//! increments behind, never torn.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use dns_common::accept::Reject;
use hickory_proto::{
    op::ResponseCode,
    rr::{LowerName, RecordType},
};

use crate::dns::{authority::ResponseKind, request::Transport};

/// The query types counted by name; every other type is counted as `other`.
pub const QTYPES: [RecordType; 18] = [
    RecordType::A,
    RecordType::NS,
    RecordType::CNAME,
    RecordType::SOA,
    RecordType::PTR,
    RecordType::MX,
    RecordType::TXT,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::NAPTR,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::SVCB,
    RecordType::HTTPS,
    RecordType::CAA,
    RecordType::ANY,
    RecordType::AXFR,
    RecordType::IXFR,
];
/// Label slots: the named types, `other` (and no question at all).
const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// The RCODEs counted by name; every other one is counted as `other`.
pub const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BADVERS,
];
const RCODE_SLOTS: usize = RCODES.len() + 1;

/// What the rate limiter did with an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RrlAction {
    /// Over the limit (then either slipped or dropped).
    Limited,
    /// Sent truncated.
    Slipped,
    /// Not sent.
    Dropped,
}

impl RrlAction {
    pub const ALL: [RrlAction; 3] = [Self::Limited, Self::Slipped, Self::Dropped];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Limited => "limited",
            Self::Slipped => "slipped",
            Self::Dropped => "dropped",
        }
    }
}

/// What happened to a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    /// Accepted and served.
    Accepted,
    /// Closed right after accept: the client already had its share of connections.
    PerClientLimit,
    /// Closed right after accept: every connection slot was busy.
    TotalLimit,
    /// Closed to make room for a new connection while idle between queries (the one idle
    /// the longest).
    Evicted,
    /// Closed after the idle timeout without a complete query.
    IdleTimeout,
    /// Closed because a message did not arrive complete within its deadline, or a response
    /// could not be written within it.
    MessageTimeout,
    /// Closed at the end of its maximum lifetime.
    Lifetime,
    /// `accept` failed (e.g. out of file descriptors).
    AcceptError,
}

impl TcpEvent {
    pub const ALL: [TcpEvent; 8] = [
        Self::Accepted,
        Self::PerClientLimit,
        Self::TotalLimit,
        Self::Evicted,
        Self::IdleTimeout,
        Self::MessageTimeout,
        Self::Lifetime,
        Self::AcceptError,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::PerClientLimit => "per_client_limit",
            Self::TotalLimit => "total_limit",
            Self::Evicted => "evicted",
            Self::IdleTimeout => "idle_timeout",
            Self::MessageTimeout => "message_timeout",
            Self::Lifetime => "lifetime",
            Self::AcceptError => "accept_error",
        }
    }
}

/// Index of a query type's counter.
pub fn qtype_slot(qtype: Option<RecordType>) -> u8 {
    let slot = qtype.and_then(|t| QTYPES.iter().position(|&q| q == t));
    slot.unwrap_or(QTYPES.len()) as u8
}

/// Index of an RCODE's counter.
pub fn rcode_slot(rcode: ResponseCode) -> u8 {
    RCODES
        .iter()
        .position(|&r| r == rcode)
        .unwrap_or(RCODES.len()) as u8
}

fn kind_slot(kind: ResponseKind) -> usize {
    ResponseKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or_default()
}

/// The counters one writer (a UDP worker) or the TCP connections keep.
#[derive(Debug)]
pub struct Counters {
    transport: Transport,
    /// Several writers: add atomically.
    shared: bool,
    responses: [[AtomicU64; QTYPE_SLOTS]; RCODE_SLOTS],
    rrl: [[AtomicU64; ResponseKind::ALL.len()]; RrlAction::ALL.len()],
    rejected: [AtomicU64; Reject::COUNT],
    tcp: [AtomicU64; TcpEvent::ALL.len()],
    /// Answers per pool: a counter per pool name, handed out once per name (a cached
    /// answer keeps its pool's counter, so counting a hit needs no lookup).
    pools: Mutex<HashMap<LowerName, Arc<AtomicU64>>>,
}

impl Counters {
    /// Counters for one writer over `transport`, or (`shared`) for several.
    pub fn new(transport: Transport, shared: bool) -> Self {
        Self {
            transport,
            shared,
            responses: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            rrl: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            tcp: std::array::from_fn(|_| AtomicU64::new(0)),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// One more on `counter`.
    #[inline]
    pub fn bump(&self, counter: &AtomicU64) {
        if self.shared {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            // The only writer: no read-modify-write needed.
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// A response sent, by its counter slots ([`rcode_slot`], [`qtype_slot`]).
    #[inline]
    pub fn response(&self, rcode: u8, qtype: u8) {
        self.bump(&self.responses[usize::from(rcode)][usize::from(qtype)]);
    }

    /// The answer counter of `pool`, created on first use.
    pub fn pool(&self, pool: &LowerName) -> Arc<AtomicU64> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.entry(pool.clone()).or_default().clone()
    }

    /// A query rejected by the acceptance rules.
    pub fn reject(&self, reason: Reject) {
        self.bump(&self.rejected[reason as usize]);
    }

    /// A rate-limited answer of `kind`.
    pub fn rrl(&self, action: RrlAction, kind: ResponseKind) {
        let a = RrlAction::ALL
            .iter()
            .position(|&x| x == action)
            .unwrap_or(0);
        self.bump(&self.rrl[a][kind_slot(kind)]);
    }

    /// A TCP connection event.
    pub fn tcp(&self, event: TcpEvent) {
        let e = TcpEvent::ALL.iter().position(|&x| x == event).unwrap_or(0);
        self.bump(&self.tcp[e]);
    }
}

/// Every counter set of a server, for summing.
#[derive(Debug, Default)]
pub struct ServerStats {
    sets: Mutex<Vec<Arc<Counters>>>,
}

/// The sum of every counter set at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// (transport, rcode, qtype, count), counts above zero only; labels as in the metrics
    /// (`udp`, `NOERROR`, `A`, `other`).
    pub responses: Vec<(&'static str, String, String, u64)>,
    /// (pool name, answers), by name.
    pub pool_answers: Vec<(String, u64)>,
    /// (action, kind, count) for every action and kind.
    pub rrl: Vec<(&'static str, &'static str, u64)>,
    /// (reason, count) for every reason.
    pub rejected: Vec<(&'static str, u64)>,
    /// (event, count) for every TCP connection event.
    pub tcp: Vec<(&'static str, u64)>,
}

impl StatsSnapshot {
    /// Responses with these labels (0 when none).
    pub fn responses(&self, transport: &str, rcode: &str, qtype: &str) -> u64 {
        self.responses
            .iter()
            .filter(|(t, r, q, _)| *t == transport && r == rcode && q == qtype)
            .map(|(.., n)| n)
            .sum()
    }

    /// Responses over `transport`, all labels.
    pub fn responses_over(&self, transport: &str) -> u64 {
        self.responses
            .iter()
            .filter(|(t, ..)| *t == transport)
            .map(|(.., n)| n)
            .sum()
    }

    /// Answers of the pool named `pool` (lower case, fully qualified).
    pub fn pool(&self, pool: &str) -> u64 {
        self.pool_answers
            .iter()
            .find(|(p, _)| p == pool)
            .map_or(0, |(_, n)| *n)
    }

    /// Rate-limited answers by action, all kinds.
    pub fn rrl(&self, action: RrlAction) -> u64 {
        self.rrl
            .iter()
            .filter(|(a, ..)| *a == action.name())
            .map(|(.., n)| n)
            .sum()
    }

    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected
            .iter()
            .find(|(r, _)| *r == reason.name())
            .map_or(0, |(_, n)| *n)
    }

    pub fn tcp(&self, event: TcpEvent) -> u64 {
        self.tcp
            .iter()
            .find(|(e, _)| *e == event.name())
            .map_or(0, |(_, n)| *n)
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

fn rcode_name(slot: usize) -> String {
    match RCODES.get(slot) {
        Some(ResponseCode::NoError) => "NOERROR".into(),
        Some(ResponseCode::FormErr) => "FORMERR".into(),
        Some(ResponseCode::ServFail) => "SERVFAIL".into(),
        Some(ResponseCode::NXDomain) => "NXDOMAIN".into(),
        Some(ResponseCode::NotImp) => "NOTIMP".into(),
        Some(ResponseCode::Refused) => "REFUSED".into(),
        Some(ResponseCode::BADVERS) => "BADVERS".into(),
        _ => "other".into(),
    }
}

fn qtype_name(slot: usize) -> String {
    QTYPES
        .get(slot)
        .map_or_else(|| "other".into(), RecordType::to_string)
}

impl ServerStats {
    /// Adds a counter set (a worker's, or the TCP connections').
    pub fn register(&self, counters: Arc<Counters>) {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters);
    }

    /// The sums of every set.
    pub fn snapshot(&self) -> StatsSnapshot {
        let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = StatsSnapshot::default();
        for transport in [Transport::Udp, Transport::Tcp] {
            for r in 0..RCODE_SLOTS {
                for q in 0..QTYPE_SLOTS {
                    let n: u64 = sets
                        .iter()
                        .filter(|s| s.transport == transport)
                        .map(|s| read(&s.responses[r][q]))
                        .sum();
                    if n > 0 {
                        out.responses.push((
                            transport_name(transport),
                            rcode_name(r),
                            qtype_name(q),
                            n,
                        ));
                    }
                }
            }
        }
        let mut pools: HashMap<String, u64> = HashMap::new();
        for s in &sets {
            let map = s.pools.lock().unwrap_or_else(|p| p.into_inner());
            for (name, n) in map.iter() {
                *pools.entry(name.to_string()).or_default() += read(n);
            }
        }
        out.pool_answers = pools.into_iter().collect();
        out.pool_answers.sort();
        for (a, action) in RrlAction::ALL.iter().enumerate() {
            for (k, kind) in ResponseKind::ALL.iter().enumerate() {
                let n = sets.iter().map(|s| read(&s.rrl[a][k])).sum();
                out.rrl.push((action.name(), kind.name(), n));
            }
        }
        for reason in Reject::ALL {
            let n = sets
                .iter()
                .map(|s| read(&s.rejected[*reason as usize]))
                .sum();
            out.rejected.push((reason.name(), n));
        }
        for (e, event) in TcpEvent::ALL.iter().enumerate() {
            let n = sets.iter().map(|s| read(&s.tcp[e])).sum();
            out.tcp.push((event.name(), n));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::Name;

    use super::*;

    #[test]
    fn sets_are_summed_by_label() {
        let stats = ServerStats::default();
        let w1 = Arc::new(Counters::new(Transport::Udp, false));
        let w2 = Arc::new(Counters::new(Transport::Udp, false));
        let tcp = Arc::new(Counters::new(Transport::Tcp, true));
        for c in [&w1, &w2, &tcp] {
            stats.register(c.clone());
        }
        let noerror = rcode_slot(ResponseCode::NoError);
        let a = qtype_slot(Some(RecordType::A));
        w1.response(noerror, a);
        w2.response(noerror, a);
        w2.response(
            rcode_slot(ResponseCode::NXDomain),
            qtype_slot(Some(RecordType::Unknown(65000))),
        );
        tcp.response(noerror, a);
        tcp.response(rcode_slot(ResponseCode::BADVERS), qtype_slot(None));
        let pool = LowerName::from(Name::from_str("www.example.test.").unwrap());
        w1.bump(&w1.pool(&pool));
        w2.bump(&w2.pool(&pool));
        w2.bump(&w2.pool(&pool));
        w1.reject(Reject::SourcePort);
        w2.rrl(RrlAction::Limited, ResponseKind::NxDomain);
        w2.rrl(RrlAction::Dropped, ResponseKind::NxDomain);
        tcp.tcp(TcpEvent::Accepted);
        tcp.tcp(TcpEvent::Accepted);

        let s = stats.snapshot();
        assert_eq!(s.responses("udp", "NOERROR", "A"), 2);
        assert_eq!(s.responses("udp", "NXDOMAIN", "other"), 1);
        assert_eq!(s.responses("tcp", "NOERROR", "A"), 1);
        assert_eq!(s.responses("tcp", "BADVERS", "other"), 1);
        assert_eq!(s.responses_over("udp"), 3);
        assert_eq!(s.pool("www.example.test."), 3);
        assert_eq!(s.rejected(Reject::SourcePort), 1);
        assert_eq!(s.rejected(Reject::Multicast), 0);
        assert_eq!(s.rrl(RrlAction::Limited), 1);
        assert_eq!(s.rrl(RrlAction::Slipped), 0);
        assert!(s.rrl.contains(&("dropped", "nxdomain", 1)));
        assert_eq!(s.tcp(TcpEvent::Accepted), 2);
        // Every label of the fixed families is present, zero or not.
        assert_eq!(s.rejected.len(), Reject::COUNT);
        assert_eq!(s.rrl.len(), 3 * ResponseKind::ALL.len());
    }

    #[test]
    fn slots_and_names() {
        assert_eq!(
            qtype_name(usize::from(qtype_slot(Some(RecordType::AAAA)))),
            "AAAA"
        );
        assert_eq!(
            qtype_name(usize::from(qtype_slot(Some(RecordType::HTTPS)))),
            "HTTPS"
        );
        assert_eq!(qtype_name(usize::from(qtype_slot(None))), "other");
        assert_eq!(
            rcode_name(usize::from(rcode_slot(ResponseCode::Refused))),
            "REFUSED"
        );
        assert_eq!(
            rcode_name(usize::from(rcode_slot(ResponseCode::YXDomain))),
            "other"
        );
    }
}
