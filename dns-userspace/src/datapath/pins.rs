//! Pinned maps left by a running or earlier program: which of them a newly loaded program can
//! share, judged generically from the object's own map definitions (type, key and value
//! size, capacity, flags) against what the kernel reports for each pin. Nothing here is
//! specific to hotpool's map set, so a program whose maps change keeps working with it.
//!
//! A compatible pin is shared: the new program reads the answers and counters the running
//! one published. An incompatible one cannot be: its replacement is created (and filled)
//! under a staging directory first and only takes the pin's name after the new program
//! runs ([`commit_staged`]), so the running program keeps its own maps until the switch.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use aya::maps::MapInfo;
use aya_obj::maps::PinningType;
use tracing::{info, warn};

use crate::datapath::DatapathError;

/// A map's layout as the kernel sees it: what must match for two programs to share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub flags: u32,
}

impl fmt::Display for MapLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

impl MapLayout {
    /// The layout of the map pinned at `path`.
    pub fn of_pin(path: &Path) -> Result<(Self, u32), aya::maps::MapError> {
        let info = MapInfo::from_pin(path)?;
        let layout = Self {
            map_type: info.map_type()? as u32,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            flags: info.map_flags(),
        };
        Ok((layout, info.id()))
    }
}

/// The maps of the BPF object `object` that are pinned by name, with the layouts they will be
/// created with (`max_entries` overrides, as given to the loader, applied).
pub fn pinned_map_layouts(
    object: &[u8],
    max_entries: &[(&str, u32)],
) -> Result<BTreeMap<String, MapLayout>, DatapathError> {
    let obj = aya_obj::Object::parse(object).map_err(|e| DatapathError::Object(e.to_string()))?;
    Ok(obj
        .maps
        .iter()
        .filter(|(_, m)| m.pinning() == PinningType::ByName)
        .map(|(name, m)| {
            let max = max_entries
                .iter()
                .find(|(n, _)| n == name)
                .map_or(m.max_entries(), |&(_, v)| v);
            let layout = MapLayout {
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: max,
                flags: m.map_flags(),
            };
            (name.clone(), layout)
        })
        .collect())
}

/// What is pinned under a map's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Nothing: the map is created and pinned.
    Missing,
    /// A map the new program can share (its id).
    Compatible(u32),
    /// A map of another layout (`None`: unreadable); a fresh one replaces it.
    Incompatible(Option<MapLayout>),
    /// A map the new program could share, but one it refers to (or that refers to it) is
    /// replaced: a fresh one replaces it too.
    Linked,
}

/// Every pinned map of the new program and what is pinned under its name now.
#[derive(Clone, Debug, Default)]
pub struct PinPlan {
    pub maps: BTreeMap<String, (MapLayout, PinState)>,
}

impl PinPlan {
    /// Compares each of `layouts` with the map pinned under its name in `dir`. With
    /// `fresh`, every existing pin counts as incompatible (the replace path with new maps,
    /// forced for tests).
    pub fn new(dir: &Path, layouts: &BTreeMap<String, MapLayout>, fresh: bool) -> Self {
        let maps = layouts
            .iter()
            .map(|(name, want)| {
                let path = dir.join(name);
                let state = if !path.exists() {
                    PinState::Missing
                } else {
                    match MapLayout::of_pin(&path) {
                        Ok((have, _)) if fresh => PinState::Incompatible(Some(have)),
                        Ok((have, id)) if have == *want => PinState::Compatible(id),
                        Ok((have, _)) => PinState::Incompatible(Some(have)),
                        Err(_) => PinState::Incompatible(None),
                    }
                };
                (name.clone(), (*want, state))
            })
            .collect();
        Self { maps }
    }

    /// Makes the maps of `group` (maps that refer to each other by index) be shared all
    /// or replaced all: when one of them is missing or replaced, the shared ones are
    /// replaced too.
    pub fn replace_together(&mut self, group: &[&str]) {
        let shared = |s: &PinState| matches!(s, PinState::Compatible(_));
        let all_shared = group
            .iter()
            .all(|n| self.maps.get(*n).is_none_or(|(_, s)| shared(s)));
        if all_shared {
            return;
        }
        for name in group {
            if let Some((_, state)) = self.maps.get_mut(*name)
                && shared(state)
            {
                *state = PinState::Linked;
            }
        }
    }

