//! The state file: what the daemon knows about its endpoints that a restart must not forget
//! — each endpoint's health verdict, latency window and runtime pin, and each pool's answer
//! in force — so a restarted daemon does not answer an endpoint it knew to be dead, nor a
//! failover pool's standby next to its primary.
//!
//! `[state] path` (default `/var/lib/hotpool/state.json`, the unit's `StateDirectory`) holds
//! one JSON document. It is written whole, atomically (a temporary file in the same
//! directory, `fsync`, `rename`, `fsync` of the directory; the daemon copies the pools for
//! it a chunk at a time, [`write_chunked`], so each pool is consistent in itself), shortly after every change of a
//! verdict, pin or answer (but writing at most [`WRITE_SHARE`] of the time: see
//! [`write_gap`]), at most every [`LAZY_WRITE`] for latency-only changes, and at
//! shutdown. A daemon reads it at start when it is at most `max_age` old (default
//! [`DEFAULT_MAX_AGE`]) and was written for the same config file; entries for pools and
//! endpoints no longer configured are ignored. A file that is missing, unreadable, corrupt,
//! too old or for another configuration is logged and ignored: never fatal.

use std::{
    cell::RefCell,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::steering::health::{AdminState, HealthSnapshot};

/// The format's version; a file of another version is ignored.
pub const STATE_VERSION: u32 = 1;
/// Default `[state] path`.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/hotpool/state.json";
/// Default `[state] max_age`: older state is not trusted.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Longest `[state] max_age`.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Wait after a change of a verdict, pin or answer before writing (changes in a burst are
/// written once).
pub const URGENT_WRITE: Duration = Duration::from_millis(200);
/// Longest wait to write latency-only changes.
pub const LAZY_WRITE: Duration = Duration::from_secs(30);
/// Most of its time the writer spends writing: after a write that took `t`, the next one
/// waits at least `t × (1 ÷ share − 1)` ([`write_gap`]), so a large state (40 000
/// endpoints: tens of megabytes, rewritten after every answer change) costs a bounded
/// share of a core rather than one write after another.
pub const WRITE_SHARE: f64 = 0.1;

/// The least time between the end of a write that took `took` and the start of the next
/// one: [`URGENT_WRITE`] or what keeps writing to [`WRITE_SHARE`] of the time, whichever is
/// longer, and never more than [`LAZY_WRITE`].
pub fn write_gap(took: Duration) -> Duration {
    took.mul_f64(1.0 / WRITE_SHARE - 1.0)
        .clamp(URGENT_WRITE, LAZY_WRITE)
}
/// The state file is written through a buffer of this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// `[state]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSettings {
    /// The file; relative paths are resolved against the config file's directory.
    pub path: PathBuf,
    /// A file older than this is ignored at start.
    pub max_age: Duration,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_STATE_PATH),
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    /// When it was written, in milliseconds since the Unix epoch.
    pub written_at_ms: u64,
    /// The config file of the daemon that wrote it.
    pub config: PathBuf,
    pub pools: Vec<SavedPool>,
}

/// One pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPool {
    /// Fully qualified, lower case.
    pub name: String,
    /// `A`, `AAAA` or `CNAME`; a pool whose type changed starts afresh.
    pub rtype: String,
    /// The answer in force (`None`: none decided yet).
    pub answer: Option<SavedAnswer>,
    pub all_down: bool,
    /// The last answer with an endpoint up (what failing open answers).
    pub last_good: Option<SavedAnswer>,
    pub endpoints: Vec<SavedEndpoint>,
    /// A `geo` pool's answers of its regions other than `default` (whose answer is the
    /// pool's own `answer`, `all_down` and `last_good`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<SavedRegion>,
}

/// One region's answer of a `geo` pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRegion {
    /// The region's name.
    pub region: String,
    pub answer: Option<SavedAnswer>,
    pub all_down: bool,
    pub last_good: Option<SavedAnswer>,
}

/// An answer by endpoint addresses (indexes would not survive a reordered config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedAnswer {
    Endpoints(Vec<String>),
    Weighted(Vec<(String, u32)>),
    Fallback,
    Servfail,
}

/// One endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEndpoint {
    /// The address or host name as the config writes it.
    pub address: String,
    /// The state in force: the config's, or the operator's runtime pin.
    pub admin: AdminState,
    /// The config's `state` when this was written: a runtime pin is restored only while the
    /// config still says the same (an edited config wins).
    pub configured_admin: AdminState,
    pub health: HealthSnapshot,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no state file at {}", .0.display())]
    Missing(PathBuf),
    #[error("cannot read the state file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {} is corrupt", .path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the state file {} has version {found}, this daemon reads version {STATE_VERSION}", .path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("the state file {} was written {} ago, more than max_age {}", .path.display(), humantime::format_duration(*.age), humantime::format_duration(*.max_age))]
    TooOld {
        path: PathBuf,
        age: Duration,
        max_age: Duration,
    },
    #[error("the state file {} was written in the future ({}); the clock moved", .path.display(), humantime::format_duration(*.ahead))]
    Future { path: PathBuf, ahead: Duration },
    #[error("the state file {} belongs to the daemon of {}, not {}", .path.display(), .theirs.display(), .ours.display())]
    OtherConfig {
        path: PathBuf,
        theirs: PathBuf,
        ours: PathBuf,
    },
    #[error("writing the state file {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the state at `settings.path` if it is usable by the daemon of `config` at `now`.
