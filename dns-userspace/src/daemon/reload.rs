//! Live reload (SIGHUP, `hotpool reload`, `POST /api/reload`): the config file and every
//! zone file are read and validated first; on any error nothing changes (the running
//! configuration keeps serving) and the error is logged and returned. Otherwise the change
//! is applied in an order that never answers a query with a wrong record:
//!
//! 1. steering takes the new pool set ([`Steering::reconcile`]): unchanged endpoints keep
//!    their health, latency window, pin and probe job, and every pool's answer goes into a
//!    new answer table;
//! 2. the daemon's answer path switches to the new zones and that table in one store;
//! 3. the kernel maps follow ([`HotMaps::sync`](crate::datapath::hot::HotMaps::sync)):
//!    new pools' answers are written before their names enter the index, changed answers
//!    are republished with one release store each, names no longer configured leave the
//!    index before their answers and indexes are freed. Between 2 and 3 a query is
//!    answered by the old configuration (kernel) or the new one (daemon), never by a mix,
//!    and a removed or renamed pool's name never leads to another pool's answer;
//! 4. probe jobs of removed or changed endpoints stop, new ones start; the others run on;
//!    the scheduler takes `[probes] max_concurrent` as its new ceiling.
//!
//! The UDP workers' answer caches key their saved responses on the authority's answer
//! generation, which step 2 moves: no worker answers from the old zones or pools after it.
//! The `[rrl]` settings apply from the workers' next batch ([`Rrl::apply`]: new rates keep
//! the buckets).
//!
//! When the new pools do not fit the kernel maps (their size is fixed when they are
//! created), larger maps are loaded with the program before anything changes (a failure
//! refuses the reload), filled in step 3 and swapped in through the pinned links
//! ([`xdp::grow`]), as a restart with new maps would.
//!
//! Settings bound to sockets, threads, maps or files opened at start cannot change this
//! way: a reload that changes one fails and names it ([`RESTART_ONLY`]). Of `[server]`,
//! only `edns_udp_size` is reloadable; the TCP limits and deadlines are restart-only (the
//! connection limit is the file-descriptor budget computed at start, and open connections
//! keep the deadlines they were accepted with).

use std::sync::{Arc, Mutex};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use crate::{
    api::http::ApiError,
    config::{Config, ConfigError},
    daemon::xdp,
    datapath::{ebpf::Datapath, hot::Capacity, pools::PoolTable},
    dns::{authority::Authority, rrl::Rrl},
    steering::{
        probe::{JobChange, ProbeSet},
        steer::Steering,
    },
};

/// A reload asked for (SIGHUP or the API): the daemon answers on the channel with what
/// changed, or why nothing did.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// `POST /api/reload`, for the API's extra routes: asks the daemon through `requests` and
/// answers 200 `{"ok": what changed}`, or 422 `{"error": why nothing did}`.
pub fn route(requests: mpsc::Sender<ReloadRequest>) -> Router {
    Router::new()
        .route("/api/reload", post(reload_request))
        .with_state(requests)
}

async fn reload_request(
    State(requests): State<mpsc::Sender<ReloadRequest>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let stopping = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    let (reply, answer) = oneshot::channel();
    requests.send(reply).await.map_err(|_| stopping())?;
    match answer.await {
        Ok(Ok(done)) => Ok(Json(serde_json::json!({ "ok": done }))),
        Ok(Err(why)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why)),
        Err(_) => Err(stopping()),
    }
}

/// The settings a reload cannot change (the daemon must be restarted for them). Every
/// other setting applies on reload: zones, pools and their webhooks,
/// `server.edns_udp_size`, `[rrl]`, `[probes] max_concurrent`.
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.port",
    "server.udp_workers",
    "server.udp_receive_buffer",
    "server.answer_cache_size",
    "server.tcp_idle_timeout",
    "server.tcp_message_timeout",
    "server.tcp_max_lifetime",
    "server.tcp_max_connections",
    "server.tcp_max_connections_per_client",
    "server.pin_path",
    "api",
    "xdp.interfaces",
    "xdp.mode",
    "events.log",
    "state.path",
    "state.max_age",
];

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{} cannot change without a restart; restart the daemon to apply {}",
        .0.join(", "),
        if .0.len() == 1 { "it" } else { "them" }
    )]
    NeedsRestart(Vec<&'static str>),
    #[error("webhooks: {0}")]
    Webhooks(String),
    #[error("reading the config failed: {0}")]
    Task(String),
    #[error(
        "the kernel maps are too small for the new pools ({needed} needed) and larger ones \
         could not be loaded: {why}"
    )]
    Grow { needed: Capacity, why: String },
}

