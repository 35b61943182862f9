//! What travels with a query through the answer path: the message bytes, who sent them,
//! how, and (once the message is parsed) its EDNS options. Geo steering (the client's
//! subnet) and rate limiting (the client, the cookie) hang off this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use dns_common::ecs::{self, Ecs};

use crate::geo::{RegionId, RegionTable};

use hickory_proto::{
    op::Edns,
    rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
};

/// Largest UDP response without EDNS (RFC 1035 §4.2.1).
pub const PLAIN_UDP_LIMIT: u16 = dns_common::PLAIN_UDP_LIMIT as u16;

/// How the query arrived, which decides the size limit of the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// A query as a server received it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The DNS message.
    pub message: &'a [u8],
    /// Where it came from.
    pub client: SocketAddr,
    /// The local address it was sent to, when known (a socket bound to a wildcard address
    /// does not know which of its addresses a datagram was sent to).
    pub local: Option<SocketAddr>,
    pub transport: Transport,
    /// Answer with header and question only and TC=1, whatever the answer's size: a
    /// rate-limited answer that slips (the client retries over TCP).
    pub truncated: bool,
}

impl<'a> Request<'a> {
    /// `message` from `client` over `transport`, local address unknown.
    pub fn new(message: &'a [u8], client: SocketAddr, transport: Transport) -> Self {
        Self {
            message,
            client,
            local: None,
            transport,
            truncated: false,
        }
    }

    /// The same request, sent to `local`.
    pub fn with_local(self, local: SocketAddr) -> Self {
        Self {
            local: Some(local),
            ..self
        }
    }

    /// The same request, to be answered truncated (see [`Request::truncated`]).
    pub fn truncate(self) -> Self {
        Self {
            truncated: true,
            ..self
        }
    }
}

/// A request once its message is parsed: what the lookup sees.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub request: &'a Request<'a>,
    /// The query's OPT record, if it had one.
    pub edns: Option<&'a Edns>,
    /// Its ECS option, parsed from the message's own octets with the kernel's rules
    /// ([`dns_common::ecs`]).
    pub ecs: Ecs,
    /// Client address → region (none: every client is in the default region).
    pub regions: Option<&'a RegionTable>,
}

impl<'a> Context<'a> {
    pub fn new(request: &'a Request<'a>, edns: Option<&'a Edns>) -> Self {
        let ecs = match edns {
            Some(_) => ecs::opt_rdata(request.message).map_or(Ecs::None, ecs::parse_options),
            None => Ecs::None,
        };
        Self {
            request,
            edns,
            ecs,
            regions: None,
        }
    }

    /// The same context, mapping clients to regions with `regions`.
    pub fn with_regions(self, regions: &'a RegionTable) -> Self {
        Self {
            regions: Some(regions),
            ..self
        }
    }

    /// The client's region and the ECS SCOPE PREFIX-LENGTH an answer that depends on it
    /// carries: by the ECS option's ADDRESS when the query has a valid one with a SOURCE
    /// PREFIX-LENGTH above 0 (scope: the length of the region prefix holding it), else by
    /// the source address (scope 0, RFC 7871 §7.1.2). The kernel's rule (`dns-ebpf`).
    pub fn region(&self) -> (RegionId, u8) {
        let Some(table) = self.regions else {
            return (RegionId::DEFAULT, 0);
        };
        match self.ecs {
            Ecs::Subnet { subnet, .. } if subnet.source > 0 => {
                let a = subnet.address;
                let addr = if subnet.is_v6() {
                    IpAddr::V6(Ipv6Addr::from(a))
                } else {
                    IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                };
                table.lookup(addr)
            }
            _ => (table.lookup(self.request.client.ip()).0, 0),
        }
    }

    /// The client's address.
    pub fn client(&self) -> SocketAddr {
        self.request.client
    }

    pub fn transport(&self) -> Transport {
        self.request.transport
    }

    /// The EDNS Client Subnet option (RFC 7871), if the query carried one.
    pub fn client_subnet(&self) -> Option<ClientSubnet> {
        match self.edns?.option(EdnsCode::Subnet)? {
            EdnsOption::Subnet(subnet) => Some(*subnet),
            _ => None,
        }
    }

    /// The DNS Cookie option (RFC 7873): the client cookie, followed by the server cookie
    /// when the client has one.
    pub fn cookie(&self) -> Option<&'a [u8]> {
        match self.edns?.option(EdnsCode::Cookie)? {
            EdnsOption::Unknown(_, bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The largest response the client takes: any size over TCP; over UDP 512 octets
    /// without EDNS, else max(512, its EDNS payload size).
    pub fn size_limit(&self) -> u16 {
        match self.request.transport {
            Transport::Udp => self
                .edns
                .map_or(PLAIN_UDP_LIMIT, |e| e.max_payload().max(PLAIN_UDP_LIMIT)),
            Transport::Tcp => u16::MAX,
        }
    }

    /// The largest response we send a server configured for `ours` (`edns_udp_size`): any
    /// size over TCP; over UDP the smaller of the client's limit and ours
    /// ([`dns_common::size::max_reply`], the kernel's rule too).
    pub fn reply_limit(&self, ours: u16) -> u16 {
        match self.request.transport {
            Transport::Udp => {
                let limit = dns_common::size::max_reply(self.edns.map(Edns::max_payload), ours);
                u16::try_from(limit).unwrap_or(u16::MAX)
            }
            Transport::Tcp => u16::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RecordType},
    };

    use super::*;

    const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 53535);

    #[test]
    fn the_context_carries_the_client_transport_and_edns_options() {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("www.example.test.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1400);
        let subnet = ClientSubnet::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24, 0);
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
        let cookie = [1, 2, 3, 4, 5, 6, 7, 8];
        edns.options_mut().insert(EdnsOption::Unknown(
            u16::from(EdnsCode::Cookie),
            cookie.to_vec(),
        ));
        q.set_edns(edns);
        let bytes = q.to_vec().unwrap();

        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)), 53);
        let request = Request::new(&bytes, CLIENT, Transport::Udp).with_local(local);
        let parsed = Message::from_vec(request.message).unwrap();
        let ctx = Context::new(&request, parsed.edns.as_ref());
        assert_eq!(ctx.client(), CLIENT);
        assert_eq!(ctx.request.local, Some(local));
        assert_eq!(ctx.transport(), Transport::Udp);
        assert_eq!(ctx.client_subnet(), Some(subnet));
        assert_eq!(ctx.cookie(), Some(&cookie[..]));
        assert_eq!(ctx.size_limit(), 1400);
        assert_eq!(ctx.reply_limit(1232), 1232);
        assert_eq!(ctx.reply_limit(4096), 1400);

        let tcp = Request::new(&bytes, CLIENT, Transport::Tcp);
        assert_eq!(Context::new(&tcp, None).size_limit(), u16::MAX);
        let plain = Context::new(&request, None);
        assert_eq!(
            (plain.client_subnet(), plain.cookie(), plain.size_limit()),
            (None, None, 512)
        );
    }
}
