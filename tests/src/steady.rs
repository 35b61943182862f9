//! A steady client: sends queries for a few names at a fixed rate from a namespace (in
//! batches every few milliseconds), matches every reply to its query, and reports each
//! query's fate — lost, or answered with an rcode and records — so a test can check every
//! answer across a restart or a reload against the set it expects.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
    serialize::binary::{BinDecodable, BinEncodable},
};

use crate::netns::NetNs;

/// Queries are sent in a batch every this long.
const TICK: Duration = Duration::from_millis(5);
/// A reply later than this counts as lost (generous: on a loaded machine the receiving
/// thread may not run for a while; the socket buffer holds the replies meanwhile).
pub const LOST_AFTER: Duration = Duration::from_secs(5);
/// After the last query, replies are waited for until none came for this long.
const STRAGGLERS: Duration = Duration::from_secs(1);
/// The receive buffer (set with SO_RCVBUFFORCE: the tests run as root), room for tens of
/// thousands of replies.
const RECV_BUFFER: libc::c_int = 16 << 20;

/// What came back for one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The rcode and the A/AAAA addresses of the answer section (sorted).
    Answer(ResponseCode, Vec<IpAddr>),
    /// Nothing within [`LOST_AFTER`].
    Lost,
}

impl Reply {
    /// NOERROR with exactly these addresses.
    pub fn is(&self, addrs: &[IpAddr]) -> bool {
        let mut want = addrs.to_vec();
        want.sort();
        *self == Reply::Answer(ResponseCode::NoError, want)
    }
}

/// One query: which name (index into the names), when it was sent, what came back.
#[derive(Clone, Debug)]
pub struct Sent {
    pub name: usize,
    pub at: Instant,
    pub reply: Reply,
}

struct Slot {
    name: usize,
    at: Instant,
    reply: Option<(ResponseCode, Vec<IpAddr>)>,
}

/// The client, running until [`Steady::finish`].
pub struct Steady {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    slots: Arc<Mutex<Vec<Slot>>>,
    sender: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
    names: Vec<String>,
}

