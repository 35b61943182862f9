//! `GET /metrics`: the Prometheus text exposition (format 0.0.4, encoded by
//! prometheus-client, which also escapes label values), collected at scrape time from what
//! the daemon already keeps: the kernel's per-CPU counters, the steering state, the event
//! record's counters and the API's own. One function per family group:
//!
//! * [`build_info`] writes `hotpool_build_info{version,revision}` and
//!   `hotpool_start_time_seconds`;
//! * [`xdp`] writes `hotpool_xdp_attached{interface,mode}` and
//!   `hotpool_xdp_packets_total{outcome}`;
//! * [`kernel`] writes `hotpool_xdp_heartbeat_age_seconds` and
//!   `hotpool_xdp_pool_answers_total{pool}`;
//! * [`steering`] writes `hotpool_endpoint_up`, `hotpool_endpoint_latency_seconds`,
//!   `hotpool_pool_all_down`, `hotpool_pool_answer_changes_total`;
//! * [`steering`] writes `hotpool_pool_region_all_down{pool,region}` and
//!   `hotpool_pool_region_answer_changes_total{pool,region}` for `geo` pools;
//! * [`rum`] writes `hotpool_rum_samples_total{result}` and `hotpool_rum_samples_held`;
//! * [`probes`] writes `hotpool_probes_total`, `hotpool_probe_failures_total` and the
//!   `hotpool_probe_latency_seconds` histogram, per endpoint;
//! * [`probe_accounting`] writes `hotpool_probe_local_failures_total` and
//!   `hotpool_probe_late_total` per endpoint, `hotpool_probe_local_failures_by_reason_total`
//!   for every endpoint together, and the scheduler's `hotpool_probe_scheduler_*`;
//! * [`events`] writes `hotpool_webhook_deliveries_total{result}`,
//!   `hotpool_event_log_write_errors_total`;
//! * [`api`] writes `hotpool_api_refused_total{reason}`;
//! * [`server`] writes the DNS server's counters: `hotpool_daemon_responses_total{rcode,
//!   qtype,transport}`, `hotpool_daemon_answers_total{pool}`,
//!   `hotpool_rrl_total{action,reason}`, `hotpool_rejected_total{reason}`,
//!   `hotpool_daemon_tcp_connections_total{event}`.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr as _,
    time::{Duration, SystemTime},
};

use hickory_proto::rr::Name;

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder,
        NoLabelSet, prometheus_text,
    },
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    api::{state::ApiState, version},
    datapath::ebpf::{Datapath, mode_name},
    dns::stats::StatsSnapshot,
    steering::{
        events::EventStats,
        probe::SchedulerStats,
        steer::{EndpointStatus, PoolStatus, RumStats},
        tally::{LATENCY_BUCKETS, LatencyHistogram, ProbeTotals},
    },
};

