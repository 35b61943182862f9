//! Every policy, hysteresis and deviation, all-down behaviours, and the reasons.

use std::time::Duration;

use dns_common::MAX_ANSWER_RRS;

use super::*;

fn up(ms: f64) -> Candidate {
    Candidate {
        up: true,
        pinned_down: false,
        unknown: false,
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
    assert_eq!(d.reason.to_string(), "fastest: endpoint #1 at 10.0 ms");

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
    assert_eq!(
        d.reason.to_string(),
        "fastest: endpoint #0 (not measured yet)"
    );
    // Once one is measured it takes the place of the unmeasured incumbent.
    let d = s.update(&[unmeasured(), up(80.0)]).unwrap();
    assert_eq!(endpoints(&d), vec![1]);
    assert!(
        d.reason
            .to_string()
            .contains("endpoint #0 has no latency yet"),
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
        d.reason.to_string(),
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
    assert!(d.reason.to_string().contains("reordered"), "{}", d.reason);
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
            .to_string()
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
        d.reason
            .to_string()
            .contains("is within 10 % of endpoint #0"),
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
    assert!(
        d.reason.to_string().ends_with("; endpoint #0 is down"),
        "{}",
        d.reason
    );
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
        s.current().unwrap().reason.to_string(),
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
        d.reason.to_string(),
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
        d.reason.to_string(),
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
        d.reason.to_string(),
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
        d.reason.to_string(),
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
        d.reason.to_string(),
        "failover: endpoint #1 (priority 1) is the first one up; 1 preferred endpoint(s) down"
    );
}

#[test]
fn all_healthy_answers_every_up_endpoint_in_order() {
    let mut s = Selector::new(Policy::AllHealthy, AllDown::FailOpen);
    let d = s.update(&[up(30.0), down(1.0), up(10.0)]).unwrap();
    assert_eq!(endpoints(&d), vec![0, 2]);
    assert_eq!(d.reason.to_string(), "all-healthy: 2 of 3 endpoints up");
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
        d.reason.to_string(),
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
        assert!(
            d.reason.to_string().starts_with("all endpoints down"),
            "{}",
            d.reason
        );
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
    assert_eq!(
        d.reason.to_string(),
        "all endpoints down (2 of 2); answering SERVFAIL"
    );

    let mut s = Selector::new(Policy::Failover, AllDown::Fallback(vec![]));
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
        for all_down in [
            AllDown::FailOpen,
            AllDown::Servfail,
            AllDown::Fallback(vec![]),
        ] {
            let mut s = Selector::new(policy.clone(), all_down.clone());
            for _ in 0..500 {
                let n = 1 + (rng.next() % 10) as usize;
                let cands: Vec<Candidate> = (0..n)
                    .map(|_| {
                        let up = !rng.next().is_multiple_of(3);
                        Candidate {
                            up,
                            // Pins are absolute: a pinned-down endpoint is down.
                            pinned_down: !up && rng.next().is_multiple_of(2),
                            unknown: false,
                            latency: (!rng.next().is_multiple_of(5))
                                .then(|| Duration::from_micros(u64::from(rng.next() % 50_000))),
                            weight: rng.next() % 4,
                            priority: rng.next() % 3,
                        }
                    })
                    .collect();
                s.update(&cands);
                let d = s.current().unwrap().clone();
                let any_up = cands.iter().any(|c| c.up);
                assert_eq!(d.all_down, !any_up, "{d:?}");
                if let Answer::Endpoints(v) = &d.answer {
                    assert!(
                        v.iter().all(|&i| !cands[i].pinned_down),
                        "a pinned-down endpoint answered: {d:?} for {cands:?}"
                    );
                }
                if let Answer::Weighted(v) = &d.answer {
                    assert!(v.iter().all(|&(i, _)| !cands[i].pinned_down), "{d:?}");
                }
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
                assert!(!idx.is_empty() && idx.len() <= MAX_ANSWER_RRS, "{d:?}");
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

/// The text substitution reasons were named with before they were structured: every
/// `endpoint #N` replaced by `names[N]` where there is one. The reference for
/// [`Reason::named`].
fn substitute(text: &str, names: &[&str]) -> String {
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
            Some(name) => out.push_str(name),
            None => out.push_str(&rest[pos..pos + TAG.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn reasons_render_with_names() {
    let names = ["192.0.2.10", "192.0.2.11"];
    let rated = |endpoint, us| Rated {
        endpoint,
        latency: Some(Duration::from_micros(us)),
    };
    let reason = Reason::Fastest {
        picks: vec![rated(0, 12_300)],
        changes: vec![FastestChange::Beaten {
            by: rated(0, 12_300),
            dropped: rated(1, 48_000),
            hysteresis_pct: 10,
        }],
    };
    assert_eq!(
        reason.to_string(),
        "fastest: endpoint #0 at 12.3 ms; endpoint #0 at 12.3 ms beats endpoint #1 at 48.0 ms by more than 10 %"
    );
    assert_eq!(
        reason.named(&names).to_string(),
        "fastest: 192.0.2.10 at 12.3 ms; 192.0.2.10 at 12.3 ms beats 192.0.2.11 at 48.0 ms by more than 10 %"
    );
    // An endpoint without a name keeps its number.
    let reason = Reason::Failover(FailoverReason::TakesOver {
        down: Ranked {
            endpoint: 12,
            priority: 0,
        },
        best: Ranked {
            endpoint: 1,
            priority: 1,
        },
    });
    assert_eq!(
        reason.named(&names).to_string(),
        "failover: endpoint #12 (priority 0) is down; 192.0.2.11 (priority 1) takes over"
    );
}

#[test]
fn named_reasons_are_the_substituted_text() {
    let names: Vec<String> = (0..10).map(|i| format!("host-{i}.example.net.")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut rng = Lcg(11);
    for policy in [
        Policy::Fastest {
            count: 2,
            deviation_pct: 20,
            hysteresis_pct: 10,
        },
        Policy::Weighted,
        Policy::Failover,
        Policy::AllHealthy,
    ] {
        for all_down in [AllDown::FailOpen, AllDown::Servfail] {
            let mut s = Selector::new(policy.clone(), all_down);
            let mut seen = 0;
            for _ in 0..300 {
                let n = 1 + (rng.next() % 10) as usize;
                let cands: Vec<Candidate> = (0..n)
                    .map(|_| Candidate {
                        up: !rng.next().is_multiple_of(3),
                        pinned_down: false,
                        unknown: false,
                        latency: (!rng.next().is_multiple_of(5))
                            .then(|| Duration::from_micros(u64::from(rng.next() % 50_000))),
                        weight: rng.next() % 4,
                        priority: rng.next() % 3,
                    })
                    .collect();
                let Some(d) = s.update(&cands) else { continue };
                seen += 1;
                let plain = d.reason.to_string();
                assert_eq!(
                    d.reason.named(&names).to_string(),
                    substitute(&plain, &names)
                );
                assert_eq!(
                    d.reason.named(&names[..2]).to_string(),
                    substitute(&plain, &names[..2])
                );
            }
            assert!(seen > 20, "{policy:?}: {seen} decisions");
        }
    }
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

#[test]
fn every_policy_and_all_down_name_builds_its_variant() {
    use hickory_proto::rr::{Name, RecordType};
    let pool = Name::from_ascii("www.example.test.").unwrap();
    for name in POLICY_NAMES {
        let keys = PolicyKeys {
            policy: Some(name),
            ..PolicyKeys::default()
        };
        let (policy, _) = Policy::from_keys(&keys, &pool, RecordType::A, true).unwrap();
        assert_eq!(policy.name(), *name);
    }
    for name in ALL_DOWN_NAMES {
        let keys = PolicyKeys {
            all_down: Some(name),
            fallback: (*name == "fallback").then(|| vec!["192.0.2.1"]),
            ..PolicyKeys::default()
        };
        let (_, all_down) = Policy::from_keys(&keys, &pool, RecordType::A, true).unwrap();
        assert!(all_down.to_string().starts_with(name), "{all_down}");
    }
}

fn unknown_at(priority: u32) -> Candidate {
    Candidate {
        up: false,
        unknown: true,
        latency: None,
        priority,
        ..up(0.0)
    }
}

#[test]
fn provisional_answers_what_may_be_up_and_failover_only_its_first() {
    let mut s = Selector::new(Policy::Failover, AllDown::FailOpen);
    // Nothing known: the lowest priority, not the first listed.
    let d = s
        .provisional(&[unknown_at(2), unknown_at(0), unknown_at(1)])
        .unwrap();
    assert_eq!(d.answer, Answer::Endpoints(vec![1]));
    assert!(!d.all_down);
    assert!(
        d.reason.to_string().contains("never more than one"),
        "{}",
        d.reason
    );
    // The same again: no change reported.
    assert_eq!(
        s.provisional(&[unknown_at(2), unknown_at(0), unknown_at(1)]),
        None
    );
    // The preferred one known down, another pinned down: the next that may be up.
    let mut known_down = unknown_at(0);
    known_down.unknown = false;
    let mut pinned = unknown_at(1);
    pinned.pinned_down = true;
    let d = s.provisional(&[unknown_at(2), known_down, pinned]).unwrap();
    assert_eq!(d.answer, Answer::Endpoints(vec![0]));

    let mut s = Selector::new(Policy::default(), AllDown::FailOpen);
    let d = s
        .provisional(&[
            unknown_at(0),
            up(9.0),
            Candidate {
                pinned_down: true,
                ..down(1.0)
            },
        ])
        .unwrap();
    assert_eq!(d.answer, Answer::Endpoints(vec![0, 1]));

    // Nothing may be up: the all-down behaviour; failing open never to a pinned endpoint.
    let all_pinned = [
        Candidate {
            pinned_down: true,
            ..down(1.0)
        },
        Candidate {
            pinned_down: true,
            ..down(1.0)
        },
    ];
    let d = Selector::new(Policy::AllHealthy, AllDown::FailOpen)
        .provisional(&all_pinned)
        .unwrap();
    assert_eq!(d.answer, Answer::Servfail);
    assert!(d.all_down);
    assert!(d.reason.to_string().contains("pinned down"), "{}", d.reason);
    let d = Selector::new(Policy::AllHealthy, AllDown::Fallback(vec![]))
        .provisional(&all_pinned)
        .unwrap();
    assert_eq!(d.answer, Answer::Fallback);
}

#[test]
fn a_seeded_answer_is_kept_by_hysteresis_and_fail_open() {
    let fastest = Policy::Fastest {
        count: 1,
        deviation_pct: 0,
        hysteresis_pct: 20,
    };
    let mut s = Selector::new(fastest, AllDown::FailOpen);
    s.seed(
        Answer::Endpoints(vec![1]),
        false,
        Some(Answer::Endpoints(vec![1])),
    );
    // Endpoint 0 is faster, but not by more than 20 %: the seeded incumbent stays, and
    // the policy's reason replaces "restored".
    assert_eq!(s.update(&[up(9.0), up(10.0)]), None);
    assert!(
        s.current()
            .unwrap()
            .reason
            .to_string()
            .starts_with("fastest: "),
        "{}",
        s.current().unwrap().reason
    );
    // All down: fail open to the seeded last good answer.
    let d = s.update(&[down(9.0), down(10.0)]).unwrap();
    assert_eq!(d.answer, Answer::Endpoints(vec![1]));
    assert!(d.all_down);
}
