//! `cargo xtask setup`: checks for the toolchains, components, Debian packages and bpf-linker
//! the workspace needs, and installs whatever is missing.
//!
//! Every check is a cheap query (`rustup … list`, one `dpkg-query`, one `rustc -vV`, a stamp
//! file), so an already-provisioned machine is checked in well under a second.

use std::{
    collections::HashSet,
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{cmd, run::is_root};

/// The toolchain that builds dns-ebpf (aya-build runs it through `rustup run nightly`).
const NIGHTLY: &str = "nightly";

/// Debian packages the build, the root tests and operators use (`cargo xtask bench` installs
/// its own: the load generators and reference servers). `make` builds jemalloc, the daemon's
/// allocator (the C compiler is there already: cargo links with it).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "make",
    "iproute2",
    "dnsutils",
    "bpftool",
    "tcpdump",
    "ethtool",
    "iputils-ping",
];

/// Runs every check, installing what is missing. With `verbose`, prints one line per item;
/// otherwise prints only what it installs.
pub fn ensure(verbose: bool) -> Result<()> {
    let report = Report { verbose };
    if cmd::which("rustup").is_none() {
        bail!("rustup not found on PATH; install it from https://rustup.rs and re-run");
    }
    nightly_toolchain(&report)?;
    nightly_rust_src(&report)?;
    lint_components(&report)?;
    debian_packages(&report)?;
    bpf_linker(&report)?;
    Ok(())
}

struct Report {
    verbose: bool,
}

impl Report {
    fn ok(&self, item: &str) {
        if self.verbose {
            println!("ok         {item}");
        }
    }

    fn installing(&self, item: &str) {
        println!("installing {item}");
    }

    fn installed(&self, item: &str) {
        println!("installed  {item}");
    }
}

fn rustup() -> Command {
    Command::new("rustup")
}

fn nightly_toolchain(report: &Report) -> Result<()> {
    let list = cmd::output(rustup().args(["toolchain", "list"]))?;
    if has_toolchain(&list, NIGHTLY) {
        report.ok("nightly toolchain");
        return Ok(());
    }
    report.installing("nightly toolchain");
    cmd::run(rustup().args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))?;
    report.installed("nightly toolchain");
    Ok(())
}

