//! The few `bpf(2)` commands the kernel benchmark needs, as raw syscalls (no loader library,
//! so the harness works with any hotpool build): open a program by id, run it with
//! `BPF_PROG_TEST_RUN` in repeat mode, read its run-time statistics, load and attach a
//! pass-everything XDP program, and read and write whole values of a pinned map.

use std::{
    fs,
    io::{self, Write as _},
    mem,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::net::NetNs;

// `enum bpf_cmd`.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type` value of `BPF_XDP`.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE`.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// XDP return codes.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`.
pub const XDP_TX: u32 = 3;

/// Where an XDP program runs on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`xdpdrv`); on a veth, the NAPI receive path.
    Native,
    /// In the network stack on the skb (`xdpgeneric`).
    Generic,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }

    fn flags(self) -> u32 {
        match self {
            Self::Native => XDP_FLAGS_DRV_MODE,
            Self::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, valid for the
    // duration of the call; the kernel zero-extends a short attribute. Pointers inside it are
    // set by the callers to buffers that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd_from(rc: libc::c_long) -> Result<OwnedFd> {
    let fd = i32::try_from(rc).context("bpf returned an out-of-range fd")?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A loaded BPF program, by file descriptor.
pub struct Program {
    fd: OwnedFd,
    pub id: u32,
}

/// The result of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, Copy)]
pub struct TestRunResult {
    pub retval: u32,
    /// Mean nanoseconds per run, as the kernel measured it.
    pub ns_per_run: u32,
}

/// A pinned array or hash map with a 4-octet key, opened by its pin path: whole values read
/// and written as octets (the bench does not know the value's layout, only snapshots it).
pub struct PinnedMap {
    fd: OwnedFd,
    value_size: usize,
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl PinnedMap {
    pub fn open(path: &Path) -> Result<Self> {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        #[repr(C)]
        struct GetAttr {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        let mut attr = GetAttr {
            pathname: c_path.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
        };
        let rc = sys_bpf(BPF_OBJ_GET, &mut attr)
            .with_context(|| format!("BPF_OBJ_GET {}", path.display()))?;
        let fd = fd_from(rc)?;
        // struct bpf_map_info: type, id, key_size, value_size, ... (more than enough room).
        let mut info = [0u32; 32];
        #[repr(C)]
        struct InfoAttr {
            bpf_fd: u32,
            info_len: u32,
            info: u64,
        }
        let mut attr = InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: mem::size_of_val(&info) as u32,
            info: info.as_mut_ptr() as u64,
        };
        sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)
            .with_context(|| format!("BPF_OBJ_GET_INFO_BY_FD {}", path.display()))?;
        if info[2] != 4 {
            bail!("{}: a key of {} octets, not 4", path.display(), info[2]);
        }
        Ok(Self {
            fd,
            value_size: info[3] as usize,
        })
    }

    /// The attribute of a lookup or update of `key` with the value at `value` (both must
    /// outlive the call it is passed to).
    fn elem(&self, key: &u32, value: *mut u8) -> ElemAttr {
        ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: std::ptr::from_ref(key) as u64,
            value: value as u64,
            flags: 0,
        }
    }

    /// The value at `key`.
    pub fn get(&self, key: u32) -> Result<Vec<u8>> {
        let mut value = vec![0u8; self.value_size];
        let mut attr = self.elem(&key, value.as_mut_ptr());
        sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).context("BPF_MAP_LOOKUP_ELEM")?;
        Ok(value)
    }

    /// Writes `value` (of the map's value size) at `key`.
    pub fn set(&self, key: u32, value: &[u8]) -> Result<()> {
        if value.len() != self.value_size {
            bail!(
                "a value of {} octets for a map of {}",
                value.len(),
                self.value_size
            );
        }
        let mut attr = self.elem(&key, value.as_ptr().cast_mut());
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).context("BPF_MAP_UPDATE_ELEM")?;
        Ok(())
    }
}

