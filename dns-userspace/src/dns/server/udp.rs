//! The UDP workers: OS threads, each with its own `SO_REUSEPORT` socket, receiving up to
//! [`BATCH`](super::mmsg::BATCH) datagrams per system call and sending the batch's replies
//! in one.
//!
//! Each datagram goes through [`Answerer::answer`]:
//!
//! 1. the acceptance rules ([`dns_common::accept`]): no reply to reflection ports,
//!    multicast, broadcast, unspecified, loopback or own sources (except local clients on
//!    the loopback interface); counted by reason;
//! 2. the rate limiter's verdict for the client's network ([`RrlTable`], when enabled):
//!    pass, slip (answer truncated) or drop;
//! 3. the answer: from the worker's [`AnswerCache`] for a plain query it saw before, else
//!    from [`Authority::response`] (and offered to the cache);
//! 4. the counters (per worker, no shared writes).
//!
//! Nothing on the path of a cached answer allocates: the datagram is read into and the reply
//! written from buffers allocated when the worker starts.

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use dns_common::{
    accept::{Reject, check_v4, check_v6},
    rrl::Verdict,
};

use super::mmsg::{Receiver, Sender};
use crate::dns::{
    authority::{Authority, Response, ResponseKind},
    cache::{AnswerCache, Key, Plain, Tally},
    local::LocalAddrs,
    request::{Request, Transport},
    rrl::{Rrl, RrlTable},
    stats::{Counters, RrlAction, qtype_slot, rcode_slot},
};

/// Pause after a failed receive, so a persistent error does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Where a datagram came from and arrived.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub client: SocketAddr,
    /// The address it was sent to, when known.
    pub local: Option<SocketAddr>,
    /// The interface it arrived on, when known.
    pub ifindex: Option<u32>,
}

/// What one worker answers with: the shared pieces and its own cache and counters.
pub struct Answerer {
    authority: Arc<Authority>,
    cache: AnswerCache,
    key: Key,
    /// The limiter in force (a reload may replace it) and the table taken from it for
    /// the batch.
    rrl: Arc<Rrl>,
    table: Option<Arc<RrlTable>>,
    counters: Arc<Counters>,
    local: Arc<LocalAddrs>,
    /// The authority's EDNS UDP size in the generation the cache holds (a reload may change
    /// it; the cache's keys use it).
    edns_udp_size: u16,
}

/// What the counters need of an answer.
#[derive(Clone, Copy)]
struct Counted {
    len: usize,
    rcode: u8,
    qtype: u8,
    kind: ResponseKind,
}

impl Answerer {
    /// A worker answering from `authority` with a cache of `cache_entries` (0: none),
    /// limited by `rrl`, counting into `counters` (which it must be the only writer of).
    pub fn new(
        authority: Arc<Authority>,
        cache_entries: usize,
        rrl: Arc<Rrl>,
        counters: Arc<Counters>,
        local: Arc<LocalAddrs>,
    ) -> Self {
        Self {
            edns_udp_size: authority.edns_udp_size(),
            authority,
            cache: AnswerCache::new(cache_entries),
            key: Key::new(),
            table: rrl.current(),
            rrl,
            counters,
            local,
        }
    }

    /// Prepares a batch: the current host addresses, the cache checked against the
    /// authority's answer generation. Returns the rate limiter's clock.
    pub fn begin_batch(&mut self, local: Option<Arc<LocalAddrs>>) -> u64 {
        if let Some(local) = local {
            self.local = local;
        }
        self.edns_udp_size = self.cache.validate(&self.authority).edns_udp_size();
        self.table = self.rrl.current();
        self.table.as_ref().map_or(0, |r| r.now_ns())
    }

    /// The worker's cache (for tests).
    pub fn cache(&self) -> &AnswerCache {
        &self.cache
    }

    /// Answers datagram `msg` from `origin` into `out`; returns the reply's length, or None
    /// when nothing is sent.
    pub fn answer(
        &mut self,
        msg: &[u8],
        origin: &Origin,
        now_ns: u64,
        out: &mut [u8],
    ) -> Option<usize> {
        if let Err(reason) = self.accept(origin) {
            self.counters.reject(reason);
            return None;
        }
        let verdict = self
            .table
            .as_ref()
            .and_then(|r| r.account(origin.client.ip(), now_ns))
            .unwrap_or(Verdict::Pass);
        let mut request = Request::new(msg, origin.client, Transport::Udp);
        if let Some(local) = origin.local {
            request = request.with_local(local);
        }
        let slip = verdict == Verdict::Slip;
        if slip {
            request = request.truncate();
        }
        let plain = Plain::classify(msg);
        let counted = self.respond(&request, plain.as_ref(), verdict == Verdict::Pass, out)?;
        match verdict {
            Verdict::Pass => {}
            Verdict::Slip => {
                self.counters.rrl(RrlAction::Limited, counted.kind);
                self.counters.rrl(RrlAction::Slipped, counted.kind);
            }
            Verdict::Drop => {
                self.counters.rrl(RrlAction::Limited, counted.kind);
                self.counters.rrl(RrlAction::Dropped, counted.kind);
                return None;
            }
        }
        self.counters.response(counted.rcode, counted.qtype);
        Some(counted.len)
    }