/// The settings among [`RESTART_ONLY`] that differ between `old` and `new`.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let checks = [
        (o.listen != n.listen),
        (o.port != n.port),
        (o.udp_workers != n.udp_workers),
        (o.udp_receive_buffer != n.udp_receive_buffer),
        (o.answer_cache_size != n.answer_cache_size),
        (o.tcp_idle_timeout != n.tcp_idle_timeout),
        (o.tcp_message_timeout != n.tcp_message_timeout),
        (o.tcp_max_lifetime != n.tcp_max_lifetime),
        (o.tcp_max_connections != n.tcp_max_connections),
        (o.tcp_max_connections_per_client != n.tcp_max_connections_per_client),
        (old.xdp.pin_path != new.xdp.pin_path),
        (old.api != new.api),
        (old.xdp.interfaces != new.xdp.interfaces),
        (old.xdp.mode != new.xdp.mode),
        (old.events.log != new.events.log),
        (old.state.path != new.state.path),
        (old.state.max_age != new.state.max_age),
    ];
    RESTART_ONLY
        .iter()
        .zip(checks)
        .filter_map(|(name, changed)| changed.then_some(*name))
        .collect()
}

/// What the running daemon is made of, as far as a reload changes it.
pub struct Live {
    /// The configuration in force, without its pools ([`Config::without_pools`]): steering
    /// keeps its own copy of them, and a reload compares only the other settings
    /// ([`restart_only_changes`]).
    pub cfg: Config,
    pub authority: Arc<Authority>,
    pub steering: Arc<Mutex<Steering>>,
    pub datapath: Arc<Mutex<Option<Datapath>>>,
    /// The probe scheduler.
    pub probes: ProbeSet,
    /// The UDP answers' rate limiter.
    pub rrl: Arc<Rrl>,
}