/// The kernel's run-time statistics of a program (`kernel.bpf_stats_enabled`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl Program {
    /// Opens the program with this id.
    pub fn from_id(id: u32) -> Result<Self> {
        #[repr(C)]
        struct Attr {
            prog_id: u32,
            next_id: u32,
            open_flags: u32,
        }
        let mut attr = Attr {
            prog_id: id,
            next_id: 0,
            open_flags: 0,
        };
        let rc = sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
            .with_context(|| format!("BPF_PROG_GET_FD_BY_ID {id}"))?;
        Ok(Self {
            fd: fd_from(rc)?,
            id,
        })
    }

    /// Runs the program `repeat` times on `frame` (`BPF_PROG_TEST_RUN`); the frame the last
    /// run left is written to `out`, which is truncated to its length. With an
    /// `ingress_ifindex` (of the calling thread's network namespace) the frame arrives on
    /// that interface rather than on the namespace's loopback device.
    pub fn test_run(
        &self,
        frame: &[u8],
        repeat: u32,
        ingress_ifindex: Option<u32>,
        out: &mut Vec<u8>,
    ) -> Result<TestRunResult> {
        #[repr(C)]
        struct Attr {
            prog_fd: u32,
            retval: u32,
            data_size_in: u32,
            data_size_out: u32,
            data_in: u64,
            data_out: u64,
            repeat: u32,
            duration: u32,
            ctx_size_in: u32,
            ctx_size_out: u32,
            ctx_in: u64,
            ctx_out: u64,
            flags: u32,
            cpu: u32,
            batch_size: u32,
            _pad: u32,
        }
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let data_end = u32::try_from(frame.len()).context("frame too long")?;
        let ctx: [u32; 6] = [0, data_end, 0, ingress_ifindex.unwrap_or(0), 0, 0];
        out.clear();
        out.resize(frame.len() + 512, 0);
        let mut attr = Attr {
            prog_fd: self.fd.as_raw_fd() as u32,
            retval: 0,
            data_size_in: u32::try_from(frame.len()).context("frame too long")?,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat,
            duration: 0,
            // The kernel refuses a context pointer without a size and the other way round.
            ctx_size_in: if ingress_ifindex.is_some() {
                mem::size_of_val(&ctx) as u32
            } else {
                0
            },
            ctx_size_out: 0,
            ctx_in: if ingress_ifindex.is_some() {
                ctx.as_ptr() as u64
            } else {
                0
            },
            ctx_out: 0,
            flags: 0,
            cpu: 0,
            batch_size: 0,
            _pad: 0,
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr)
            .with_context(|| format!("BPF_PROG_TEST_RUN on program {}", self.id))?;
        out.truncate(attr.data_size_out as usize);
        Ok(TestRunResult {
            retval: attr.retval,
            ns_per_run: attr.duration,
        })
    }

    /// `run_time_ns` and `run_cnt` (counted only while `kernel.bpf_stats_enabled` is 1).
    pub fn run_stats(&self) -> Result<RunStats> {
        fd_run_stats(&self.fd)
    }
}

/// A program's run-time statistics from its fdinfo.
fn fd_run_stats(fd: &OwnedFd) -> Result<RunStats> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_run_stats(&text).ok_or_else(|| anyhow!("no run_time_ns/run_cnt in {path}"))
}

impl RunStats {
    /// The runs and run time since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            run_time_ns: self.run_time_ns.saturating_sub(earlier.run_time_ns),
            run_cnt: self.run_cnt.saturating_sub(earlier.run_cnt),
        }
    }

    /// Mean nanoseconds per run, when it ran.
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.run_cnt > 0).then(|| self.run_time_ns as f64 / self.run_cnt as f64)
    }
}

/// `run_time_ns` and `run_cnt` from a program's fdinfo text.
pub fn parse_run_stats(fdinfo: &str) -> Option<RunStats> {
    let field = |key: &str| {
        fdinfo.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    Some(RunStats {
        run_time_ns: field("run_time_ns")?,
        run_cnt: field("run_cnt")?,
    })
}

/// An XDP program that returns `XDP_PASS` for every frame, attached to one interface through a
/// bpf link: detached when this is dropped (or when the process ends, however it ends).
///
/// It is the same two instructions as the repo's `hotpool_pass` (`r0 = XDP_PASS; exit`),
/// loaded here directly so the harness needs no loader library and works with any build.
pub struct PassProgram {
    _link: OwnedFd,
    prog: OwnedFd,
    pub mode: XdpMode,
}

impl PassProgram {
    pub fn attach(ns: &NetNs, ifname: &str, mode: XdpMode) -> Result<Self> {
        let prog = load_pass()?;
        let prog_fd = prog.as_raw_fd() as u32;
        let name = ifname.to_owned();
        // The ifindex is resolved in the calling thread's network namespace.
        let link = ns.run(move || -> Result<OwnedFd> {
            let ifindex = ifindex(&name)?;
            #[repr(C)]
            struct Attr {
                prog_fd: u32,
                target_ifindex: u32,
                attach_type: u32,
                flags: u32,
            }
            let mut attr = Attr {
                prog_fd,
                target_ifindex: ifindex,
                attach_type: BPF_XDP,
                flags: mode.flags(),
            };
            let rc = sys_bpf(BPF_LINK_CREATE, &mut attr).with_context(|| {
                format!(
                    "attaching the pass program to {name} ({} mode)",
                    mode.name()
                )
            })?;
            fd_from(rc)
        })??;
        Ok(Self {
            _link: link,
            prog,
            mode,
        })
    }
}

impl PassProgram {
    /// `run_time_ns` and `run_cnt` (counted only while `kernel.bpf_stats_enabled` is 1).
    pub fn run_stats(&self) -> Result<RunStats> {
        fd_run_stats(&self.prog)
    }
}

fn load_pass() -> Result<OwnedFd> {
    // BPF_MOV64_IMM(BPF_REG_0, XDP_PASS); BPF_EXIT_INSN().
    let insns: [u64; 2] = [
        u64::from(0xb7_u8) | (u64::from(XDP_PASS) << 32),
        u64::from(0x95_u8),
    ];
    let license = c"GPL";
    #[repr(C)]
    struct Attr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let mut prog_name = [0u8; 16];
    prog_name[..12].copy_from_slice(b"bench_pass\0\0");
    let mut attr = Attr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: BPF_XDP,
    };
    let rc = sys_bpf(BPF_PROG_LOAD, &mut attr).context("loading the pass program")?;
    fd_from(rc)
}

