//! Builds the XDP program (`dns-ebpf`, for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker) and leaves it in OUT_DIR, from where `src/datapath/ebpf.rs` embeds it; and
//! writes the git revision to OUT_DIR/git-revision for `--version` and `build_info`.
use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
    std::fs::write(Path::new(&out_dir).join("git-revision"), git_revision())
        .context("writing OUT_DIR/git-revision")?;
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "dns-ebpf")
        .ok_or_else(|| anyhow!("dns-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir: manifest_path
            .parent()
            .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
            .as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], Toolchain::default())
}

/// The checkout's abbreviated commit id, `HOTPOOL_GIT_REVISION` if set (builds from a
/// tarball), else "unknown". Reruns only when HEAD or the branch it points to moves, so a
/// commit rebuilds this package and its dependents, not the world.
fn git_revision() -> String {
    println!("cargo:rerun-if-env-changed=HOTPOOL_GIT_REVISION");
    if let Ok(rev) = std::env::var("HOTPOOL_GIT_REVISION") {
        return rev;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // In a worktree HEAD lives in its own git dir, the branches in the common one. A
    // missing file would rerun this on every build: only existing ones are watched.
    let watch = |path: std::path::PathBuf| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(Path::new(&dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        let common = std::fs::canonicalize(&common).unwrap_or_else(|_| common.into());
        watch(common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(common.join(branch));
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
}
