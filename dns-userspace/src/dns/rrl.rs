//! Response rate limiting in the daemon: the `[rrl]` settings and the table of buckets the
//! UDP workers share.
//!
//! The bucket arithmetic is [`dns_common::rrl`], the code the XDP program uses as well; this
//! module keeps the buckets. The table is fixed (`table_size` buckets, allocated at start),
//! split into shards with a lock each; a client network's bucket is found by a keyed hash
//! (random per start, so nobody can aim collisions). A bucket held by another network is
//! taken over with a fresh (full) bucket, as in Knot and in the kernel's table (one rule,
//! [`dns_common::rrl::Slot`]): the memory stays bounded whatever
//! the number of sources, at the price that an attacker cycling through more networks than
//! the table holds resets buckets.
//!
//! A reload applies new `[rrl]` settings live ([`Rrl::apply`]): new rates, slip, prefix
//! lengths or exempt networks keep the buckets (a network keyed by another prefix length
//! starts with a full one); a new `table_size`, or turning the limiter on, starts a fresh
//! table; `responses_per_second = 0` turns it off. The UDP workers take the limiter in
//! force once per batch of datagrams.
//!
//! Only UDP answers are limited: a TCP client has proved its address, so a TCP answer is no
//! reflection.

use std::{
    hash::BuildHasher as _,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;

use dns_common::rrl::{RrlKey, RrlParams, Slot, Verdict};

use crate::datapath::hot::RrlLimits;

/// Default bucket count (Knot's `rate-limit-table-size` is 393241).
pub const DEFAULT_TABLE_SIZE: usize = 65_536;
/// Default window: one second of answers per burst.
pub const DEFAULT_WINDOW_S: u32 = 1;
/// Default slip: every second limited answer goes out truncated (BIND's default).
pub const DEFAULT_SLIP: u32 = 2;
/// Default network sizes (BIND's defaults).
pub const DEFAULT_IPV4_PREFIX: u8 = 24;
pub const DEFAULT_IPV6_PREFIX: u8 = 56;
/// Largest `slip` (BIND's bound).
pub const MAX_SLIP: u32 = 10;
/// Largest `window` in seconds (BIND's bound).
pub const MAX_WINDOW_S: u32 = 3600;
/// Shards of the table (each with its own lock).
const SHARDS: usize = 64;

/// A network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is inside this network (an IPv4 network never contains an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        key_of(self.addr, self.prefix) == key_of(ip, self.prefix)
            && self.addr.is_ipv4() == ip.is_ipv4()
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a network was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "{0:?} is not an address or network (write e.g. \"192.0.2.0/24\" or \"2001:db8::/32\")"
    )]
    Syntax(String),
    #[error("{0:?}: prefix length {1} is longer than the address ({2} bits)")]
    Prefix(String, u8, u8),
}

impl std::str::FromStr for Network {
    type Err = NetworkError;

    /// `addr/prefix`, or a bare address (a single host).
    fn from_str(text: &str) -> Result<Self, NetworkError> {
        let text = text.trim();
        let syntax = || NetworkError::Syntax(text.to_string());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| syntax())?,
            None => bits,
        };
        if prefix > bits {
            return Err(NetworkError::Prefix(text.to_string(), prefix, bits));
        }
        Ok(Self { addr, prefix })
    }
}

/// `[rrl]`: response rate limiting of UDP answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrlSettings {
    /// Answers per second and client network; 0 (the default) turns RRL off.
    pub responses_per_second: u32,
    /// Seconds of answers a network may send at once after a quiet spell.
    pub window: u32,
    /// Every `slip`-th limited answer goes out truncated; 0 drops them all.
    pub slip: u32,
    pub ipv4_prefix_length: u8,
    pub ipv6_prefix_length: u8,
    /// Networks never limited.
    pub exempt_clients: Vec<Network>,
    /// Buckets kept.
    pub table_size: usize,
}

