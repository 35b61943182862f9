//! The daemon's life: start (state restored, answers published, the kernel path adopted or
//! attached), serve, reload on SIGHUP or request, and stop, leaving the kernel path
//! answering.
//!
//! * [`xdp`]: setting up the kernel path at start;
//! * [`heartbeat`]: the heartbeat the kernel judges staleness by;
//! * [`reload`]: live reload;
//! * [`persist`]: reading and writing the state file;
//! * [`detach`]: `hotpool detach`, and when the systemd unit may run it;
//! * [`preflight`]: what `hotpool check` verifies beyond the config file.

pub mod detach;
pub mod heartbeat;
pub mod persist;
pub mod preflight;
pub mod reload;
pub mod xdp;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    api::{
        self,
        state::{ApiState, DaemonInfo},
    },
    config::Config,
    daemon::reload::ReloadRequest,
    datapath::{ebpf::Replace, pools::PoolTable},
    dns::server,
    limits::{self, FdBudget, FdWants},
    logs::List,
    steering::{
        events::EventSink,
        probe::{ProbeSet, ProbeSetOptions},
        steer::{self, Steering},
    },
};

/// Command-line switches of `hotpool run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Do not load or attach the XDP program: serve everything from userspace.
    pub no_xdp: bool,
    /// How a program already attached through a pinned link is taken over.
    pub replace: Replace,
}

/// Makes SIGHUP harmless from now until [`run`] handles it (reloading): a SIGHUP that
/// arrives while the config is being read must not kill the daemon.
pub fn ignore_hangups() {
    // SAFETY: setting the disposition of a signal to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Runs the daemon until SIGINT or SIGTERM; SIGHUP reloads.
pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (reloads, requests) = mpsc::channel::<ReloadRequest>(8);
    let forward = reloads.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received: reloading the configuration");
            let (reply, done) = tokio::sync::oneshot::channel();
            if forward.send(reply).await.is_err() {
                return;
            }
            // The outcome is logged by the reload itself.
            let _ = done.await;
        }
    });
    run_with(cfg, opts, wait_for_signal(), reloads, requests).await
}

/// Runs the daemon until `stop` completes (tests use this to stop it in-process).
pub async fn run_until(
    cfg: Config,
    opts: RunOptions,
    stop: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let (reloads, requests) = mpsc::channel::<ReloadRequest>(8);
    run_with(cfg, opts, stop, reloads, requests).await
}

