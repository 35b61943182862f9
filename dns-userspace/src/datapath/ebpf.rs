//! Loading the XDP program, pinning its maps and attaching it to interfaces.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use tracing::{info, warn};

use crate::datapath::{DatapathError, hot::HotMaps};

/// The XDP object built by build.rs (aya-build) from `dns-ebpf`.
pub static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns-ebpf"));

/// The pass-everything program (`dns-ebpf/src/pass.rs`), for the peer of a veth.
pub static PASS_PROGRAM: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hotpool-pass"));

/// The pass-everything program attached to an interface; detached on drop.
pub struct PassProgram {
    _ebpf: Ebpf,
}

impl PassProgram {
    /// Loads it and attaches it to `iface` (in the calling thread's network namespace).
    pub fn attach(iface: &str, mode: XdpMode) -> Result<Self, DatapathError> {
        bump_memlock();
        let mut ebpf = Ebpf::load(PASS_PROGRAM).map_err(|source| DatapathError::Load {
            what: "loading the pass program".into(),
            source: Box::new(source),
        })?;
        let prog: &mut Xdp = ebpf
            .program_mut(dns_common::PASS_PROGRAM_NAME)
            .ok_or(DatapathError::NoProgram(dns_common::PASS_PROGRAM_NAME))?
            .try_into()
            .map_err(DatapathError::program("the pass program"))?;
        prog.load()
            .map_err(DatapathError::program("loading the pass program"))?;
        prog.attach(iface, mode)
            .map_err(DatapathError::program(format!(
                "attaching the pass program to {iface}"
            )))?;
        Ok(Self { _ebpf: ebpf })
    }
}

/// How to attach (`xdp.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Driver (native) mode, falling back to generic (SKB) mode with a warning.
    #[default]
    Auto,
    /// Driver mode only; attaching fails if the driver lacks XDP support.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// How the config and the metrics name an attach mode: `native`, `generic`, `offload`
/// (aya's `Driver`, `Skb`, `Hardware`).
pub fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        XdpMode::Hardware => "offload",
        XdpMode::Default => "default",
    }
}

/// Longest interface name (`IFNAMSIZ` is 16 including the terminating NUL).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// `[xdp]` and `server.pin_path`: where the XDP fast path is attached and where its maps
/// are pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interfaces to attach to; empty means no XDP (the daemon answers everything).
    pub interfaces: Vec<String>,
    pub mode: AttachMode,
    /// bpffs directory for pinned maps. Default [`dns_common::DEFAULT_PIN_PATH`].
    pub pin_path: PathBuf,
}

impl Default for XdpSettings {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: AttachMode::default(),
            pin_path: PathBuf::from(dns_common::DEFAULT_PIN_PATH),
        }
    }
}

/// Why a name cannot be an interface name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceNameError {
    #[error("interface name is empty")]
    Empty,
    #[error("interface name {0:?} is longer than {MAX_IFNAME_LEN} bytes (IFNAMSIZ)")]
    TooLong(String),
    #[error("{0:?} is not a valid interface name")]
    Invalid(String),
}

/// Checks `name` against the kernel's rules for interface names.
pub fn check_interface_name(name: &str) -> Result<(), InterfaceNameError> {
    if name.is_empty() {
        Err(InterfaceNameError::Empty)
    } else if name.len() > MAX_IFNAME_LEN {
        Err(InterfaceNameError::TooLong(name.to_string()))
    } else if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Err(InterfaceNameError::Invalid(name.to_string()))
    } else {
        Ok(())
    }
}

/// The loaded program and its maps.
pub struct Datapath {
    ebpf: Ebpf,
    pub maps: HotMaps,
    links: Vec<(String, XdpMode, XdpLinkId)>,
}

/// Raises RLIMIT_MEMLOCK for kernels that still account BPF memory against it.
fn bump_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        // Kernels since 5.11 account BPF memory to the cgroup and ignore this limit.
        tracing::debug!("could not raise RLIMIT_MEMLOCK (only matters before Linux 5.11)");
    }
}

