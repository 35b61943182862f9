//! `[api]`: where the daemon's HTTP API listens and who may use it.
//!
//! * Reads (`GET /metrics`, `GET /api/status`) are open on a loopback listener by default,
//!   so a local Prometheus scrapes without credentials, and need the token on any other
//!   (`reads = "open"` or `"token"` says so explicitly).
//! * Writes (every other method: pins, reload) need the bearer token from `token_file`
//!   over TCP, or arrive over `unix_socket`, whose file mode and group are the control.
//!   Without a token file, writes over TCP are refused.
//! * A TCP listener on a non-loopback address needs a token file ([`ApiSettings::validate`]):
//!   `hotpool check` and `hotpool run` refuse the config otherwise.
//! * Whatever the address, a request must name this host (`Host`: the listen address, the
//!   connection's local address, `localhost`, `127.0.0.1`, `[::1]` or an `allowed_hosts`
//!   name) and may carry no foreign `Origin` (see `api::guard`).

use std::{
    ffi::CString,
    fmt,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

/// Default most concurrent connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default time a client has to send its request headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a request may take from its headers to the end of the response.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default largest request body accepted.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default mode of the Unix socket: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// Shortest token accepted (characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// `[api]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    /// TCP address of the API (`api.listen`, or the old `server.metrics_listen`); none:
    /// no TCP listener.
    pub listen: Option<SocketAddr>,
    /// `api.token_file`: where the bearer token is kept.
    pub token_file: Option<PathBuf>,
    /// The bearer token writes (and with [`Reads::Token`] reads) need over TCP, read from
    /// `token_file` when the daemon's config is loaded.
    pub token: Option<Token>,
    /// A Unix socket serving the same API, its file permissions the access control.
    pub unix_socket: Option<UnixSocket>,
    pub reads: Reads,
    /// Further names a request's `Host` may give (lower case, no trailing dot).
    pub allowed_hosts: Vec<String>,
    /// Most concurrent connections per listener; more wait in the listen backlog.
    pub max_connections: usize,
    /// A client that has not sent its request headers after this long is disconnected.
    pub header_timeout: Duration,
    /// A request not answered after this long gets 503.
    pub request_timeout: Duration,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: None,
            token_file: None,
            token: None,
            unix_socket: None,
            reads: Reads::default(),
            allowed_hosts: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Who may read metrics and status over TCP (`api.reads`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reads {
    /// Anyone who can connect (and passes the Host and Origin checks).
    #[default]
    Open,
    /// Only with the bearer token.
    Token,
}

impl fmt::Display for Reads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Token => "token",
        })
    }
}

/// `api.unix_socket` with its mode and group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixSocket {
    pub path: PathBuf,
    /// Permission bits of the socket file (connecting needs write permission).
    pub mode: u32,
    /// Group that owns the socket file; none: the daemon's group.
    pub group: Option<Group>,
}

/// A group by name and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

impl Group {
    /// Looks `name` up in the group database.
    pub fn lookup(name: &str) -> Result<Group, ApiSettingsError> {
        let unknown = || ApiSettingsError::UnknownGroup(name.to_string());
        let c = CString::new(name).map_err(|_| unknown())?;
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid C string, out structure, buffer and result pointer of the sizes given.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return Err(unknown());
        }
        Ok(Group {
            name: name.to_string(),
            gid: group.gr_gid,
        })
    }
}

/// The API's bearer token. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    secret: String,
    /// The file it was read from.
    pub file: PathBuf,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token file {} can be {what} by every user (mode {mode:04o}); chmod 600 it (or 640 with a group)",
        .file.display()
    )]
    Permissions {
        file: PathBuf,
        mode: u32,
        what: &'static str,
    },
    #[error("token file {} is empty", .file.display())]
    Empty { file: PathBuf },
    #[error(
        "the token in {} is {len} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
        .file.display()
    )]
    TooShort { file: PathBuf, len: usize },
    #[error(
        "the token in {} must be one line of visible ASCII characters (it is sent in a header)",
        .file.display()
    )]
    Invalid { file: PathBuf },
}

