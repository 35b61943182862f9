//! Per-endpoint health: rise/fall thresholds over probe results, the operator's pin, and a
//! smoothed latency.
//!
//! Pure state with the clock passed in: [`EndpointHealth::record`] takes the [`Instant`] a
//! probe finished at, so the thresholds and the smoothing are tested without sleeping.
//!
//! # Up and down
//!
//! An endpoint starts *unknown*, which counts as down, and the probes alone say up after
//! `rise` consecutive successes and down after `fall` consecutive failures; a result of the
//! other kind resets the count. The operator's [`AdminState`] (Constellix `always_on`,
//! `always_off`, `follow_sonar`) overrides the probes: [`EndpointHealth::is_up`] is the
//! effective state, [`EndpointHealth::probe_up`] what the probes say. Probes keep counting
//! while an endpoint is pinned, so returning it to [`AdminState::Follow`] takes effect at
//! once with the probes' current verdict.
//!
//! # Latency
//!
//! A failed probe never contributes a latency. The smoothed figure
//! ([`EndpointHealth::latency`]) is the **median of the last [`MEDIAN_WINDOW`] (5)
//! successful samples** (the mean of the two middle ones while the window holds an even
//! number). A rolling median rather than an EWMA because the figure is compared between
//! endpoints to pick the fastest: probe latencies are heavy-tailed (one retransmitted SYN
//! adds a second, a busy origin stalls one request), and a single outlier moves an EWMA by
//! alpha × the outlier — with alpha 0.3, one 500 ms sample among 10 ms ones reads 157 ms and
//! would flip the answer — while a median of 5 ignores up to two outliers entirely. It
//! still follows a real step change after 3 probes (3 × interval), and costs sorting five
//! numbers. The window is emptied when the probes mark the endpoint down, so a recovered
//! endpoint is judged by how it performs after the outage, not before (its figure is
//! `None` until the next success). The last [`SAMPLES`] (10) raw successful latencies are
//! kept apart, across outages, for the event log and metrics.

use std::{
    fmt,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// How many successful samples the smoothed latency is the median of.
pub const MEDIAN_WINDOW: usize = 5;
/// How many raw successful samples [`EndpointHealth::last_samples`] keeps.
pub const SAMPLES: usize = 10;

/// The operator's say over an endpoint, settable in the config and at run time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    /// Up or down as the probes say (Constellix `follow_sonar`). The default.
    #[default]
    Follow,
    /// Always up, whatever the probes say (`always_on`).
    Up,
    /// Always down, whatever the probes say (`always_off`).
    Down,
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Follow => "follow",
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

/// An endpoint state the operator asked for that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown endpoint state {0:?} (up, down or follow)")]
pub struct UnknownAdminState(pub String);

/// Parses `up`, `down` or `follow` (also Constellix's `always_on`, `always_off`,
/// `follow_sonar`), as the operator commands and the HTTP API take them.
pub fn parse_admin(s: &str) -> Result<AdminState, UnknownAdminState> {
    Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
        "up" | "always_on" => AdminState::Up,
        "down" | "always_off" => AdminState::Down,
        "follow" | "follow_sonar" => AdminState::Follow,
        other => return Err(UnknownAdminState(other.to_string())),
    })
}

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// What the probe measured; only set when `ok`.
    pub latency: Option<Duration>,
    /// What happened, for logs and events: "HTTP 200", "HTTP 503", "connection refused",
    /// "timeout after 2s".
    pub detail: String,
}

impl ProbeOutcome {
    /// A successful probe that measured `latency`.
    pub fn success(latency: Duration, detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            latency: Some(latency),
            detail: detail.into(),
        }
    }

    /// A failed probe.
    pub fn failure(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            latency: None,
            detail: detail.into(),
        }
    }
}

/// What the probes alone say about an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeState {
    /// Not yet `rise` consecutive successes nor `fall` consecutive failures since start.
    /// Counts as down.
    Unknown,
    Up,
    Down,
}

