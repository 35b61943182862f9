//! The [`Selector`]: one pool's answer from its candidates, as its policy says, reported
//! only when it changes.

use std::time::Duration;

use dns_common::MAX_ANSWER_RRS;

use crate::steering::policy::{
    AllDown, Policy,
    reason::{AllDownReason, FailoverReason, FastestChange, Ranked, Rated, Reason},
};

/// One endpoint of a pool as the health layer sees it right now.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The health verdict (after `rise`/`fall` and operator pins).
    pub up: bool,
    /// Pinned down by the operator: never answered, not even when the pool fails open.
    pub pinned_down: bool,
    /// No verdict yet: the probes have not reached `rise` or `fall` since start (and no pin
    /// decides). Counts as down for [`Selector::update`]; [`Selector::provisional`] answers
    /// it.
    pub unknown: bool,
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
    /// Why; renders as one human sentence (see [`Reason::named`]).
    pub reason: Reason,
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
        self.commit(decision)
    }

    /// The answer before the probes' first verdicts (at start-up, or for endpoints a reload
    /// added): every endpoint that may be up — up, or without a verdict yet — but none pinned
    /// or known down. A `failover` pool answers only the first of them by priority (never
    /// primary and standby together); a `weighted` one shares among them by weight. When
    /// none may be up, the pool's all-down behaviour answers. Reported, like
    /// [`Selector::update`], only when it changes.
    pub fn provisional(&mut self, candidates: &[Candidate]) -> Option<Decision> {
        let eligible: Vec<usize> = (0..candidates.len())
            .filter(|&i| {
                let c = &candidates[i];
                !c.pinned_down && (c.up || c.unknown)
            })
            .collect();
        let waiting = candidates.iter().filter(|c| c.unknown).count();
        let decision = match eligible.first() {
            None => self.none_up(candidates),
            Some(_) => {
                let answer = match &self.policy {
                    Policy::Failover => Answer::Endpoints(
                        eligible
                            .iter()
                            .copied()
                            .min_by_key(|&i| (candidates[i].priority, i))
                            .into_iter()
                            .collect(),
                    ),
                    Policy::Weighted => Answer::Weighted(weighted_set(candidates, &eligible)),
                    Policy::Fastest { .. } | Policy::AllHealthy => {
                        Answer::Endpoints(eligible.iter().copied().take(MAX_ANSWER_RRS).collect())
                    }
                };
                Decision {
                    reason: Reason::Provisional {
                        waiting,
                        failover: self.policy == Policy::Failover,
                    },
                    answer,
                    all_down: false,
                }
            }
        };
        self.commit(decision)
    }

    /// Makes `decision` the current one; returns it if it changed the answer or the
    /// all-down state. The reason stays the one of the last change, except that a
    /// provisional or restored answer the policy confirms takes the policy's reason.
    fn commit(&mut self, decision: Decision) -> Option<Decision> {
        match &mut self.current {
            Some(cur) if cur.answer == decision.answer && cur.all_down == decision.all_down => {
                if matches!(cur.reason, Reason::Provisional { .. } | Reason::Restored)
                    && !matches!(decision.reason, Reason::Provisional { .. })
                {
                    cur.reason = decision.reason;
                }
                None
            }
            _ => {
                self.current = Some(decision.clone());
                Some(decision)
            }
        }
    }

    /// Starts from `answer` as if it had been decided (a restart restores the answer in
    /// force, a reload carries it over), so hysteresis and fail-open continue from it;
    /// `last_good` is the last answer that had an endpoint up.
    pub fn seed(&mut self, answer: Answer, all_down: bool, last_good: Option<Answer>) {
        self.current = Some(Decision {
            answer,
            reason: Reason::Restored,
            all_down,
        });
        self.last_good = last_good;
    }

    /// The last answer chosen while an endpoint was up (what failing open answers).
    pub fn last_good(&self) -> Option<&Answer> {
        self.last_good.as_ref()
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

        let want = count.clamp(1, MAX_ANSWER_RRS);
        let mut picks: Vec<usize> = measured.iter().map(|&(i, _)| i).take(want).collect();
        let leader = measured.first().copied();
        if let Some((_, top)) = leader.filter(|_| deviation_pct > 0) {
            // Within the deviation of the leader, both effective: k ≤ top × (1 + d/100).
            let limit = top.saturating_mul(100 + u128::from(deviation_pct));
            for &(i, k) in measured.iter().skip(want) {
                if picks.len() >= MAX_ANSWER_RRS || k.saturating_mul(100) > limit {
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

        let rated = |i: usize| Rated {
            endpoint: i,
            latency: candidates[i].latency,
        };
        let mut changes = Vec::new();
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
            changes.push(match (dc.up, beaten_by, dc.latency, leader) {
                (false, ..) => FastestChange::Down(d),
                (true, Some(c), ..) => FastestChange::Beaten {
                    by: rated(c),
                    dropped: rated(d),
                    hysteresis_pct,
                },
                (true, None, Some(_), Some((l, _))) if l != d => FastestChange::NoLongerWithin {
                    dropped: rated(d),
                    leader: rated(l),
                    deviation_pct,
                },
                (true, None, Some(_), _) => FastestChange::NoLongerAmongFastest(rated(d)),
                (true, None, None, _) => FastestChange::Unmeasured(d),
            });
        }
        if dropped.is_empty() && !previous.is_empty() {
            for &a in &added {
                changes.push(match (candidates[a].latency, leader) {
                    (Some(_), Some((l, _))) if l != a => FastestChange::Within {
                        added: rated(a),
                        leader: rated(l),
                        deviation_pct,
                    },
                    _ => FastestChange::Joins(rated(a)),
                });
            }
            if added.is_empty() && picks.as_slice() != previous {
                changes.push(FastestChange::Reordered { hysteresis_pct });
            }
        }
        Decision {
            reason: Reason::Fastest {
                picks: picks.iter().map(|&i| rated(i)).collect(),
                changes,
            },
            answer: Answer::Endpoints(picks),
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
        let ranked = |endpoint: usize, priority: u32| Ranked { endpoint, priority };
        let best_ranked = ranked(best, prio);
        let why = match previous.and_then(|p| candidates.get(p).map(|c| (p, c))) {
            Some((p, pc)) if !pc.up => FailoverReason::TakesOver {
                down: ranked(p, pc.priority),
                best: best_ranked,
            },
            Some((p, pc)) => FailoverReason::FailsBack {
                best: best_ranked,
                from: ranked(p, pc.priority),
            },
            None => {
                let preferred_down = candidates
                    .iter()
                    .enumerate()
                    .filter(|&(i, c)| !c.up && (c.priority, i) < (prio, best))
                    .count();
                if preferred_down == 0 {
                    FailoverReason::Preferred { best: best_ranked }
                } else {
                    FailoverReason::FirstUp {
                        best: best_ranked,
                        preferred_down,
                    }
                }
            }
        };
        Decision {
            answer: Answer::Endpoints(vec![best]),
            reason: Reason::Failover(why),
            all_down: false,
        }
    }

    /// No endpoint is up: what the all-down behaviour answers. Failing open never answers an
    /// endpoint pinned down: the last known good answer without them, else every endpoint
    /// not pinned down, else (all pinned down) SERVFAIL.
    fn none_up(&self, candidates: &[Candidate]) -> Decision {
        let n = candidates.len();
        if n == 0 {
            return Decision {
                answer: Answer::Servfail,
                reason: Reason::AllDown(AllDownReason::NoEndpoints),
                all_down: true,
            };
        }
        let answerable: Vec<usize> = (0..n).filter(|&i| !candidates[i].pinned_down).collect();
        let (answer, why) = match self.all_down {
            AllDown::Servfail => (Answer::Servfail, AllDownReason::Servfail { n }),
            AllDown::Fallback(_) => (Answer::Fallback, AllDownReason::Fallback { n }),
            AllDown::FailOpen => match self
                .last_good
                .as_ref()
                .and_then(|a| in_range(a, n))
                .and_then(|a| without(&a, &answerable))
            {
                Some(a) => (a, AllDownReason::LastKnownGood { n }),
                None if answerable.is_empty() => {
                    (Answer::Servfail, AllDownReason::AllPinnedDown { n })
                }
                None => {
                    let answer = match self.policy {
                        Policy::Weighted => Answer::Weighted(weighted_set(candidates, &answerable)),
                        Policy::Fastest { .. } | Policy::Failover | Policy::AllHealthy => {
                            Answer::Endpoints(
                                answerable.iter().copied().take(MAX_ANSWER_RRS).collect(),
                            )
                        }
                    };
                    (answer, AllDownReason::NeverUp { n })
                }
            },
        };
        Decision {
            answer,
            reason: Reason::AllDown(why),
            all_down: true,
        }
    }
}

/// `answer` restricted to the endpoints in `keep` (a weighted answer keeps their weights);
/// `None` if nothing is left.
fn without(answer: &Answer, keep: &[usize]) -> Option<Answer> {
    let a = match answer {
        Answer::Endpoints(v) => {
            Answer::Endpoints(v.iter().copied().filter(|i| keep.contains(i)).collect())
        }
        Answer::Weighted(v) => Answer::Weighted(
            v.iter()
                .copied()
                .filter(|(i, _)| keep.contains(i))
                .collect(),
        ),
        Answer::Fallback | Answer::Servfail => return Some(answer.clone()),
    };
    match &a {
        Answer::Endpoints(v) if v.is_empty() => None,
        Answer::Weighted(v) if v.is_empty() => None,
        _ => Some(a),
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

fn weighted(candidates: &[Candidate]) -> Decision {
    let up: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].up)
        .collect();
    let set = weighted_set(candidates, &up);
    let reason = Reason::Weighted {
        set: set.clone(),
        down: candidates.len() - up.len(),
        left_out: up.len() - set.len(),
    };
    Decision {
        answer: Answer::Weighted(set),
        reason,
        all_down: false,
    }
}

/// The weighted answer over `members` (indexes, in configuration order): positive weights
/// only unless all are zero (then equal shares), at most [`MAX_ANSWER_RRS`] of the heaviest.
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
    if set.len() > MAX_ANSWER_RRS {
        set.sort_by_key(|&(i, w)| (std::cmp::Reverse(w), i));
        set.truncate(MAX_ANSWER_RRS);
        set.sort_by_key(|&(i, _)| i);
    }
    set
}

fn all_healthy(candidates: &[Candidate]) -> Decision {
    let up: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].up)
        .collect();
    let picks: Vec<usize> = up.iter().copied().take(MAX_ANSWER_RRS).collect();
    Decision {
        answer: Answer::Endpoints(picks),
        reason: Reason::AllHealthy {
            up: up.len(),
            total: candidates.len(),
        },
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
