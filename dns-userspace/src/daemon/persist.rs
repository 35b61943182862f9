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
        state::{self, LAZY_WRITE, SavedState, StateError, URGENT_WRITE},
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

/// Writes the state shortly after every change of a verdict, pin or answer, at most every
/// [`LAZY_WRITE`] for other changes, and once more when `shutdown` flips.
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
                Instant::now() + URGENT_WRITE
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
        writer.write().await;
        last = Instant::now();
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
        let snapshot = {
            let s = lock(&self.steering);
            s.dirty().clear();
            s.snapshot(&self.config)
        };
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || state::write(&path, &snapshot)).await;
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