impl fmt::Display for ProbeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

/// Why an endpoint is in the state it is in; renders as the reason of its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateReason {
    /// Never probed: "not probed yet".
    NotProbedYet,
    /// `rise` reached: "2 consecutive successes".
    Successes(u32),
    /// `fall` reached: "3 consecutive failures: HTTP 503".
    Failures { count: u32, detail: String },
    /// "pinned up by operator", "pinned down by operator".
    Pinned { up: bool },
    /// Back to the probes' verdict: "following probes again: down (3 consecutive
    /// failures: HTTP 503)".
    Following {
        state: ProbeState,
        why: Box<StateReason>,
    },
    /// Down from the first verdict on (no change of the effective state, but recorded):
    /// "connection refused (first verdict)".
    FirstVerdict { detail: String },
    /// The operator set a state that changed nothing: "operator set state follow".
    OperatorSet(AdminState),
    /// A verdict read back from the state file: "3 consecutive failures: HTTP 503
    /// (before the restart)".
    Restored(String),
}

impl fmt::Display for StateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotProbedYet => f.write_str("not probed yet"),
            Self::Successes(n) => {
                write!(f, "{n} consecutive {}", plural(*n, "success", "successes"))
            }
            Self::Failures { count, detail } => write!(
                f,
                "{count} consecutive {}: {detail}",
                plural(*count, "failure", "failures")
            ),
            Self::Pinned { up: true } => f.write_str("pinned up by operator"),
            Self::Pinned { up: false } => f.write_str("pinned down by operator"),
            Self::Following { state, why } => write!(f, "following probes again: {state} ({why})"),
            Self::FirstVerdict { detail } => write!(f, "{detail} (first verdict)"),
            Self::OperatorSet(state) => write!(f, "operator set state {state}"),
            Self::Restored(why) => write!(f, "{why} (before the restart)"),
        }
    }
}

/// A change of an endpoint's effective up/down state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The new effective state.
    pub up: bool,
    /// Why.
    pub reason: StateReason,
}

/// One endpoint's health as its probes and the operator determine it.
#[derive(Clone, Debug)]
pub struct EndpointHealth {
    rise: u32,
    fall: u32,
    admin: AdminState,
    probe: ProbeState,
    /// Why the probes last changed their verdict (for returning to `Follow`).
    probe_reason: StateReason,
    successes: u32,
    failures: u32,
    /// The latency window and samples, allocated with the first success: an endpoint that
    /// never answers (half of a 40 000-endpoint bench) keeps none, and one that does keeps
    /// both in one allocation.
    latencies: Option<Box<Latencies>>,
    last_change: Option<Instant>,
    last_probe: Option<(Instant, bool)>,
    last_detail: String,
}

