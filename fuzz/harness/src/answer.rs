//! The `answer` target: any octets as a query message to [`Authority::respond`] over UDP and
//! over TCP, with the fixed zone and pools of [`crate::world`].
//!
//! Checked for every input, besides "does not panic":
//! * a response comes back exactly when the input has a whole header and QR=0;
//! * it parses with hickory-proto, is a response (QR=1) with the query's ID and opcode;
//! * its question is the query's (name octet for octet, type, class) when the query parsed
//!   with one question, and absent otherwise; an undecodable query gets FORMERR (NOTIMP for
//!   other opcodes);
//! * it has an OPT record exactly when the query had one;
//! * over UDP it fits max(512, the client's EDNS size), 512 without EDNS; over TCP it is
//!   never truncated;
//! * a UDP response with TC=1 has no records, and the full (TCP) response would not have
//!   fit; one without TC=1 is the TCP response, at most without some additional records.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::OnceLock,
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::Record,
};
use hotpool::dns::{
    authority::Authority,
    request::{Request, Transport},
};

use crate::{Violation, world};

/// Where the queries come from.
pub const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), 53535);

/// Largest response without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_LIMIT: usize = 512;

fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    AUTHORITY.get_or_init(world::authority)
}

/// The `answer` target's body.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    let authority = authority();
    let udp = authority.respond(&Request::new(data, CLIENT, Transport::Udp));
    let tcp = authority.respond(&Request::new(data, CLIENT, Transport::Tcp));
    let answerable = data.len() >= 12 && data[2] & 0x80 == 0;
    let (udp, tcp) = match (udp, tcp) {
        (Some(udp), Some(tcp)) if answerable => (udp, tcp),
        (None, None) if !answerable => return Ok(()),
        (udp, tcp) => {
            return Err(Violation::new(format!(
                "a query with {} octets and QR={} got {} response(s) over UDP and {} over TCP",
                data.len(),
                data.get(2).map_or(0, |f| f >> 7),
                usize::from(udp.is_some()),
                usize::from(tcp.is_some()),
            )));
        }
    };
    let query = Message::from_vec(data).ok();
    let udp_msg = response_to(data, query.as_ref(), &udp, "UDP")?;
    let tcp_msg = response_to(data, query.as_ref(), &tcp, "TCP")?;

    let limit = udp_limit(query.as_ref());
    if udp.len() > limit {
        return Err(Violation::new(format!(
            "UDP response of {} octets over the client's limit of {limit}",
            udp.len()
        )));
    }
    if tcp_msg.metadata.truncation {
        return Err(Violation::new("TCP response with TC=1".into()));
    }
    if udp_msg.metadata.truncation {
        if !udp_msg.answers.is_empty()
            || !udp_msg.authorities.is_empty()
            || !udp_msg.additionals.is_empty()
        {
            return Err(Violation::new(format!(
                "truncated UDP response carries records: {udp_msg}"
            )));
        }
        if tcp.len() <= limit {
            return Err(Violation::new(format!(
                "UDP response truncated although the full one ({} octets) fits {limit}",
                tcp.len()
            )));
        }
    } else {
        let same = udp_msg.metadata == tcp_msg.metadata
            && udp_msg.queries == tcp_msg.queries
            && udp_msg.answers == tcp_msg.answers
            && udp_msg.authorities == tcp_msg.authorities
            && udp_msg.edns == tcp_msg.edns
            && is_subsequence(&udp_msg.additionals, &tcp_msg.additionals);
        if !same {
            return Err(Violation::new(format!(
                "UDP and TCP responses differ beyond dropped additional records\n udp: {udp_msg}\n tcp: {tcp_msg}"
            )));
        }
    }
    Ok(())
}