    fn accept(&self, origin: &Origin) -> Result<(), Reject> {
        let on_loopback = match origin.ifindex {
            Some(index) => self.local.is_loopback_interface(index),
            // Without packet information only a loopback destination tells.
            None => origin.local.is_some_and(|l| l.ip().is_loopback()),
        };
        match origin.client {
            SocketAddr::V4(c) => check_v4(c.ip().octets(), c.port(), on_loopback, &*self.local),
            SocketAddr::V6(c) => check_v6(&c.ip().octets(), c.port(), on_loopback, &*self.local),
        }
    }

    /// The response to `request` in `out`, from the cache when `plain` and saved, else from
    /// the authority; counts the pool's answer when `count_pool`.
    fn respond(
        &mut self,
        request: &Request<'_>,
        plain: Option<&Plain>,
        count_pool: bool,
        out: &mut [u8],
    ) -> Option<Counted> {
        let msg = request.message;
        let cached = plain.is_some() && self.cache.enabled();
        if let Some(plain) = plain.filter(|_| cached) {
            let ours = self.edns_udp_size;
            self.key
                .build(msg, plain, ours, request.truncated, self.cache.hash_key());
            if let Some((len, tally)) = self.cache.answer(&self.key, msg, out) {
                if count_pool && let Some(pool) = &tally.pool {
                    self.counters.bump(pool);
                }
                return Some(Counted {
                    len,
                    rcode: tally.rcode,
                    qtype: tally.qtype,
                    kind: tally.kind,
                });
            }
        }
        let response = self.authority.response(request)?;
        let tally = self.tally(&response, request.truncated);
        let len = response.bytes.len();
        let Some(dst) = out.get_mut(..len) else {
            tracing::warn!(len, "udp response longer than the send buffer, not sent");
            return None;
        };
        dst.copy_from_slice(&response.bytes);
        if count_pool && let Some(pool) = &tally.pool {
            self.counters.bump(pool);
        }
        let counted = Counted {
            len,
            rcode: tally.rcode,
            qtype: tally.qtype,
            kind: tally.kind,
        };
        if let Some(plain) = plain.filter(|_| cached) {
            self.cache.offer(&self.key, msg, plain, &response, &tally);
        }
        Some(counted)
    }

    fn tally(&self, response: &Response, truncated: bool) -> Tally {
        Tally {
            rcode: rcode_slot(response.rcode),
            qtype: qtype_slot(response.qtype),
            kind: response.kind,
            // A truncated answer carries no records: not a pool's answer.
            pool: response
                .pool
                .as_ref()
                .filter(|_| !truncated)
                .map(|p| self.counters.pool(p)),
        }
    }
}

/// One worker's socket and the address it is bound to.
pub struct WorkerSocket {
    pub socket: std::net::UdpSocket,
    pub bound: SocketAddr,
}

/// Runs one worker until `stop`: receive a batch, answer each datagram, send the replies.
pub fn run(
    socket: WorkerSocket,
    mut answerer: Answerer,
    local: Arc<ArcSwap<LocalAddrs>>,
    stop: Arc<AtomicBool>,
) {
    let fd = socket.socket.as_raw_fd();
    let wildcard = socket.bound.ip().is_unspecified();
    let port = socket.bound.port();
    let mut rx = Receiver::new();
    let mut tx = Sender::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match rx.recv(fd) {
            Ok(n) => n,
            Err(e) => {
                use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
                if !matches!(e.kind(), WouldBlock | TimedOut | Interrupted) {
                    tracing::debug!("udp receive: {e}");
                    std::thread::sleep(ERROR_PAUSE);
                }
                continue;
            }
        };
        let now = answerer.begin_batch(Some(local.load_full()));
        for (i, r) in rx.received().iter().enumerate().take(n) {
            if r.cut {
                continue;
            }
            let origin = Origin {
                client: r.peer,
                local: match r.dst {
                    Some(ip) => Some(SocketAddr::new(ip, port)),
                    None => (!wildcard).then_some(socket.bound),
                },
                ifindex: r.ifindex,
            };
            let Some(buf) = tx.buffer() else { break };
            if let Some(len) = answerer.answer(rx.datagram(i), &origin, now, buf) {
                // From a wildcard socket, the reply leaves from the address the query came to.
                let src = r
                    .dst
                    .filter(|_| wildcard)
                    .map(|ip: IpAddr| (ip, r.ifindex.unwrap_or(0)));
                tx.queue(len, r.peer, src);
            }
        }
        tx.flush(fd);
    }
}
