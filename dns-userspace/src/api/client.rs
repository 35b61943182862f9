//! The client side of the API, for `hotpool status`, `hotpool endpoint` and other commands
//! that talk to a running daemon: where it is (from its config: the Unix socket, the TCP
//! address, the token file), one request, and errors an operator can act on instead of
//! raw HTTP lines ("cannot reach the daemon at 127.0.0.1:9153: connection refused (is it
//! running? is [api] listen set?)").
//!
//! With both a Unix socket and a TCP address configured, the socket is tried first (its
//! permissions are the access control, no token needed), then TCP with the token.

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use url::Url;

use crate::api::settings::{ApiSettings, Token};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a daemon's API can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no API configured: set [api] listen or unix_socket in {}", .0.display())]
    NoApi(PathBuf),
    #[error("cannot reach the daemon at {}", reach(.0))]
    Unreachable(Vec<(Target, String)>),
    #[error("the daemon at {target} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout { target: Target },
    /// 404 for a pool or endpoint, with the names that do exist.
    #[error("{message} (the daemon at {target} has: {known})")]
    NotFound {
        target: Target,
        message: String,
        known: String,
    },
    #[error("the daemon at {target} refused: {message}{hint}")]
    Refused {
        target: Target,
        message: String,
        hint: String,
    },
    #[error("the daemon at {target} answered {status}: {message}")]
    Failed {
        target: Target,
        status: u16,
        message: String,
    },
    #[error("the daemon at {target} sent something unreadable: {problem}")]
    Garbled { target: Target, problem: String },
    #[error("building the request: {0}")]
    Setup(String),
}

/// `A: why; B: why (hint)`.
fn reach(tried: &[(Target, String)]) -> String {
    let parts: Vec<String> = tried.iter().map(|(t, why)| format!("{t}: {why}")).collect();
    let hint = match tried.last() {
        Some((Target::Tcp(_), _)) => " (is it running? is [api] listen set?)",
        Some((Target::Unix(_), _)) => " (is it running? is [api] unix_socket set?)",
        None => "",
    };
    format!("{}{hint}", parts.join("; "))
}

/// A daemon to ask.
pub struct Client {
    targets: Vec<Target>,
    token: Option<Token>,
    /// Why there is no token, for a 401's message.
    token_problem: Option<String>,
}

impl Client {
    /// A client for `targets`, tried in order, sending `token` over TCP.
    pub fn new(targets: Vec<Target>, token: Option<Token>) -> Self {
        Self {
            targets,
            token,
            token_problem: None,
        }
    }

    /// A client for the daemon configured by `settings` (from the config file `source`),
    /// reading its token file if this user may.
    pub fn from_settings(settings: &ApiSettings, source: &Path) -> Result<Self, ClientError> {
        let mut targets = Vec::new();
        if let Some(s) = &settings.unix_socket {
            targets.push(Target::Unix(s.path.clone()));
        }
        if let Some(addr) = settings.listen {
            targets.push(Target::Tcp(reachable(addr)));
        }
        if targets.is_empty() {
            return Err(ClientError::NoApi(source.to_path_buf()));
        }
        let mut client = Self::new(targets, None);
        if let Some(file) = &settings.token_file {
            client.use_token_file(file);
        }
        Ok(client)
    }

    /// Sends the token from `file` over TCP; a file this user cannot use is remembered
    /// for the error message if the daemon then asks for a token.
    pub fn use_token_file(&mut self, file: &Path) {
        match Token::read(file) {
            Ok(token) => {
                self.token = Some(token);
                self.token_problem = None;
            }
            Err(e) => self.token_problem = Some(e.to_string()),
        }
    }

    /// Where requests go first.
    pub fn target(&self) -> Option<&Target> {
        self.targets.first()
    }

    /// `GET` a path, given as segments (each percent-encoded as needed).
    pub async fn get(&self, segments: &[&str]) -> Result<Value, ClientError> {
        self.request(reqwest::Method::GET, segments).await
    }

    /// `POST` (with an empty body) to a path given as segments.
    pub async fn post(&self, segments: &[&str]) -> Result<Value, ClientError> {
        self.request(reqwest::Method::POST, segments).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        segments: &[&str],
    ) -> Result<Value, ClientError> {
        let mut tried = Vec::new();
        for target in &self.targets {
            let url = url(target, segments)?;
            match self.send(target, method.clone(), url).await {
                Ok(response) => return self.read(target, response).await,
                Err(e) if e.is_timeout() => {
                    return Err(ClientError::Timeout {
                        target: target.clone(),
                    });
                }
                Err(e) => tried.push((target.clone(), why(&e))),
            }
        }
        Err(ClientError::Unreachable(tried))
    }

