//! The file format: serde structs of the TOML file as written, with the byte spans that
//! errors are located by. Values keep the file's types (strings for durations, names and
//! addresses); `parse` turns them into the domains' types.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, EnumAccess, VariantAccess as _, Visitor},
};
use toml::Spanned;

use crate::{
    api::settings::Reads,
    datapath::{ebpf::AttachMode, heartbeat::OnStale},
    steering::{
        geo::LATENCY_NAMES,
        health::AdminState,
        policy::{ALL_DOWN_NAMES, POLICY_NAMES, POOL_POLICY_NAMES},
        probe::KIND_NAMES,
    },
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: Option<RawServer>,
    #[serde(default)]
    pub(super) xdp: Option<RawXdp>,
    #[serde(default)]
    pub(super) zone: Vec<Spanned<RawZone>>,
    #[serde(default)]
    pub(super) pool: Vec<Spanned<RawPool>>,
    #[serde(default)]
    pub(super) events: Option<RawEvents>,
    #[serde(default)]
    pub(super) probes: Option<RawProbes>,
    #[serde(default)]
    pub(super) state: Option<RawState>,
    #[serde(default)]
    pub(super) api: Option<RawApi>,
    #[serde(default)]
    pub(super) rrl: Option<RawRrl>,
    #[serde(default)]
    pub(super) regions: Option<RawRegions>,
}

/// `[regions]`: `database = "..."` and one `[regions.<name>]` table per region, in file
/// order (the order gives the region ids).
#[derive(Default)]
pub(super) struct RawRegions {
    pub(super) database: Option<Spanned<String>>,
    pub(super) regions: Vec<(Spanned<String>, RawRegion)>,
}

impl<'de> Deserialize<'de> for RawRegions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Regions;
        impl<'de> Visitor<'de> for Regions {
            type Value = RawRegions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of regions (and database = \"...\")")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawRegions, A::Error> {
                let mut out = RawRegions::default();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    if key.get_ref() == "database" {
                        out.database = Some(map.next_value()?);
                    } else {
                        out.regions.push((key, map.next_value()?));
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Regions)
    }
}

/// `[regions.<name>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegion {
    pub(super) networks: Option<Vec<Spanned<String>>>,
    pub(super) files: Option<Vec<Spanned<String>>>,
    pub(super) countries: Option<Vec<Spanned<String>>>,
    pub(super) continents: Option<Vec<Spanned<String>>>,
}

/// `[pool.regions.<name>]`: a region's policy in a `geo` pool.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoolRegion {
    pub(super) policy: Option<Spanned<Keyword<PolicyNames>>>,
    pub(super) endpoints: Spanned<Vec<Spanned<RawRegionEndpoint>>>,
    pub(super) count: Option<Spanned<usize>>,
    pub(super) deviation: Option<Spanned<u32>>,
    pub(super) hysteresis: Option<Spanned<u32>>,
    pub(super) latency: Option<Spanned<Keyword<LatencyNames>>>,
}

/// An endpoint of a region: its address as the pool writes it, or
/// `{ address = "...", weight = 9, priority = 1 }`.
pub(super) struct RawRegionEndpoint {
    pub(super) address: String,
    pub(super) weight: Option<u32>,
    pub(super) priority: Option<u32>,
}

