//! What an endpoint answers with: an address (A and AAAA pools) or a host name (CNAME
//! pools), as written in the config and as record data.

use std::{fmt, net::IpAddr, str::FromStr as _};

use hickory_proto::rr::{
    Name, RData, RecordType,
    rdata::{A, AAAA, CNAME},
};

use crate::dns::{NameError, parse_name};

/// What an endpoint (or a fallback record) answers with.
///
/// The host name is boxed: a [`Name`] is 80 bytes in place, an address 17, and every
/// endpoint of an address pool would pay for the name's room otherwise (40 000 endpoints
/// are 3 MB of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointAddress {
    Ip(IpAddr),
    Host(Box<Name>),
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Host(name) => write!(f, "{name}"),
        }
    }
}

/// Why an address does not fit its pool.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointAddressError {
    #[error("pool {pool} has type A, so {text:?} must be an IPv4 address")]
    NotIpv4 { pool: Name, text: String },
    #[error("pool {pool} has type AAAA, so {text:?} must be an IPv6 address")]
    NotIpv6 { pool: Name, text: String },
    #[error("pool {pool} has type CNAME, so {text:?} must be a host name, not an address")]
    NotHostName { pool: Name, text: String },
    #[error("invalid CNAME target: {0}")]
    InvalidTarget(NameError),
    #[error("a CNAME target cannot be the root")]
    RootTarget,
    #[error("pool {pool} cannot be a CNAME to itself")]
    ToItself { pool: Name },
}

impl EndpointAddress {
    /// An endpoint or fallback address of pool `pool` of type `rtype`, as written in the
    /// config: an IPv4 address for A, an IPv6 address for AAAA, a host name other than the
    /// root and the pool itself for CNAME.
    pub fn parse(text: &str, pool: &Name, rtype: RecordType) -> Result<Self, EndpointAddressError> {
        let trimmed = text.trim();
        let owned = || (pool.clone(), trimmed.to_string());
        Ok(match rtype {
            RecordType::A => match IpAddr::from_str(trimmed) {
                Ok(ip @ IpAddr::V4(_)) => Self::Ip(ip),
                _ => {
                    let (pool, text) = owned();
                    return Err(EndpointAddressError::NotIpv4 { pool, text });
                }
            },
            RecordType::AAAA => match IpAddr::from_str(trimmed) {
                Ok(ip @ IpAddr::V6(_)) => Self::Ip(ip),
                _ => {
                    let (pool, text) = owned();
                    return Err(EndpointAddressError::NotIpv6 { pool, text });
                }
            },
            _ => {
                if IpAddr::from_str(trimmed).is_ok() {
                    let (pool, text) = owned();
                    return Err(EndpointAddressError::NotHostName { pool, text });
                }
                let target = parse_name(text).map_err(EndpointAddressError::InvalidTarget)?;
                if target.is_root() {
                    return Err(EndpointAddressError::RootTarget);
                }
                if &target == pool {
                    return Err(EndpointAddressError::ToItself { pool: pool.clone() });
                }
                Self::Host(Box::new(target))
            }
        })
    }

    /// The record data this address answers with: A, AAAA or CNAME.
    pub fn rdata(&self) -> RData {
        match self {
            Self::Ip(IpAddr::V4(ip)) => RData::A(A(*ip)),
            Self::Ip(IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
            Self::Host(name) => RData::CNAME(CNAME(Name::clone(name))),
        }
    }
}
