//! Steering policies: which of a pool's endpoints to answer with, given their health and
//! latency.
//!
//! This module is pure decision logic: no clock, no I/O, no runtime. The probe side
//! (`health.rs`) turns raw probe results into one [`Candidate`] per endpoint; a [`Selector`]
//! per pool turns the candidates into a [`Decision`] and reports it only when the answer
//! changes, so callers rewrite the kernel map and the daemon's pool table only then.
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
//!   latencies do not add endpoints then), at most [`MAX_ANSWER`] in all. Up endpoints
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
//!   [`thresholds`] and `dns_common::pick`). Endpoints with weight 0 are left out while any up endpoint
//!   has a positive weight; when every up endpoint has weight 0 they share equally (Route
//!   53's rule for all-zero weights). At most [`MAX_ANSWER`] endpoints: with more up, the
//!   heaviest ones (ties: configuration order), listed in configuration order.
//!
//! * [`Policy::Failover`]: the up endpoint with the lowest `priority` value (ties: the one
//!   configured first) is the whole answer. Fail-back to a preferred endpoint happens on
//!   the first update where it is up again, which (see above) means it passed `rise` probes.
//!
//! * [`Policy::AllHealthy`]: every up endpoint, at most [`MAX_ANSWER`], in configuration
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
//!   (configuration order, at most [`MAX_ANSWER`]; for a weighted pool, weighted over all
//!   of them), which is also what a pool answers before its first decision.
//! * [`AllDown::Servfail`] answers [`Answer::Servfail`].
//! * [`AllDown::Fallback`] answers [`Answer::Fallback`] (the pool's configured fallback
//!   records).
//!
//! A pool without any candidate at all cannot fail open to anything and answers SERVFAIL.
//!
//! # Reasons
//!
//! [`Decision::reason`] is one human sentence for logs and the event record. The selector
//! only knows indexes, so it says "endpoint #0"; [`name_endpoints`] replaces those with
//! addresses or host names. Every reason of an all-down decision starts with
//! "all endpoints down".

use std::{fmt::Write as _, time::Duration};

/// Most endpoints in one answer (and most weighted variants): what the kernel's answer
/// slot holds (`dns_common::MAX_ANSWER_RRS`, `dns_common::MAX_VARIANTS`).
pub const MAX_ANSWER: usize = 8;

/// How a pool chooses among its endpoints. See the module docs.
#[derive(Clone, Debug, PartialEq)]
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
    /// Every up endpoint (at most [`MAX_ANSWER`]).
    AllHealthy,
}

/// What a pool answers when none of its endpoints is up.
#[derive(Clone, Debug, PartialEq)]
pub enum AllDown {
    /// The last known good answer (or every endpoint if there never was one).
    FailOpen,
    /// SERVFAIL.
    Servfail,
    /// The configured fallback records.
    Fallback,
}

/// One endpoint of a pool as the health layer sees it right now.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The health verdict (after `rise`/`fall` and operator pins).
    pub up: bool,
    /// Smoothed latency; `None` if never measured.
    pub latency: Option<Duration>,
    /// Relative weight for [`Policy::Weighted`].
    pub weight: u32,
    /// Failover priority: lower is preferred.
    pub priority: u32,
}

/// What a pool answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answer with these endpoints (indexes into the candidates), in this order.
    Endpoints(Vec<usize>),
    /// Per-query weighted choice among these endpoints: (index, weight) — one endpoint per
    /// answer.
    Weighted(Vec<(usize, u32)>),
    /// The configured fallback records.
    Fallback,
    /// SERVFAIL.
    Servfail,
}

impl Answer {
    /// A rendering for logs and events, with `names[i]` for endpoint `i` (`#i` where a name
    /// is missing): `192.0.2.10, 192.0.2.11`, `192.0.2.10 (weight 1), 192.0.2.11 (weight 3)`,
    /// `fallback`, `SERVFAIL`.
    pub fn render<S: AsRef<str>>(&self, names: &[S]) -> String {
        let name = |i: usize| match names.get(i) {
            Some(n) => n.as_ref().to_string(),
            None => format!("#{i}"),
        };
        match self {
            Answer::Endpoints(v) => v.iter().map(|&i| name(i)).collect::<Vec<_>>().join(", "),
            Answer::Weighted(v) => v
                .iter()
                .map(|&(i, w)| format!("{} (weight {w})", name(i)))
                .collect::<Vec<_>>()
                .join(", "),
            Answer::Fallback => "fallback".to_string(),
            Answer::Servfail => "SERVFAIL".to_string(),
        }
    }
}

/// A pool's answer and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub answer: Answer,
    /// One human sentence; endpoints are named `endpoint #i` (see [`name_endpoints`]).
    pub reason: String,
    /// No endpoint is up: the answer comes from the [`AllDown`] setting.
    pub all_down: bool,
}

/// Decides one pool's answer and remembers it (for hysteresis and fail-open).
#[derive(Clone, Debug)]
pub struct Selector {
    policy: Policy,
    all_down: AllDown,
    current: Option<Decision>,
    last_good: Option<Answer>,
}

impl Selector {
    pub fn new(policy: Policy, all_down: AllDown) -> Self {
        Self {
            policy,
            all_down,
            current: None,
            last_good: None,
        }
    }

    /// Re-decides from the candidates; returns `Some(decision)` only when the decision
    /// changes: its answer, or whether the pool is all down (failing open keeps the same
    /// endpoints but is news). A new reason alone is not a change.
    pub fn update(&mut self, candidates: &[Candidate]) -> Option<Decision> {
        let decision = if candidates.iter().any(|c| c.up) {
            let d = match &self.policy {
                Policy::Fastest {
                    count,
                    deviation_pct,
                    hysteresis_pct,
                } => self.fastest(candidates, *count, *deviation_pct, *hysteresis_pct),
                Policy::Weighted => weighted(candidates),
                Policy::Failover => self.failover(candidates),
                Policy::AllHealthy => all_healthy(candidates),
            };
            self.last_good = Some(d.answer.clone());
            d
        } else {
            self.none_up(candidates)
        };
        let changed = match &self.current {
            Some(cur) => cur.answer != decision.answer || cur.all_down != decision.all_down,
            None => true,
        };
        if changed {
            self.current = Some(decision.clone());
            Some(decision)
        } else {
            None
        }
    }