/// The checks every response to `data` passes, whatever the transport.
fn response_to(
    data: &[u8],
    query: Option<&Message>,
    response: &[u8],
    transport: &str,
) -> Result<Message, Violation> {
    let bad = |what: String| Violation::new(format!("{transport} response: {what}"));
    let msg = Message::from_vec(response)
        .map_err(|e| bad(format!("does not parse: {e} ({response:02x?})")))?;
    // The header, from the octets (no decoder between).
    if response.len() < 12 || response[..2] != data[..2] {
        return Err(bad("ID not echoed".into()));
    }
    if response[2] & 0x80 == 0 || response[2] & 0x78 != data[2] & 0x78 {
        return Err(bad(format!(
            "not a response with the query's opcode (flags {:02x}, query {:02x})",
            response[2], data[2]
        )));
    }
    match query {
        Some(q) if q.queries.len() == 1 => {
            let (asked, echoed) = (&q.queries[0], msg.queries.first());
            let same = echoed.is_some_and(|e| {
                msg.queries.len() == 1
                    && e.name().eq_case(asked.name())
                    && e.query_type() == asked.query_type()
                    && e.query_class() == asked.query_class()
            });
            if !same {
                return Err(bad(format!(
                    "question {:?} not echoed as sent: {:?}",
                    asked, msg.queries
                )));
            }
        }
        _ if !msg.queries.is_empty() => {
            return Err(bad(format!(
                "a question in the response to a query without one: {:?}",
                msg.queries
            )));
        }
        _ => {}
    }
    match query {
        None => {
            let want = if data[2] & 0x78 == 0 {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            if msg.metadata.response_code != want {
                return Err(bad(format!(
                    "{} to an undecodable query, not {want}",
                    msg.metadata.response_code
                )));
            }
        }
        Some(q) if q.edns.is_some() != msg.edns.is_some() => {
            return Err(bad(format!(
                "OPT record {} although the query {} one",
                if msg.edns.is_some() {
                    "present"
                } else {
                    "missing"
                },
                if q.edns.is_some() { "had" } else { "had none" },
            )));
        }
        Some(_) => {}
    }
    Ok(msg)
}

/// The largest UDP response for `query`: 512 octets without EDNS (and for a query that does
/// not parse), else max(512, the client's payload size).
fn udp_limit(query: Option<&Message>) -> usize {
    match query.and_then(|q| q.edns.as_ref()) {
        Some(e) => usize::from(e.max_payload()).max(PLAIN_UDP_LIMIT),
        None => PLAIN_UDP_LIMIT,
    }
}

/// Whether `part` is `whole` with some records left out (order kept).
fn is_subsequence(part: &[Record], whole: &[Record]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|r| rest.any(|w| w == r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bounded, mutate, rng::Rng, seeds};

    #[test]
    fn seeds_pass() {
        for q in seeds::queries() {
            check(&q).unwrap_or_else(|v| panic!("{q:02x?}: {v}"));
        }
    }

    /// The checks catch what they are for.
    #[test]
    fn the_checks_fail_on_wrong_responses() {
        let q = seeds::QuerySpec::new("www.example.test.", 1).bytes();
        let query = Message::from_vec(&q).unwrap();
        let good = authority()
            .respond(&Request::new(&q, CLIENT, Transport::Udp))
            .unwrap();
        response_to(&q, Some(&query), &good, "UDP").unwrap();
        let mut wrong_id = good.clone();
        wrong_id[1] ^= 1;
        assert!(response_to(&q, Some(&query), &wrong_id, "UDP").is_err());
        let mut not_response = good.clone();
        not_response[2] &= 0x7f;
        assert!(response_to(&q, Some(&query), &not_response, "UDP").is_err());
        let mut upper = good.clone();
        upper[13] = b'W';
        assert!(response_to(&q, Some(&query), &upper, "UDP").is_err());
        assert!(response_to(&q, Some(&query), &good[..good.len() - 1], "UDP").is_err());
        assert_eq!(udp_limit(None), 512);
    }

    /// Generated queries and mutations of them, a few thousand.
    #[test]
    fn bounded_run() {
        let seeds = seeds::queries();
        let tokens: [&[u8]; 4] = [
            &[0xc0, 0x0c],
            &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0],
            &[63],
            &[0],
        ];
        bounded::run(
            "answer",
            4000,
            |rng: &mut Rng| {
                let base = if rng.percent(50) {
                    rng.pick(&seeds).clone()
                } else {
                    seeds::QuerySpec::random(rng).bytes()
                };
                if rng.percent(10) {
                    base
                } else {
                    mutate::mutate(rng, &base, &tokens, 4, 1024)
                }
            },
            check,
        );
    }
}
