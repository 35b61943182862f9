//! Loading the XDP program, pinning its maps and attaching it to interfaces.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use tracing::{info, warn};

use crate::datapath::{
    DatapathError,
    heartbeat::Staleness,
    hot::{Capacity, HotMaps},
    link::{self, LinkPin, PinStatus},
    pins::{self, MapLayout, PinPlan},
    sys,
};

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
pub use crate::datapath::link::mode_name;

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
    /// `stale` and `on_stale`: what a hit does once the daemon's heartbeat is old.
    pub staleness: Staleness,
}

impl Default for XdpSettings {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: AttachMode::default(),
            pin_path: PathBuf::from(dns_common::DEFAULT_PIN_PATH),
            staleness: Staleness::default(),
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

/// How a starting daemon treats a program already attached through a pinned link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Replace {
    /// Adopt it when it is this very program on the pinned maps; otherwise swap this
    /// program in through the link. The default.
    #[default]
    IfChanged,
    /// Swap this program in even when it is the same (`run --replace-program program`,
    /// for tests of the replace path).
    Program,
    /// As `Program`, and treat every pinned map as incompatible: fresh maps are filled, the
    /// program swapped in, then the pins replaced (`--replace-program maps`).
    Maps,
}

/// The loaded program and its maps.
pub struct Datapath {
    ebpf: Ebpf,
    pub maps: HotMaps,
    pin_dir: PathBuf,
    replace: Replace,
    links: Vec<Attached>,
    /// The maps created fresh for incompatible pins, pinned in a staging directory until
    /// [`Datapath::commit_pins`] moves them onto the old pins.
    staged: Option<(PathBuf, Vec<String>)>,
}

/// An interface the program answers on, and how it got there.
struct Attached {
    iface: String,
    mode: XdpMode,
    how: How,
}