impl Datapath {
    /// Loads the program with its maps pinned in `pin_dir` (created if missing). A previous
    /// instance's pinned maps are reused, so a restarted daemon keeps the counters and the
    /// published answers.
    pub fn load(pin_dir: &Path) -> Result<Self, DatapathError> {
        bump_memlock();
        let mut loader = EbpfLoader::new();
        ensure_bpffs(pin_dir)?;
        fs::create_dir_all(pin_dir).map_err(DatapathError::io(format!(
            "creating the BPF pin directory {}",
            pin_dir.display()
        )))?;
        drop_incompatible_pins(pin_dir)?;
        loader.default_map_pin_directory(pin_dir);
        let mut ebpf = loader.load(PROGRAM).map_err(|source| DatapathError::Load {
            what: format!(
                "loading the XDP program (maps pinned in {})",
                pin_dir.display()
            ),
            source: Box::new(source),
        })?;
        let prog: &mut Xdp = ebpf
            .program_mut(dns_common::PROGRAM_NAME)
            .ok_or(DatapathError::NoProgram(dns_common::PROGRAM_NAME))?
            .try_into()
            .map_err(DatapathError::program("the XDP program"))?;
        // A verifier rejection carries the log; it stays in the error's source.
        prog.load()
            .map_err(DatapathError::program("loading the XDP program"))?;
        let maps = HotMaps::from_ebpf(&mut ebpf)?;
        Ok(Self {
            ebpf,
            maps,
            links: Vec::new(),
        })
    }

    fn program(&mut self) -> Result<&mut Xdp, DatapathError> {
        self.ebpf
            .program_mut(dns_common::PROGRAM_NAME)
            .ok_or(DatapathError::NoProgram(dns_common::PROGRAM_NAME))?
            .try_into()
            .map_err(DatapathError::program("the XDP program"))
    }

    /// Attaches to `iface`. Returns the mode actually used.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<XdpMode, DatapathError> {
        let prog = self.program()?;
        let used = match mode {
            AttachMode::Native => {
                let id = prog
                    .attach(iface, XdpMode::Driver)
                    .map_err(DatapathError::program(format!(
                        "attaching XDP to {iface} in native mode"
                    )))?;
                (XdpMode::Driver, id)
            }
            AttachMode::Generic => {
                let id = prog
                    .attach(iface, XdpMode::Skb)
                    .map_err(DatapathError::program(format!(
                        "attaching XDP to {iface} in generic mode"
                    )))?;
                (XdpMode::Skb, id)
            }
            AttachMode::Auto => match prog.attach(iface, XdpMode::Driver) {
                Ok(id) => (XdpMode::Driver, id),
                Err(e) => {
                    warn!(
                        interface = %iface,
                        error = %e,
                        "native XDP not available, falling back to generic (SKB) mode"
                    );
                    let id = prog
                        .attach(iface, XdpMode::Skb)
                        .map_err(DatapathError::program(format!(
                            "attaching XDP to {iface} (native failed: {e}; generic failed)"
                        )))?;
                    (XdpMode::Skb, id)
                }
            },
        };
        info!(
            interface = %iface,
            mode = %mode_name(used.0),
            "XDP program attached"
        );
        self.links.push((iface.to_string(), used.0, used.1));
        Ok(used.0)
    }

    /// Detaches from every interface (also done on drop).
    pub fn detach_all(&mut self) {
        let links = std::mem::take(&mut self.links);
        for (iface, _, id) in links {
            let detached = self.program().and_then(|p| {
                p.detach(id).map_err(DatapathError::program(format!(
                    "detaching XDP from {iface}"
                )))
            });
            match detached {
                Ok(()) => info!(interface = %iface, "XDP program detached"),
                Err(e) => warn!(interface = %iface, error = %e, "detaching XDP failed"),
            }
        }
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        self.program()
    }

    /// The program (shared, e.g. for concurrent `BPF_PROG_TEST_RUN`s) and the maps (to
    /// write them at the same time).
    pub fn split(&mut self) -> Result<(&Xdp, &mut HotMaps), DatapathError> {
        let prog: &Xdp = self
            .ebpf
            .program(dns_common::PROGRAM_NAME)
            .ok_or(DatapathError::NoProgram(dns_common::PROGRAM_NAME))?
            .try_into()
            .map_err(DatapathError::program("the XDP program"))?;
        Ok((prog, &mut self.maps))
    }

    /// Interfaces attached to, with their mode.
    pub fn attached(&self) -> impl Iterator<Item = (&str, XdpMode)> {
        self.links.iter().map(|(i, m, _)| (i.as_str(), *m))
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.detach_all();
    }
}

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: valid C string and out pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe {
        libc::statfs(c.as_ptr(), &mut st) == 0
            && st.f_type as i64 == i64::from(dns_common::BPF_FS_MAGIC)
    }
}