impl<'de> Deserialize<'de> for RawRegionEndpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            address: String,
            weight: Option<u32>,
            priority: Option<u32>,
        }
        struct Item;
        impl<'de> Visitor<'de> for Item {
            type Value = RawRegionEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an endpoint address of the pool, or { address = \"...\", weight = ..., priority = ... }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRegionEndpoint, E> {
                Ok(RawRegionEndpoint {
                    address: v.to_string(),
                    weight: None,
                    priority: None,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawRegionEndpoint, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRegionEndpoint {
                    address: t.address,
                    weight: t.weight,
                    priority: t.priority,
                })
            }
        }
        deserializer.deserialize_any(Item)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) path: Option<Spanned<String>>,
    pub(super) max_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) unix_socket: Option<Spanned<String>>,
    pub(super) unix_socket_mode: Option<Spanned<u32>>,
    pub(super) unix_socket_group: Option<Spanned<String>>,
    pub(super) reads: Option<Spanned<Reads>>,
    pub(super) allowed_hosts: Option<Vec<Spanned<String>>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) header_timeout: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) max_body_bytes: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRrl {
    pub(super) responses_per_second: Option<Spanned<u32>>,
    pub(super) window: Option<Spanned<u32>>,
    pub(super) slip: Option<Spanned<u32>>,
    pub(super) ipv4_prefix_length: Option<Spanned<u8>>,
    pub(super) ipv6_prefix_length: Option<Spanned<u8>>,
    pub(super) exempt_clients: Option<Vec<Spanned<String>>>,
    pub(super) table_size: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) log: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    pub(super) max_concurrent: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) edns_udp_size: Option<Spanned<u16>>,
    pub(super) udp_workers: Option<Spanned<usize>>,
    pub(super) answer_cache_size: Option<Spanned<usize>>,
    pub(super) udp_receive_buffer: Option<Spanned<usize>>,
    pub(super) tcp_idle_timeout: Option<Spanned<String>>,
    pub(super) tcp_message_timeout: Option<Spanned<String>>,
    pub(super) tcp_max_lifetime: Option<Spanned<String>>,
    pub(super) tcp_max_connections: Option<Spanned<usize>>,
    pub(super) tcp_max_connections_per_client: Option<Spanned<usize>>,
    pub(super) pin_path: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXdp {
    pub(super) interfaces: Option<Vec<Spanned<String>>>,
    pub(super) mode: Option<Spanned<AttachMode>>,
    pub(super) stale: Option<Spanned<String>>,
    pub(super) on_stale: Option<Spanned<OnStale>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    pub(super) origin: Spanned<String>,
    pub(super) file: Spanned<String>,
    pub(super) soa: Option<Spanned<RawSoa>>,
    pub(super) ns: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) ns_ttl: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoa {
    pub(super) mname: Spanned<String>,
    pub(super) rname: Spanned<String>,
    pub(super) serial: Option<u32>,
    pub(super) refresh: Option<Spanned<u32>>,
    pub(super) retry: Option<Spanned<u32>>,
    pub(super) expire: Option<Spanned<u32>>,
    pub(super) minimum: Option<Spanned<u32>>,
    pub(super) ttl: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) rtype: Spanned<String>,
    pub(super) ttl: Option<Spanned<u32>>,
    pub(super) endpoints: Spanned<Vec<Spanned<RawEndpoint>>>,
    pub(super) policy: Option<Spanned<Keyword<PoolPolicyNames>>>,
    pub(super) count: Option<Spanned<usize>>,
    pub(super) deviation: Option<Spanned<u32>>,
    pub(super) hysteresis: Option<Spanned<u32>>,
    /// A `geo` pool's regions, by name.
    pub(super) regions: Option<std::collections::BTreeMap<Spanned<String>, RawPoolRegion>>,
    pub(super) all_down: Option<Spanned<Keyword<AllDownNames>>>,
    pub(super) fallback: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) webhook: Option<Spanned<String>>,
    pub(super) probe: Option<Spanned<RawProbe>>,
}

/// A keyword of a closed set (policy names, ...): deserialized like a unit-only enum, so a
/// value outside the set is reported by serde as an unknown variant at its position, while
/// the set itself belongs to the module whose keyword it is.
pub(super) struct Keyword<K>(&'static str, PhantomData<K>);

impl<K> Clone for Keyword<K> {
    fn clone(&self) -> Self {
        Self(self.0, PhantomData)
    }
}

/// A set of keywords: the names a [`Keyword`] accepts.
pub(super) trait Keywords {
    /// What the keyword names, for serde's messages.
    const WHAT: &'static str;
    const NAMES: &'static [&'static str];
}

impl<K> Keyword<K> {
    pub(super) fn name(&self) -> &'static str {
        self.0
    }
}

impl<'de, K: Keywords> Deserialize<'de> for Keyword<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name<K>(PhantomData<K>);
        impl<'de, K: Keywords> DeserializeSeed<'de> for Name<K> {
            type Value = &'static str;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
                d.deserialize_identifier(self)
            }
        }
        impl<K: Keywords> Visitor<'_> for Name<K> {
            type Value = &'static str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} name", K::WHAT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
                K::NAMES
                    .iter()
                    .find(|n| **n == v)
                    .copied()
                    .ok_or_else(|| E::unknown_variant(v, K::NAMES))
            }
        }
        struct Unit<K>(PhantomData<K>);
        impl<'de, K: Keywords> Visitor<'de> for Unit<K> {
            type Value = &'static str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {}", K::WHAT)
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<&'static str, A::Error> {
                let (name, variant) = data.variant_seed(Name::<K>(PhantomData))?;
                variant.unit_variant()?;
                Ok(name)
            }
        }
        deserializer
            .deserialize_enum(K::WHAT, K::NAMES, Unit::<K>(PhantomData))
            .map(|name| Keyword(name, PhantomData))
    }
}