    /// The decision in force, if any update happened yet.
    pub fn current(&self) -> Option<&Decision> {
        self.current.as_ref()
    }

    /// The endpoints of the current answer, if it is a list chosen while something was up.
    fn incumbents(&self) -> &[usize] {
        match &self.current {
            Some(Decision {
                answer: Answer::Endpoints(v),
                all_down: false,
                ..
            }) => v,
            _ => &[],
        }
    }

    fn fastest(
        &self,
        candidates: &[Candidate],
        count: usize,
        deviation_pct: u32,
        hysteresis_pct: u32,
    ) -> Decision {
        let incumbents: Vec<usize> = self
            .incumbents()
            .iter()
            .copied()
            .filter(|&i| candidates.get(i).is_some_and(|c| c.up))
            .collect();
        let is_incumbent = |i: usize| incumbents.contains(&i);
        let h = u128::from(hysteresis_pct);
        // Effective latency, scaled by 100 + h so it stays an integer: an incumbent's
        // latency divided by (1 + h/100) is ns × 100, anyone else's is ns × (100 + h).
        let eff = |i: usize, l: Duration| {
            let scale = if is_incumbent(i) { 100 } else { 100 + h };
            l.as_nanos().saturating_mul(scale)
        };
        let mut measured: Vec<(usize, u128)> = Vec::new();
        let mut unmeasured: Vec<usize> = Vec::new();
        for (i, c) in candidates.iter().enumerate().filter(|(_, c)| c.up) {
            match c.latency {
                Some(l) => measured.push((i, eff(i, l))),
                None => unmeasured.push(i),
            }
        }
        // Ties go to the incumbent, then to configuration order.
        measured.sort_by_key(|&(i, k)| (k, !is_incumbent(i), i));
        unmeasured.sort_by_key(|&i| (!is_incumbent(i), i));

        let want = count.clamp(1, MAX_ANSWER);
        let mut picks: Vec<usize> = measured.iter().map(|&(i, _)| i).take(want).collect();
        let leader = measured.first().copied();
        if let Some((_, top)) = leader.filter(|_| deviation_pct > 0) {
            // Within the deviation of the leader, both effective: k ≤ top × (1 + d/100).
            let limit = top.saturating_mul(100 + u128::from(deviation_pct));
            for &(i, k) in measured.iter().skip(want) {
                if picks.len() >= MAX_ANSWER || k.saturating_mul(100) > limit {
                    break;
                }
                picks.push(i);
            }
        }
        for &i in &unmeasured {
            if picks.len() >= want {
                break;
            }
            picks.push(i);
        }
        let picks = order_sticky(candidates, &incumbents, picks, hysteresis_pct);

        let mut reason = String::from("fastest: ");
        reason.push_str(
            &picks
                .iter()
                .map(|&i| describe(i, &candidates[i]))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let previous = self.incumbents();
        let added: Vec<usize> = picks
            .iter()
            .copied()
            .filter(|i| !previous.contains(i))
            .collect();
        let dropped: Vec<usize> = previous
            .iter()
            .copied()
            .filter(|i| !picks.contains(i))
            .collect();
        for &d in &dropped {
            let Some(dc) = candidates.get(d) else {
                continue;
            };
            let beaten_by =
                added
                    .iter()
                    .copied()
                    .find(|&c| match (candidates[c].latency, dc.latency) {
                        (Some(cl), Some(dl)) => beats(cl, dl, hysteresis_pct),
                        _ => false,
                    });
            let why = match (dc.up, beaten_by, dc.latency, leader) {
                (false, ..) => format!("endpoint #{d} is down"),
                (true, Some(c), ..) => format!(
                    "{} beats {} by more than {hysteresis_pct} %",
                    describe(c, &candidates[c]),
                    describe(d, dc),
                ),
                (true, None, Some(_), Some((l, _))) if l != d => format!(
                    "{} is no longer within {deviation_pct} % of {}",
                    describe(d, dc),
                    describe(l, &candidates[l]),
                ),
                (true, None, Some(_), _) => {
                    format!("{} is no longer among the fastest", describe(d, dc))
                }
                (true, None, None, _) => {
                    format!("endpoint #{d} has no latency yet and measured endpoints rank first")
                }
            };
            let _ = write!(reason, "; {why}");
        }
        if dropped.is_empty() && !previous.is_empty() {
            for &a in &added {
                let why = match (candidates[a].latency, leader) {
                    (Some(_), Some((l, _))) if l != a => format!(
                        "{} is within {deviation_pct} % of {}",
                        describe(a, &candidates[a]),
                        describe(l, &candidates[l]),
                    ),
                    _ => format!("{} joins the answer", describe(a, &candidates[a])),
                };
                let _ = write!(reason, "; {why}");
            }
            if added.is_empty() && picks.as_slice() != previous {
                let _ = write!(
                    reason,
                    "; reordered: a faster endpoint beats the one before it by more than {hysteresis_pct} %"
                );
            }
        }
        Decision {
            answer: Answer::Endpoints(picks),
            reason,
            all_down: false,
        }
    }

    fn failover(&self, candidates: &[Candidate]) -> Decision {
        // `update` only calls this with at least one candidate up.
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.up)
            .min_by_key(|&(i, c)| (c.priority, i))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let prio = candidates.get(best).map_or(0, |c| c.priority);
        let previous = match self.incumbents() {
            [p] if *p != best => Some(*p),
            _ => None,
        };
        let reason = match previous.and_then(|p| candidates.get(p).map(|c| (p, c))) {
            Some((p, pc)) if !pc.up => format!(
                "failover: endpoint #{p} (priority {}) is down; endpoint #{best} (priority {prio}) takes over",
                pc.priority
            ),
            Some((p, pc)) => format!(
                "failover: endpoint #{best} (priority {prio}) is up again; failing back from endpoint #{p} (priority {})",
                pc.priority
            ),
            None => {
                let preferred_down = candidates
                    .iter()
                    .enumerate()
                    .filter(|&(i, c)| !c.up && (c.priority, i) < (prio, best))
                    .count();
                if preferred_down == 0 {
                    format!(
                        "failover: endpoint #{best} (priority {prio}) is the preferred endpoint and up"
                    )
                } else {
                    format!(
                        "failover: endpoint #{best} (priority {prio}) is the first one up; {preferred_down} preferred endpoint(s) down"
                    )
                }
            }
        };
        Decision {
            answer: Answer::Endpoints(vec![best]),
            reason,
            all_down: false,
        }
    }