pub fn ifindex(name: &str) -> Result<u32> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: c_name is NUL-terminated and outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        bail!("no interface {name}: {}", io::Error::last_os_error());
    }
    Ok(index)
}

/// `kernel.bpf_stats_enabled` set to 1 while this lives, restored to what it was on drop.
pub struct BpfStatsEnabled {
    previous: String,
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsEnabled {
    pub fn enable() -> Result<Self> {
        let previous = fs::read_to_string(BPF_STATS_SYSCTL)
            .with_context(|| format!("reading {BPF_STATS_SYSCTL}"))?;
        write_sysctl(Path::new(BPF_STATS_SYSCTL), "1")?;
        Ok(Self {
            previous: previous.trim().to_owned(),
        })
    }
}

impl Drop for BpfStatsEnabled {
    fn drop(&mut self) {
        if let Err(err) = write_sysctl(Path::new(BPF_STATS_SYSCTL), &self.previous) {
            eprintln!("xtask: warning: restoring {BPF_STATS_SYSCTL}: {err:#}");
        }
    }
}

fn write_sysctl(path: &Path, value: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(value.as_bytes())
        .with_context(|| format!("writing {value} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bench::net::Link, run::is_root};

    /// The root-only tests below load programs; elsewhere they say so and pass.
    fn root() -> bool {
        if !is_root() {
            eprintln!("skipped: loading BPF programs needs root");
        }
        is_root()
    }

    #[test]
    fn pass_program_test_runs_pass_the_frame_unchanged() {
        if !root() {
            return;
        }
        let program = Program {
            fd: load_pass().expect("loading the pass program"),
            id: 0,
        };
        let frame = super::super::dns::arp_frame([10, 0, 0, 2].into(), [10, 0, 0, 1].into());
        let mut out = Vec::new();
        let result = program
            .test_run(&frame, 1000, None, &mut out)
            .expect("test run");
        assert_eq!(result.retval, XDP_PASS);
        assert_eq!(out, frame, "the pass program changed the frame");
        // The fdinfo of a real program has the statistics fields, counted or not.
        program
            .run_stats()
            .expect("run_time_ns and run_cnt in fdinfo");
    }

    #[test]
    fn pass_program_attaches_in_both_modes_and_detaches_on_drop() {
        if !root() {
            return;
        }
        let link = Link::new().expect("a veth pair between two namespaces");
        let generic = PassProgram::attach(&link.server, &link.server_if, XdpMode::Generic)
            .expect("attaching in generic mode");
        let native = PassProgram::attach(&link.client, &link.client_if, XdpMode::Native)
            .expect("attaching in native mode");
        let prog = link
            .server_xdp_prog()
            .unwrap()
            .expect("a program on the server end");
        assert_eq!((prog.name.as_str(), prog.mode), ("bench_pass", 2));
        let client = link
            .client
            .ip(&["-j", "-d", "link", "show", "dev", &link.client_if])
            .unwrap();
        assert_eq!(
            super::super::net::xdp_prog(&client).unwrap().unwrap().mode,
            1
        );
        drop(generic);
        drop(native);
        assert_eq!(link.server_xdp_prog().unwrap(), None, "detached on drop");
    }

    #[test]
    fn run_stats_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nprog_type:\t6\nprog_jited:\t1\n\
                    prog_tag:\t410ce0e5715c88e1\nmemlock:\t4096\nprog_id:\t147\n\
                    run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t0\n";
        assert_eq!(
            parse_run_stats(info),
            Some(RunStats {
                run_time_ns: 123_456,
                run_cnt: 789
            })
        );
        assert_eq!(parse_run_stats("prog_type:\t6\nrun_cnt:\t1\n"), None);
    }
}