    async fn send(
        &self,
        target: &Target,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("hotpool/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        let builder = match target {
            Target::Unix(path) => builder.unix_socket(path.as_path()),
            Target::Tcp(_) => builder,
        };
        let client = builder.build()?;
        let mut request = client.request(method, url);
        if let (Target::Tcp(_), Some(token)) = (target, &self.token) {
            request = request.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        request.send().await
    }

    /// The body of a 2xx as JSON; anything else as the fitting error.
    async fn read(
        &self,
        target: &Target,
        response: reqwest::Response,
    ) -> Result<Value, ClientError> {
        let status = response.status();
        let text = response.text().await.map_err(|e| ClientError::Garbled {
            target: target.clone(),
            problem: why(&e),
        })?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return body.ok_or_else(|| ClientError::Garbled {
                target: target.clone(),
                problem: "the body is not JSON".into(),
            });
        }
        let message = body
            .as_ref()
            .and_then(|b| b["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let t = text.trim();
                if t.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    t.chars().take(200).collect()
                }
            });
        let target = target.clone();
        match status.as_u16() {
            404 => match body.as_ref().and_then(known_names) {
                Some(known) => Err(ClientError::NotFound {
                    target,
                    message,
                    known,
                }),
                None => Err(ClientError::Failed {
                    target,
                    status: 404,
                    message,
                }),
            },
            401 | 403 => {
                let hint = match (status.as_u16(), &self.token, &self.token_problem) {
                    (401, None, Some(problem)) => format!(" ({problem})"),
                    (401, None, None) => {
                        " (give the config with api.token_file: --config, or --token-file)".into()
                    }
                    _ => String::new(),
                };
                Err(ClientError::Refused {
                    target,
                    message,
                    hint,
                })
            }
            code => Err(ClientError::Failed {
                target,
                status: code,
                message,
            }),
        }
    }
}

/// The URL of `segments` (each percent-encoded as needed) at `target`; over the Unix
/// socket the host is `localhost`.
fn url(target: &Target, segments: &[&str]) -> Result<Url, ClientError> {
    let base = match target {
        Target::Unix(_) => "http://localhost/".to_string(),
        Target::Tcp(addr) => format!("http://{addr}/"),
    };
    let mut url = Url::parse(&base).map_err(|e| ClientError::Setup(format!("{base}: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| ClientError::Setup(format!("{base} has no path")))?
        .extend(segments);
    Ok(url)
}

/// `a., b. and 3 more` from a 404's `pools`/`endpoints` and their totals.
fn known_names(body: &Value) -> Option<String> {
    for key in ["pools", "endpoints"] {
        if let Some(list) = body[key].as_array() {
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            let total = body[format!("{key}_total")]
                .as_u64()
                .unwrap_or(names.len() as u64);
            if names.is_empty() {
                return Some(format!("no {key}"));
            }
            let more = total.saturating_sub(names.len() as u64);
            let mut text = names.join(", ");
            if more > 0 {
                text.push_str(&format!(" and {more} more"));
            }
            return Some(text);
        }
    }
    None
}

/// A wildcard listen address is reached over loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The underlying reason of a failed request, in words: "connection refused", "no such
/// file", "permission denied".
fn why(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused => "connection refused".into(),
                io::ErrorKind::NotFound => "no such socket".into(),
                io::ErrorKind::PermissionDenied => "permission denied".into(),
                io::ErrorKind::ConnectionReset => "connection reset".into(),
                io::ErrorKind::TimedOut => "timed out".into(),
                _ => {
                    let text = io.to_string();
                    match text.find(" (os error") {
                        Some(i) => text[..i].to_lowercase(),
                        None => text,
                    }
                }
            };
        }
        source = err.source();
    }
    if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_names_and_addresses() {
        let tcp = Target::Tcp("127.0.0.1:9153".parse().unwrap());
        let u = url(
            &tcp,
            &[
                "api",
                "pools",
                "www.example.test.",
                "endpoints",
                "2001:db8::1",
                "down",
            ],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9153/api/pools/www.example.test./endpoints/2001:db8::1/down"
        );
        let u = url(
            &Target::Unix("/run/hotpool/api.sock".into()),
            &["api", "a b/c"],
        )
        .unwrap();
        assert_eq!(u.as_str(), "http://localhost/api/a%20b%2Fc");
        assert_eq!(
            reachable("0.0.0.0:9153".parse().unwrap()),
            "127.0.0.1:9153".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:9".parse().unwrap()),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            reachable("192.0.2.1:9".parse().unwrap()),
            "192.0.2.1:9".parse().unwrap()
        );
        let body =
            serde_json::json!({ "error": "no pool x", "pools": ["a.", "b."], "pools_total": 5 });
        assert_eq!(known_names(&body).unwrap(), "a., b. and 3 more");
        let body = serde_json::json!({ "error": "x", "endpoints": [], "endpoints_total": 0 });
        assert_eq!(known_names(&body).unwrap(), "no endpoints");
        assert_eq!(
            known_names(&serde_json::json!({ "error": "no such path" })),
            None
        );
    }
}
