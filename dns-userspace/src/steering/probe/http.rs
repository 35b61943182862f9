//! The `http` and `https` probes: one HTTP/1.1 request over a connection of their own.
//!
//! No HTTP client object per endpoint: the probe connects itself (so connect errors are
//! classified as [`super::local`] says), runs TLS with one of two shared rustls
//! configurations (verifying against the bundled Mozilla roots, or not), and speaks HTTP/1.1
//! with hyper's connection API. Everything a probe allocates is dropped with it, including
//! on a timeout: nothing outlives the probe's future.

use std::{
    error::Error as _,
    io,
    net::{IpAddr, SocketAddr},
    pin::pin,
    sync::{Arc, OnceLock},
    time::Instant,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{
    Request,
    header::{HOST, USER_AGENT as USER_AGENT_HEADER},
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, ClientConfig, DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::{CryptoProvider, ring},
        pki_types::{CertificateDer, ServerName, UnixTime},
    },
};

use crate::steering::{
    health::ProbeOutcome,
    probe::{
        local::{self, Attempt, LocalFailure, LocalReason, Stage, connect},
        spec::HttpProbe,
    },
};

/// The User-Agent of HTTP(S) probes.
pub const USER_AGENT: &str = concat!("hotpool/", env!("CARGO_PKG_VERSION"), " (health probe)");
/// Most body bytes read when looking for `body_contains`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the request is addressed to: the Host header and, over TLS, the server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HttpAddressing {
    /// The `Host` header.
    pub host_header: String,
    /// The TLS server name (SNI when it is a DNS name; an address is verified against the
    /// certificate's IP addresses and sends no SNI).
    pub server_name: ServerName<'static>,
}

impl HttpAddressing {
    /// The configured `host` (or else `hostname`, the endpoint's host name) with the
    /// scheme's default port left out of the header, as browsers do; an address as `host`
    /// only sets the header.
    pub fn new(http: &HttpProbe, tls: bool, hostname: Option<&str>, addr: SocketAddr) -> Self {
        let default_port = if tls { 443 } else { 80 };
        let with_port = |host: String| {
            if addr.port() == default_port {
                host
            } else {
                format!("{host}:{}", addr.port())
            }
        };
        let host = http
            .host
            .as_deref()
            .or(hostname)
            .map(|h| h.trim_end_matches('.'));
        let by_address = ServerName::IpAddress(addr.ip().into());
        match host {
            Some(h) if h.parse::<IpAddr>().is_ok() => Self {
                host_header: h.to_string(),
                server_name: by_address,
            },
            Some(h) => Self {
                host_header: with_port(h.to_string()),
                server_name: ServerName::try_from(h.to_string()).unwrap_or(by_address),
            },
            None => Self {
                host_header: with_port(url_ip(addr.ip())),
                server_name: by_address,
            },
        }
    }
}

fn url_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// An HTTP probe, or with `tls` (whether to verify the certificate) an HTTPS one, of the
/// endpoint at `address` (with `hostname` if it is a host-name endpoint). The caller bounds
/// it with the timeout.
pub(super) async fn probe(
    http: &HttpProbe,
    tls: Option<bool>,
    hostname: Option<&str>,
    address: IpAddr,
) -> Attempt {
    let addr = SocketAddr::new(address, http.port);
    let addressing = HttpAddressing::new(http, tls.is_some(), hostname, addr);
    let request = match Request::builder()
        .method(http.method.as_str())
        .uri(http.path.as_str())
        .header(HOST, addressing.host_header.as_str())
        .header(USER_AGENT_HEADER, USER_AGENT)
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return Ok(ProbeOutcome::failure(format!("invalid request: {e}"))),
    };
    let start = Instant::now();
    let stream = match connect(addr).await {
        Ok(s) => s,
        Err((e, stage)) => return local::classify(&e, stage, "connect").map(ProbeOutcome::failure),
    };
    match tls {
        None => exchange(http, stream, request, start).await,
        Some(verify) => {
            let connector = TlsConnector::from(tls_config(verify)?);
            // Boxed: a probe waiting for its TCP connect does not carry the TLS state.
            let handshake = Box::pin(connector.connect(addressing.server_name, stream));
            match handshake.await {
                Ok(tls) => Box::pin(exchange(http, tls, request, start)).await,
                Err(e) => local::classify(&e, Stage::Exchange, "TLS handshake")
                    .map(|_| ProbeOutcome::failure(format!("TLS handshake failed: {e}"))),
            }
        }
    }
}

/// Sends `request` on `io` and reads the response as `http` asks; the latency is from
/// `start` until the response headers.
async fn exchange<T>(
    http: &HttpProbe,
    io: T,
    request: Request<Empty<Bytes>>,
    start: Instant,
) -> Attempt
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(pair) => pair,
        Err(e) => return hyper_failure(&e, "request failed"),
    };
    let read = async {
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return hyper_failure(&e, "request failed"),
        };
        let latency = start.elapsed();
        let status = response.status().as_u16();
        if !http.expects(status) {
            return Ok(ProbeOutcome::failure(format!("HTTP {status}")));
        }
        let Some(needle) = &http.body_contains else {
            return Ok(ProbeOutcome::success(latency, format!("HTTP {status}")));
        };
        let mut body_stream = response.into_body();
        let mut body: Vec<u8> = Vec::new();
        loop {
            if contains(&body, needle.as_bytes()) {
                return Ok(ProbeOutcome::success(
                    latency,
                    format!("HTTP {status}, body matches"),
                ));
            }
            if body.len() >= BODY_LIMIT {
                break;
            }
            match body_stream.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        let room = BODY_LIMIT - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                None => break,
                Some(Err(e)) => {
                    return hyper_failure(&e, &format!("HTTP {status}, reading the body failed"));
                }
            }
        }
        Ok(ProbeOutcome::failure(format!(
            "HTTP {status}, body lacks {needle:?} (read {} bytes)",
            body.len()
        )))
    };
    // The connection is driven here, beside the exchange, rather than on a task of its
    // own: when the probe ends (or times out) the socket goes with it.
    let mut read = pin!(read);
    let mut conn = pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            attempt = &mut read => return attempt,
            // When the connection ends, the exchange learns why (or has its answer).
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A hyper error as the endpoint's failure, or a local one when a socket error says so.
fn hyper_failure(e: &hyper::Error, stage_name: &str) -> Attempt {
    let mut source = e.source();
    let mut innermost = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>()
            && io.get_ref().is_none()
        {
            return local::classify(io, Stage::Exchange, stage_name).map(ProbeOutcome::failure);
        }
        innermost = Some(s);
        source = s.source();
    }
    let cause = innermost.map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
    Ok(ProbeOutcome::failure(format!("{stage_name}: {cause}")))
}

/// The shared TLS configuration: verifying against the bundled Mozilla roots, or (`verify`
/// false) accepting any certificate while still checking the handshake's signatures.
fn tls_config(verify: bool) -> Result<Arc<ClientConfig>, LocalFailure> {
    static VERIFYING: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static ACCEPTING: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let slot = if verify { &VERIFYING } else { &ACCEPTING };
    slot.get_or_init(|| build_tls_config(verify).map(Arc::new))
        .clone()
        .map_err(|e| {
            LocalFailure::new(
                LocalReason::Socket,
                format!("cannot set up TLS for probes: {e}"),
            )
        })
}

fn build_tls_config(verify: bool) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if verify {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `tls_verify = false`: any certificate is accepted, but the handshake must still be
/// signed by the key of the certificate presented.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