/// Pins need a BPF filesystem. Debian does not always mount one at /sys/fs/bpf; mount it
/// there (as `bpftool` and systemd do) when the pin directory lives below it.
fn ensure_bpffs(pin_dir: &Path) -> Result<(), DatapathError> {
    let root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(root) {
        if !is_bpffs(root) {
            let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
            // SAFETY: static C strings, no data argument.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(DatapathError::io(
                    "mounting the BPF filesystem on /sys/fs/bpf",
                )(std::io::Error::last_os_error()));
            }
            info!("mounted the BPF filesystem on /sys/fs/bpf");
        }
    } else {
        let probe = pin_dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        if !is_bpffs(probe) {
            return Err(DatapathError::NotBpffs(pin_dir.to_path_buf()));
        }
    }
    Ok(())
}

/// Key size, value size and capacity each pinned map must have.
fn expected_layout(name: &str) -> Option<(u32, u32, u32)> {
    use std::mem::size_of;

    use dns_common::*;
    Some(match name {
        MAP_HOT_NAMES => (
            size_of::<HotKey>() as u32,
            size_of::<HotRef>() as u32,
            MAX_HOT_NAMES,
        ),
        MAP_HOT_GEN => (4, 8, MAX_POOLS),
        MAP_HOT_SLOTS => (4, size_of::<AnswerSlot>() as u32, 2 * MAX_POOLS),
        MAP_STATS => (4, 8, Outcome::COUNT),
        MAP_CONFIG => (4, size_of::<XdpConfig>() as u32, 1),
        MAP_LISTEN_ADDRS => (16, 1, MAX_LISTEN_ADDRS),
        _ => return None,
    })
}

/// Removes pinned maps left by an incompatible build (other key/value size or capacity):
/// reusing them would make the program read garbage. Their content is derived state (answers
/// are republished from the config, counters restart), so replacing them loses nothing
/// an operator relies on; it is logged.
fn drop_incompatible_pins(dir: &Path) -> Result<(), DatapathError> {
    for name in dns_common::PINNED_MAPS {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let Some(want) = expected_layout(name) else {
            continue;
        };
        let have = aya::maps::MapInfo::from_pin(&path)
            .map(|i| (i.key_size(), i.value_size(), i.max_entries()))
            .ok();
        if have != Some(want) {
            let layout = |(key, value, entries): (u32, u32, u32)| {
                format!("{key}-byte keys, {value}-byte values, {entries} entries")
            };
            warn!(
                map = %name,
                path = %path.display(),
                found = have.map_or("unreadable".to_string(), layout),
                expected = layout(want),
                "pinned map has another layout (left by another hotpool version); replacing it"
            );
            fs::remove_file(&path).map_err(DatapathError::io(format!(
                "removing incompatible pinned map {}",
                path.display()
            )))?;
        }
    }
    Ok(())
}
