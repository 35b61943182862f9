//! Regions: client networks mapped to named regions, for steering by geography and EDNS
//! Client Subnet (RFC 7871).
//!
//! * [`Regions`] is what the config says: the region names (their [`RegionId`]s) and the
//!   client networks of each, as configured (inline lists, list files, a MaxMind database's
//!   countries and continents), possibly overlapping: the longest prefix wins. Anything
//!   unmatched is in [`RegionId::DEFAULT`].
//! * A pool with the `geo` policy answers per region: steering decides one
//!   [`PoolAnswer`](crate::datapath::pools::PoolAnswer) per (pool, region), tagged with its
//!   region; a pool without one for a region answers that region with its default.
//! * Both answer paths (the kernel's and the daemon's) map a client (its source address, or
//!   the subnet of its ECS option) to a region with the same table and pick the (pool,
//!   region) answer.

pub mod table;

use std::fmt;

pub use table::RegionTable;
pub mod mmdb_writer;
pub mod source;

/// A region: its index in [`Regions::names`]. 0 is the `default` region, which every
/// client network no configured region claims falls into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u16);

impl RegionId {
    /// The `default` region.
    pub const DEFAULT: RegionId = RegionId(0);

    /// The id's index into per-region tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of [`RegionId::DEFAULT`].
pub const DEFAULT_REGION: &str = "default";

/// The configured regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regions {
    /// Region names by id: `names[0]` is [`DEFAULT_REGION`], the others in config order.
    names: Vec<String>,
    /// Client networks and their regions, as configured (they may overlap and nest: the
    /// longest prefix wins). Never [`RegionId::DEFAULT`]: unmatched clients are in it.
    pub networks: Vec<(ipnet::IpNet, RegionId)>,
}

impl Default for Regions {
    fn default() -> Self {
        Self {
            names: vec![DEFAULT_REGION.to_string()],
            networks: Vec::new(),
        }
    }
}

impl Regions {
    /// No regions but the default one: no answer depends on the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a region named `name` (not yet present) and returns its id, or `None` when
    /// there are already `u16::MAX` of them or the name is taken.
    pub fn add(&mut self, name: &str) -> Option<RegionId> {
        if self.id(name).is_some() {
            return None;
        }
        let id = u16::try_from(self.names.len())
            .ok()
            .filter(|&i| i < u16::MAX)?;
        self.names.push(name.to_string());
        Some(RegionId(id))
    }

    /// The id of the region named `name`.
    pub fn id(&self, name: &str) -> Option<RegionId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| RegionId(i as u16))
    }

    /// The name of region `id`.
    pub fn name(&self, id: RegionId) -> Option<&str> {
        self.names.get(id.index()).map(String::as_str)
    }

    /// Every region, default first, with its id.
    pub fn iter(&self) -> impl Iterator<Item = (RegionId, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (RegionId(i as u16), n.as_str()))
    }

    /// How many regions there are, the default one included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Only the default region.
    pub fn is_empty(&self) -> bool {
        self.names.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_region_is_always_there_and_names_are_unique() {
        let mut r = Regions::none();
        assert!(r.is_empty());
        assert_eq!(r.id("default"), Some(RegionId::DEFAULT));
        assert_eq!(r.add("default"), None);
        let eu = r.add("europe").expect("added");
        assert_eq!(eu, RegionId(1));
        assert_eq!(r.add("europe"), None);
        assert_eq!(r.name(eu), Some("europe"));
        assert_eq!(r.len(), 2);
        assert!(!r.is_empty());
        let names: Vec<_> = r.iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["default", "europe"]);
    }
}