impl EndpointHealth {
    /// An endpoint not yet probed: unknown (down) until `rise` consecutive successes.
    /// Thresholds of 0 are taken as 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            admin: AdminState::Follow,
            probe: ProbeState::Unknown,
            probe_reason: StateReason::NotProbedYet,
            successes: 0,
            failures: 0,
            latencies: None,
            last_change: None,
            last_probe: None,
            last_detail: String::new(),
        }
    }

    /// Counts a probe result that arrived at `now`. Returns the transition when the
    /// effective state changes (not when the probes' verdict changes under a pin).
    pub fn record(&mut self, now: Instant, outcome: &ProbeOutcome) -> Option<Transition> {
        let before = self.is_up();
        self.last_probe = Some((now, outcome.ok));
        self.last_detail.clone_from(&outcome.detail);
        if outcome.ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if let Some(latency) = outcome.latency {
                let l = self.latencies.get_or_insert_default();
                l.window.push(latency);
                l.samples.push(latency);
            }
            if self.probe != ProbeState::Up && self.successes >= self.rise {
                self.probe = ProbeState::Up;
                self.probe_reason = StateReason::Successes(self.successes);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.probe != ProbeState::Down && self.failures >= self.fall {
                self.probe = ProbeState::Down;
                if let Some(l) = &mut self.latencies {
                    l.window.clear();
                }
                self.probe_reason = StateReason::Failures {
                    count: self.failures,
                    detail: outcome.detail.clone(),
                };
            }
        }
        let up = self.changed(now, before)?;
        Some(Transition {
            up,
            reason: self.probe_reason.clone(),
        })
    }

    /// Pins the endpoint up or down, or makes it follow the probes again, at `now`.
    /// Returns the transition when the effective state changes.
    pub fn set_admin(&mut self, now: Instant, state: AdminState) -> Option<Transition> {
        let before = self.is_up();
        self.admin = state;
        let up = self.changed(now, before)?;
        let reason = match state {
            AdminState::Up => StateReason::Pinned { up: true },
            AdminState::Down => StateReason::Pinned { up: false },
            AdminState::Follow => StateReason::Following {
                state: self.probe,
                why: Box::new(self.probe_reason.clone()),
            },
        };
        Some(Transition { up, reason })
    }

    /// The new effective state if it differs from `before` (and notes when it changed).
    fn changed(&mut self, now: Instant, before: bool) -> Option<bool> {
        let up = self.is_up();
        if up == before {
            return None;
        }
        self.last_change = Some(now);
        Some(up)
    }

    /// The operator's setting.
    pub fn admin(&self) -> AdminState {
        self.admin
    }

    /// Effective state: the operator's pin if any, else what the probes say.
    pub fn is_up(&self) -> bool {
        match self.admin {
            AdminState::Up => true,
            AdminState::Down => false,
            AdminState::Follow => self.probe_up(),
        }
    }

    /// What the probes alone say (unknown counts as down).
    pub fn probe_up(&self) -> bool {
        self.probe == ProbeState::Up
    }

    /// What the probes alone say, telling "not yet known" apart from down.
    pub fn probe_state(&self) -> ProbeState {
        self.probe
    }

    /// Smoothed latency: the median of the last [`MEDIAN_WINDOW`] successes since the
    /// endpoint last went down; `None` before the first of them.
    pub fn latency(&self) -> Option<Duration> {
        median(self.latencies.as_ref()?.window.iter())
    }

    /// The last [`SAMPLES`] raw successful latencies, oldest first.
    pub fn last_samples(&self) -> Vec<Duration> {
        self.latencies
            .as_ref()
            .map_or_else(Vec::new, |l| l.samples.iter().collect())
    }

    /// Current run of consecutive (successes, failures); one of them is 0.
    pub fn consecutive(&self) -> (u32, u32) {
        (self.successes, self.failures)
    }

    /// When the effective state last changed (`None`: never since start).
    pub fn last_change(&self) -> Option<Instant> {
        self.last_change
    }

    /// When the last probe result arrived and whether it succeeded.
    pub fn last_probe(&self) -> Option<(Instant, bool)> {
        self.last_probe
    }

    /// The detail of the last probe result ("" before the first).
    pub fn last_detail(&self) -> &str {
        &self.last_detail
    }

    /// The thresholds (rise, fall) in use.
    pub fn thresholds(&self) -> (u32, u32) {
        (self.rise, self.fall)
    }
}

/// What the state file keeps of an endpoint's health: the probes' verdict and the counts
/// and latencies behind it (durations in microseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    pub probe: Option<ProbeState>,
    /// Why the probes gave their verdict ("3 consecutive failures: HTTP 503").
    pub reason: String,
    pub successes: u32,
    pub failures: u32,
    /// The latency window (median of these), oldest first.
    pub window_us: Vec<u64>,
    /// The last raw samples, oldest first.
    pub samples_us: Vec<u64>,
    pub last_detail: String,
}

fn micros<const N: usize>(q: Option<&Recent<N>>) -> Vec<u64> {
    q.map_or_else(Vec::new, |q| {
        q.iter()
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .collect()
    })
}

