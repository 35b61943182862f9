//! Loading the XDP program, pinning its maps and attaching it to interfaces.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use tracing::{info, warn};

use crate::hot::{Capacity, HotMaps};

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
    pub fn attach(iface: &str, mode: XdpMode) -> anyhow::Result<Self> {
        bump_memlock();
        let mut ebpf = Ebpf::load(PASS_PROGRAM).context("loading the pass program")?;
        let prog: &mut Xdp = ebpf
            .program_mut(dns_common::PASS_PROGRAM_NAME)
            .ok_or_else(|| anyhow!("no program {}", dns_common::PASS_PROGRAM_NAME))?
            .try_into()?;
        prog.load()?;
        prog.attach(iface, mode)
            .with_context(|| format!("attaching the pass program to {iface}"))?;
        Ok(Self { _ebpf: ebpf })
    }
}

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode, falling back to generic (SKB) mode with a warning.
    Auto,
    Native,
    Generic,
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
    /// Loads the program with its maps sized for `capacity` and pinned in `pin_dir`
    /// (created if missing). A previous instance's pinned maps are reused when their layout
    /// and size match, so a restarted daemon keeps its counters; answers are republished.
    pub fn load(pin_dir: &Path, capacity: &Capacity) -> anyhow::Result<Self> {
        bump_memlock();
        let mut loader = EbpfLoader::new();
        ensure_bpffs(pin_dir)?;
        fs::create_dir_all(pin_dir)
            .with_context(|| format!("creating the BPF pin directory {}", pin_dir.display()))?;
        drop_incompatible_pins(pin_dir, capacity)?;
        loader.default_map_pin_directory(pin_dir);
        for name in dns_common::PINNED_MAPS {
            if let Some(layout) = expected_layout(name, capacity) {
                loader.map_max_entries(name, layout.max_entries);
            }
        }
        let mut ebpf = loader.load(PROGRAM).map_err(|e| {
            anyhow!(
                "loading the XDP program (maps pinned in {}): {e}",
                pin_dir.display()
            )
        })?;
        let prog: &mut Xdp = ebpf
            .program_mut(dns_common::PROGRAM_NAME)
            .ok_or_else(|| anyhow!("no program {} in the object", dns_common::PROGRAM_NAME))?
            .try_into()?;
        prog.load()
            .map_err(|e| verifier_error(e, "loading the XDP program"))?;
        let maps = HotMaps::from_ebpf(&mut ebpf)?;
        Ok(Self {
            ebpf,
            maps,
            links: Vec::new(),
        })
    }

    fn program(&mut self) -> anyhow::Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(dns_common::PROGRAM_NAME)
            .ok_or_else(|| anyhow!("no program {}", dns_common::PROGRAM_NAME))?
            .try_into()?)
    }

    /// Attaches to `iface`. Returns the mode actually used.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> anyhow::Result<XdpMode> {
        let prog = self.program()?;
        let used = match mode {
            AttachMode::Native => {
                let id = prog
                    .attach(iface, XdpMode::Driver)
                    .with_context(|| format!("attaching XDP to {iface} in native mode"))?;
                (XdpMode::Driver, id)
            }
            AttachMode::Generic => {
                let id = prog
                    .attach(iface, XdpMode::Skb)
                    .with_context(|| format!("attaching XDP to {iface} in generic mode"))?;
                (XdpMode::Skb, id)
            }
            AttachMode::Auto => match prog.attach(iface, XdpMode::Driver) {
                Ok(id) => (XdpMode::Driver, id),
                Err(e) => {
                    warn!(
                        interface = iface,
                        error = %e,
                        "native XDP not available, falling back to generic (SKB) mode"
                    );
                    let id = prog.attach(iface, XdpMode::Skb).with_context(|| {
                        format!("attaching XDP to {iface} (native failed: {e}; generic failed)")
                    })?;
                    (XdpMode::Skb, id)
                }
            },
        };
        info!(interface = iface, mode = ?used.0, "XDP program attached");
        self.links.push((iface.to_string(), used.0, used.1));
        Ok(used.0)
    }

    /// Detaches from every interface (also done on drop).
    pub fn detach_all(&mut self) {
        let links = std::mem::take(&mut self.links);
        for (iface, _, id) in links {
            match self.program().and_then(|p| Ok(p.detach(id)?)) {
                Ok(()) => info!(interface = %iface, "XDP program detached"),
                Err(e) => warn!(interface = %iface, error = %e, "detaching XDP failed"),
            }
        }
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn xdp(&mut self) -> anyhow::Result<&mut Xdp> {
        self.program()
    }

    /// The program (shared, e.g. for concurrent `BPF_PROG_TEST_RUN`s) and the maps (to
    /// write them at the same time).
    pub fn split(&mut self) -> anyhow::Result<(&Xdp, &mut HotMaps)> {
        let prog: &Xdp = self
            .ebpf
            .program(dns_common::PROGRAM_NAME)
            .ok_or_else(|| anyhow!("no program {}", dns_common::PROGRAM_NAME))?
            .try_into()?;
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

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: valid C string and out pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Pins need a BPF filesystem. Debian does not always mount one at /sys/fs/bpf; mount it
/// there (as `bpftool` and systemd do) when the pin directory lives below it.
fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
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
                return Err(std::io::Error::last_os_error())
                    .context("mounting the BPF filesystem on /sys/fs/bpf");
            }
            info!("mounted the BPF filesystem on /sys/fs/bpf");
        }
    } else {
        let probe = pin_dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        anyhow::ensure!(
            is_bpffs(probe),
            "the pin directory {} is not on a BPF filesystem (mount -t bpf bpf <dir>)",
            pin_dir.display()
        );
    }
    Ok(())
}