impl Live {
    /// Larger kernel maps, loaded with the program, when `new`'s pools do not fit the
    /// running ones (`None` when they fit or there is no kernel path).
    async fn load_grown(&self, new: &Config) -> Result<Option<Datapath>, ReloadError> {
        let needed = self
            .datapath
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|dp| xdp::outgrown(dp, new));
        let Some(needed) = needed else {
            return Ok(None);
        };
        let pin_dir = new.xdp.pin_path.clone();
        let loaded = tokio::task::spawn_blocking(move || xdp::load_grown(&pin_dir, needed))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))?;
        loaded.map(Some).map_err(|e| ReloadError::Grow {
            needed,
            why: format!("{e:#}"),
        })
    }

    /// Re-reads the config file and its zones and applies them; what changed, or why
    /// nothing did (both logged).
    pub async fn reload(&mut self) -> Result<String, ReloadError> {
        let result = self.try_reload().await;
        match &result {
            Ok(done) => info!("{done}"),
            Err(e) => error!("reload failed, the running configuration keeps serving: {e}"),
        }
        result
    }

    async fn try_reload(&mut self) -> Result<String, ReloadError> {
        let path = self.cfg.source.clone();
        let new = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let restart = restart_only_changes(&self.cfg, &new);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        let grown = self.load_grown(&new).await?;
        let regions = {
            let configured = new.regions.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || crate::geo::RegionTable::new(&configured))
                    .await
                    .map_err(|e| ReloadError::Task(e.to_string()))?,
            )
        };
        let table = Arc::new(PoolTable::default());
        let changes = {
            let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
            let hooks = new
                .pools
                .iter()
                .filter_map(|p| Some((p.name.to_string(), p.webhook.clone()?)));
            steering
                .events_mut()
                .replace_webhooks(hooks)
                .map_err(|e| ReloadError::Webhooks(format!("{e:#}")))?;
            // Validated: from here on the reload happens.
            let changes = steering.reconcile(&new.pools, table.clone());
            self.authority
                .replace(new.zone_data().to_vec(), table, new.server.edns_udp_size);
            self.authority.set_regions(regions.clone());
            self.rrl.apply(&new.server.rrl);
            if let Some(dp) = self
                .datapath
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                let answers = steering.answers();
                let synced = match grown {
                    Some(grown) => {
                        xdp::grow(grown, &new, &answers, &regions).map(|grown| *dp = grown)
                    }
                    None => dp
                        .maps
                        .configure(&xdp::settings(&new), true)
                        .and_then(|()| dp.maps.set_regions(&regions, &answers))
                        .map_err(anyhow::Error::from),
                };
                if let Err(e) = synced {
                    // The kernel map may be half written: let the daemon, which has the new
                    // configuration, answer everything.
                    error!(
                        error = format!("{e:#}"),
                        "writing the kernel map failed; the XDP path passes every query to the daemon"
                    );
                    let _ = dp.maps.configure(&xdp::settings(&new), false);
                }
            }
            changes
        };
        let (started, stopped) = changes.jobs.iter().fold((0, 0), |(a, r), c| match c {
            JobChange::Add(_) => (a + 1, r),
            JobChange::Remove(_) => (a, r + 1),
        });
        // Returns once the scheduler has them: no probe of a removed endpoint starts after
        // the reload returns.
        self.probes.apply(changes.jobs).await;
        self.probes.set_max_concurrent(new.probes.max_concurrent);
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.join(", "))
            }
        };
        let done = format!(
            "reloaded {}: {} pools, {} added{}, {} removed{}, {} changed{}; {} zones; probes: {} started, {} stopped",
            new.source.display(),
            new.pools.len(),
            changes.added.len(),
            list(&changes.added),
            changes.removed.len(),
            list(&changes.removed),
            changes.changed.len(),
            list(&changes.changed),
            new.zones.len(),
            started,
            stopped,
        );
        self.cfg = new.without_pools();
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        let source = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ));
        Config::parse(text, source).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn the_reload_route_answers_what_the_daemon_says() {
        let (tx, mut rx) = mpsc::channel::<ReloadRequest>(1);
        let daemon = tokio::spawn(async move {
            let reply = rx.recv().await.unwrap();
            reply.send(Ok("reloaded x: 1 pools".into())).unwrap();
            let reply = rx.recv().await.unwrap();
            reply
                .send(Err("x.toml:3:8: port must be between 1 and 65535".into()))
                .unwrap();
            // Gone without answering: the daemon is stopping.
            drop(rx.recv().await);
        });
        let ok = reload_request(State(tx.clone())).await.unwrap();
        assert_eq!(ok.0, serde_json::json!({ "ok": "reloaded x: 1 pools" }));
        let e = reload_request(State(tx.clone())).await.unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("port must be between"), "{}", e.message);
        let e = reload_request(State(tx)).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        daemon.await.unwrap();
    }

    #[test]
    fn settings_bound_at_start_are_named_when_a_reload_changes_them() {
        let base =
            "[server]\nlisten = [\"127.0.0.1\"]\nport = 53\n\n[xdp]\ninterfaces = [\"lo\"]\n";
        let old = config(base);
        assert!(restart_only_changes(&old, &config(base)).is_empty());
        // Zones, pools and the EDNS size are reloadable.
        let more = format!(
            "{}[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n",
            base.replace("port = 53\n", "port = 53\nedns_udp_size = 1400\n"),
        );
        assert!(restart_only_changes(&old, &config(&more)).is_empty());
        // So is the probes' ceiling: the scheduler takes it at once.
        let ceiling = config(&format!("{base}[probes]\nmax_concurrent = 8\n"));
        assert_ne!(ceiling.probes, old.probes);
        assert!(restart_only_changes(&old, &ceiling).is_empty());
        let changed = config(
            "[server]\nlisten = [\"127.0.0.2\"]\nport = 5353\n\n[xdp]\ninterfaces = [\"lo\"]\nmode = \"native\"\n\n[state]\nmax_age = \"1h\"\n",
        );
        assert_eq!(
            restart_only_changes(&old, &changed),
            ["server.listen", "server.port", "xdp.mode", "state.max_age"]
        );
        let e = ReloadError::NeedsRestart(restart_only_changes(&old, &changed));
        assert!(
            e.to_string().ends_with("restart the daemon to apply them"),
            "{e}"
        );
    }

    #[test]
    fn every_server_and_rrl_key_is_reloadable_or_restart_only() {
        use std::time::Duration;

        use crate::dns::{
            rrl::{Network, RrlSettings},
            server::ServerSettings,
        };
        let old = config("[server]\nlisten = [\"127.0.0.1\"]\nport = 53\n");
        // Naming every field: a new [server] or [rrl] key does not compile here until it is
        // classified below.
        let ServerSettings {
            listen: _,
            port: _,
            edns_udp_size: _,
            udp_workers: _,
            answer_cache_size: _,
            udp_receive_buffer: _,
            tcp_idle_timeout: _,
            tcp_message_timeout: _,
            tcp_max_lifetime: _,
            tcp_max_connections: _,
            tcp_max_connections_per_client: _,
            rrl:
                RrlSettings {
                    responses_per_second: _,
                    window: _,
                    slip: _,
                    ipv4_prefix_length: _,
                    ipv6_prefix_length: _,
                    exempt_clients: _,
                    table_size: _,
                },
        } = &old.server;
        type Change = fn(&mut ServerSettings);
        let restart_only: [(&str, Change); 10] = [
            ("server.listen", |s| {
                s.listen = vec!["127.0.0.2".parse().unwrap()]
            }),
            ("server.port", |s| s.port = 5353),
            ("server.udp_workers", |s| s.udp_workers = Some(3)),
            ("server.udp_receive_buffer", |s| {
                s.udp_receive_buffer = 1 << 20
            }),
            ("server.answer_cache_size", |s| s.answer_cache_size = 16),
            ("server.tcp_idle_timeout", |s| {
                s.tcp_idle_timeout = Duration::from_secs(2)
            }),
            ("server.tcp_message_timeout", |s| {
                s.tcp_message_timeout = Duration::from_secs(1)
            }),
            ("server.tcp_max_lifetime", |s| {
                s.tcp_max_lifetime = Duration::from_secs(7)
            }),
            ("server.tcp_max_connections", |s| {
                s.tcp_max_connections = Some(10)
            }),
            ("server.tcp_max_connections_per_client", |s| {
                s.tcp_max_connections_per_client = 2
            }),
        ];
        for (name, change) in restart_only {
            let mut new = old.clone();
            change(&mut new.server);
            assert_ne!(new.server, old.server, "{name}: the change changes nothing");
            assert_eq!(restart_only_changes(&old, &new), [name], "{name}");
        }
        let reloadable: [(&str, Change); 8] = [
            ("server.edns_udp_size", |s| s.edns_udp_size = 1400),
            ("rrl.responses_per_second", |s| {
                s.rrl.responses_per_second = 20
            }),
            ("rrl.window", |s| s.rrl.window = 5),
            ("rrl.slip", |s| s.rrl.slip = 0),
            ("rrl.ipv4_prefix_length", |s| s.rrl.ipv4_prefix_length = 32),
            ("rrl.ipv6_prefix_length", |s| s.rrl.ipv6_prefix_length = 64),
            ("rrl.exempt_clients", |s| {
                s.rrl.exempt_clients = vec!["10.0.0.0/8".parse::<Network>().unwrap()]
            }),
            ("rrl.table_size", |s| s.rrl.table_size = 1000),
        ];
        for (name, change) in reloadable {
            let mut new = old.clone();
            change(&mut new.server);
            assert_ne!(new.server, old.server, "{name}: the change changes nothing");
            assert!(
                restart_only_changes(&old, &new).is_empty(),
                "{name} must apply on reload: {:?}",
                restart_only_changes(&old, &new)
            );
        }
    }
}