impl Default for RrlSettings {
    fn default() -> Self {
        Self {
            responses_per_second: 0,
            window: DEFAULT_WINDOW_S,
            slip: DEFAULT_SLIP,
            ipv4_prefix_length: DEFAULT_IPV4_PREFIX,
            ipv6_prefix_length: DEFAULT_IPV6_PREFIX,
            exempt_clients: Vec::new(),
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

impl RrlSettings {
    /// Whether answers are limited at all.
    pub fn enabled(&self) -> bool {
        self.responses_per_second > 0
    }

    /// The parameters the bucket arithmetic takes.
    pub fn params(&self) -> RrlParams {
        RrlParams::new(self.responses_per_second, self.window, self.slip)
    }

    /// The same limits for the XDP program (off when these are).
    pub fn kernel(&self) -> RrlLimits {
        if !self.enabled() {
            return RrlLimits::default();
        }
        RrlLimits {
            params: self.params(),
            prefix: [self.ipv4_prefix_length, self.ipv6_prefix_length],
            exempt: self
                .exempt_clients
                .iter()
                .map(|n| RrlLimits::exempt_key(n.addr, n.prefix))
                .collect(),
        }
    }
}

/// The bucket key of `ip` with `prefix` bits kept (IPv4-mapped IPv6 addresses count as IPv4).
fn key_of(ip: IpAddr, prefix: u8) -> RrlKey {
    match ip {
        IpAddr::V4(v4) => RrlKey::v4(v4.octets(), prefix),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => RrlKey::v4(v4.octets(), prefix),
            None => RrlKey::v6(&v6.octets(), prefix),
        },
    }
}

/// The rate limiter in force: none, or a table of buckets. A reload replaces it
/// ([`Rrl::apply`]); the UDP workers take it with [`Rrl::current`] once per batch.
#[derive(Default)]
pub struct Rrl {
    table: ArcSwapOption<RrlTable>,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl")
            .field("settings", &self.current().map(|t| t.settings.clone()))
            .finish()
    }
}

impl Rrl {
    /// A limiter for `settings` (off unless they are [enabled](RrlSettings::enabled)).
    pub fn new(settings: &RrlSettings) -> Self {
        let rrl = Self::default();
        rrl.apply(settings);
        rrl
    }

    /// The table in force, if limiting is on.
    pub fn current(&self) -> Option<Arc<RrlTable>> {
        self.table.load_full()
    }

    /// Puts `settings` in force: off, the running table's buckets under new rules (same
    /// `table_size`), or a fresh table.
    pub fn apply(&self, settings: &RrlSettings) {
        let next = match self.table.load_full() {
            _ if !settings.enabled() => None,
            Some(t) if t.settings == *settings => Some(t),
            Some(t) if t.settings.table_size == settings.table_size => {
                Some(Arc::new(t.with_rules(settings)))
            }
            _ => Some(Arc::new(RrlTable::new(settings))),
        };
        self.table.store(next);
    }
}

/// The bucket slots, shared by the tables that follow each other through reloads.
type Shards = Arc<[Mutex<Box<[Slot]>>]>;

/// The buckets and the rules they are used with, shared by the UDP workers.
pub struct RrlTable {
    settings: RrlSettings,
    params: RrlParams,
    shards: Shards,
    hasher: std::collections::hash_map::RandomState,
    start: Instant,
}

impl RrlTable {
    /// A table for `settings` (which must be [enabled](RrlSettings::enabled)).
    pub fn new(settings: &RrlSettings) -> Self {
        let per_shard = settings.table_size.div_ceil(SHARDS).max(1);
        Self {
            params: settings.params(),
            settings: settings.clone(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![Slot::default(); per_shard].into_boxed_slice()))
                .collect(),
            hasher: Default::default(),
            start: Instant::now(),
        }
    }

    /// This table's buckets, hash and clock with the rules of `settings`.
    fn with_rules(&self, settings: &RrlSettings) -> Self {
        Self {
            params: settings.params(),
            settings: settings.clone(),
            shards: self.shards.clone(),
            hasher: self.hasher.clone(),
            start: self.start,
        }
    }

    /// The settings the table limits with.
    pub fn settings(&self) -> &RrlSettings {
        &self.settings
    }

