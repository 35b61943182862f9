//! Who may ask what: the checks every request passes before it reaches a route.
//!
//! 1. `Host` names this daemon (DNS rebinding: a page on `evil.example` whose name now
//!    resolves to 127.0.0.1 still sends `Host: evil.example`): the connection's local
//!    address, `localhost`, `127.0.0.1`, `[::1]` or an `allowed_hosts` name, with the
//!    listener's port if a port is given. Otherwise 403.
//! 2. No foreign `Origin` (a browser page posting to the API sends its own origin; curl,
//!    Prometheus and `hotpool` send none): an `Origin` must name this daemon as `Host`
//!    must. Otherwise 403.
//! 3. Writes (every method but GET and HEAD), and reads with `reads = "token"`, need
//!    `Authorization: Bearer <token>` over TCP: 401 without it or with another token, 403
//!    when no token is configured (writes over TCP are then impossible). Requests over the
//!    Unix socket pass: its file permissions decided who could connect.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, StatusCode, Uri, header, uri::Authority};

use crate::api::settings::{ApiSettings, Reads, Token};

/// How a request arrived; set per connection as a request extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Over TCP, to this local address.
    Tcp { local: SocketAddr },
    /// Over the Unix socket.
    Unix,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request has no Host header")]
    MissingHost,
    #[error("Host {0:?} is not this daemon (see api.allowed_hosts)")]
    ForeignHost(String),
    #[error("requests from web pages are refused (Origin {0:?})")]
    ForeignOrigin(String),
    #[error("this needs the API token: send Authorization: Bearer <the token in api.token_file>")]
    NoToken,
    #[error("wrong API token")]
    WrongToken,
    #[error(
        "changes over TCP need a token and none is configured: set api.token_file, or use api.unix_socket"
    )]
    WritesNeedToken,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHost => StatusCode::BAD_REQUEST,
            Self::ForeignHost(_) | Self::ForeignOrigin(_) | Self::WritesNeedToken => {
                StatusCode::FORBIDDEN
            }
            Self::NoToken | Self::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }

    /// A short label for the refusal counter.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingHost => "missing_host",
            Self::ForeignHost(_) => "foreign_host",
            Self::ForeignOrigin(_) => "foreign_origin",
            Self::NoToken => "no_token",
            Self::WrongToken => "wrong_token",
            Self::WritesNeedToken => "writes_need_token",
        }
    }

    /// The labels of every refusal, for metrics.
    pub const LABELS: [&'static str; 6] = [
        "missing_host",
        "foreign_host",
        "foreign_origin",
        "no_token",
        "wrong_token",
        "writes_need_token",
    ];

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::NoToken => Some("Bearer realm=\"hotpool\""),
            Self::WrongToken => Some("Bearer realm=\"hotpool\", error=\"invalid_token\""),
            _ => None,
        }
    }
}

/// The checks, configured once from `[api]`.
#[derive(Clone, Debug)]
pub struct Guard {
    token: Option<Token>,
    reads: Reads,
    /// Host names every request may give, besides the connection's local address.
    names: Vec<String>,
}

