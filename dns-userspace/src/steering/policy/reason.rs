//! Why a pool answers what it answers: a [`Reason`] holds endpoint indexes and the figures
//! behind a decision, and renders as one human sentence, naming endpoints `endpoint #i`
//! ([`fmt::Display`]) or by their addresses ([`Reason::named`]).

use std::{fmt, time::Duration};

use dns_common::MAX_ANSWER_RRS;

/// An endpoint with its smoothed latency (`None`: not measured yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rated {
    pub endpoint: usize,
    pub latency: Option<Duration>,
}

/// An endpoint with its failover priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranked {
    pub endpoint: usize,
    pub priority: u32,
}

/// Why a pool's answer is what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The fastest endpoints, fastest first, and what changed since the last answer.
    Fastest {
        picks: Vec<Rated>,
        changes: Vec<FastestChange>,
    },
    Failover(FailoverReason),
    /// Every up endpoint with its weight (`set`), how many are down, and how many up ones
    /// are left out (weight 0, or more than the answer holds).
    Weighted {
        set: Vec<(usize, u32)>,
        down: usize,
        left_out: usize,
    },
    /// Every up endpoint (at most [`MAX_ANSWER_RRS`]).
    AllHealthy {
        up: usize,
        total: usize,
    },
    /// No endpoint is up.
    AllDown(AllDownReason),
    /// Before the first verdicts: every endpoint that may be up (`failover`: the first of
    /// them by priority); `waiting` have no verdict yet.
    Provisional {
        waiting: usize,
        failover: bool,
    },
    /// The answer in force when the daemon stopped (read from the state file) or before a
    /// reload, not decided again yet.
    Restored,
}

/// One change of a `fastest` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastestChange {
    /// An answered endpoint went down.
    Down(usize),
    /// `by` replaced `dropped`, faster by more than the hysteresis.
    Beaten {
        by: Rated,
        dropped: Rated,
        hysteresis_pct: u32,
    },
    /// `dropped` fell out of the deviation allowance around `leader`.
    NoLongerWithin {
        dropped: Rated,
        leader: Rated,
        deviation_pct: u32,
    },
    NoLongerAmongFastest(Rated),
    /// An unmeasured endpoint gave its place to a measured one.
    Unmeasured(usize),
    /// `added` came within the deviation allowance around `leader`.
    Within {
        added: Rated,
        leader: Rated,
        deviation_pct: u32,
    },
    Joins(Rated),
    /// Same endpoints, another order.
    Reordered {
        hysteresis_pct: u32,
    },
}

/// Which endpoint a `failover` pool answers, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverReason {
    /// The answered endpoint went down; `best` takes over.
    TakesOver { down: Ranked, best: Ranked },
    /// A preferred endpoint is up again.
    FailsBack { best: Ranked, from: Ranked },
    /// The most preferred endpoint is up.
    Preferred { best: Ranked },
    /// `best` is the first endpoint up in priority order.
    FirstUp { best: Ranked, preferred_down: usize },
}

/// What a pool answers when no endpoint is up (`n` of them configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllDownReason {
    /// The pool has no endpoints at all: SERVFAIL.
    NoEndpoints,
    Servfail {
        n: usize,
    },
    Fallback {
        n: usize,
    },
    /// Failing open to the last answer that had an endpoint up.
    LastKnownGood {
        n: usize,
    },
    /// Failing open to every endpoint not pinned down: none has been up yet.
    NeverUp {
        n: usize,
    },
    /// Failing open, but every endpoint is pinned down: SERVFAIL.
    AllPinnedDown {
        n: usize,
    },
}

/// How a rendering names endpoint `i`.
type Namer<'a> = &'a dyn Fn(&mut fmt::Formatter<'_>, usize) -> fmt::Result;

impl Reason {
    /// The reason with `names[i]` for endpoint `i` (`endpoint #i` where a name is missing):
    /// the log line and event record text.
    pub fn named<'a, S: AsRef<str>>(&'a self, names: &'a [S]) -> Named<'a, S> {
        Named {
            reason: self,
            names,
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, name: Namer<'_>) -> fmt::Result {
        match self {
            Self::Fastest { picks, changes } => {
                f.write_str("fastest: ")?;
                for (k, pick) in picks.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    pick.write(f, name)?;
                }
                for change in changes {
                    f.write_str("; ")?;
                    change.write(f, name)?;
                }
                Ok(())
            }
            Self::Failover(why) => why.write(f, name),
            Self::Weighted {
                set,
                down,
                left_out,
            } => {
                f.write_str("weighted: ")?;
                for (k, &(i, weight)) in set.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    name(f, i)?;
                    write!(f, " (weight {weight})")?;
                }
                if *down > 0 {
                    write!(f, "; {down} endpoint(s) down")?;
                }
                if *left_out > 0 {
                    write!(
                        f,
                        "; {left_out} up endpoint(s) left out (weight 0 or more than {MAX_ANSWER_RRS})"
                    )?;
                }
                Ok(())
            }
            Self::AllHealthy { up, total } => {
                write!(f, "all-healthy: {up} of {total} endpoints up")?;
                if *up > MAX_ANSWER_RRS {
                    write!(f, "; answering the first {MAX_ANSWER_RRS}")?;
                }
                Ok(())
            }
            Self::AllDown(why) => fmt::Display::fmt(why, f),
            Self::Provisional {
                waiting,
                failover: true,
            } => write!(
                f,
                "waiting for the first verdicts of {waiting} endpoint(s); answering the first \
                 by priority meanwhile, never more than one"
            ),
            Self::Provisional {
                waiting,
                failover: false,
            } => write!(
                f,
                "waiting for the first verdicts of {waiting} endpoint(s); answering every \
                 endpoint not known to be down meanwhile"
            ),
            Self::Restored => f.write_str("the answer in force before (restored)"),
        }
    }
}