/// The last `N` of `v` (microseconds).
fn durations<const N: usize>(v: &[u64]) -> Recent<N> {
    let mut q = Recent::default();
    for &us in &v[v.len().saturating_sub(N)..] {
        q.push(Duration::from_micros(us));
    }
    q
}

impl EndpointHealth {
    /// The probes' side of this endpoint's health, for the state file (the operator's pin
    /// is kept apart).
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            probe: Some(self.probe),
            reason: self.probe_reason.to_string(),
            successes: self.successes,
            failures: self.failures,
            window_us: micros(self.latencies.as_ref().map(|l| &l.window)),
            samples_us: micros(self.latencies.as_ref().map(|l| &l.samples)),
            last_detail: self.last_detail.clone(),
        }
    }

    /// Takes the probes' verdict, counts and latencies from `snap` (an earlier run's),
    /// keeping this endpoint's thresholds and pin. The window and samples are bounded as
    /// always; a verdict of `None` leaves the endpoint unknown.
    pub fn restore(&mut self, snap: &HealthSnapshot) {
        let Some(probe) = snap.probe else {
            return;
        };
        self.probe = probe;
        self.probe_reason = match probe {
            ProbeState::Unknown => StateReason::NotProbedYet,
            ProbeState::Up | ProbeState::Down => StateReason::Restored(snap.reason.clone()),
        };
        self.successes = snap.successes;
        self.failures = snap.failures;
        self.latencies = (!snap.window_us.is_empty() || !snap.samples_us.is_empty()).then(|| {
            Box::new(Latencies {
                window: durations(&snap.window_us),
                samples: durations(&snap.samples_us),
            })
        });
        self.last_detail.clone_from(&snap.last_detail);
    }

    /// Takes over `other`'s probe state (the same endpoint before a reload) with this one's
    /// thresholds; the pin stays this one's.
    pub fn carry_over(&mut self, other: &EndpointHealth) {
        let (rise, fall, admin) = (self.rise, self.fall, self.admin);
        *self = other.clone();
        self.rise = rise;
        self.fall = fall;
        self.admin = admin;
    }
}

/// An endpoint's successful latencies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Latencies {
    /// Since the endpoint last went down, oldest first: the median's window.
    window: Recent<MEDIAN_WINDOW>,
    /// The last [`SAMPLES`], across outages, oldest first.
    samples: Recent<SAMPLES>,
}

/// The last `N` (at most 255) durations pushed, oldest first, in place: a ring of whole
/// seconds and nanoseconds apart (12 bytes a duration, not `Duration`'s 16 with its
/// padding), exact.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recent<const N: usize> {
    secs: [u64; N],
    nanos: [u32; N],
    /// Where the oldest is.
    start: u8,
    len: u8,
}

impl<const N: usize> Default for Recent<N> {
    fn default() -> Self {
        const { assert!(N > 0 && N <= u8::MAX as usize) };
        Self {
            secs: [0; N],
            nanos: [0; N],
            start: 0,
            len: 0,
        }
    }
}

impl<const N: usize> Recent<N> {
    /// Adds `d` as the newest, dropping the oldest when `N` are kept.
    fn push(&mut self, d: Duration) {
        let (start, len) = (usize::from(self.start), usize::from(self.len));
        let at = (start + len) % N;
        self.secs[at] = d.as_secs();
        self.nanos[at] = d.subsec_nanos();
        if len < N {
            self.len += 1;
        } else {
            // Full: `at` was the oldest, the next one is now.
            self.start = u8::try_from((start + 1) % N).unwrap_or(0);
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.len = 0;
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = Duration> + '_ {
        (0..usize::from(self.len)).map(move |i| {
            let at = (usize::from(self.start) + i) % N;
            Duration::new(self.secs[at], self.nanos[at])
        })
    }
}

fn median(window: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut v = [Duration::ZERO; MEDIAN_WINDOW];
    let mut n = 0;
    for d in window.take(MEDIAN_WINDOW) {
        v[n] = d;
        n += 1;
    }
    let v = &mut v[..n];
    v.sort_unstable();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

fn plural(n: u32, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok(latency_ms: u64) -> ProbeOutcome {
        ProbeOutcome::success(ms(latency_ms), "HTTP 200")
    }

    fn fail(detail: &str) -> ProbeOutcome {
        ProbeOutcome::failure(detail)
    }

    /// A transition as (up, the reason's text).
    fn shown(t: &Transition) -> (bool, String) {
        (t.up, t.reason.to_string())
    }

    /// A fake clock: one tick per probe.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Self(Instant::now())
        }
        fn tick(&mut self) -> Instant {
            self.0 += Duration::from_secs(1);
            self.0
        }
    }

