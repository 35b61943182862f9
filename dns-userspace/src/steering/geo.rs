//! Steering by region: a `geo` pool's per-region policies, and the latency source each
//! region ranks `fastest` by.
//!
//! A `geo` pool defines its endpoints once (health per endpoint, shared by every region
//! that uses it); each region it lists runs its own policy over a subset of them, with its
//! own weights and priorities, and publishes its own answer, tagged with the region
//! ([`PoolAnswer::in_region`](crate::datapath::pools::PoolAnswer::in_region)). The
//! `default` region's entry is required: it answers every client no listed region claims.
//! A pool with another policy is one region, the default, over all its endpoints.

use std::fmt;

use crate::{geo::RegionId, steering::policy::Policy};

/// `policy = "geo"`.
pub const GEO_POLICY: &str = "geo";

/// The latency sources as the config names them (`latency = "..."`), in
/// [`LatencySource`]'s order.
pub const LATENCY_NAMES: &[&str] = &["probes", "rum", "blend"];

/// What a region's `fastest` ranks its endpoints by, and whether RUM availability counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LatencySource {
    /// The node's own probes (the default): RUM samples are not used.
    #[default]
    Probes,
    /// RUM samples only: an endpoint without fresh samples of the region is unmeasured.
    Rum,
    /// Per endpoint, the RUM latency where fresh samples of the region exist, the probes'
    /// otherwise.
    Blend,
}

impl LatencySource {
    /// The source named `name` (one of [`LATENCY_NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "probes" => Self::Probes,
            "rum" => Self::Rum,
            "blend" => Self::Blend,
            _ => return None,
        })
    }

    /// The name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Probes => "probes",
            Self::Rum => "rum",
            Self::Blend => "blend",
        }
    }

    /// RUM samples (latency and availability) are used.
    pub fn uses_rum(self) -> bool {
        self != Self::Probes
    }
}

impl fmt::Display for LatencySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One endpoint of a region's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionEndpoint {
    /// The endpoint's index in the pool's endpoints.
    pub index: usize,
    /// Its weight in this region (default: the pool endpoint's).
    pub weight: u32,
    /// Its priority in this region (default: its position in the region's list).
    pub priority: u32,
}

/// One region of a `geo` pool: `[pool.regions.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionPolicy {
    pub region: RegionId,
    /// The region's name (`default` for [`RegionId::DEFAULT`]).
    pub name: String,
    pub policy: Policy,
    pub latency: LatencySource,
    /// 1 to 8 of the pool's endpoints, in the region's order.
    pub endpoints: Vec<RegionEndpoint>,
}