    fn none_up(&self, candidates: &[Candidate]) -> Decision {
        let n = candidates.len();
        if n == 0 {
            return Decision {
                answer: Answer::Servfail,
                reason: "all endpoints down: the pool has no endpoints; answering SERVFAIL"
                    .to_string(),
                all_down: true,
            };
        }
        let (answer, reason) = match self.all_down {
            AllDown::Servfail => (
                Answer::Servfail,
                format!("all endpoints down ({n} of {n}); answering SERVFAIL"),
            ),
            AllDown::Fallback => (
                Answer::Fallback,
                format!("all endpoints down ({n} of {n}); answering the fallback records"),
            ),
            AllDown::FailOpen => match self.last_good.as_ref().and_then(|a| in_range(a, n)) {
                Some(a) => (
                    a,
                    format!("all endpoints down ({n} of {n}); failing open to last known good set"),
                ),
                None => {
                    let answer = match self.policy {
                        Policy::Weighted => {
                            let all: Vec<usize> = (0..n).collect();
                            Answer::Weighted(weighted_set(candidates, &all))
                        }
                        _ => Answer::Endpoints((0..n.min(MAX_ANSWER)).collect()),
                    };
                    (
                        answer,
                        format!(
                            "all endpoints down ({n} of {n}) and none has been up yet; failing open to every configured endpoint"
                        ),
                    )
                }
            },
        };
        Decision {
            answer,
            reason,
            all_down: true,
        }
    }
}

/// Whether latency `a` is faster than `b` by more than `pct` %: `b > a × (1 + pct/100)`.
fn beats(a: Duration, b: Duration, pct: u32) -> bool {
    a.as_nanos().saturating_mul(100 + u128::from(pct)) < b.as_nanos().saturating_mul(100)
}

/// Orders a fastest answer by latency without letting near-equal endpoints swap places on
/// every round: endpoints kept from the previous answer keep their relative order unless a
/// later one beats an earlier one by more than `hysteresis_pct` %; newcomers go in by
/// latency; measured endpoints come before unmeasured ones.
fn order_sticky(
    candidates: &[Candidate],
    incumbents: &[usize],
    picks: Vec<usize>,
    hysteresis_pct: u32,
) -> Vec<usize> {
    let lat = |i: usize| candidates[i].latency;
    let mut order: Vec<usize> = incumbents
        .iter()
        .copied()
        .filter(|i| picks.contains(i))
        .collect();
    let mut newcomers: Vec<usize> = picks
        .iter()
        .copied()
        .filter(|i| !incumbents.contains(i))
        .collect();
    newcomers.sort_by_key(|&i| (lat(i).is_none(), lat(i), i));
    for n in newcomers {
        let slower = |x: usize| match (lat(x), lat(n)) {
            (None, Some(_)) => true,
            (Some(lx), Some(ln)) => lx > ln,
            _ => false,
        };
        let pos = order.iter().position(|&x| slower(x)).unwrap_or(order.len());
        order.insert(pos, n);
    }
    // Every swap puts a strictly faster endpoint (or a measured before an unmeasured one,
    // or unmeasured ones in configuration order) first, so this terminates.
    let should_swap = |x: usize, y: usize| match (lat(x), lat(y)) {
        (None, Some(_)) => true,
        (Some(lx), Some(ly)) => beats(ly, lx, hysteresis_pct),
        (None, None) => y < x,
        (Some(_), None) => false,
    };
    loop {
        let mut swapped = false;
        for j in 1..order.len() {
            if should_swap(order[j - 1], order[j]) {
                order.swap(j - 1, j);
                swapped = true;
            }
        }
        if !swapped {
            return order;
        }
    }
}