impl Guard {
    pub fn new(settings: &ApiSettings) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(listen) = settings.listen {
            names.push(host_of(listen.ip()));
        }
        names.extend(settings.allowed_hosts.iter().cloned());
        names.dedup();
        Self {
            token: settings.token.clone(),
            reads: settings.reads,
            names,
        }
    }

    /// Checks one request's Host, Origin and credentials.
    pub fn check(
        &self,
        via: Via,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        // An absolute-form request target names the host instead of `Host` (RFC 9112 §3.2.2).
        let host = match uri.authority() {
            Some(authority) => authority.as_str().to_string(),
            None => headers
                .get(header::HOST)
                .ok_or(Refusal::MissingHost)?
                .to_str()
                .map_err(|_| Refusal::ForeignHost("(not text)".into()))?
                .to_string(),
        };
        if !self.is_us(via, &host, None) {
            return Err(Refusal::ForeignHost(host));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let ok = text
                .parse::<Uri>()
                .ok()
                .and_then(|u| {
                    let default_port = match u.scheme_str()? {
                        "http" => 80,
                        "https" => 443,
                        _ => return None,
                    };
                    let authority = u.authority()?.as_str().to_string();
                    Some(self.is_us(via, &authority, Some(default_port)))
                })
                .unwrap_or(false);
            if !ok {
                return Err(Refusal::ForeignOrigin(text));
            }
        }
        self.check_credentials(via, method, headers)
    }

    fn check_credentials(
        &self,
        via: Via,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        if via == Via::Unix {
            return Ok(());
        }
        let read = method == Method::GET || method == Method::HEAD;
        if read && self.reads == Reads::Open {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return if read {
                Ok(())
            } else {
                Err(Refusal::WritesNeedToken)
            };
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, credentials) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| credentials.trim())
            })
            .ok_or(Refusal::NoToken)?;
        if token.matches(presented.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::WrongToken)
        }
    }

    /// Whether `authority` (`host[:port]`) names this daemon on the connection `via`; a
    /// missing port is `default_port` (an Origin's scheme default) or not checked (Host).
    fn is_us(&self, via: Via, authority: &str, default_port: Option<u16>) -> bool {
        let Ok(a) = authority.parse::<Authority>() else {
            return false;
        };
        if authority.contains('@') {
            return false;
        }
        let host = a.host().trim_end_matches('.').to_ascii_lowercase();
        let local = match via {
            Via::Tcp { local } => Some(local),
            Via::Unix => None,
        };
        let port_ok = match (a.port_u16().or(default_port), local) {
            (Some(port), Some(local)) => port == local.port(),
            _ => true,
        };
        let name_ok =
            self.names.contains(&host) || local.is_some_and(|local| host == host_of(local.ip()));
        port_ok && name_ok
    }
}

