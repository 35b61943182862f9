//! The daemon's HTTP API (axum on hyper): Prometheus metrics, the status, and the control
//! calls that pin endpoints up or down; and the client side `hotpool status` and
//! `hotpool endpoint` use. Reads steering and the datapath; nothing depends on it but the
//! daemon and the CLI.
//!
//! * [`settings`]: `[api]`: listeners, token, Unix socket, limits;
//! * [`guard`]: the Host, Origin and token checks every request passes;
//! * [`http`]: the routes, the error bodies, and the seam for routes other parts add;
//! * [`state`]: what the routes serve from;
//! * [`listen`]: the TCP and Unix listeners with their connection limits;
//! * [`metrics`]: the Prometheus families;
//! * [`status`]: the status document and the table `hotpool status` prints;
//! * [`stream`]: response bodies encoded on a blocking thread and sent in chunks;
//! * [`client`]: finding the daemon from its config and asking it, with clean errors;
//! * [`version`]: the version and git revision of this build.

use axum::Router;
use tokio::{sync::watch, task::JoinHandle};

pub mod client;
pub mod guard;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod settings;
pub mod state;
pub mod status;
pub mod stream;
pub mod version;

use crate::api::{
    listen::{ListenError, Listeners},
    settings::ApiSettings,
    state::ApiState,
};

/// Binds what `settings` asks for and serves the API with `extra` routes (see
/// [`http::router`]) until `shutdown` flips. `None` when no listener is configured.
pub async fn start(
    settings: &ApiSettings,
    state: ApiState,
    extra: Router,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, ListenError> {
    if !settings.enabled() {
        return Ok(None);
    }
    let listeners = Listeners::bind(settings).await?;
    let router = http::router(state, settings, extra);
    Ok(Some(tokio::spawn(listeners.serve(router, shutdown))))
}