impl fmt::Display for Reason {
    /// Endpoints as `endpoint #i`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, &|f, i| write!(f, "endpoint #{i}"))
    }
}

/// A [`Reason`] rendered with endpoint names (see [`Reason::named`]).
pub struct Named<'a, S> {
    reason: &'a Reason,
    names: &'a [S],
}

impl<S: AsRef<str>> fmt::Display for Named<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason.write(f, &|f, i| match self.names.get(i) {
            Some(name) => f.write_str(name.as_ref()),
            None => write!(f, "endpoint #{i}"),
        })
    }
}

impl Rated {
    /// `A at 12.3 ms` or `A (not measured yet)`.
    fn write(&self, f: &mut fmt::Formatter<'_>, name: Namer<'_>) -> fmt::Result {
        name(f, self.endpoint)?;
        match self.latency {
            Some(l) => write!(f, " at {:.1} ms", l.as_secs_f64() * 1000.0),
            None => f.write_str(" (not measured yet)"),
        }
    }
}

impl Ranked {
    /// `A (priority 1)`.
    fn write(&self, f: &mut fmt::Formatter<'_>, name: Namer<'_>) -> fmt::Result {
        name(f, self.endpoint)?;
        write!(f, " (priority {})", self.priority)
    }
}

impl FastestChange {
    fn write(&self, f: &mut fmt::Formatter<'_>, name: Namer<'_>) -> fmt::Result {
        match self {
            Self::Down(i) => {
                name(f, *i)?;
                f.write_str(" is down")
            }
            Self::Beaten {
                by,
                dropped,
                hysteresis_pct,
            } => {
                by.write(f, name)?;
                f.write_str(" beats ")?;
                dropped.write(f, name)?;
                write!(f, " by more than {hysteresis_pct} %")
            }
            Self::NoLongerWithin {
                dropped,
                leader,
                deviation_pct,
            } => {
                dropped.write(f, name)?;
                write!(f, " is no longer within {deviation_pct} % of ")?;
                leader.write(f, name)
            }
            Self::NoLongerAmongFastest(dropped) => {
                dropped.write(f, name)?;
                f.write_str(" is no longer among the fastest")
            }
            Self::Unmeasured(i) => {
                name(f, *i)?;
                f.write_str(" has no latency yet and measured endpoints rank first")
            }
            Self::Within {
                added,
                leader,
                deviation_pct,
            } => {
                added.write(f, name)?;
                write!(f, " is within {deviation_pct} % of ")?;
                leader.write(f, name)
            }
            Self::Joins(added) => {
                added.write(f, name)?;
                f.write_str(" joins the answer")
            }
            Self::Reordered { hysteresis_pct } => write!(
                f,
                "reordered: a faster endpoint beats the one before it by more than {hysteresis_pct} %"
            ),
        }
    }
}

impl FailoverReason {
    fn write(&self, f: &mut fmt::Formatter<'_>, name: Namer<'_>) -> fmt::Result {
        f.write_str("failover: ")?;
        match self {
            Self::TakesOver { down, best } => {
                down.write(f, name)?;
                f.write_str(" is down; ")?;
                best.write(f, name)?;
                f.write_str(" takes over")
            }
            Self::FailsBack { best, from } => {
                best.write(f, name)?;
                f.write_str(" is up again; failing back from ")?;
                from.write(f, name)
            }
            Self::Preferred { best } => {
                best.write(f, name)?;
                f.write_str(" is the preferred endpoint and up")
            }
            Self::FirstUp {
                best,
                preferred_down,
            } => {
                best.write(f, name)?;
                write!(
                    f,
                    " is the first one up; {preferred_down} preferred endpoint(s) down"
                )
            }
        }
    }
}

impl fmt::Display for AllDownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEndpoints => {
                f.write_str("all endpoints down: the pool has no endpoints; answering SERVFAIL")
            }
            Self::Servfail { n } => {
                write!(f, "all endpoints down ({n} of {n}); answering SERVFAIL")
            }
            Self::Fallback { n } => write!(
                f,
                "all endpoints down ({n} of {n}); answering the fallback records"
            ),
            Self::LastKnownGood { n } => write!(
                f,
                "all endpoints down ({n} of {n}); failing open to last known good set"
            ),
            Self::NeverUp { n } => write!(
                f,
                "all endpoints down ({n} of {n}) and none has been up yet; failing open to every endpoint not pinned down"
            ),
            Self::AllPinnedDown { n } => write!(
                f,
                "all endpoints down ({n} of {n}), every one pinned down by the operator; answering SERVFAIL"
            ),
        }
    }
}
