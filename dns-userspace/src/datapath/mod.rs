//! The kernel side, the packet path in the kernel: the XDP program and what the daemon
//! keeps in its maps.
//!
//! * [`ebpf`]: loading the program, pinning its maps under bpffs and attaching it to
//!   interfaces (`[xdp]` settings);
//! * [`heartbeat`]: the daemon's heartbeat and what the kernel does when it is stale;
//! * [`link`]: the pinned XDP links that keep the program attached when the daemon is gone,
//!   and `hotpool detach`;
//! * [`pins`]: which pinned maps a new program can share, and the fresh maps that replace
//!   the others;
//! * [`hot`]: encoding pool answers for the kernel, the hashed name index, publishing
//!   answers without torn reads (grace periods); reading the counters;
//! * [`pools`]: the answer table both answer paths read (the daemon per query, the kernel
//!   through `hot`), with the rules every answer follows (at most eight records, one for a
//!   CNAME; the weighted pick).
//!
//! Depends on no other part of the daemon.

use std::{io, path::PathBuf};

use dns_common::{BUCKET_ENTRIES, MAX_ANSWER_LEN, MAX_ANSWER_RRS, MAX_VARIANTS};

pub mod ebpf;
pub mod heartbeat;
pub mod hot;
pub mod iface;
pub mod link;
pub mod pins;
pub mod pools;
mod sys;

/// Something the kernel side could not do: encode an answer, write or read a map, load or
/// attach the program.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("pool {pool} has no answer records")]
    NoRecords { pool: String },
    #[error(
        "pool {pool} has {count} answer records, at most {MAX_ANSWER_RRS} fit the kernel answer"
    )]
    TooManyRecords { pool: String, count: usize },
    #[error(
        "the answer of pool {pool} is {len} octets, at most {MAX_ANSWER_LEN} fit the kernel answer"
    )]
    AnswerTooLong { pool: String, len: usize },
    #[error("encoding the answer of pool {pool}")]
    Encode {
        pool: String,
        #[source]
        source: Box<hickory_proto::ProtoError>,
    },
    /// hickory-proto's encoding is not what the kernel splices in.
    #[error("encoded answer of pool {pool} {problem}")]
    Unexpected { pool: String, problem: &'static str },
    #[error(
        "pool {pool}: {records} weighted records with {thresholds} thresholds (at most {MAX_VARIANTS})"
    )]
    Weights {
        pool: String,
        records: usize,
        thresholds: usize,
    },
    #[error("invalid pool name {0}")]
    InvalidName(String),
    #[error("{count} pools configured, the kernel maps were sized for {capacity}")]
    TooManyPools { count: usize, capacity: u32 },
    #[error("{count} [rrl] exempt_clients networks, the kernel holds at most {capacity}")]
    TooManyExempt { count: usize, capacity: u32 },
    #[error("no network interface {0} in this network namespace")]
    NoInterface(String),
    #[error("the kernel answer table is full ({needed} entries needed, {free} free of {capacity})")]
    AnswersFull {
        needed: usize,
        free: usize,
        capacity: u32,
    },
    /// None of the hash keys tried spreads the names over the buckets with at most
    /// [`BUCKET_ENTRIES`] per bucket and distinct tags.
    #[error(
        "could not place {names} names in {buckets} index buckets of {BUCKET_ENTRIES} with {keys} hash keys"
    )]
    IndexFull {
        names: usize,
        buckets: u32,
        keys: usize,
    },
    #[error("pool {pool} is not in the kernel map")]
    NotPublished { pool: String },
    #[error("the XDP program has no map {0}")]
    NoMap(&'static str),
    #[error("no program {0} in the object")]
    NoProgram(&'static str),
    /// Reading or writing a map (`what` says which).
    #[error("{what}")]
    Map {
        what: String,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Loading or attaching a program; a verifier rejection carries its log.
    #[error("{what}")]
    Program {
        what: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Taking over a pinned link.
    #[error("{what}")]
    Link {
        what: String,
        #[source]
        source: Box<aya::programs::links::LinkError>,
    },
    /// Reading the object's map definitions.
    #[error("parsing the XDP object: {0}")]
    Object(String),
    /// Loading the object.
    #[error("{what}")]
    Load {
        what: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// The pin directory or bpffs.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the pin directory {} is not on a BPF filesystem (mount -t bpf bpf <dir>)", .0.display())]
    NotBpffs(PathBuf),
}

impl DatapathError {
    pub(crate) fn map(what: impl Into<String>) -> impl FnOnce(aya::maps::MapError) -> Self {
        let what = what.into();
        move |source| Self::Map {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn program(
        what: impl Into<String>,
    ) -> impl FnOnce(aya::programs::ProgramError) -> Self {
        let what = what.into();
        move |source| Self::Program {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