pub fn read(
    settings: &StateSettings,
    config: &Path,
    now: SystemTime,
) -> Result<SavedState, StateError> {
    let path = &settings.path;
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::Missing(path.clone()));
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.clone(),
                source,
            });
        }
    };
    let state: SavedState =
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.clone(),
            found: state.version,
        });
    }
    let now = now_ms(now);
    if state.written_at_ms > now.saturating_add(60_000) {
        return Err(StateError::Future {
            path: path.clone(),
            ahead: Duration::from_millis(state.written_at_ms - now),
        });
    }
    let age = Duration::from_millis(now.saturating_sub(state.written_at_ms));
    if age > settings.max_age {
        return Err(StateError::TooOld {
            path: path.clone(),
            age,
            max_age: settings.max_age,
        });
    }
    if state.config != config {
        return Err(StateError::OtherConfig {
            path: path.clone(),
            theirs: state.config.clone(),
            ours: config.to_path_buf(),
        });
    }
    Ok(state)
}

/// Writes `state` to `path` atomically: a temporary file next to it, written and synced,
/// renamed over it, and the directory synced. The directory is created if missing.
pub fn write(path: &Path, state: &SavedState) -> Result<(), StateError> {
    write_doc(path, state)
}

/// What a [`SavedState`] holds besides its pools.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub version: u32,
    pub written_at_ms: u64,
    pub config: &'a Path,
}

/// As [`write`], taking the pools a chunk at a time from `next` until it returns `None`,
/// each chunk written before the next is taken: the file is the same as [`write`]'s of
/// every chunk's pools, and no more than a chunk is held at once (the daemon takes each
/// chunk under a short lock of steering, see `daemon::persist`).
pub fn write_chunked(
    path: &Path,
    header: &Header<'_>,
    next: impl FnMut() -> Option<Vec<SavedPool>>,
) -> Result<(), StateError> {
    let doc = Chunked {
        header,
        next: RefCell::new(next),
    };
    write_doc(path, &doc)
}

/// Writes `doc` as the state file's JSON to `path`, atomically (see [`write`]).
fn write_doc(path: &Path, doc: &impl Serialize) -> Result<(), StateError> {
    let fail = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(fail)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        // Streamed: 40 000 endpoints are tens of megabytes of JSON, never held at once.
        let mut out = io::BufWriter::with_capacity(WRITE_BUFFER, fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut out, doc).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        let f = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// A [`SavedState`] whose pools come a chunk at a time; serialized exactly as one.
struct Chunked<'a, F> {
    header: &'a Header<'a>,
    next: RefCell<F>,
}

impl<F: FnMut() -> Option<Vec<SavedPool>>> Serialize for Chunked<'_, F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut doc = serializer.serialize_struct("SavedState", 4)?;
        doc.serialize_field("version", &self.header.version)?;
        doc.serialize_field("written_at_ms", &self.header.written_at_ms)?;
        doc.serialize_field("config", self.header.config)?;
        doc.serialize_field("pools", &Pools(&self.next))?;
        doc.end()
    }
}

/// The pools of a [`Chunked`] state, as one list.
struct Pools<'a, F>(&'a RefCell<F>);

