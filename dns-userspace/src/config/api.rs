//! `[api]`, and `server.metrics_listen`, its old spelling of `api.listen` (old configs keep
//! working; giving both is an error).

use std::{net::SocketAddr, ops::Range, path::Path, str::FromStr as _, time::Duration};

use toml::Spanned;

use crate::{
    api::settings::{
        ApiSettings, ApiSettingsError, DEFAULT_SOCKET_MODE, Group, Reads, Token, UnixSocket,
        allowed_host, check_socket_mode,
    },
    config::{ConfigError, parse::Parser, raw::RawApi},
};

/// Longest `header_timeout` and `request_timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

impl Parser<'_> {
    /// `[api]` alone (see [`crate::config::Config::load_api`]).
    pub(super) fn api_only(&self) -> Result<ApiSettings, ConfigError> {
        let mut raw = self.raw()?;
        let metrics_listen = raw.server.as_mut().and_then(|s| s.metrics_listen.take());
        self.api(raw.api, metrics_listen, false)
    }

    /// `[api]` with `server.metrics_listen`; with `read_token`, the token file is read and
    /// the settings are checked against each other.
    pub(super) fn api(
        &self,
        raw: Option<RawApi>,
        metrics_listen: Option<Spanned<String>>,
        read_token: bool,
    ) -> Result<ApiSettings, ConfigError> {
        let mut api = ApiSettings::default();
        let raw = raw.unwrap_or(RawApi {
            listen: None,
            token_file: None,
            unix_socket: None,
            unix_socket_mode: None,
            unix_socket_group: None,
            reads: None,
            allowed_hosts: None,
            max_connections: None,
            header_timeout: None,
            request_timeout: None,
            max_body_bytes: None,
        });
        let listen = match (metrics_listen, raw.listen) {
            (Some(old), Some(_)) => {
                return Err(self.err_at(
                    old.span(),
                    "server.metrics_listen is the old spelling of api.listen; give only api.listen",
                ));
            }
            (Some(l), None) => Some((l, "metrics_listen")),
            (None, Some(l)) => Some((l, "listen")),
            (None, None) => None,
        };
        let mut listen_span = None;
        if let Some((l, key)) = listen {
            let addr = SocketAddr::from_str(l.get_ref().trim()).map_err(|_| {
                self.err_at(
                    l.span(),
                    format!(
                        "invalid {key} {:?}: expected address:port, e.g. \"127.0.0.1:9153\" or \"[::1]:9153\"",
                        l.get_ref()
                    ),
                )
            })?;
            api.listen = Some(addr);
            listen_span = Some(l.span());
        }
        if let Some(t) = &raw.token_file {
            let file = self.relative(t, "token_file")?;
            if read_token {
                api.token =
                    Some(Token::read(&file).map_err(|e| self.err_at(t.span(), e.to_string()))?);
            }
            api.token_file = Some(file);
        }
        if let Some(path) = &raw.unix_socket {
            let mode = match &raw.unix_socket_mode {
                Some(m) => check_socket_mode(*m.get_ref())
                    .map_err(|e| self.err_at(m.span(), e.to_string()))?,
                None => DEFAULT_SOCKET_MODE,
            };
            let group = match &raw.unix_socket_group {
                Some(g) => Some(
                    Group::lookup(g.get_ref().trim())
                        .map_err(|e| self.err_at(g.span(), e.to_string()))?,
                ),
                None => None,
            };
            api.unix_socket = Some(UnixSocket {
                path: self.relative(path, "unix_socket")?,
                mode,
                group,
            });
        } else if let Some(stray) = raw
            .unix_socket_mode
            .as_ref()
            .map(Spanned::span)
            .or(raw.unix_socket_group.as_ref().map(Spanned::span))
        {
            return Err(self.err_at(
                stray,
                "unix_socket_mode and unix_socket_group need unix_socket",
            ));
        }
        let mut reads_span = None;
        match raw.reads {
            Some(r) => {
                reads_span = Some(r.span());
                api.reads = r.into_inner();
            }
            // Open on loopback; a listener others can reach shows status only with the token.
            None => {
                if api
                    .listen
                    .is_some_and(|a| !a.ip().to_canonical().is_loopback())
                {
                    api.reads = Reads::Token;
                }
            }
        }
        for h in raw.allowed_hosts.unwrap_or_default() {
            let name =
                allowed_host(h.get_ref()).map_err(|e| self.err_at(h.span(), e.to_string()))?;
            api.allowed_hosts.push(name);
        }
        if let Some(n) = raw.max_connections {
            if *n.get_ref() == 0 {
                return Err(self.err_at(n.span(), "max_connections must be at least 1"));
            }
            api.max_connections = n.into_inner();
        }
        if let Some(t) = &raw.header_timeout {
            api.header_timeout = self.timeout(t, "header_timeout")?;
        }
        if let Some(t) = &raw.request_timeout {
            api.request_timeout = self.timeout(t, "request_timeout")?;
        }
        if let Some(n) = raw.max_body_bytes {
            api.max_body_bytes = n.into_inner();
        }
        if read_token {
            api.validate().map_err(|e| {
                let span = match e {
                    ApiSettingsError::ReadsWithoutToken => reads_span.clone(),
                    _ => listen_span.clone(),
                };
                match span {
                    Some(span) => self.err_at(span, e.to_string()),
                    None => ConfigError::new(self.source, e.to_string()),
                }
            })?;
        }
        Ok(api)
    }

    /// A path relative to the config file's directory.
    pub(super) fn relative(
        &self,
        s: &Spanned<String>,
        key: &str,
    ) -> Result<std::path::PathBuf, ConfigError> {
        if s.get_ref().trim().is_empty() {
            return Err(self.err_at(s.span(), format!("{key} is empty")));
        }
        Ok(self
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .join(s.get_ref()))
    }

    fn timeout(&self, t: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        let span: Range<usize> = t.span();
        let d = humantime::parse_duration(t.get_ref().trim()).map_err(|e| {
            self.err_at(
                span.clone(),
                format!(
                    "invalid {key} {:?}: {e} (write e.g. \"5s\" or \"500ms\")",
                    t.get_ref()
                ),
            )
        })?;
        if d.is_zero() || d > MAX_TIMEOUT {
            return Err(self.err_at(span, format!("{key} must be between 1ms and 1h")));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::config::Config;

    fn source() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ))
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &source())
    }

    #[track_caller]
    fn fails_at(text: &str, line: usize, problem: &str) {
        let e = parse(text).expect_err("must be rejected");
        assert_eq!(e.line(), Some(line), "{e}");
        assert!(
            e.to_string().contains(problem),
            "{e} does not say {problem:?}"
        );
    }

    /// A token file in the temp directory, removed on drop.
    struct TokenFile(std::path::PathBuf);
    impl TokenFile {
        fn new(tag: &str, mode: u32) -> Self {
            let path = std::env::temp_dir()
                .join(format!("hotpool-cfg-{tag}-{}.token", std::process::id()));
            std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            Self(path)
        }
    }
    impl Drop for TokenFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn api_keys_and_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.api, ApiSettings::default());
        assert!(!cfg.api.enabled());

        let token = TokenFile::new("keys", 0o600);
        let cfg = parse(&format!(
            "[api]\nlisten = \"0.0.0.0:9153\"\ntoken_file = \"{}\"\nunix_socket = \"run/api.sock\"\n\
             unix_socket_mode = 0o600\nunix_socket_group = \"root\"\nreads = \"token\"\n\
             allowed_hosts = [\"DNS1.example.net\", \"2001:db8::1\"]\nmax_connections = 8\n\
             header_timeout = \"2s\"\nrequest_timeout = \"1m\"\nmax_body_bytes = 1024\n",
            token.0.display()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let api = &cfg.api;
        assert_eq!(api.listen, Some("0.0.0.0:9153".parse().unwrap()));
        assert!(api.token.as_ref().unwrap().matches(b"0123456789abcdef0123"));
        assert_eq!(api.token_file.as_deref(), Some(token.0.as_path()));
        let socket = api.unix_socket.as_ref().unwrap();
        assert_eq!(socket.path, source().parent().unwrap().join("run/api.sock"));
        assert_eq!(socket.mode, 0o600);
        assert_eq!(socket.group.as_ref().unwrap().gid, 0);
        assert_eq!(api.reads, Reads::Token);
        assert_eq!(api.allowed_hosts, ["dns1.example.net", "[2001:db8::1]"]);
        assert_eq!(api.max_connections, 8);
        assert_eq!(api.header_timeout, Duration::from_secs(2));
        assert_eq!(api.request_timeout, Duration::from_secs(60));
        assert_eq!(api.max_body_bytes, 1024);
    }

    #[test]
    fn metrics_listen_is_the_old_spelling_of_api_listen() {
        let cfg = parse("[server]\nmetrics_listen = \"127.0.0.1:9153\"\n").unwrap();
        assert_eq!(cfg.api.listen, Some("127.0.0.1:9153".parse().unwrap()));
        fails_at(
            "[server]\nmetrics_listen = \"127.0.0.1:9153\"\n[api]\nlisten = \"127.0.0.1:9154\"\n",
            2,
            "server.metrics_listen is the old spelling of api.listen; give only api.listen",
        );
        fails_at(
            "[server]\nmetrics_listen = \"127.0.0.1\"\n",
            2,
            "invalid metrics_listen",
        );
        fails_at("[api]\nlisten = \"localhost:9153\"\n", 2, "invalid listen");
    }

    #[test]
    fn a_non_loopback_listener_without_a_token_is_an_error() {
        fails_at(
            "[api]\nmax_connections = 4\nlisten = \"0.0.0.0:9153\"\n",
            3,
            "not a loopback address, without a token: set api.token_file",
        );
        fails_at(
            "[server]\nport = 53\nmetrics_listen = \"[::]:9153\"\n",
            3,
            "not a loopback address",
        );
        fails_at(
            "[api]\nlisten = \"127.0.0.1:9153\"\nreads = \"token\"\n",
            3,
            "needs api.token_file",
        );
        assert!(parse("[api]\nlisten = \"[::1]:9153\"\n").is_ok());
        // Only the API part, for the CLI: no check, no token read.
        let path =
            std::env::temp_dir().join(format!("hotpool-cfg-api-{}.toml", std::process::id()));
        std::fs::write(&path, "[api]\nlisten = \"0.0.0.0:9153\"\ntoken_file = \"/nonexistent/token\"\n[[zone]]\norigin = \"x.\"\nfile = \"/nonexistent/zone\"\n").unwrap();
        let api = Config::load_api(&path).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(api.listen, Some("0.0.0.0:9153".parse().unwrap()));
        assert_eq!(
            api.token_file.as_deref(),
            Some(Path::new("/nonexistent/token"))
        );
        assert!(api.token.is_none());
    }

    #[test]
    fn reads_are_open_on_loopback_and_need_the_token_elsewhere() {
        let token = TokenFile::new("reads", 0o600);
        let file = token.0.display();
        let reads = |listen: &str, extra: &str| {
            parse(&format!(
                "[api]\nlisten = \"{listen}\"\ntoken_file = \"{file}\"\n{extra}"
            ))
            .unwrap_or_else(|e| panic!("{e}"))
            .api
            .reads
        };
        assert_eq!(reads("127.0.0.1:9153", ""), Reads::Open);
        assert_eq!(reads("[::1]:9153", ""), Reads::Open);
        assert_eq!(reads("0.0.0.0:9153", ""), Reads::Token);
        assert_eq!(reads("192.0.2.1:9153", ""), Reads::Token);
        assert_eq!(reads("0.0.0.0:9153", "reads = \"open\"\n"), Reads::Open);
        assert_eq!(reads("127.0.0.1:9153", "reads = \"token\"\n"), Reads::Token);
    }

    #[test]
    fn token_files_and_sockets_are_checked() {
        let open = TokenFile::new("open", 0o644);
        fails_at(
            &format!(
                "[api]\nlisten = \"127.0.0.1:9153\"\ntoken_file = \"{}\"\n",
                open.0.display()
            ),
            3,
            "can be read by every user (mode 0644)",
        );
        fails_at(
            "[api]\ntoken_file = \"/nonexistent/hotpool.token\"\n",
            2,
            "cannot read token file",
        );
        fails_at(
            "[api]\nunix_socket = \"/run/x.sock\"\nunix_socket_mode = 0o666\n",
            3,
            "lets every local user connect",
        );
        fails_at(
            "[api]\nunix_socket = \"/run/x.sock\"\nunix_socket_group = \"no-such-group-hotpool\"\n",
            3,
            "unknown group",
        );
        fails_at("[api]\nunix_socket_mode = 0o600\n", 2, "need unix_socket");
        fails_at(
            "[api]\nreads = \"sometimes\"\n",
            2,
            "unknown variant `sometimes`",
        );
        fails_at(
            "[api]\nallowed_hosts = [\"http://x\"]\n",
            2,
            "not a host name",
        );
        fails_at("[api]\nmax_connections = 0\n", 2, "at least 1");
        fails_at("[api]\nheader_timeout = \"0s\"\n", 2, "between 1ms and 1h");
        fails_at(
            "[api]\nrequest_timeout = \"soon\"\n",
            2,
            "invalid request_timeout",
        );
        fails_at(
            "[api]\nlisten = \"127.0.0.1:9153\"\nlsiten = \"x\"\n",
            3,
            "unknown field `lsiten`",
        );
    }
}
