//! Steering policies: which of a pool's endpoints to answer with, given their health and
//! latency.
//!
//! This module is pure decision logic: no clock, no I/O, no runtime. The probe side
//! ([`crate::steering::health`]) turns raw probe results into one [`Candidate`] per
//! endpoint; a [`Selector`] per pool turns the candidates into a [`Decision`] and reports
//! it only when the answer changes, so callers rewrite the kernel map and the daemon's pool
//! table only then. The config's policy keys are validated here too ([`Policy::from_keys`]).
//!
//! # What "up" means
//!
//! [`Candidate::up`] is the health layer's verdict, not a single probe result: an endpoint
//! only becomes up after `rise` consecutive good probes and only goes down after `fall`
//! consecutive bad ones, and an endpoint pinned up or down by the operator (`always_on` /
//! `always_off`) is simply reported as up or down. The policies therefore never count probes
//! themselves; in particular failover fails back as soon as the preferred endpoint is up
//! again, which already means it has passed `rise` probes in a row.
//!
//! # Policies
//!
//! * [`Policy::Fastest`]: the up endpoints with a measured (smoothed) latency are ranked
//!   by latency; the answer is the `count` fastest, plus every further one whose latency is
//!   within `deviation_pct` % of the first-ranked one (the leader:
//!   `latency <= leader * (1 + deviation/100)`; 0 turns the allowance off, so equal
//!   latencies do not add endpoints then), at most [`MAX_ANSWER_RRS`] in all. Up endpoints
//!   that have no latency yet rank after every measured one (by configuration order), so
//!   they are only answered when too few endpoints are measured to fill `count`: an
//!   unmeasured endpoint is an unknown, not a fast one. `count` 0 is read as 1.
//!
//!   *Hysteresis.* Two endpoints a few percent apart would otherwise swap places on every
//!   probe round as their smoothed latencies wobble, and every swap is a map rewrite, an
//!   event and a change clients see. So the ranking uses, for every endpoint in the
//!   current answer (an incumbent), its latency divided by `1 + hysteresis/100` (computed
//!   in exact integer arithmetic). For the `count` places this gives exactly the rule
//!   "an incumbent keeps its place while it is up and not slower than the best challenger
//!   by more than `hysteresis_pct` %", i.e. a challenger replaces it only when
//!   `incumbent > challenger * (1 + hysteresis/100)`; ties go to the incumbent.
//!   The deviation allowance is measured in the same discounted terms, which puts a band
//!   of `hysteresis_pct` around its edge too: an incumbent stays while within
//!   `deviation_pct` % of an incumbent leader, while a newcomer must be within
//!   `deviation_pct` % of the leader's *discounted* latency to join. In particular an
//!   endpoint that is faster than the answered one, but not by more than
//!   `hysteresis_pct` %, neither replaces it nor joins it when `deviation_pct` is smaller
//!   than `hysteresis_pct`: the answer stays as it is. Without incumbents (the first
//!   decision, or after an all-down period) nothing is discounted.
//!
//!   The answer is ordered by latency, fastest first, with the same stickiness: endpoints
//!   kept from the previous answer keep their relative order unless a later one is faster
//!   than an earlier one by more than `hysteresis_pct` % (otherwise two answered endpoints
//!   of nearly equal latency would reorder the answer every round); newcomers are placed
//!   by latency.
//!
//! * [`Policy::Weighted`]: every up endpoint with its weight, as [`Answer::Weighted`]; the
//!   kernel and the daemon pick one endpoint per query in proportion to the weights (see
//!   [`thresholds`](crate::datapath::pools::thresholds) and
//!   [`pick`](dns_common::pick)). Endpoints with weight 0 are left out while
//!   any up endpoint has a positive weight; when every up endpoint has weight 0 they share
//!   equally (Route 53's rule for all-zero weights). At most [`MAX_ANSWER_RRS`] endpoints:
//!   with more up, the heaviest ones (ties: configuration order), listed in configuration
//!   order.
//!
//! * [`Policy::Failover`]: the up endpoint with the lowest `priority` value (ties: the one
//!   configured first) is the whole answer. Fail-back to a preferred endpoint happens on
//!   the first update where it is up again, which (see above) means it passed `rise` probes.
//!
//! * [`Policy::AllHealthy`]: every up endpoint, at most [`MAX_ANSWER_RRS`], in configuration
//!   order (Route 53 multivalue answers).
//!
//! # When nothing is up
//!
//! What [`AllDown`] says, and never an empty [`Answer::Endpoints`]:
//!
//! * [`AllDown::FailOpen`]: the last answer that had at least one endpoint up ("last known
//!   good"), with [`Decision::all_down`] set and a reason that says so loudly. Probes can
//!   fail because *our* network is broken rather than every endpoint at once, and answering
//!   with endpoints that were good a moment ago is then the least bad choice. If no
//!   endpoint was ever up (typically just after start), every configured endpoint
//!   (configuration order, at most [`MAX_ANSWER_RRS`]; for a weighted pool, weighted over all
//!   of them), which is also what a pool answers before its first decision.
//! * [`AllDown::Servfail`] answers [`Answer::Servfail`].
//! * [`AllDown::Fallback`] answers [`Answer::Fallback`] (the pool's configured fallback
//!   records).
//!
//! A pool without any candidate at all cannot fail open to anything and answers SERVFAIL.
//!
//! # Reasons
//!
//! [`Decision::reason`] is a [`Reason`]: the endpoints (as indexes) and figures behind the
//! decision, rendered as one human sentence for logs and the event record. The selector
//! only knows indexes, so its `Display` says "endpoint #0"; [`Reason::named`] renders it
//! with addresses or host names. Every reason of an all-down decision starts with
//! "all endpoints down".
//!
//! # Files
//!
//! This file: the policies and all-down behaviours; `keys`: their validation from the
//! config's keys; `select`: the [`Selector`]; `reason`: the [`Reason`]s.
//!
//! [`MAX_ANSWER_RRS`]: dns_common::MAX_ANSWER_RRS

