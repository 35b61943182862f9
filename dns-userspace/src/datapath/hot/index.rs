//! The hashed name index (`HOT_INDEX`): which pool a name's hash points at. Built in the
//! daemon, with a new hash key whenever a bucket would overflow or hold two equal tags;
//! only the buckets that changed are rewritten. A daemon that takes over the pinned maps of
//! an earlier one reads the index back with its key ([`Index::adopt`]), so the names keep
//! pointing where they did.

use aya::maps::{Array, MapData};
use dns_common::{
    Bucket, MAP_HOT_INDEX,
    name::{FoldedName, HashKey},
};

use crate::datapath::DatapathError;

/// Tries with as many hash keys before the index counts as full.
const KEY_ATTEMPTS: usize = 16;

/// The index map and what was last written to it.
pub struct Index {
    map: Array<MapData, Bucket>,
    key: HashKey,
    /// The buckets as last written.
    buckets: Vec<Bucket>,
}

fn random_key() -> HashKey {
    HashKey {
        k0: rand::random(),
        k1: rand::random(),
    }
}

impl Index {
    /// Takes the index map with a fresh random key and empties every bucket (whatever the
    /// map held was built with another key).
    pub fn fresh(map: Array<MapData, Bucket>) -> Result<Self, DatapathError> {
        let n = map.len();
        let mut index = Self {
            map,
            key: random_key(),
            buckets: vec![Bucket::default(); n as usize],
        };
        for i in 0..n {
            index.write(i, Bucket::default())?;
        }
        Ok(index)
    }

    /// Takes the index map as an earlier instance left it, built with `key`: every bucket is
    /// read back, nothing is written.
    pub fn adopt(map: Array<MapData, Bucket>, key: HashKey) -> Result<Self, DatapathError> {
        let buckets = (0..map.len())
            .map(|i| {
                map.get(&i, 0)
                    .map_err(DatapathError::map(format!("reading {MAP_HOT_INDEX}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { map, key, buckets })
    }

    /// Every pool index a bucket points at.
    pub fn pools(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().flat_map(|b| {
            b.tags
                .iter()
                .zip(b.pools)
                .filter(|(t, _)| **t != 0)
                .map(|(_, p)| p)
        })
    }

    /// The pool index the kernel finds for `name` (its bucket's entry with its tag), if any.
    pub fn lookup(&self, name: &FoldedName) -> Option<u32> {
        let hash = name.hash(&self.key);
        let b = self
            .buckets
            .get(dns_common::bucket(hash, self.mask()) as usize)?;
        let tag = dns_common::tag(hash);
        b.tags.iter().position(|&t| t == tag).map(|i| b.pools[i])
    }

    /// Number of buckets (a power of two).
    pub fn n_buckets(&self) -> u32 {
        self.buckets.len() as u32
    }

    /// The mask that turns a hash into a bucket (the config map's `index_mask`).
    pub fn mask(&self) -> u32 {
        self.n_buckets() - 1
    }

    /// The hash key the index is built with (the config map's `key`).
    pub fn key(&self) -> HashKey {
        self.key
    }

    /// Places every `(pool index, name)` in the index; draws a new hash key when a bucket
    /// would overflow or hold two equal tags, and writes the buckets that changed. Returns
    /// whether the key changed (the config map must then be rewritten with it).
    pub fn build<'a, I>(&mut self, names: I) -> Result<bool, DatapathError>
    where
        I: Iterator<Item = (u32, &'a FoldedName)> + Clone,
    {
        let before = self.key;
        for attempt in 0..KEY_ATTEMPTS {
            if attempt > 0 {
                self.key = random_key();
            }
            if let Some(buckets) = place(&self.key, self.mask(), names.clone()) {
                self.write_changed(buckets)?;
                return Ok(self.key != before);
            }
        }
        Err(DatapathError::IndexFull {
            names: names.count(),
            buckets: self.n_buckets(),
            keys: KEY_ATTEMPTS,
        })
    }

    fn write_changed(&mut self, next: Vec<Bucket>) -> Result<(), DatapathError> {
        for (i, b) in next.iter().enumerate() {
            if self.buckets[i] != *b {
                self.write(i as u32, *b)?;
            }
        }
        Ok(())
    }

    /// Overwrites one bucket.
    pub fn write(&mut self, at: u32, bucket: Bucket) -> Result<(), DatapathError> {
        self.map
            .set(at, bucket, 0)
            .map_err(DatapathError::map(format!("writing {MAP_HOT_INDEX}")))?;
        if let Some(b) = self.buckets.get_mut(at as usize) {
            *b = bucket;
        }
        Ok(())
    }

    /// The bucket at `at` as last written.
    pub fn bucket(&self, at: u32) -> Option<Bucket> {
        self.buckets.get(at as usize).copied()
    }

    /// The bucket the kernel looks `name` up in.
    pub fn bucket_of(&self, name: &FoldedName) -> u32 {
        dns_common::bucket(name.hash(&self.key), self.mask())
    }
}

/// The index for `names` under `key`, or `None` when a bucket would overflow or hold two
/// names with the same tag (the kernel takes the first matching tag).
pub fn place<'a>(
    key: &HashKey,
    mask: u32,
    names: impl Iterator<Item = (u32, &'a FoldedName)>,
) -> Option<Vec<Bucket>> {
    let mut buckets = vec![Bucket::default(); mask as usize + 1];
    for (pool, name) in names {
        let hash = name.hash(key);
        let b = &mut buckets[dns_common::bucket(hash, mask) as usize];
        let tag = dns_common::tag(hash);
        if b.tags.contains(&tag) {
            return None;
        }
        let free = b.tags.iter().position(|&t| t == 0)?;
        b.tags[free] = tag;
        b.pools[free] = pool;
    }
    Some(buckets)
}