/// "endpoint #i at 12.3 ms" or "endpoint #i (not measured yet)".
fn describe(i: usize, c: &Candidate) -> String {
    match c.latency {
        Some(l) => format!("endpoint #{i} at {}", ms(l)),
        None => format!("endpoint #{i} (not measured yet)"),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn weighted(candidates: &[Candidate]) -> Decision {
    let up: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].up)
        .collect();
    let set = weighted_set(candidates, &up);
    let down = candidates.len() - up.len();
    let mut reason = format!(
        "weighted: {}",
        set.iter()
            .map(|&(i, w)| format!("endpoint #{i} (weight {w})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if down > 0 {
        let _ = write!(reason, "; {down} endpoint(s) down");
    }
    let left_out = up.len() - set.len();
    if left_out > 0 {
        let _ = write!(
            reason,
            "; {left_out} up endpoint(s) left out (weight 0 or more than {MAX_ANSWER})"
        );
    }
    Decision {
        answer: Answer::Weighted(set),
        reason,
        all_down: false,
    }
}

/// The weighted answer over `members` (indexes, in configuration order): positive weights
/// only unless all are zero (then equal shares), at most [`MAX_ANSWER`] of the heaviest.
fn weighted_set(candidates: &[Candidate], members: &[usize]) -> Vec<(usize, u32)> {
    let mut set: Vec<(usize, u32)> = members
        .iter()
        .filter_map(|&i| candidates.get(i).map(|c| (i, c.weight)))
        .filter(|&(_, w)| w > 0)
        .collect();
    if set.is_empty() {
        set = members
            .iter()
            .filter(|&&i| i < candidates.len())
            .map(|&i| (i, 1))
            .collect();
    }
    if set.len() > MAX_ANSWER {
        set.sort_by_key(|&(i, w)| (std::cmp::Reverse(w), i));
        set.truncate(MAX_ANSWER);
        set.sort_by_key(|&(i, _)| i);
    }
    set
}

fn all_healthy(candidates: &[Candidate]) -> Decision {
    let up: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].up)
        .collect();
    let picks: Vec<usize> = up.iter().copied().take(MAX_ANSWER).collect();
    let mut reason = format!(
        "all-healthy: {} of {} endpoints up",
        up.len(),
        candidates.len()
    );
    if up.len() > MAX_ANSWER {
        let _ = write!(reason, "; answering the first {MAX_ANSWER}");
    }
    Decision {
        answer: Answer::Endpoints(picks),
        reason,
        all_down: false,
    }
}

/// `answer` if every index in it is below `n` and it is not empty (a stale answer from a
/// larger pool is not reused), else `None`.
fn in_range(answer: &Answer, n: usize) -> Option<Answer> {
    let ok = match answer {
        Answer::Endpoints(v) => !v.is_empty() && v.iter().all(|&i| i < n),
        Answer::Weighted(v) => !v.is_empty() && v.iter().all(|&(i, _)| i < n),
        Answer::Fallback | Answer::Servfail => false,
    };
    ok.then(|| answer.clone())
}