/// An address as it appears in a Host header: `192.0.2.1`, `[2001:db8::1]`.
fn host_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn token() -> Token {
        Token::from_text("0123456789abcdef0123", std::path::Path::new("api.token")).unwrap()
    }

    fn guard(token: Option<Token>, reads: Reads, listen: &str) -> Guard {
        Guard::new(&ApiSettings {
            listen: Some(listen.parse().unwrap()),
            token,
            reads,
            allowed_hosts: vec!["dns1.example.net".into()],
            ..ApiSettings::default()
        })
    }

    fn tcp(local: &str) -> Via {
        Via::Tcp {
            local: local.parse().unwrap(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn check(
        g: &Guard,
        via: Via,
        method: Method,
        pairs: &[(&'static str, &str)],
    ) -> Result<(), Refusal> {
        g.check(
            via,
            &method,
            &Uri::from_static("/api/status"),
            &headers(pairs),
        )
    }

    #[test]
    fn host_must_name_this_daemon() {
        let g = guard(None, Reads::Open, "127.0.0.1:9153");
        let via = tcp("127.0.0.1:9153");
        for ok in [
            "127.0.0.1:9153",
            "127.0.0.1",
            "localhost:9153",
            "LOCALHOST",
            "[::1]:9153",
            "dns1.example.net:9153",
            "dns1.example.net.",
        ] {
            assert_eq!(check(&g, via, Method::GET, &[("host", ok)]), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9153",
            "127.0.0.1:80",
            "127.0.0.1.evil.example",
            "user@127.0.0.1:9153",
            "",
        ] {
            assert_eq!(
                check(&g, via, Method::GET, &[("host", bad)]),
                Err(Refusal::ForeignHost(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(check(&g, via, Method::GET, &[]), Err(Refusal::MissingHost));
        // A wildcard listener: the address the connection arrived at is accepted.
        let g = guard(Some(token()), Reads::Open, "0.0.0.0:9153");
        let via = tcp("192.0.2.7:9153");
        assert_eq!(
            check(&g, via, Method::GET, &[("host", "192.0.2.7:9153")]),
            Ok(())
        );
        assert!(check(&g, via, Method::GET, &[("host", "192.0.2.8:9153")]).is_err());
        let via = tcp("[2001:db8::7]:9153");
        assert_eq!(
            check(&g, via, Method::GET, &[("host", "[2001:db8::7]:9153")]),
            Ok(())
        );
        // An absolute-form target is checked instead of Host.
        let uri = Uri::from_static("http://evil.example/api/status");
        assert_eq!(
            g.check(
                via,
                &Method::GET,
                &uri,
                &headers(&[("host", "[2001:db8::7]:9153")])
            ),
            Err(Refusal::ForeignHost("evil.example".into()))
        );
    }

    #[test]
    fn foreign_origins_are_refused() {
        let g = guard(Some(token()), Reads::Open, "127.0.0.1:9153");
        let via = tcp("127.0.0.1:9153");
        let host = ("host", "127.0.0.1:9153");
        let auth = ("authorization", "Bearer 0123456789abcdef0123");
        for bad in [
            "http://evil.example",
            "https://evil.example:9153",
            "null",
            "http://127.0.0.1:8080",
            "http://127.0.0.1",
            "file://",
        ] {
            assert_eq!(
                check(&g, via, Method::POST, &[host, auth, ("origin", bad)]),
                Err(Refusal::ForeignOrigin(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            check(
                &g,
                via,
                Method::POST,
                &[host, auth, ("origin", "http://127.0.0.1:9153")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &g,
                via,
                Method::GET,
                &[host, ("origin", "http://evil.example")]
            ),
            Err(Refusal::ForeignOrigin("http://evil.example".into())),
            "reads too"
        );
        assert_eq!(
            check(
                &g,
                Via::Unix,
                Method::POST,
                &[("host", "localhost"), ("origin", "http://evil.example")]
            ),
            Err(Refusal::ForeignOrigin("http://evil.example".into())),
            "and over the socket"
        );
    }

    #[test]
    fn writes_need_the_token_over_tcp() {
        let g = guard(Some(token()), Reads::Open, "127.0.0.1:9153");
        let via = tcp("127.0.0.1:9153");
        let host = ("host", "127.0.0.1:9153");
        assert_eq!(check(&g, via, Method::GET, &[host]), Ok(()));
        assert_eq!(check(&g, via, Method::HEAD, &[host]), Ok(()));
        assert_eq!(check(&g, via, Method::POST, &[host]), Err(Refusal::NoToken));
        assert_eq!(
            check(&g, via, Method::DELETE, &[host]),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            check(
                &g,
                via,
                Method::POST,
                &[host, ("authorization", "Bearer nope-nope-nope-nope")]
            ),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            check(
                &g,
                via,
                Method::POST,
                &[
                    host,
                    ("authorization", "Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM=")
                ]
            ),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            check(
                &g,
                via,
                Method::POST,
                &[host, ("authorization", "bearer 0123456789abcdef0123")]
            ),
            Ok(())
        );
        assert_eq!(
            check(&g, Via::Unix, Method::POST, &[("host", "localhost")]),
            Ok(()),
            "the socket's permissions are the control"
        );
        assert_eq!(Refusal::NoToken.status(), StatusCode::UNAUTHORIZED);
        assert!(
            Refusal::WrongToken
                .challenge()
                .unwrap()
                .contains("invalid_token")
        );

        // Without a token, writes over TCP are impossible; reads stay open.
        let g = guard(None, Reads::Open, "127.0.0.1:9153");
        assert_eq!(
            check(&g, via, Method::POST, &[host]),
            Err(Refusal::WritesNeedToken)
        );
        assert_eq!(Refusal::WritesNeedToken.status(), StatusCode::FORBIDDEN);
        assert_eq!(check(&g, via, Method::GET, &[host]), Ok(()));

        // reads = "token": reads need it too.
        let g = guard(Some(token()), Reads::Token, "127.0.0.1:9153");
        assert_eq!(check(&g, via, Method::GET, &[host]), Err(Refusal::NoToken));
        assert_eq!(
            check(
                &g,
                via,
                Method::GET,
                &[host, ("authorization", "Bearer 0123456789abcdef0123")]
            ),
            Ok(())
        );
    }

    #[test]
    fn every_refusal_has_a_listed_label() {
        for r in [
            Refusal::MissingHost,
            Refusal::ForeignHost(String::new()),
            Refusal::ForeignOrigin(String::new()),
            Refusal::NoToken,
            Refusal::WrongToken,
            Refusal::WritesNeedToken,
        ] {
            assert!(Refusal::LABELS.contains(&r.label()), "{r}");
        }
    }
}