fn nightly_rust_src(report: &Report) -> Result<()> {
    let list =
        cmd::output(rustup().args(["component", "list", "--installed", "--toolchain", NIGHTLY]))?;
    if has_component(&list, "rust-src") {
        report.ok("rust-src (nightly)");
        return Ok(());
    }
    report.installing("rust-src (nightly)");
    cmd::run(rustup().args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    report.installed("rust-src (nightly)");
    Ok(())
}

/// rustfmt and clippy for the toolchain that runs us (stable unless overridden): that is the
/// toolchain `cargo fmt` and `cargo clippy` will use, since rustup passes `RUSTUP_TOOLCHAIN`
/// down to our children.
fn lint_components(report: &Report) -> Result<()> {
    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    let toolchain = toolchain_channel(&toolchain);
    let list = cmd::output(rustup().args(["component", "list", "--installed"]))?;
    let missing: Vec<&str> = ["rustfmt", "clippy"]
        .into_iter()
        .filter(|component| !has_component(&list, component))
        .collect();
    for component in ["rustfmt", "clippy"] {
        if !missing.contains(&component) {
            report.ok(&format!("{component} ({toolchain})"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    report.installing(&format!("{} ({toolchain})", missing.join(" ")));
    cmd::run(rustup().args(["component", "add"]).args(&missing))?;
    for component in missing {
        report.installed(&format!("{component} ({toolchain})"));
    }
    Ok(())
}

fn debian_packages(report: &Report) -> Result<()> {
    let mut query = Command::new("dpkg-query");
    query
        .args(["-W", "-f=${Package}\\t${Status}\\n"])
        .args(DEBIAN_PACKAGES);
    // dpkg-query exits 1 when it knows nothing of some package; stdout still lists the rest.
    let Some((_, stdout)) = cmd::output_if_installed(&mut query)? else {
        println!(
            "warning    dpkg-query not found (not Debian?); not checking for: {}",
            DEBIAN_PACKAGES.join(" ")
        );
        return Ok(());
    };
    let missing = missing_packages(DEBIAN_PACKAGES, &stdout);
    for package in DEBIAN_PACKAGES.iter().filter(|p| !missing.contains(p)) {
        report.ok(package);
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; installing them needs root: run `sudo -E cargo xtask \
             setup`, or `apt-get install {}` as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    report.installing(&missing.join(" "));
    apt_install(&missing)?;
    for package in missing {
        report.installed(package);
    }
    Ok(())
}

/// `apt-get update`, then `apt-get install` of `packages` without recommends, unattended.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    cmd::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn bpf_linker(report: &Report) -> Result<()> {
    let nightly = RustcInfo::parse(&cmd::output(
        rustup().args(["run", NIGHTLY, "rustc", "-vV"]),
    )?)?;
    let current = Stamp::of(&nightly);
    let cache = cache_dir()?;
    let stamp_path = cache.join("bpf-linker.stamp");
    let stamp = match fs::read_to_string(&stamp_path) {
        Ok(text) => Stamp::parse(&text),
        Err(_) => None,
    };
    let present =
        cmd::which("bpf-linker").is_some() || cargo_home()?.join("bin/bpf-linker").is_file();
    let described = format!(
        "bpf-linker (nightly {}, LLVM {})",
        short_hash(&nightly.commit_hash),
        nightly.llvm_version
    );
    let reason = match linker_action(present, stamp.as_ref(), &current) {
        LinkerAction::UpToDate => {
            report.ok(&described);
            return Ok(());
        }
        LinkerAction::Verify => match linker_version() {
            Ok(version) => {
                write_stamp(&stamp_path, &current)?;
                report.ok(&format!("{described}: {version} runs, stamp written"));
                return Ok(());
            }
            Err(err) => format!("the installed one does not run ({err:#})"),
        },
        LinkerAction::Build(reason) => reason,
    };
    report.installing(&format!(
        "{described}: {reason}; building it, this takes minutes"
    ));
    let prefix = llvm_prefix(&cache)?;
    let mut install = Command::new("cargo");
    install
        .env("LLVM_PREFIX", &prefix)
        .current_dir(&cache)
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{}", nightly.llvm_major))
        .arg("--force");
    cmd::run(&mut install)?;
    let version = linker_version().context("bpf-linker was built but does not run")?;
    write_stamp(&stamp_path, &current)?;
    report.installed(&format!("{described}: {version}"));
    Ok(())
}

/// `bpf-linker --version`, run the way aya-build runs it (with the nightly's libLLVM on the
/// library path).
fn linker_version() -> Result<String> {
    let out = cmd::output(rustup().args(["run", NIGHTLY, "bpf-linker", "--version"]))?;
    Ok(out.trim().to_owned())
}

fn write_stamp(path: &Path, stamp: &Stamp) -> Result<()> {
    fs::write(path, stamp.render()).with_context(|| format!("writing {}", path.display()))
}

/// `<cache>/llvm-prefix` with `lib/libLLVM.so` pointing at the nightly's own libLLVM, for
/// bpf-linker's build to link against.
fn llvm_prefix(cache: &Path) -> Result<PathBuf> {
    let sysroot = cmd::output(rustup().args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    let sysroot_lib = Path::new(sysroot.trim()).join("lib");
    let names: Vec<String> = fs::read_dir(&sysroot_lib)
        .with_context(|| format!("listing {}", sysroot_lib.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let libllvm = find_libllvm(&names).ok_or_else(|| {
        anyhow!(
            "no libLLVM.so.*-rust-*-nightly in {}; is the nightly toolchain complete?",
            sysroot_lib.display()
        )
    })?;
    let prefix = cache.join("llvm-prefix");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let link = lib.join("libLLVM.so");
    if link.symlink_metadata().is_ok() {
        fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    }
    let target = sysroot_lib.join(libllvm);
    symlink(&target, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
    Ok(prefix)
}

fn home() -> Result<PathBuf> {
    env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set"))
}

fn cargo_home() -> Result<PathBuf> {
    match env::var_os("CARGO_HOME") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(home()?.join(".cargo")),
    }
}

/// `~/.cache/hotpool` (or under `$XDG_CACHE_HOME`), created if needed.
fn cache_dir() -> Result<PathBuf> {
    let base = match env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home()?.join(".cache"),
    };
    let dir = base.join("hotpool");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn short_hash(hash: &str) -> &str {
    hash.get(..9).unwrap_or(hash)
}

/// `stable` from `stable-x86_64-unknown-linux-gnu`; other names unchanged.
fn toolchain_channel(toolchain: &str) -> &str {
    ["stable", "beta", "nightly"]
        .into_iter()
        .find(|channel| {
            toolchain
                .strip_prefix(channel)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .unwrap_or(toolchain)
}

/// Whether `rustup toolchain list` output holds the undated `channel` toolchain
/// (`nightly-x86_64-unknown-linux-gnu`, not `nightly-2026-05-01-…`).
fn has_toolchain(list: &str, channel: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| name == channel || toolchain_channel(name) == channel)
}

/// Whether `rustup component list --installed` output holds `component` (listed either bare,
/// like `rust-src`, or with the host triple, like `clippy-x86_64-unknown-linux-gnu`).
fn has_component(list: &str, component: &str) -> bool {
    list.lines().map(str::trim).any(|line| {
        line == component
            || line
                .strip_prefix(component)
                .and_then(|rest| rest.strip_prefix('-'))
                // A target triple, so `clippy` does not match `clippy-preview`.
                .is_some_and(|triple| triple.split('-').count() >= 3)
    })
}

/// `DEBIAN_PACKAGES` that `dpkg-query -W -f='${Package}\t${Status}\n'` does not report as
/// installed (absent from its output, removed, or only config files left).
pub fn missing_packages<'a>(wanted: &[&'a str], dpkg_output: &str) -> Vec<&'a str> {
    let installed: HashSet<&str> = dpkg_output
        .lines()
        .filter_map(|line| {
            let (package, status) = line.split_once('\t')?;
            // Status is "<want> <flag> <state>", e.g. "install ok installed" or
            // "deinstall ok config-files"; a held package is "hold ok installed".
            let mut words = status.split_whitespace();
            let state = words.nth(2)?;
            (state == "installed").then_some(package.split(':').next().unwrap_or(package))
        })
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect()
}

/// `libLLVM.so.<ver>-rust-<ver>-nightly` among the nightly sysroot's `lib/` entries.
fn find_libllvm(names: &[String]) -> Option<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|name| name.starts_with("libLLVM.so.") && name.contains("-rust-"))
        .max()
}

/// What `rustc -vV` says about a toolchain.
#[derive(Debug, PartialEq, Eq)]
pub struct RustcInfo {
    pub commit_hash: String,
    pub llvm_version: String,
    pub llvm_major: u32,
}

impl RustcInfo {
    pub fn parse(vv: &str) -> Result<Self> {
        let field = |key: &str| {
            vv.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
                .map(|value| value.trim().to_owned())
                .ok_or_else(|| anyhow!("no `{key}:` line in rustc -vV output:\n{vv}"))
        };
        let commit_hash = field("commit-hash")?;
        let llvm_version = field("LLVM version")?;
        let llvm_major = llvm_version
            .split('.')
            .next()
            .and_then(|major| major.parse().ok())
            .ok_or_else(|| anyhow!("cannot read a major version from LLVM {llvm_version:?}"))?;
        Ok(Self {
            commit_hash,
            llvm_version,
            llvm_major,
        })
    }
}

/// What bpf-linker was last built against (`~/.cache/hotpool/bpf-linker.stamp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub commit_hash: String,
    pub llvm_version: String,
}

impl Stamp {
    fn of(nightly: &RustcInfo) -> Self {
        Self {
            commit_hash: nightly.commit_hash.clone(),
            llvm_version: nightly.llvm_version.clone(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Some(Self {
            commit_hash: field("rustc-commit-hash")?,
            llvm_version: field("llvm-version")?,
        })
    }

    pub fn render(&self) -> String {
        format!(
            "# the nightly whose libLLVM bpf-linker links against; kept by `cargo xtask setup`\n\
             rustc-commit-hash={}\nllvm-version={}\n",
            self.commit_hash, self.llvm_version
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LinkerAction {
    /// Built against the current nightly: nothing to do.
    UpToDate,
    /// Present but built by hand: check it runs and record the nightly.
    Verify,
    /// Missing or built against another nightly; the reason says which.
    Build(String),
}

fn linker_action(present: bool, stamp: Option<&Stamp>, current: &Stamp) -> LinkerAction {
    match (present, stamp) {
        (false, _) => LinkerAction::Build("not installed".to_owned()),
        (true, None) => LinkerAction::Verify,
        (true, Some(stamp)) if stamp == current => LinkerAction::UpToDate,
        (true, Some(stamp)) => LinkerAction::Build(format!(
            "built against nightly {} (LLVM {})",
            short_hash(&stamp.commit_hash),
            stamp.llvm_version
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIGHTLY_VV: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)
binary: rustc
commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a
commit-date: 2026-05-19
host: x86_64-unknown-linux-gnu
release: 1.97.0-nightly
LLVM version: 22.1.4
";

    fn stamp(hash: &str, llvm: &str) -> Stamp {
        Stamp {
            commit_hash: hash.to_owned(),
            llvm_version: llvm.to_owned(),
        }
    }

    #[test]
    fn parses_rustc_vv() {
        let info = RustcInfo::parse(NIGHTLY_VV).unwrap();
        assert_eq!(
            info,
            RustcInfo {
                commit_hash: "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a".to_owned(),
                llvm_version: "22.1.4".to_owned(),
                llvm_major: 22,
            }
        );
    }

    #[test]
    fn rustc_vv_without_llvm_is_an_error() {
        let err = RustcInfo::parse("rustc 1.0.0\ncommit-hash: abc\n").unwrap_err();
        assert!(err.to_string().contains("LLVM version"), "{err}");
        let err = RustcInfo::parse("commit-hash: abc\nLLVM version: x.1\n").unwrap_err();
        assert!(err.to_string().contains("major"), "{err}");
    }

    #[test]
    fn stamp_round_trips() {
        let current = Stamp::of(&RustcInfo::parse(NIGHTLY_VV).unwrap());
        assert_eq!(Stamp::parse(&current.render()), Some(current));
    }

    #[test]
    fn stamp_parse_rejects_incomplete() {
        assert_eq!(Stamp::parse(""), None);
        assert_eq!(Stamp::parse("rustc-commit-hash=abc\n"), None);
        assert_eq!(
            Stamp::parse("rustc-commit-hash=\nllvm-version=22.1.4\n"),
            None
        );
    }

    #[test]
    fn linker_action_compares_stamp_with_nightly() {
        let current = stamp("e50aa6fba4e6", "22.1.4");
        assert_eq!(
            linker_action(true, Some(&current), &current),
            LinkerAction::UpToDate
        );
        assert_eq!(linker_action(true, None, &current), LinkerAction::Verify);
        assert!(matches!(
            linker_action(false, Some(&current), &current),
            LinkerAction::Build(reason) if reason == "not installed"
        ));
        // A new nightly, even one on the same LLVM, needs a rebuild: the libLLVM file it
        // links against is named after the nightly.
        assert!(matches!(
            linker_action(true, Some(&stamp("0123456789ab", "22.1.4")), &current),
            LinkerAction::Build(reason) if reason.contains("012345678 (LLVM 22.1.4)")
        ));
        assert!(matches!(
            linker_action(true, Some(&stamp("e50aa6fba4e6", "21.1.0")), &current),
            LinkerAction::Build(_)
        ));
    }

    #[test]
    fn dpkg_status() {
        let out = "iproute2\tinstall ok installed\n\
                   dnsutils\tinstall ok installed\n\
                   tcpdump\tdeinstall ok config-files\n\
                   ethtool\thold ok installed\n\
                   bpftool:amd64\tinstall ok installed\n\
                   dnsperf\tinstall ok half-configured\n";
        assert_eq!(
            missing_packages(
                &[
                    "iproute2",
                    "dnsutils",
                    "tcpdump",
                    "ethtool",
                    "bpftool",
                    "dnsperf",
                    "iputils-ping"
                ],
                out
            ),
            ["tcpdump", "dnsperf", "iputils-ping"]
        );
        assert_eq!(missing_packages(&["iproute2"], ""), ["iproute2"]);
    }

    #[test]
    fn toolchains() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-2026-05-01-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_toolchain(list, "stable"));
        assert!(!has_toolchain(list, "nightly"));
        assert!(has_toolchain(
            &format!("{list}nightly-x86_64-unknown-linux-gnu\n"),
            "nightly"
        ));
        assert_eq!(
            toolchain_channel("stable-x86_64-unknown-linux-gnu"),
            "stable"
        );
        assert_eq!(
            toolchain_channel("1.95.0-x86_64-unknown-linux-gnu"),
            "1.95.0-x86_64-unknown-linux-gnu"
        );
    }

    #[test]
    fn components() {
        let list = "cargo-x86_64-unknown-linux-gnu\n\
                    clippy-x86_64-unknown-linux-gnu\n\
                    rust-std-x86_64-unknown-linux-gnu\n\
                    rustfmt-x86_64-unknown-linux-gnu\n";
        assert!(has_component(list, "clippy"));
        assert!(has_component(list, "rustfmt"));
        assert!(!has_component(list, "rust-src"));
        assert!(has_component(&format!("{list}rust-src\n"), "rust-src"));
        assert!(!has_component("clippy-preview\n", "clippy"));
    }

    #[test]
    fn finds_nightly_libllvm() {
        let names: Vec<String> = [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
            "rustlib",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            find_libllvm(&names),
            Some("libLLVM.so.22.1-rust-1.97.0-nightly")
        );
        assert_eq!(find_libllvm(&names[2..]), None);
    }
}
