//! A minimal DNS client over std sockets (UDP and TCP, RFC 7766 framing), using
//! hickory-proto for the messages.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType},
    serialize::binary::{BinDecodable, BinEncodable},
};

/// The addresses of a reply's answer records, in order; panics on any other record (the
/// tests that call it ask for A records of pools).
pub fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0,
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

/// A query with a random ID (and, optionally, EDNS).
pub fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (n ^ (n >> 16)) as u16
}

/// Sends `q` over UDP and waits up to `timeout` for the response with its ID.
pub fn udp(server: SocketAddr, q: &Message, timeout: Duration) -> std::io::Result<Message> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send_to(&q.to_bytes().map_err(std::io::Error::other)?, server)?;
    let mut buf = [0u8; 65535];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        if from != server {
            continue;
        }
        let m = Message::from_bytes(&buf[..n]).map_err(std::io::Error::other)?;
        if m.metadata.id == q.metadata.id {
            return Ok(m);
        }
    }
}

/// Sends `q` over TCP and reads one response.
pub fn tcp(server: SocketAddr, q: &Message, timeout: Duration) -> std::io::Result<Message> {
    let mut s = TcpStream::connect_timeout(&server, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let wire = q.to_bytes().map_err(std::io::Error::other)?;
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    s.write_all(&framed)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Message::from_bytes(&buf).map_err(std::io::Error::other)
}