/// `policy = "..."`.
pub(super) enum PolicyNames {}
impl Keywords for PolicyNames {
    const WHAT: &'static str = "policy";
    const NAMES: &'static [&'static str] = POLICY_NAMES;
}

/// `policy = "..."` of a pool: a policy, or `geo`.
pub(super) enum PoolPolicyNames {}
impl Keywords for PoolPolicyNames {
    const WHAT: &'static str = "policy";
    const NAMES: &'static [&'static str] = POOL_POLICY_NAMES;
}

/// `latency = "..."` of a region of a `geo` pool.
pub(super) enum LatencyNames {}
impl Keywords for LatencyNames {
    const WHAT: &'static str = "latency source";
    const NAMES: &'static [&'static str] = LATENCY_NAMES;
}

/// `kind = "..."` of a probe.
pub(super) enum KindNames {}
impl Keywords for KindNames {
    const WHAT: &'static str = "probe kind";
    const NAMES: &'static [&'static str] = KIND_NAMES;
}

/// `all_down = "..."`.
pub(super) enum AllDownNames {}
impl Keywords for AllDownNames {
    const WHAT: &'static str = "all_down";
    const NAMES: &'static [&'static str] = ALL_DOWN_NAMES;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub(super) address: Spanned<String>,
    pub(super) weight: Option<Spanned<u32>>,
    pub(super) priority: Option<Spanned<u32>>,
    pub(super) state: Option<Spanned<AdminState>>,
    pub(super) probe: Option<Spanned<RawProbe>>,
}

/// A `probe = { ... }` table, of a pool or (as overrides) of an endpoint.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) kind: Option<Spanned<Keyword<KindNames>>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) rise: Option<Spanned<u32>>,
    pub(super) fall: Option<Spanned<u32>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) method: Option<Spanned<String>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) expect_status: Option<Spanned<Vec<Spanned<u16>>>>,
    pub(super) body_contains: Option<Spanned<String>>,
    pub(super) tls_verify: Option<Spanned<bool>>,
    pub(super) qname: Option<Spanned<String>>,
    pub(super) qtype: Option<Spanned<String>>,
}

impl RawProbe {
    /// The endpoint's overrides on top of the pool's probe. The timing keys (`interval`,
    /// `timeout`, `rise`, `fall`) are inherited; the kind's own keys only when the
    /// endpoint keeps the pool's kind.
    pub(super) fn overridden_by(&self, ep: &RawProbe) -> RawProbe {
        let same_kind = match (&ep.kind, &self.kind) {
            (Some(e), Some(p)) => e.get_ref().name() == p.get_ref().name(),
            _ => true,
        };
        fn pick<T: Clone>(ep: &Option<T>, pool: &Option<T>, inherit: bool) -> Option<T> {
            match ep {
                Some(v) => Some(v.clone()),
                None if inherit => pool.clone(),
                None => None,
            }
        }
        RawProbe {
            kind: pick(&ep.kind, &self.kind, true),
            interval: pick(&ep.interval, &self.interval, true),
            timeout: pick(&ep.timeout, &self.timeout, true),
            rise: pick(&ep.rise, &self.rise, true),
            fall: pick(&ep.fall, &self.fall, true),
            port: pick(&ep.port, &self.port, same_kind),
            method: pick(&ep.method, &self.method, same_kind),
            path: pick(&ep.path, &self.path, same_kind),
            host: pick(&ep.host, &self.host, same_kind),
            expect_status: pick(&ep.expect_status, &self.expect_status, same_kind),
            body_contains: pick(&ep.body_contains, &self.body_contains, same_kind),
            tls_verify: pick(&ep.tls_verify, &self.tls_verify, same_kind),
            qname: pick(&ep.qname, &self.qname, same_kind),
            qtype: pick(&ep.qtype, &self.qtype, same_kind),
        }
    }
}