    #[test]
    fn starts_unknown_and_down() {
        let h = EndpointHealth::new(2, 3);
        assert!(!h.is_up());
        assert!(!h.probe_up());
        assert_eq!(h.probe_state(), ProbeState::Unknown);
        assert_eq!(h.admin(), AdminState::Follow);
        assert_eq!(h.latency(), None);
        assert!(h.last_samples().is_empty());
        assert_eq!(h.consecutive(), (0, 0));
        assert_eq!(h.last_change(), None);
        assert_eq!(h.last_probe(), None);
        assert_eq!(h.thresholds(), (2, 3));
    }

    #[test]
    fn up_after_rise_successes() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        assert_eq!(h.record(c.tick(), &ok(10)), None);
        assert!(!h.is_up());
        assert_eq!(h.consecutive(), (1, 0));
        let t = c.tick();
        let tr = h.record(t, &ok(10)).expect("up after 2 successes");
        assert_eq!(shown(&tr), (true, "2 consecutive successes".to_string()));
        assert!(h.is_up() && h.probe_up());
        assert_eq!(h.last_change(), Some(t));
        // Further successes change nothing.
        assert_eq!(h.record(c.tick(), &ok(10)), None);
        assert_eq!(h.consecutive(), (3, 0));
        assert_eq!(h.last_change(), Some(t));
    }

    #[test]
    fn down_after_fall_failures_with_the_last_detail() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        h.record(c.tick(), &ok(10));
        h.record(c.tick(), &ok(10));
        assert!(h.is_up());
        assert_eq!(h.record(c.tick(), &fail("connection refused")), None);
        assert_eq!(h.record(c.tick(), &fail("HTTP 502")), None);
        assert!(h.is_up(), "2 failures are below fall = 3");
        let t = c.tick();
        let tr = h
            .record(t, &fail("HTTP 503"))
            .expect("down after 3 failures");
        assert_eq!(
            shown(&tr),
            (false, "3 consecutive failures: HTTP 503".to_string())
        );
        assert_eq!(h.probe_state(), ProbeState::Down);
        assert_eq!(h.last_change(), Some(t));
        assert_eq!(h.last_detail(), "HTTP 503");
        assert_eq!(h.last_probe(), Some((t, false)));
        assert_eq!(h.record(c.tick(), &fail("HTTP 503")), None);
        assert_eq!(h.consecutive(), (0, 4));
    }

    #[test]
    fn thresholds_of_one_flip_on_every_change() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(1, 1);
        assert_eq!(
            h.record(c.tick(), &ok(5)).unwrap().reason.to_string(),
            "1 consecutive success"
        );
        assert_eq!(
            h.record(c.tick(), &fail("timeout after 2s"))
                .unwrap()
                .reason
                .to_string(),
            "1 consecutive failure: timeout after 2s"
        );
        assert!(h.record(c.tick(), &ok(5)).unwrap().up);
        // Zero thresholds are taken as 1.
        assert_eq!(EndpointHealth::new(0, 0).thresholds(), (1, 1));
    }

    #[test]
    fn mixed_results_reset_the_counts() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(3, 3);
        // Never three in a row: stays unknown.
        for _ in 0..5 {
            assert_eq!(h.record(c.tick(), &ok(10)), None);
            assert_eq!(h.record(c.tick(), &ok(10)), None);
            assert_eq!(h.consecutive(), (2, 0));
            assert_eq!(h.record(c.tick(), &fail("HTTP 500")), None);
            assert_eq!(h.consecutive(), (0, 1));
        }
        assert_eq!(h.probe_state(), ProbeState::Unknown);
        // Now up, then flapping failures never reach fall.
        for _ in 0..3 {
            h.record(c.tick(), &ok(10));
        }
        assert!(h.is_up());
        for _ in 0..5 {
            assert_eq!(h.record(c.tick(), &fail("HTTP 500")), None);
            assert_eq!(h.record(c.tick(), &fail("HTTP 500")), None);
            assert_eq!(h.record(c.tick(), &ok(10)), None);
        }
        assert!(h.is_up());
    }

    #[test]
    fn failures_from_unknown_make_it_known_down_without_a_transition() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 2);
        assert_eq!(h.record(c.tick(), &fail("connection refused")), None);
        assert_eq!(h.probe_state(), ProbeState::Unknown);
        assert_eq!(h.record(c.tick(), &fail("connection refused")), None);
        assert_eq!(h.probe_state(), ProbeState::Down);
        assert_eq!(h.last_change(), None, "effective state never changed");
        // Recovery needs rise successes.
        assert_eq!(h.record(c.tick(), &ok(10)), None);
        assert_eq!(
            h.record(c.tick(), &ok(10)).unwrap().reason.to_string(),
            "2 consecutive successes"
        );
    }

    #[test]
    fn pins_override_the_probes_and_follow_returns_to_them() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        let t = c.tick();
        let tr = h
            .set_admin(t, AdminState::Up)
            .expect("unknown -> pinned up");
        assert_eq!(shown(&tr), (true, "pinned up by operator".to_string()));
        assert_eq!(h.admin(), AdminState::Up);
        assert_eq!(h.last_change(), Some(t));
        // The probes keep counting but do not move the effective state.
        for _ in 0..3 {
            assert_eq!(h.record(c.tick(), &fail("HTTP 503")), None);
        }
        assert!(h.is_up());
        assert!(!h.probe_up());
        assert_eq!(h.probe_state(), ProbeState::Down);
        // Pinning the same state again is no change.
        assert_eq!(h.set_admin(c.tick(), AdminState::Up), None);

        let tr = h
            .set_admin(c.tick(), AdminState::Follow)
            .expect("back to down");
        assert_eq!(
            shown(&tr),
            (
                false,
                "following probes again: down (3 consecutive failures: HTTP 503)".to_string()
            )
        );

        // Pinned down while the probes say up.
        h.record(c.tick(), &ok(10));
        assert!(h.record(c.tick(), &ok(10)).unwrap().up);
        let tr = h.set_admin(c.tick(), AdminState::Down).unwrap();
        assert_eq!(shown(&tr), (false, "pinned down by operator".to_string()));
        assert!(h.probe_up() && !h.is_up());
        assert_eq!(h.record(c.tick(), &ok(10)), None);
        // Down -> Up flips directly.
        assert!(h.set_admin(c.tick(), AdminState::Up).unwrap().up);
        // Up -> Follow while the probes also say up: no change.
        assert_eq!(h.set_admin(c.tick(), AdminState::Follow), None);
        assert!(h.is_up());
    }

    #[test]
    fn follow_before_any_probe_says_not_probed_yet() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        h.set_admin(c.tick(), AdminState::Up);
        let tr = h.set_admin(c.tick(), AdminState::Follow).unwrap();
        assert_eq!(
            tr.reason.to_string(),
            "following probes again: unknown (not probed yet)"
        );
        assert!(!tr.up);
    }

    #[test]
    fn latency_is_the_median_of_the_last_five_successes() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(1, 3);
        h.record(c.tick(), &ok(10));
        assert_eq!(h.latency(), Some(ms(10)));
        h.record(c.tick(), &ok(20));
        assert_eq!(h.latency(), Some(ms(15)), "mean of the two middle ones");
        h.record(c.tick(), &ok(500));
        assert_eq!(h.latency(), Some(ms(20)), "one outlier is ignored");
        h.record(c.tick(), &ok(12));
        assert_eq!(h.latency(), Some(ms(16)));
        h.record(c.tick(), &ok(900));
        // [10, 20, 500, 12, 900]: two outliers of five are still ignored.
        assert_eq!(h.latency(), Some(ms(20)));
        // A real step change shows after three probes.
        h.record(c.tick(), &ok(100)); // [20, 500, 12, 900, 100]
        assert_eq!(h.latency(), Some(ms(100)));
        for _ in 0..3 {
            h.record(c.tick(), &ok(11));
        }
        // [900, 100, 11, 11, 11]
        assert_eq!(h.latency(), Some(ms(11)));
    }

    #[test]
    fn failures_never_count_as_latency() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(1, 3);
        h.record(c.tick(), &ok(10));
        h.record(c.tick(), &ok(30));
        // A failure carrying a latency by mistake is still not a sample.
        let odd = ProbeOutcome {
            ok: false,
            latency: Some(ms(2000)),
            detail: "HTTP 503".into(),
        };
        h.record(c.tick(), &odd);
        h.record(c.tick(), &fail("timeout after 2s"));
        assert_eq!(h.latency(), Some(ms(20)));
        assert_eq!(h.last_samples(), vec![ms(10), ms(30)]);
        // A success without a latency counts for health but adds no sample.
        let bare = ProbeOutcome {
            ok: true,
            latency: None,
            detail: "ok".into(),
        };
        h.record(c.tick(), &bare);
        assert_eq!(h.consecutive(), (1, 0));
        assert_eq!(h.last_samples(), vec![ms(10), ms(30)]);
    }

    #[test]
    fn going_down_empties_the_window_but_keeps_the_samples() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 2);
        for l in [10, 10, 10] {
            h.record(c.tick(), &ok(l));
        }
        assert!(h.is_up());
        h.record(c.tick(), &fail("HTTP 503"));
        assert_eq!(h.latency(), Some(ms(10)), "still up after one failure");
        assert!(!h.record(c.tick(), &fail("HTTP 503")).unwrap().up);
        assert_eq!(h.latency(), None);
        assert_eq!(h.last_samples(), vec![ms(10); 3]);
        // Back, but slower: judged on the new figures only.
        h.record(c.tick(), &ok(200));
        assert!(h.record(c.tick(), &ok(220)).unwrap().up);
        assert_eq!(h.latency(), Some(ms(210)));
    }

    #[test]
    fn last_samples_keeps_the_ten_newest_oldest_first() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        for l in 1..=15 {
            h.record(c.tick(), &ok(l));
        }
        let want: Vec<Duration> = (6..=15).map(ms).collect();
        assert_eq!(h.last_samples(), want);
        // The window holds the last five: 11..=15.
        assert_eq!(h.latency(), Some(ms(13)));
    }

    #[test]
    fn a_snapshot_restores_verdict_counts_and_latencies() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        for l in [10, 20, 30] {
            h.record(c.tick(), &ok(l));
        }
        h.record(c.tick(), &fail("HTTP 503"));
        let snap = h.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let back: HealthSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);

        let mut r = EndpointHealth::new(2, 3);
        r.set_admin(c.tick(), AdminState::Down);
        r.restore(&back);
        assert_eq!(r.probe_state(), ProbeState::Up);
        assert!(r.probe_up());
        assert_eq!(
            r.admin(),
            AdminState::Down,
            "the pin is not part of the snapshot"
        );
        assert_eq!(r.latency(), Some(ms(20)));
        assert_eq!(r.last_samples(), vec![ms(10), ms(20), ms(30)]);
        assert_eq!(r.consecutive(), (0, 1));
        assert_eq!(r.last_detail(), "HTTP 503");
        // Two more failures reach fall = 3, counting on from the restored one.
        assert_eq!(r.record(c.tick(), &fail("HTTP 503")), None);
        r.set_admin(c.tick(), AdminState::Follow);
        let t = r.record(c.tick(), &fail("HTTP 503")).expect("down");
        assert!(!t.up);

        // A restored reason says where it came from.
        let mut d = EndpointHealth::new(1, 1);
        d.record(c.tick(), &fail("connection refused"));
        let mut r = EndpointHealth::new(1, 1);
        r.restore(&d.snapshot());
        r.set_admin(c.tick(), AdminState::Up);
        let t = r.set_admin(c.tick(), AdminState::Follow).unwrap();
        assert_eq!(
            t.reason.to_string(),
            "following probes again: down (1 consecutive failure: connection refused (before the restart))"
        );
    }

    #[test]
    fn recent_keeps_the_last_n_oldest_first_exactly() {
        let mut r = Recent::<3>::default();
        assert_eq!(r.iter().count(), 0);
        let odd = Duration::new(7, 999_999_999);
        r.push(ms(1));
        r.push(odd);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![ms(1), odd]);
        r.push(ms(3));
        r.push(ms(4));
        r.push(Duration::MAX);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![ms(3), ms(4), Duration::MAX],
            "the oldest dropped, every value exact"
        );
        // Around the ring more than once.
        for i in 5..=11 {
            r.push(ms(i));
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![ms(9), ms(10), ms(11)]);
        r.clear();
        assert_eq!(r.iter().count(), 0);
        r.push(ms(12));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![ms(12)]);
    }

    #[test]
    fn latencies_are_allocated_with_the_first_success_only() {
        let mut c = Clock::new();
        let mut h = EndpointHealth::new(2, 3);
        for _ in 0..5 {
            h.record(c.tick(), &fail("timeout after 1s"));
        }
        assert!(h.latencies.is_none(), "failures keep no latencies");
        assert_eq!(h.snapshot().window_us, Vec::<u64>::new());
        h.record(c.tick(), &ok(10));
        assert!(h.latencies.is_some());
        assert_eq!(h.latency(), Some(ms(10)));
        // A snapshot without latencies restores to none.
        let mut r = EndpointHealth::new(2, 3);
        r.restore(&HealthSnapshot {
            probe: Some(ProbeState::Down),
            ..HealthSnapshot::default()
        });
        assert!(r.latencies.is_none());
    }

    #[test]
    fn an_empty_or_oversized_snapshot_is_safe() {
        let mut h = EndpointHealth::new(2, 3);
        h.restore(&HealthSnapshot::default());
        assert_eq!(h.probe_state(), ProbeState::Unknown);
        let big = HealthSnapshot {
            probe: Some(ProbeState::Up),
            window_us: (1..=100).map(|v| v * 1000).collect(),
            samples_us: vec![u64::MAX; 50],
            ..HealthSnapshot::default()
        };
        h.restore(&big);
        assert_eq!(h.latency(), Some(ms(98)), "the last five: 96..=100 ms");
        assert_eq!(h.last_samples().len(), SAMPLES);
    }

    #[test]
    fn admin_state_parses_kebab_case_and_displays() {
        #[derive(Deserialize)]
        struct T {
            s: AdminState,
        }
        for (text, want) in [
            ("follow", AdminState::Follow),
            ("up", AdminState::Up),
            ("down", AdminState::Down),
        ] {
            let t: T = toml::from_str(&format!("s = \"{text}\"")).unwrap();
            assert_eq!(t.s, want);
            assert_eq!(want.to_string(), text);
        }
        assert!(toml::from_str::<T>("s = \"always_on\"").is_err());
        assert_eq!(AdminState::default(), AdminState::Follow);
    }
}
