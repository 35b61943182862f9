//! A configured pool: its name, type and endpoints, how its answer is chosen and how its
//! endpoints are probed; and the answer it starts with.

use std::sync::Arc;

use hickory_proto::rr::{Name, RData, RecordType};

use crate::{
    datapath::pools::{PoolAnswer, Selection},
    steering::{
        endpoint::EndpointAddress,
        geo::{LatencySource, RegionEndpoint, RegionPolicy},
        health::AdminState,
        policy::{AllDown, Policy},
        probe::ProbeSpec,
    },
};

/// Default TTL of a pool's answers.
pub const DEFAULT_POOL_TTL: u32 = 30;

/// One `[[pool]]`: a name whose answer the daemon steers between endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Owner name (fully qualified, lower case).
    pub name: Name,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// TTL of the answer records, at most 2^31-1.
    pub ttl: u32,
    /// 1 to 8 endpoints, in config order.
    pub endpoints: Vec<EndpointSettings>,
    /// How the answer is chosen among the endpoints that are up; for a `geo` pool, its
    /// `default` region's policy (each region's is in [`PoolSettings::regions`]).
    pub policy: Policy,
    /// A `geo` pool's regions (`[pool.regions.<name>]`), by region id, `default` first;
    /// empty for every other pool.
    pub regions: Vec<RegionPolicy>,
    /// What is answered when no endpoint is up.
    pub all_down: AllDown,
    /// The pool's probe with defaults applied; `None`: no probes, every endpoint counts
    /// as up (operator pins still apply). Each endpoint's effective probe is in
    /// [`EndpointSettings::probe`]: this one, shared, where the endpoint overrides nothing.
    pub probe: Option<Arc<ProbeSpec>>,
    /// URL (http or https) every event of this pool is POSTed to.
    pub webhook: Option<String>,
}

/// One endpoint of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSettings {
    /// An address for A/AAAA pools, a host name for CNAME pools.
    pub address: EndpointAddress,
    /// Relative weight, at least 1. Default 1.
    pub weight: u32,
    /// Order for `failover` (lowest first). Default: the position in the list, from 0.
    pub priority: u32,
    /// Pinned up or down, or following the probes (the default). `state` in the file.
    pub admin: AdminState,
    /// The effective probe: the pool's with this endpoint's overrides; `None` when the
    /// pool has no probe. Without overrides it is the pool's own (one copy per pool, shared
    /// with the probe jobs, not one per endpoint).
    pub probe: Option<Arc<ProbeSpec>>,
}

impl EndpointSettings {
    /// The record data this endpoint answers with.
    pub fn rdata(&self) -> RData {
        self.address.rdata()
    }
}

impl PoolSettings {
    /// The pool has the `geo` policy: one answer per region it lists.
    pub fn is_geo(&self) -> bool {
        !self.regions.is_empty()
    }

    /// The policies the pool runs, one per answer: a `geo` pool's regions, or for every
    /// other pool one in the default region over all its endpoints.
    pub fn region_policies(&self) -> Vec<RegionPolicy> {
        if self.is_geo() {
            return self.regions.clone();
        }
        vec![RegionPolicy {
            region: crate::geo::RegionId::DEFAULT,
            name: crate::geo::DEFAULT_REGION.to_string(),
            policy: self.policy.clone(),
            latency: LatencySource::Probes,
            endpoints: self
                .endpoints
                .iter()
                .enumerate()
                .map(|(index, e)| RegionEndpoint {
                    index,
                    weight: e.weight,
                    priority: e.priority,
                })
                .collect(),
        }]
    }

    /// The answer the pool starts with, before any probe verdict: every endpoint, in
    /// config order (a CNAME pool its first: a CNAME is a singleton).
    pub fn initial_answer(&self) -> PoolAnswer {
        self.answer(
            self.endpoints.iter().map(EndpointSettings::rdata).collect(),
            Selection::All,
        )
    }

    /// An answer of this pool with `rdata` answered as `selection`.
    pub fn answer(&self, rdata: Vec<RData>, selection: Selection) -> PoolAnswer {
        PoolAnswer::new(self.name.clone(), self.rtype, self.ttl, rdata, selection)
    }
}
