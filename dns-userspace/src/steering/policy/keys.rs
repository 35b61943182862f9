//! A pool's policy keys from the config (`policy`, `count`, `deviation`, `hysteresis`,
//! `all_down`, `fallback`, and the endpoints' priorities), validated into a [`Policy`] and
//! an [`AllDown`].

use dns_common::MAX_ANSWER_RRS;
use hickory_proto::rr::{Name, RecordType};

use crate::{
    datapath::pools::answer_limit,
    steering::{
        endpoint::EndpointAddress,
        policy::{AllDown, MAX_PERCENT, Policy},
    },
};

/// A pool's policy keys as written in the config (`policy`, `count`, `deviation`,
/// `hysteresis`, `all_down`, `fallback`); names are among [`POLICY_NAMES`](super::POLICY_NAMES) and
/// [`ALL_DOWN_NAMES`](super::ALL_DOWN_NAMES).
#[derive(Clone, Debug, Default)]
pub struct PolicyKeys<'a> {
    pub policy: Option<&'a str>,
    pub count: Option<usize>,
    pub deviation: Option<u32>,
    pub hysteresis: Option<u32>,
    pub all_down: Option<&'a str>,
    pub fallback: Option<Vec<&'a str>>,
}

/// The key a [`PolicyError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKey {
    Policy,
    Count,
    Deviation,
    Hysteresis,
    AllDown,
    /// The `fallback` list as a whole.
    Fallback,
    /// One entry of the `fallback` list.
    FallbackItem(usize),
    /// The priority of endpoint `i` (its position when the priority is the default).
    Priority(usize),
}

/// A pool's policy keys do not make sense together, or one is out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct PolicyError {
    pub key: PolicyKey,
    pub problem: String,
}

fn policy_error(key: PolicyKey, problem: impl Into<String>) -> PolicyError {
    PolicyError {
        key,
        problem: problem.into(),
    }
}

impl Policy {
    /// The policy and the all-down behaviour of pool `pool` (of type `rtype`, probed or
    /// not) from its keys. Without keys: `fastest` for a probed pool or a CNAME pool,
    /// `all-healthy` otherwise (no probes, no latencies to be fastest by), failing open.
    pub fn from_keys(
        keys: &PolicyKeys<'_>,
        pool: &Name,
        rtype: RecordType,
        probed: bool,
    ) -> Result<(Policy, AllDown), PolicyError> {
        let one_record = answer_limit(rtype) == 1;
        let fastest_keys =
            keys.count.is_some() || keys.deviation.is_some() || keys.hysteresis.is_some();
        let mut policy = match keys.policy {
            Some(name) => Self::from_name(name)?,
            None if !probed && !fastest_keys && !one_record => Self::AllHealthy,
            None => Self::default(),
        };
        if keys.policy.is_some() && policy == Self::AllHealthy && one_record {
            return Err(policy_error(
                PolicyKey::Policy,
                format!(
                    "pool {pool} is a CNAME, which answers one record; all-healthy needs an A or AAAA pool"
                ),
            ));
        }
        let name = policy.name();
        let fastest_only = |key: PolicyKey, text: &str| {
            policy_error(
                key,
                format!(
                    "{text} only applies to policy \"fastest\", and pool {pool} has policy {name:?}"
                ),
            )
        };
        if let Policy::Fastest {
            count,
            deviation_pct,
            hysteresis_pct,
        } = &mut policy
        {
            if let Some(n) = keys.count {
                if !(1..=MAX_ANSWER_RRS).contains(&n) {
                    return Err(policy_error(
                        PolicyKey::Count,
                        format!("count {n} is out of range 1..={MAX_ANSWER_RRS}"),
                    ));
                }
                if n > answer_limit(rtype) {
                    return Err(policy_error(
                        PolicyKey::Count,
                        format!(
                            "pool {pool} is a CNAME, which answers one record; count must be 1"
                        ),
                    ));
                }
                *count = n;
            }
            for (key, text, value, out) in [
                (
                    PolicyKey::Deviation,
                    "deviation",
                    keys.deviation,
                    deviation_pct,
                ),
                (
                    PolicyKey::Hysteresis,
                    "hysteresis",
                    keys.hysteresis,
                    hysteresis_pct,
                ),
            ] {
                let Some(pct) = value else { continue };
                if pct > MAX_PERCENT {
                    return Err(policy_error(
                        key,
                        format!("{text} {pct}% is larger than {MAX_PERCENT}%"),
                    ));
                }
                *out = pct;
            }
        } else {
            for (key, text, given) in [
                (PolicyKey::Count, "count", keys.count.is_some()),
                (PolicyKey::Deviation, "deviation", keys.deviation.is_some()),
                (
                    PolicyKey::Hysteresis,
                    "hysteresis",
                    keys.hysteresis.is_some(),
                ),
            ] {
                if given {
                    return Err(fastest_only(key, text));
                }
            }
        }
        let all_down = match (keys.all_down, &keys.fallback) {
            (Some("fallback"), Some(list)) => AllDown::Fallback(fallback(list, pool, rtype)?),
            (Some("fallback"), None) => {
                return Err(policy_error(
                    PolicyKey::AllDown,
                    format!(
                        "pool {pool} has all_down = \"fallback\" but no fallback = [...] addresses"
                    ),
                ));
            }
            (_, Some(_)) => {
                return Err(policy_error(
                    PolicyKey::Fallback,
                    format!(
                        "pool {pool} has fallback addresses, but they are only used with all_down = \"fallback\""
                    ),
                ));
            }
            (Some(name), None) => AllDown::from_name(name)?,
            (None, None) => AllDown::FailOpen,
        };
        Ok((policy, all_down))
    }

