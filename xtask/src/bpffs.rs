//! `cargo xtask clean-bpf`: removes the pinned maps under hotpool's bpffs directory (the
//! daemon replaces incompatible ones itself; this is for starting from nothing).
//!
//! It detaches nothing: a running hotpool keeps its program and maps (it holds their file
//! descriptors), and a pinned bpf link is kept, since removing the last reference to a link
//! detaches its program.

use std::{
    ffi::CString,
    fmt, fs, io,
    mem::{self, MaybeUninit},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::run::become_root;

/// `statfs` type of a bpf filesystem.
const BPF_FS_MAGIC: u64 = dns_common::BPF_FS_MAGIC as u64;

/// `enum bpf_cmd` value of `BPF_OBJ_GET`.
const BPF_OBJ_GET: libc::c_long = 7;

pub fn clean_bpf(pin_dir: &Path) -> Result<()> {
    become_root("clean-bpf", "bpffs pins belong to root")?;
    match fs::symlink_metadata(pin_dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            println!("nothing to remove: {} does not exist", pin_dir.display());
            return Ok(());
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", pin_dir.display())),
        Ok(meta) if !meta.is_dir() => bail!("{} is not a directory", pin_dir.display()),
        Ok(_) => {}
    }
    // Refuse anything but bpffs: this removes everything below the directory it is given.
    if fs_type(pin_dir)? != BPF_FS_MAGIC {
        bail!(
            "{} is not on a bpf filesystem; refusing to remove anything there",
            pin_dir.display()
        );
    }
    let mut tally = Tally::default();
    clean_dir(pin_dir, &mut tally)?;
    match tally {
        Tally {
            removed: 0,
            kept: 0,
        } => println!("nothing to remove: {} is empty", pin_dir.display()),
        Tally { removed, kept } => println!(
            "removed {removed} and kept {kept} entries under {}",
            pin_dir.display()
        ),
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    removed: usize,
    kept: usize,
}

/// Removes everything below `dir` but pinned links, deepest first; `dir` itself stays.
fn clean_dir(dir: &Path, tally: &mut Tally) -> Result<()> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    paths.sort();
    for path in paths {
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            let kept_before = tally.kept;
            clean_dir(&path, tally)?;
            if tally.kept == kept_before {
                fs::remove_dir(&path).with_context(|| format!("removing {}", path.display()))?;
                println!("removed  {}/", path.display());
                tally.removed += 1;
            }
            continue;
        }
        match pin_kind(&path) {
            Ok(PinKind::Link) => {
                println!(
                    "kept     {}: a pinned bpf link, removing it would detach its program \
                     (`hotpool detach` first if that is meant)",
                    path.display()
                );
                tally.kept += 1;
            }
            Ok(kind) => {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                println!("removed  {} ({kind})", path.display());
                tally.removed += 1;
            }
            Err(err) => {
                println!(
                    "kept     {}: cannot tell what is pinned there ({err:#})",
                    path.display()
                );
                tally.kept += 1;
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum PinKind {
    Map,
    Program,
    Link,
}

impl fmt::Display for PinKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Map => "map",
            Self::Program => "program",
            Self::Link => "link",
        })
    }
}

/// What the pin at `path` holds: opens it with `BPF_OBJ_GET` and reads the fd's fdinfo.
fn pin_kind(path: &Path) -> Result<PinKind> {
    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        // Read-write: the kernel refuses other flags for links.
        file_flags: 0,
    };
    // SAFETY: attr is a valid BPF_OBJ_GET attribute (a prefix of `union bpf_attr`, which the
    // kernel zero-extends) that outlives the call, and c_path outlives it too.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &raw const attr,
            mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("BPF_OBJ_GET");
    }
    let fd = i32::try_from(fd).context("BPF_OBJ_GET returned an out-of-range fd")?;
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let fdinfo = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let info = fs::read_to_string(&fdinfo).with_context(|| format!("reading {fdinfo}"))?;
    classify_fdinfo(&info).with_context(|| format!("no map, program or link type in {fdinfo}"))
}

fn classify_fdinfo(info: &str) -> Option<PinKind> {
    info.lines().find_map(|line| {
        let (key, _) = line.split_once(':')?;
        match key {
            "map_type" => Some(PinKind::Map),
            "prog_type" => Some(PinKind::Program),
            "link_type" => Some(PinKind::Link),
            _ => None,
        }
    })
}

/// The `f_type` of the filesystem `path` is on.
fn fs_type(path: &Path) -> Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut stat = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat is large enough for the kernel to fill.
    if unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("statfs {}", path.display()));
    }
    // SAFETY: statfs succeeded, so it filled stat.
    let stat = unsafe { stat.assume_init() };
    // f_type is a signed word whose width varies by architecture; the magic is 32 bits.
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's type differs between targets"
    )]
    Ok(stat.f_type as u64 & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_fdinfo() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2069\nmap_type:\t2\n\
                   key_size:\t4\nvalue_size:\t8\nmax_entries:\t16\n";
        assert_eq!(classify_fdinfo(map), Some(PinKind::Map));
        let prog = "pos:\t0\nflags:\t02000002\nprog_type:\t6\nprog_jited:\t1\n";
        assert_eq!(classify_fdinfo(prog), Some(PinKind::Program));
        let link = "pos:\t0\nflags:\t02000000\nlink_type:\txdp\nlink_id:\t3\nprog_tag:\tab\n";
        assert_eq!(classify_fdinfo(link), Some(PinKind::Link));
        assert_eq!(classify_fdinfo("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn refuses_a_directory_not_on_bpffs() {
        let dir = std::env::temp_dir();
        assert_ne!(fs_type(&dir).unwrap(), BPF_FS_MAGIC);
    }
}
