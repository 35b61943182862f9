//! Health and latency probes: what a probe is ([`ProbeSpec`]: its timing and its kind with
//! that kind's own settings, validated from the config's keys), one probe of an endpoint
//! ([`probe_once`]) and the scheduler that probes every endpoint forever ([`ProbeSet`]).
//!
//! # What each kind measures
//!
//! Every probe connects to the endpoint's address directly (for a host-name endpoint of a
//! CNAME pool, the name is looked up first; the lookup is not part of the figure). The
//! whole probe, from the first packet to the verdict, must finish within the timeout, or it
//! fails with "timeout after …".
//!
//! * `http` / `https`: TCP connect + (for `https`) the TLS handshake + sending the request +
//!   waiting until the response's status line and headers have arrived (hyper's
//!   `send_request`, which resolves once the headers are parsed); for the small header
//!   blocks of a health endpoint it is time to first byte plus a few microseconds. Reading the
//!   body is not part of the figure. Every probe opens a fresh connection of its own (no
//!   keep-alive, no client object per endpoint: one shared TLS configuration), so connect
//!   and handshake are measured each time. The request carries
//!   `User-Agent: hotpool/<version> (health probe)`, the `Host` header and TLS SNI are the
//!   configured `host` (or the endpoint's host name; an address otherwise), and redirects
//!   are not followed (a 3xx is a status like any other). It succeeds when the status is
//!   in `expect_status` and, if `body_contains` is set, the first 64 KiB of the body
//!   contain that text. TLS certificates are verified against the bundled Mozilla roots
//!   unless `tls_verify = false` (then any certificate is accepted, but the handshake must
//!   still be signed with its key). No proxy is used. HTTP/1.1 only (ALPN `http/1.1`).
//! * `tcp`: the TCP three-way handshake (connect() until established); the connection is
//!   closed at once, with a reset (as HAProxy closes its checks), so no TIME-WAIT socket is
//!   left behind for every probe.
//! * `icmp`: one ICMP (or ICMPv6) echo request until its reply (the round-trip time the
//!   `surge-ping` crate measures). Needs a raw socket (root or `CAP_NET_RAW`) or an
//!   unprivileged ping socket (`net.ipv4.ping_group_range`).
//! * `dns`: one UDP query for `qname`/`qtype` (RD clear) from sending until the
//!   matching reply. It succeeds on NOERROR with at least one answer record.
//!
//! A failed probe is `ok: false` with a `detail` and never a latency.
//!
//! # Local failures
//!
//! A probe that cannot be made for a reason on this host (out of descriptors or buffers,
//! no local port, no route in our own table, no permission, ...) is a [`LocalFailure`],
//! never the endpoint's failure: steering counts and logs it and leaves the endpoint's
//! health alone. [`local`](self::local) has the exact rule; a refused connection or a
//! timeout *is* a verdict.
//!
//! # Scheduling
//!
//! [`ProbeSet`] runs every job (one per probed endpoint, keyed by a stable [`JobId`]) on
//! its own interval: first at a random offset within one interval (so a restart does not
//! fire every probe at once), then every interval ± 10 %, random each time, start to start
//! — but never before the previous run ended. Due times wait in one queue; a run is a task
//! only while it runs.
//!
//! As many probes run at once as the load needs: Σ timeout ÷ interval over the jobs (the
//! probes in flight when every one of them runs to its timeout: endpoints that silently
//! drop packets) plus a quarter and 16 ([`wanted_in_flight`]). `[probes] max_concurrent`
//! is a ceiling over that, and so are the descriptors set aside for probes
//! (`crate::limits`). A job due while every slot is taken waits and starts late, rather
//! than being skipped, and does not catch up with a burst. A run that starts more than a
//! tenth of its interval (at least 50 ms) after it was due is *late*: counted per endpoint
//! and in total, and warned about at most every 30 s ("probes are running late: N of M jobs
//! behind by > X; ...", naming why and what to raise).
//!
//! Reloads: [`ProbeSet::apply`] takes a reload's [`JobChange`]s and returns once the
//! scheduler has applied them (a removed job's run in progress is cancelled, so no probe of
//! a removed endpoint starts after it returns); [`ProbeSet::update`] replaces the whole job
//! set. Jobs with a new id start, jobs whose id is gone stop, a job whose probe or target
//! changed starts over, and every other job keeps its schedule and its place. Each run's result goes to steering as a
//! [`ProbeReport`] carrying the job id. Probes run on their own tokio tasks and only send
//! results on a channel, so they never block the DNS path.

mod http;
mod local;
mod run;
mod schedule;
mod spec;

#[cfg(test)]
mod tests;

pub use http::{BODY_LIMIT, USER_AGENT};
pub use local::{Attempt, LocalFailure, LocalReason, Stage, local_reason};
pub use run::{ProbeTarget, Prober, probe_once};
pub use schedule::{
    HEADROOM, HEADROOM_MIN, JITTER, JobChange, JobId, LATE_FRACTION, LATE_MIN, LATE_WARN_EVERY,
    LimitSource, ProbeJob, ProbeReport, ProbeSet, ProbeSetOptions, ProbeSettings, Runner,
    SchedulerStats, in_flight_limit, late_after, wanted_in_flight,
};
pub use spec::{
    DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_MAX_TIMEOUT, DEFAULT_RISE, DnsProbe, HttpProbe,
    KIND_NAMES, MAX_INTERVAL, MAX_TIMEOUT, MIN_INTERVAL, ProbeKey, ProbeKeys, ProbeKind, ProbeSpec,
    ProbeSpecError, ProbeTiming,
};
