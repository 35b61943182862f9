//! The DNS side of the daemon, the packet path in userspace: what the XDP program passes up
//! arrives at the UDP/TCP [`server`], travels as a [`request::Request`] to the
//! [`authority`] (zones and pools, one query in, one response out) and goes back.
//!
//! * [`zone`]: an RFC 1035 zone file loaded and checked, with the lookups an authoritative
//!   server needs, and the `[[zone]]` settings;
//! * [`authority`]: the authoritative answer path;
//! * [`request`]: what travels with a query (client, transport, EDNS options);
//! * [`server`]: the UDP workers and TCP listeners and the `[server]` settings;
//! * [`cache`]: the UDP workers' answer cache;
//! * [`rrl`]: response rate limiting (`[rrl]`) and its table;
//! * [`local`]: this host's addresses, for the acceptance rules;
//! * [`stats`]: the server's counters.
//!
//! Also here: the rules every DNS name and TTL in the configuration follows
//! ([`parse_name`], [`MAX_TTL`]).

use std::str::FromStr as _;

use hickory_proto::rr::Name;

pub mod authority;
pub mod cache;
pub mod local;
pub mod request;
pub mod rrl;
pub mod server;
pub mod stats;
pub mod zone;

/// Largest TTL (RFC 2181 §8: the top bit of a TTL must be zero).
pub const MAX_TTL: u32 = i32::MAX as u32;

/// Why a configured name was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("{0:?} has an empty label")]
    EmptyLabel(String),
    #[error("{0:?} contains white space")]
    WhiteSpace(String),
    /// hickory-proto's reason.
    #[error("{0:?}: {1}")]
    Invalid(String, String),
    #[error("{0:?} is longer than 255 octets")]
    TooLong(String),
}

/// Parses a domain name from the config: with or without the trailing dot (always taken as
/// absolute), in any case (folded to lower case).
pub fn parse_name(text: &str) -> Result<Name, NameError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    if text.contains("..") {
        return Err(NameError::EmptyLabel(text.to_string()));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(NameError::WhiteSpace(text.to_string()));
    }
    let mut name =
        Name::from_str(text).map_err(|e| NameError::Invalid(text.to_string(), e.to_string()))?;
    name.set_fqdn(true);
    let name = name.to_lowercase();
    // The wire form (labels plus the root) is at most 255 octets.
    let wire_len = name.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    if wire_len > dns_common::MAX_NAME_LEN {
        return Err(NameError::TooLong(text.to_string()));
    }
    Ok(name)
}
