//! Local failures: a probe that could not be made for a reason on *this* host (no
//! descriptor, no buffer, no local port, no route in our own table, no permission, a socket
//! kind the host lacks). They say nothing about the endpoint, so they are never verdicts:
//! steering counts and logs them and leaves the endpoint's rise/fall counts alone.
//!
//! # The rule
//!
//! An error is judged by its errno *and* by where it happened:
//!
//! * creating or binding a socket ([`Stage::Socket`]), and opening the shared ICMP socket:
//!   always local, whatever the errno;
//! * `connect()` ([`Stage::Connect`]): `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`,
//!   `EADDRNOTAVAIL`, `EADDRINUSE`, `EPERM`, `EACCES`, `EAFNOSUPPORT`, `EPROTONOSUPPORT` are
//!   local. `ENETUNREACH` and `EHOSTUNREACH` are local only when `connect()` itself returns
//!   them (our routing table has no route, or an `unreachable` route); the same errno
//!   reported later (`SO_ERROR`, from an ICMP error or a neighbour that never answered) is
//!   the endpoint's network failing, a verdict;
//! * sending and receiving ([`Stage::Exchange`]): `ENOBUFS` and `ENOMEM` are local (and the
//!   descriptor errors, should they occur); everything else is a verdict;
//! * a refused or reset connection, a timeout, a TLS or HTTP failure, a wrong status: always
//!   a verdict.

use std::{fmt, io, net::SocketAddr};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;

use crate::steering::health::ProbeOutcome;

/// One probe's result: a verdict on the endpoint, or a local failure that is none.
pub type Attempt = Result<ProbeOutcome, LocalFailure>;

/// Why a probe failed locally: what counters and logs name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalReason {
    /// `EMFILE`, `ENFILE`: the process or the system is out of file descriptors.
    Descriptors,
    /// `ENOBUFS`, `ENOMEM`: the kernel is out of socket buffers or memory.
    Memory,
    /// `EADDRNOTAVAIL`, `EADDRINUSE`: no local address or port to send from.
    LocalAddress,
    /// `ENETUNREACH`, `EHOSTUNREACH` straight from `connect()`/`send()`: our own routing
    /// table has no way there.
    NoRoute,
    /// `EPERM`, `EACCES`: a local firewall rule, or no permission for the socket (ICMP
    /// without `CAP_NET_RAW` or a ping group).
    NotPermitted,
    /// `EAFNOSUPPORT`, `EPROTONOSUPPORT`, `ESOCKTNOSUPPORT`: the host lacks the address
    /// family or protocol (IPv6 disabled, no ICMPv6).
    Unsupported,
    /// Any other error creating a socket, or local setup (TLS configuration).
    Socket,
}

impl LocalReason {
    /// Every reason, in order (for rendering counters).
    pub const ALL: [Self; 7] = [
        Self::Descriptors,
        Self::Memory,
        Self::LocalAddress,
        Self::NoRoute,
        Self::NotPermitted,
        Self::Unsupported,
        Self::Socket,
    ];

    /// Short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Descriptors => "descriptors",
            Self::Memory => "memory",
            Self::LocalAddress => "local-address",
            Self::NoRoute => "no-route",
            Self::NotPermitted => "not-permitted",
            Self::Unsupported => "unsupported",
            Self::Socket => "socket",
        }
    }
}

impl fmt::Display for LocalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Descriptors => "out of file descriptors",
            Self::Memory => "out of socket buffers or memory",
            Self::LocalAddress => "no local address or port",
            Self::NoRoute => "no route from this host",
            Self::NotPermitted => "not permitted on this host",
            Self::Unsupported => "not supported on this host",
            Self::Socket => "local socket error",
        })
    }
}

/// A probe that could not be made: not a verdict on the endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail} ({reason}; not a verdict on the endpoint)")]
pub struct LocalFailure {
    pub reason: LocalReason,
    /// What failed: "cannot open a TCP socket: Too many open files (os error 24)".
    pub detail: String,
}

impl LocalFailure {
    pub fn new(reason: LocalReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Where in a probe an I/O error happened (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Creating, configuring or binding a socket.
    Socket,
    /// `connect()`: `immediate` when `connect()` itself failed, not when the failure was
    /// reported later.
    Connect { immediate: bool },
    /// Sending or receiving on a connected socket.
    Exchange,
}

/// The local reason an errno stands for anywhere in a probe, if it always is one.
fn always_local(errno: i32) -> Option<LocalReason> {
    Some(match errno {
        libc::EMFILE | libc::ENFILE => LocalReason::Descriptors,
        libc::ENOBUFS | libc::ENOMEM => LocalReason::Memory,
        _ => return None,
    })
}

/// Whether `e`, at `stage`, is a local failure, and why.
pub fn local_reason(e: &io::Error, stage: Stage) -> Option<LocalReason> {
    let errno = e.raw_os_error();
    if let Some(reason) = errno.and_then(always_local) {
        return Some(reason);
    }
    match stage {
        Stage::Socket => Some(match errno {
            Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => LocalReason::LocalAddress,
            Some(libc::EPERM | libc::EACCES) => LocalReason::NotPermitted,
            Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT) => {
                LocalReason::Unsupported
            }
            _ => LocalReason::Socket,
        }),
        Stage::Connect { immediate } => match errno? {
            libc::EADDRNOTAVAIL | libc::EADDRINUSE => Some(LocalReason::LocalAddress),
            libc::EPERM | libc::EACCES => Some(LocalReason::NotPermitted),
            libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => Some(LocalReason::Unsupported),
            libc::ENETUNREACH | libc::EHOSTUNREACH if immediate => Some(LocalReason::NoRoute),
            _ => None,
        },
        Stage::Exchange => None,
    }
}

/// `e` at `stage` as a local failure (with `what` failed) or else the endpoint's failure
/// detail.
pub fn classify(e: &io::Error, stage: Stage, what: &str) -> Result<String, LocalFailure> {
    match local_reason(e, stage) {
        Some(reason) => Err(LocalFailure::new(reason, format!("{what}: {e}"))),
        None => Ok(io_detail(e)),
    }
}

/// A short description of a socket error that is the endpoint's failure.
pub fn io_detail(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::PermissionDenied => format!("permission denied ({e})"),
        _ => e.to_string(),
    }
}

/// Opens a TCP connection to `addr`, telling an error of `connect()` itself (our side:
/// [`Stage::Connect`] `immediate`) from one reported once the handshake failed (the
/// endpoint's side), and socket creation errors ([`Stage::Socket`]) from both.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, (io::Error, Stage)> {
    // Non-blocking from the start: one system call fewer per probe than setting it after.
    let stream_type = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let socket = Socket::new(Domain::for_address(addr), stream_type, Some(Protocol::TCP))
        .map_err(|e| (e, Stage::Socket))?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err((e, Stage::Connect { immediate: true })),
    }
    let stream =
        TcpStream::from_std(std::net::TcpStream::from(socket)).map_err(|e| (e, Stage::Socket))?;
    // As tokio's own connect: writable once the handshake is over, then SO_ERROR says how.
    stream
        .writable()
        .await
        .map_err(|e| (e, Stage::Connect { immediate: false }))?;
    match stream.take_error() {
        Ok(None) => Ok(stream),
        Ok(Some(e)) | Err(e) => Err((e, Stage::Connect { immediate: false })),
    }
}
