//! Config parsing and every config error, by section. Errors are checked by file, line,
//! column and message, as `hotpool check` prints them.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use hickory_proto::rr::{Name, RecordType};

use super::{summary::status_ranges, *};
use crate::{
    datapath::ebpf::AttachMode,
    steering::{
        endpoint::EndpointAddress,
        health::AdminState,
        policy::{AllDown, Policy},
        probe::{DnsProbe, HttpProbe, ProbeKind, ProbeSpec, ProbeTiming},
    },
};

mod example;
mod policies;
mod pools;
mod probes;
mod regions;
mod scale;
mod server;
mod state;
mod zones;

fn testdata() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata"))
}

fn source() -> PathBuf {
    testdata().join("hotpool.toml")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, &source())
}

/// The config must fail at `line` of the config file, with `problem` in the message.
#[track_caller]
fn assert_fails_at(text: &str, line: usize, problem: &str) -> ConfigError {
    let e = parse(text).expect_err("config must be rejected");
    let shown = e.to_string();
    assert_eq!(e.file(), source(), "{shown}");
    assert_eq!(e.line(), Some(line), "{shown}");
    assert!(e.column().is_some(), "{shown}");
    let prefix = format!("{}:{line}:{}: ", source().display(), e.column().unwrap());
    assert!(shown.starts_with(&prefix), "{shown}");
    assert!(shown.contains(problem), "{shown} does not say {problem:?}");
    e
}

/// A valid [[zone]] for the pool tests (lines 1-3).
const ZONE: &str = "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n";

fn with_zone(rest: &str) -> String {
    format!("{ZONE}{rest}")
}

fn pool(name: &str, rtype: &str, endpoints: &str) -> String {
    with_zone(&format!(
        "[[pool]]\nname = \"{name}\"\ntype = \"{rtype}\"\nendpoints = [{endpoints}]\n"
    ))
}

// --- issue 3: policies, probes, events -----------------------------------------

/// A pool `www.example.test.` of `rtype` with `extra` lines from line 7 on and the
/// endpoints on the line after them (7 + extra.len()).
fn pool_with(rtype: &str, extra: &[&str], endpoints: &str) -> String {
    let mut text = format!("{ZONE}[[pool]]\nname = \"www.example.test.\"\ntype = \"{rtype}\"\n");
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("endpoints = [{endpoints}]\n"));
    text
}

const TWO: &str = "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }";

fn one_pool(text: &str) -> PoolSettings {
    parse(text)
        .unwrap_or_else(|e| panic!("{e}"))
        .pools
        .remove(0)
}