impl TokenError {
    /// The file exists but this user may not read it (the CLI then tries the socket).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

impl Token {
    /// Reads the token from `file`: one line (surrounding whitespace ignored) of at least
    /// [`MIN_TOKEN_LEN`] visible ASCII characters, in a file neither readable nor writable
    /// by every user.
    pub fn read(file: &Path) -> Result<Token, TokenError> {
        let read_error = |source| TokenError::Read {
            file: file.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(file).map_err(read_error)?;
        let mode = meta.permissions().mode() & 0o7777;
        for (bit, what) in [(0o004, "read"), (0o002, "written")] {
            if mode & bit != 0 {
                return Err(TokenError::Permissions {
                    file: file.to_path_buf(),
                    mode,
                    what,
                });
            }
        }
        let text = std::fs::read_to_string(file).map_err(read_error)?;
        Self::from_text(text.trim(), file)
    }

    /// The token `secret`, checked as if read from `file`.
    pub(crate) fn from_text(secret: &str, file: &Path) -> Result<Token, TokenError> {
        let file = file.to_path_buf();
        if secret.is_empty() {
            return Err(TokenError::Empty { file });
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid { file });
        }
        if secret.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                file,
                len: secret.len(),
            });
        }
        Ok(Token {
            secret: secret.to_string(),
            file,
        })
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let secret = self.secret.as_bytes();
        let mut diff = secret.len() ^ presented.len();
        for (i, &b) in secret.iter().enumerate() {
            diff |= usize::from(b ^ presented.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }

    /// The `Authorization` header value that carries it.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.secret)
    }
}

/// A problem with `[api]` settings that are each valid on their own; [`ApiSettings::validate`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiSettingsError {
    #[error(
        "the API listens on {0}, which is not a loopback address, without a token: set api.token_file (writes and, with reads = \"token\", reads need it), or listen on 127.0.0.1 / [::1] and use api.unix_socket"
    )]
    ExposedWithoutToken(SocketAddr),
    #[error("reads = \"token\" needs api.token_file")]
    ReadsWithoutToken,
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error(
        "unix_socket_mode {0:04o} lets every local user connect (and so pin endpoints); leave out the bits for others, e.g. 0o660"
    )]
    SocketModeOpen(u32),
    #[error("unix_socket_mode {0:o} is not a file mode (at most 0o777)")]
    SocketModeInvalid(u32),
    #[error("allowed host {0:?} is not a host name or address (no scheme, port or path)")]
    AllowedHost(String),
}

impl ApiSettings {
    /// Checks the settings against each other: a non-loopback TCP listener needs a token,
    /// and so do token-protected reads.
    pub fn validate(&self) -> Result<(), ApiSettingsError> {
        if let Some(addr) = self.listen
            && self.token.is_none()
            && !addr.ip().to_canonical().is_loopback()
        {
            return Err(ApiSettingsError::ExposedWithoutToken(addr));
        }
        if self.reads == Reads::Token && self.token.is_none() {
            return Err(ApiSettingsError::ReadsWithoutToken);
        }
        Ok(())
    }

    /// Whether the API is served at all.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.unix_socket.is_some()
    }
}

/// Checks a Unix socket mode: file permission bits without any for others.
pub fn check_socket_mode(mode: u32) -> Result<u32, ApiSettingsError> {
    if mode > 0o777 {
        return Err(ApiSettingsError::SocketModeInvalid(mode));
    }
    if mode & 0o007 != 0 {
        return Err(ApiSettingsError::SocketModeOpen(mode));
    }
    Ok(mode)
}