    /// The policy named `name` (one of [`POLICY_NAMES`](super::POLICY_NAMES)) with its
    /// default knobs.
    fn from_name(name: &str) -> Result<Self, PolicyError> {
        Ok(match name {
            "fastest" => Self::default(),
            "weighted" => Self::Weighted,
            "failover" => Self::Failover,
            "all-healthy" => Self::AllHealthy,
            other => {
                return Err(policy_error(
                    PolicyKey::Policy,
                    format!("unknown policy {other:?}"),
                ));
            }
        })
    }

    /// Failover orders endpoints by priority, so two with the same priority are an error;
    /// `endpoints` are (address, priority) in config order. Other policies accept repeats.
    pub fn check_priorities(
        &self,
        pool: &Name,
        endpoints: &[(&EndpointAddress, u32)],
    ) -> Result<(), PolicyError> {
        match self {
            Self::Failover => {}
            Self::Fastest { .. } | Self::Weighted | Self::AllHealthy => return Ok(()),
        }
        for (i, (address, priority)) in endpoints.iter().enumerate() {
            if let Some((first, _)) = endpoints[..i].iter().find(|(_, p)| p == priority) {
                return Err(policy_error(
                    PolicyKey::Priority(i),
                    format!(
                        "pool {pool}: endpoints {first} and {address} both have priority {priority}; failover needs distinct priorities"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl AllDown {
    /// `fail-open` or `servfail` (`fallback` comes with its addresses).
    fn from_name(name: &str) -> Result<Self, PolicyError> {
        match name {
            "fail-open" => Ok(Self::FailOpen),
            "servfail" => Ok(Self::Servfail),
            other => Err(policy_error(
                PolicyKey::AllDown,
                format!("unknown all_down {other:?}"),
            )),
        }
    }
}

/// The `fallback` addresses of pool `pool`: 1 to [`answer_limit`] of them, each valid for
/// the pool's type, none twice.
fn fallback(
    list: &[&str],
    pool: &Name,
    rtype: RecordType,
) -> Result<Vec<EndpointAddress>, PolicyError> {
    let most = answer_limit(rtype);
    if list.is_empty() || list.len() > most {
        return Err(policy_error(
            PolicyKey::Fallback,
            format!(
                "pool {pool} has {} fallback addresses; give 1 to {most}",
                list.len()
            ),
        ));
    }
    let mut addresses = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let address = EndpointAddress::parse(text, pool, rtype)
            .map_err(|e| policy_error(PolicyKey::FallbackItem(i), e.to_string()))?;
        if addresses.contains(&address) {
            return Err(policy_error(
                PolicyKey::FallbackItem(i),
                format!("pool {pool} lists fallback {address} twice"),
            ));
        }
        addresses.push(address);
    }
    Ok(addresses)
}