impl Steady {
    /// Starts querying `names` (A records, taking turns) at `rate` queries per second, from
    /// `ns` to `server`.
    pub fn start(ns: &NetNs, server: SocketAddr, names: &[&str], rate: u32) -> Self {
        let sock = ns.run(move || {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )
            .unwrap();
            force_recv_buffer(&s);
            s.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into()).unwrap();
            UdpSocket::from(s)
        });
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rx = sock.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let slots: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(Vec::new()));
        let queries: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut m = Message::query();
                m.add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::A));
                m.to_bytes().unwrap()
            })
            .collect();

        let (stop_s, sent_s, slots_s) = (stop.clone(), sent.clone(), slots.clone());
        let per_tick = f64::from(rate) * TICK.as_secs_f64();
        let sender = std::thread::spawn(move || {
            let start = Instant::now();
            let mut seq = 0usize;
            let mut tick = 0u32;
            while !stop_s.load(Ordering::Relaxed) {
                tick += 1;
                let due = (f64::from(tick) * per_tick) as usize;
                while seq < due {
                    let name = seq % queries.len();
                    let mut wire = queries[name].clone();
                    wire[..2].copy_from_slice(&(seq as u16).to_be_bytes());
                    lock(&slots_s).push(Slot {
                        name,
                        at: Instant::now(),
                        reply: None,
                    });
                    // A failed send is a lost query like any other.
                    let _ = sock.send_to(&wire, server);
                    seq += 1;
                    sent_s.store(seq, Ordering::Release);
                }
                let next = start + TICK * tick;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });

        let (stop_r, slots_r) = (stop.clone(), slots.clone());
        let receiver = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut idle_since: Option<Instant> = None;
            loop {
                match rx.recv_from(&mut buf) {
                    Ok((n, from)) if from == server => {
                        idle_since = None;
                        let Ok(m) = Message::from_bytes(&buf[..n]) else {
                            continue;
                        };
                        record(&slots_r, &m);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // After the sender stopped, wait out the stragglers.
                        if stop_r.load(Ordering::Relaxed) {
                            let since = *idle_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > STRAGGLERS {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Self {
            stop,
            sent,
            slots,
            sender: Some(sender),
            receiver: Some(receiver),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// How many queries were sent so far: marks a point in the run.
    pub fn mark(&self) -> usize {
        self.sent.load(Ordering::Acquire)
    }

    /// Waits until at least `n` more queries went out.
    pub fn wait_queries(&self, n: usize) {
        let target = self.mark() + n;
        while self.mark() < target {
            std::thread::sleep(TICK);
        }
    }

    /// The replies of name `name` sent so far that have come back (lost ones excluded).
    pub fn answered(&self, name: usize) -> Vec<(ResponseCode, Vec<IpAddr>)> {
        lock(&self.slots)
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.reply.clone())
            .collect()
    }

    /// Stops sending, waits for the last replies, and returns every query in send order.
    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            h.join().expect("steady sender");
        }
        if let Some(h) = self.receiver.take() {
            h.join().expect("steady receiver");
        }
        let slots = std::mem::take(&mut *lock(&self.slots));
        Report {
            names: std::mem::take(&mut self.names),
            sent: slots
                .into_iter()
                .map(|s| Sent {
                    name: s.name,
                    at: s.at,
                    reply: match s.reply {
                        Some((rcode, addrs)) => Reply::Answer(rcode, addrs),
                        None => Reply::Lost,
                    },
                })
                .collect(),
        }
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
    }
}

/// Sets the receive buffer past `net.core.rmem_max` (root only; the default cap would drop
/// replies while the receiving thread waits for a CPU).
fn force_recv_buffer(s: &socket2::Socket) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setsockopt on an open socket with a valid int option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&RECV_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Files the reply `m` with its query: the newest unanswered query with its id (ids wrap
/// every 65536 queries, far longer than a reply takes).
fn record(slots: &Mutex<Vec<Slot>>, m: &Message) {
    let id = m.metadata.id;
    let mut addrs: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    addrs.sort();
    let mut slots = lock(slots);
    let len = slots.len();
    let mut seq = (len / 65536) * 65536 + usize::from(id);
    if seq >= len {
        match seq.checked_sub(65536) {
            Some(s) => seq = s,
            None => return,
        }
    }
    if let Some(slot) = slots.get_mut(seq)
        && slot.reply.is_none()
        && slot.at.elapsed() <= LOST_AFTER
    {
        slot.reply = Some((m.metadata.response_code, addrs));
    }
}

/// Every query of a run.
pub struct Report {
    pub names: Vec<String>,
    pub sent: Vec<Sent>,
}

impl Report {
    /// Queries of name `name` in `range` (of [`Steady::mark`]s).
    pub fn of(&self, name: usize, range: std::ops::Range<usize>) -> impl Iterator<Item = &Sent> {
        let end = range.end.min(self.sent.len());
        self.sent[range.start.min(end)..end]
            .iter()
            .filter(move |s| s.name == name)
    }

    /// How many queries of name `name` were lost.
    pub fn lost(&self, name: usize) -> usize {
        self.of(name, 0..usize::MAX)
            .filter(|s| s.reply == Reply::Lost)
            .count()
    }

    /// The distinct replies of name `name` in `range`.
    pub fn distinct(&self, name: usize, range: std::ops::Range<usize>) -> BTreeSet<String> {
        self.of(name, range)
            .map(|s| format!("{:?}", s.reply))
            .collect()
    }

    /// Asserts that every reply of `name` in `range` is one of `allowed` (each a list of
    /// addresses answered with NOERROR), and that none is lost.
    pub fn assert_only(&self, name: usize, range: std::ops::Range<usize>, allowed: &[&[IpAddr]]) {
        let label = &self.names[name];
        let mut n = 0;
        for s in self.of(name, range.clone()) {
            n += 1;
            assert!(
                s.reply != Reply::Lost,
                "{label}: a query sent at #{range:?} was lost"
            );
            assert!(
                allowed.iter().any(|a| s.reply.is(a)),
                "{label}: wrong answer {:?} (allowed {allowed:?})",
                s.reply
            );
        }
        assert!(n > 0, "{label}: no queries in {range:?}");
    }

    /// Asserts that the replies of `name` in `range` switch from `old` to `new` once and
    /// for all, in the order the kernel answered them: `old`* `new`*, nothing else.
    pub fn assert_switch(
        &self,
        name: usize,
        range: std::ops::Range<usize>,
        old: &Reply,
        new: &Reply,
    ) -> usize {
        let label = &self.names[name];
        let mut switched = 0;
        let mut seen_new = false;
        for s in self.of(name, range) {
            if s.reply == *new {
                if !seen_new {
                    switched += 1;
                }
                seen_new = true;
            } else if s.reply == *old {
                assert!(!seen_new, "{label}: {old:?} again after {new:?}");
            } else {
                panic!("{label}: {:?} is neither {old:?} nor {new:?}", s.reply);
            }
        }
        assert!(seen_new, "{label}: never switched to {new:?}");
        switched
    }
}