/// Maps older versions pinned that this one no longer uses.
const OBSOLETE_PINS: [&str; 2] = ["HOT_NAMES", "HOT_GEN"];

/// What a pinned map must look like to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

/// The layout each pinned map must have for `capacity`.
fn expected_layout(name: &str, capacity: &Capacity) -> Option<Layout> {
    use std::mem::size_of;

    use dns_common::*;
    let (key_size, value_size, max_entries, flags) = match name {
        MAP_HOT_INDEX => (4, size_of::<Bucket>(), capacity.buckets, 0),
        MAP_HOT_CUR => (4, 8, capacity.pools, HOT_MAP_FLAGS),
        MAP_HOT_SLOTS => (4, size_of::<AnswerSet>(), capacity.slots, HOT_MAP_FLAGS),
        MAP_HOT_ANSWERS => (4, size_of::<Answer>(), capacity.answers, HOT_MAP_FLAGS),
        MAP_STATS => (4, 8, Outcome::COUNT, 0),
        MAP_CONFIG => (4, size_of::<XdpConfig>(), 1, 0),
        MAP_LISTEN_ADDRS => (16, 1, MAX_LISTEN_ADDRS, 0),
        _ => return None,
    };
    Some(Layout {
        key_size,
        value_size: value_size as u32,
        max_entries,
        flags,
    })
}

/// Removes pinned maps left by an incompatible build or sized for another configuration
/// (other key/value size, capacity or flags): reusing them would make the program read
/// garbage or run out of room. Their content is derived state (answers are republished
/// from the config, counters restart), so replacing them loses nothing an operator relies
/// on; it is logged.
fn drop_incompatible_pins(dir: &Path, capacity: &Capacity) -> anyhow::Result<()> {
    for name in OBSOLETE_PINS {
        let path = dir.join(name);
        if path.exists() {
            warn!(map = name, path = %path.display(), "removing a map pinned by an older hotpool");
            fs::remove_file(&path)
                .with_context(|| format!("removing obsolete pinned map {}", path.display()))?;
        }
    }
    for name in dns_common::PINNED_MAPS {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let Some(want) = expected_layout(name, capacity) else {
            continue;
        };
        let have = aya::maps::MapInfo::from_pin(&path)
            .map(|i| Layout {
                key_size: i.key_size(),
                value_size: i.value_size(),
                max_entries: i.max_entries(),
                flags: i.map_flags(),
            })
            .ok();
        if have != Some(want) {
            warn!(
                map = name,
                path = %path.display(),
                found = ?have,
                expected = ?want,
                "pinned map has another layout or size (another hotpool version or \
                 configuration); replacing it"
            );
            fs::remove_file(&path)
                .with_context(|| format!("removing incompatible pinned map {}", path.display()))?;
        }
    }
    Ok(())
}

/// Verifier rejections carry the log; keep it in the error chain.
fn verifier_error(e: aya::programs::ProgramError, what: &str) -> anyhow::Error {
    anyhow::Error::new(e).context(what.to_string())
}

/// Default pin directory.
pub fn default_pin_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/hotpool")
}
