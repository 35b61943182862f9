//! Probing an endpoint once: each kind's exchange, measured as the module docs of
//! [`crate::steering::probe`] describe. Every error is judged by [`super::local`]: a
//! local failure is returned as such, never as the endpoint's failure.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};
use tokio::net::UdpSocket;

use crate::steering::{
    endpoint::EndpointAddress,
    health::ProbeOutcome,
    probe::{
        http,
        local::{self, Attempt, LocalFailure, Stage, connect},
        spec::{ProbeKind, ProbeSpec},
    },
};

/// What a probe is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The endpoint's address. Not used when `hostname` is set: the name is looked up at
    /// every probe (CDN names move).
    pub address: IpAddr,
    /// The endpoint's host name (CNAME pools), without the trailing dot. Also the default
    /// HTTP Host and TLS SNI.
    pub hostname: Option<Box<str>>,
}

impl ProbeTarget {
    /// The target for a configured endpoint.
    pub fn from_endpoint(address: &EndpointAddress) -> Self {
        match address {
            EndpointAddress::Ip(ip) => Self {
                address: *ip,
                hostname: None,
            },
            EndpointAddress::Host(name) => Self {
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                hostname: Some(name.to_ascii().trim_end_matches('.').into()),
            },
        }
    }
}

/// Probes `target` once as `spec` says.
pub async fn probe_once(spec: &ProbeSpec, target: &ProbeTarget) -> Attempt {
    Prober::default().probe(spec, target).await
}

/// ICMP clients (one socket per address family), shared by every job and opened on first
/// use.
#[derive(Default)]
pub(super) struct IcmpClients {
    v4: Mutex<Option<surge_ping::Client>>,
    v6: Mutex<Option<surge_ping::Client>>,
}