/// How the program came to run on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// The same program was already attached through the pinned link: kept as it is.
    Adopted { link: u32, program: u32 },
    /// Another program was attached through the pinned link; this one replaced it in one
    /// `bpf_link_update`.
    Replaced { link: u32, old: u32, new: u32 },
    /// Attached anew, and the link pinned.
    Attached { link: u32 },
    /// Attached, but the link could not be pinned: it lasts as long as this process.
    Unpinned,
    /// Attached through netlink (a kernel without XDP links): it persists, but can neither
    /// be replaced atomically nor detached with `hotpool detach`.
    Netlink,
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
    /// Loads the program with its maps pinned in `pin_dir` (created if missing), sized for
    /// at least `capacity`. A running or earlier instance's pinned maps are shared when their
    /// layout fits and they are large enough, so a restarted daemon keeps the counters and
    /// the published answers.
    pub fn load(pin_dir: &Path, capacity: &Capacity) -> Result<Self, DatapathError> {
        Self::load_with(pin_dir, capacity, Replace::IfChanged)
    }

    /// [`Datapath::load`], choosing how an attached program is taken over. Pinned maps of
    /// another layout are not touched: fresh ones are created in a staging directory, to be
    /// filled, attached and then moved onto the old pins ([`Datapath::commit_pins`]). The
    /// answer maps ([`LINKED_MAPS`](crate::datapath::hot::LINKED_MAPS)) refer to each other
    /// by index, so they are shared or replaced together.
    pub fn load_with(
        pin_dir: &Path,
        capacity: &Capacity,
        replace: Replace,
    ) -> Result<Self, DatapathError> {
        bump_memlock();
        ensure_bpffs(pin_dir)?;
        fs::create_dir_all(pin_dir).map_err(DatapathError::io(format!(
            "creating the BPF pin directory {}",
            pin_dir.display()
        )))?;
        pins::remove_stale_staging(pin_dir);
        pins::remove_obsolete(pin_dir, &OBSOLETE_PINS)?;
        let fresh = replace == Replace::Maps;
        // Pinned maps larger than needed are kept (a reload may have grown them).
        let defaults = pins::pinned_map_layouts(PROGRAM, &[])?;
        let capacity = match pinned_capacity(pin_dir, &defaults) {
            Some(pinned) if !fresh && pinned.covers(capacity) => pinned,
            _ => *capacity,
        };
        let layouts = pins::pinned_map_layouts(PROGRAM, &capacity.max_entries())?;
        let mut plan = PinPlan::new(pin_dir, &layouts, fresh);
        plan.replace_together(&crate::datapath::hot::LINKED_MAPS);
        plan.log(pin_dir);
        let adopt = plan.shares_all(&crate::datapath::hot::LINKED_MAPS);
        let staged: Vec<String> = plan
            .incompatible()
            .map(|(name, _, _)| name.to_string())
            .collect();
        let staging = pins::staging_dir(pin_dir);
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pin_dir);
        for (name, entries) in capacity.max_entries() {
            loader.map_max_entries(name, entries);
        }
        if !staged.is_empty() {
            fs::create_dir_all(&staging).map_err(DatapathError::io(format!(
                "creating the staging directory {}",
                staging.display()
            )))?;
            for name in &staged {
                loader.map_pin_path(name.as_str(), staging.join(name));
            }
        }
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
        let maps = HotMaps::from_ebpf(&mut ebpf, adopt)?;
        Ok(Self {
            ebpf,
            maps,
            pin_dir: pin_dir.to_path_buf(),
            replace,
            links: Vec::new(),
            staged: (!staged.is_empty()).then_some((staging, staged)),
        })
    }

    fn program(&mut self) -> Result<&mut Xdp, DatapathError> {
        self.ebpf
            .program_mut(dns_common::PROGRAM_NAME)
            .ok_or(DatapathError::NoProgram(dns_common::PROGRAM_NAME))?
            .try_into()
            .map_err(DatapathError::program("the XDP program"))
    }

    /// Makes the program answer on `iface`: adopts the program attached through the pinned
    /// link when it is this one on these maps, swaps this one in through the link when it is
    /// not (atomically), or attaches anew and pins the link. Returns the mode in use.
    ///
    /// A pinned link in another mode than `mode` allows is detached first (the mode of a link
    /// cannot change): queries go to the daemon's sockets meanwhile.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<XdpMode, DatapathError> {
        let allowed: &[XdpMode] = match mode {
            AttachMode::Native => &[XdpMode::Driver],
            AttachMode::Generic => &[XdpMode::Skb],
            AttachMode::Auto => &[XdpMode::Driver, XdpMode::Skb],
        };
        // The interface's MAC address before the program can run there: without it every
        // frame on the interface is passed (`foreign_mac`).
        let described = super::iface::Link::read(iface)
            .map_err(DatapathError::io(format!("reading the address of {iface}")))?
            .ok_or_else(|| DatapathError::NoInterface(iface.to_string()))?;
        self.maps.set_interface(&described)?;
        let mut existing = None;
        for pin in link::pinned_links(&self.pin_dir) {
            if pin.iface != iface {
                continue;
            }
            match link::check_pin(&pin) {
                PinStatus::Attached(info) if existing.is_none() && allowed.contains(&pin.mode) => {
                    existing = Some((pin, info));
                }
                PinStatus::Attached(_) => {
                    warn!(
                        interface = %iface,
                        pinned = %mode_name(pin.mode),
                        configured = %mode,
                        "the XDP mode changed: detaching the pinned link and attaching anew \
                         (the daemon answers meanwhile)"
                    );
                    link::detach(&pin)?;
                }
                PinStatus::Stale(why) => {
                    info!(pin = %pin.path.display(), why, "removing a stale link pin");
                    fs::remove_file(&pin.path).map_err(DatapathError::io(format!(
                        "removing the stale link pin {}",
                        pin.path.display()
                    )))?;
                }
            }
        }
        let (used, how) = match existing {
            Some((pin, info)) => (pin.mode, self.take_over(iface, &pin, info)?),
            None => self.attach_new(iface, mode)?,
        };
        match how {
            How::Adopted { link, program } => info!(
                interface = %iface,
                mode = %mode_name(used),
                link,
                program,
                "adopted the XDP program attached through the pinned link (same program, same maps)"
            ),
            How::Replaced { link, old, new } => info!(
                interface = %iface,
                mode = %mode_name(used),
                link,
                old_program = old,
                new_program = new,
                "replaced the XDP program through the pinned link (bpf_link_update)"
            ),
            How::Attached { link } => info!(
                interface = %iface,
                mode = %mode_name(used),
                link,
                "XDP program attached; the link is pinned, so it outlives the daemon"
            ),
            How::Unpinned | How::Netlink => {}
        }
        self.links.push(Attached {
            iface: iface.to_string(),
            mode: used,
            how,
        });
        Ok(used)
    }

    /// Adopts or replaces the program attached through the pinned link `pin`.
    fn take_over(
        &mut self,
        iface: &str,
        pin: &LinkPin,
        info: sys::LinkInfo,
    ) -> Result<How, DatapathError> {
        if self.replace == Replace::IfChanged && self.runs_this_program(info.prog_id)? {
            return Ok(How::Adopted {
                link: info.id,
                program: info.prog_id,
            });
        }
        let what = || format!("replacing the XDP program on {iface} through its pinned link");
        let pinned = PinnedLink::from_pin(&pin.path).map_err(|e| DatapathError::Link {
            what: what(),
            source: Box::new(e),
        })?;
        let xdp_link =
            XdpLink::try_from(FdLink::from(pinned)).map_err(|e| DatapathError::Link {
                what: what(),
                source: Box::new(e),
            })?;
        let prog = self.program()?;
        let id = prog
            .attach_to_link(xdp_link)
            .map_err(DatapathError::program(what()))?;
        // The pin keeps the link; dropping our handle only closes its descriptor.
        drop(prog.take_link(id).map_err(DatapathError::program(what()))?);
        let now = pin.info().map_err(DatapathError::io(format!(
            "reading the link pinned at {}",
            pin.path.display()
        )))?;
        Ok(How::Replaced {
            link: now.id,
            old: info.prog_id,
            new: now.prog_id,
        })
    }

    /// Whether program `id` is this program (same instructions: the kernel's tag) reading
    /// the maps pinned here (and none staged).
    fn runs_this_program(&mut self, id: u32) -> Result<bool, DatapathError> {
        if self.staged.is_some() {
            return Ok(false);
        }
        let ours = self
            .program()?
            .info()
            .map_err(DatapathError::program("reading the loaded program's info"))?;
        let Some(theirs) = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
        else {
            return Ok(false);
        };
        if theirs.tag() != ours.tag() {
            return Ok(false);
        }
        let their_maps = theirs
            .map_ids()
            .map_err(DatapathError::program(
                "reading the attached program's maps",
            ))?
            .unwrap_or_default();
        let layouts = pins::pinned_map_layouts(PROGRAM, &self.maps.capacity().max_entries())?;
        for name in layouts.keys() {
            match pins::MapLayout::of_pin(&self.pin_dir.join(name)) {
                Ok((_, map)) if their_maps.contains(&map) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Attaches to `iface` (no pinned link there) and pins the link.
    fn attach_new(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<(XdpMode, How), DatapathError> {
        let prog = self.program()?;
        let (used, id) = match mode {
            AttachMode::Native => (
                XdpMode::Driver,
                prog.attach(iface, XdpMode::Driver)
                    .map_err(DatapathError::program(format!(
                        "attaching XDP to {iface} in native mode"
                    )))?,
            ),
            AttachMode::Generic => (
                XdpMode::Skb,
                prog.attach(iface, XdpMode::Skb)
                    .map_err(DatapathError::program(format!(
                        "attaching XDP to {iface} in generic mode"
                    )))?,
            ),
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
        let what = || format!("pinning the XDP link of {iface}");
        let owned = prog.take_link(id).map_err(DatapathError::program(what()))?;
        let fd_link = match FdLink::try_from(owned) {
            Ok(fd_link) => fd_link,
            Err(_) => {
                warn!(
                    interface = %iface,
                    "XDP attached through netlink (this kernel has no XDP links): it stays \
                     attached after the daemon exits, but cannot be replaced atomically; \
                     remove it with `ip link set dev {iface} xdp off`"
                );
                return Ok((used, How::Netlink));
            }
        };
        let path = self.pin_dir.join(link::pin_name(iface, used));
        let link_id = fd_link.info().ok().map(|i| i.id());
        match fd_link.pin(&path) {
            Ok(_pinned) => Ok((
                used,
                How::Attached {
                    link: link_id.unwrap_or_default(),
                },
            )),
            Err(e) => {
                // The failed pin dropped the only handle, and with it the attachment: attach
                // again, held by this process only.
                warn!(
                    interface = %iface,
                    pin = %path.display(),
                    error = %e,
                    "cannot pin the XDP link; the kernel path will end with this process"
                );
                let prog = self.program()?;
                prog.attach(iface, used)
                    .map_err(DatapathError::program(format!("attaching XDP to {iface}")))?;
                Ok((used, How::Unpinned))
            }
        }
    }

    /// Moves the maps created for incompatible pins onto those pins. Call once the program
    /// runs on every interface (the old program kept its own maps until then).
    pub fn commit_pins(&mut self) -> Result<(), DatapathError> {
        if let Some((staging, names)) = self.staged.take() {
            pins::commit_staged(&self.pin_dir, &staging, &names)?;
        }
        Ok(())
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
        self.links.iter().map(|a| (a.iface.as_str(), a.mode))
    }

    /// Interfaces attached to, with how the program got there.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, XdpMode, How)> {
        self.links.iter().map(|a| (a.iface.as_str(), a.mode, a.how))
    }
}

impl Drop for Datapath {
    /// Pinned links stay attached (the point of pinning them); maps staged but never
    /// committed are unpinned.
    fn drop(&mut self) {
        if let Some((staging, _)) = self.staged.take() {
            let _ = fs::remove_dir_all(staging);
        }
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

/// The sizes of the answer maps pinned in `dir`, when each is pinned with the layout the
/// program defines for it (`defaults`, sizes aside) and the index has a power-of-two size.
fn pinned_capacity(dir: &Path, defaults: &BTreeMap<String, MapLayout>) -> Option<Capacity> {
    let entries = |name: &str| -> Option<u32> {
        let (have, _) = MapLayout::of_pin(&dir.join(name)).ok()?;
        let want = MapLayout {
            max_entries: have.max_entries,
            ..*defaults.get(name)?
        };
        (have == want).then_some(have.max_entries)
    };
    let capacity = Capacity {
        pools: entries(dns_common::MAP_HOT_CUR)?,
        slots: entries(dns_common::MAP_HOT_SLOTS)?,
        answers: entries(dns_common::MAP_HOT_ANSWERS)?,
        buckets: entries(dns_common::MAP_HOT_INDEX)?,
    };
    capacity.buckets.is_power_of_two().then_some(capacity)
}

/// Maps older versions pinned that this one no longer uses.
const OBSOLETE_PINS: [&str; 3] = ["HOT_NAMES", "HOT_GEN", "RRL"];