async fn run_with(
    cfg: Config,
    opts: RunOptions,
    stop: impl std::future::Future<Output = anyhow::Result<()>>,
    reloads: mpsc::Sender<ReloadRequest>,
    mut requests: mpsc::Receiver<ReloadRequest>,
) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    // Before anything opens a descriptor.
    let fds = descriptor_budget(&cfg);
    // What the last run knew, and the answers that follow from it.
    let saved = persist::read(&cfg);
    let table = Arc::new(PoolTable::default());
    let datapath = Arc::new(Mutex::new(None));
    let mut events = EventSink::new(cfg.events.log.as_deref()).context("opening the event log")?;
    for pool in &cfg.pools {
        if let Some(url) = &pool.webhook {
            events.set_webhook(&pool.name.to_string(), url.clone())?;
        }
    }
    let events_task = events.start();
    let steering = Steering::new(
        &cfg.pools,
        table.clone(),
        datapath.clone(),
        events,
        saved.as_ref(),
    );
    let authority = Arc::new(cfg.authority(table));
    // Client networks flattened off the async threads (a large database takes seconds).
    let regions = {
        let configured = cfg.regions.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || crate::geo::RegionTable::new(&configured))
                .await
                .context("flattening the region networks")?,
        )
    };
    authority.set_regions(regions.clone());
    // The server holds at most its share of the descriptors.
    let server_settings = server::ServerSettings {
        tcp_max_connections: Some(fds.tcp_connections()),
        ..cfg.server.clone()
    };

    // Serve: everything the XDP program passes up must find the daemon listening.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let servers = server::bind(&server_settings).await?;
    let server_stats = servers.stats();
    let server_rrl = servers.rrl();
    let server_task = tokio::spawn(server::run(
        servers,
        authority.clone(),
        server_settings,
        shutdown_rx.clone(),
    ));

    // The kernel path: adopt the running program, replace it, or attach.
    *datapath.lock().unwrap_or_else(|p| p.into_inner()) =
        xdp::setup(&cfg, &steering.answers(), &regions, &opts);
    // Steering has the pools from here on; their settings are freed before the heap is
    // trimmed below.
    let pools = cfg.pools.len();
    let cfg = cfg.without_pools();

    // Steering: probes, decisions, the state file.
    let jobs = steering.jobs();
    let steering = Arc::new(Mutex::new(steering));
    let (probe_tx, probe_rx) = mpsc::channel(4096);
    let options = ProbeSetOptions {
        max_concurrent: cfg.probes.max_concurrent,
        descriptors: fds.probes_in_flight(),
    };
    let (probes, probes_task) = ProbeSet::start(options, jobs, probe_tx, shutdown_rx.clone());
    let stats = probes.stats();
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
        .attach_probes(probes.clone());
    let steer_task = tokio::spawn(steer::run(steering.clone(), probe_rx, shutdown_rx.clone()));
    let heartbeat_task = tokio::spawn(heartbeat::run(datapath.clone(), shutdown_rx.clone()));
    let persist_task = tokio::spawn(persist::run(
        steering.clone(),
        cfg.state.path.clone(),
        persist::identity(&cfg),
        shutdown_rx.clone(),
    ));

    let api_state = ApiState {
        datapath: datapath.clone(),
        steering: steering.clone(),
        daemon: Arc::new(DaemonInfo::new(started)),
        server: Some(server_stats),
    };
    // `POST /api/reload` goes through the API's Host/Origin/token checks and limits.
    let api_task = api::start(
        &cfg.api,
        api_state,
        reload::route(reloads),
        shutdown_rx.clone(),
    )
    .await
    .context("starting the API")?;

    info!(
        listen = %List(&cfg.server.listen),
        port = cfg.server.port,
        zones = cfg.zones.len(),
        pools,
        "hotpool running"
    );
    let mut live = reload::Live {
        cfg,
        authority,
        steering: steering.clone(),
        datapath: datapath.clone(),
        probes,
        rrl: server_rrl,
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            done = &mut stop => {
                done?;
                break;
            }
            Some(reply) = requests.recv() => {
                let result = live.reload().await.map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
        }
    }
    info!("shutting down");

    // The XDP program stays attached through its pinned link and keeps answering from the
    // maps as last published; `hotpool detach` (or `systemctl stop`) removes it.
    drop(datapath.lock().unwrap_or_else(|p| p.into_inner()).take());
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
    let _ = heartbeat_task.await;
    // The last state, for the next start.
    let _ = persist_task.await;
    drop(live);
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
    let budget = fd_budget(cfg, limit);
    info!(
        limit,
        tcp = budget.tcp,
        probes = budget.probes,
        api = budget.api,
        "descriptors: open-file limit shared out"
    );
    if let Some(asked) = budget.tcp_lowered_from {
        warn!(
            tcp_max_connections = asked,
            tcp = budget.tcp,
            limit,
            "tcp_max_connections lowered to half of the descriptors left for TCP and probes; \
             raise the open-file limit (LimitNOFILE=) or lower tcp_max_connections"
        );
    }
    budget
}

/// How `cfg` shares an open-file limit of `limit` descriptors ([`FdBudget::split`]): the
/// UDP workers' sockets and the API's connections (`max_connections` per listener), then
/// TCP connections and probes.
pub fn fd_budget(cfg: &Config, limit: u64) -> FdBudget {
    let udp_sockets = cfg.server.workers() * cfg.server.listen.len();
    let api_listeners =
        usize::from(cfg.api.listen.is_some()) + usize::from(cfg.api.unix_socket.is_some());
    let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    FdBudget::split(
        limit,
        FdWants {
            udp_sockets: wide(udp_sockets),
            api: wide(api_listeners.saturating_mul(cfg.api.max_connections)),
            tcp: cfg.server.tcp_max_connections.map(wide),
        },
    )
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
