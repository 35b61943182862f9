//! The state file's reader at start and writer while running (the format is
//! [`crate::steering::state`]).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    config::Config,
    steering::{
        state::{self, LAZY_WRITE, STATE_VERSION, SavedState, StateError, URGENT_WRITE, write_gap},
        steer::Steering,
    },
};

/// The config file a state file belongs to: its canonical path, so that `./hotpool.toml`
/// and `/etc/hotpool/hotpool.toml` are one daemon.
pub fn identity(cfg: &Config) -> PathBuf {
    std::fs::canonicalize(&cfg.source).unwrap_or_else(|_| cfg.source.clone())
}

/// The state an earlier run left for `cfg`, if it is usable; why not is logged.
pub fn read(cfg: &Config) -> Option<SavedState> {
    match state::read(&cfg.state, &identity(cfg), SystemTime::now()) {
        Ok(saved) => {
            let age = state::now_ms(SystemTime::now()).saturating_sub(saved.written_at_ms);
            info!(
                path = %cfg.state.path.display(),
                age = %humantime::format_duration(Duration::from_millis(age)),
                "read the state file"
            );
            Some(saved)
        }
        Err(StateError::Missing(path)) => {
            info!(path = %path.display(), "no state file yet; endpoints start unknown");
            None
        }
        Err(e) => {
            let source = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            warn!("ignoring the state file: {e}{source}; endpoints start unknown");
            None
        }
    }
}

/// Pools copied for the state file under one lock of steering: each pool is a consistent
/// copy, and steering waits for at most this many at a time.
const SAVE_CHUNK: usize = 64;

/// Writes the state shortly after every change of a verdict, pin or answer (at least
/// [`write_gap`] after the last write ended), at most every [`LAZY_WRITE`] for other
/// changes, and once more when `shutdown` flips.
pub async fn run(
    steering: Arc<Mutex<Steering>>,
    path: PathBuf,
    config: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let dirty = lock(&steering).dirty();
    let mut writer = Writer {
        steering,
        path,
        config,
        failing: false,
    };
    let mut last = Instant::now();
    let mut took = Duration::ZERO;
    'run: loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            () = dirty.changed() => {}
        }
        if !dirty.is_dirty() {
            continue;
        }
        // Let a burst of changes settle; latency-only changes wait longer, unless an urgent
        // change comes in meanwhile.
        loop {
            let until = if dirty.is_urgent() {
                (Instant::now() + URGENT_WRITE).max(last + write_gap(took))
            } else {
                last + LAZY_WRITE
            };
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => break 'run,
                () = tokio::time::sleep_until(until.into()) => break,
                () = dirty.urgent_change(), if !dirty.is_urgent() => {}
            }
        }
        let start = Instant::now();
        writer.write().await;
        last = Instant::now();
        took = last - start;
    }
    writer.write().await;
}

struct Writer {
    steering: Arc<Mutex<Steering>>,
    path: PathBuf,
    config: PathBuf,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
}

impl Writer {
    async fn write(&mut self) {
        let (steering, path, config) = (
            self.steering.clone(),
            self.path.clone(),
            self.config.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            // Changes from here on are written next time (or this time, if their pool's
            // chunk is still to come).
            lock(&steering).dirty().clear();
            let header = state::Header {
                version: STATE_VERSION,
                written_at_ms: state::now_ms(SystemTime::now()),
                config: &config,
            };
            let mut next = 0;
            state::write_chunked(&path, &header, || {
                let pools = lock(&steering).save_pools(next, SAVE_CHUNK);
                next += pools.len();
                (!pools.is_empty()).then_some(pools)
            })
        })
        .await;
        match result {
            Ok(Ok(())) => {
                if std::mem::take(&mut self.failing) {
                    info!(path = %self.path.display(), "writing the state file works again");
                }
            }
            Ok(Err(e)) => {
                if !std::mem::replace(&mut self.failing, true) {
                    let source = std::error::Error::source(&e)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    warn!("{e}{source}; a restart will not know the endpoints' health");
                }
            }
            Err(e) => warn!(error = %e, "the state file writer failed"),
        }
    }
}

fn lock(steering: &Mutex<Steering>) -> std::sync::MutexGuard<'_, Steering> {
    steering.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        datapath::pools::PoolTable,
        steering::{events::EventSink, health::AdminState},
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pin_is_written_soon_and_the_last_state_at_shutdown() {
        let dir = std::env::temp_dir().join(format!("hotpool-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[state]\npath = \"{}/state.json\"\n[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
             [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n\
             endpoints = [{{ address = \"192.0.2.1\" }}, {{ address = \"192.0.2.2\" }}]\n",
            dir.display()
        );
        let source = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ));
        let cfg = Config::parse(&text, source).unwrap_or_else(|e| panic!("{e}"));
        let steering = Arc::new(Mutex::new(Steering::new(
            &cfg.pools,
            Arc::new(PoolTable::default()),
            Arc::new(Mutex::new(None)),
            EventSink::new(None).unwrap(),
            None,
        )));
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(
            steering.clone(),
            cfg.state.path.clone(),
            identity(&cfg),
            shutdown,
        ));
        let saved = || -> Option<SavedState> {
            state::read(&cfg.state, &identity(&cfg), SystemTime::now()).ok()
        };
        let pinned = |s: &SavedState, admin: AdminState| s.pools[0].endpoints[1].admin == admin;
        lock(&steering)
            .set_admin("www.example.test", "192.0.2.2", AdminState::Down)
            .unwrap();
        // Written within a few debounce periods (generous for a loaded machine).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !saved().is_some_and(|s| pinned(&s, AdminState::Down)) {
            assert!(Instant::now() < deadline, "the pin was not written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Changed right before shutdown: the last write has it.
        lock(&steering)
            .set_admin("www.example.test", "192.0.2.2", AdminState::Up)
            .unwrap();
        stop.send(true).unwrap();
        task.await.unwrap();
        let last = saved().expect("a state file");
        assert!(pinned(&last, AdminState::Up), "{last:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