impl IcmpClients {
    pub(super) fn get(&self, v6: bool) -> std::io::Result<surge_ping::Client> {
        let slot = if v6 { &self.v6 } else { &self.v4 };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let kind = if v6 {
            surge_ping::ICMP::V6
        } else {
            surge_ping::ICMP::V4
        };
        let client = surge_ping::Client::new(&surge_ping::Config::builder().kind(kind).build())?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// Echo sequence numbers, unique across jobs sharing a socket (surge-ping refuses two
/// identical requests in flight, e.g. two pools probing the same address).
static ICMP_SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// Runs probes. One is shared by every job: it holds nothing per endpoint, only the ICMP
/// sockets (HTTP(S) probes share their TLS configuration through [`http`]).
#[derive(Default)]
pub struct Prober {
    icmp: IcmpClients,
}

impl Prober {
    /// Probes `target` once as `spec` says, within the spec's timeout.
    pub async fn probe(&self, spec: &ProbeSpec, target: &ProbeTarget) -> Attempt {
        let timeout = spec.timing.timeout;
        let address = match &target.hostname {
            None => target.address,
            Some(name) => match Box::pin(resolve(name, timeout)).await? {
                Ok(ip) => ip,
                Err(detail) => return Ok(ProbeOutcome::failure(detail)),
            },
        };
        let hostname = target.hostname.as_deref();
        // The bigger exchanges are boxed, so a probe's future is the size of what its kind
        // needs (a TCP probe waiting on a blackholed endpoint holds little).
        let result = match &spec.kind {
            ProbeKind::Http(h) => {
                let probe = Box::pin(http::probe(h, None, hostname, address));
                tokio::time::timeout(timeout, probe).await
            }
            ProbeKind::Https {
                http: h,
                tls_verify,
            } => {
                let probe = Box::pin(http::probe(h, Some(*tls_verify), hostname, address));
                tokio::time::timeout(timeout, probe).await
            }
            ProbeKind::Tcp { port } => {
                tokio::time::timeout(timeout, tcp(SocketAddr::new(address, *port))).await
            }
            ProbeKind::Icmp => match self.icmp.get(address.is_ipv6()) {
                Ok(client) => Ok(Box::pin(icmp(client, address, timeout)).await),
                Err(e) => {
                    let reason = local::local_reason(&e, Stage::Socket)
                        .unwrap_or(local::LocalReason::Socket);
                    let what =
                        format!("cannot open an ICMP socket: {}", first_line(&e.to_string()));
                    return Err(LocalFailure::new(reason, what));
                }
            },
            ProbeKind::Dns(d) => {
                let server = SocketAddr::new(address, d.port);
                tokio::time::timeout(timeout, Box::pin(dns(server, &d.qname, d.qtype))).await
            }
        };
        result.unwrap_or_else(|_| Ok(timed_out(timeout)))
    }
}

fn timed_out(timeout: Duration) -> ProbeOutcome {
    ProbeOutcome::failure(format!(
        "timeout after {}",
        humantime::format_duration(timeout)
    ))
}

/// Looks up a host-name endpoint (not part of the measured figure): the address, or the
/// endpoint's failure when the name does not resolve.
async fn resolve(name: &str, timeout: Duration) -> Result<Result<IpAddr, String>, LocalFailure> {
    Ok(
        match tokio::time::timeout(timeout, tokio::net::lookup_host((name, 0))).await {
            Err(_) => Err(format!(
                "cannot resolve {name}: timeout after {}",
                humantime::format_duration(timeout)
            )),
            Ok(Err(e)) => {
                let what = format!("cannot resolve {name}");
                Err(format!(
                    "{what}: {}",
                    local::classify(&e, Stage::Exchange, &what)?
                ))
            }
            Ok(Ok(mut addrs)) => addrs
                .next()
                .map(|a| a.ip())
                .ok_or_else(|| format!("cannot resolve {name}: no addresses")),
        },
    )
}

async fn tcp(addr: SocketAddr) -> Attempt {
    let start = Instant::now();
    match connect(addr).await {
        Ok(stream) => {
            let latency = start.elapsed();
            // Closed with a reset, as HAProxy closes its checks: no FIN exchange and no
            // TIME-WAIT socket left behind for every probe (20 000 a second at scale).
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
            Ok(ProbeOutcome::success(latency, "connected"))
        }
        Err((e, stage)) => local::classify(&e, stage, "connect").map(ProbeOutcome::failure),
    }
}

async fn icmp(client: surge_ping::Client, address: IpAddr, timeout: Duration) -> Attempt {
    let mut pinger = client
        .pinger(address, surge_ping::PingIdentifier(rand::random()))
        .await;
    pinger.timeout(timeout);
    let seq = surge_ping::PingSequence(ICMP_SEQUENCE.fetch_add(1, Ordering::Relaxed));
    Ok(match pinger.ping(seq, &[0u8; 16]).await {
        Ok((_, rtt)) => ProbeOutcome::success(rtt, "echo reply"),
        Err(surge_ping::SurgeError::Timeout { .. }) => timed_out(timeout),
        // The echo request is sent at once: what sending it says is about our side.
        Err(surge_ping::SurgeError::IOError(e)) => ProbeOutcome::failure(local::classify(
            &e,
            Stage::Connect { immediate: true },
            "sending the echo request",
        )?),
        Err(e) => ProbeOutcome::failure(format!("icmp: {e}")),
    })
}

async fn dns(server: SocketAddr, qname: &Name, qtype: RecordType) -> Attempt {
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| socket_failure(&e, "cannot open a UDP socket"))?;
    // A UDP connect only picks the route and the source: its errors are our side's.
    if let Err(e) = socket.connect(server).await {
        let detail = local::classify(&e, Stage::Connect { immediate: true }, "connect")?;
        return Ok(ProbeOutcome::failure(detail));
    }
    let id: u16 = rand::random();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(qname.clone(), qtype));
    let bytes = match query.to_vec() {
        Ok(b) => b,
        Err(e) => {
            return Ok(ProbeOutcome::failure(format!(
                "cannot encode the query: {e}"
            )));
        }
    };
    let start = Instant::now();
    if let Err(e) = socket.send(&bytes).await {
        let detail = local::classify(&e, Stage::Exchange, "sending the query")?;
        return Ok(ProbeOutcome::failure(detail));
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let detail = local::classify(&e, Stage::Exchange, "receiving the reply")?;
                return Ok(ProbeOutcome::failure(detail));
            }
        };
        let latency = start.elapsed();
        // Anything that is not the reply to our query (wrong id or question, garbage) is
        // ignored, as a resolver would.
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let answers_us = reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply.queries.len() == 1
            && reply.queries[0].name() == qname
            && reply.queries[0].query_type() == qtype;
        if !answers_us {
            continue;
        }
        let rcode = reply.metadata.response_code;
        let answers = reply.answers.len();
        return Ok(if rcode != ResponseCode::NoError {
            ProbeOutcome::failure(format!("DNS {}", rcode_name(rcode)))
        } else if answers == 0 {
            ProbeOutcome::failure("DNS NOERROR without an answer")
        } else {
            ProbeOutcome::success(
                latency,
                format!(
                    "DNS NOERROR, {answers} answer{}",
                    if answers == 1 { "" } else { "s" }
                ),
            )
        });
    }
}

/// A socket that could not be created or bound: always local.
fn socket_failure(e: &std::io::Error, what: &str) -> LocalFailure {
    let reason = local::local_reason(e, Stage::Socket).unwrap_or(local::LocalReason::Socket);
    LocalFailure::new(reason, format!("{what}: {e}"))
}

fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

pub(super) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
