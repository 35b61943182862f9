//! The API's listeners: TCP (`api.listen`) and the Unix socket (`api.unix_socket`), each
//! with at most `max_connections` connections served at once (further ones wait in the
//! listen backlog), `header_timeout` to send the request headers, one request per
//! connection (no keep-alive, so an idle client cannot hold a slot), and HTTP/1.1 on hyper.

use std::{
    io,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{Router, extract::Request};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use crate::api::{
    guard::Via,
    settings::{ApiSettings, UnixSocket},
};

/// A connection is closed after this long whatever it does (a request is answered or
/// times out well before).
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(120);

/// Why the API cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding the API to {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("api.unix_socket {}: {what}", .path.display())]
    Socket {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<io::Error>,
    },
}

impl ListenError {
    fn socket(path: &Path, what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let (path, what) = (path.to_path_buf(), what.into());
        move |source| Self::Socket {
            path,
            what,
            source: Some(source),
        }
    }
}

/// The bound listeners, not yet serving.
pub struct Listeners {
    tcp: Option<TcpListener>,
    unix: Option<(UnixListener, SocketFile)>,
    max_connections: usize,
    header_timeout: Duration,
}

impl Listeners {
    /// Binds what `settings` asks for.
    pub async fn bind(settings: &ApiSettings) -> Result<Self, ListenError> {
        let tcp = match settings.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ListenError::Bind { addr, source })?,
            ),
            None => None,
        };
        let unix = match &settings.unix_socket {
            Some(s) => Some(bind_unix(s)?),
            None => None,
        };
        Ok(Self {
            tcp,
            unix,
            max_connections: settings.max_connections.max(1),
            header_timeout: settings.header_timeout,
        })
    }

    /// The TCP listener's address (with the port the kernel chose for port 0).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves `router` on every listener until `shutdown` flips; removes the socket file
    /// on the way out.
    pub async fn serve(self, router: Router, shutdown: watch::Receiver<bool>) {
        let mut loops = JoinSet::new();
        let limits = Limits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
        };
        if let Some(listener) = self.tcp {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "API at http://{addr}/ (metrics at /metrics)");
            }
            loops.spawn(accept_loop(
                TcpAccept(listener),
                router.clone(),
                limits,
                shutdown.clone(),
            ));
        }
        let mut socket_file = None;
        if let Some((listener, file)) = self.unix {
            info!(path = %file.path.display(), "API on the Unix socket");
            socket_file = Some(file);
            loops.spawn(accept_loop(UnixAccept(listener), router, limits, shutdown));
        }
        while loops.join_next().await.is_some() {}
        drop(socket_file);
    }
}

#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_timeout: Duration,
}

/// A listener that yields connections with how they arrived.
trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Via)>> + Send;
}

struct TcpAccept(TcpListener);

impl Accept for TcpAccept {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Stream, Via)> {
        let (stream, _) = self.0.accept().await?;
        let local = stream.local_addr()?;
        Ok((stream, Via::Tcp { local }))
    }
}

struct UnixAccept(UnixListener);

impl Accept for UnixAccept {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<(Self::Stream, Via)> {
        let (stream, _) = self.0.accept().await?;
        Ok((stream, Via::Unix))
    }
}

async fn accept_loop<A: Accept>(
    listener: A,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        // A slot first: at the limit, new connections wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, via) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // E.g. out of file descriptors: pause rather than spin.
                    warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let service =
            router
                .clone()
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(via);
                    request
                });
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            match tokio::time::timeout(MAX_CONNECTION_TIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "API connection"),
                Err(_) => debug!(
                    "API connection closed after {}",
                    humantime::format_duration(MAX_CONNECTION_TIME)
                ),
            }
            drop(slot);
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    // Shutting down: connections in flight are dropped with the set.
}

/// The socket file, removed on drop if it is still the one bound.
struct SocketFile {
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket with its mode and group already in place when it appears at `path`
/// (bound under a temporary name, then renamed), so there is no moment when anyone else
/// could connect. A stale socket left by a crashed daemon is replaced; a live one is an
/// error.
fn bind_unix(settings: &UnixSocket) -> Result<(UnixListener, SocketFile), ListenError> {
    let path = &settings.path;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::Socket {
                path: path.clone(),
                what: "exists and is not a socket".into(),
                source: None,
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::Socket {
                path: path.clone(),
                what: "another process is serving on it (is hotpool already running?)".into(),
                source: None,
            });
        }
        std::fs::remove_file(path)
            .map_err(ListenError::socket(path, "removing the stale socket"))?;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(ListenError::socket(path, "creating its directory"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let listener = UnixListener::bind(&temp).map_err(ListenError::socket(path, "binding"))?;
    let prepared = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(settings.mode))
        .map_err(ListenError::socket(
            path,
            format!("setting mode {:04o}", settings.mode),
        ))
        .and_then(|()| match &settings.group {
            Some(group) => std::os::unix::fs::chown(&temp, None, Some(group.gid)).map_err(
                ListenError::socket(path, format!("giving it to group {}", group.name)),
            ),
            None => Ok(()),
        })
        .and_then(|()| {
            std::fs::rename(&temp, path).map_err(ListenError::socket(path, "moving it in place"))
        });
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    let inode = std::fs::symlink_metadata(path)
        .map_err(ListenError::socket(path, "reading it back"))?
        .ino();
    Ok((
        listener,
        SocketFile {
            path: path.clone(),
            inode,
        },
    ))
}