    /// Whether every map of `names` is shared with the pinned one.
    pub fn shares_all(&self, names: &[&str]) -> bool {
        names
            .iter()
            .all(|n| matches!(self.maps.get(*n), Some((_, PinState::Compatible(_)))))
    }

    /// The maps that need a fresh replacement (with what is pinned now: `None` when that
    /// is unreadable or only linked to an incompatible map).
    pub fn incompatible(&self) -> impl Iterator<Item = (&str, &MapLayout, Option<&MapLayout>)> {
        self.maps
            .iter()
            .filter_map(|(name, (want, state))| match state {
                PinState::Incompatible(have) => Some((name.as_str(), want, have.as_ref())),
                PinState::Linked => Some((name.as_str(), want, None)),
                PinState::Missing | PinState::Compatible(_) => None,
            })
    }

    /// Logs what is shared and what is replaced.
    pub fn log(&self, dir: &Path) {
        for (name, want, have) in self.incompatible() {
            if matches!(self.maps.get(name), Some((_, PinState::Linked))) {
                info!(
                    map = name,
                    pin = %dir.join(name).display(),
                    "replacing the pinned map with a fresh one, with the maps it is linked to"
                );
                continue;
            }
            if have == Some(want) {
                info!(
                    map = name,
                    pin = %dir.join(name).display(),
                    "replacing the pinned map with a fresh one as asked (--replace-program maps)"
                );
                continue;
            }
            let resized = have.is_some_and(|h| {
                MapLayout {
                    max_entries: want.max_entries,
                    ..*h
                } == *want
            });
            if resized {
                info!(
                    map = name,
                    pin = %dir.join(name).display(),
                    found = have.map_or(0, |h| h.max_entries),
                    entries = want.max_entries,
                    "pinned map sized for another configuration; a fresh one replaces it once \
                     the new program runs"
                );
                continue;
            }
            warn!(
                map = name,
                pin = %dir.join(name).display(),
                found = have.map_or_else(|| "unreadable".to_string(), ToString::to_string),
                expected = %want,
                "pinned map has another layout (left by another hotpool version); a fresh one \
                 replaces it once the new program runs"
            );
        }
        let shared = self
            .maps
            .values()
            .filter(|(_, s)| matches!(s, PinState::Compatible(_)))
            .count();
        if shared > 0 {
            info!(
                shared,
                dir = %dir.display(),
                "sharing the pinned maps of the running (or last) program"
            );
        }
    }
}

/// Removes the pins of maps `names` that older versions used and this one does not (a
/// program still using them keeps them: a pin is only a name).
pub fn remove_obsolete(dir: &Path, names: &[&str]) -> Result<(), DatapathError> {
    for name in names {
        let path = dir.join(name);
        if path.exists() {
            warn!(map = %name, path = %path.display(), "removing a map pinned by an older hotpool");
            fs::remove_file(&path).map_err(DatapathError::io(format!(
                "removing obsolete pinned map {}",
                path.display()
            )))?;
        }
    }
    Ok(())
}

/// Prefix of a staging directory's name (bpffs refuses names with a dot).
const STAGING: &str = "staging-";

/// Where the fresh replacements of incompatible maps are pinned until the switch: a
/// directory of its own next to the pins (on the same bpffs, so they can be renamed over
/// them).
pub fn staging_dir(dir: &Path) -> PathBuf {
    dir.join(format!("{STAGING}{}", std::process::id()))
}

/// Removes staging directories left by a daemon that died before its switch (their maps
/// are still held by whatever program uses them).
pub fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with(STAGING) && e.path().is_dir() {
            let path = e.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    info!(path = %path.display(), "removed a staging directory left by an earlier start")
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot remove a stale staging directory")
                }
            }
        }
    }
}

/// Moves the staged maps `names` onto their pins in `dir` (one rename each, replacing the
/// old pin atomically), then removes the staging directory.
pub fn commit_staged(dir: &Path, staging: &Path, names: &[String]) -> Result<(), DatapathError> {
    for name in names {
        let from = staging.join(name);
        let to = dir.join(name);
        fs::rename(&from, &to).map_err(DatapathError::io(format!(
            "moving the new map {} onto its pin {}",
            from.display(),
            to.display()
        )))?;
        info!(map = %name, pin = %to.display(), "pinned the new map in place of the old one");
    }
    fs::remove_dir(staging).map_err(DatapathError::io(format!(
        "removing the staging directory {}",
        staging.display()
    )))
}