    /// Nanoseconds on the table's clock (call once per batch of answers).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The clock `d` after it started (for tests that drive time).
    pub fn at(&self, d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Accounts one answer to `client` at `now_ns`: None when the client is exempt.
    pub fn account(&self, client: IpAddr, now_ns: u64) -> Option<Verdict> {
        if self
            .settings
            .exempt_clients
            .iter()
            .any(|n| n.contains(client))
        {
            return None;
        }
        let prefix = if key_of(client, 128).family == 4 {
            self.settings.ipv4_prefix_length
        } else {
            self.settings.ipv6_prefix_length
        };
        let key = key_of(client, prefix);
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut slots = shard.lock().unwrap_or_else(|p| p.into_inner());
        let at = ((hash >> 32) as usize) % slots.len();
        // Another network's bucket (or none yet) is taken over afresh, as in the kernel.
        Some(slots[at].account(&key, now_ns, &self.params))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        let n = Network::from_str("192.0.2.0/24").unwrap();
        assert!(n.contains(ip("192.0.2.200")));
        assert!(!n.contains(ip("192.0.3.1")));
        let host = Network::from_str(" 198.51.100.7 ").unwrap();
        assert_eq!(host.prefix, 32);
        assert!(host.contains(ip("198.51.100.7")));
        assert!(!host.contains(ip("198.51.100.8")));
        let v6 = Network::from_str("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("192.0.2.1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert!(matches!(
            Network::from_str("192.0.2.0/33"),
            Err(NetworkError::Prefix(_, 33, 32))
        ));
        for bad in ["", "192.0.2", "192.0.2.0/", "192.0.2.0/x", "host/8"] {
            assert!(
                matches!(Network::from_str(bad), Err(NetworkError::Syntax(_))),
                "{bad:?}"
            );
        }
    }

    fn settings(rate: u32, slip: u32) -> RrlSettings {
        RrlSettings {
            responses_per_second: rate,
            slip,
            ..RrlSettings::default()
        }
    }

    #[test]
    fn networks_have_their_own_buckets() {
        let t = RrlTable::new(&settings(5, 2));
        let now = t.at(Duration::from_secs(10));
        let verdicts = |client: &str, n: usize| {
            (0..n)
                .map(|_| t.account(ip(client), now).unwrap())
                .collect::<Vec<_>>()
        };
        let a = verdicts("192.0.2.1", 20);
        assert_eq!(a.iter().filter(|&&v| v == Verdict::Pass).count(), 5);
        assert_eq!(a.iter().filter(|&&v| v == Verdict::Slip).count(), 7);
        assert_eq!(a.iter().filter(|&&v| v == Verdict::Drop).count(), 8);
        // The same /24 shares the bucket; another /24 has its own.
        assert_eq!(verdicts("192.0.2.99", 1), [Verdict::Slip]);
        assert!(verdicts("192.0.3.1", 5).iter().all(|&v| v == Verdict::Pass));
        // IPv6 by /56.
        assert!(
            verdicts("2001:db8:0:1::1", 5)
                .iter()
                .all(|&v| v == Verdict::Pass)
        );
        assert_ne!(verdicts("2001:db8:0:1::2", 1), [Verdict::Pass]);
        assert_eq!(verdicts("2001:db8:0:100::1", 1), [Verdict::Pass]);
    }

    #[test]
    fn exempt_clients_are_not_limited_and_the_table_stays_bounded() {
        let mut s = settings(1, 0);
        s.exempt_clients = vec![Network::from_str("10.0.0.0/8").unwrap()];
        s.table_size = 100;
        let t = RrlTable::new(&s);
        let now = t.at(Duration::from_secs(1));
        for _ in 0..10 {
            assert_eq!(t.account(ip("10.1.2.3"), now), None);
        }
        // Many more networks than buckets: each new one starts with a full bucket.
        for i in 0..10_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            let client = IpAddr::from([100 + a, b, c, 1]);
            assert_eq!(t.account(client, now), Some(Verdict::Pass));
        }
        let slots: usize = t.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(slots <= 100 + SHARDS, "{slots}");
    }

    #[test]
    fn new_rules_apply_live_and_keep_the_buckets() {
        let rrl = Rrl::new(&RrlSettings::default());
        assert!(rrl.current().is_none(), "off by default");
        // Turned on by a reload.
        rrl.apply(&settings(2, 0));
        let t = rrl.current().expect("on after a reload that sets a rate");
        let now = t.at(Duration::from_secs(5));
        let client = ip("192.0.2.1");
        assert_eq!(t.account(client, now), Some(Verdict::Pass));
        assert_eq!(t.account(client, now), Some(Verdict::Pass));
        assert_eq!(t.account(client, now), Some(Verdict::Drop));
        // The same settings again: the same table.
        rrl.apply(&settings(2, 0));
        assert!(Arc::ptr_eq(&t, &rrl.current().unwrap()));
        // Another slip: the empty bucket is kept, the new slip used.
        rrl.apply(&settings(2, 1));
        let t = rrl.current().unwrap();
        assert_eq!(t.settings().slip, 1);
        assert_eq!(t.account(client, now), Some(Verdict::Slip));
        // Another rate: a refill over one second at the new rate.
        rrl.apply(&settings(50, 0));
        let t = rrl.current().unwrap();
        let later = t.at(Duration::from_secs(6));
        let passed = (0..100)
            .filter(|_| t.account(client, later) == Some(Verdict::Pass))
            .count();
        assert_eq!(passed, 50);
        // Exempt networks apply at once.
        let mut exempt = settings(50, 0);
        exempt.exempt_clients = vec![Network::from_str("192.0.2.0/24").unwrap()];
        rrl.apply(&exempt);
        assert_eq!(rrl.current().unwrap().account(client, later), None);
        // Another table size: a fresh table, full buckets.
        let mut bigger = settings(2, 0);
        bigger.table_size = 1000;
        rrl.apply(&bigger);
        let t = rrl.current().unwrap();
        assert_eq!(
            t.account(client, t.at(Duration::from_secs(6))),
            Some(Verdict::Pass)
        );
        // And off.
        rrl.apply(&settings(0, 2));
        assert!(
            rrl.current().is_none(),
            "off after a reload that sets rate 0"
        );
    }
}
