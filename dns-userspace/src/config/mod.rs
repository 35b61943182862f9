//! The daemon's one declarative TOML file, parsed into the domains' own types: a
//! [`Config`] is the composition of the settings each domain defines (server and zones in
//! `dns`, pools, probes and events in `steering`, XDP in `datapath`).
//!
//! [`Config::load`] reads the file, checks every value, loads every zone file and checks the
//! pools against the zones, so a config that loads is one the daemon can serve. Every
//! problem is reported as a [`ConfigError`] naming the file, line and column where known
//! (`hotpool.toml:12:7: ...`, or the zone file and its line for zone-file problems).
//!
//! `examples/hotpool.toml` documents every key.

//!
//! * `raw`: the file format (serde structs with spans);
//! * `parse`: raw values to domain types, domain errors to `file:line:col`;
//! * `api`: the `[api]` table (and the old `server.metrics_listen`);
//! * `summary`: the `hotpool check` text;
//! * `error`: [`ConfigError`].

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    api::settings::ApiSettings,
    datapath::{ebpf::XdpSettings, pools::PoolTable},
    dns::{
        authority::Authority,
        server::ServerSettings,
        zone::{Zone, ZoneSettings},
    },
    geo::{
        Regions,
        source::{DatabaseSummary, PrefixCounts},
    },
    steering::{
        events::EventSettings,
        pool::PoolSettings,
        probe::{ProbeSettings, ProbeSpec},
        state::StateSettings,
    },
};

mod api;
mod error;
mod parse;
mod raw;
mod regions;
mod summary;

#[cfg(test)]
mod tests;

pub use error::ConfigError;

/// What [`Config::peek`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peek {
    /// `server.pin_path`, or its default.
    pub pin_path: PathBuf,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from (zone files are relative to its directory).
    pub source: PathBuf,
    pub server: ServerSettings,
    /// `[api]`: the HTTP API (metrics, status, control), off by default.
    pub api: ApiSettings,
    pub xdp: XdpSettings,
    pub zones: Vec<ZoneSettings>,
    pub pools: Vec<PoolSettings>,
    /// `[regions]`: client networks by region, for `geo` pools.
    pub regions: Regions,
    /// How many prefixes each region has from each source, by region id (for
    /// `hotpool check`).
    pub region_prefixes: Vec<PrefixCounts>,
    /// `[regions] database`: its path and what it gave.
    pub region_database: Option<(PathBuf, DatabaseSummary)>,
    pub events: EventSettings,
    pub probes: ProbeSettings,
    /// `[state]`: the file health, latency and pins are kept in across restarts.
    pub state: StateSettings,
    /// The zones as loaded and validated, in the order of `zones`.
    pub(super) zone_data: Vec<Zone>,
}

impl Config {
    /// This config without its pools, for a daemon that keeps them in steering: 10 000
    /// pools' settings are megabytes, not worth holding twice.
    pub fn without_pools(self) -> Config {
        Config {
            pools: Vec::new(),
            ..self
        }
    }

    /// Reads, parses and validates the config at `path`, loading every zone file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read config file: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `source`; zone files are read relative to
    /// `source`'s directory.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        parse::Parser { text, source }.parse()
    }

    /// Only the `[api]` settings of the config at `path` (and the old
    /// `server.metrics_listen`), for commands that talk to a running daemon: the rest of
    /// the file is checked for syntax only, zone files are not read, and neither is the
    /// token file (the client reads it if it may).
    pub fn load_api(path: &Path) -> Result<ApiSettings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read config file: {e}")))?;
        parse::Parser {
            text: &text,
            source: path,
        }
        .api_only()
    }

    /// The zones as loaded when the config was validated, in the order of [`Config::zones`].
    pub fn zone_data(&self) -> &[Zone] {
        &self.zone_data
    }

    /// The settings `hotpool detach` needs, read from the file at `path` without
    /// validating the rest of it, so it works while the file is being fixed.
    pub fn peek(path: &Path) -> Result<Peek, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read config file: {e}")))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError::new(path, e.message().trim_end().to_string()))?;
        let pin_path = table
            .get("server")
            .and_then(toml::Value::as_table)
            .and_then(|s| s.get("pin_path"))
            .and_then(toml::Value::as_str);
        Ok(Peek {
            pin_path: pin_path.map_or_else(|| XdpSettings::default().pin_path, PathBuf::from),
        })
    }

    /// Every probed endpoint's probe.
    pub fn probe_specs(&self) -> impl Iterator<Item = &ProbeSpec> {
        self.pools
            .iter()
            .flat_map(|p| p.endpoints.iter().filter_map(|e| e.probe.as_deref()))
    }

    /// The authoritative answer path for these zones and the pools in `pools`.
    pub fn authority(&self, pools: Arc<PoolTable>) -> Authority {
        Authority::new(self.zone_data.clone(), pools, self.server.edns_udp_size)
    }
}