/// What one scrape shows, taken under the locks and encoded after them.
#[derive(Debug)]
pub struct Snapshot {
    pub started: SystemTime,
    /// (interface, mode) the XDP program is attached to.
    pub attached: Vec<(String, &'static str)>,
    /// The kernel's counters by outcome; `None` without a loaded program.
    pub packets: Option<Vec<(&'static str, u64)>>,
    pub pools: Vec<PoolStatus>,
    pub events: EventStats,
    pub refused: Vec<(&'static str, u64)>,
    /// The DNS server's counters, when there is a server.
    pub server: Option<StatsSnapshot>,
    /// Every endpoint's probes together (removed endpoints included).
    pub probe_totals: ProbeTotals,
    /// The probe scheduler's figures; `None` before it runs.
    pub scheduler: Option<SchedulerStats>,
    /// The heartbeat and the per-pool answers in the kernel.
    pub kernel: KernelSnapshot,
    /// RUM samples.
    pub rum: RumStats,
}

/// What the kernel maps say beyond the outcome counters.
#[derive(Debug, Default)]
pub struct KernelSnapshot {
    /// Age of the daemon's heartbeat in the pinned map; `None` without a loaded program
    /// (or before the first beat).
    pub heartbeat_age: Option<Duration>,
    /// Kernel answers per pool, by the pool's name as the steering status gives it.
    pub pool_answers: Vec<(String, u64)>,
}

impl KernelSnapshot {
    /// Read under the datapath's lock; the pools are named after `pools`, the steering's
    /// status (the names the other pool metrics carry).
    fn collect(dp: &Datapath, pools: &[PoolStatus]) -> Self {
        let by_name: HashMap<Name, u64> = dp.maps.pool_answers_all().into_iter().collect();
        let pool_answers = pools
            .iter()
            .filter_map(|p| {
                let name = Name::from_str(&p.pool).ok()?.to_lowercase();
                Some((p.pool.clone(), *by_name.get(&name)?))
            })
            .collect();
        Self {
            heartbeat_age: dp.maps.heartbeat_age().ok().flatten(),
            pool_answers,
        }
    }
}

impl Snapshot {
    pub fn collect(state: &ApiState) -> Self {
        let (pools, events, probe_totals, scheduler, rum) = {
            let s = state.steering.lock().unwrap_or_else(|p| p.into_inner());
            (
                s.status(),
                s.event_stats(),
                s.probe_totals().clone(),
                s.probe_stats(),
                s.rum_stats(),
            )
        };
        let (attached, packets, kernel) = {
            let dp = state.datapath.lock().unwrap_or_else(|p| p.into_inner());
            match dp.as_ref() {
                Some(dp) => (
                    dp.attached()
                        .map(|(i, m)| (i.to_string(), mode_name(m)))
                        .collect(),
                    dp.maps
                        .stats()
                        .ok()
                        .map(|s| s.into_iter().map(|(o, n)| (o.name(), n)).collect()),
                    KernelSnapshot::collect(dp, &pools),
                ),
                None => (Vec::new(), None, KernelSnapshot::default()),
            }
        };
        Self {
            started: state.daemon.started,
            attached,
            packets,
            pools,
            events,
            refused: state.daemon.refused().collect(),
            server: state.server.as_ref().map(|s| s.snapshot()),
            probe_totals,
            scheduler,
            kernel,
            rum,
        }
    }
}

impl Snapshot {
    /// The text exposition as one string (the tests'; the API streams [`Self::render_into`]).
    #[cfg(test)]
    pub fn render(self) -> String {
        let mut out = String::new();
        self.render_into(&mut out)
            .expect("a String takes every write");
        out
    }

    /// The text exposition, written into `out` as it is encoded (a streamed response body:
    /// see [`crate::api::stream`]). An error: `out` failed (the client went away).
    pub fn render_into(self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        prometheus_text::encode(out, &registry)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        build_info(&mut encoder, self.started)?;
        xdp(&mut encoder, &self.attached, self.packets.as_deref())?;
        kernel(&mut encoder, &self.kernel)?;
        steering(&mut encoder, &self.pools)?;
        probes(&mut encoder, &self.pools)?;
        probe_accounting(
            &mut encoder,
            &self.pools,
            &self.probe_totals,
            self.scheduler.as_ref(),
        )?;
        events(&mut encoder, &self.events)?;
        rum(&mut encoder, &self.rum)?;
        api(&mut encoder, &self.refused)?;
        match &self.server {
            Some(s) => server(&mut encoder, s),
            None => Ok(()),
        }
    }
}

/// One family of gauges.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One family of counters; `name` without `_total`, which the encoder adds.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The build and the start time.
pub fn build_info(encoder: &mut DescriptorEncoder, started: SystemTime) -> fmt::Result {
    gauges(
        encoder,
        "hotpool_build_info",
        "The running build: version and git revision (always 1).",
        [(
            [
                ("version", version::VERSION),
                ("revision", version::GIT_REVISION),
            ],
            1i64,
        )],
    )?;
    let start = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let family = encoder.encode_descriptor(
        "hotpool_start_time_seconds",
        "When the daemon started, seconds since the Unix epoch.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(start.round()).encode(family)
}

/// Whether the program is attached, and the kernel's packet counters.
pub fn xdp(
    encoder: &mut DescriptorEncoder,
    attached: &[(String, &'static str)],
    packets: Option<&[(&'static str, u64)]>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "hotpool_xdp_attached",
        "Whether the XDP fast path is attached to an interface.",
        None,
        MetricType::Gauge,
    )?;
    if attached.is_empty() {
        ConstGauge::new(0i64).encode(family)?;
    } else {
        for (interface, mode) in attached {
            let labels = [("interface", interface.as_str()), ("mode", mode)];
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
    }
    if let Some(packets) = packets {
        counters(
            encoder,
            "hotpool_xdp_packets",
            "Packets seen by the XDP program, by outcome (hit = answered in the kernel; the \
             others were passed to the daemon).",
            packets.iter().map(|(o, n)| ([("outcome", *o)], *n)),
        )?;
    }
    Ok(())
}

/// The heartbeat's age and the kernel's answers per pool (none without a loaded program).
pub fn kernel(encoder: &mut DescriptorEncoder, k: &KernelSnapshot) -> fmt::Result {
    if let Some(age) = k.heartbeat_age {
        let family = encoder.encode_descriptor(
            "hotpool_xdp_heartbeat_age_seconds",
            "Age of the daemon's heartbeat in the kernel: past [xdp] stale, hits are stale \
             (answered as stale_hit, or passed as stale).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new((age.as_secs_f64() * 1e3).round() / 1e3).encode(family)?;
    }
    if k.pool_answers.is_empty() {
        return Ok(());
    }
    counters(
        encoder,
        "hotpool_xdp_pool_answers",
        "Queries answered by the XDP program, per pool (since the pool got its kernel index).",
        k.pool_answers
            .iter()
            .map(|(pool, n)| ([("pool", pool.as_str())], *n)),
    )
}

fn pool_endpoint<'a>(p: &'a PoolStatus, endpoint: &'a str) -> [(&'static str, &'a str); 2] {
    [("pool", p.pool.as_str()), ("endpoint", endpoint)]
}

/// Endpoint health and latency, pool answers.
pub fn steering(encoder: &mut DescriptorEncoder, pools: &[PoolStatus]) -> fmt::Result {
    let endpoints = || {
        pools
            .iter()
            .flat_map(|p| p.endpoints.iter().map(move |e| (p, e)))
    };
    gauges(
        encoder,
        "hotpool_endpoint_up",
        "Whether an endpoint is up (probes and operator pins).",
        endpoints().map(|(p, e)| (pool_endpoint(p, &e.endpoint), i64::from(e.up))),
    )?;
    gauges(
        encoder,
        "hotpool_endpoint_latency_seconds",
        "Smoothed probe latency (median of the last 5 successful probes).",
        endpoints().filter_map(|(p, e)| {
            e.latency_ms
                .map(|ms| (pool_endpoint(p, &e.endpoint), ms / 1e3))
        }),
    )?;
    gauges(
        encoder,
        "hotpool_pool_all_down",
        "Whether no endpoint of the pool is up (the all_down setting answers).",
        pools
            .iter()
            .map(|p| ([("pool", p.pool.as_str())], i64::from(p.all_down))),
    )?;
    counters(
        encoder,
        "hotpool_pool_answer_changes",
        "Times the pool's answer was rewritten (a geo pool's default region's).",
        pools
            .iter()
            .map(|p| ([("pool", p.pool.as_str())], p.changes)),
    )?;
    let regions = || {
        pools
            .iter()
            .flat_map(|p| p.regions.iter().map(move |r| (p, r)))
    };
    gauges(
        encoder,
        "hotpool_pool_region_all_down",
        "Whether no endpoint of a geo pool's region is up (the all_down setting answers).",
        regions().map(|(p, r)| {
            (
                [("pool", p.pool.as_str()), ("region", r.region.as_str())],
                i64::from(r.all_down),
            )
        }),
    )?;
    counters(
        encoder,
        "hotpool_pool_region_answer_changes",
        "Times a geo pool's answer for a region was rewritten.",
        regions().map(|(p, r)| {
            (
                [("pool", p.pool.as_str()), ("region", r.region.as_str())],
                r.changes,
            )
        }),
    )
}

/// RUM samples (`POST /api/rum`).
pub fn rum(encoder: &mut DescriptorEncoder, rum: &RumStats) -> fmt::Result {
    counters(
        encoder,
        "hotpool_rum_samples",
        "RUM samples by what became of them: accepted, rejected (with their batch), expired.",
        [
            ([("result", "accepted")], rum.accepted),
            ([("result", "rejected")], rum.rejected),
            ([("result", "expired")], rum.expired),
        ],
    )?;
    let family = encoder.encode_descriptor(
        "hotpool_rum_samples_held",
        "RUM samples held (not yet expired).",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::try_from(rum.held).unwrap_or(i64::MAX)).encode(family)
}

/// A latency histogram as prometheus-client encodes one (per-bucket counts; it adds them
/// up).
#[derive(Debug)]
struct Histogram<'a>(&'a LatencyHistogram);

impl EncodeMetric for Histogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.0.counts)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every probed endpoint with its pool.
fn probed(pools: &[PoolStatus]) -> impl Iterator<Item = (&PoolStatus, &EndpointStatus)> {
    pools.iter().flat_map(|p| {
        p.endpoints
            .iter()
            .filter(|e| e.probe != "none")
            .map(move |e| (p, e))
    })
}

/// Per endpoint: probe results, failures, and the latency of the successful ones.
pub fn probes(encoder: &mut DescriptorEncoder, pools: &[PoolStatus]) -> fmt::Result {
    let probed = || probed(pools);
    counters(
        encoder,
        "hotpool_probes",
        "Probe results received per endpoint.",
        probed().map(|(p, e)| (pool_endpoint(p, &e.endpoint), e.probes.attempts)),
    )?;
    counters(
        encoder,
        "hotpool_probe_failures",
        "Failed probes per endpoint.",
        probed().map(|(p, e)| (pool_endpoint(p, &e.endpoint), e.probes.failures)),
    )?;
    let mut family = encoder.encode_descriptor(
        "hotpool_probe_latency_seconds",
        "Latency of successful probes.",
        None,
        MetricType::Histogram,
    )?;
    for (p, e) in probed() {
        let labels = pool_endpoint(p, &e.endpoint);
        Histogram(e.probes.latency()).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Per endpoint: local failures and late runs; in total: local failures by reason; the
/// scheduler's figures.
pub fn probe_accounting(
    encoder: &mut DescriptorEncoder,
    pools: &[PoolStatus],
    totals: &ProbeTotals,
    scheduler: Option<&SchedulerStats>,
) -> fmt::Result {
    let probed = || probed(pools);
    counters(
        encoder,
        "hotpool_probe_local_failures",
        "Probes per endpoint that failed on this host (out of descriptors, buffers, local \
         ports, no route of ours, ...): not verdicts, not counted against the endpoint.",
        probed().map(|(p, e)| (pool_endpoint(p, &e.endpoint), e.probes.local_failures)),
    )?;
    counters(
        encoder,
        "hotpool_probe_late",
        "Probe runs per endpoint that started late (more than a tenth of the interval, at \
         least 50 ms, after they were due).",
        probed().map(|(p, e)| (pool_endpoint(p, &e.endpoint), e.probes.late)),
    )?;
    counters(
        encoder,
        "hotpool_probe_local_failures_by_reason",
        "Probes of every endpoint that failed on this host, by reason.",
        totals
            .local_failures_by_reason()
            .map(|(reason, n)| ([("reason", reason.label())], n)),
    )?;
    let Some(s) = scheduler else {
        return Ok(());
    };
    for (name, help, value) in [
        (
            "hotpool_probe_scheduler_started",
            "Probe runs started.",
            s.started,
        ),
        (
            "hotpool_probe_scheduler_late",
            "Probe runs that started late, every endpoint together.",
            s.late,
        ),
    ] {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(family)?;
    }
    for (name, help, value) in [
        ("hotpool_probe_scheduler_jobs", "Probed endpoints.", s.jobs),
        (
            "hotpool_probe_scheduler_in_flight",
            "Probes running now.",
            s.in_flight,
        ),
        (
            "hotpool_probe_scheduler_in_flight_limit",
            "Most probes in flight at once: what the load needs, under [probes] \
             max_concurrent and the descriptors set aside for probes.",
            s.limit,
        ),
        (
            "hotpool_probe_scheduler_needed",
            "Probes in flight the load needs when every probe runs to its timeout, with \
             headroom.",
            s.wanted,
        ),
        (
            "hotpool_probe_scheduler_waiting",
            "Probes due but waiting for a slot.",
            s.waiting,
        ),
    ] {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(family)?;
    }
    Ok(())
}

/// The event record's deliveries.
pub fn events(encoder: &mut DescriptorEncoder, stats: &EventStats) -> fmt::Result {
    counters(
        encoder,
        "hotpool_webhook_deliveries",
        "Events sent to webhooks, by result (dropped: the queue was full).",
        [
            ("delivered", stats.webhooks_delivered),
            ("failed", stats.webhooks_failed),
            ("dropped", stats.webhooks_dropped),
        ]
        .map(|(result, n)| ([("result", result)], n)),
    )?;
    let family = encoder.encode_descriptor(
        "hotpool_event_log_write_errors",
        "Events that could not be appended to the event log.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(stats.log_write_errors).encode(family)
}

/// Requests the API refused.
pub fn api(encoder: &mut DescriptorEncoder, refused: &[(&'static str, u64)]) -> fmt::Result {
    counters(
        encoder,
        "hotpool_api_refused",
        "API requests refused, by reason (foreign Host or Origin, missing or wrong token).",
        refused
            .iter()
            .map(|(reason, n)| ([("reason", *reason)], *n)),
    )
}

/// The DNS server: responses by RCODE, query type and transport, answers per pool,
/// rate-limited answers, rejected queries, TCP connection events.
pub fn server(encoder: &mut DescriptorEncoder, s: &StatsSnapshot) -> fmt::Result {
    counters(
        encoder,
        "hotpool_daemon_responses",
        "Responses the daemon sent, by RCODE, query type and transport (the kernel's \
         answers are hotpool_xdp_packets_total{outcome=\"hit\"}).",
        s.responses.iter().map(|(transport, rcode, qtype, n)| {
            (
                [
                    ("rcode", rcode.as_str()),
                    ("qtype", qtype.as_str()),
                    ("transport", *transport),
                ],
                *n,
            )
        }),
    )?;
    counters(
        encoder,
        "hotpool_daemon_answers",
        "Answers the daemon sent with a pool's records.",
        s.pool_answers
            .iter()
            .map(|(pool, n)| ([("pool", pool.as_str())], *n)),
    )?;
    counters(
        encoder,
        "hotpool_rrl",
        "UDP answers over the rate limit, by action (limited = slipped + dropped) and kind \
         of answer.",
        s.rrl
            .iter()
            .map(|(action, reason, n)| ([("action", *action), ("reason", *reason)], *n)),
    )?;
    counters(
        encoder,
        "hotpool_rejected",
        "UDP queries not answered under the acceptance rules, by reason.",
        s.rejected
            .iter()
            .map(|(reason, n)| ([("reason", *reason)], *n)),
    )?;
    counters(
        encoder,
        "hotpool_daemon_tcp_connections",
        "TCP connections by what happened to them.",
        s.tcp.iter().map(|(event, n)| ([("event", *event)], *n)),
    )
}

#[cfg(test)]
mod tests;