/// Cumulative thresholds over the u32 range for `weights` (last = `u32::MAX`), so that
/// `rand < thresholds[i]` picks `i` with probability `weight_i / total`: entry `i` is
/// `⌊cumulative_weight_i × 2³² / total⌋`, saturated at `u32::MAX`. At most [`MAX_ANSWER`]
/// entries: weights past the eighth are ignored.
///
/// With all weights zero (or none given) every entry gets an equal share. A zero weight
/// gets no share, except that a zero-weight *last* entry receives `rand == u32::MAX` (one
/// value in 2³²) under the kernel's "else last" rule; [`Selector`] never produces zero
/// weights in an answer.
pub fn thresholds(weights: &[u32]) -> Vec<u32> {
    let weights = &weights[..weights.len().min(MAX_ANSWER)];
    let equal = weights.iter().all(|&w| w == 0);
    let weight = |w: u32| if equal { 1u64 } else { u64::from(w) };
    let total: u64 = weights.iter().map(|&w| weight(w)).sum();
    let mut cumulative = 0u64;
    let mut out: Vec<u32> = weights
        .iter()
        .map(|&w| {
            cumulative += weight(w);
            let t = (u128::from(cumulative) << 32) / u128::from(total.max(1));
            u32::try_from(t).unwrap_or(u32::MAX)
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last = u32::MAX;
    }
    out
}

/// Replaces every `endpoint #N` in `text` with `names[N]` (left as is when `N` is out of
/// range), turning a [`Decision::reason`] into a log line with addresses.
pub fn name_endpoints<S: AsRef<str>>(text: &str, names: &[S]) -> String {
    const TAG: &str = "endpoint #";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(TAG) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + TAG.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|i| names.get(i))
        {
            Some(name) => out.push_str(name.as_ref()),
            None => out.push_str(&rest[pos..pos + TAG.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use dns_common::pick;

    use super::*;

    fn up(ms: f64) -> Candidate {
        Candidate {
            up: true,
            latency: Some(Duration::from_nanos((ms * 1_000_000.0).round() as u64)),
            weight: 1,
            priority: 0,
        }
    }

    fn down(ms: f64) -> Candidate {
        Candidate {
            up: false,
            ..up(ms)
        }
    }

    fn unmeasured() -> Candidate {
        Candidate {
            latency: None,
            ..up(0.0)
        }
    }

    fn weighted_up(weight: u32) -> Candidate {
        Candidate { weight, ..up(1.0) }
    }

    fn weighted_down(weight: u32) -> Candidate {
        Candidate {
            weight,
            ..down(1.0)
        }
    }

    fn prio(priority: u32, is_up: bool) -> Candidate {
        Candidate {
            priority,
            up: is_up,
            ..up(1.0)
        }
    }

    fn fastest(count: usize, deviation_pct: u32, hysteresis_pct: u32) -> Selector {
        Selector::new(
            Policy::Fastest {
                count,
                deviation_pct,
                hysteresis_pct,
            },
            AllDown::FailOpen,
        )
    }

    fn endpoints(d: &Decision) -> Vec<usize> {
        match &d.answer {
            Answer::Endpoints(v) => v.clone(),
            other => panic!("expected endpoints, got {other:?}"),
        }
    }

    /// The endpoints of the decision in force.
    fn cur(s: &Selector) -> Vec<usize> {
        endpoints(s.current().expect("a decision"))
    }

    #[test]
    fn fastest_picks_the_n_fastest_ordered_by_latency() {
        let cands = [up(30.0), up(10.0), up(20.0), up(40.0)];
        let mut one = fastest(1, 0, 10);
        let d = one.update(&cands).expect("first decision");
        assert_eq!(endpoints(&d), vec![1]);
        assert!(!d.all_down);
        assert_eq!(d.reason, "fastest: endpoint #1 at 10.0 ms");

        let mut two = fastest(2, 0, 10);
        assert_eq!(endpoints(&two.update(&cands).unwrap()), vec![1, 2]);

        let mut zero = fastest(0, 0, 10);
        assert_eq!(
            endpoints(&zero.update(&cands).unwrap()),
            vec![1],
            "count 0 reads as 1"
        );

        let many: Vec<Candidate> = (0..12).map(|i| up(100.0 - i as f64)).collect();
        let mut all = fastest(100, 0, 10);
        assert_eq!(
            endpoints(&all.update(&many).unwrap()),
            vec![11, 10, 9, 8, 7, 6, 5, 4],
            "at most 8, fastest first"
        );
    }

    #[test]
    fn fastest_skips_down_endpoints() {
        let mut s = fastest(2, 0, 10);
        let d = s
            .update(&[down(1.0), up(20.0), down(2.0), up(10.0)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![3, 1]);
    }

    #[test]
    fn fastest_ties_go_to_configuration_order() {
        let mut s = fastest(1, 0, 10);
        assert_eq!(
            endpoints(&s.update(&[up(10.0), up(10.0)]).unwrap()),
            vec![0]
        );
        let mut s = fastest(2, 0, 10);
        assert_eq!(
            endpoints(&s.update(&[up(20.0), up(10.0), up(10.0)]).unwrap()),
            vec![1, 2]
        );
    }

    #[test]
    fn deviation_adds_endpoints_close_to_the_fastest() {
        let mut s = fastest(1, 10, 0);
        let d = s
            .update(&[up(10.0), up(11.0), up(11.5), up(10.5), down(10.1)])
            .unwrap();
        // 11.0 is exactly 10 % slower: within; 11.5 is not; a down one never counts.
        assert_eq!(endpoints(&d), vec![0, 3, 1]);

        let mut s = fastest(2, 0, 0);
        assert_eq!(
            endpoints(&s.update(&[up(10.0), up(30.0), up(30.0), up(31.0)]).unwrap()),
            vec![0, 1],
            "deviation 0 adds nothing beyond count"
        );

        let mut s = fastest(2, 5, 0);
        assert_eq!(
            endpoints(&s.update(&[up(10.0), up(30.0), up(10.4), up(10.6)]).unwrap()),
            vec![0, 2],
            "the second place comes from count, 10.6 is beyond 5 %"
        );

        let many: Vec<Candidate> = (0..10).map(|i| up(10.0 + i as f64 * 0.01)).collect();
        let mut s = fastest(1, 50, 0);
        assert_eq!(
            endpoints(&s.update(&many).unwrap()),
            (0..8).collect::<Vec<_>>(),
            "deviation is capped at 8 in all"
        );
    }

    #[test]
    fn unmeasured_endpoints_rank_after_measured_ones() {
        let mut s = fastest(1, 0, 10);
        assert_eq!(
            endpoints(&s.update(&[unmeasured(), up(50.0)]).unwrap()),
            vec![1]
        );
        let mut s = fastest(3, 0, 10);
        assert_eq!(
            endpoints(
                &s.update(&[unmeasured(), up(50.0), down(1.0), unmeasured()])
                    .unwrap()
            ),
            vec![1, 0, 3],
            "unmeasured fill count, in configuration order"
        );
        let mut s = fastest(1, 100, 10);
        let d = s.update(&[unmeasured(), unmeasured()]).unwrap();
        assert_eq!(endpoints(&d), vec![0]);
        assert_eq!(d.reason, "fastest: endpoint #0 (not measured yet)");
        // Once one is measured it takes the place of the unmeasured incumbent.
        let d = s.update(&[unmeasured(), up(80.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![1]);
        assert!(
            d.reason.contains("endpoint #0 has no latency yet"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn near_equal_endpoints_do_not_flap() {
        let mut s = fastest(1, 0, 10);
        assert_eq!(
            endpoints(&s.update(&[up(10.0), up(10.4)]).unwrap()),
            vec![0]
        );
        for round in 0..20 {
            // The two swap places by a few percent every round.
            let (a, b) = if round % 2 == 0 {
                (10.4, 10.0)
            } else {
                (10.0, 10.4)
            };
            assert_eq!(s.update(&[up(a), up(b)]), None, "round {round}");
        }
        assert_eq!(cur(&s), vec![0]);
    }

    #[test]
    fn without_hysteresis_near_equal_endpoints_flap() {
        // The counterpart of `near_equal_endpoints_do_not_flap`: hysteresis is what holds.
        let mut s = fastest(1, 0, 0);
        s.update(&[up(10.0), up(10.4)]).unwrap();
        let mut changes = 0;
        for round in 0..20 {
            let (a, b) = if round % 2 == 0 {
                (10.4, 10.0)
            } else {
                (10.0, 10.4)
            };
            changes += usize::from(s.update(&[up(a), up(b)]).is_some());
        }
        assert_eq!(changes, 20);
    }

    #[test]
    fn a_clear_win_beyond_the_hysteresis_changes_the_answer() {
        let mut s = fastest(1, 0, 10);
        s.update(&[up(11.0), up(12.0)]).unwrap();
        // Exactly 10 % faster is not more than 10 %: keep.
        assert_eq!(s.update(&[up(11.0), up(10.0)]), None);
        assert_eq!(cur(&s), vec![0]);
        let d = s.update(&[up(11.0), up(9.9)]).expect("a clear win");
        assert_eq!(endpoints(&d), vec![1]);
        assert_eq!(
            d.reason,
            "fastest: endpoint #1 at 9.9 ms; endpoint #1 at 9.9 ms beats endpoint #0 at 11.0 ms by more than 10 %"
        );
        // Now #1 is the incumbent and is protected the same way.
        assert_eq!(s.update(&[up(9.5), up(9.9)]), None);
        assert_eq!(endpoints(&s.update(&[up(8.9), up(9.9)]).unwrap()), vec![0]);
    }

    #[test]
    fn hysteresis_protects_each_of_the_n_places() {
        let mut s = fastest(2, 0, 10);
        let d = s.update(&[up(10.0), up(20.0), up(21.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0, 1]);
        // #2 is a bit faster than #1 now, not by more than 10 %.
        assert_eq!(s.update(&[up(10.0), up(20.0), up(19.0)]), None);
        // #2 beats #1 by more than 10 %: it takes #1's place, #0 stays.
        let d = s.update(&[up(10.0), up(20.0), up(18.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0, 2]);
    }

    #[test]
    fn answer_order_is_sticky_between_near_equal_endpoints() {
        let mut s = fastest(2, 0, 10);
        assert_eq!(
            endpoints(&s.update(&[up(10.0), up(10.3), up(50.0)]).unwrap()),
            vec![0, 1]
        );
        for round in 0..10 {
            let (a, b) = if round % 2 == 0 {
                (10.3, 10.0)
            } else {
                (10.0, 10.3)
            };
            assert_eq!(s.update(&[up(a), up(b), up(50.0)]), None, "round {round}");
        }
        // A clear lead reorders.
        let d = s.update(&[up(12.0), up(10.0), up(50.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![1, 0]);
        assert!(d.reason.contains("reordered"), "{}", d.reason);
    }

    #[test]
    fn deviation_membership_has_a_hysteresis_band() {
        let mut s = fastest(1, 10, 10);
        let d = s.update(&[up(10.0), up(10.9)]).unwrap();
        assert_eq!(endpoints(&d), vec![0, 1]);
        // Both answered: #1 stays while within 10 % of #0...
        assert_eq!(s.update(&[up(10.0), up(11.0)]), None);
        // ...and leaves beyond it.
        let d = s.update(&[up(10.0), up(11.05)]).unwrap();
        assert_eq!(endpoints(&d), vec![0]);
        assert!(
            d.reason
                .contains("endpoint #1 at 11.1 ms is no longer within 10 % of endpoint #0"),
            "{}",
            d.reason
        );
        // Coming back to 10.5 ms is not enough to rejoin (it would flap at the edge)...
        assert_eq!(s.update(&[up(10.0), up(10.5)]), None);
        // ...as fast as the answered one is.
        let d = s.update(&[up(10.0), up(10.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0, 1]);
        assert!(
            d.reason.contains("is within 10 % of endpoint #0"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_down_incumbent_is_replaced_at_once() {
        let mut s = fastest(1, 0, 50);
        s.update(&[up(10.0), up(14.0)]).unwrap();
        let d = s.update(&[down(10.0), up(14.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![1]);
        assert!(d.reason.ends_with("; endpoint #0 is down"), "{}", d.reason);
        // Back up: it is a newcomer now and must beat #1 by more than 50 %.
        assert_eq!(s.update(&[up(10.0), up(14.0)]), None);
        assert_eq!(endpoints(&s.update(&[up(9.0), up(14.0)]).unwrap()), vec![0]);
    }

    #[test]
    fn unchanged_answer_is_none() {
        let mut s = fastest(1, 0, 10);
        assert!(s.update(&[up(10.0), up(20.0)]).is_some());
        assert_eq!(s.update(&[up(10.0), up(20.0)]), None);
        assert_eq!(s.update(&[up(12.0), up(30.0)]), None);
        assert_eq!(cur(&s), vec![0]);
        assert_eq!(
            s.current().unwrap().reason,
            "fastest: endpoint #0 at 10.0 ms"
        );
    }

    #[test]
    fn weighted_answers_up_endpoints_with_their_weights() {
        let mut s = Selector::new(Policy::Weighted, AllDown::FailOpen);
        let d = s
            .update(&[weighted_up(1), weighted_down(3), weighted_up(2)])
            .unwrap();
        assert_eq!(d.answer, Answer::Weighted(vec![(0, 1), (2, 2)]));
        assert_eq!(
            d.reason,
            "weighted: endpoint #0 (weight 1), endpoint #2 (weight 2); 1 endpoint(s) down"
        );
        assert_eq!(
            s.update(&[weighted_up(1), weighted_down(3), weighted_up(2)]),
            None
        );
        let d = s
            .update(&[weighted_up(1), weighted_up(3), weighted_up(2)])
            .unwrap();
        assert_eq!(d.answer, Answer::Weighted(vec![(0, 1), (1, 3), (2, 2)]));
        let d = s
            .update(&[weighted_down(1), weighted_up(3), weighted_down(2)])
            .unwrap();
        assert_eq!(d.answer, Answer::Weighted(vec![(1, 3)]));
    }

    #[test]
    fn weighted_zero_weights() {
        let mut s = Selector::new(Policy::Weighted, AllDown::FailOpen);
        let d = s
            .update(&[weighted_up(0), weighted_up(5), weighted_down(7)])
            .unwrap();
        assert_eq!(
            d.answer,
            Answer::Weighted(vec![(1, 5)]),
            "weight 0 is drained"
        );
        let d = s
            .update(&[weighted_up(0), weighted_down(5), weighted_up(0)])
            .unwrap();
        assert_eq!(
            d.answer,
            Answer::Weighted(vec![(0, 1), (2, 1)]),
            "all zero: equal shares"
        );
    }

    #[test]
    fn weighted_keeps_the_heaviest_eight() {
        let cands: Vec<Candidate> = (1..=10).map(weighted_up).collect();
        let mut s = Selector::new(Policy::Weighted, AllDown::FailOpen);
        let d = s.update(&cands).unwrap();
        assert_eq!(
            d.answer,
            Answer::Weighted((2..10).map(|i| (i, i as u32 + 1)).collect())
        );
    }

    #[test]
    fn failover_prefers_the_lowest_priority_and_fails_back() {
        let mut s = Selector::new(Policy::Failover, AllDown::FailOpen);
        let d = s
            .update(&[prio(2, true), prio(1, true), prio(3, true)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![1]);
        assert_eq!(
            d.reason,
            "failover: endpoint #1 (priority 1) is the preferred endpoint and up"
        );
        assert_eq!(
            s.update(&[prio(2, true), prio(1, true), prio(3, false)]),
            None
        );

        let d = s
            .update(&[prio(2, true), prio(1, false), prio(3, true)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![0]);
        assert_eq!(
            d.reason,
            "failover: endpoint #1 (priority 1) is down; endpoint #0 (priority 2) takes over"
        );
        let d = s
            .update(&[prio(2, false), prio(1, false), prio(3, true)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![2]);

        // Fail back: the preferred one is up again (health already required `rise`).
        let d = s
            .update(&[prio(2, false), prio(1, true), prio(3, true)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![1]);
        assert_eq!(
            d.reason,
            "failover: endpoint #1 (priority 1) is up again; failing back from endpoint #2 (priority 3)"
        );
    }

    #[test]
    fn failover_ties_go_to_configuration_order() {
        let mut s = Selector::new(Policy::Failover, AllDown::FailOpen);
        let d = s
            .update(&[prio(5, false), prio(1, true), prio(1, true)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![1]);
        let mut s = Selector::new(Policy::Failover, AllDown::FailOpen);
        let d = s
            .update(&[prio(0, false), prio(1, true), prio(1, true)])
            .unwrap();
        assert_eq!(endpoints(&d), vec![1]);
        assert_eq!(
            d.reason,
            "failover: endpoint #1 (priority 1) is the first one up; 1 preferred endpoint(s) down"
        );
    }

    #[test]
    fn all_healthy_answers_every_up_endpoint_in_order() {
        let mut s = Selector::new(Policy::AllHealthy, AllDown::FailOpen);
        let d = s.update(&[up(30.0), down(1.0), up(10.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0, 2]);
        assert_eq!(d.reason, "all-healthy: 2 of 3 endpoints up");
        let cands: Vec<Candidate> = (0..11)
            .map(|i| if i == 3 { down(1.0) } else { up(1.0) })
            .collect();
        let d = s.update(&cands).unwrap();
        assert_eq!(endpoints(&d), vec![0, 1, 2, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn fail_open_keeps_the_last_known_good_set() {
        let mut s = fastest(2, 0, 10);
        s.update(&[up(10.0), up(20.0), up(30.0)]).unwrap();
        s.update(&[up(10.0), down(20.0), up(30.0)]).unwrap();
        assert_eq!(cur(&s), vec![0, 2]);

        let d = s
            .update(&[down(10.0), down(20.0), down(30.0)])
            .expect("all down is a change");
        assert_eq!(endpoints(&d), vec![0, 2]);
        assert!(d.all_down);
        assert_eq!(
            d.reason,
            "all endpoints down (3 of 3); failing open to last known good set"
        );
        assert_eq!(s.update(&[down(10.0), down(20.0), down(30.0)]), None);

        // Recovery with the same endpoints is still a change: the pool is no longer down.
        let d = s.update(&[up(10.0), down(20.0), up(30.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0, 2]);
        assert!(!d.all_down);
    }

    #[test]
    fn fail_open_without_a_good_answer_uses_every_endpoint() {
        let cands: Vec<Candidate> = (0..10).map(|_| down(1.0)).collect();
        for policy in [
            Policy::Fastest {
                count: 1,
                deviation_pct: 0,
                hysteresis_pct: 0,
            },
            Policy::Failover,
            Policy::AllHealthy,
        ] {
            let mut s = Selector::new(policy.clone(), AllDown::FailOpen);
            let d = s.update(&cands).unwrap();
            assert_eq!(endpoints(&d), (0..8).collect::<Vec<_>>(), "{policy:?}");
            assert!(d.all_down);
            assert!(d.reason.starts_with("all endpoints down"), "{}", d.reason);
        }
        let mut s = Selector::new(Policy::Weighted, AllDown::FailOpen);
        let d = s.update(&[weighted_down(1), weighted_down(3)]).unwrap();
        assert_eq!(d.answer, Answer::Weighted(vec![(0, 1), (1, 3)]));
        assert!(d.all_down);
    }

    #[test]
    fn weighted_fails_open_to_its_last_weighted_answer() {
        let mut s = Selector::new(Policy::Weighted, AllDown::FailOpen);
        s.update(&[weighted_up(1), weighted_down(3), weighted_up(2)])
            .unwrap();
        let d = s
            .update(&[weighted_down(1), weighted_down(3), weighted_down(2)])
            .unwrap();
        assert_eq!(d.answer, Answer::Weighted(vec![(0, 1), (2, 2)]));
        assert!(d.all_down);
    }

    #[test]
    fn servfail_and_fallback_when_all_down() {
        let mut s = Selector::new(Policy::AllHealthy, AllDown::Servfail);
        s.update(&[up(1.0), up(2.0)]).unwrap();
        let d = s.update(&[down(1.0), down(2.0)]).unwrap();
        assert_eq!(d.answer, Answer::Servfail);
        assert!(d.all_down);
        assert_eq!(d.reason, "all endpoints down (2 of 2); answering SERVFAIL");

        let mut s = Selector::new(Policy::Failover, AllDown::Fallback);
        let d = s.update(&[down(1.0)]).unwrap();
        assert_eq!(d.answer, Answer::Fallback);
        assert!(d.all_down);
        let d = s.update(&[up(1.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0]);
        assert!(!d.all_down);
    }

    #[test]
    fn a_pool_without_candidates_servfails() {
        let mut s = Selector::new(Policy::AllHealthy, AllDown::FailOpen);
        let d = s.update(&[]).unwrap();
        assert_eq!(d.answer, Answer::Servfail);
        assert!(d.all_down);
        // A stale last-good answer from a larger pool is not reused either.
        let mut s = fastest(1, 0, 0);
        s.update(&[up(20.0), up(10.0)]).unwrap();
        let d = s.update(&[down(1.0)]).unwrap();
        assert_eq!(endpoints(&d), vec![0]);
    }

    /// A small deterministic generator for the sweep below.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
    }

    #[test]
    fn answers_are_never_empty_and_only_name_up_endpoints() {
        let mut rng = Lcg(7);
        let policies = [
            Policy::Fastest {
                count: 2,
                deviation_pct: 20,
                hysteresis_pct: 10,
            },
            Policy::Weighted,
            Policy::Failover,
            Policy::AllHealthy,
        ];
        for policy in &policies {
            for all_down in [AllDown::FailOpen, AllDown::Servfail, AllDown::Fallback] {
                let mut s = Selector::new(policy.clone(), all_down.clone());
                for _ in 0..500 {
                    let n = 1 + (rng.next() % 10) as usize;
                    let cands: Vec<Candidate> = (0..n)
                        .map(|_| Candidate {
                            up: !rng.next().is_multiple_of(3),
                            latency: (!rng.next().is_multiple_of(5))
                                .then(|| Duration::from_micros(u64::from(rng.next() % 50_000))),
                            weight: rng.next() % 4,
                            priority: rng.next() % 3,
                        })
                        .collect();
                    s.update(&cands);
                    let d = s.current().unwrap().clone();
                    let any_up = cands.iter().any(|c| c.up);
                    assert_eq!(d.all_down, !any_up, "{d:?}");
                    let idx: Vec<usize> = match &d.answer {
                        Answer::Endpoints(v) => v.clone(),
                        Answer::Weighted(v) => {
                            assert!(v.iter().all(|&(_, w)| w > 0), "{d:?}");
                            v.iter().map(|&(i, _)| i).collect()
                        }
                        Answer::Servfail | Answer::Fallback => {
                            assert!(!any_up, "{d:?}");
                            continue;
                        }
                    };
                    assert!(!idx.is_empty() && idx.len() <= MAX_ANSWER, "{d:?}");
                    let mut dedup = idx.clone();
                    dedup.sort_unstable();
                    dedup.dedup();
                    assert_eq!(dedup.len(), idx.len(), "duplicates in {d:?}");
                    assert!(idx.iter().all(|&i| i < n), "{d:?}");
                    if any_up {
                        assert!(idx.iter().all(|&i| cands[i].up), "{d:?} for {cands:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn thresholds_split_the_range_in_proportion() {
        let t = thresholds(&[1, 3]);
        assert_eq!(t.len(), 2);
        assert!(t[0].abs_diff(u32::MAX / 4) <= 1, "{t:?}");
        assert_eq!(t[1], u32::MAX);

        // Sample r evenly over the whole range: the counts are the exact proportions.
        let mut counts = [0u32; 2];
        for k in 0..1u32 << 20 {
            counts[pick(&t, k << 12)] += 1;
        }
        assert_eq!(counts, [1 << 18, 3 << 18]);

        let t = thresholds(&[1, 2, 0, 1]);
        let mut counts = [0u32; 4];
        for k in 0..1u32 << 20 {
            counts[pick(&t, (k << 12) | 0xfff)] += 1;
        }
        let n = 1u32 << 20;
        assert!(counts[0].abs_diff(n / 4) <= 1, "{counts:?}");
        assert!(counts[1].abs_diff(n / 2) <= 1, "{counts:?}");
        assert_eq!(counts[2], 0, "weight 0 is never picked");
        assert!(counts[3].abs_diff(n / 4) <= 1, "{counts:?}");

        let t = thresholds(&[1, 1, 1]);
        let mut counts = [0u32; 3];
        for k in 0..3u32 << 18 {
            // 3 × 2^18 evenly spaced points.
            let r = ((u64::from(k) << 32) / (3u64 << 18)) as u32;
            counts[pick(&t, r)] += 1;
        }
        assert_eq!(counts, [1 << 18; 3]);
    }

    #[test]
    fn thresholds_edge_cases() {
        assert_eq!(thresholds(&[]), Vec::<u32>::new());
        assert_eq!(pick(&[], 12345), 0);
        assert_eq!(thresholds(&[7]), vec![u32::MAX]);
        assert_eq!(pick(&[u32::MAX], u32::MAX), 0);
        assert_eq!(
            thresholds(&[0, 0]),
            vec![1 << 31, u32::MAX],
            "all zero: equal"
        );
        assert_eq!(thresholds(&[1; 12]).len(), MAX_ANSWER);
        let t = thresholds(&[u32::MAX; 8]);
        assert_eq!(t[0], 1 << 29);
        assert_eq!(t[3], 1 << 31);
        assert_eq!(pick(&t, u32::MAX), 7);
        assert_eq!(pick(&t, 0), 0);
        assert_eq!(pick(&t, (1 << 29) - 1), 0);
        assert_eq!(pick(&t, 1 << 29), 1);
    }

    #[test]
    fn names_replace_endpoint_numbers() {
        let names = ["192.0.2.10", "192.0.2.11"];
        assert_eq!(
            name_endpoints(
                "fastest: endpoint #0 at 12.3 ms beats endpoint #1 at 48.0 ms by more than 10 %",
                &names
            ),
            "fastest: 192.0.2.10 at 12.3 ms beats 192.0.2.11 at 48.0 ms by more than 10 %"
        );
        assert_eq!(
            name_endpoints("endpoint #12 and endpoint #x, endpoint #1", &names),
            "endpoint #12 and endpoint #x, 192.0.2.11"
        );
    }

    #[test]
    fn answers_render_with_names() {
        let names = ["192.0.2.10".to_string(), "192.0.2.11".to_string()];
        assert_eq!(
            Answer::Endpoints(vec![1, 0]).render(&names),
            "192.0.2.11, 192.0.2.10"
        );
        assert_eq!(
            Answer::Weighted(vec![(0, 1), (1, 3)]).render(&names),
            "192.0.2.10 (weight 1), 192.0.2.11 (weight 3)"
        );
        assert_eq!(Answer::Endpoints(vec![5]).render(&names), "#5");
        assert_eq!(Answer::Fallback.render(&names), "fallback");
        assert_eq!(Answer::Servfail.render(&names), "SERVFAIL");
    }
}
