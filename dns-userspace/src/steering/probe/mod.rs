//! Health and latency probes: what a probe is ([`ProbeSpec`]: its timing and its kind with
//! that kind's own settings, validated from the config's keys), one probe of an endpoint
//! ([`probe_once`]) and the scheduler that probes every endpoint forever ([`run_probes`]).
//!
//! # What each kind measures
//!
//! Every probe connects to the endpoint's address directly (for a host-name endpoint of a
//! CNAME pool, the name is looked up first; the lookup is not part of the figure). The
//! whole probe, from the first packet to the verdict, must finish within the timeout, or it
//! fails with "timeout after …".
//!
//! * `http` / `https`: TCP connect + (for `https`) the TLS handshake + sending the request +
//!   waiting until the response's status line and headers have arrived. That is reqwest's
//!   `send()`, which resolves once hyper has parsed the headers; for the small header blocks
//!   of a health endpoint it is time to first byte plus a few microseconds. Reading the
//!   body is not part of the figure. Every probe opens a fresh connection (no keep-alive
//!   pool), so connect and handshake are measured each time. The request carries
//!   `User-Agent: hotpool/<version> (health probe)`, the `Host` header and TLS SNI are the
//!   configured `host` (or the endpoint's host name; an address otherwise), and redirects
//!   are not followed (a 3xx is a status like any other). It succeeds when the status is
//!   in `expect_status` and, if `body_contains` is set, the first 64 KiB of the body
//!   contain that text. TLS certificates are verified against the bundled Mozilla roots
//!   unless `tls_verify = false`. No proxy from the environment is used.
//! * `tcp`: the TCP three-way handshake (connect() until established); the connection is
//!   closed at once.
//! * `icmp`: one ICMP (or ICMPv6) echo request until its reply (the round-trip time the
//!   `surge-ping` crate measures). Needs a raw socket (root or `CAP_NET_RAW`) or an
//!   unprivileged ping socket (`net.ipv4.ping_group_range`).
//! * `dns`: one UDP query for `qname`/`qtype` (RD clear) from sending until the
//!   matching reply. It succeeds on NOERROR with at least one answer record.
//!
//! A failed probe is `ok: false` with a `detail` and never a latency.
//!
//! # Scheduling
//!
//! [`run_probes`] runs each job (one endpoint's probe) on its own interval: first at a random
//! offset within one interval (so a restart does not fire every probe at once), then
//! every interval ± 10 %, random each time. At most `max_concurrent` probes are in flight
//! (a [`Semaphore`](tokio::sync::Semaphore)); a probe that waits for a slot runs late
//! rather than being skipped, and a late job does not catch up with a burst. Probes run on
//! their own tokio tasks and only send results on a channel, so they never block the DNS
//! path.

mod run;
mod schedule;
mod spec;

#[cfg(test)]
mod tests;

pub use run::{BODY_LIMIT, ProbeTarget, USER_AGENT, probe_once};
pub use schedule::{
    DEFAULT_MAX_CONCURRENT, JITTER, JobChange, JobId, ProbeJob, ProbeResult, ProbeSettings,
    run_probe_set, run_probes,
};
pub use spec::{
    DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_MAX_TIMEOUT, DEFAULT_RISE, DnsProbe, HttpProbe,
    KIND_NAMES, MAX_INTERVAL, MAX_TIMEOUT, MIN_INTERVAL, ProbeKey, ProbeKeys, ProbeKind, ProbeSpec,
    ProbeSpecError, ProbeTiming,
};