use std::fmt;

use crate::steering::endpoint::EndpointAddress;

mod keys;
mod reason;
mod select;

#[cfg(test)]
mod tests;

pub use keys::{PolicyError, PolicyKey, PolicyKeys};
pub use reason::{AllDownReason, FailoverReason, FastestChange, Named, Ranked, Rated, Reason};
pub use select::{Answer, Candidate, Decision, Selector};

/// Default `hysteresis` of a `fastest` pool, in percent.
pub const DEFAULT_HYSTERESIS_PCT: u32 = 10;
/// Largest `deviation` and `hysteresis`, in percent.
pub const MAX_PERCENT: u32 = 1000;

/// The default policy as the README and the example config state it (a test keeps them in
/// step with [`Policy::from_keys`]).
pub const DEFAULT_POLICY_DOC: &str = "\"fastest\" for a pool with a probe (or a CNAME pool, or one with count, deviation or hysteresis), else \"all-healthy\"";

/// The policies as the config names them (`policy = "..."`), in [`Policy`]'s order.
pub const POLICY_NAMES: &[&str] = &["fastest", "weighted", "failover", "all-healthy"];
/// The names a pool's `policy` takes: a policy, or `geo` (a policy per region, see
/// [`crate::steering::geo`]).
pub const POOL_POLICY_NAMES: &[&str] = &["fastest", "weighted", "failover", "all-healthy", "geo"];
/// The all-down behaviours as the config names them (`all_down = "..."`), in [`AllDown`]'s
/// order.
pub const ALL_DOWN_NAMES: &[&str] = &["fail-open", "servfail", "fallback"];

/// How a pool chooses among its endpoints. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The `count` fastest up endpoints, plus those within `deviation_pct` % of the fastest;
    /// an answered endpoint is replaced only by one faster than it by more than
    /// `hysteresis_pct` %.
    Fastest {
        count: usize,
        deviation_pct: u32,
        hysteresis_pct: u32,
    },
    /// One up endpoint per query, in proportion to the weights.
    Weighted,
    /// The up endpoint with the lowest priority value.
    Failover,
    /// Every up endpoint (at most [`MAX_ANSWER_RRS`](dns_common::MAX_ANSWER_RRS)).
    AllHealthy,
}

impl Default for Policy {
    /// `fastest` with its default knobs: what a probed pool without policy keys uses.
    fn default() -> Self {
        Self::Fastest {
            count: 1,
            deviation_pct: 0,
            hysteresis_pct: DEFAULT_HYSTERESIS_PCT,
        }
    }
}

impl Policy {
    /// The policy's name in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fastest { .. } => "fastest",
            Self::Weighted => "weighted",
            Self::Failover => "failover",
            Self::AllHealthy => "all-healthy",
        }
    }
}

impl fmt::Display for Policy {
    /// The name; see [`Policy::describe`] for the knobs too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a pool answers when none of its endpoints is up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllDown {
    /// The last known good answer (or every endpoint if there never was one), logged
    /// loudly. The default.
    #[default]
    FailOpen,
    /// SERVFAIL.
    Servfail,
    /// These records (same rules as endpoint addresses).
    Fallback(Vec<EndpointAddress>),
}

impl fmt::Display for AllDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FailOpen => f.write_str("fail-open"),
            Self::Servfail => f.write_str("servfail"),
            Self::Fallback(addresses) => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                write!(f, "fallback to {}", list.join(", "))
            }
        }
    }
}

impl Policy {
    /// The name with the knobs that apply: `fastest (count 1, deviation 0%, hysteresis
    /// 10%)`, `weighted`.
    pub fn describe(&self) -> String {
        match self {
            Self::Fastest {
                count,
                deviation_pct,
                hysteresis_pct,
            } => format!(
                "fastest (count {count}, deviation {deviation_pct}%, hysteresis {hysteresis_pct}%)"
            ),
            Self::Weighted | Self::Failover | Self::AllHealthy => self.name().to_string(),
        }
    }
}
