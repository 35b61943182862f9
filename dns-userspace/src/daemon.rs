//! The daemon's life: serve, attach XDP, publish pools, wait for a signal, shut down cleanly.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use axum::Router;

use crate::{
    api::{
        self,
        state::{ApiState, DaemonInfo},
    },
    config::Config,
    datapath::{
        ebpf::Datapath,
        hot::DatapathSettings,
        pools::{PoolAnswer, PoolTable},
    },
    dns::server,
    limits::{self, FdBudget},
    logs::List,
    steering::{
        events::EventSink,
        pool::PoolSettings,
        probe::{ProbeSet, ProbeSetOptions},
        steer::{self, Steering},
    },
};

/// Command-line switches of `hotpool run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Do not load or attach the XDP program: serve everything from userspace.
    pub no_xdp: bool,
}

/// What the XDP side ended up as, for logs and metrics.
pub struct XdpState {
    pub datapath: Option<Datapath>,
}

/// Loads the program, writes the config and pools into its maps and attaches it to every
/// configured interface. Returns `None` (after a warning) when XDP is disabled or impossible
/// here, so the daemon keeps serving from userspace.
pub fn setup_xdp(cfg: &Config, pools: &PoolTable, opts: &RunOptions) -> Option<Datapath> {
    if opts.no_xdp {
        info!("XDP disabled by --no-xdp; answering every query from userspace");
        return None;
    }
    if cfg.xdp.interfaces.is_empty() {
        info!("no [xdp] interfaces configured; answering every query from userspace");
        return None;
    }
    match try_setup_xdp(cfg, pools) {
        Ok(dp) => Some(dp),
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "XDP fast path unavailable; answering every query from userspace"
            );
            None
        }
    }
}

fn try_setup_xdp(cfg: &Config, pools: &PoolTable) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load(&cfg.xdp.pin_path)?;
    let settings = DatapathSettings {
        port: cfg.server.port,
        edns_udp_size: cfg.server.edns_udp_size,
        listen: cfg.server.listen.clone(),
    };
    // Disabled while the name → pool mapping is rewritten (a pinned map from a previous
    // run may map names to other indexes); the daemon answers meanwhile.
    dp.maps.configure(&settings, false)?;
    let answers: Vec<PoolAnswer> = pools.all().iter().map(|a| (**a).clone()).collect();
    dp.maps.sync(&answers)?;
    dp.maps.configure(&settings, true)?;
    for iface in &cfg.xdp.interfaces {
        dp.attach(iface, cfg.xdp.mode)?;
    }
    info!(
        pools = answers.len(),
        interfaces = %List(&cfg.xdp.interfaces),
        "XDP fast path answering hot pools"
    );
    Ok(dp)
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    run_until(cfg, opts, wait_for_signal()).await
}

/// Runs the daemon until `stop` completes (tests use this to stop it in-process).
pub async fn run_until(
    cfg: Config,
    opts: RunOptions,
    stop: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let fds = descriptor_budget(&cfg);
    let pools = Arc::new(PoolTable::new(
        cfg.pools.iter().map(PoolSettings::initial_answer),
    ));
    let authority = Arc::new(cfg.authority(pools.clone()));

    // Serve first: everything the XDP program passes up must find the daemon listening.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let servers = server::bind(&cfg.server).await?;
    let server_task = tokio::spawn(server::run(
        servers,
        authority.clone(),
        cfg.server.clone(),
        shutdown_rx.clone(),
    ));

    let datapath = Arc::new(Mutex::new(setup_xdp(&cfg, &pools, &opts)));

    // Steering: events, probes, decisions.
    let mut events = EventSink::new(cfg.events.log.as_deref()).context("opening the event log")?;
    for pool in &cfg.pools {
        if let Some(url) = &pool.webhook {
            events.set_webhook(&pool.name.to_string(), url.clone())?;
        }
    }
    let events_task = events.start();
    let steering = Arc::new(Mutex::new(Steering::new(
        &cfg.pools,
        pools.clone(),
        datapath.clone(),
        events,
    )));
    let jobs = steering.lock().unwrap_or_else(|e| e.into_inner()).jobs();
    let (probe_tx, probe_rx) = mpsc::channel(4096);
    let options = ProbeSetOptions {
        max_concurrent: cfg.probes.max_concurrent,
        descriptors: usize::try_from(fds.probes).unwrap_or(usize::MAX),
    };
    let (probe_set, probes_task) = ProbeSet::start(options, jobs, probe_tx, shutdown_rx.clone());
    let stats = probe_set.stats();
    if stats.jobs > 0 {
        info!(
            endpoints = stats.jobs,
            in_flight_limit = stats.limit,
            needed = stats.wanted,
            "probing pool endpoints"
        );
    }
    steering
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .attach_probes(probe_set);
    limits::release_free_memory();
    let steer_task = tokio::spawn(steer::run(steering.clone(), probe_rx, shutdown_rx.clone()));

    let api_state = ApiState {
        datapath: datapath.clone(),
        steering: steering.clone(),
        daemon: Arc::new(DaemonInfo::new(started)),
    };
    // Routes other parts serve through the API (e.g. `POST /api/reload`) go in this Router;
    // they get the API's Host/Origin/token checks and limits.
    let extra_routes = Router::new();
    let api_task = api::start(&cfg.api, api_state, extra_routes, shutdown_rx.clone())
        .await
        .context("starting the API")?;

    info!(
        listen = %List(&cfg.server.listen),
        port = cfg.server.port,
        zones = cfg.zones.len(),
        pools = cfg.pools.len(),
        "hotpool running"
    );
    stop.await?;
    info!("shutting down");

    // Detach first so the kernel stops answering before the daemon stops listening.
    if let Some(mut dp) = datapath.lock().unwrap_or_else(|p| p.into_inner()).take() {
        dp.detach_all();
    }
    let _ = shutdown_tx.send(true);
    match server_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(error = format!("{e:#}"), "DNS server failed"),
        Err(e) => error!(error = %e, "DNS server task panicked"),
    }
    if let Some(t) = api_task {
        let _ = t.await;
    }
    let _ = probes_task.await;
    let _ = steer_task.await;
    // The last reference to the event sink: dropping it lets the webhook task deliver what
    // is queued and end.
    drop(steering);
    if tokio::time::timeout(std::time::Duration::from_secs(10), events_task)
        .await
        .is_err()
    {
        warn!("webhook deliveries still pending after 10 s; giving up on them");
    }
    info!("stopped");
    Ok(())
}

/// Raises the open-file limit and shares it out ([`limits`]).
fn descriptor_budget(cfg: &Config) -> FdBudget {
    let limit = match limits::raise_nofile() {
        Ok(n) => {
            if n.soft > n.was {
                info!(from = n.was, to = n.soft, "raised the open-file limit");
            }
            n.soft
        }
        Err(e) => {
            let soft = limits::nofile().unwrap_or(1024);
            warn!(error = %e, limit = soft, "cannot raise the open-file limit");
            soft
        }
    };
    let budget = FdBudget::split(
        limit,
        cfg.server.tcp_max_connections as u64,
        cfg.api.max_connections as u64,
    );
    info!(
        limit,
        tcp = budget.tcp,
        probes = budget.probes,
        api = budget.api,
        "descriptors: open-file limit shared out"
    );
    budget
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