impl<F: FnMut() -> Option<Vec<SavedPool>>> Serialize for Pools<'_, F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut next = self.0.borrow_mut();
        let mut list = serializer.serialize_seq(None)?;
        while let Some(chunk) = next() {
            for pool in &chunk {
                list.serialize_element(pool)?;
            }
        }
        list.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steering::health::ProbeState;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let d =
                std::env::temp_dir().join(format!("hotpool-state-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            Self(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn sample(config: &str, at: SystemTime) -> SavedState {
        SavedState {
            version: STATE_VERSION,
            written_at_ms: now_ms(at),
            config: PathBuf::from(config),
            pools: vec![SavedPool {
                name: "www.example.test.".into(),
                rtype: "A".into(),
                answer: Some(SavedAnswer::Endpoints(vec!["192.0.2.1".into()])),
                all_down: false,
                last_good: Some(SavedAnswer::Weighted(vec![("192.0.2.1".into(), 3)])),
                regions: vec![SavedRegion {
                    region: "europe".into(),
                    answer: Some(SavedAnswer::Endpoints(vec!["192.0.2.2".into()])),
                    all_down: true,
                    last_good: None,
                }],
                endpoints: vec![SavedEndpoint {
                    address: "192.0.2.2".into(),
                    admin: AdminState::Down,
                    configured_admin: AdminState::Follow,
                    health: HealthSnapshot {
                        probe: Some(ProbeState::Down),
                        reason: "3 consecutive failures: HTTP 503".into(),
                        ..HealthSnapshot::default()
                    },
                }],
            }],
        }
    }

    #[test]
    fn writes_take_at_most_their_share_of_the_time() {
        // Small states: the debounce decides.
        assert_eq!(write_gap(Duration::ZERO), URGENT_WRITE);
        assert_eq!(write_gap(Duration::from_millis(5)), URGENT_WRITE);
        // A write of 500 ms (tens of megabytes on a busy host): 4.5 s until the next.
        assert_eq!(
            write_gap(Duration::from_millis(500)),
            Duration::from_millis(4500)
        );
        // Never longer than latency-only changes wait.
        assert_eq!(write_gap(Duration::from_secs(60)), LAZY_WRITE);
    }

    #[test]
    fn written_state_reads_back_and_leaves_no_temporary_file() {
        let dir = TempDir::new("roundtrip");
        let settings = StateSettings {
            path: dir.0.join("sub/state.json"),
            max_age: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        let state = sample("/etc/hotpool/hotpool.toml", now);
        write(&settings.path, &state).unwrap();
        let back = read(&settings, Path::new("/etc/hotpool/hotpool.toml"), now).unwrap();
        assert_eq!(back, state);
        // Written again over it: still one file.
        write(&settings.path, &state).unwrap();
        let names: Vec<String> = fs::read_dir(dir.0.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_state_written_in_chunks_is_the_same_document() {
        let dir = TempDir::new("chunks");
        let path = dir.0.join("state.json");
        let mut state = sample("/etc/hotpool/hotpool.toml", SystemTime::now());
        for i in 0..5 {
            let mut pool = state.pools[0].clone();
            pool.name = format!("p{i}.example.test.");
            state.pools.push(pool);
        }
        // What serializing the whole state at once writes.
        let whole = |state: &SavedState| {
            let mut text = serde_json::to_string_pretty(state).unwrap();
            text.push('\n');
            text
        };
        let header = Header {
            version: state.version,
            written_at_ms: state.written_at_ms,
            config: &state.config,
        };
        let mut chunks = state.pools.chunks(2).map(<[SavedPool]>::to_vec);
        write_chunked(&path, &header, || chunks.next()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), whole(&state));
        // No pools at all.
        write_chunked(&path, &header, || None).unwrap();
        let empty = SavedState {
            pools: Vec::new(),
            ..state.clone()
        };
        assert_eq!(fs::read_to_string(&path).unwrap(), whole(&empty));
    }

    #[test]
    fn unusable_files_are_errors_never_panics() {
        let dir = TempDir::new("bad");
        fs::create_dir_all(&dir.0).unwrap();
        let cfg = Path::new("/etc/hotpool/hotpool.toml");
        let settings = StateSettings {
            path: dir.0.join("state.json"),
            max_age: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        assert!(matches!(
            read(&settings, cfg, now),
            Err(StateError::Missing(_))
        ));
        for garbage in [&b""[..], b"{", b"\xff\xfe", b"[1,2,3]", b"{\"version\":1}"] {
            fs::write(&settings.path, garbage).unwrap();
            let e = read(&settings, cfg, now).unwrap_err();
            assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        }
        let mut old = sample(&cfg.display().to_string(), now - Duration::from_secs(120));
        write(&settings.path, &old).unwrap();
        let e = read(&settings, cfg, now).unwrap_err();
        assert!(e.to_string().contains("more than max_age 1m"), "{e}");
        old.written_at_ms = now_ms(now + Duration::from_secs(3600));
        write(&settings.path, &old).unwrap();
        assert!(matches!(
            read(&settings, cfg, now),
            Err(StateError::Future { .. })
        ));
        let mut other = sample("/elsewhere/hotpool.toml", now);
        write(&settings.path, &other).unwrap();
        assert!(matches!(
            read(&settings, cfg, now),
            Err(StateError::OtherConfig { .. })
        ));
        other.config = cfg.to_path_buf();
        other.version = 99;
        write(&settings.path, &other).unwrap();
        assert!(matches!(
            read(&settings, cfg, now),
            Err(StateError::Version { found: 99, .. })
        ));
        // A directory where the file should be: unreadable.
        fs::remove_file(&settings.path).unwrap();
        fs::create_dir(&settings.path).unwrap();
        assert!(matches!(
            read(&settings, cfg, now),
            Err(StateError::Read { .. })
        ));
        assert!(write(&settings.path, &other).is_err());
    }
}