/// An `allowed_hosts` entry, normalised: lower case, no trailing dot.
pub fn allowed_host(name: &str) -> Result<String, ApiSettingsError> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let bracketed_v6 = n.starts_with('[')
        && n.ends_with(']')
        && n[1..n.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    let plain = !n.is_empty()
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if bracketed_v6 || plain {
        Ok(n)
    } else if let Ok(v6) = n.parse::<std::net::Ipv6Addr>() {
        Ok(format!("[{v6}]"))
    } else {
        Err(ApiSettingsError::AllowedHost(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, os::unix::fs::PermissionsExt as _};

    use super::*;

    struct TempFile(PathBuf);
    impl TempFile {
        fn new(tag: &str, text: &str, mode: u32) -> Self {
            let path = std::env::temp_dir()
                .join(format!("hotpool-token-{tag}-{}.txt", std::process::id()));
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            Self(path)
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn tokens_come_from_private_files() {
        let good = TempFile::new("good", "0123456789abcdef0123\n", 0o600);
        let token = Token::read(&good.0).unwrap_or_else(|e| panic!("{e}"));
        assert!(token.matches(b"0123456789abcdef0123"));
        assert!(!token.matches(b"0123456789abcdef012"));
        assert!(!token.matches(b"0123456789abcdef01234"));
        assert!(!token.matches(b""));
        assert_eq!(token.header_value(), "Bearer 0123456789abcdef0123");
        assert!(
            !format!("{token:?}").contains("0123456789"),
            "Debug must not show the secret"
        );

        let group = TempFile::new("group", "0123456789abcdef0123", 0o640);
        assert!(Token::read(&group.0).is_ok(), "group-readable is fine");

        let world = TempFile::new("world", "0123456789abcdef0123", 0o644);
        let e = Token::read(&world.0).unwrap_err().to_string();
        assert!(e.contains("can be read by every user (mode 0644)"), "{e}");
        let writable = TempFile::new("writable", "0123456789abcdef0123", 0o622);
        let e = Token::read(&writable.0).unwrap_err().to_string();
        assert!(e.contains("written by every user"), "{e}");

        let short = TempFile::new("short", "secret\n", 0o600);
        let e = Token::read(&short.0).unwrap_err().to_string();
        assert!(e.contains("6 characters long; use at least 16"), "{e}");
        let empty = TempFile::new("empty", "\n", 0o600);
        let e = Token::read(&empty.0).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
        let spaced = TempFile::new("spaced", "0123456789 abcdef0123", 0o600);
        let e = Token::read(&spaced.0).unwrap_err().to_string();
        assert!(e.contains("visible ASCII"), "{e}");
        let missing = Token::read(Path::new("/nonexistent/hotpool.token")).unwrap_err();
        assert!(missing.to_string().contains("cannot read token file"));
    }

    #[test]
    fn a_non_loopback_listener_needs_a_token() {
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        for open in [
            "0.0.0.0:9153",
            "192.0.2.1:9153",
            "[::]:9153",
            "[2001:db8::1]:80",
        ] {
            let s = ApiSettings {
                listen: addr(open),
                ..ApiSettings::default()
            };
            assert_eq!(
                s.validate(),
                Err(ApiSettingsError::ExposedWithoutToken(open.parse().unwrap())),
                "{open}"
            );
        }
        for local in [
            "127.0.0.1:9153",
            "127.0.0.2:1",
            "[::1]:9153",
            "[::ffff:127.0.0.1]:9",
        ] {
            let s = ApiSettings {
                listen: addr(local),
                ..ApiSettings::default()
            };
            assert_eq!(s.validate(), Ok(()), "{local}");
        }
        let s = ApiSettings {
            listen: addr("0.0.0.0:9153"),
            token: Some(Token::from_text("0123456789abcdef", Path::new("t")).unwrap()),
            ..ApiSettings::default()
        };
        assert_eq!(s.validate(), Ok(()));
        let s = ApiSettings {
            listen: addr("127.0.0.1:9153"),
            reads: Reads::Token,
            ..ApiSettings::default()
        };
        assert_eq!(s.validate(), Err(ApiSettingsError::ReadsWithoutToken));
    }

    #[test]
    fn socket_modes_and_host_names() {
        assert_eq!(check_socket_mode(0o660), Ok(0o660));
        assert_eq!(check_socket_mode(0o600), Ok(0o600));
        assert_eq!(
            check_socket_mode(0o666),
            Err(ApiSettingsError::SocketModeOpen(0o666))
        );
        assert_eq!(
            check_socket_mode(0o1660),
            Err(ApiSettingsError::SocketModeInvalid(0o1660))
        );
        assert_eq!(
            allowed_host("DNS1.Example.NET.").unwrap(),
            "dns1.example.net"
        );
        assert_eq!(allowed_host("192.0.2.1").unwrap(), "192.0.2.1");
        assert_eq!(allowed_host("2001:db8::1").unwrap(), "[2001:db8::1]");
        assert_eq!(allowed_host("[2001:db8::1]").unwrap(), "[2001:db8::1]");
        for bad in ["http://x", "x:80", "a/b", "", "a..b"] {
            assert!(allowed_host(bad).is_err(), "{bad}");
        }
        assert_eq!(Group::lookup("root").unwrap().gid, 0);
        assert!(Group::lookup("no-such-group-hotpool").is_err());
    }
}
